//! Kernel image loading: ELF with a Xen PVH note, plain ELF vmlinux, bzImage.
//!
//! [`load_kernel`] recognises the format from the file's first bytes and
//! hands over to the `elf` submodule (ELF64, with or without
//! `XEN_ELFNOTE_PHYS32_ENTRY`) or the `bzimage` one (Linux boot protocol
//! 2.06+, `Documentation/arch/x86/boot.rst`).
//! Everything the file claims is checked against the file's length and the
//! guest's RAM before a byte is copied, so a bad image fails with a message
//! naming the problem.

use std::fs::File;
use std::io::Read;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::guestio;
use crate::layout::HIMEM_START;

mod bzimage;
mod elf;

/// How a kernel image was recognised, which decides how it is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF with `XEN_ELFNOTE_PHYS32_ENTRY`: PVH entry, 32-bit protected mode,
    /// paging off, `rbx` = `hvm_start_info`.
    PvhElf,
    /// ELF without the note: 64-bit Linux boot protocol at `e_entry`, long
    /// mode with identity paging, `rsi` = zero page.
    Elf64,
    /// bzImage: protected-mode part loaded at 1 MiB, entered at the 64-bit
    /// entry (`+0x200`) in long mode with `rsi` = zero page.
    BzImage,
}

impl KernelFormat {
    /// Short lower-case name for logs and the boot report.
    pub fn name(self) -> &'static str {
        match self {
            KernelFormat::PvhElf => "pvh-elf",
            KernelFormat::Elf64 => "elf64",
            KernelFormat::BzImage => "bzimage",
        }
    }
}

/// A kernel placed in guest memory.
#[derive(Clone, Debug)]
pub struct LoadedKernel {
    /// How it is entered.
    pub format: KernelFormat,
    /// First instruction (guest-physical).
    pub entry: GuestAddress,
    /// First byte after the loaded image (initrd goes above this); for a
    /// bzImage, after the room it decompresses into (`init_size`).
    pub end: GuestAddress,
    /// First address an initrd must end below: the bzImage header's
    /// `initrd_addr_max` + 1, or [`crate::layout::MMIO_HOLE_START`] for ELF kernels.
    pub initrd_addr_max: u64,
    /// Longest command line the kernel accepts, NUL included.
    pub cmdline_max: usize,
    /// The bzImage setup header bytes (0x1f1.. of the image), copied into the zero page.
    pub setup_header: Option<Vec<u8>>,
}

/// Why a kernel image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// Neither ELF nor bzImage.
    #[error("not a kernel image: neither ELF64 nor a bzImage")]
    UnknownFormat,
    /// Anything else, described.
    #[error("{0}")]
    Invalid(String),
    /// The image could not be read.
    #[error("cannot read the image")]
    Read(#[source] std::io::Error),
    /// A part of the image lies beyond the end of the file.
    #[error("truncated: {what} ends at byte {end} but the file has {file_len} bytes")]
    Truncated {
        /// The part, e.g. "segment 2".
        what: String,
        /// Byte offset its end needs.
        end: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A part of the image does not fit in guest RAM.
    #[error("{what} at {start:#x}..{end:#x} does not fit in guest RAM ({ram_mib} MiB)")]
    DoesNotFit {
        /// The part, e.g. "segment 2".
        what: String,
        /// Its first guest-physical byte.
        start: u64,
        /// Its end (exclusive), saturated on overflow.
        end: u64,
        /// Guest RAM size.
        ram_mib: u64,
    },
    /// Copying the image into guest memory failed.
    #[error("cannot copy {what} into guest memory")]
    Copy {
        /// The part being copied.
        what: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What guest RAM holds before the kernel is loaded, which decides whether an ELF segment's
/// zero-filled tail (its bss, up to `p_memsz`) must be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRam {
    /// Freshly mapped anonymous memory, which reads as zero: writing the bss's zeroes would
    /// only fault in pages the guest may never touch (1.6 MiB, ~1 ms, for the probe).
    Zeroed,
    /// Anything else (reused memory, tests): the bss is zeroed.
    Dirty,
}

/// How many leading bytes [`load_kernel`] looks at to recognise the format.
const PROBE_LEN: usize = 0x206;
/// The four ELF magic bytes.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// Offset of the bzImage setup header magic.
const HDRS_OFFSET: usize = 0x202;

/// Recognise the kernel image in `kernel` and load it into `mem`.
///
/// ELF images are loaded at their segments' physical addresses (which must
/// lie in RAM at or above 1 MiB); a bzImage's protected-mode part is loaded
/// at [`HIMEM_START`]. The file is read from its start whatever its current
/// position.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    ram: GuestRam,
) -> Result<LoadedKernel, LoadError> {
    let len = guestio::file_len(kernel).map_err(LoadError::Read)?;
    if len == 0 {
        return Err(LoadError::Empty);
    }
    let mut probe = vec![0u8; (len as usize).min(PROBE_LEN)];
    kernel.read_exact(&mut probe).map_err(LoadError::Read)?;
    if probe.starts_with(ELF_MAGIC) {
        elf::load(mem, kernel, len, ram)
    } else if probe.get(HDRS_OFFSET..HDRS_OFFSET + 4) == Some(b"HdrS") {
        bzimage::load(mem, kernel, len)
    } else {
        Err(LoadError::UnknownFormat)
    }
}

/// Check that `[start, start + len)` is RAM at or above 1 MiB, where flint
/// keeps nothing of its own.
fn check_placement(
    mem: &GuestMemoryMmap,
    what: &str,
    start: u64,
    len: u64,
) -> Result<(), LoadError> {
    if start < HIMEM_START {
        return Err(LoadError::Invalid(format!(
            "{what} at {start:#x} starts below 1 MiB, where flint keeps its boot structures"
        )));
    }
    if !guestio::fits_in_ram(mem, start, len) {
        return Err(LoadError::DoesNotFit {
            what: what.to_string(),
            start,
            end: start.saturating_add(len),
            ram_mib: guestio::ram_mib(mem),
        });
    }
    Ok(())
}

/// Copy `len` bytes from `file` at `offset` to guest address `addr`.
fn copy_to_guest(
    mem: &GuestMemoryMmap,
    file: &mut File,
    what: &str,
    (offset, len): (u64, u64),
    addr: u64,
) -> Result<(), LoadError> {
    use std::io::{Seek, SeekFrom};
    let copy_err = |source: Box<dyn std::error::Error + Send + Sync>| LoadError::Copy {
        what: what.to_string(),
        source,
    };
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| copy_err(Box::new(e)))?;
    guestio::read_file_into(mem, GuestAddress(addr), file, len).map_err(|e| copy_err(Box::new(e)))
}

#[cfg(test)]
mod tests;
