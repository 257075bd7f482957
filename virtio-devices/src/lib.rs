//! virtio-devices: the virtio-mmio transport and the devices behind it
//! (block, net, console), written against small traits so they are tested
//! on plain guest memory.
//!
//! Not written yet: flint's flat bus currently carries only placeholder
//! slots (`vmm/src/devices/placeholder.rs`). This crate must never depend on
//! KVM (`kvm-ioctls`), `seccomp` or `vmm`: notifications arrive as eventfds
//! and interrupts leave through a trait, so `vmm` does the wiring.
#![deny(missing_docs)]
