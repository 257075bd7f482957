//! The vCPU state at the first guest instruction, as plain data, and the
//! memory it relies on: the entry GDT at [`GDT_START`] and identity page
//! tables at [`PAGE_TABLES_START`].
//!
//! Two entry conventions:
//! - PVH (xen docs/misc/pvh.pandoc): 32-bit protected mode, paging off,
//!   flat 4 GiB code/data segments, `rbx` = `hvm_start_info`.
//! - Linux 64-bit boot protocol (Documentation/arch/x86/boot.rst, "64-bit
//!   boot protocol"): long mode, identity-mapped paging, `__BOOT_CS` = 0x10,
//!   `__BOOT_DS` = 0x18, `rsi` = zero page.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{BOOT_STACK_POINTER, GDT_START, PAGE_TABLES_START};

/// A segment register's visible selector and hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit in bytes (already scaled by granularity).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Descriptor type field (4 bits).
    pub type_: u8,
    /// Present.
    pub present: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operand size (32-bit).
    pub db: bool,
    /// Code/data (true) or system (false) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity: limit in 4 KiB units.
    pub g: bool,
}

/// The vCPU state at the kernel's first instruction, as plain data that
/// `vmm` turns into `KVM_SET_REGS` / `KVM_SET_SREGS` / `KVM_SET_MSRS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryState {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer (0 where the protocol leaves it undefined).
    pub rsp: u64,
    /// `rbx`: `hvm_start_info` address under PVH.
    pub rbx: u64,
    /// `rsi`: zero-page address under the Linux boot protocol.
    pub rsi: u64,
    /// Flags (bit 1 is always set).
    pub rflags: u64,
    /// Code segment.
    pub cs: Segment,
    /// Data segments (ds, es, fs, gs, ss all get this).
    pub ds: Segment,
    /// Task register.
    pub tr: Segment,
    /// GDT base and limit.
    pub gdt: (u64, u16),
    /// Control registers.
    pub cr0: u64,
    /// Page-table root (0 with paging off).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// GDT selector of the code segment (`__BOOT_CS`).
pub const CODE_SELECTOR: u16 = 0x10;
/// GDT selector of the data segment (`__BOOT_DS`).
pub const DATA_SELECTOR: u16 = 0x18;
/// GDT selector of the task state segment.
pub const TSS_SELECTOR: u16 = 0x20;
/// Number of GDT descriptors written: null, unused, code, data, TSS.
pub const GDT_ENTRIES: usize = 5;

/// Descriptor flags (the access byte in bits 0-7, G/DB/L/AVL in bits 12-15)
/// of a flat 32-bit code segment: G=1, D/B=1, P=1, S=1, type 0xb.
const CODE32_FLAGS: u16 = 0xc09b;
/// A 64-bit code segment: G=1, L=1, P=1, S=1, type 0xb.
const CODE64_FLAGS: u16 = 0xa09b;
/// A flat read/write data segment: G=1, D/B=1, P=1, S=1, type 0x3.
const DATA_FLAGS: u16 = 0xc093;
/// A busy 32/64-bit TSS: G=1, P=1, S=0, type 0xb.
const TSS_FLAGS: u16 = 0x808b;
/// Largest 20-bit limit (4 GiB with G=1).
const FLAT_LIMIT: u32 = 0xf_ffff;

/// CR0 bits. Long-mode entry uses Linux's own `CR0_STATE` (0x8005_0033).
const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_AM: u64 = 1 << 18;
const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
const CR4_PAE: u64 = 1 << 5;
/// EFER.LME and EFER.LMA.
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1, always set.
const RFLAGS_RESERVED: u64 = 1 << 1;

/// Page-table entry bits: present, writable, 2 MiB page.
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_HUGE: u64 = 1 << 7;
/// Page directories written (each maps 1 GiB).
const PAGE_DIRECTORIES: u64 = 4;

/// Which processor mode the kernel is entered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMode {
    /// PVH: 32-bit protected mode, paging off.
    Pvh32,
    /// Linux 64-bit boot protocol: long mode with identity paging.
    Linux64,
}

/// Why the GDT or page tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The GDT does not fit in guest memory.
    #[error("cannot write the GDT at {GDT_START:#x}")]
    Gdt(#[source] GuestMemoryError),
    /// The page tables do not fit in guest memory.
    #[error("cannot write the page tables at {PAGE_TABLES_START:#x}")]
    PageTables(#[source] GuestMemoryError),
}

/// Encode a segment descriptor from `flags` (access byte in bits 0-7,
/// G/DB/L/AVL in bits 12-15, e.g. 0xa09b for 64-bit code),
/// `base` and a 20-bit `limit`.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = u64::from(base);
    let limit = u64::from(limit);
    ((base & 0xff00_0000) << 32)
        | (u64::from(flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The segment register state (selector plus hidden part) that loading
/// descriptor `entry` with `selector` produces.
pub fn segment_from_descriptor(entry: u64, selector: u16) -> Segment {
    let raw_limit = ((entry >> 32) & 0x000f_0000) | (entry & 0xffff);
    let g = (entry >> 55) & 1 == 1;
    Segment {
        base: ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff),
        limit: if g {
            ((raw_limit << 12) | 0xfff) as u32
        } else {
            raw_limit as u32
        },
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: (entry >> 47) & 1 == 1,
        dpl: ((entry >> 45) & 3) as u8,
        db: (entry >> 54) & 1 == 1,
        s: (entry >> 44) & 1 == 1,
        l: (entry >> 53) & 1 == 1,
        g,
    }
}

/// The entry GDT for `mode`: null, unused, code, data, TSS.
pub fn gdt(mode: EntryMode) -> [u64; GDT_ENTRIES] {
    let code = match mode {
        EntryMode::Pvh32 => CODE32_FLAGS,
        EntryMode::Linux64 => CODE64_FLAGS,
    };
    [
        0,
        0,
        gdt_entry(code, 0, FLAT_LIMIT),
        gdt_entry(DATA_FLAGS, 0, FLAT_LIMIT),
        gdt_entry(TSS_FLAGS, 0, FLAT_LIMIT),
    ]
}

/// Write [`gdt`]`(mode)` at [`GDT_START`].
pub fn write_gdt(mem: &GuestMemoryMmap, mode: EntryMode) -> Result<(), EntryError> {
    let bytes: Vec<u8> = gdt(mode).iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(GDT_START))
        .map_err(EntryError::Gdt)
}

/// Write identity page tables for the first 4 GiB at [`PAGE_TABLES_START`]:
/// a PML4, one PDPT, and four page directories of 2 MiB pages.
pub fn write_page_tables(mem: &GuestMemoryMmap) -> Result<(), EntryError> {
    let pml4 = PAGE_TABLES_START;
    let pdpt = pml4 + 0x1000;
    let pd = |i: u64| pdpt + 0x1000 * (i + 1);
    let write = |table: &[u64], at: u64| {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(at))
            .map_err(EntryError::PageTables)
    };
    let mut table = [0u64; 512];
    table[0] = pdpt | PTE_PRESENT | PTE_WRITABLE;
    write(&table, pml4)?;
    table = [0; 512];
    for i in 0..PAGE_DIRECTORIES {
        table[i as usize] = pd(i) | PTE_PRESENT | PTE_WRITABLE;
    }
    write(&table, pdpt)?;
    for i in 0..PAGE_DIRECTORIES {
        for (j, e) in table.iter_mut().enumerate() {
            *e = ((i << 30) | ((j as u64) << 21)) | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE;
        }
        write(&table, pd(i))?;
    }
    Ok(())
}

/// The GDT's register value (base, limit).
fn gdt_register() -> (u64, u16) {
    (GDT_START, (GDT_ENTRIES * 8 - 1) as u16)
}

/// Segment registers from the GDT of `mode`.
fn segments(mode: EntryMode) -> (Segment, Segment, Segment) {
    let table = gdt(mode);
    let at = |sel: u16| segment_from_descriptor(table[usize::from(sel) / 8], sel);
    (at(CODE_SELECTOR), at(DATA_SELECTOR), at(TSS_SELECTOR))
}

/// Entry state for a PVH kernel at `entry` with `hvm_start_info` at `start_info`.
pub fn pvh_entry_state(entry: GuestAddress, start_info: GuestAddress) -> EntryState {
    let (cs, ds, tr) = segments(EntryMode::Pvh32);
    EntryState {
        rip: entry.0,
        rsp: BOOT_STACK_POINTER,
        rbx: start_info.0,
        rflags: RFLAGS_RESERVED,
        cs,
        ds,
        tr,
        gdt: gdt_register(),
        cr0: CR0_PE | CR0_ET,
        ..EntryState::default()
    }
}

/// Entry state for the Linux 64-bit boot protocol: kernel at `entry`, zero
/// page at `zero_page`.
pub fn linux64_entry_state(entry: GuestAddress, zero_page: GuestAddress) -> EntryState {
    let (cs, ds, tr) = segments(EntryMode::Linux64);
    EntryState {
        rip: entry.0,
        rsp: BOOT_STACK_POINTER,
        rsi: zero_page.0,
        rflags: RFLAGS_RESERVED,
        cs,
        ds,
        tr,
        gdt: gdt_register(),
        cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG,
        cr3: PAGE_TABLES_START,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        ..EntryState::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{guest_mem, read_mem};

    fn words(bytes: &[u8]) -> Vec<u64> {
        bytes
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn linux64_gdt_has_boot_cs_and_ds_at_0x10_and_0x18() {
        let mem = guest_mem(16);
        write_gdt(&mem, EntryMode::Linux64).unwrap();
        let gdt = words(&read_mem(&mem, GDT_START, 40));
        assert_eq!(
            gdt,
            vec![
                0,
                0,
                0x00af_9b00_0000_ffff,
                0x00cf_9300_0000_ffff,
                0x008f_8b00_0000_ffff
            ]
        );
    }

    #[test]
    fn pvh_gdt_has_a_32_bit_code_segment() {
        assert_eq!(gdt(EntryMode::Pvh32)[2], 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn descriptor_round_trips_base_and_limit() {
        let d = gdt_entry(0x4093, 0x1234_5678, 0xa_bcde);
        let s = segment_from_descriptor(d, 0x18);
        assert_eq!(
            (s.base, s.limit, s.type_, s.g, s.db),
            (0x1234_5678, 0xa_bcde, 3, false, true)
        );
    }

    #[test]
    fn page_tables_identity_map_4_gib_in_2_mib_pages() {
        let mem = guest_mem(16);
        write_page_tables(&mem).unwrap();
        let pml4 = words(&read_mem(&mem, PAGE_TABLES_START, 4096));
        assert_eq!(pml4[0], 0xa003);
        assert!(pml4[1..].iter().all(|&e| e == 0));
        let pdpt = words(&read_mem(&mem, 0xa000, 4096));
        assert_eq!(&pdpt[..5], &[0xb003, 0xc003, 0xd003, 0xe003, 0]);
        let pd0 = words(&read_mem(&mem, 0xb000, 4096));
        assert_eq!((pd0[0], pd0[1], pd0[511]), (0x83, 0x20_0083, 0x3fe0_0083));
        let pd3 = words(&read_mem(&mem, 0xe000, 4096));
        assert_eq!(pd3[511], 0xffe0_0083);
    }

    #[test]
    fn linux64_state_is_long_mode_with_paging() {
        let s = linux64_entry_state(GuestAddress(0x100_0000), GuestAddress(0x6000));
        assert_eq!((s.rip, s.rsi, s.rbx, s.rflags), (0x100_0000, 0x6000, 0, 2));
        assert_eq!(
            (s.cr0, s.cr3, s.cr4, s.efer),
            (0x8005_0033, 0x9000, 0x20, 0x500)
        );
        assert_eq!(
            (s.cs.selector, s.cs.l, s.cs.db, s.cs.type_),
            (0x10, true, false, 0xb)
        );
        assert_eq!(
            (s.ds.selector, s.ds.type_, s.ds.limit),
            (0x18, 3, 0xffff_ffff)
        );
        assert_eq!(
            (s.tr.selector, s.tr.type_, s.tr.s, s.tr.present),
            (0x20, 0xb, false, true)
        );
        assert_eq!(s.gdt, (0x500, 39));
    }

    #[test]
    fn pvh_state_is_flat_protected_mode_without_paging() {
        let s = pvh_entry_state(GuestAddress(0x100_0100), GuestAddress(0x6000));
        assert_eq!((s.rip, s.rbx, s.rsi, s.rflags), (0x100_0100, 0x6000, 0, 2));
        assert_eq!((s.cr0, s.cr3, s.cr4, s.efer), (0x11, 0, 0, 0));
        let cs = s.cs;
        assert_eq!(
            (cs.type_, cs.db, cs.l, cs.g, cs.s, cs.present),
            (0xb, true, false, true, true, true)
        );
        assert_eq!((cs.base, cs.limit), (0, 0xffff_ffff));
        assert_eq!((s.ds.type_, s.ds.db), (3, true));
    }
}
