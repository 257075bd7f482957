//! What the monitor handed over, from either boot protocol:
//! - PVH: `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h),
//!   its module list and memory map;
//! - Linux 64-bit boot protocol: `struct boot_params`, the zero page
//!   (Documentation/arch/x86/zero-page.rst and boot.rst).
//!
//! Every pointer is checked against the identity map before it is read.

use crate::mem::{le, le32, le64, phys, PHYS_LIMIT};

/// `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// Longest command line read (bytes, NUL excluded).
const CMDLINE_LIMIT: usize = 4096;
/// Most memory-map entries / modules looked at.
const MAX_ENTRIES: u64 = 1024;

/// How the probe was entered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// 32-bit PVH entry from the ELF note.
    Pvh,
    /// 64-bit Linux boot protocol entry (`e_entry`).
    Linux64,
}

/// Layout of one memory-map entry.
#[derive(Clone, Copy)]
enum MapFormat {
    /// `hvm_memmap_table_entry`: addr u64, size u64, type u32, reserved u32.
    Pvh,
    /// e820: addr u64, size u64, type u32, packed.
    E820,
}

/// One memory-map entry.
pub struct MemEntry {
    /// First byte.
    pub start: u64,
    /// Length.
    pub size: u64,
    /// e820 type (1 = RAM).
    pub kind: u32,
}

/// The boot information, whichever protocol delivered it.
pub struct BootInfo {
    /// The command line bytes (no NUL).
    pub cmdline: &'static [u8],
    map: &'static [u8],
    map_format: MapFormat,
    /// RSDP address (0: not given).
    pub rsdp: u64,
    modules: &'static [u8],
    ramdisk: Option<(u64, u64)>,
    /// Address of `hvm_start_info` / the zero page.
    pub info_addr: u64,
    /// False when the PVH magic did not match (nothing else was read).
    pub valid: bool,
}

impl BootInfo {
    /// Reads the boot information at `info_addr` for `entry`.
    pub fn read(entry: Entry, info_addr: u64) -> BootInfo {
        let mut info = BootInfo {
            cmdline: &[],
            map: &[],
            map_format: MapFormat::E820,
            rsdp: 0,
            modules: &[],
            ramdisk: None,
            info_addr,
            valid: false,
        };
        match entry {
            Entry::Pvh => info.read_pvh(),
            Entry::Linux64 => info.read_zero_page(),
        }
        info
    }

    fn read_pvh(&mut self) {
        let Some(si) = phys(self.info_addr, 56) else {
            return;
        };
        if le32(si, 0) != Some(PVH_MAGIC) {
            return;
        }
        self.valid = true;
        let version = le32(si, 4).unwrap_or(0);
        let nr_modules = le32(si, 12).map_or(0, u64::from).min(MAX_ENTRIES);
        let modlist = le64(si, 16).unwrap_or(0);
        self.modules = phys(modlist, nr_modules * 32).unwrap_or(&[]);
        self.cmdline = cstring(le64(si, 24).unwrap_or(0));
        self.rsdp = le64(si, 32).unwrap_or(0);
        if version >= 1 {
            let map = le64(si, 40).unwrap_or(0);
            let entries = le32(si, 48).map_or(0, u64::from).min(MAX_ENTRIES);
            self.map = phys(map, entries * 24).unwrap_or(&[]);
            self.map_format = MapFormat::Pvh;
        }
    }

    fn read_zero_page(&mut self) {
        let Some(zp) = phys(self.info_addr, 4096) else {
            return;
        };
        self.valid = true;
        let cmdline =
            le32(zp, 0x228).map_or(0, u64::from) | le32(zp, 0x0c8).map_or(0, u64::from) << 32;
        self.cmdline = cstring(cmdline);
        let entries = le(zp, 0x1e8, 1).unwrap_or(0).min(128);
        self.map = zp.get(0x2d0..0x2d0 + entries as usize * 20).unwrap_or(&[]);
        self.map_format = MapFormat::E820;
        self.rsdp = le64(zp, 0x070).unwrap_or(0);
        let image =
            le32(zp, 0x218).map_or(0, u64::from) | le32(zp, 0x0c0).map_or(0, u64::from) << 32;
        let size =
            le32(zp, 0x21c).map_or(0, u64::from) | le32(zp, 0x0c4).map_or(0, u64::from) << 32;
        if size != 0 {
            self.ramdisk = Some((image, size));
        }
    }

    /// The memory-map entries in order.
    pub fn memory_map(&self) -> impl Iterator<Item = MemEntry> + '_ {
        let stride = match self.map_format {
            MapFormat::Pvh => 24,
            MapFormat::E820 => 20,
        };
        self.map.chunks_exact(stride).map(|e| MemEntry {
            start: le64(e, 0).unwrap_or(0),
            size: le64(e, 8).unwrap_or(0),
            kind: le32(e, 16).unwrap_or(0),
        })
    }

    /// The initrd(s): (address, size) of each PVH module or the Linux ramdisk.
    pub fn initrds(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.modules
            .chunks_exact(32)
            .map(|m| (le64(m, 0).unwrap_or(0), le64(m, 8).unwrap_or(0)))
            .chain(self.ramdisk)
    }
}

/// The NUL-terminated string at `addr` (at most [`CMDLINE_LIMIT`] bytes).
fn cstring(addr: u64) -> &'static [u8] {
    if addr >= PHYS_LIMIT {
        return &[];
    }
    let Some(limit) = phys(addr, (PHYS_LIMIT - addr).min(CMDLINE_LIMIT as u64)) else {
        return &[];
    };
    let len = limit.iter().position(|&b| b == 0).unwrap_or(limit.len());
    &limit[..len]
}
