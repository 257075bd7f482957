//! `flint bench`: boot a guest many times and print whole-process wall time,
//! boot-report phases and peak RSS, side by side with peers run alternately
//! in the same session (QEMU `-M microvm`, the raw-KVM floor program), plus a
//! guest-vs-native CPU figure from the probe's compute workload, console
//! throughput and guest-vs-native virtio-blk throughput.
//!
//! Figures are printed, never asserted: this is a benchmark, not a test.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::exit::EXIT_FLINT_ERROR;

mod disk;
mod figures;
mod net;

use disk::disk_figure;
use figures::{blk_figure, clock_figure, console_figure, cpu_figure};
use net::net_figure;

/// Options of `flint bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Measured runs per contestant.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub runs: usize,
    /// Unmeasured runs per contestant first (page cache, CPU frequency).
    #[arg(long, value_name = "K", default_value_t = 2)]
    pub warmup: usize,
    /// Guest RAM in MiB for flint and QEMU.
    #[arg(long, value_name = "MiB", default_value_t = 64)]
    pub mem: u64,
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
}

/// One kind of process the benchmark launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Monitor {
    Flint,
    Qemu,
    Floor,
}

impl Monitor {
    fn name(self) -> &'static str {
        match self {
            Monitor::Flint => "flint",
            Monitor::Qemu => "qemu microvm",
            Monitor::Floor => "floor (raw KVM)",
        }
    }
}

/// A monitor booting a guest, and what its runs measured.
struct Contestant {
    monitor: Monitor,
    guest: String,
    cmd: Vec<OsString>,
    /// Exit codes that count as a clean run.
    ok_codes: &'static [i32],
    wall_us: Vec<f64>,
    rss_kib: Vec<f64>,
    phases: Vec<Vec<(String, f64)>>,
    failures: usize,
}

/// Run the benchmark; returns the process exit code.
pub fn run(args: BenchArgs) -> u8 {
    match bench(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("flint bench: error: {e}");
            EXIT_FLINT_ERROR
        }
    }
}

fn bench(args: &BenchArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("flint-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = dir.join("probe.elf");
    std::fs::write(&probe, crate::probe::PROBE_ELF)
        .map_err(|e| format!("{}: {e}", probe.display()))?;
    let mut contestants = contestants(args, &probe, &dir)?;
    println!(
        "flint bench: {} runs each after {} warm-up, alternating; guest RAM {} MiB; host {} CPUs",
        args.runs,
        args.warmup,
        args.mem,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for round in 0..args.warmup + args.runs {
        for c in contestants.iter_mut() {
            measure(c, &dir, round >= args.warmup);
        }
    }
    print_table(&contestants);
    print_phases(&contestants);
    if args.workload > 0 {
        cpu_figure(args.workload);
    }
    if args.console_kib > 0 {
        console_figure(args.console_kib);
    }
    if args.blk_mib > 0 {
        blk_figure(args.blk_mib, &dir);
    }
    if args.disk_mib > 0 {
        disk_figure(args.disk_mib, &dir, &probe, qemu_path(args).as_deref());
    }
    if args.clock_seconds > 0 {
        clock_figure(args.clock_seconds);
    }
    if args.net_flood > 0 {
        net_figure(args.net_flood, &probe, qemu_path(args).as_deref());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn contestants(args: &BenchArgs, probe: &Path, dir: &Path) -> Result<Vec<Contestant>, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find flint's own binary: {e}"))?;
    let qemu = qemu_path(args);
    let mut guests: Vec<(String, PathBuf)> = vec![("probe".into(), probe.to_path_buf())];
    if let Some(g) = &args.peer_guest {
        guests.push((file_name(g), g.clone()));
    }
    let mut out = Vec::new();
    for (gname, gpath) in &guests {
        let report = dir.join("report.json");
        let flint: Vec<OsString> = vec![
            me.clone().into(),
            "run".into(),
            "--kernel".into(),
            gpath.into(),
            "--mem".into(),
            args.mem.to_string().into(),
            "--boot-report".into(),
            report.into(),
        ];
        out.push(contestant(Monitor::Flint, gname, flint, &[0]));
        // The floor sets no CPUID, so its vCPU has no long mode: it can boot
        // the 32-bit peer guest but not the probe.
        if let Some(floor) = args.floor.as_ref().filter(|_| gname != "probe") {
            out.push(contestant(
                Monitor::Floor,
                gname,
                vec![floor.into(), gpath.into()],
                &[0],
            ));
        }
        if let Some(q) = &qemu {
            out.push(contestant(
                Monitor::Qemu,
                gname,
                qemu_cmd(q, gpath, args.mem),
                &[1],
            ));
        }
    }
    Ok(out)
}

/// The QEMU binary asked for, if any.
fn qemu_path(args: &BenchArgs) -> Option<PathBuf> {
    match args.qemu.as_deref() {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => find_on_path("qemu-system-x86_64"),
    }
}

fn contestant(
    monitor: Monitor,
    guest: &str,
    cmd: Vec<OsString>,
    ok_codes: &'static [i32],
) -> Contestant {
    Contestant {
        monitor,
        guest: guest.to_string(),
        cmd,
        ok_codes,
        wall_us: Vec::new(),
        rss_kib: Vec::new(),
        phases: Vec::new(),
        failures: 0,
    }
}

/// The QEMU line that boots a PVH ELF here (plain `-cpu host` aborts on
/// nested PVM hosts reading MSR 0x10a); isa-debug-exit gives status 1 for a 0 write.
fn qemu_cmd(qemu: &Path, guest: &Path, mem: u64) -> Vec<OsString> {
    let mut cmd: Vec<OsString> = vec![qemu.into()];
    for a in [
        "-M",
        "microvm,x-option-roms=off,rtc=off",
        "-enable-kvm",
        "-cpu",
        "host,-arch-capabilities",
        "-m",
        &mem.to_string(),
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=1",
        "-kernel",
    ] {
        cmd.push(a.into());
    }
    cmd.push(guest.into());
    cmd
}

fn measure(c: &mut Contestant, dir: &Path, record: bool) {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let start = Instant::now();
    let child = Command::new(&c.cmd[0])
        .args(&c.cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        c.failures += 1;
        return;
    };
    let (status, rss) = wait_with_rusage(child.id() as libc::pid_t);
    let wall = start.elapsed().as_secs_f64() * 1e6;
    let ok = status.is_some_and(|s| c.ok_codes.contains(&s));
    if !ok {
        c.failures += 1;
    }
    if record && ok {
        c.wall_us.push(wall);
        c.rss_kib.push(rss as f64);
        if c.monitor == Monitor::Flint {
            if let Ok(json) = std::fs::read_to_string(&report) {
                c.phases.push(phases_since_main(&json));
            }
        }
    }
}

/// Reap `pid`, returning its exit code and peak RSS (KiB) from wait4.
fn wait_with_rusage(pid: libc::pid_t) -> (Option<i32>, i64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child; `status` and `usage` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return (None, 0);
    }
    (
        std::process::ExitStatus::from_raw(status).code(),
        usage.ru_maxrss,
    )
}

fn phases_since_main(json: &str) -> Vec<(String, f64)> {
    let Some(start) = json.find("\"since_main_us\":{") else {
        return Vec::new();
    };
    let body = &json[start + 17..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim_matches('"').to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Percentile `p` (0–100) of `v` by nearest rank; NaN for no data.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[rank.min(s.len() - 1)]
}

fn print_table(cs: &[Contestant]) {
    println!("\nwhole process, spawn to reaped (ms) and peak RSS (MiB):");
    println!(
        "{:<12} {:<16} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "guest", "monitor", "median", "p90", "min", "peak RSS", "fails"
    );
    for c in cs {
        println!(
            "{:<12} {:<16} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>6}",
            c.guest,
            c.monitor.name(),
            percentile(&c.wall_us, 50.0) / 1e3,
            percentile(&c.wall_us, 90.0) / 1e3,
            percentile(&c.wall_us, 0.0) / 1e3,
            percentile(&c.rss_kib, 50.0) / 1024.0,
            c.failures
        );
    }
    for c in cs.iter().filter(|c| c.monitor != Monitor::Flint) {
        let Some(f) = cs
            .iter()
            .find(|f| f.monitor == Monitor::Flint && f.guest == c.guest)
        else {
            continue;
        };
        let ratio = percentile(&f.wall_us, 50.0) / percentile(&c.wall_us, 50.0);
        println!(
            "  {}: flint / {} = {:.2}x (medians)",
            c.guest,
            c.monitor.name(),
            ratio
        );
    }
}

fn print_phases(cs: &[Contestant]) {
    for c in cs
        .iter()
        .filter(|c| c.monitor == Monitor::Flint && !c.phases.is_empty())
    {
        println!(
            "\nflint boot report, {} (µs since main; median / p90):",
            c.guest
        );
        let names: Vec<String> = c.phases[0].iter().map(|(k, _)| k.clone()).collect();
        for name in names {
            let v: Vec<f64> = c
                .phases
                .iter()
                .filter_map(|p| p.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
                .collect();
            println!(
                "  {:<18} {:>9.1} {:>9.1}",
                name,
                percentile(&v, 50.0),
                percentile(&v, 90.0)
            );
        }
    }
}

pub(super) fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects and exists on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
