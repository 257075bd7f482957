//! Unit tests for the zero page and `hvm_start_info`, read back from memory.

use linux_loader::bootparam::boot_params;
use linux_loader::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::layout::{memory_map, CMDLINE_START, MIB};
use crate::testutil::{build_bzimage, guest_mem, read_mem, BzOpts};

fn info(map: &[MemoryMapEntry]) -> BootInfo<'_> {
    BootInfo {
        memory_map: map,
        cmdline: GuestAddress(CMDLINE_START),
        cmdline_size: 42,
        initrd: None,
        rsdp: None,
        setup_header: None,
    }
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

#[test]
fn start_info_carries_magic_cmdline_and_memory_map() {
    let mem = guest_mem(64);
    let map = memory_map(3500 * MIB);
    let at = write_start_info(&mem, &info(&map)).unwrap();
    assert_eq!(at, GuestAddress(BOOT_INFO_START));
    let s: hvm_start_info = mem.read_obj(at).unwrap();
    let (magic, version, nr_modules) = (s.magic, s.version, s.nr_modules);
    assert_eq!((magic, version, nr_modules), (0x336e_c578, 1, 0));
    let (cmdline, rsdp, memmap, entries) = (
        s.cmdline_paddr,
        s.rsdp_paddr,
        s.memmap_paddr,
        s.memmap_entries,
    );
    assert_eq!(
        (cmdline, rsdp, memmap, entries),
        (CMDLINE_START, 0, PVH_MEMMAP_START, 4)
    );
    for (i, want) in map.iter().enumerate() {
        let e: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(PVH_MEMMAP_START + 24 * i as u64))
            .unwrap();
        let (addr, size, kind) = (e.addr, e.size, e.type_);
        assert_eq!(
            (addr, size, kind),
            (want.start, want.size, want.kind.e820_type())
        );
    }
}

#[test]
fn start_info_lists_the_initrd_as_module_0() {
    let mem = guest_mem(64);
    let map = memory_map(64 * MIB);
    let mut i = info(&map);
    i.initrd = Some((GuestAddress(0x300_0000), 12345));
    i.rsdp = Some(GuestAddress(0xe_0000));
    write_start_info(&mem, &i).unwrap();
    let s: hvm_start_info = mem.read_obj(GuestAddress(BOOT_INFO_START)).unwrap();
    let (n, list, rsdp) = (s.nr_modules, s.modlist_paddr, s.rsdp_paddr);
    assert_eq!((n, list, rsdp), (1, PVH_MEMMAP_START + 3 * 24, 0xe_0000));
    let m: hvm_modlist_entry = mem.read_obj(GuestAddress(list)).unwrap();
    let (paddr, size, cmdline) = (m.paddr, m.size, m.cmdline_paddr);
    assert_eq!((paddr, size, cmdline), (0x300_0000, 12345, 0));
}

#[test]
fn start_info_rejects_a_memory_map_larger_than_its_page() {
    let mem = guest_mem(16);
    let map = vec![memory_map(16 * MIB)[0]; 400];
    let e = write_start_info(&mem, &info(&map)).unwrap_err();
    assert!(matches!(
        e,
        BootInfoError::TooManyMemoryMapEntries { count: 400, .. }
    ));
}

#[test]
fn zero_page_for_elf_has_a_built_header() {
    let mem = guest_mem(64);
    let map = memory_map(64 * MIB);
    write_zero_page(&mem, &info(&map)).unwrap();
    let zp = read_mem(&mem, BOOT_INFO_START, 4096);
    assert_eq!(&zp[0x1fe..0x200], &[0x55, 0xaa]);
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(u16::from_le_bytes([zp[0x206], zp[0x207]]), 0x020f);
    assert_eq!((zp[0x210], zp[0x211] & 1), (0xff, 1));
    assert_eq!(u32_at(&zp, 0x228), CMDLINE_START as u32);
    assert_eq!(u32_at(&zp, 0x238), 42);
    assert_eq!((u32_at(&zp, 0x218), u32_at(&zp, 0x21c)), (0, 0));
    assert_eq!(u64_at(&zp, 0x070), 0);
}

#[test]
fn zero_page_e820_table_matches_the_memory_map() {
    let mem = guest_mem(64);
    let map = memory_map(5000 * MIB);
    write_zero_page(&mem, &info(&map)).unwrap();
    let zp = read_mem(&mem, BOOT_INFO_START, 4096);
    assert_eq!(zp[0x1e8], 4);
    for (i, want) in map.iter().enumerate() {
        let at = 0x2d0 + 20 * i;
        assert_eq!(u64_at(&zp, at), want.start);
        assert_eq!(u64_at(&zp, at + 8), want.size);
        assert_eq!(u32_at(&zp, at + 16), want.kind.e820_type());
    }
    assert_eq!(u64_at(&zp, 0x2d0 + 20 * 4 + 8), 0);
}

#[test]
fn zero_page_carries_initrd_high_bits_and_rsdp() {
    let mem = guest_mem(64);
    let map = memory_map(64 * MIB);
    let mut i = info(&map);
    i.initrd = Some((GuestAddress(0x1_2345_6000), 0x2_0000_0010));
    i.rsdp = Some(GuestAddress(0xe_0000));
    write_zero_page(&mem, &i).unwrap();
    let p: boot_params = mem.read_obj(GuestAddress(BOOT_INFO_START)).unwrap();
    let (image, size) = (p.hdr.ramdisk_image, p.hdr.ramdisk_size);
    let (ext_image, ext_size, rsdp) = (p.ext_ramdisk_image, p.ext_ramdisk_size, p.acpi_rsdp_addr);
    assert_eq!((image, size), (0x2345_6000, 0x10));
    assert_eq!((ext_image, ext_size), (1, 2));
    assert_eq!(rsdp, 0xe_0000);
}

#[test]
fn zero_page_for_bzimage_copies_the_kernel_header() {
    let mem = guest_mem(64);
    let image = build_bzimage(&BzOpts::default());
    let raw = &image[0x1f1..0x26c];
    let map = memory_map(64 * MIB);
    let mut i = info(&map);
    i.setup_header = Some(raw);
    write_zero_page(&mem, &i).unwrap();
    let zp = read_mem(&mem, BOOT_INFO_START, 4096);
    // Untouched fields are the kernel's: setup_sects, version, xloadflags, init_size.
    assert_eq!(zp[0x1f1], 3);
    assert_eq!(&zp[0x206..0x208], &image[0x206..0x208]);
    assert_eq!(&zp[0x236..0x238], &image[0x236..0x238]);
    assert_eq!(&zp[0x260..0x264], &image[0x260..0x264]);
    // The loader fields are flint's.
    assert_eq!(zp[0x210], 0xff);
    assert_eq!(u32_at(&zp, 0x228), CMDLINE_START as u32);
}

#[test]
fn zero_page_rejects_an_oversized_setup_header() {
    let mem = guest_mem(16);
    let map = memory_map(16 * MIB);
    let raw = vec![0u8; 0x100];
    let mut i = info(&map);
    i.setup_header = Some(&raw);
    assert!(matches!(
        write_zero_page(&mem, &i),
        Err(BootInfoError::SetupHeaderTooLong { len: 0x100, .. })
    ));
}
