//! `flint bench`: a boot-time regression benchmark. Boots a guest (the
//! embedded probe, or the kernel/initrd/command line given) N times,
//! interleaved with peers (QEMU microvm, Firecracker, the raw-KVM floor),
//! and prints per-phase medians, p10, p90, stdev and peak RSS; writes every
//! raw sample as JSON (`--json`), A/B-tests against a baseline file
//! (`--compare`, exit 3 on a regression), measures the launch rate
//! (`--concurrent`) and draws an SVG (`--plot`). Then the extra figures:
//! CPU, console, virtio-blk, passthrough disk, kvmclock and virtio-net.
//!
//! Figures are printed, never asserted: this is a benchmark, not a test.

use std::path::{Path, PathBuf};

use crate::exit::EXIT_FLINT_ERROR;

mod args;
mod compare;
mod concurrent;
mod disk;
mod figures;
pub mod json;
mod launch;
mod net;
mod phases;
mod plot;
mod results;
mod stats;
mod tables;

pub use args::{Against, BenchArgs};
pub use stats::percentile;

use args::GuestSpec;
use disk::disk_figure;
use figures::{blk_figure, clock_figure, console_figure, cpu_figure};
use json::Json;
use launch::{qemu_cmd, Contestant, Monitor};
use net::net_figure;
use phases::Series;

/// Exit code of `flint bench --compare` when a phase regressed.
pub const EXIT_REGRESSION: u8 = 3;

/// Run the benchmark; returns the process exit code: 0, [`EXIT_REGRESSION`]
/// or 125 when the benchmark itself could not run.
pub fn run(args: BenchArgs) -> u8 {
    match bench(&args) {
        Ok(Gate::Pass) => 0,
        Ok(Gate::Regression) => EXIT_REGRESSION,
        Err(e) => {
            eprintln!("flint bench: error: {e}");
            EXIT_FLINT_ERROR
        }
    }
}

/// What `--compare` decided (Pass without it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    Pass,
    Regression,
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench(args: &BenchArgs) -> Result<Gate, String> {
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        return Err(format!(
            "--threshold {}: must be a percentage ≥ 0",
            args.threshold
        ));
    }
    let dir = Scratch(std::env::temp_dir().join(format!("flint-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    let probe = dir.0.join("probe.elf");
    std::fs::write(&probe, crate::probe::PROBE_ELF)
        .map_err(|e| format!("{}: {e}", probe.display()))?;
    let guest = guest_spec(args, &probe);
    let baseline = match &args.compare {
        Some(p) => Some(results::read_baseline(p).map_err(|e| chain(&e))?),
        None => None,
    };
    let mut contestants = contestants(args, &guest, &dir.0)?;
    println!(
        "flint bench: {} runs each after {} warm-up, interleaved; guest {} ({} MiB, {} vCPU); host {} CPUs",
        args.runs,
        args.warmup,
        guest.kernel_name,
        guest.mem,
        guest.vcpus,
        results::host_cpus()
    );
    launch::rounds(&mut contestants, args.warmup, args.runs);
    let flint = Series::of(&contestants[0].runs);
    let baseline = baseline.or_else(|| interleaved_baseline(args, &contestants));
    if flint.runs.is_empty() {
        return Err(format!(
            "every flint run failed; `{}` says: {}",
            show(&contestants[0].cmd),
            first_error(&contestants[0].cmd)
        ));
    }
    tables::print_table(&contestants);
    phases::print_summary(
        &format!(
            "flint phases, {} runs of {}",
            flint.runs.len(),
            guest.kernel_name
        ),
        &flint,
    );
    tables::print_report_detail(&contestants);
    let gate = report(args, &guest, &contestants, &flint, baseline.as_ref())?;
    extra_figures(args, &probe, &dir.0);
    Ok(gate)
}

/// The `--compare-binary` runs as a baseline.
fn interleaved_baseline(args: &BenchArgs, cs: &[Contestant]) -> Option<results::Baseline> {
    let old = args.compare_binary.as_ref()?;
    let c = cs.iter().find(|c| c.monitor == Monitor::FlintBaseline)?;
    Some(results::Baseline {
        path: format!("{} (interleaved)", old.display()),
        metadata: Json::Null,
        series: Series::of(&c.runs),
    })
}

/// `--concurrent`, `--compare`, `--json` and `--plot`.
fn report(
    args: &BenchArgs,
    guest: &GuestSpec,
    cs: &[Contestant],
    flint: &Series,
    baseline: Option<&results::Baseline>,
) -> Result<Gate, String> {
    let concurrent = match args.concurrent {
        Some(k) => {
            let cmd = launch::flint_cmd(guest, None, args.debug_delay_ms)?;
            let batches = concurrent::run(&cmd, k, args.warmup, args.runs);
            concurrent::print(&batches, k);
            concurrent::to_json(&batches, k)
        }
        None => Json::Null,
    };
    let metadata = results::metadata(&results::Meta {
        guest,
        runs: args.runs,
        warmup: args.warmup,
        failures: cs[0].failures,
        debug_delay_ms: args.debug_delay_ms,
    });
    let (mut gate, mut comparison) = (Gate::Pass, Json::Null);
    if let Some(b) = baseline {
        for d in compare::differences(&b.metadata, &metadata) {
            println!("note: the baseline differs in {d}");
        }
        let cmp = compare::compare(&b.series, flint, args.threshold);
        compare::print(&cmp, &b.path, args.threshold);
        comparison = compare::to_json(&cmp, &b.path, args.threshold);
        if compare::regressed(&cmp) {
            gate = Gate::Regression;
        }
    }
    if let Some(path) = &args.json {
        let doc = results::Document {
            metadata,
            flint: flint.clone(),
            peers: tables::peers_json(cs),
            concurrent,
            comparison,
        };
        results::write(path, &doc)?;
        println!("\nwrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "flint bench: {}, {} runs",
            guest.kernel_name,
            flint.runs.len()
        );
        let svg = plot::svg(&title, flint, baseline.map(|b| &b.series));
        std::fs::write(path, svg).map_err(|e| format!("--plot {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(gate)
}

fn extra_figures(args: &BenchArgs, probe: &Path, dir: &Path) {
    let qemu = launch::qemu_binary(args.qemu.as_deref());
    if args.workload > 0 {
        cpu_figure(args.workload);
    }
    if args.console_kib > 0 {
        console_figure(args.console_kib);
    }
    if args.blk_mib > 0 {
        blk_figure(args.blk_mib, dir);
    }
    if args.disk_mib > 0 {
        disk_figure(args.disk_mib, dir, probe, qemu.as_deref());
    }
    if args.clock_seconds > 0 {
        clock_figure(args.clock_seconds);
    }
    if args.net_flood > 0 {
        net_figure(args.net_flood, probe, qemu.as_deref());
    }
}

fn guest_spec(args: &BenchArgs, probe: &Path) -> GuestSpec {
    let (kernel, kernel_name) = match &args.kernel {
        Some(k) => (k.clone(), k.display().to_string()),
        None => (probe.to_path_buf(), "embedded probe".to_string()),
    };
    GuestSpec {
        kernel,
        kernel_name,
        initrd: args.initrd.clone(),
        rootfs: args.rootfs.clone(),
        command: args.command.clone(),
        cmdline: args.cmdline.clone(),
        mem: args.mem,
        vcpus: args.vcpus,
    }
}

/// flint on the guest first, then its peers; then the same for `--peer-guest`.
fn contestants(args: &BenchArgs, guest: &GuestSpec, dir: &Path) -> Result<Vec<Contestant>, String> {
    let mut guests = vec![("guest".to_string(), guest.clone())];
    if args.kernel.is_none() {
        guests[0].0 = "probe".into();
    }
    if let Some(g) = &args.peer_guest {
        let name = g
            .file_name()
            .map_or("peer".into(), |n| n.to_string_lossy().into_owned());
        guests.push((
            name,
            GuestSpec {
                kernel: g.clone(),
                kernel_name: g.display().to_string(),
                ..guest.clone()
            },
        ));
    }
    let mut out = Vec::new();
    for (gname, g) in &guests {
        let report = dir.join("report.json");
        let mut flint = Contestant::new(
            Monitor::Flint,
            gname,
            launch::flint_cmd(g, Some(&report), args.debug_delay_ms)?,
            &[0],
        );
        flint.report = Some(report);
        out.push(flint);
        if let Some(old) = args.compare_binary.as_ref().filter(|_| out.len() == 1) {
            launch::require_flint(old).map_err(|e| chain(&e))?;
            let report = dir.join("report-baseline.json");
            let cmd = launch::flint_binary_cmd(old, g, Some(&report), 0);
            let mut base = Contestant::new(Monitor::FlintBaseline, gname, cmd, &[0]);
            base.report = Some(report);
            out.push(base);
        }
        // The floor sets no CPUID, so its vCPU has no long mode: it can boot
        // the 32-bit peer guest but not the probe.
        if let Some(floor) = args.floor.as_ref().filter(|_| gname != "probe") {
            out.push(Contestant::new(
                Monitor::Floor,
                gname,
                vec![floor.into(), g.kernel.clone().into()],
                &[0],
            ));
        }
        out.extend(peers(args, gname, g, dir)?);
    }
    Ok(out)
}

/// `--against` peers, or QEMU on PATH when none is named.
fn peers(
    args: &BenchArgs,
    gname: &str,
    g: &GuestSpec,
    dir: &Path,
) -> Result<Vec<Contestant>, String> {
    let mut out = Vec::new();
    if g.is_oneshot() {
        if !args.against.is_empty() {
            return Err(
                "--against: QEMU and Firecracker cannot run a one-shot command \
                        (-- CMD hands it over through flint's own protocol); drop -- CMD \
                        to compare plain boots"
                    .into(),
            );
        }
        return Ok(out);
    }
    if args.against.is_empty() {
        if let Some(q) = launch::qemu_binary(args.qemu.as_deref()) {
            out.push(Contestant::new(
                Monitor::Qemu,
                gname,
                launch::qemu_guest_cmd(&q, g),
                &[0, 1],
            ));
        }
        return Ok(out);
    }
    for a in &args.against {
        let c = match a {
            Against::Qemu => {
                let q = launch::require_qemu(args.qemu.as_deref()).map_err(|e| chain(&e))?;
                Contestant::new(Monitor::Qemu, gname, launch::qemu_guest_cmd(&q, g), &[0, 1])
            }
            Against::Firecracker(fc) => {
                let config = dir.join(format!("firecracker-{gname}.json"));
                let cmd = launch::firecracker_cmd(fc, g, &config).map_err(|e| chain(&e))?;
                Contestant::new(Monitor::Firecracker, gname, cmd, &[0])
            }
        };
        out.push(c);
    }
    Ok(out)
}

/// One run of `cmd` with its stderr kept: why it fails.
fn first_error(cmd: &[std::ffi::OsString]) -> String {
    let out = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) => format!(
            "{} ({})",
            String::from_utf8_lossy(&o.stderr).trim(),
            o.status
        ),
        Err(e) => e.to_string(),
    }
}

pub(crate) fn show(cmd: &[std::ffi::OsString]) -> String {
    cmd.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error and its sources, one sentence each.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

pub(super) fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects and exists on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}
