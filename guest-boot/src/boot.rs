//! The whole boot preparation as one flat list of named steps.

use std::fs::File;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::entry::EntryState;
use crate::layout::VirtioMmioSlot;
use crate::loader::{KernelFormat, LoadedKernel};

/// Everything needed to lay out a guest for its first instruction.
pub struct BootSpec<'a> {
    /// The kernel image (ELF with or without PVH note, or bzImage).
    pub kernel: &'a mut File,
    /// An initial ramdisk, if any.
    pub initrd: Option<InitrdImage<'a>>,
    /// Command line after flint's defaults (user's `--cmdline`).
    pub cmdline: &'a str,
    /// Total guest RAM in bytes (as given to [`crate::layout::ram_ranges`]).
    pub mem_bytes: u64,
    /// vCPU count.
    pub vcpus: u8,
    /// The virtio-mmio devices, in bus order.
    pub devices: &'a [VirtioMmioSlot],
    /// Where the device list goes.
    pub plan: BootPlan,
}

/// An initrd to load: the open file and its size.
pub struct InitrdImage<'a> {
    /// The file.
    pub file: &'a mut File,
    /// Its size in bytes.
    pub size: u64,
}

/// How the guest learns about devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// Build ACPI tables (RSDP, XSDT, FADT, MADT, DSDT).
    pub acpi: bool,
    /// Append `virtio_mmio.device=4K@0xADDR:IRQ` entries to the command line.
    pub cmdline_devices: bool,
}

/// What [`prepare_boot`] did, for the vCPU set-up and the boot report.
#[derive(Clone, Debug)]
pub struct PreparedBoot {
    /// Register state for the boot vCPU.
    pub entry: EntryState,
    /// How the kernel was recognised and entered.
    pub format: KernelFormat,
    /// The kernel as loaded.
    pub kernel: LoadedKernel,
    /// The command line exactly as written to guest memory (no NUL).
    pub cmdline: String,
    /// Initrd placement (address, size), if any.
    pub initrd: Option<(GuestAddress, u64)>,
    /// RSDP address, when ACPI tables were written.
    pub rsdp: Option<GuestAddress>,
}

/// A step of [`prepare_boot`] failed; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel image could not be loaded.
    #[error("kernel: {0}")]
    Kernel(#[source] crate::loader::LoadError),
    /// The initrd could not be placed or read.
    #[error("initrd: {0}")]
    Initrd(String),
    /// The command line is invalid or too long.
    #[error("command line: {0}")]
    Cmdline(#[source] crate::cmdline::CmdlineError),
    /// Writing boot information (zero page / hvm_start_info) failed.
    #[error("boot information: {0}")]
    BootInfo(String),
    /// Building or writing ACPI tables failed.
    #[error("ACPI tables: {0}")]
    Acpi(String),
}

/// Load the kernel and initrd, write the command line, boot information,
/// ACPI tables, GDT and page tables into `mem`, and return the entry state.
pub fn prepare_boot(mem: &GuestMemoryMmap, spec: BootSpec<'_>) -> Result<PreparedBoot, BootError> {
    let _ = (mem, spec);
    todo!("guest-boot helper implements")
}
