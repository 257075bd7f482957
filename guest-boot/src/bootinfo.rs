//! Boot information written for the kernel: `hvm_start_info` (PVH) and the
//! zero page (`boot_params`, Linux 64-bit boot protocol), both carrying the
//! same memory map.
//!
//! PVH: xen/include/public/arch-x86/hvm/start_info.h (version 1, with the
//! memory map). Zero page: Documentation/arch/x86/zero-page.rst and boot.rst.

use std::mem::size_of;

use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header, LOADED_HIGH};
use linux_loader::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{MemoryMapEntry, BOOT_INFO_START, PVH_MEMMAP_START};

/// `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// `hvm_start_info.version` written (1 = has the memory map fields).
pub const XEN_HVM_START_VERSION: u32 = 1;
/// `boot_flag` of a setup header.
const BOOT_FLAG: u16 = 0xaa55;
/// `header` of a setup header: "HdrS".
const HDRS_MAGIC: u32 = 0x5372_6448;
/// Boot protocol version claimed by a header flint builds itself.
const BUILT_HEADER_VERSION: u16 = 0x020f;
/// `type_of_loader`: undefined / other boot loader.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `kernel_alignment` claimed by a built header (Linux's default 16 MiB).
const BUILT_KERNEL_ALIGNMENT: u32 = 0x100_0000;
/// Room for the PVH memory map and module list: one page.
const PVH_MEMMAP_ROOM: usize = 0x1000;
/// Offset of the setup header in the zero page.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// End of the room for the setup header in the zero page.
const SETUP_HEADER_MAX_END: usize = 0x290;

/// What the kernel learns at entry, whatever the protocol.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    /// The memory map (normally [`crate::layout::memory_map`]).
    pub memory_map: &'a [MemoryMapEntry],
    /// Where the NUL-terminated command line is.
    pub cmdline: GuestAddress,
    /// Command line length including its NUL.
    pub cmdline_size: usize,
    /// Initrd address and size, if any.
    pub initrd: Option<(GuestAddress, u64)>,
    /// RSDP address when ACPI tables were written.
    pub rsdp: Option<GuestAddress>,
    /// The bzImage setup header bytes (image offset 0x1f1 on) to copy into
    /// the zero page; `None` builds a minimal header.
    pub setup_header: Option<&'a [u8]>,
}

/// Why boot information could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BootInfoError {
    /// More memory map entries than the structure has room for.
    #[error("{count} memory map entries do not fit; at most {max}")]
    TooManyMemoryMapEntries {
        /// Entries given.
        count: usize,
        /// Room.
        max: usize,
    },
    /// A setup header longer than the zero page's room for it.
    #[error("the setup header is {len} bytes; the zero page has room for {max}")]
    SetupHeaderTooLong {
        /// Bytes given.
        len: usize,
        /// Room.
        max: usize,
    },
    /// Writing into guest memory failed.
    #[error("cannot write {what} into guest memory")]
    Memory {
        /// The structure.
        what: &'static str,
        /// What went wrong.
        #[source]
        source: GuestMemoryError,
    },
}

fn mem_err(what: &'static str) -> impl FnOnce(GuestMemoryError) -> BootInfoError {
    move |source| BootInfoError::Memory { what, source }
}

/// Where the PVH module list goes: right after `entries` memory map entries.
pub fn pvh_modlist_addr(entries: usize) -> GuestAddress {
    GuestAddress(PVH_MEMMAP_START + (entries * size_of::<hvm_memmap_table_entry>()) as u64)
}

/// Write `hvm_start_info` at [`BOOT_INFO_START`], the memory map at
/// [`PVH_MEMMAP_START`] and, with an initrd, a one-entry module list after
/// it. Returns the `hvm_start_info` address (the kernel's `rbx`).
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    info: &BootInfo<'_>,
) -> Result<GuestAddress, BootInfoError> {
    let entries = info.memory_map.len();
    let room = PVH_MEMMAP_ROOM;
    let needed = entries * size_of::<hvm_memmap_table_entry>() + size_of::<hvm_modlist_entry>();
    if needed > room {
        let max = (room - size_of::<hvm_modlist_entry>()) / size_of::<hvm_memmap_table_entry>();
        return Err(BootInfoError::TooManyMemoryMapEntries {
            count: entries,
            max,
        });
    }
    for (i, e) in info.memory_map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.start,
            size: e.size,
            type_: e.kind.e820_type(),
            reserved: 0,
        };
        let at = PVH_MEMMAP_START + (i * size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(entry, GuestAddress(at))
            .map_err(mem_err("the PVH memory map"))?;
    }
    let mut start = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: XEN_HVM_START_VERSION,
        cmdline_paddr: info.cmdline.0,
        rsdp_paddr: info.rsdp.map_or(0, |a| a.0),
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: entries as u32,
        ..Default::default()
    };
    if let Some((addr, size)) = info.initrd {
        let modlist = pvh_modlist_addr(entries);
        let module = hvm_modlist_entry {
            paddr: addr.0,
            size,
            ..Default::default()
        };
        mem.write_obj(module, modlist)
            .map_err(mem_err("the PVH module list"))?;
        start.nr_modules = 1;
        start.modlist_paddr = modlist.0;
    }
    let at = GuestAddress(BOOT_INFO_START);
    mem.write_obj(start, at)
        .map_err(mem_err("hvm_start_info"))?;
    Ok(at)
}

/// A minimal setup header for kernels that bring none (ELF vmlinux).
fn built_setup_header() -> setup_header {
    setup_header {
        boot_flag: BOOT_FLAG,
        header: HDRS_MAGIC,
        version: BUILT_HEADER_VERSION,
        loadflags: LOADED_HIGH,
        kernel_alignment: BUILT_KERNEL_ALIGNMENT,
        ..Default::default()
    }
}

/// Start the zero page's setup header: the kernel's own bytes, or a built one.
fn setup_header_for(raw: Option<&[u8]>) -> Result<setup_header, BootInfoError> {
    let Some(raw) = raw else {
        return Ok(built_setup_header());
    };
    let max = SETUP_HEADER_MAX_END - SETUP_HEADER_OFFSET;
    let fixed = size_of::<setup_header>();
    if raw.len() > max {
        return Err(BootInfoError::SetupHeaderTooLong {
            len: raw.len(),
            max,
        });
    }
    let mut hdr = setup_header::default();
    let n = raw.len().min(fixed);
    hdr.as_mut_slice()[..n].copy_from_slice(&raw[..n]);
    Ok(hdr)
}

/// Write the zero page at [`BOOT_INFO_START`]; returns its address (the
/// kernel's `rsi`).
pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    info: &BootInfo<'_>,
) -> Result<GuestAddress, BootInfoError> {
    let mut params = boot_params {
        hdr: setup_header_for(info.setup_header)?,
        ..Default::default()
    };
    let hdr = &mut params.hdr;
    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.cmd_line_ptr = info.cmdline.0 as u32;
    hdr.cmdline_size = info.cmdline_size as u32;
    params.ext_cmd_line_ptr = (info.cmdline.0 >> 32) as u32;
    if let Some((addr, size)) = info.initrd {
        params.hdr.ramdisk_image = addr.0 as u32;
        params.hdr.ramdisk_size = size as u32;
        params.ext_ramdisk_image = (addr.0 >> 32) as u32;
        params.ext_ramdisk_size = (size >> 32) as u32;
    }
    if let Some(rsdp) = info.rsdp {
        params.acpi_rsdp_addr = rsdp.0;
    }
    fill_e820(&mut params, info.memory_map)?;
    let at = GuestAddress(BOOT_INFO_START);
    mem.write_obj(params, at)
        .map_err(mem_err("the zero page"))?;
    // Header bytes past the fixed struct (newer kernels) go in verbatim.
    if let Some(raw) = info.setup_header {
        let fixed = size_of::<setup_header>();
        if raw.len() > fixed {
            let tail_at = at.0 + (SETUP_HEADER_OFFSET + fixed) as u64;
            mem.write_slice(&raw[fixed..], GuestAddress(tail_at))
                .map_err(mem_err("the zero page"))?;
        }
    }
    Ok(at)
}

/// Copy `map` into the zero page's e820 table.
fn fill_e820(params: &mut boot_params, map: &[MemoryMapEntry]) -> Result<(), BootInfoError> {
    let max = params.e820_table.len();
    if map.len() > max {
        return Err(BootInfoError::TooManyMemoryMapEntries {
            count: map.len(),
            max,
        });
    }
    for (slot, e) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: e.start,
            size: e.size,
            r#type: e.kind.e820_type(),
        };
    }
    params.e820_entries = map.len() as u8;
    Ok(())
}

#[cfg(test)]
mod tests;
