//! The figures `flint bench` prints after the boot-time table: CPU speed
//! in guest user mode against native, console throughput (virtio-console
//! against the UART) and virtio-blk throughput against native file I/O,
//! each measured by running the probe through flint's own binary.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{percentile, rdtsc};

#[path = "../../../images/probe/src/workload.rs"]
#[allow(dead_code, clippy::all)]
mod workload;

/// `flint run ARGS...` with flint's own binary; its stdout.
pub(super) fn probe_stdout(args: &[&str]) -> Result<String, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find flint's own binary: {e}"))?;
    let out = Command::new(me)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("flint run: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Rounds of the CPU comparison; native and guest runs alternate so that
/// drift in the host's speed (a shared, nested machine) hits both alike.
const CPU_ROUNDS: usize = 9;

/// The same workload natively (in this process) and in the probe (user mode
/// in the guest), compared by TSC cycles.
pub(super) fn cpu_figure(iterations: u64) {
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
    let cmdline = format!("probe.workload={iterations}");
    let text = probe_stdout(&["--timeout", "120", "--cmdline", &cmdline]).ok()?;
    let line = text.lines().find(|l| l.starts_with("probe: workload "))?;
    let cycles = field(line, "cycles=")?.parse().ok()?;
    Some((cycles, field(line, "result=")?.to_string()))
}

/// Runs of the console comparison.
const CONSOLE_ROUNDS: usize = 3;
/// Most KiB sent through the UART (at ~1 MB/s).
const CONSOLE_UART_KIB: u64 = 1024;

/// The same bytes through virtio-console and through the 8250 UART, timed
/// by the probe with kvmclock (`probe.console-bench`).
pub(super) fn console_figure(kib: u64) {
    let (mut virtio, mut uart) = (Vec::new(), Vec::new());
    for _ in 0..CONSOLE_ROUNDS {
        let uart_kib = kib.min(CONSOLE_UART_KIB);
        let cmdline =
            format!("probe.virtio=1 probe.console-bench={kib} probe.console-bench-uart={uart_kib}");
        let Ok(text) = probe_stdout(&["--timeout", "300", "--cmdline", &cmdline]) else {
            continue;
        };
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
        "\nconsole: {kib} KiB through virtio-console (16 KiB chains, 32 in flight), {} KiB \
         through the UART, median of {CONSOLE_ROUNDS} runs (guest kvmclock):",
        kib.min(CONSOLE_UART_KIB)
    );
    println!(
        "  virtio-console {:.1} MB/s   8250 UART {:.2} MB/s   virtio / UART = {:.0}x",
        v / 1e6,
        u / 1e6,
        v / u
    );
}

/// Request sizes of the block figure (as the probe's `probe.blk-bench`).
pub(super) const BLK_SIZES: [usize; 3] = [8 << 10, 16 << 10, 1 << 20];

/// Write then read rates (bytes per second) for one request size.
#[derive(Clone, Copy)]
pub(super) struct Rates {
    pub(super) write: f64,
    pub(super) read: f64,
}

/// Queue depths of the guest side of the block figure.
pub(super) const BLK_DEPTHS: [u64; 2] = [1, 32];

/// The disk written and read back sequentially by the probe through
/// flint's virtio-blk (`probe.blk-bench=1`) at queue depth 1 and 32, and
/// natively by this process with pwrite + fdatasync and pread on the same
/// file (page cache used both ways, as flint's default cache=writeback;
/// buffered I/O completes in the caller, so one native stream is the
/// native figure for both depths).
pub(super) fn blk_figure(mib: u64, dir: &Path) {
    let disk = dir.join("blk-bench.img");
    let result = blk_rates(mib, &disk);
    let _ = std::fs::remove_file(&disk);
    let (guest, native) = match result {
        Ok(r) => r,
        Err(e) => {
            println!("\nvirtio-blk: skipped ({e})");
            return;
        }
    };
    println!(
        "\nvirtio-blk: {mib} MiB disk written (then FLUSH / fdatasync) and read back sequentially;"
    );
    println!("guest = probe through flint (kvmclock), native = pwrite/pread here, one stream:");
    println!(
        "  {:>8} {:>3} {:>13} {:>10} {:>6} {:>13} {:>10} {:>6}",
        "size", "qd", "guest wr MB/s", "native wr", "%", "guest rd MB/s", "native rd", "%"
    );
    for (d, depth) in BLK_DEPTHS.iter().enumerate() {
        for (i, size) in BLK_SIZES.iter().enumerate() {
            let size = if *size >= 1 << 20 {
                format!("{} MiB", size >> 20)
            } else {
                format!("{} KiB", size >> 10)
            };
            let n = native[i];
            let (gw, gr) = guest[d][i].map_or((f64::NAN, f64::NAN), |g| (g.write, g.read));
            println!(
                "  {:>8} {:>3} {:>13.1} {:>10.1} {:>6.1} {:>13.1} {:>10.1} {:>6.1}",
                size,
                depth,
                gw / 1e6,
                n.write / 1e6,
                100.0 * gw / n.write,
                gr / 1e6,
                n.read / 1e6,
                100.0 * gr / n.read
            );
        }
    }
}

pub(super) type GuestRates = [Option<Rates>; 3];

fn blk_rates(mib: u64, disk: &Path) -> Result<([GuestRates; 2], [Rates; 3]), String> {
    let err = |e: std::io::Error| format!("{}: {e}", disk.display());
    // Allocated, not sparse: both sides overwrite existing blocks.
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::File::create(disk).map_err(err)?;
        let zeros = vec![0u8; 1 << 20];
        for i in 0..mib {
            f.write_all_at(&zeros, i << 20).map_err(err)?;
        }
        f.sync_all().map_err(err)?;
    }
    let mut guest = [[None; 3]; 2];
    for (rates, depth) in guest.iter_mut().zip(BLK_DEPTHS) {
        *rates = guest_blk_rates(disk, depth)?;
    }
    Ok((guest, native_blk_rates(mib << 20, disk)?))
}

/// One probe run of `probe.blk-bench` at queue depth `depth`.
fn guest_blk_rates(disk: &Path, depth: u64) -> Result<GuestRates, String> {
    let disk_arg = format!("path={}", disk.display());
    flint_blk_rates(&["--disk", &disk_arg], depth)
}

/// `probe.blk-bench` at queue depth `depth` on the disk `disk_args` give
/// flint (`--disk ...` or `--passthrough DEV`).
pub(super) fn flint_blk_rates(disk_args: &[&str], depth: u64) -> Result<GuestRates, String> {
    let cmdline = format!("probe.virtio=1 probe.blk-bench=1 probe.blk-bench-qd={depth}");
    let mut args = vec!["--timeout", "600"];
    args.extend_from_slice(disk_args);
    args.extend_from_slice(&["--cmdline", &cmdline]);
    Ok(parse_blk_bench(&probe_stdout(&args)?))
}

/// Rates per request size from the probe's `blk-bench` lines.
pub(super) fn parse_blk_bench(text: &str) -> GuestRates {
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
    guest
}

/// The same sequential passes natively: pwrite + fdatasync, then pread.
fn native_blk_rates(bytes: u64, disk: &Path) -> Result<[Rates; 3], String> {
    use std::os::unix::fs::FileExt as _;
    let err = |e: std::io::Error| format!("{}: {e}", disk.display());
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
    Ok(native)
}

/// kvmclock against the host's CLOCK_MONOTONIC over `seconds`
/// (`probe.clock-drift`, samples stamped by flint at the guest's MMIO
/// writes), beside the drift that kvmclock's scale alone predicts: the
/// TSC rate measured against the host clock over the same interval, over
/// the TSC frequency KVM put in kvmclock's scale. What is left after that
/// is the monitor's share (exit jitter).
pub(super) fn clock_figure(seconds: u64) {
    let cmdline = format!("probe.clock-drift={seconds}");
    let timeout = (seconds + 60).to_string();
    let args = [
        "--timeout",
        &timeout,
        "--cmdline",
        &cmdline,
        "--boot-report",
        "-",
    ];
    let Ok(text) = probe_stdout(&args) else {
        println!("\nkvmclock: skipped (flint did not run)");
        return;
    };
    let line = text.lines().find(|l| l.starts_with("probe: clock-drift "));
    let samples = text.lines().last().map(clock_samples).unwrap_or_default();
    let (Some(line), [(g0, h0), (g1, h1)]) = (line, samples.as_slice()) else {
        println!("\nkvmclock: skipped (no samples; the probe said: {line:?})");
        return;
    };
    let (guest, host) = ((g1 - g0) as f64, (h1 - h0) as f64);
    let measured = (guest - host) / host * 1e6;
    let num = |k: &str| -> Option<f64> { field(line, k)?.parse().ok() };
    println!(
        "\nkvmclock: two samples {:.1} s apart (host CLOCK_MONOTONIC):",
        host / 1e9
    );
    println!("  drift from the host clock     {measured:+.2} ppm");
    if let (Some(ticks), Some(scale_hz)) = (num("tsc_ticks="), num("kvmclock_tsc_hz=")) {
        let tsc_hz = ticks * 1e9 / host;
        let predicted = (tsc_hz / scale_hz - 1.0) * 1e6;
        println!(
            "  TSC rate by the host clock    {tsc_hz:.0} Hz; kvmclock's scale assumes {scale_hz:.0} Hz"
        );
        println!("  drift that scale predicts     {predicted:+.2} ppm (the host KVM's tsc_khz)");
        println!(
            "  rest (exit timing)            {:+.2} ppm",
            measured - predicted
        );
    }
}

/// (guest_ns, host_ns) pairs from a boot report's `clock_samples`.
fn clock_samples(report: &str) -> Vec<(u64, u64)> {
    let Some(at) = report.find("\"clock_samples\":[") else {
        return Vec::new();
    };
    let list = &report[at..report[at..].find(']').map_or(report.len(), |e| at + e)];
    list.split("{\"guest_ns\":")
        .skip(1)
        .filter_map(|s| {
            let (guest, rest) = s.split_once(",\"host_ns\":")?;
            let host: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some((guest.parse().ok()?, host.parse().ok()?))
        })
        .collect()
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
