//! The whole boot preparation as one flat list of named steps: check the
//! memory, load the kernel, build and write the command line, load the
//! initrd, write ACPI tables, write the boot information (`hvm_start_info`
//! or the zero page), write the GDT and page tables, and compute the entry
//! registers.

use std::fs::File;
use std::io::Seek;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::acpi::{self, AcpiConfig};
use crate::bootinfo::{self, BootInfo};
use crate::cmdline;
use crate::entry::{self, EntryMode, EntryState};
use crate::guestio::{self, CopyError};
use crate::layout::{self, VirtioMmioSlot, HIMEM_START, MIB, MMIO_HOLE_START};
use crate::loader::{self, KernelFormat, LoadedKernel};

/// The initrd starts on a page boundary.
const INITRD_ALIGN: u64 = 0x1000;

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
    /// What guest RAM holds before loading.
    pub ram: crate::loader::GuestRam,
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
    /// Writing the entry GDT or page tables failed.
    #[error("entry tables: {0}")]
    EntryTables(String),
    /// The guest memory does not back the RAM that `mem_bytes` describes.
    #[error("guest memory: {0}")]
    GuestMemory(String),
}

/// `e` and its sources, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Load the kernel and initrd, write the command line, boot information,
/// ACPI tables, GDT and page tables into `mem`, and return the entry state.
pub fn prepare_boot(mem: &GuestMemoryMmap, spec: BootSpec<'_>) -> Result<PreparedBoot, BootError> {
    check_memory(mem, spec.mem_bytes)?;
    let kernel = loader::load_kernel(mem, spec.kernel, spec.ram).map_err(BootError::Kernel)?;
    let devices: &[VirtioMmioSlot] = if spec.plan.cmdline_devices {
        spec.devices
    } else {
        &[]
    };
    let line = cmdline::build_cmdline(spec.cmdline, devices, kernel.cmdline_max)
        .map_err(BootError::Cmdline)?;
    let cmdline_addr = cmdline::write_cmdline(mem, &line).map_err(BootError::Cmdline)?;
    let initrd = match spec.initrd {
        Some(image) => Some(load_initrd(mem, image, &kernel, spec.mem_bytes)?),
        None => None,
    };
    let rsdp = if spec.plan.acpi {
        let cfg = AcpiConfig {
            vcpus: spec.vcpus,
            devices: spec.devices,
        };
        let rsdp = acpi::write_acpi_tables(mem, &cfg).map_err(|e| BootError::Acpi(chain(&e)))?;
        Some(rsdp)
    } else {
        None
    };
    let memory_map = layout::memory_map(spec.mem_bytes);
    let info = BootInfo {
        memory_map: &memory_map,
        cmdline: cmdline_addr,
        cmdline_size: line.len() + 1,
        initrd,
        rsdp,
        setup_header: kernel.setup_header.as_deref(),
    };
    let entry = write_boot_info_and_tables(mem, &kernel, &info)?;
    Ok(PreparedBoot {
        entry,
        format: kernel.format,
        kernel,
        cmdline: line,
        initrd,
        rsdp,
    })
}

/// Fail unless `mem` backs every RAM range of a `mem_bytes` VM, and that
/// reaches past 1 MiB where kernels load.
fn check_memory(mem: &GuestMemoryMmap, mem_bytes: u64) -> Result<(), BootError> {
    if mem_bytes <= HIMEM_START {
        return Err(BootError::GuestMemory(format!(
            "{mem_bytes} bytes of RAM is too little; kernels load at 1 MiB"
        )));
    }
    for (start, len) in layout::ram_ranges(mem_bytes) {
        if !guestio::fits_in_ram(mem, start.0, len) {
            return Err(BootError::GuestMemory(format!(
                "RAM {:#x}..{:#x} of a {} MiB VM is not backed",
                start.0,
                start.0 + len,
                mem_bytes / MIB
            )));
        }
    }
    Ok(())
}

/// Place the initrd page-aligned as high as it fits below the kernel's
/// limit, the end of low RAM and the MMIO hole, above the kernel; read it
/// there in full.
fn load_initrd(
    mem: &GuestMemoryMmap,
    image: InitrdImage<'_>,
    kernel: &LoadedKernel,
    mem_bytes: u64,
) -> Result<(GuestAddress, u64), BootError> {
    let size = image.size;
    let does_not_fit = || {
        BootError::Initrd(format!(
            "initrd of {size} bytes does not fit in guest RAM ({} MiB)",
            mem_bytes / MIB
        ))
    };
    let limit = kernel
        .initrd_addr_max
        .min(layout::low_ram_end(mem_bytes))
        .min(MMIO_HOLE_START);
    let lowest = kernel
        .end
        .0
        .checked_next_multiple_of(INITRD_ALIGN)
        .ok_or_else(does_not_fit)?
        .max(HIMEM_START);
    let addr = limit.checked_sub(size).ok_or_else(does_not_fit)? & !(INITRD_ALIGN - 1);
    if addr < lowest {
        return Err(does_not_fit());
    }
    image
        .file
        .rewind()
        .map_err(|e| BootError::Initrd(format!("cannot read the file: {e}")))?;
    guestio::read_file_into(mem, GuestAddress(addr), image.file, size).map_err(|e| match e {
        CopyError::Eof { done, wanted } => BootError::Initrd(format!(
            "the file ended after {done} bytes; expected {wanted}"
        )),
        other => BootError::Initrd(chain(&other)),
    })?;
    Ok((GuestAddress(addr), size))
}

/// Write the protocol's boot information, the GDT and (for long mode) the
/// page tables; return the entry state.
fn write_boot_info_and_tables(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    info: &BootInfo<'_>,
) -> Result<EntryState, BootError> {
    let info_err = |e: bootinfo::BootInfoError| BootError::BootInfo(chain(&e));
    let tables_err = |e: entry::EntryError| BootError::EntryTables(chain(&e));
    match kernel.format {
        KernelFormat::PvhElf => {
            let start_info = bootinfo::write_start_info(mem, info).map_err(info_err)?;
            entry::write_gdt(mem, EntryMode::Pvh32).map_err(tables_err)?;
            Ok(entry::pvh_entry_state(kernel.entry, start_info))
        }
        KernelFormat::Elf64 | KernelFormat::BzImage => {
            let zero_page = bootinfo::write_zero_page(mem, info).map_err(info_err)?;
            entry::write_gdt(mem, EntryMode::Linux64).map_err(tables_err)?;
            entry::write_page_tables(mem).map_err(tables_err)?;
            Ok(entry::linux64_entry_state(kernel.entry, zero_page))
        }
    }
}

#[cfg(test)]
mod tests;
