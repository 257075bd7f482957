//! The bounce path for backends opened with O_DIRECT: the kernel moves
//! data straight between the device and guest pages only when every buffer
//! address, buffer length and the disk offset are multiples of the
//! device's logical block size. A driver may send less tidy requests (a
//! 4 KiB read split into 1000 + 3096-byte buffers is valid virtio); those
//! go through one aligned host buffer, a chunk at a time, and are counted.
//! Aligned requests never come here.
//!
//! The disk offset and the request's total length must still be whole
//! logical blocks: the guest was told the block size (blk_size), and a
//! partial-block write would need a read-modify-write that could race
//! with other requests in flight. Such a request fails with IOERR, as on
//! the host device itself.

use std::io;

use vm_memory::{Address, Bytes, GuestMemoryMmap, VolatileSlice};

use super::backend::BlockBackend;
use super::request::Segment;

/// Bytes moved per backend call.
const CHUNK: usize = 1 << 20;

/// The aligned staging buffer (allocated on first use) and the count of
/// requests that needed it.
#[derive(Debug, Default)]
pub(super) struct Bounce {
    buf: Vec<u8>,
    count: u64,
}

/// Which way the data goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Disk → guest memory.
    ToGuest,
    /// Guest memory → disk.
    FromGuest,
}

/// Why a bounced transfer stopped.
pub(super) enum BounceError {
    /// Guest memory could not be reached (only if the driver rewrote the
    /// chain after it was checked).
    Guest(vm_memory::GuestMemoryError),
    /// The backend failed, or the request is not whole blocks.
    Host(io::Error),
}

/// Whether a request of `segments` at `offset` can go to a backend that
/// needs `align`-byte alignment without bouncing. Guest-physical and host
/// addresses agree modulo the page size (regions are page-aligned mmaps),
/// so the guest address stands for the host one.
pub(super) fn direct_ok(align: usize, segments: &[Segment], offset: u64) -> bool {
    let a = align as u64;
    align <= 1
        || (offset.is_multiple_of(a)
            && segments
                .iter()
                .all(|s| s.addr.0.is_multiple_of(a) && u64::from(s.len).is_multiple_of(a)))
}

impl Bounce {
    /// Requests bounced so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// The `align`-aligned `CHUNK` bytes of the staging buffer.
    fn staging(&mut self, align: usize) -> &mut [u8] {
        if self.buf.len() < CHUNK + align {
            self.buf = vec![0; CHUNK + align];
        }
        let start = self.buf.as_ptr().align_offset(align).min(align);
        &mut self.buf[start..start + CHUNK]
    }

    /// Move `segments` between guest memory and the disk at `offset`
    /// through the staging buffer, `CHUNK` bytes per backend call.
    pub(super) fn transfer<B: BlockBackend>(
        &mut self,
        mem: &GuestMemoryMmap,
        segments: &[Segment],
        offset: u64,
        direction: Direction,
        backend: &mut B,
    ) -> Result<(), BounceError> {
        let align = backend.alignment().max(1);
        let total: u64 = segments.iter().map(|s| u64::from(s.len)).sum();
        if !offset.is_multiple_of(align as u64) || !total.is_multiple_of(align as u64) {
            return Err(BounceError::Host(io::Error::from_raw_os_error(
                libc::EINVAL,
            )));
        }
        self.count = self.count.saturating_add(1);
        let chunk = self.staging(align);
        let mut cursor = Cursor::default();
        let mut at = offset;
        let mut left = total;
        while left > 0 {
            // At most CHUNK, a usize.
            let n = left.min(CHUNK as u64) as usize;
            let part = &mut chunk[..n];
            match direction {
                Direction::FromGuest => {
                    cursor.copy(mem, segments, part, Direction::FromGuest)?;
                    backend
                        .write_at(at, &VolatileSlice::from(&mut *part))
                        .map_err(BounceError::Host)?;
                }
                Direction::ToGuest => {
                    backend
                        .read_at(at, &mut VolatileSlice::from(&mut *part))
                        .map_err(BounceError::Host)?;
                    cursor.copy(mem, segments, part, Direction::ToGuest)?;
                }
            }
            at = at.saturating_add(n as u64);
            left -= n as u64;
        }
        Ok(())
    }
}

/// A position in a request's segments.
#[derive(Default)]
struct Cursor {
    segment: usize,
    within: u32,
}

impl Cursor {
    /// Copy `part.len()` bytes between the segments (from the cursor on)
    /// and `part`, in `direction`, and move the cursor past them.
    fn copy(
        &mut self,
        mem: &GuestMemoryMmap,
        segments: &[Segment],
        part: &mut [u8],
        direction: Direction,
    ) -> Result<(), BounceError> {
        let mut done = 0;
        while done < part.len() {
            let Some(s) = segments.get(self.segment) else {
                break;
            };
            let room = (s.len - self.within) as usize;
            let n = room.min(part.len() - done);
            let addr = s
                .addr
                .checked_add(u64::from(self.within))
                .ok_or(BounceError::Host(io::Error::from_raw_os_error(
                    libc::EFAULT,
                )))?;
            let bytes = &mut part[done..done + n];
            match direction {
                Direction::FromGuest => mem.read_slice(bytes, addr),
                Direction::ToGuest => mem.write_slice(bytes, addr),
            }
            .map_err(BounceError::Guest)?;
            done += n;
            // n <= room = s.len - within, a u32.
            self.within += n as u32;
            if self.within == s.len {
                self.segment += 1;
                self.within = 0;
            }
        }
        Ok(())
    }
}
