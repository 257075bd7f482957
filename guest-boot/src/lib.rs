//! guest-boot: everything that happens to guest memory before the first
//! guest instruction runs.
//!
//! Owns the guest physical memory layout ([`layout`]), kernel loading
//! ([`loader`]: ELF with a Xen PVH note, plain ELF vmlinux, bzImage), the boot
//! information a kernel reads at entry ([`bootinfo`]: `hvm_start_info` for
//! PVH, the zero page for the Linux 64-bit boot protocol), the kernel command
//! line ([`cmdline`]), the ACPI tables that describe the flat virtio-mmio bus
//! ([`acpi`]), CPUID shaping as plain data ([`cpuid`]) and the vCPU register
//! state at entry ([`entry`]).
//!
//! It must not depend on KVM (`kvm-ioctls`, `kvm-bindings`), threads, or the
//! `vmm` crate: everything here is a pure function of a configuration and a
//! `GuestMemoryMmap`, unit-tested on plain memory. `vmm` translates the plain
//! data returned here into ioctls.
#![deny(missing_docs)]

pub mod acpi;
pub mod bootinfo;
pub mod cmdline;
pub mod cpuid;
pub mod entry;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod layout;
pub mod loader;

mod guestio;
#[cfg(test)]
mod testutil;

mod boot;
pub use boot::{prepare_boot, BootError, BootPlan, BootSpec, InitrdImage, PreparedBoot};
