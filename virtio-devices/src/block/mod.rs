//! The virtio block device: one request queue served synchronously against
//! a [`BlockBackend`] (a regular file or a host block device through
//! [`FileBackend`]).
//!
//! Implements virtio 1.2 §5.2 (Block Device): device ID 2, one requestq
//! (§5.2.2), the feature bits of §5.2.3 listed on [`Block`], the
//! configuration layout of §5.2.4 and the requests of §5.2.6 (IN, OUT,
//! FLUSH, GET_ID, DISCARD, WRITE_ZEROES). The pieces:
//!
//! - `request.rs`: descriptor chain → typed request, every check made
//!   before any buffer is touched (pure: reads guest memory only);
//!   `fault.rs`: the ways a chain is refused.
//! - `handler.rs`: runs one request against the backend and writes the
//!   status byte.
//! - `backend.rs`: the [`BlockBackend`] trait and [`FileBackend`].
//! - `device.rs`: [`Block`]: features, configuration space, activation.
//!
//! # Framing
//!
//! Requests must come as every known driver sends them (Linux, SeaBIOS,
//! OVMF, the flint probe): a 16-byte device-readable header descriptor,
//! the data descriptors, and a 1-byte device-writable status descriptor
//! last. Other splits of the same bytes (allowed by §2.6.4 message
//! framing) are refused as malformed.
//!
//! # Processing model
//!
//! With the io_uring engine (`uring.rs`, [`IoEngine::Auto`] on a backend
//! with [`BlockBackend::raw_fd`], where the kernel allows it) IN, OUT and
//! FLUSH are submitted from `process_queue` straight over guest memory and
//! answered by [`Block::process_completions`] when the engine's eventfd
//! ([`Block::completion_fd`]) fires: status OK only once the kernel moved
//! every byte, FLUSH is fdatasync and starts after every earlier request
//! completed (IOSQE_IO_DRAIN), reset waits for requests in flight. Other
//! requests, write-through writes (FLUSH not negotiated) and every request
//! under [`IoEngine::Sync`] or without io_uring run to completion inside
//! `process_queue`, in ring order: put in the used ring (status OK) only
//! after the backend returned success for all of it.

//! # Building one (the vmm)
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use virtio_devices::block::{Access, Block, BlockOptions, FileBackend, Serial};
//! use virtio_devices::{IrqfdInterrupt, MmioTransport};
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! # let tmp = vmm_sys_util::tempfile::TempFile::new()?;
//! # tmp.as_file().set_len(1 << 20)?;
//! # let path = tmp.as_path();
//! # let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)])?;
//!
//! // From a path, or FileBackend::new(file, access) for a file the vmm
//! // opened itself (O_DIRECT, a passed descriptor). Errors are host
//! // failures: print them with their source chain, naming the path.
//! let backend = FileBackend::open(path, Access::ReadWrite)?;
//! let options = BlockOptions {
//!     serial: Serial::new("disk0")?,
//!     ..BlockOptions::default()
//! };
//! let block = Block::new(backend, options)?;
//! assert_eq!(block.capacity_sectors(), 2048);
//! let irq = Arc::new(IrqfdInterrupt::new()?);
//! let transport = MmioTransport::new(block, mem, irq)?;
//! // Wire queue 0 as for any device; later, for a status line:
//! let io_errors = transport.device().io_errors();
//! # assert_eq!(io_errors, 0);
//! # Ok(())
//! # }
//! ```

mod backend;
mod bounce;
mod device;
mod fault;
mod handler;
mod request;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_backend;
#[cfg(test)]
mod tests_bounce;
#[cfg(test)]
mod tests_malformed;
#[cfg(test)]
mod tests_ranges;
#[cfg(test)]
mod tests_uring;
mod uring;

pub use backend::{
    Access, BackendError, BackingKind, BlockBackend, Capabilities, FileBackend, Unmap,
};
pub use device::{
    Block, BlockError, BlockGeometry, BlockOptions, IoEngine, Serial, TransferLimits,
};

/// Maximum size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// The unit of `sector` fields and of the capacity (§5.2.4), whatever the
/// logical block size.
pub const SECTOR_SIZE: u64 = 512;
/// seg_max: most data descriptors in one request (the chain also holds the
/// header and the status, and may not be longer than the queue).
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// size_max: most bytes in one data descriptor.
pub const SIZE_MAX: u32 = 1 << 20;
/// max_discard_seg and max_write_zeroes_seg: most ranges in one DISCARD or
/// WRITE_ZEROES request.
pub const MAX_RANGES: u32 = 32;
/// max_discard_sectors and max_write_zeroes_sectors: most sectors in one
/// range (256 MiB; the request blocks the event loop while it runs).
pub const MAX_RANGE_SECTORS: u32 = 1 << 19;
/// Longest serial GET_ID returns (VIRTIO_BLK_ID_BYTES).
pub const SERIAL_LEN: usize = 20;
