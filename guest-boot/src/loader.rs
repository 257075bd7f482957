//! Kernel image loading: ELF with a Xen PVH note, plain ELF vmlinux, bzImage.

use vm_memory::GuestAddress;

/// How a kernel image was recognised, which decides how it is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF with `XEN_ELFNOTE_PHYS32_ENTRY`: PVH entry, 32-bit protected mode,
    /// paging off, `rbx` = `hvm_start_info`.
    PvhElf,
    /// ELF without the note: 64-bit Linux boot protocol at `e_entry`, long
    /// mode with identity paging, `rsi` = zero page.
    Elf64,
    /// bzImage: protected-mode part loaded at its `code32_start`, entered at
    /// the 64-bit entry (`+0x200`) with `rsi` = zero page.
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
    /// First byte after the loaded image (initrd goes above this).
    pub end: GuestAddress,
    /// Highest address an initrd may end at (`initrd_addr_max` + 1; 4 GiB... default per protocol).
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
}
