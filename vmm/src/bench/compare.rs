//! `flint bench --compare`: an A/B test per phase between the baseline's
//! raw samples and this session's — Mann–Whitney U for significance, the
//! median shift, the Hodges–Lehmann shift and Cliff's delta for size — and
//! the CI gate. A phase regressed when it is significantly slower by more
//! than `--threshold` percent: the one-sided Mann–Whitney test of the new
//! samples minus the threshold (in µs: threshold × the baseline's median)
//! against the baseline gives p < [`ALPHA`]. A large shift buried in noise
//! and a small, consistent shift both pass; only evidence that the slowdown
//! exceeds the threshold fails the build.

use super::json::Json;
use super::phases::{Series, PHASES};
use super::stats::{cliffs_delta, hodges_lehmann, mann_whitney, median};

/// Significance level of the gate.
pub const ALPHA: f64 = 0.01;

/// What the test says about one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Significantly slower by more than the threshold: fails the gate.
    Slower,
    /// Significantly faster by more than the threshold.
    Faster,
    /// Neither: no significant shift, or one within the threshold.
    Same,
    /// Missing from one side.
    NoData,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Slower => "SLOWER",
            Verdict::Faster => "faster",
            Verdict::Same => "same",
            Verdict::NoData => "no data",
        }
    }
}

/// One phase, baseline against new.
#[derive(Clone, Debug)]
pub struct PhaseComparison {
    /// The phase's key.
    pub key: &'static str,
    /// Its table label.
    pub label: &'static str,
    /// Samples on each side (baseline, new).
    pub n: (usize, usize),
    /// Medians (baseline, new), µs.
    pub medians: (f64, f64),
    /// Hodges–Lehmann shift, µs (positive: new is slower).
    pub hl_us: f64,
    /// Cliff's delta of new over baseline.
    pub cliffs: f64,
    /// Mann–Whitney U of the new sample.
    pub u: f64,
    /// Two-sided p-value of "no shift".
    pub p: f64,
    /// One-sided p-value of "slower by no more than the threshold".
    pub p_slower: f64,
    /// One-sided p-value of "faster by no more than the threshold".
    pub p_faster: f64,
    /// The gate's reading.
    pub verdict: Verdict,
}

impl PhaseComparison {
    /// Median shift, µs.
    pub fn shift_us(&self) -> f64 {
        self.medians.1 - self.medians.0
    }

    /// Median shift, % of the baseline's median.
    pub fn shift_pct(&self) -> f64 {
        100.0 * self.shift_us() / self.medians.0
    }

    /// Hodges–Lehmann shift, % of the baseline's median.
    pub fn hl_pct(&self) -> f64 {
        100.0 * self.hl_us / self.medians.0
    }
}

/// Compare every phase of [`PHASES`]; `threshold_pct` as `--threshold`.
pub fn compare(base: &Series, new: &Series, threshold_pct: f64) -> Vec<PhaseComparison> {
    PHASES
        .iter()
        .map(|p| {
            let (a, b) = (base.samples(p.key), new.samples(p.key));
            let mw = mann_whitney(a, b);
            let margin = threshold_pct / 100.0 * median(a);
            let moved = |by: f64| -> Vec<f64> { b.iter().map(|x| x + by).collect() };
            let slower = mann_whitney(a, &moved(-margin));
            let faster = mann_whitney(a, &moved(margin));
            let mut c = PhaseComparison {
                key: p.key,
                label: p.label,
                n: (a.len(), b.len()),
                medians: (median(a), median(b)),
                hl_us: hodges_lehmann(a, b),
                cliffs: cliffs_delta(a, b),
                u: mw.map_or(f64::NAN, |m| m.u_b),
                p: mw.map_or(f64::NAN, |m| m.p),
                p_slower: slower.map_or(f64::NAN, |m| m.p_greater),
                p_faster: faster.map_or(f64::NAN, |m| m.p_less),
                verdict: Verdict::NoData,
            };
            c.verdict = verdict(&c);
            c
        })
        .collect()
}

fn verdict(c: &PhaseComparison) -> Verdict {
    if c.p.is_nan() {
        Verdict::NoData
    } else if c.p_slower < ALPHA {
        Verdict::Slower
    } else if c.p_faster < ALPHA {
        Verdict::Faster
    } else {
        Verdict::Same
    }
}

/// Whether any phase failed the gate.
pub fn regressed(cmp: &[PhaseComparison]) -> bool {
    cmp.iter().any(|c| c.verdict == Verdict::Slower)
}

/// The comparison table.
pub fn print(cmp: &[PhaseComparison], baseline: &str, threshold_pct: f64) {
    println!(
        "\ncompared with {baseline} (Mann–Whitney U; gate: slower by more than {threshold_pct} % with one-sided p < {ALPHA}):"
    );
    println!(
        "  {:<38} {:>9} {:>9} {:>9} {:>7} {:>9} {:>7} {:>6} {:>9} {:>9}  verdict",
        "phase", "base µs", "new µs", "shift µs", "%", "HL µs", "HL %", "δ", "p", "p(>thr)"
    );
    for c in cmp {
        if c.verdict == Verdict::NoData {
            println!("  {:<38} {:>9}", c.label, "—");
            continue;
        }
        println!(
            "  {:<38} {:>9.1} {:>9.1} {:>+9.1} {:>+7.1} {:>+9.1} {:>+7.1} {:>+6.2} {:>9.2e} {:>9.2e}  {}",
            c.label,
            c.medians.0,
            c.medians.1,
            c.shift_us(),
            c.shift_pct(),
            c.hl_us,
            c.hl_pct(),
            c.cliffs,
            c.p,
            c.p_slower,
            c.verdict.name()
        );
    }
    if regressed(cmp) {
        println!("  REGRESSION: a phase got significantly slower (exit 3)");
    } else {
        println!("  no phase got significantly slower");
    }
}

/// The `comparison` object of the JSON file.
pub fn to_json(cmp: &[PhaseComparison], baseline: &str, threshold_pct: f64) -> Json {
    let phases = cmp.iter().map(|c| {
        let row = Json::obj([
            ("n_baseline", Json::Num(c.n.0 as f64)),
            ("n_new", Json::Num(c.n.1 as f64)),
            ("median_baseline", Json::Num(c.medians.0)),
            ("median_new", Json::Num(c.medians.1)),
            ("shift_us", Json::Num(c.shift_us())),
            ("shift_pct", Json::Num(c.shift_pct())),
            ("hodges_lehmann_us", Json::Num(c.hl_us)),
            ("hodges_lehmann_pct", Json::Num(c.hl_pct())),
            ("cliffs_delta", Json::Num(c.cliffs)),
            ("u", Json::Num(c.u)),
            ("p", Json::Num(c.p)),
            ("p_slower_than_threshold", Json::Num(c.p_slower)),
            ("p_faster_than_threshold", Json::Num(c.p_faster)),
            ("verdict", Json::str(c.verdict.name().to_lowercase())),
        ]);
        (c.key, row)
    });
    Json::obj([
        ("baseline", Json::str(baseline)),
        (
            "test",
            Json::str(
                "mann-whitney-u, normal approximation, tie and continuity corrected, two-sided",
            ),
        ),
        ("alpha", Json::Num(ALPHA)),
        ("threshold_pct", Json::Num(threshold_pct)),
        ("phases", Json::obj(phases)),
        ("regressed", Json::Bool(regressed(cmp))),
    ])
}

/// Metadata fields on which the baseline differs from this session.
pub fn differences(base: &Json, new: &Json) -> Vec<String> {
    [
        "kernel",
        "initrd",
        "cmdline",
        "mem_mib",
        "vcpus",
        "host_cpu",
        "flint_version",
    ]
    .iter()
    .filter_map(|k| {
        let (a, b) = (base.get(k)?, new.get(k)?);
        (a != b).then(|| format!("{k}: {a} → {b}"))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::phases::RunSample;

    /// Runs whose whole process takes `base + i % 5` µs (i = 0..n).
    fn series(base: f64, n: u32) -> Series {
        let runs: Vec<RunSample> = (0..n)
            .map(|i| RunSample::external(base + f64::from(i % 5), 1.0))
            .collect();
        Series::of(&runs)
    }

    fn whole(cmp: &[PhaseComparison]) -> &PhaseComparison {
        cmp.iter().find(|c| c.key == "whole_process").unwrap()
    }

    #[test]
    fn a_large_significant_slowdown_fails_the_gate() {
        let cmp = compare(&series(1000.0, 20), &series(1100.0, 20), 5.0);
        let w = whole(&cmp);
        assert_eq!(w.verdict, Verdict::Slower);
        assert_eq!((w.hl_us, w.shift_us(), w.cliffs), (100.0, 100.0, 1.0));
        // The baseline median is 1002 µs (1000..=1004 in turn).
        assert!(w.p < 1e-6 && (w.hl_pct() - 1e4 / 1002.0).abs() < 1e-9);
        assert!(regressed(&cmp));
        // Phases without samples on either side have no verdict.
        assert!(cmp
            .iter()
            .any(|c| c.key == "kernel_boot" && c.verdict == Verdict::NoData));
    }

    #[test]
    fn a_significant_shift_under_the_threshold_passes() {
        let cmp = compare(&series(1000.0, 20), &series(1020.0, 20), 5.0);
        assert!(whole(&cmp).p < ALPHA);
        assert_eq!(whole(&cmp).verdict, Verdict::Same);
        assert!(!regressed(&cmp));
    }

    #[test]
    fn identical_samples_and_speed_ups_pass() {
        let cmp = compare(&series(1000.0, 20), &series(1000.0, 20), 5.0);
        assert_eq!(whole(&cmp).verdict, Verdict::Same);
        let cmp = compare(&series(1000.0, 20), &series(500.0, 20), 5.0);
        assert_eq!(whole(&cmp).verdict, Verdict::Faster);
        assert!(!regressed(&cmp));
    }

    #[test]
    fn a_noisy_shift_just_over_the_threshold_is_not_evidence() {
        // Baseline 1000..=1900 µs (median 1450), new 80 µs (5.5 %) slower:
        // over 5 % as a point estimate, nowhere near significant.
        let runs = |add: f64| -> Series {
            let r: Vec<RunSample> = (0..20u32)
                .map(|i| RunSample::external(1000.0 + 100.0 * f64::from(i % 10) + add, 1.0))
                .collect();
            Series::of(&r)
        };
        let cmp = compare(&runs(0.0), &runs(80.0), 5.0);
        assert!(whole(&cmp).hl_pct() > 5.0);
        assert!(whole(&cmp).p_slower > 0.2, "{:?}", whole(&cmp));
        assert_eq!(whole(&cmp).verdict, Verdict::Same);
    }

    #[test]
    fn too_few_samples_are_never_significant() {
        let cmp = compare(&series(1000.0, 3), &series(2000.0, 3), 5.0);
        assert!(whole(&cmp).p > ALPHA);
        assert!(!regressed(&cmp));
    }

    #[test]
    fn metadata_differences_are_named() {
        let a = Json::obj([("kernel", Json::str("a")), ("mem_mib", Json::Num(64.0))]);
        let b = Json::obj([("kernel", Json::str("b")), ("mem_mib", Json::Num(64.0))]);
        assert_eq!(differences(&a, &b), ["kernel: \"a\" → \"b\""]);
    }
}
