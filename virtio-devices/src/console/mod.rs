//! The virtio console: one port, a receive queue fed by host input and a
//! transmit queue drained into a `Write` sink.
//!
//! Implements virtio 1.2 §5.3 (Console Device) without
//! VIRTIO_CONSOLE_F_SIZE, VIRTIO_CONSOLE_F_MULTIPORT or
//! VIRTIO_CONSOLE_F_EMERG_WRITE: device ID 3, receiveq (0) and transmitq
//! (1), a configuration space that reads as zeros (cols = rows = 0). The
//! device itself is in `device.rs`, the per-chain work in `handler.rs`.

mod device;
mod handler;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_malformed;
#[cfg(test)]
mod tests_random;

pub use device::Console;

/// receiveq: host → guest (§5.3.2).
pub const RX_QUEUE: u16 = 0;
/// transmitq: guest → host (§5.3.2).
pub const TX_QUEUE: u16 = 1;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Host input held while the guest has no receive buffer, in bytes;
/// [`Console::push_input`] accepts no more than this.
pub const INPUT_CAPACITY: usize = 64 * 1024;
/// Largest transmit chain accepted, in bytes; a longer one is a guest fault
/// (Linux sends at most a page per buffer).
pub const TX_CHAIN_MAX_BYTES: u32 = 1 << 20;
/// Bytes copied from guest memory to the sink per step.
const TX_CHUNK: usize = 4096;
