//! `flint bench`: boot a guest many times and print whole-process wall time,
//! boot-report phases and peak RSS, side by side with peers run alternately
//! in the same session (QEMU `-M microvm`, the raw-KVM floor program), plus a
//! guest-vs-native CPU figure from the probe's compute workload, console
//! throughput and guest-vs-native virtio-blk throughput.
//!
//! Figures are printed, never asserted: this is a benchmark, not a test.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::exit::EXIT_FLINT_ERROR;

#[path = "../../images/probe/src/workload.rs"]
#[allow(dead_code, clippy::all)]
mod workload;

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
    /// KiB the probe sends through virtio-console and through the UART for
    /// the console throughput figure; 0 skips it.
    #[arg(long, value_name = "KiB", default_value_t = 1024)]
    pub console_kib: u64,
    /// MiB of the temporary disk for the virtio-blk throughput figure
    /// (guest vs native pwrite/pread on the same file); 0 skips it.
    #[arg(long, value_name = "MiB", default_value_t = 64)]
    pub blk_mib: u64,
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
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn contestants(args: &BenchArgs, probe: &Path, dir: &Path) -> Result<Vec<Contestant>, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find flint's own binary: {e}"))?;
    let qemu = match args.qemu.as_deref() {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => find_on_path("qemu-system-x86_64"),
    };
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

/// Rounds of the CPU comparison; native and guest runs alternate so that
/// drift in the host's speed (a shared, nested machine) hits both alike.
const CPU_ROUNDS: usize = 9;

/// The same workload natively (in this process) and in the probe (user mode
/// in the guest), compared by TSC cycles.
fn cpu_figure(iterations: u64) {
    let mut ws = workload::Workspace::new();
    let (mut native, mut guest) = (Vec::new(), Vec::new());
    let (mut result, mut guest_result) = (0, String::new());
    for _ in 0..CPU_ROUNDS {
        let t0 = rdtsc();
        result = workload::run(&mut ws, iterations);
        native.push((rdtsc() - t0) as f64);
        if let Some((cycles, sum)) = guest_workload(iterations) {
            guest.push(cycles);
            guest_result = sum;
        }
    }
    let (n, g) = (percentile(&native, 50.0), percentile(&guest, 50.0));
    let (n_best, g_best) = (percentile(&native, 0.0), percentile(&guest, 0.0));
    println!("\nCPU: {iterations} iterations of the probe's workload, {CPU_ROUNDS} alternating rounds, TSC cycles:");
    println!(
        "  median: native {n:.0}  guest (user mode) {g:.0}  guest speed = {:.1} % of native",
        100.0 * n / g
    );
    println!(
        "  best:   native {n_best:.0}  guest (user mode) {g_best:.0}  guest speed = {:.1} % of native",
        100.0 * n_best / g_best
    );
    let same = guest_result.trim_start_matches("0x") == format!("{result:x}");
    println!(
        "  checksums {}",
        if same {
            "match"
        } else {
            "DIFFER (guest and native workloads are not the same)"
        }
    );
    let _ = std::io::stdout().flush();
}

/// Run the workload in the probe; its cycle count and checksum.
fn guest_workload(iterations: u64) -> Option<(f64, String)> {
    let me = std::env::current_exe().ok()?;
    let out = Command::new(&me)
        .args([
            "run",
            "--timeout",
            "120",
            "--cmdline",
            &format!("probe.workload={iterations}"),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("probe: workload "))?;
    let cycles = field(line, "cycles=")?.parse().ok()?;
    Some((cycles, field(line, "result=")?.to_string()))
}

/// Runs of the console comparison.
const CONSOLE_ROUNDS: usize = 3;

/// The same bytes through virtio-console and through the 8250 UART, timed
/// by the probe with kvmclock (`probe.console-bench`).
fn console_figure(kib: u64) {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("flint"));
    let (mut virtio, mut uart) = (Vec::new(), Vec::new());
    for _ in 0..CONSOLE_ROUNDS {
        let cmdline = format!("probe.virtio=1 probe.console-bench={kib}");
        let out = Command::new(&me)
            .args(["run", "--timeout", "300", "--cmdline", &cmdline])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let Ok(out) = out else { continue };
        let text = String::from_utf8_lossy(&out.stdout);
        for (prefix, into) in [
            ("probe: console-bench virtio ", &mut virtio),
            ("probe: console-bench uart ", &mut uart),
        ] {
            if let Some(rate) = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .and_then(bytes_per_second)
            {
                into.push(rate);
            }
        }
    }
    let (v, u) = (percentile(&virtio, 50.0), percentile(&uart, 50.0));
    println!(
        "\nconsole: {kib} KiB from the probe, median of {CONSOLE_ROUNDS} runs (guest kvmclock):"
    );
    println!(
        "  virtio-console {:.1} MB/s   8250 UART {:.2} MB/s   virtio / UART = {:.0}x",
        v / 1e6,
        u / 1e6,
        v / u
    );
}

/// Request sizes of the block figure (as the probe's `probe.blk-bench`).
const BLK_SIZES: [usize; 3] = [8 << 10, 16 << 10, 1 << 20];

/// Write then read rates (bytes per second) for one request size.
#[derive(Clone, Copy)]
struct Rates {
    write: f64,
    read: f64,
}

/// The disk written and read back sequentially, one request at a time, by
/// the probe through flint's virtio-blk (`probe.blk-bench=1`) and natively
/// by this process with pwrite + fdatasync and pread on the same file
/// (page cache used both ways, as flint's default cache=writeback).
fn blk_figure(mib: u64, dir: &Path) {
    let disk = dir.join("blk-bench.img");
    let result = blk_rates(mib, &disk);
    let _ = std::fs::remove_file(&disk);
    let (guest, native) = match result {
        Ok(r) => r,
        Err(e) => {
            println!(
                "
virtio-blk: skipped ({e})"
            );
            return;
        }
    };
    println!(
        "
virtio-blk: {mib} MiB disk written (then FLUSH / fdatasync) and read back sequentially,"
    );
    println!("queue depth 1; guest = probe through flint (kvmclock), native = pwrite/pread here:");
    println!(
        "  {:>8} {:>13} {:>10} {:>6} {:>13} {:>10} {:>6}",
        "size", "guest wr MB/s", "native wr", "%", "guest rd MB/s", "native rd", "%"
    );
    for (size, g, n) in BLK_SIZES
        .iter()
        .zip(&guest)
        .zip(&native)
        .map(|((s, g), n)| (s, g, n))
    {
        let size = if *size >= 1 << 20 {
            format!("{} MiB", size >> 20)
        } else {
            format!("{} KiB", size >> 10)
        };
        let (gw, gr) = g.map_or((f64::NAN, f64::NAN), |g| (g.write, g.read));
        println!(
            "  {:>8} {:>13.1} {:>10.1} {:>6.1} {:>13.1} {:>10.1} {:>6.1}",
            size,
            gw / 1e6,
            n.write / 1e6,
            100.0 * gw / n.write,
            gr / 1e6,
            n.read / 1e6,
            100.0 * gr / n.read
        );
    }
}

type BlkRates = ([Option<Rates>; 3], [Rates; 3]);

fn blk_rates(mib: u64, disk: &Path) -> Result<BlkRates, String> {
    use std::os::unix::fs::FileExt as _;
    let err = |e: std::io::Error| format!("{}: {e}", disk.display());
    let bytes = mib << 20;
    // Allocated, not sparse: both sides overwrite existing blocks.
    {
        let f = std::fs::File::create(disk).map_err(err)?;
        let zeros = vec![0u8; 1 << 20];
        for i in 0..mib {
            f.write_all_at(&zeros, i << 20).map_err(err)?;
        }
        f.sync_all().map_err(err)?;
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find flint's own binary: {e}"))?;
    let out = Command::new(&me)
        .arg("run")
        .arg("--timeout")
        .arg("600")
        .arg("--disk")
        .arg(format!("path={}", disk.display()))
        .args(["--cmdline", "probe.virtio=1 probe.blk-bench=1"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("flint run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut guest = [None; 3];
    for line in text.lines().filter(|l| l.starts_with("probe: blk-bench ")) {
        let num = |k: &str| -> Option<f64> { field(line, k)?.parse().ok() };
        let (Some(size), Some(wb), Some(wns), Some(rb), Some(rns)) = (
            num("size="),
            num("write-bytes="),
            num("write-ns="),
            num("read-bytes="),
            num("read-ns="),
        ) else {
            continue;
        };
        if let Some(i) = BLK_SIZES.iter().position(|&s| s as f64 == size) {
            if wns > 0.0 && rns > 0.0 {
                guest[i] = Some(Rates {
                    write: wb * 1e9 / wns,
                    read: rb * 1e9 / rns,
                });
            }
        }
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(err)?;
    let mut buf: Vec<u8> = (0..1usize << 20).map(|i| i as u8).collect();
    let mut native = [Rates {
        write: 0.0,
        read: 0.0,
    }; 3];
    for (r, &size) in native.iter_mut().zip(&BLK_SIZES) {
        let start = Instant::now();
        let mut off = 0;
        while off < bytes {
            let n = (bytes - off).min(size as u64) as usize;
            f.write_all_at(&buf[..n], off).map_err(err)?;
            off += n as u64;
        }
        f.sync_data().map_err(err)?;
        r.write = bytes as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut off = 0;
        while off < bytes {
            let n = (bytes - off).min(size as u64) as usize;
            f.read_exact_at(&mut buf[..n], off).map_err(err)?;
            off += n as u64;
        }
        r.read = bytes as f64 / start.elapsed().as_secs_f64();
    }
    Ok((guest, native))
}

/// Bytes per second from a `bytes=<n> ns=<t>` line.
fn bytes_per_second(line: &str) -> Option<f64> {
    let bytes: f64 = field(line, "bytes=")?.parse().ok()?;
    let ns: f64 = field(line, "ns=")?.parse().ok()?;
    (ns > 0.0).then(|| bytes * 1e9 / ns)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ').find_map(|w| w.strip_prefix(key))
}

fn rdtsc() -> u64 {
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
