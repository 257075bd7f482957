//! What one benchmark run measured — its marks on a timeline that starts
//! at spawn (the boot report's CLOCK_MONOTONIC stamps, made relative to the
//! moment `flint bench` spawned the process) and its peak RSS — and the
//! phases between marks that `flint bench` summarises, compares and plots.

use super::json::Json;
use super::stats::Summary;

/// A point in a run's life, in µs after spawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// `flint bench` spawned the process (always 0).
    Spawn,
    /// flint's `main` entered.
    Main,
    /// The boot vCPU's first `KVM_RUN`.
    FirstKvmRun,
    /// The guest wrote the boot-complete marker (123 to port 0x3f0).
    BootComplete,
    /// The VM stopped.
    GuestExit,
    /// `flint bench` reaped the process.
    Reaped,
}

/// Every mark with its JSON name (the boot report's, where it has one).
pub const MARKS: [(Mark, &str); 6] = [
    (Mark::Spawn, "spawn"),
    (Mark::Main, "main_entered"),
    (Mark::FirstKvmRun, "first_kvm_run"),
    (Mark::BootComplete, "boot_complete"),
    (Mark::GuestExit, "guest_exit"),
    (Mark::Reaped, "reaped"),
];

/// A span between two marks.
#[derive(Clone, Copy, Debug)]
pub struct PhaseDef {
    /// The JSON key.
    pub key: &'static str,
    /// What the tables call it.
    pub label: &'static str,
    /// Where it starts.
    pub from: Mark,
    /// Where it ends.
    pub to: Mark,
}

const fn phase(key: &'static str, label: &'static str, from: Mark, to: Mark) -> PhaseDef {
    PhaseDef {
        key,
        label,
        from,
        to,
    }
}

/// The phases summarised, written and compared, in print order.
pub const PHASES: [PhaseDef; 5] = [
    phase(
        "process_start",
        "process start (spawn → main)",
        Mark::Spawn,
        Mark::Main,
    ),
    phase(
        "monitor_setup",
        "monitor setup (main → first KVM_RUN)",
        Mark::Main,
        Mark::FirstKvmRun,
    ),
    phase(
        "kernel_boot",
        "kernel (KVM_RUN → boot complete)",
        Mark::FirstKvmRun,
        Mark::BootComplete,
    ),
    phase(
        "guest_run",
        "guest (boot complete → exit)",
        Mark::BootComplete,
        Mark::GuestExit,
    ),
    phase(
        "whole_process",
        "whole process (spawn → reaped)",
        Mark::Spawn,
        Mark::Reaped,
    ),
];

/// What one run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSample {
    /// µs after spawn of each mark of [`MARKS`], where known.
    pub marks: [Option<f64>; 6],
    /// Peak resident set of the process (wait4), KiB.
    pub rss_kib: f64,
    /// The boot report's `since_main_us`, in its order.
    pub detail: Vec<(String, f64)>,
}

impl RunSample {
    /// A run known only from outside: spawned, reaped `wall_us` later.
    pub fn external(wall_us: f64, rss_kib: f64) -> RunSample {
        let mut s = RunSample {
            rss_kib,
            ..RunSample::default()
        };
        s.marks[Mark::Spawn as usize] = Some(0.0);
        s.marks[Mark::Reaped as usize] = Some(wall_us);
        s
    }

    /// Add the marks of flint's boot report (`timestamps_ns`, absolute),
    /// given the CLOCK_MONOTONIC ns at spawn.
    pub fn add_report(&mut self, report: &Json, spawn_ns: u64) {
        let stamps = report.get("timestamps_ns");
        for (mark, name) in MARKS {
            if let Some(ns) = stamps.and_then(|t| t.get(name)).and_then(Json::as_f64) {
                self.marks[mark as usize] = Some((ns - spawn_ns as f64) / 1e3);
            }
        }
        if let Some(since) = report.get("since_main_us") {
            self.detail = since
                .members()
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect();
        }
    }

    /// When `mark` happened, µs after spawn.
    pub fn at(&self, mark: Mark) -> Option<f64> {
        self.marks[mark as usize]
    }

    /// How long `p` took in this run, µs.
    pub fn phase(&self, p: &PhaseDef) -> Option<f64> {
        Some(self.at(p.to)? - self.at(p.from)?)
    }

    /// This run as a `runs` entry of the JSON: each mark and the peak RSS.
    pub fn to_json(&self) -> Json {
        let marks = MARKS.iter().map(|(m, name)| {
            let v = self.at(*m).map_or(Json::Null, Json::Num);
            (format!("{name}_us"), v)
        });
        Json::obj(marks.chain([("peak_rss_kib".to_string(), Json::Num(self.rss_kib))]))
    }

    /// A `runs` entry read back.
    pub fn from_json(v: &Json) -> RunSample {
        let mut s = RunSample {
            rss_kib: v
                .get("peak_rss_kib")
                .and_then(Json::as_f64)
                .unwrap_or(f64::NAN),
            ..RunSample::default()
        };
        for (m, name) in MARKS {
            s.marks[m as usize] = v.get(&format!("{name}_us")).and_then(Json::as_f64);
        }
        s
    }
}

/// A set of runs of one configuration: measured now, or read back from a
/// `--json` file; per-phase samples kept as recorded.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Each run, in order.
    pub runs: Vec<RunSample>,
    /// Samples of each phase of [`PHASES`] (by key), µs.
    pub phases: Vec<(String, Vec<f64>)>,
    /// Peak RSS of each run, KiB.
    pub rss_kib: Vec<f64>,
}

impl Series {
    /// The series of `runs`.
    pub fn of(runs: &[RunSample]) -> Series {
        let phases = PHASES
            .iter()
            .map(|p| {
                (
                    p.key.to_string(),
                    runs.iter().filter_map(|r| r.phase(p)).collect(),
                )
            })
            .collect();
        Series {
            runs: runs.to_vec(),
            phases,
            rss_kib: runs.iter().map(|r| r.rss_kib).collect(),
        }
    }

    /// The samples of phase `key` (empty if it was never seen).
    pub fn samples(&self, key: &str) -> &[f64] {
        self.phases
            .iter()
            .find(|(k, _)| k == key)
            .map_or(&[], |(_, v)| v.as_slice())
    }
}

/// `{"samples": [...], "summary": {...}}` for one set of samples.
pub fn samples_json(v: &[f64]) -> Json {
    let s = Summary::of(v);
    let summary = Json::obj([
        ("n", Json::Num(s.n as f64)),
        ("median", Json::Num(s.median)),
        ("p10", Json::Num(s.p10)),
        ("p90", Json::Num(s.p90)),
        ("mean", Json::Num(s.mean)),
        ("stdev", Json::Num(s.stdev)),
        ("min", Json::Num(s.min)),
        ("max", Json::Num(s.max)),
    ]);
    Json::obj([("samples", Json::nums(v)), ("summary", summary)])
}

/// The per-phase table: median, p10, p90 and stdev in µs, then peak RSS.
pub fn print_summary(title: &str, series: &Series) {
    println!("\n{title} (µs):");
    println!(
        "  {:<38} {:>10} {:>10} {:>10} {:>9} {:>4}",
        "phase", "median", "p10", "p90", "stdev", "n"
    );
    for p in &PHASES {
        let v = series.samples(p.key);
        if v.is_empty() {
            println!("  {:<38} {:>10}", p.label, "—");
            continue;
        }
        let s = Summary::of(v);
        println!(
            "  {:<38} {:>10.1} {:>10.1} {:>10.1} {:>9.1} {:>4}",
            p.label, s.median, s.p10, s.p90, s.stdev, s.n
        );
    }
    let rss = Summary::of(&series.rss_kib);
    println!(
        "  {:<38} {:>10.0} {:>10.0} {:>10.0} {:>9.0} {:>4}",
        "peak RSS (KiB)", rss.median, rss.p10, rss.p90, rss.stdev, rss.n
    );
    if series.samples("kernel_boot").is_empty() && !series.runs.is_empty() {
        println!("  (no boot-complete marker: the guest never wrote 123 to port 0x3f0)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Json {
        Json::parse(
            r#"{"timestamps_ns":{"main_entered":1500000,"vm_created":1600000,"first_kvm_run":2500000,
                "boot_complete":3000000,"guest_exit":3250000},
                "since_main_us":{"main_entered":0.0,"vm_created":100.0}}"#,
        )
        .unwrap()
    }

    #[test]
    fn report_stamps_become_phases_relative_to_spawn() {
        let mut r = RunSample::external(4000.0, 2048.0);
        r.add_report(&report(), 1_000_000);
        let got: Vec<Option<f64>> = PHASES.iter().map(|p| r.phase(p)).collect();
        assert_eq!(
            got,
            [
                Some(500.0),
                Some(1000.0),
                Some(500.0),
                Some(250.0),
                Some(4000.0)
            ]
        );
        assert_eq!(r.detail[1], ("vm_created".to_string(), 100.0));
    }

    #[test]
    fn a_run_without_a_report_has_only_the_whole_process() {
        let s = Series::of(&[
            RunSample::external(10.0, 1.0),
            RunSample::external(12.0, 1.0),
        ]);
        assert_eq!(s.samples("whole_process"), [10.0, 12.0]);
        assert!(s.samples("kernel_boot").is_empty());
        assert!(s.samples("no_such_phase").is_empty());
    }

    #[test]
    fn runs_survive_a_json_round_trip() {
        let mut r = RunSample::external(4000.0, 2048.0);
        r.add_report(&report(), 1_000_000);
        let back = RunSample::from_json(&Json::parse(&r.to_json().to_string()).unwrap());
        assert_eq!(back.marks, r.marks);
        assert_eq!(back.rss_kib, 2048.0);
    }
}
