//! The tables `flint bench` prints after its runs — whole-process time and
//! peak RSS per contestant with each peer's ratio to flint, and every
//! boot-report stamp — and the `peers` array of the JSON file.

use super::json::Json;
use super::launch::{Contestant, Monitor};
use super::phases::{samples_json, Series};
use super::stats::{self, percentile};
use super::{results, show};

pub fn print_table(cs: &[Contestant]) {
    println!("\nwhole process, spawn to reaped (ms) and peak RSS (MiB):");
    println!(
        "{:<12} {:<16} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "guest", "monitor", "median", "p10", "p90", "stdev", "peak RSS", "fails"
    );
    for c in cs {
        let s = Series::of(&c.runs);
        let w = stats::Summary::of(s.samples("whole_process"));
        println!(
            "{:<12} {:<16} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>6}",
            c.guest,
            c.monitor.name(),
            w.median / 1e3,
            w.p10 / 1e3,
            w.p90 / 1e3,
            w.stdev / 1e3,
            stats::median(&s.rss_kib) / 1024.0,
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
        let (fs, cs) = (Series::of(&f.runs), Series::of(&c.runs));
        let wall = |s: &Series| stats::median(s.samples("whole_process"));
        println!(
            "  {}: {} / flint = {:.2}x the whole-process time, {:.2}x the peak RSS (medians)",
            c.guest,
            c.monitor.name(),
            wall(&cs) / wall(&fs),
            stats::median(&cs.rss_kib) / stats::median(&fs.rss_kib)
        );
    }
}

/// Every boot-report stamp, µs since `main` (median / p90), per flint guest.
pub fn print_report_detail(cs: &[Contestant]) {
    for c in cs.iter().filter(|c| c.monitor == Monitor::Flint) {
        let Some(first) = c.runs.iter().find(|r| !r.detail.is_empty()) else {
            continue;
        };
        println!(
            "\nflint boot report, {} (µs since main; median / p90):",
            c.guest
        );
        for (name, _) in &first.detail {
            let v: Vec<f64> = c
                .runs
                .iter()
                .filter_map(|r| r.detail.iter().find(|(k, _)| k == name).map(|(_, v)| *v))
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

/// The `peers` array: each non-flint contestant on the benchmarked guest.
pub fn peers_json(cs: &[Contestant]) -> Json {
    let flint_wall = stats::median(Series::of(&cs[0].runs).samples("whole_process"));
    let rows = cs
        .iter()
        .skip(1)
        .filter(|c| c.guest == cs[0].guest && c.monitor != Monitor::Flint)
        .map(|c| {
            let s = Series::of(&c.runs);
            let wall = stats::median(s.samples("whole_process"));
            let mut row = vec![
                ("monitor", Json::str(c.monitor.name())),
                ("command", Json::str(show(&c.cmd))),
                ("failures", Json::Num(c.failures as f64)),
                ("whole_process", samples_json(s.samples("whole_process"))),
                ("peak_rss_kib", samples_json(&s.rss_kib)),
                ("ratio_to_flint", Json::Num(wall / flint_wall)),
            ];
            // Another flint writes a boot report: its phases too.
            if c.report.is_some() {
                row.push(("phases", results::phases_json(&s)));
            }
            Json::obj(row)
        });
    Json::Arr(rows.collect())
}
