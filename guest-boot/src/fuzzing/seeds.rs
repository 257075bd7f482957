//! The seed corpus of the `kernel_loader` fuzz target, built from the
//! synthetic kernels of `testutil`: each seed must boot-prepare, and match
//! its file under `fuzz/corpus/kernel_loader/`. After a change to the
//! input format, rewrite the files with
//! `FLINT_WRITE_SEEDS=1 cargo test -p guest-boot seeds`.

use std::path::PathBuf;

use super::run;
use crate::loader::KernelFormat;
use crate::testutil::{build_bzimage, build_elf, BzOpts, Note, Seg};

/// Where the synthetic ELF kernels load.
const KERNEL_AT: u64 = 0x20_0000;

/// A fuzz input: `flags`, 1 vCPU, `devices`, `cmdline`, an initrd when
/// `flags & 4`, then `kernel`.
fn case(flags: u8, devices: u8, cmdline: &str, initrd: &[u8], kernel: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, 1, devices];
    v.extend_from_slice(&(cmdline.len() as u16).to_le_bytes());
    v.extend_from_slice(cmdline.as_bytes());
    v.extend_from_slice(&(initrd.len() as u32).to_le_bytes());
    v.extend_from_slice(&(initrd.len() as u16).to_le_bytes());
    v.extend_from_slice(initrd);
    v.extend_from_slice(kernel);
    v
}

/// RAM size indices into `MEM_MIB`, shifted into place.
const MIB_4: u8 = 2 << 4;
const MIB_32: u8 = 5 << 4;

fn seeds() -> Vec<(&'static str, Vec<u8>, KernelFormat)> {
    let code = vec![0x90; 0x200];
    let pvh = build_elf(
        KERNEL_AT,
        &[Seg::identity(KERNEL_AT, code.clone())],
        &[Note::pvh32(KERNEL_AT as u32 + 0x10)],
    );
    let vmlinux = {
        let mut seg = Seg::identity(KERNEL_AT, code.clone());
        seg.vaddr = 0xffff_ffff_8100_0000;
        seg.memsz = 0x1000;
        build_elf(seg.vaddr + 0x20, &[seg], &[])
    };
    let bz = build_bzimage(&BzOpts {
        payload: code,
        ..BzOpts::default()
    });
    let old_bz = build_bzimage(&BzOpts {
        version: 0x0206,
        payload: vec![0xf4; 64],
        ..BzOpts::default()
    });
    vec![
        (
            "pvh-acpi",
            case(1 | MIB_4, 2, "quiet", &[], &pvh),
            KernelFormat::PvhElf,
        ),
        (
            "pvh-initrd-cmdline-devices",
            case(2 | 4 | MIB_4, 3, "init=/bin/sh", b"initrd!", &pvh),
            KernelFormat::PvhElf,
        ),
        (
            "vmlinux",
            case(3 | MIB_4, 1, "", &[], &vmlinux),
            KernelFormat::Elf64,
        ),
        (
            "bzimage-initrd",
            case(1 | 4 | MIB_32, 1, "root=/dev/vda", &[7; 100], &bz),
            KernelFormat::BzImage,
        ),
        (
            "bzimage-2.06",
            case(2 | MIB_4, 1, "", &[], &old_bz),
            KernelFormat::BzImage,
        ),
    ]
}

#[test]
fn seeds_boot_prepare_and_match_the_committed_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/kernel_loader");
    let write = std::env::var_os("FLINT_WRITE_SEEDS").is_some();
    for (name, bytes, format) in seeds() {
        let (_, boot) = run(&bytes).unwrap_or_else(|| panic!("{name} boot-prepares"));
        assert_eq!(boot.format, format, "{name}");
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert!(
            std::fs::read(&path).unwrap_or_default() == bytes,
            "{} is stale: FLINT_WRITE_SEEDS=1 cargo test -p guest-boot seeds",
            path.display()
        );
    }
}
