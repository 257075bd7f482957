//! virtio-mmio register reads and writes around a block, net or console
//! device, with the guest memory operations of the device targets; see
//! virtio_devices::fuzzing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| virtio_devices::fuzzing::mmio_registers(data));
