//! Devices that live on flint's buses, and the buses themselves.
//!
//! Only what a flat-bus guest needs: the 8250 UART, the exit port, the
//! boot-complete marker, the i8042 reset line, the ACPI sleep registers and
//! the IOAPIC (KVM keeps the LAPIC).
//! virtio-mmio devices come from the `virtio-devices` crate.

pub mod bus;
pub mod clock_probe;
pub mod ioapic;
pub mod legacy;
pub mod placeholder;
pub mod serial;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
