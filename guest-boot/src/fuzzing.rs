//! Entry point for the `kernel_loader` fuzz target in the repository's
//! `fuzz/` folder, built with the `fuzzing` feature (and in unit tests,
//! which run the committed seeds through it). It changes nothing in how
//! guest-boot behaves: [`prepare_boot`] writes the fuzz input into a
//! kernel file and an initrd file and runs [`crate::prepare_boot`] on
//! fresh guest memory, so the kernel loaders (ELF with and without a PVH
//! note, bzImage), the initrd placement, the command line, the boot
//! information and the ACPI tables all see it.
//!
//! A panic is a finding. On success the result is also checked: the
//! command line fits the kernel's limit, the initrd lies in RAM above the
//! kernel and below every limit, the entry point is in RAM.
//!
//! # Input format
//!
//! `flags: u8, vcpus: u8, devices: u8, cmdline_len: u16, cmdline bytes,
//! initrd_size: u32, initrd_len: u16, initrd bytes`, then the kernel image
//! (the rest). `flags & 1`: ACPI tables; `& 2`: devices on the command
//! line; `& 4`: an initrd (`initrd_size` is what the vmm would say, the
//! file holds `initrd_len` bytes); `& 8`: back only half the RAM;
//! `(flags >> 4) & 7` picks the RAM size from [`MEM_MIB`]. The devices
//! are the first `devices % 20` virtio-mmio slots; the command line is
//! taken as UTF-8, lossily.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::Path;
use std::sync::OnceLock;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::layout::{self, VirtioMmioSlot, MIB, MMIO_HOLE_START, VIRTIO_MAX_DEVICES};
use crate::{BootPlan, BootSpec, InitrdImage, PreparedBoot};

/// The RAM sizes the input picks from, in MiB.
pub const MEM_MIB: [u64; 8] = [2, 3, 4, 8, 16, 32, 48, 64];

/// Run [`crate::prepare_boot`] on `data` (see the module docs).
pub fn prepare_boot(data: &[u8]) {
    let _ = run(data);
}

/// The parts of a fuzz input.
pub(crate) struct Case<'a> {
    pub flags: u8,
    pub vcpus: u8,
    pub devices: Vec<VirtioMmioSlot>,
    pub cmdline: String,
    pub initrd: Option<(u64, &'a [u8])>,
    pub kernel: &'a [u8],
}

impl<'a> Case<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Option<Self> {
        let (&[flags, vcpus, devices], rest) = data.split_first_chunk::<3>()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let (cmdline, rest) = rest.split_at_checked(u16::from_le_bytes(*len).into())?;
        let (size, rest) = rest.split_first_chunk::<4>()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let (initrd, kernel) = rest.split_at_checked(u16::from_le_bytes(*len).into())?;
        let devices = (0..usize::from(devices) % (VIRTIO_MAX_DEVICES + 1))
            .filter_map(layout::virtio_mmio_slot)
            .collect();
        Some(Case {
            flags,
            vcpus,
            devices,
            cmdline: String::from_utf8_lossy(cmdline).into_owned(),
            initrd: (flags & 4 != 0).then_some((u32::from_le_bytes(*size).into(), initrd)),
            kernel,
        })
    }

    pub(crate) fn mem_bytes(&self) -> u64 {
        MEM_MIB[usize::from(self.flags >> 4) & 7] * MIB
    }

    /// Guest memory for the case: every RAM range, or half the RAM when
    /// `flags & 8`.
    pub(crate) fn memory(&self) -> GuestMemoryMmap {
        let mem_bytes = match self.flags & 8 {
            0 => self.mem_bytes(),
            _ => self.mem_bytes() / 2,
        };
        let ranges: Vec<(GuestAddress, usize)> = layout::ram_ranges(mem_bytes)
            .into_iter()
            .map(|(a, l)| (a, l as usize))
            .collect();
        GuestMemoryMmap::from_ranges(&ranges).expect("fuzz guest memory")
    }
}

/// Parse, boot-prepare and check `data`; returns the memory and the
/// result for tests.
pub(crate) fn run(data: &[u8]) -> Option<(GuestMemoryMmap, PreparedBoot)> {
    let case = Case::parse(data)?;
    let mem = case.memory();
    let mut kernel = scratch_file(0, case.kernel).expect("kernel scratch file");
    let mut initrd = case
        .initrd
        .map(|(_, bytes)| scratch_file(1, bytes).expect("initrd scratch file"));
    let spec = BootSpec {
        kernel: &mut kernel,
        initrd: initrd
            .as_mut()
            .zip(case.initrd)
            .map(|(file, (size, _))| InitrdImage { file, size }),
        cmdline: &case.cmdline,
        mem_bytes: case.mem_bytes(),
        vcpus: case.vcpus,
        devices: &case.devices,
        plan: BootPlan {
            acpi: case.flags & 1 != 0,
            cmdline_devices: case.flags & 2 != 0,
        },
        // The fuzzer reuses nothing, but the zeroing path is the one with arithmetic to check.
        ram: crate::loader::GuestRam::Dirty,
    };
    let prepared = crate::prepare_boot(&mem, spec).ok()?;
    check(&mem, &case, &prepared);
    Some((mem, prepared))
}

/// What must hold after a successful [`crate::prepare_boot`].
fn check(mem: &GuestMemoryMmap, case: &Case<'_>, boot: &PreparedBoot) {
    let kernel = &boot.kernel;
    assert!(
        boot.cmdline.len() < kernel.cmdline_max,
        "a command line of {} bytes for a kernel that takes {}",
        boot.cmdline.len(),
        kernel.cmdline_max
    );
    assert!(
        mem.address_in_range(kernel.entry),
        "entry {:#x} outside RAM",
        kernel.entry.0
    );
    if let Some((addr, size)) = boot.initrd {
        let end = addr.0 + size;
        let limit = kernel
            .initrd_addr_max
            .min(layout::low_ram_end(case.mem_bytes()))
            .min(MMIO_HOLE_START);
        assert!(
            addr.0 >= kernel.end.0 && end <= limit,
            "initrd at {:#x}..{end:#x}: kernel ends at {:#x}, limit {limit:#x}",
            addr.0,
            kernel.end.0
        );
    }
}

/// One of two scratch files of the process (kernel, initrd), unlinked,
/// holding `bytes` and positioned at its start.
fn scratch_file(index: usize, bytes: &[u8]) -> io::Result<File> {
    static FILES: [OnceLock<File>; 2] = [OnceLock::new(), OnceLock::new()];
    let file = match FILES[index].get() {
        Some(file) => file,
        None => {
            let name = format!("flint-fuzz-boot-{}-{index}", std::process::id());
            // tmpfs where there is one: truncating costs no disk I/O.
            let shm = Path::new("/dev/shm");
            let dir = match shm.is_dir() {
                true => shm.to_path_buf(),
                false => std::env::temp_dir(),
            };
            let path = dir.join(name);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            FILES[index].get_or_init(|| file)
        }
    };
    let mut file = file.try_clone()?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file)
}

#[cfg(test)]
mod seeds;
