//! The options of `flint bench`: the guest to boot (the same kernel,
//! initrd, command line, RAM and vCPU options as `flint run`), how many
//! runs, what to write (`--json`, `--plot`), what to compare with
//! (`--compare`, `--against`), `--concurrent`, and the switches of the
//! extra figures.

use std::path::PathBuf;

/// Options of `flint bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Guest kernel, as `flint run --kernel`; default: the embedded probe.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk, as `flint run --initrd`.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// One-shot root image, as `flint run --rootfs` (needs `-- CMD`).
    #[arg(long, value_name = "IMG", requires = "command")]
    pub rootfs: Option<PathBuf>,
    /// Kernel command line, appended to flint's defaults (QEMU and
    /// Firecracker get the defaults and this too).
    #[arg(long, value_name = "STRING", default_value = "")]
    pub cmdline: String,
    /// Guest RAM in MiB for flint and its peers.
    #[arg(long, value_name = "MiB", default_value_t = 64)]
    pub mem: u64,
    /// vCPUs for flint and its peers.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub vcpus: u16,
    /// Measured runs per contestant (also the number of `--concurrent` batches).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Unmeasured runs per contestant first (page cache, CPU frequency).
    #[arg(long, value_name = "K", default_value_t = 2)]
    pub warmup: u64,
    /// Write every raw sample, the summaries and the metadata as JSON
    /// (schema in the README's Benchmark section).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// A `--json` file of an earlier run: test each phase (Mann–Whitney
    /// U) and exit 3 when one got significantly slower (one-sided p <
    /// 0.01) by more than --threshold percent.
    #[arg(long, value_name = "BASELINE.json")]
    pub compare: Option<PathBuf>,
    /// Compare against another flint binary (e.g. the last release's)
    /// booting the same guest, interleaved run by run with this one, instead
    /// of a baseline file: both see the same machine load, so the gate
    /// holds on a busy machine. Same test and exit code as --compare.
    #[arg(long, value_name = "OLD_FLINT", conflicts_with = "compare")]
    pub compare_binary: Option<PathBuf>,
    /// Smallest slowdown, in percent of the baseline's median, that
    /// --compare and --compare-binary count as a regression.
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    pub threshold: f64,
    /// Also boot the same guest with `qemu` (QEMU microvm; see --qemu) or
    /// `firecracker=PATH`, interleaved with flint, and print ratios.
    /// Repeatable. Without it QEMU runs when it is on PATH (unless --qemu none).
    #[arg(long, value_name = "PEER", value_parser = parse_against)]
    pub against: Vec<Against>,
    /// Start K VMs at once, --runs times, and print VMs per second and
    /// memory per VM.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub concurrent: Option<u64>,
    /// Write an SVG: each run's phases as a timeline, and each phase's
    /// distribution (beside the baseline's with --compare).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Test-only: passed to `flint run --debug-delay-ms` (not to the
    /// --compare-binary runs).
    #[arg(long, value_name = "MS", default_value_t = 0, hide = true)]
    pub debug_delay_ms: u64,
    /// QEMU binary to compare with ("none" to skip; default: qemu-system-x86_64 on PATH).
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<String>,
    /// The raw-KVM floor program (shared/peers/floor), to compare with.
    #[arg(long, value_name = "PATH")]
    pub floor: Option<PathBuf>,
    /// A trivial PVH guest (shared/peers/guest/guest.elf) to boot besides the probe.
    #[arg(long, value_name = "PATH")]
    pub peer_guest: Option<PathBuf>,
    /// Iterations of the CPU workload (guest vs native); 0 skips it.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub workload: u64,
    /// KiB the probe sends through virtio-console for the console
    /// throughput figure (the UART, ~1000x slower, sends at most 1 MiB);
    /// 0 skips it.
    #[arg(long, value_name = "KiB", default_value_t = 65536)]
    pub console_kib: u64,
    /// MiB of the temporary disk for the virtio-blk throughput figure
    /// (guest vs native pwrite/pread on the same file); 0 skips it.
    #[arg(long, value_name = "MiB", default_value_t = 64)]
    pub blk_mib: u64,
    /// Pings of the virtio-net flood (`ping -f`) to the probe, through flint
    /// and QEMU on a tap in a private network namespace (needs root); 0
    /// skips the net figure.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub net_flood: u64,
    /// Seconds between the two kvmclock samples of the clock-drift figure;
    /// 0 skips it.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub clock_seconds: u64,
    /// MiB of the loop device for the passthrough disk table (native
    /// O_DIRECT, flint passthrough, flint file-backed, QEMU), queue depth
    /// 1 and 32; needs root; 0 (the default) skips it.
    #[arg(long, value_name = "MiB", default_value_t = 0)]
    pub disk_mib: u64,
    /// One-shot command each flint run executes (`flint run ... -- CMD`):
    /// times a Linux boot to flint-init's boot-complete marker and the
    /// command's exit. flint only: QEMU and Firecracker cannot run it.
    #[arg(last = true, value_name = "CMD", value_parser = clap::value_parser!(std::ffi::OsString))]
    pub command: Vec<std::ffi::OsString>,
}

/// A monitor to run beside flint (`--against`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Against {
    /// QEMU `-M microvm`, the binary from `--qemu` or PATH.
    Qemu,
    /// A Firecracker binary.
    Firecracker(PathBuf),
}

fn parse_against(s: &str) -> Result<Against, String> {
    match s.split_once('=') {
        None if s == "qemu" => Ok(Against::Qemu),
        Some(("firecracker", path)) if !path.is_empty() => {
            Ok(Against::Firecracker(PathBuf::from(path)))
        }
        _ => Err(format!(
            "unknown peer {s:?} (expected qemu or firecracker=PATH)"
        )),
    }
}

/// The guest every contestant boots, as the options gave it.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// Kernel file (the probe is written to a temporary file first).
    pub kernel: PathBuf,
    /// What the report calls the kernel: its path or "embedded probe".
    pub kernel_name: String,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Optional one-shot root image (flint only).
    pub rootfs: Option<PathBuf>,
    /// Optional one-shot command (flint only).
    pub command: Vec<std::ffi::OsString>,
    /// The user's part of the command line.
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub mem: u64,
    /// vCPU count.
    pub vcpus: u16,
}

impl GuestSpec {
    /// Whether the guest runs a one-shot command, which only flint can hand over.
    pub fn is_oneshot(&self) -> bool {
        !self.command.is_empty()
    }

    /// The whole command line a peer gets: flint's defaults, then the user's.
    pub fn full_cmdline(&self) -> String {
        let defaults = crate::cli::default_cmdline();
        if self.cmdline.is_empty() {
            defaults.to_string()
        } else {
            format!("{defaults} {}", self.cmdline)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn bench(extra: &[&str]) -> Result<BenchArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["flint", "bench"], extra].concat())?;
        match cli.command {
            Command::Bench(b) => Ok(*b),
            Command::Run(_) => panic!("not bench"),
        }
    }

    #[test]
    fn defaults_boot_the_probe_twenty_times_with_a_five_percent_gate() {
        let b = bench(&[]).unwrap();
        assert_eq!((b.runs, b.warmup, b.mem, b.vcpus), (20, 2, 64, 1));
        assert_eq!(b.threshold, 5.0);
        assert!(b.kernel.is_none() && b.against.is_empty() && b.concurrent.is_none());
    }

    #[test]
    fn against_takes_qemu_and_firecracker_paths() {
        let b = bench(&["--against", "qemu", "--against", "firecracker=/opt/fc"]).unwrap();
        assert_eq!(
            b.against,
            [Against::Qemu, Against::Firecracker("/opt/fc".into())]
        );
        assert!(bench(&["--against", "xen"]).is_err());
        assert!(bench(&["--against", "firecracker="]).is_err());
    }

    #[test]
    fn zero_runs_and_zero_concurrency_are_refused() {
        assert!(bench(&["--runs", "0"]).is_err());
        assert!(bench(&["--concurrent", "0"]).is_err());
    }
}
