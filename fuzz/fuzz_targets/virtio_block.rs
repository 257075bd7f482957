//! virtio-block descriptor chains on guest memory: the input is what a guest
//! driver writes (descriptors, rings, buffers) and does (notify, reset),
//! plus host events; see virtio_devices::fuzzing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| virtio_devices::fuzzing::block_chains(data));
