//! Small helpers shared by the loaders: copying a file range into guest
//! memory region by region, zero-filling, and describing the RAM size in
//! error messages.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap, GuestMemoryRegion,
};

/// Why [`read_file_into`] stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    /// The file ended early.
    #[error("the file ended after {done} of {wanted} bytes")]
    Eof {
        /// Bytes copied before the end of the file.
        done: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// The destination is not guest RAM, or reading the file failed.
    #[error("cannot copy into guest memory")]
    Memory(#[source] GuestMemoryError),
}

/// Copy `len` bytes from the current position of `file` to `addr`.
///
/// Copies at most one memory region per read so that a short read never
/// shifts data into the next region.
pub(crate) fn read_file_into(
    mem: &GuestMemoryMmap,
    addr: GuestAddress,
    file: &mut File,
    len: u64,
) -> Result<(), CopyError> {
    let mut done = 0u64;
    while done < len {
        let cur = GuestAddress(addr.0 + done);
        let region = mem.find_region(cur).ok_or(CopyError::Memory(
            GuestMemoryError::InvalidGuestAddress(cur),
        ))?;
        let region_left = region.last_addr().0 - cur.0 + 1;
        let chunk = region_left.min(len - done).min(1 << 30) as usize;
        let n = mem
            .read_volatile_from(cur, file, chunk)
            .map_err(CopyError::Memory)?;
        if n == 0 {
            return Err(CopyError::Eof { done, wanted: len });
        }
        done += n as u64;
    }
    Ok(())
}

/// Write `len` zero bytes at `addr`.
pub(crate) fn zero_fill(
    mem: &GuestMemoryMmap,
    addr: GuestAddress,
    len: u64,
) -> Result<(), GuestMemoryError> {
    const ZEROES: [u8; 4096] = [0; 4096];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZEROES.len() as u64) as usize;
        mem.write_slice(&ZEROES[..n], GuestAddress(addr.0 + done))?;
        done += n as u64;
    }
    Ok(())
}

/// Whether `[start, start + len)` is entirely backed by guest RAM.
pub(crate) fn fits_in_ram(mem: &GuestMemoryMmap, start: u64, len: u64) -> bool {
    if start.checked_add(len).is_none() {
        return false;
    }
    if len == 0 {
        return mem.address_in_range(GuestAddress(start));
    }
    usize::try_from(len).is_ok_and(|l| mem.check_range(GuestAddress(start), l))
}

/// Total guest RAM in MiB, for error messages.
pub(crate) fn ram_mib(mem: &GuestMemoryMmap) -> u64 {
    mem.iter().map(|r| r.len()).sum::<u64>() >> 20
}

/// Length of a file (or block device) by seeking to its end.
pub(crate) fn file_len(file: &mut File) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    file.rewind()?;
    Ok(len)
}
