//! End-to-end tests of `prepare_boot` with tiny synthetic kernels and
//! initrds, checking what lands in guest memory and the errors.

use std::fs::File;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::cmdline::DEFAULT_CMDLINE;
use crate::layout::{
    virtio_mmio_slot, ACPI_START, BOOT_INFO_START, CMDLINE_START, GDT_START, PAGE_TABLES_START,
};
use crate::testutil::{
    build_bzimage, build_elf, file_with, guest_mem, read_mem, BzOpts, Note, Seg,
};

const KERNEL_AT: u64 = 0x100_0000;
const MEM_MIB: u64 = 64;

fn elf(pvh: bool) -> Vec<u8> {
    let notes = if pvh {
        vec![Note::pvh32(KERNEL_AT as u32 + 0x40)]
    } else {
        vec![]
    };
    build_elf(
        KERNEL_AT + 0x20,
        &[Seg::identity(KERNEL_AT, vec![0x90; 0x1000])],
        &notes,
    )
}

struct Run {
    kernel: File,
    initrd: Option<(File, u64)>,
    cmdline: String,
    devices: Vec<VirtioMmioSlot>,
    plan: BootPlan,
    mem_mib: u64,
}

impl Run {
    fn new(kernel: &[u8]) -> Self {
        Run {
            kernel: file_with(kernel),
            initrd: None,
            cmdline: String::new(),
            devices: vec![],
            plan: BootPlan {
                acpi: false,
                cmdline_devices: false,
            },
            mem_mib: MEM_MIB,
        }
    }

    fn initrd(mut self, bytes: &[u8], size: u64) -> Self {
        self.initrd = Some((file_with(bytes), size));
        self
    }

    fn go(&mut self, mem: &GuestMemoryMmap) -> Result<PreparedBoot, BootError> {
        let spec = BootSpec {
            kernel: &mut self.kernel,
            initrd: self
                .initrd
                .as_mut()
                .map(|(file, size)| InitrdImage { file, size: *size }),
            cmdline: &self.cmdline,
            mem_bytes: self.mem_mib * MIB,
            vcpus: 2,
            devices: &self.devices,
            plan: self.plan,
            ram: crate::loader::GuestRam::Dirty,
        };
        prepare_boot(mem, spec)
    }

    fn ok(&mut self) -> (GuestMemoryMmap, PreparedBoot) {
        let mem = guest_mem(self.mem_mib);
        let boot = self.go(&mem).expect("prepare_boot");
        (mem, boot)
    }

    fn err(&mut self) -> String {
        let mem = guest_mem(self.mem_mib);
        self.go(&mem)
            .expect_err("prepare_boot should fail")
            .to_string()
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn initrd_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + 1) as u8).collect()
}

#[test]
fn elf_kernel_boots_through_the_zero_page_in_long_mode() {
    let mut run = Run::new(&elf(false));
    run.cmdline = "root=/dev/vda".into();
    let (mem, boot) = run.ok();
    assert_eq!(boot.format, KernelFormat::Elf64);
    assert_eq!(boot.cmdline, format!("{DEFAULT_CMDLINE} root=/dev/vda"));
    let written = read_mem(&mem, CMDLINE_START, boot.cmdline.len() + 1);
    assert_eq!(&written[..boot.cmdline.len()], boot.cmdline.as_bytes());
    assert_eq!(written[boot.cmdline.len()], 0);
    let zp = read_mem(&mem, BOOT_INFO_START, 4096);
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(u32_at(&zp, 0x228), CMDLINE_START as u32);
    assert_eq!(zp[0x1e8], 3, "e820 entries of a 64 MiB VM");
    assert_eq!(
        (boot.entry.rip, boot.entry.rsi),
        (KERNEL_AT + 0x20, BOOT_INFO_START)
    );
    assert_eq!(
        (boot.entry.efer, boot.entry.cr3),
        (0x500, PAGE_TABLES_START)
    );
    assert_eq!(
        u64_at(&read_mem(&mem, GDT_START, 24), 16),
        0x00af_9b00_0000_ffff
    );
    assert_eq!(u64_at(&read_mem(&mem, PAGE_TABLES_START, 8), 0), 0xa003);
    assert!(boot.initrd.is_none() && boot.rsdp.is_none());
}

#[test]
fn pvh_kernel_boots_through_start_info_in_protected_mode() {
    let data = initrd_bytes(5000);
    let mut run = Run::new(&elf(true)).initrd(&data, 5000);
    run.plan.acpi = true;
    let (mem, boot) = run.ok();
    assert_eq!(boot.format, KernelFormat::PvhElf);
    assert_eq!(
        (boot.entry.rip, boot.entry.rbx),
        (KERNEL_AT + 0x40, BOOT_INFO_START)
    );
    assert_eq!((boot.entry.cr0, boot.entry.efer), (0x11, 0));
    let si = read_mem(&mem, BOOT_INFO_START, 56);
    assert_eq!(u32_at(&si, 0), 0x336e_c578);
    assert_eq!(u32_at(&si, 12), 1, "one module");
    assert_eq!(u64_at(&si, 24), CMDLINE_START);
    assert_eq!(u64_at(&si, 32), ACPI_START);
    assert_eq!(u32_at(&si, 48), 3, "memory map entries");
    let (addr, size) = boot.initrd.unwrap();
    let module = read_mem(&mem, u64_at(&si, 16), 16);
    assert_eq!((u64_at(&module, 0), u64_at(&module, 8)), (addr.0, size));
    assert_eq!(
        u64_at(&read_mem(&mem, GDT_START, 24), 16),
        0x00cf_9b00_0000_ffff
    );
}

#[test]
fn bzimage_zero_page_keeps_the_kernel_header() {
    let image = build_bzimage(&BzOpts::default());
    let (mem, boot) = Run::new(&image).ok();
    assert_eq!(boot.format, KernelFormat::BzImage);
    assert_eq!(boot.entry.rip, MIB + 0x200);
    let zp = read_mem(&mem, BOOT_INFO_START, 4096);
    assert_eq!(&zp[0x1f1..0x210], &image[0x1f1..0x210]);
    assert_eq!(&zp[0x230..0x238], &image[0x230..0x238]);
    assert_eq!(zp[0x210], 0xff);
}

#[test]
fn initrd_of_odd_size_sits_page_aligned_at_the_top_of_low_ram() {
    let data = initrd_bytes(12345);
    let (mem, boot) = Run::new(&elf(false)).initrd(&data, 12345).ok();
    let (addr, size) = boot.initrd.unwrap();
    assert_eq!(size, 12345);
    assert_eq!(addr.0, (MEM_MIB * MIB - 12345) & !0xfff);
    assert_eq!(read_mem(&mem, addr.0, 12345), data);
    let zp = read_mem(&mem, BOOT_INFO_START, 4096);
    assert_eq!(
        (u32_at(&zp, 0x218), u32_at(&zp, 0x21c)),
        (addr.0 as u32, 12345)
    );
}

#[test]
fn initrd_respects_the_bzimage_initrd_addr_max() {
    let opts = BzOpts {
        initrd_addr_max: 0x1ff_ffff,
        ..BzOpts::default()
    };
    let data = initrd_bytes(0x3000);
    let (_, boot) = Run::new(&build_bzimage(&opts)).initrd(&data, 0x3000).ok();
    let (addr, _) = boot.initrd.unwrap();
    assert_eq!(addr.0, 0x200_0000 - 0x3000);
}

#[test]
fn initrd_larger_than_ram_is_rejected() {
    let size = 100 * MIB;
    let e = Run::new(&elf(false)).initrd(b"tiny", size).err();
    assert_eq!(
        e,
        format!("initrd: initrd of {size} bytes does not fit in guest RAM (64 MiB)")
    );
}

#[test]
fn initrd_that_would_overlap_the_kernel_is_rejected() {
    // 64 MiB VM, kernel ends just past 16 MiB: 48 MiB of room above it.
    let e = Run::new(&elf(false)).initrd(b"x", 48 * MIB).err();
    assert!(e.contains("does not fit in guest RAM (64 MiB)"), "{e}");
}

#[test]
fn initrd_file_shorter_than_its_size_is_rejected() {
    let e = Run::new(&elf(false)).initrd(&initrd_bytes(100), 200).err();
    assert_eq!(e, "initrd: the file ended after 100 bytes; expected 200");
}

#[test]
fn acpi_tables_are_written_and_announced_in_the_zero_page() {
    let mut run = Run::new(&elf(false));
    run.plan.acpi = true;
    run.devices = vec![virtio_mmio_slot(0).unwrap()];
    let (mem, boot) = run.ok();
    assert_eq!(boot.rsdp, Some(GuestAddress(ACPI_START)));
    assert_eq!(read_mem(&mem, ACPI_START, 8), b"RSD PTR ");
    assert_eq!(
        u64_at(&read_mem(&mem, BOOT_INFO_START, 0x80), 0x70),
        ACPI_START
    );
    assert!(!boot.cmdline.contains("virtio_mmio"));
}

#[test]
fn cmdline_devices_are_appended_when_planned() {
    let mut run = Run::new(&elf(false));
    run.plan.cmdline_devices = true;
    run.devices = vec![virtio_mmio_slot(0).unwrap(), virtio_mmio_slot(1).unwrap()];
    let (_, boot) = run.ok();
    assert!(boot
        .cmdline
        .ends_with(" virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"));
}

#[test]
fn too_long_cmdline_fails_before_the_initrd_is_loaded() {
    let mut run = Run::new(&elf(false)).initrd(&initrd_bytes(4096), 4096);
    run.cmdline = "x".repeat(4000);
    let mem = guest_mem(MEM_MIB);
    let e = run.go(&mem).unwrap_err();
    assert!(matches!(
        e,
        BootError::Cmdline(cmdline::CmdlineError::TooLong { .. })
    ));
    let top = MEM_MIB * MIB - 4096;
    assert_eq!(read_mem(&mem, top, 4096), vec![0; 4096]);
}

#[test]
fn empty_kernel_is_named_in_the_error() {
    assert_eq!(Run::new(&[]).err(), "kernel: the file is empty");
}

#[test]
fn garbage_kernel_is_rejected() {
    let e = Run::new(&[0x5a; 8192]).err();
    assert_eq!(e, "kernel: not a kernel image: neither ELF64 nor a bzImage");
}

#[test]
fn truncated_elf_kernel_is_rejected() {
    let image = elf(false);
    let e = Run::new(&image[..image.len() / 2]).err();
    assert!(
        e.starts_with("kernel: truncated: segment 0 ends at byte"),
        "{e}"
    );
}

#[test]
fn kernel_segment_beyond_ram_is_rejected() {
    let image = build_elf(100 * MIB, &[Seg::identity(100 * MIB, vec![1; 16])], &[]);
    let e = Run::new(&image).err();
    assert_eq!(
        e,
        "kernel: segment 0 at 0x6400000..0x6400010 does not fit in guest RAM (64 MiB)"
    );
}

#[test]
fn memory_smaller_than_mem_bytes_is_rejected() {
    let mut run = Run::new(&elf(false));
    let mem = guest_mem(32);
    let e = run.go(&mem).unwrap_err().to_string();
    assert_eq!(
        e,
        "guest memory: RAM 0x0..0x4000000 of a 64 MiB VM is not backed"
    );
}

#[test]
fn acpi_without_vcpus_fails_in_the_acpi_step() {
    let mem = guest_mem(MEM_MIB);
    let mut kernel = file_with(&elf(false));
    let spec = BootSpec {
        kernel: &mut kernel,
        initrd: None,
        cmdline: "",
        mem_bytes: MEM_MIB * MIB,
        vcpus: 0,
        devices: &[],
        plan: BootPlan {
            acpi: true,
            cmdline_devices: false,
        },
        ram: crate::loader::GuestRam::Dirty,
    };
    let e = prepare_boot(&mem, spec).unwrap_err();
    assert_eq!(e.to_string(), "ACPI tables: at least one vCPU is needed");
}

#[test]
fn guest_memory_above_4_gib_is_described_in_e820() {
    let mut run = Run::new(&elf(false));
    run.mem_mib = 3 * 1024 + 16;
    let (mem, _) = run.ok();
    let zp = read_mem(&mem, BOOT_INFO_START, 4096);
    assert_eq!(zp[0x1e8], 4);
    let high = 0x2d0 + 3 * 20;
    assert_eq!(
        (u64_at(&zp, high), u64_at(&zp, high + 8)),
        (1 << 32, 16 * MIB)
    );
    mem.write_obj(0u8, GuestAddress((1 << 32) + 16 * MIB - 1))
        .expect("high RAM is backed");
}
