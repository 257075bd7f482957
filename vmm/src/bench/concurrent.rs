//! `flint bench --concurrent K`: K flint processes spawned together, each
//! booting the guest, repeated; the launch rate (K over the batch's wall
//! time, first spawn to last reaped) and the peak RSS of each VM.

use std::ffi::OsString;

use super::json::Json;
use super::launch::{spawn_quiet, wait_with_rusage};
use super::phases::samples_json;
use super::results::host_cpus;
use super::stats::Summary;

/// One batch of K VMs.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// First spawn to last reaped, µs.
    pub wall_us: f64,
    /// Peak RSS of each VM that ended cleanly, KiB.
    pub rss_kib: Vec<f64>,
    /// VMs that did not start or did not exit 0.
    pub failures: usize,
}

impl Batch {
    /// VMs per second this batch achieved (clean ones only).
    pub fn vms_per_second(&self) -> f64 {
        self.rss_kib.len() as f64 / (self.wall_us / 1e6)
    }
}

/// `batches` measured batches of `k` runs of `cmd` after `warmup` unmeasured ones.
pub fn run(cmd: &[OsString], k: u64, warmup: u64, batches: u64) -> Vec<Batch> {
    let mut out = Vec::new();
    for i in 0..warmup + batches {
        let b = batch(cmd, k);
        if i >= warmup {
            out.push(b);
        }
    }
    out
}

fn batch(cmd: &[OsString], k: u64) -> Batch {
    let start = crate::time::monotonic_ns();
    let mut failures = 0;
    let mut pids = Vec::new();
    for _ in 0..k {
        match spawn_quiet(cmd) {
            Ok(child) => pids.push(child.id() as libc::pid_t),
            Err(_) => failures += 1,
        }
    }
    let mut rss_kib = Vec::new();
    for pid in pids {
        match wait_with_rusage(pid) {
            (Some(0), rss) => rss_kib.push(rss as f64),
            _ => failures += 1,
        }
    }
    Batch {
        wall_us: (crate::time::monotonic_ns() - start) as f64 / 1e3,
        rss_kib,
        failures,
    }
}

/// The launch-rate lines.
pub fn print(batches: &[Batch], k: u64) {
    let rate: Vec<f64> = batches.iter().map(Batch::vms_per_second).collect();
    let wall: Vec<f64> = batches.iter().map(|b| b.wall_us / 1e3).collect();
    let rss: Vec<f64> = batches
        .iter()
        .flat_map(|b| b.rss_kib.iter().copied())
        .collect();
    let failures: usize = batches.iter().map(|b| b.failures).sum();
    let cpus = host_cpus();
    let (r, w, m) = (Summary::of(&rate), Summary::of(&wall), Summary::of(&rss));
    println!(
        "\nconcurrent: {k} VMs started at once, {} batches, {cpus} host CPUs:",
        batches.len()
    );
    println!(
        "  {:.1} VMs/s median (p10 {:.1}, p90 {:.1}) = {:.1} VMs per core per second",
        r.median,
        r.p10,
        r.p90,
        r.median / cpus as f64
    );
    println!(
        "  batch wall time {:.2} ms median (p10 {:.2}, p90 {:.2})",
        w.median, w.p10, w.p90
    );
    println!(
        "  memory per VM (peak RSS) {:.2} MiB median (p90 {:.2}); failures {failures}",
        m.median / 1024.0,
        m.p90 / 1024.0
    );
}

/// The `concurrent` object of the JSON file.
pub fn to_json(batches: &[Batch], k: u64) -> Json {
    let rate: Vec<f64> = batches.iter().map(Batch::vms_per_second).collect();
    let wall: Vec<f64> = batches.iter().map(|b| b.wall_us).collect();
    let rss: Vec<f64> = batches
        .iter()
        .flat_map(|b| b.rss_kib.iter().copied())
        .collect();
    Json::obj([
        ("vms_per_batch", Json::Num(k as f64)),
        ("batches", Json::Num(batches.len() as f64)),
        ("host_cpus", Json::Num(host_cpus() as f64)),
        ("vms_per_second", samples_json(&rate)),
        ("batch_wall_us", samples_json(&wall)),
        ("peak_rss_kib_per_vm", samples_json(&rss)),
        (
            "failures",
            Json::Num(batches.iter().map(|b| b.failures).sum::<usize>() as f64),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_clean_vms_over_the_batch_time() {
        let b = Batch {
            wall_us: 20_000.0,
            rss_kib: vec![2048.0; 4],
            failures: 1,
        };
        assert_eq!(b.vms_per_second(), 200.0);
    }

    #[test]
    fn a_batch_of_true_processes_succeeds() {
        let cmd: Vec<OsString> = vec!["true".into()];
        let batches = run(&cmd, 3, 1, 2);
        assert_eq!(batches.len(), 2);
        assert!(batches
            .iter()
            .all(|b| b.failures == 0 && b.rss_kib.len() == 3));
        let json = to_json(&batches, 3);
        assert_eq!(json.get("vms_per_batch").and_then(Json::as_f64), Some(3.0));
    }
}
