//! vmm: the only crate of flint that touches KVM.
//!
//! Owns the VM lifecycle: turning a [`config::RunConfig`] into a running VM
//! ([`builder`]), the vCPU threads ([`kvm::vcpu`]), the I/O buses and the
//! legacy devices on them ([`devices`]), the event loop for stdin and VM
//! control ([`event_loop`]), the boot report ([`report`]), and the mapping
//! of how a guest ended to flint's exit code ([`exit`]).
//!
//! Memory layout, kernel loading, ACPI and CPUID shaping are pure functions in
//! `guest-boot`; virtio devices live in `virtio-devices`. This crate wires them
//! to KVM and must stay the only place that issues KVM ioctls.

pub mod bench;
pub mod builder;
pub mod cli;
pub mod config;
pub mod control;
pub mod devices;
pub mod disks;
pub mod event_loop;
pub mod exit;
pub mod kvm;
pub mod logger;
pub mod memfd;
pub mod mmio_bus;
pub mod oneshot;
pub mod passthrough;
pub mod probe;
pub mod report;
pub mod teardown;
pub mod terminal;
pub mod time;
