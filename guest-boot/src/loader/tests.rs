//! Unit tests for kernel loading, on synthetic images in real guest memory.

use vm_memory::{Bytes, GuestAddress};

use super::{load_kernel, GuestRam, KernelFormat, LoadError};
use crate::layout::{CMDLINE_MAX, MIB, MMIO_HOLE_START};
use crate::testutil::{
    build_bzimage, build_elf, file_with, guest_mem, read_mem, BzOpts, Note, Seg,
};

const KERNEL_AT: u64 = 0x100_0000;

fn code(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn load(mib: u64, image: &[u8]) -> Result<super::LoadedKernel, LoadError> {
    load_kernel(&guest_mem(mib), &mut file_with(image), GuestRam::Dirty)
}

fn err(mib: u64, image: &[u8]) -> String {
    load(mib, image).expect_err("load should fail").to_string()
}

#[test]
fn elf_without_note_loads_at_paddr_and_enters_at_e_entry() {
    let mem = guest_mem(64);
    let image = build_elf(
        KERNEL_AT + 0x10,
        &[Seg::identity(KERNEL_AT, code(300))],
        &[],
    );
    let k = load_kernel(&mem, &mut file_with(&image), GuestRam::Dirty).unwrap();
    assert_eq!(k.format, KernelFormat::Elf64);
    assert_eq!(k.entry, GuestAddress(KERNEL_AT + 0x10));
    assert_eq!(k.end, GuestAddress(KERNEL_AT + 300));
    assert_eq!(k.initrd_addr_max, MMIO_HOLE_START);
    assert_eq!(k.cmdline_max, CMDLINE_MAX);
    assert!(k.setup_header.is_none());
    assert_eq!(read_mem(&mem, KERNEL_AT, 300), code(300));
}

#[test]
fn elf_virtual_entry_is_translated_through_its_segment() {
    let seg = Seg {
        paddr: KERNEL_AT,
        vaddr: 0xffff_ffff_8100_0000,
        data: code(0x100),
        memsz: 0x100,
    };
    let k = load(64, &build_elf(0xffff_ffff_8100_0040, &[seg], &[])).unwrap();
    assert_eq!(k.entry, GuestAddress(KERNEL_AT + 0x40));
}

/// Load an ELF whose segment has a 0x200-byte bss over a 0xff sentinel; the bss's bytes after
/// loading, and the kernel's end.
fn load_over_sentinel(ram: GuestRam) -> (Vec<u8>, GuestAddress) {
    let mem = guest_mem(64);
    mem.write_slice(&[0xff; 0x200], GuestAddress(KERNEL_AT + 0x100))
        .unwrap();
    let mut seg = Seg::identity(KERNEL_AT, code(0x100));
    seg.memsz = 0x300;
    let image = build_elf(KERNEL_AT, &[seg], &[]);
    let k = load_kernel(&mem, &mut file_with(&image), ram).unwrap();
    (read_mem(&mem, KERNEL_AT + 0x100, 0x200), k.end)
}

#[test]
fn elf_bss_is_zeroed_and_counts_towards_end() {
    let (bss, end) = load_over_sentinel(GuestRam::Dirty);
    assert_eq!(bss, vec![0; 0x200]);
    assert_eq!(end, GuestAddress(KERNEL_AT + 0x300));
}

#[test]
fn elf_bss_is_not_written_when_ram_is_known_to_be_zero() {
    // Fresh memory would read zero, so the sentinel shows any write.
    let (bss, end) = load_over_sentinel(GuestRam::Zeroed);
    assert_eq!(bss, vec![0xff; 0x200]);
    assert_eq!(end, GuestAddress(KERNEL_AT + 0x300));
}

#[test]
fn elf_bss_only_segment_needs_no_file_bytes() {
    let mem = guest_mem(64);
    mem.write_slice(&[0xff; 0x100], GuestAddress(KERNEL_AT + 0x10_0000))
        .unwrap();
    let bss = Seg {
        paddr: KERNEL_AT + 0x10_0000,
        vaddr: KERNEL_AT + 0x10_0000,
        data: vec![],
        memsz: 0x100,
    };
    let mut image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x10)), bss], &[]);
    // Point the BSS segment's file offset far past the end of the file.
    let offset_field = 64 + 56 + 8;
    image[offset_field..offset_field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let k = load_kernel(&mem, &mut file_with(&image), GuestRam::Dirty).unwrap();
    assert_eq!(read_mem(&mem, KERNEL_AT + 0x10_0000, 0x100), vec![0; 0x100]);
    assert_eq!(k.end, GuestAddress(KERNEL_AT + 0x10_0100));
}

#[test]
fn elf_end_is_the_highest_segment_end() {
    let segs = [
        Seg::identity(KERNEL_AT + 0x20_0000, code(0x80)),
        Seg::identity(KERNEL_AT, code(0x40)),
    ];
    let k = load(64, &build_elf(KERNEL_AT, &segs, &[])).unwrap();
    assert_eq!(k.end, GuestAddress(KERNEL_AT + 0x20_0080));
}

#[test]
fn pvh_note_with_4_byte_value_selects_pvh_entry() {
    let image = build_elf(
        0xffff_ffff_8100_0000,
        &[Seg::identity(KERNEL_AT, code(0x100))],
        &[Note::pvh32(KERNEL_AT as u32 + 0x20)],
    );
    let k = load(64, &image).unwrap();
    assert_eq!(k.format, KernelFormat::PvhElf);
    assert_eq!(k.entry, GuestAddress(KERNEL_AT + 0x20));
    assert_eq!(k.initrd_addr_max, MMIO_HOLE_START);
}

#[test]
fn pvh_note_with_8_byte_value_is_read_whole() {
    let note = Note {
        name: b"Xen\0".to_vec(),
        kind: 18,
        desc: (KERNEL_AT + 0x30).to_le_bytes().to_vec(),
    };
    let image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x100))], &[note]);
    let k = load(64, &image).unwrap();
    assert_eq!(k.format, KernelFormat::PvhElf);
    assert_eq!(k.entry, GuestAddress(KERNEL_AT + 0x30));
}

#[test]
fn pvh_note_is_found_after_other_notes() {
    let other = Note {
        name: b"GNU\0".to_vec(),
        kind: 3,
        desc: vec![1, 2, 3, 4, 5, 6, 7],
    };
    let not_xen = Note {
        name: b"Linux\0".to_vec(),
        kind: 18,
        desc: vec![0; 4],
    };
    let notes = [other, not_xen, Note::pvh32(KERNEL_AT as u32 + 8)];
    let image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x100))], &notes);
    let k = load(64, &image).unwrap();
    assert_eq!(k.entry, GuestAddress(KERNEL_AT + 8));
}

#[test]
fn notes_without_pvh_entry_leave_a_plain_elf() {
    let note = Note {
        name: b"Xen\0".to_vec(),
        kind: 17,
        desc: vec![0; 4],
    };
    let image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x10))], &[note]);
    assert_eq!(load(64, &image).unwrap().format, KernelFormat::Elf64);
}

#[test]
fn pvh_note_of_odd_size_is_rejected() {
    let note = Note {
        name: b"Xen\0".to_vec(),
        kind: 18,
        desc: vec![0; 2],
    };
    let image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x10))], &[note]);
    assert!(err(64, &image).contains("holds 2 bytes; expected 4 or 8"));
}

#[test]
fn pvh_entry_outside_the_image_is_rejected() {
    let image = build_elf(
        KERNEL_AT,
        &[Seg::identity(KERNEL_AT, code(0x10))],
        &[Note::pvh32(0x200_0000)],
    );
    assert_eq!(
        err(64, &image),
        "PVH entry point 0x2000000 is outside every loadable segment"
    );
}

#[test]
fn malformed_note_is_rejected() {
    let mut image = build_elf(
        KERNEL_AT,
        &[Seg::identity(KERNEL_AT, code(0x10))],
        &[Note::pvh32(0)],
    );
    // The note segment's data starts right after the two program headers.
    let note_at = 64 + 2 * 56;
    image[note_at..note_at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(err(64, &image).starts_with("malformed ELF note in segment 0"));
}

#[test]
fn empty_file_is_rejected() {
    let e = load(64, &[]).unwrap_err();
    assert!(matches!(e, LoadError::Empty));
    assert_eq!(e.to_string(), "the file is empty");
}

#[test]
fn garbage_is_not_a_kernel() {
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 256) as u8).collect();
    assert!(matches!(load(64, &garbage), Err(LoadError::UnknownFormat)));
    assert!(matches!(load(64, b"hello"), Err(LoadError::UnknownFormat)));
}

#[test]
fn truncated_elf_header_is_reported() {
    assert_eq!(
        err(64, b"\x7fELF\x02\x01\x01"),
        "truncated: the ELF header ends at byte 64 but the file has 7 bytes"
    );
}

#[test]
fn truncated_segment_names_its_end_and_the_file_length() {
    let image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x100))], &[]);
    let full = image.len();
    let cut = &image[..full - 0x10];
    assert_eq!(
        err(64, cut),
        format!(
            "truncated: segment 0 ends at byte {full} but the file has {} bytes",
            full - 0x10
        )
    );
}

#[test]
fn truncated_program_headers_are_reported() {
    let image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x100))], &[]);
    assert!(
        err(64, &image[..100]).starts_with("truncated: the program header table ends at byte 120")
    );
}

#[test]
fn segment_beyond_ram_is_rejected_with_ram_size() {
    let mut seg = Seg::identity(60 * MIB, code(0x10));
    seg.memsz = 8 * MIB;
    let image = build_elf(60 * MIB, &[seg], &[]);
    assert_eq!(
        err(64, &image),
        "segment 0 at 0x3c00000..0x4400000 does not fit in guest RAM (64 MiB)"
    );
}

#[test]
fn segment_below_1_mib_is_rejected() {
    let image = build_elf(0x8000, &[Seg::identity(0x8000, code(0x10))], &[]);
    assert!(err(64, &image).contains("starts below 1 MiB"));
}

#[test]
fn segment_with_file_size_above_memory_size_is_rejected() {
    let mut seg = Seg::identity(KERNEL_AT, code(0x100));
    seg.memsz = 0x10;
    let image = build_elf(KERNEL_AT, &[seg], &[]);
    assert!(err(64, &image).contains("more than its memory size"));
}

#[test]
fn elf_without_loadable_segments_is_rejected() {
    let image = build_elf(KERNEL_AT, &[], &[Note::pvh32(0)]);
    assert_eq!(err(64, &image), "the ELF image has no loadable segments");
}

#[test]
fn entry_outside_every_segment_is_rejected() {
    let image = build_elf(0x5000_0000, &[Seg::identity(KERNEL_AT, code(0x10))], &[]);
    assert_eq!(
        err(64, &image),
        "entry point 0x50000000 is outside every loadable segment"
    );
}

#[test]
fn elf32_and_foreign_machines_are_rejected() {
    let mut image = build_elf(KERNEL_AT, &[Seg::identity(KERNEL_AT, code(0x10))], &[]);
    image[18] = 183; // EM_AARCH64
    assert_eq!(err(64, &image), "ELF machine 183 is not x86-64 (62)");
    image[4] = 1; // ELFCLASS32
    assert!(err(64, &image).starts_with("a 32-bit ELF image"));
}

#[test]
fn bzimage_loads_protected_mode_part_at_1_mib() {
    let mem = guest_mem(64);
    let opts = BzOpts::default();
    let image = build_bzimage(&opts);
    let k = load_kernel(&mem, &mut file_with(&image), GuestRam::Dirty).unwrap();
    assert_eq!(k.format, KernelFormat::BzImage);
    assert_eq!(k.entry, GuestAddress(MIB + 0x200));
    assert_eq!(read_mem(&mem, MIB, opts.payload.len()), opts.payload);
    assert_eq!(k.setup_header.as_deref(), Some(&image[0x1f1..0x26c]));
    assert_eq!(k.cmdline_max, 2048);
    assert_eq!(k.initrd_addr_max, 0x8000_0000);
}

#[test]
fn bzimage_end_covers_init_size_above_pref_address() {
    // Relocatable: 1 MiB aligned up to 2 MiB is below pref_address (16 MiB).
    let k = load(64, &build_bzimage(&BzOpts::default())).unwrap();
    assert_eq!(k.end, GuestAddress(0x100_0000 + 0x80_0000));
    let opts = BzOpts {
        pref_address: 0,
        ..BzOpts::default()
    };
    let k = load(64, &build_bzimage(&opts)).unwrap();
    assert_eq!(k.end, GuestAddress(0x20_0000 + 0x80_0000));
}

#[test]
fn bzimage_setup_sects_zero_means_four() {
    let opts = BzOpts {
        setup_sects: 0,
        ..BzOpts::default()
    };
    let mem = guest_mem(64);
    load_kernel(&mem, &mut file_with(&build_bzimage(&opts)), GuestRam::Dirty).unwrap();
    assert_eq!(read_mem(&mem, MIB, 64), opts.payload[..64]);
}

#[test]
fn bzimage_too_old_protocol_names_the_version() {
    let opts = BzOpts {
        version: 0x0205,
        ..BzOpts::default()
    };
    assert_eq!(
        err(64, &build_bzimage(&opts)),
        "boot protocol 2.05 is too old; flint needs 2.06 or newer"
    );
}

#[test]
fn bzimage_without_64_bit_entry_is_rejected() {
    let opts = BzOpts {
        xloadflags: 0x02,
        ..BzOpts::default()
    };
    assert!(err(64, &build_bzimage(&opts)).contains("XLF_KERNEL_64"));
}

#[test]
fn zimage_without_loaded_high_is_rejected() {
    let opts = BzOpts {
        loadflags: 0,
        ..BzOpts::default()
    };
    assert!(err(64, &build_bzimage(&opts)).contains("LOADED_HIGH"));
}

#[test]
fn bzimage_with_truncated_payload_is_rejected() {
    let image = build_bzimage(&BzOpts::default());
    let cut = &image[..image.len() - 32];
    assert_eq!(
        err(64, cut),
        format!(
            "truncated: the protected-mode kernel (syssize) ends at byte {} but the file has {} bytes",
            image.len(),
            cut.len()
        )
    );
}

#[test]
fn bzimage_with_only_setup_code_is_rejected() {
    let image = build_bzimage(&BzOpts::default());
    assert!(err(64, &image[..4 * 512]).starts_with("truncated: the setup code"));
}

#[test]
fn bzimage_whose_init_size_exceeds_ram_is_rejected() {
    let opts = BzOpts {
        init_size: 100 << 20,
        ..BzOpts::default()
    };
    let e = err(64, &build_bzimage(&opts));
    assert!(e.contains("does not fit in guest RAM (64 MiB)"), "{e}");
}

#[test]
fn bzimage_cmdline_size_is_capped_to_the_cmdline_area() {
    let opts = BzOpts {
        cmdline_size: u32::MAX,
        ..BzOpts::default()
    };
    let k = load(64, &build_bzimage(&opts)).unwrap();
    assert_eq!(k.cmdline_max, 0x9_FC00 - 0x2_0000);
}
