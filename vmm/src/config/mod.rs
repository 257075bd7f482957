//! What a VM is made of, validated: the output of option parsing and the
//! input of [`crate::builder`]. Every field is already checked, so the
//! builder only meets host failures, never bad user input it could have caught.

pub mod devices;
pub mod file;

use std::path::PathBuf;
use std::time::Duration;

use guest_boot::cpuid::Feature;

/// Where the guest kernel comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The probe linked into flint.
    EmbeddedProbe,
    /// A kernel image file.
    File(PathBuf),
}

/// Where the boot report goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportSink {
    /// Standard output, after the guest's output (`-`).
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
}

/// How the guest learns about its devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// ACPI tables (RSDP, XSDT, FADT, MADT, DSDT).
    pub acpi: bool,
    /// `virtio_mmio.device=` entries on the kernel command line.
    pub cmdline: bool,
}

/// A validated VM description.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Guest kernel.
    pub kernel: KernelSource,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// User's command line, appended to the defaults.
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// vCPU count.
    pub vcpus: u8,
    /// Wall-clock limit for the guest.
    pub timeout: Option<Duration>,
    /// Boot report destination.
    pub boot_report: Option<ReportSink>,
    /// CPU features hidden from the guest.
    pub cpuid_mask: Vec<Feature>,
    /// Device discovery channels.
    pub discovery: Discovery,
    /// The KVM device node.
    pub kvm_device: PathBuf,
    /// Empty virtio-mmio slots to put on the bus.
    pub placeholder_devices: usize,
    /// Which consoles the guest gets.
    pub console: devices::ConsoleMode,
    /// virtio-blk disks, in bus order.
    pub disks: Vec<devices::DiskConfig>,
    /// virtio-net interfaces, in bus order after the disks.
    pub nets: Vec<devices::NetConfig>,
    /// What the per-thread system-call filters do with a call off their list.
    pub seccomp: seccomp::Mode,
    /// Test-only pause during monitor set-up (`--debug-delay-ms`).
    pub debug_delay: Duration,
    /// The command of a one-shot guest (`-- CMD ARGS...`), if any.
    pub oneshot: Option<crate::oneshot::OneShot>,
}
