//! Command-line interface: `flint run [OPTIONS]`, parsed with clap and
//! converted into a validated [`RunConfig`] with errors that name the option.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use guest_boot::cmdline::DEFAULT_CMDLINE;

use crate::config::devices::{
    Access, CacheMode, ConsoleMode, DiskConfig, DiskMode, InUse, NetConfig,
};
use crate::config::{Discovery, KernelSource, ReportSink, RunConfig};
use crate::oneshot::share::Share;
use crate::oneshot::{GuestRoot, HostKind, KernelLog, OneShot};

/// Largest `--mem` flint accepts, in MiB (1 TiB).
const MAX_MEM_MIB: u64 = 1 << 20;
/// Smallest `--mem`: room for the low-memory boot structures and a kernel.
const MIN_MEM_MIB: u64 = 2;

const RUN_EXAMPLES: &str = "\
Examples:
  flint run                                   boot the embedded probe guest
  flint run --cmdline probe.exit=7            the probe exits with status 7; so does flint
  flint run --kernel vmlinux --initrd initrd.img --mem 512 --timeout 30
  flint run --kernel bzImage --cmdline 'noxsave nofsgsbase' --boot-report report.json
  flint run --kernel vmlinux --initrd initramfs.cpio --env A=1 -- sh -c 'echo $A'
                                              a one-shot guest: runs the command, exits with its status
  flint run --kernel vmlinux --rootfs rootfs.ext4 --share .:/src -- make -C /src test
                                              the same from an ext4 root image, with a host directory

Exit status:
  0-122  the guest's own status (written to I/O port 0xf4); 0 after a guest
         power-off or reset without a status
  123    the guest crashed (triple fault, KVM internal or emulation error)
  124    --timeout expired
  125    flint could not run the VM (bad option, unreadable kernel, no KVM)";

/// flint: a microVM monitor for instant boot.
#[derive(Debug, Parser)]
#[command(name = "flint", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// flint's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest and run it until it exits.
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Boot a guest many times and print each boot phase's distribution and
    /// peak RSS beside peers (QEMU microvm, Firecracker), gate on a baseline
    /// (exit 3 on a regression), then CPU, I/O and clock figures.
    Bench(Box<crate::bench::BenchArgs>),
}

/// Options of `flint run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The VM described in a file: flint's TOML (the options of `flint
    /// run` by their long names; `disk` and `net` as lists of specs) or a
    /// Firecracker JSON configuration (boot-source, drives,
    /// network-interfaces, machine-config; other sections are ignored with
    /// a warning). Options given here win over the file; the file's disks
    /// and nets come first on the bus.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Guest kernel: ELF vmlinux (PVH note or 64-bit entry) or bzImage.
    /// Without it flint boots its embedded probe guest.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk, loaded page-aligned at the top of low RAM.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line, appended to the defaults
    #[arg(long, value_name = "STRING", default_value = "", long_help = concat!(
        "Kernel command line, appended to the defaults: \"", 
        "console=ttyS0 reboot=k panic=-1", "\"; the virtio-mmio device list follows unless --no-cmdline-devices"))]
    pub cmdline: String,
    /// Guest RAM in MiB, at most the host's; beyond 3072 MiB RAM continues above 4 GiB.
    #[arg(long, value_name = "MiB", default_value_t = 128)]
    pub mem: u64,
    /// Number of vCPUs (1-254).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub vcpus: u16,
    /// Stop the guest after SECS seconds (fractions allowed) and exit 124.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    /// Write the boot report (JSON) to FILE, or to stdout with `-`.
    #[arg(long, value_name = "FILE|-")]
    pub boot_report: Option<String>,
    /// Hide CPU features from the guest, comma-separated
    /// (e.g. xsave,avx,cx16,pcid,fsgsbase,popcnt,smap).
    #[arg(long, value_name = "LIST", default_value = "")]
    pub cpuid_mask: String,
    /// Build no ACPI tables (devices are then found on the command line only).
    #[arg(long)]
    pub no_acpi: bool,
    /// Put no virtio_mmio.device= entries on the kernel command line.
    #[arg(long)]
    pub no_cmdline_devices: bool,
    /// Log level on stderr: off, error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL", default_value = "warn", value_parser = parse_level)]
    pub log_level: log::LevelFilter,
    /// The KVM device node.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,
    /// A virtio-blk disk:
    /// path=P[,ro][,id=SERIAL][,cache=writeback|direct][,passthrough]. P is
    /// a regular file or a block device (a whole disk or a partition);
    /// repeat for more disks, which appear on the bus in this order.
    /// `passthrough` hands a host block device to the guest with no host
    /// page cache in between (O_DIRECT), opened exclusively (O_EXCL), with
    /// the host's block sizes, I/O hints and serial; a mounted, swapped-on
    /// or otherwise held device is refused (see --force).
    #[arg(long, value_name = "SPEC")]
    pub disk: Vec<DiskConfig>,
    /// Shorthand for --disk path=DEV,passthrough; these disks follow the
    /// --disk ones on the bus.
    #[arg(long, value_name = "DEV")]
    pub passthrough: Vec<PathBuf>,
    /// Pass through a device even if the host uses it (mounted, swap,
    /// held by device-mapper/md, or opened exclusively elsewhere). Two
    /// writers on one disk corrupt it: only for experts who know the host
    /// side is idle or read-only.
    #[arg(long)]
    pub force: bool,
    /// A virtio-net interface on a tap: tap=NAME[,mac=MAC]. An existing tap
    /// is used as it is; a missing one is created (root), down and without
    /// an address, for the caller to configure. Repeat for more.
    #[arg(long, value_name = "SPEC")]
    pub net: Vec<NetConfig>,
    /// Consoles the guest gets: virtio (virtio-console), serial (8250 UART
    /// at 0x3f8), both (the guest picks; stdin goes to the virtio console
    /// once the guest brings it up, else to the UART) or none.
    #[arg(long, value_name = "MODE", default_value = "both")]
    pub console: ConsoleMode,
    /// Add N empty virtio-mmio slots (device ID 0, which drivers ignore), to
    /// test a guest's bus enumeration.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub placeholder_devices: usize,
    /// System-call filters on flint's threads: kill, log or off.
    #[arg(long, value_name = "MODE", default_value = "kill", long_help = SECCOMP_HELP)]
    pub seccomp: seccomp::Mode,
    /// Test-only: sleep MS milliseconds during monitor set-up (between
    /// `main_entered` and the first `KVM_RUN`), to inject a slowdown that
    /// `flint bench --compare` must catch.
    #[arg(long, value_name = "MS", default_value_t = 0, hide = true)]
    pub debug_delay_ms: u64,
    /// One-shot guest: an environment variable KEY=VALUE for the command
    /// (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = clap::value_parser!(OsString))]
    pub env: Vec<OsString>,
    /// One-shot guest: the directory the command runs in (default: flint's
    /// own working directory where a --share holds it, else /).
    #[arg(long, value_name = "DIR", value_parser = clap::value_parser!(OsString))]
    pub workdir: Option<OsString>,
    /// One-shot guest: a host directory the command sees read-only at
    /// GUEST_PATH (default: the same path), as an ext4 image built with
    /// mkfs.ext4 -d and cached by content (repeatable).
    #[arg(long, value_name = "HOST_DIR[:GUEST_PATH]", value_parser = clap::value_parser!(OsString))]
    pub share: Vec<OsString>,
    /// One-shot guest: boot from this ext4 root image (images/build-rootfs.sh)
    /// instead of an --initrd. Attached read-only as the first disk (vda) and
    /// never written: the guest sees it under a RAM overlay, so its changes
    /// are gone at exit and one image serves any number of VMs at once.
    #[arg(long, value_name = "IMG")]
    pub rootfs: Option<PathBuf>,
    /// One-shot guest: show the kernel's messages (on stderr).
    #[arg(long)]
    pub verbose: bool,
    /// One-shot guest: the command to run and its arguments, after `--`.
    /// Needs --kernel and an --initrd (images/build-initramfs.sh) or a
    /// --rootfs (images/build-rootfs.sh) whose /init is flint-init; flint
    /// exits with the command's status.
    #[arg(last = true, value_name = "CMD", value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

const SECCOMP_HELP: &str = "\
System-call filters on flint's threads (seccomp), one allow-list per thread
kind (event loop, vCPU, cpuid), installed before the guest runs:
  kill  a call off the list kills flint (SIGSYS; exit status 159 from a shell)
  log   a call off the list is allowed and logged to the kernel log
        (dmesg: audit type=1326 ... comm=\"vcpu0\" syscall=N), to find
        a missing entry without losing the run
  off   no filters";

/// A user error in the options; the message names the option and value.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--mem` out of range.
    #[error("--mem {0}: guest RAM must be between {MIN_MEM_MIB} and {MAX_MEM_MIB} MiB")]
    Mem(u64),
    /// `--mem` more than the host has.
    #[error("--mem {mem}: more than this host's RAM ({host} MiB, MemTotal in /proc/meminfo)")]
    MemAboveHost {
        /// The value given, in MiB.
        mem: u64,
        /// The host's RAM in MiB.
        host: u64,
    },
    /// `--vcpus` out of range.
    #[error("--vcpus {0}: must be between 1 and 254")]
    Vcpus(u16),
    /// `--timeout` not a positive finite number.
    #[error("--timeout {0}: must be a positive number of seconds, below 2^64")]
    Timeout(f64),
    /// `--cpuid-mask` names an unknown feature.
    #[error("--cpuid-mask: {0}")]
    CpuidMask(#[source] guest_boot::cpuid::CpuidError),
    /// `--boot-report` empty.
    #[error("--boot-report: expected a file path or -")]
    BootReport,
    /// Too many devices for the bus.
    #[error("--placeholder-devices {0}: the flat bus has room for {max} devices", max = guest_boot::layout::VIRTIO_MAX_DEVICES)]
    TooManyDevices(usize),
    /// A one-shot option without a command.
    #[error("{0} needs a command to run: flint run ... -- CMD ARGS...")]
    NoCommand(&'static str),
    /// A one-shot command without a kernel or initramfs.
    #[error(
        "-- CMD needs --kernel and either --initrd (an initramfs whose /init is flint-init, \
         images/build-initramfs.sh) or --rootfs (images/build-rootfs.sh)"
    )]
    OneShotImages,
    /// Both roots given.
    #[error("--rootfs and --initrd: give one (--rootfs boots without an initramfs)")]
    TwoRoots,
    /// A bad `--share`.
    #[error("{0}")]
    Share(String),
    /// `--env` without `=`.
    #[error("--env {0:?}: expected KEY=VALUE")]
    Env(OsString),
    /// Both discovery channels switched off.
    #[error("--no-acpi with --no-cmdline-devices leaves the guest no way to find its devices")]
    NoDiscovery,
}

impl TryFrom<RunArgs> for RunConfig {
    type Error = CliError;

    fn try_from(args: RunArgs) -> Result<Self, CliError> {
        if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&args.mem) {
            return Err(CliError::Mem(args.mem));
        }
        if let Some(host) = host_ram_mib().filter(|&host| args.mem > host) {
            return Err(CliError::MemAboveHost {
                mem: args.mem,
                host,
            });
        }
        let vcpus = u8::try_from(args.vcpus)
            .ok()
            .filter(|n| (1..=254).contains(n))
            .ok_or(CliError::Vcpus(args.vcpus))?;
        let timeout = match args.timeout {
            Some(t) if t > 0.0 => {
                // Fails for NaN, infinity and anything of 2^64 s or more
                // (from_secs_f64 would panic).
                Some(Duration::try_from_secs_f64(t).map_err(|_| CliError::Timeout(t))?)
            }
            Some(t) => return Err(CliError::Timeout(t)),
            None => None,
        };
        let boot_report = match args.boot_report.as_deref() {
            None => None,
            Some("") => return Err(CliError::BootReport),
            Some("-") => Some(ReportSink::Stdout),
            Some(path) => Some(ReportSink::File(PathBuf::from(path))),
        };
        if args.no_acpi && args.no_cmdline_devices {
            return Err(CliError::NoDiscovery);
        }
        if args.placeholder_devices > guest_boot::layout::VIRTIO_MAX_DEVICES {
            return Err(CliError::TooManyDevices(args.placeholder_devices));
        }
        let oneshot = oneshot(&args)?;
        let oneshot_given = oneshot.is_some();
        let console = if oneshot.is_some() {
            // The UART carries the kernel's messages; the command gets its own consoles.
            ConsoleMode::Serial
        } else {
            args.console
        };
        let cmdline = match &oneshot {
            Some(o) => {
                let prefix = o.cmdline_prefix(HostKind::detect());
                format!("{prefix} {}", args.cmdline).trim().to_string()
            }
            None => args.cmdline,
        };
        Ok(RunConfig {
            oneshot,
            kernel: args
                .kernel
                .map_or(KernelSource::EmbeddedProbe, KernelSource::File),
            initrd: args.initrd,
            cmdline,
            mem_mib: args.mem,
            vcpus,
            timeout,
            boot_report,
            cpuid_mask: guest_boot::cpuid::parse_mask(&args.cpuid_mask)
                .map_err(CliError::CpuidMask)?,
            discovery: Discovery {
                acpi: !args.no_acpi,
                // A one-shot guest's kernel finds its devices in the DSDT; listing them on the
                // command line too makes it probe each twice (and fail, loudly, the second time).
                cmdline: !args.no_cmdline_devices && (args.no_acpi || !oneshot_given),
            },
            kvm_device: args.kvm_device,
            placeholder_devices: args.placeholder_devices,
            console,
            disks: disks(args.disk, args.passthrough, args.force),
            nets: args.net,
            seccomp: args.seccomp,
            debug_delay: Duration::from_millis(args.debug_delay_ms),
        })
    }
}

/// The one-shot command of `args`, checked: `-- CMD` needs a kernel and an initrd or a root
/// image, and `--env`, `--workdir`, `--share`, `--rootfs` and `--verbose` need `-- CMD`.
fn oneshot(args: &RunArgs) -> Result<Option<OneShot>, CliError> {
    if args.command.is_empty() {
        let stray = [
            (!args.env.is_empty(), "--env"),
            (args.workdir.is_some(), "--workdir"),
            (!args.share.is_empty(), "--share"),
            (args.rootfs.is_some(), "--rootfs"),
            (args.verbose, "--verbose"),
        ];
        return match stray.iter().find(|(set, _)| *set) {
            Some((_, name)) => Err(CliError::NoCommand(name)),
            None => Ok(None),
        };
    }
    if args.rootfs.is_some() && args.initrd.is_some() {
        return Err(CliError::TwoRoots);
    }
    if args.kernel.is_none() || (args.initrd.is_none() && args.rootfs.is_none()) {
        return Err(CliError::OneShotImages);
    }
    let root = match &args.rootfs {
        Some(path) => GuestRoot::Image(path.clone()),
        None => GuestRoot::Initramfs,
    };
    let root_disks = usize::from(args.rootfs.is_some());
    let shares: Vec<Share> = args
        .share
        .iter()
        .map(|s| Share::parse(s))
        .collect::<Result<_, _>>()
        .map_err(CliError::Share)?;
    let workdir = args.workdir.clone().or_else(|| {
        let cwd = std::env::current_dir().ok()?;
        crate::oneshot::share::guest_path(&shares, &cwd)
    });
    if let Some(bad) = args.env.iter().find(|e| !e.as_bytes().contains(&b'=')) {
        return Err(CliError::Env(bad.clone()));
    }
    Ok(Some(OneShot {
        argv: args.command.clone(),
        env: args.env.clone(),
        workdir,
        kernel_log: if args.verbose {
            KernelLog::Stderr
        } else {
            KernelLog::Hidden
        },
        shares,
        disks_before_shares: root_disks + args.disk.len() + args.passthrough.len(),
        root,
    }))
}

/// `--disk`s, then the `--passthrough` shorthands, with `--force` applied
/// to every passthrough disk.
fn disks(disk: Vec<DiskConfig>, passthrough: Vec<PathBuf>, force: bool) -> Vec<DiskConfig> {
    let in_use = if force { InUse::Allow } else { InUse::Refuse };
    let shorthand = passthrough.into_iter().map(|path| DiskConfig {
        path,
        access: Access::ReadWrite,
        id: None,
        cache: CacheMode::Direct,
        mode: DiskMode::Passthrough(InUse::Refuse),
    });
    disk.into_iter()
        .chain(shorthand)
        .map(|mut d| {
            if let DiskMode::Passthrough(_) = d.mode {
                d.mode = DiskMode::Passthrough(in_use);
            }
            d
        })
        .collect()
}

/// The default command line, for `--help` and the README.
pub fn default_cmdline() -> &'static str {
    DEFAULT_CMDLINE
}

/// The host's RAM in MiB (None if /proc/meminfo cannot tell: no check).
fn host_ram_mib() -> Option<u64> {
    mem_total_mib(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// MemTotal out of /proc/meminfo's text ("MemTotal:  24684092 kB"), in MiB.
fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib / 1024)
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("unknown log level {s:?} (off, error, warn, info, debug, trace)"))
}

/// Fills `args` from its `--config` file where the command line
/// (`matches`, the `run` subcommand's) did not set a value; the file's
/// disks and nets go first. Returns the Firecracker sections ignored.
pub fn apply_config_file(
    args: &mut RunArgs,
    matches: &clap::ArgMatches,
) -> Result<Vec<String>, crate::config::file::FileError> {
    let Some(path) = args.config.clone() else {
        return Ok(Vec::new());
    };
    let file = crate::config::file::load(&path)?;
    let unset = |id: &str| matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine);
    if unset("kernel") {
        args.kernel = file.kernel.or(args.kernel.take());
    }
    if unset("initrd") {
        args.initrd = file.initrd.or(args.initrd.take());
    }
    if unset("rootfs") {
        args.rootfs = file.rootfs.or(args.rootfs.take());
    }
    if let Some(c) = file.cmdline.filter(|_| unset("cmdline")) {
        args.cmdline = c;
    }
    if let Some(m) = file.mem.filter(|_| unset("mem")) {
        args.mem = m;
    }
    if let Some(v) = file.vcpus.filter(|_| unset("vcpus")) {
        args.vcpus = v;
    }
    if unset("timeout") {
        args.timeout = file.timeout.or(args.timeout);
    }
    if let Some(c) = file.console.filter(|_| unset("console")) {
        args.console = c;
    }
    args.disk.splice(0..0, file.disks);
    args.net.splice(0..0, file.nets);
    Ok(file.ignored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_quotes_the_real_default_command_line() {
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").unwrap();
        let help = run.render_long_help().to_string();
        assert!(
            help.contains(&format!("\"{}\"", default_cmdline())),
            "{help}"
        );
        assert!(help.contains("Exit status"), "{help}");
    }

    fn args(extra: &[&str]) -> Result<RunConfig, CliError> {
        let cli = Cli::try_parse_from([&["flint", "run"], extra].concat()).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        RunConfig::try_from(*run)
    }

    #[test]
    fn defaults_boot_the_probe_with_128_mib_and_both_discovery_channels() {
        let cfg = args(&[]).unwrap();
        assert_eq!(cfg.kernel, KernelSource::EmbeddedProbe);
        assert_eq!(cfg.mem_mib, 128);
        assert_eq!(cfg.vcpus, 1);
        assert_eq!(
            cfg.discovery,
            Discovery {
                acpi: true,
                cmdline: true
            }
        );
        assert!(cfg.timeout.is_none() && cfg.boot_report.is_none());
        assert_eq!(cfg.seccomp, seccomp::Mode::Kill);
    }

    #[test]
    fn seccomp_takes_its_three_modes_and_refuses_others_by_name() {
        for (name, mode) in [
            ("kill", seccomp::Mode::Kill),
            ("log", seccomp::Mode::Log),
            ("off", seccomp::Mode::Off),
        ] {
            assert_eq!(args(&["--seccomp", name]).unwrap().seccomp, mode);
        }
        let err = Cli::try_parse_from(["flint", "run", "--seccomp", "bogus"]).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn mem_total_is_read_from_meminfo_in_mib() {
        let text = "MemFree:  100 kB\nMemTotal:       24684092 kB\nMemAvailable: 5 kB\n";
        assert_eq!(mem_total_mib(text), Some(24105));
        assert_eq!(mem_total_mib("MemTotal: lots\n"), None);
        assert_eq!(mem_total_mib(""), None);
    }

    #[test]
    fn more_guest_ram_than_the_host_has_is_refused() {
        let host = host_ram_mib().expect("/proc/meminfo");
        let mem = (host + 1).to_string();
        assert!(matches!(
            args(&["--mem", &mem]),
            Err(CliError::MemAboveHost { host: h, .. }) if h == host
        ));
    }

    #[test]
    fn switching_off_both_discovery_channels_is_refused() {
        assert!(matches!(
            args(&["--no-acpi", "--no-cmdline-devices"]),
            Err(CliError::NoDiscovery)
        ));
    }

    #[test]
    fn boot_report_dash_means_stdout() {
        assert_eq!(
            args(&["--boot-report", "-"]).unwrap().boot_report,
            Some(ReportSink::Stdout)
        );
    }

    #[test]
    fn fractional_timeouts_are_accepted_and_nonpositive_ones_refused() {
        assert_eq!(
            args(&["--timeout", "0.25"]).unwrap().timeout,
            Some(Duration::from_millis(250))
        );
        assert!(matches!(
            args(&["--timeout", "0"]),
            Err(CliError::Timeout(_))
        ));
        assert!(matches!(
            args(&["--timeout", "inf"]),
            Err(CliError::Timeout(_))
        ));
    }

    #[test]
    fn debug_delay_is_parsed_but_hidden_from_help() {
        assert_eq!(
            args(&["--debug-delay-ms", "20"]).unwrap().debug_delay,
            Duration::from_millis(20)
        );
        assert!(args(&[]).unwrap().debug_delay.is_zero());
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").unwrap();
        assert!(!run.render_long_help().to_string().contains("debug-delay"));
    }

    /// A `config` fuzz target crash (`run --timeout 1e20`):
    /// `Duration::from_secs_f64` panicked on a finite timeout too large for
    /// a Duration.
    #[test]
    fn timeouts_too_large_for_a_duration_are_refused() {
        for t in ["1e20", "18446744073709551616", "1.8e308"] {
            assert!(
                matches!(args(&["--timeout", t]), Err(CliError::Timeout(_))),
                "{t}"
            );
        }
        let nan = args(&["--timeout", "NaN"]);
        assert!(matches!(nan, Err(CliError::Timeout(_))));
    }
}
