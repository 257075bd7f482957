//! `flint bench --plot FILE.svg`: one self-contained SVG (no scripts, no
//! external assets). Top: each run as a bootchart-style bar of its phases
//! on a shared µs-after-spawn axis, one `<g class="run">` per run (the
//! baseline's runs, with `--compare`, as `<g class="baseline-run">`).
//! Bottom: each phase's distribution — a box (p25–p75, median line),
//! whiskers (p10–p90) and every sample as a dot — baseline above new.

use std::fmt::Write as _;

use super::phases::{Mark, RunSample, Series, MARKS, PHASES};
use super::stats::percentile;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 70.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;

/// Segment colours, by the mark a segment starts at, and their legend.
const SEGMENTS: [(Mark, &str, &str); 5] = [
    (Mark::Spawn, "#9e9e9e", "process start"),
    (Mark::Main, "#4e79a7", "monitor setup"),
    (Mark::FirstKvmRun, "#f28e2b", "kernel"),
    (Mark::BootComplete, "#59a14f", "guest"),
    (Mark::GuestExit, "#bab0ac", "exit, reaped"),
];

/// The SVG text for `new` (and `base`, the `--compare` baseline).
pub fn svg(title: &str, new: &Series, base: Option<&Series>) -> String {
    let mut body = String::new();
    let mut y = 40.0;
    let sides: Vec<(&str, &Series)> = base
        .map(|b| ("baseline", b))
        .into_iter()
        .chain([("new", new)])
        .collect();
    let max_us = sides
        .iter()
        .flat_map(|(_, s)| s.runs.iter().filter_map(last_mark))
        .fold(0.0, f64::max)
        .max(1.0);
    let _ = write!(
        body,
        "<text x=\"{LEFT}\" y=\"{y}\" font-weight=\"bold\">Runs: phases after spawn (µs)</text>"
    );
    y += 10.0;
    y = legend(&mut body, y);
    for (name, s) in &sides {
        let class = if *name == "baseline" {
            "baseline-run"
        } else {
            "run"
        };
        y = timeline(&mut body, y, name, class, &s.runs, max_us);
    }
    y = axis(&mut body, y, 0.0, max_us);
    y += 30.0;
    let _ = write!(body, "<text x=\"{LEFT}\" y=\"{y}\" font-weight=\"bold\">Distributions (box p25–p75, whiskers p10–p90, dots: runs)</text>");
    y += 10.0;
    for p in &PHASES {
        let data: Vec<(&str, &[f64])> = sides.iter().map(|(n, s)| (*n, s.samples(p.key))).collect();
        y = distribution(&mut body, y, p.label, &data);
    }
    let height = y + 20.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <title>{t}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{t}</text>\n{body}</svg>\n",
        t = escape(title)
    )
}

/// The last known mark of a run, µs after spawn.
fn last_mark(r: &RunSample) -> Option<f64> {
    r.marks.iter().rev().find_map(|m| *m)
}

fn x_of(v: f64, lo: f64, hi: f64) -> f64 {
    LEFT + PLOT_W * ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

fn legend(out: &mut String, y: f64) -> f64 {
    let mut x = LEFT;
    for (_, colour, name) in SEGMENTS {
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            y,
            x + 14.0,
            y + 9.0
        );
        x += 24.0 + 7.0 * name.len() as f64;
    }
    y + 18.0
}

/// One bar per run, segments between consecutive known marks.
fn timeline(
    out: &mut String,
    mut y: f64,
    name: &str,
    class: &str,
    runs: &[RunSample],
    max_us: f64,
) -> f64 {
    let row = if runs.len() <= 60 { 8.0 } else { 4.0 };
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{name}</text>",
        LEFT - 8.0,
        y + row
    );
    for (i, r) in runs.iter().enumerate() {
        let tip = MARKS
            .iter()
            .filter_map(|(m, n)| Some(format!("{n} {:.1}", r.at(*m)?)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            out,
            "<g class=\"{class}\" data-run=\"{i}\"><title>{name} run {i}: {tip} µs</title>"
        );
        let known: Vec<(Mark, f64)> = MARKS
            .iter()
            .filter_map(|(m, _)| Some((*m, r.at(*m)?)))
            .collect();
        for w in known.windows(2) {
            let ((m0, t0), (_, t1)) = (w[0], w[1]);
            let colour = SEGMENTS.iter().find(|s| s.0 == m0).map_or("#ccc", |s| s.1);
            let (x0, x1) = (x_of(t0, 0.0, max_us), x_of(t1, 0.0, max_us));
            let _ = write!(
                out,
                "<rect x=\"{x0:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{colour}\"/>",
                (x1 - x0).max(0.5),
                row - 1.0
            );
        }
        out.push_str("</g>\n");
        y += row;
    }
    y + 6.0
}

/// A horizontal axis from `lo` to `hi` µs with five ticks.
fn axis(out: &mut String, y: f64, lo: f64, hi: f64) -> f64 {
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#333\"/>",
        LEFT + PLOT_W
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let x = x_of(v, lo, hi);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{y}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#333\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y + 4.0,
            y + 15.0,
            micros(v)
        );
    }
    y + 18.0
}

/// One phase: a box row per side on a shared scale.
fn distribution(out: &mut String, mut y: f64, label: &str, data: &[(&str, &[f64])]) -> f64 {
    let all: Vec<f64> = data.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{}</text>",
        y + 10.0,
        escape(label)
    );
    y += 16.0;
    if all.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"{}\">no samples</text>",
            y + 10.0
        );
        return y + 20.0;
    }
    let (mut lo, mut hi) = (percentile(&all, 0.0), percentile(&all, 100.0));
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.01).max(0.5);
    (lo, hi) = ((lo - pad).max(0.0), hi + pad);
    for (name, v) in data {
        let _ = write!(out, "<g class=\"dist\" data-side=\"{name}\">");
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{name}</text>",
            LEFT - 8.0,
            y + 12.0
        );
        boxplot(out, y, v, lo, hi);
        out.push_str("</g>\n");
        y += 22.0;
    }
    axis(out, y, lo, hi) + 6.0
}

fn boxplot(out: &mut String, y: f64, v: &[f64], lo: f64, hi: f64) {
    if v.is_empty() {
        return;
    }
    let x = |q: f64| x_of(percentile(v, q), lo, hi);
    let mid = y + 8.0;
    let _ = write!(
        out,
        "<line x1=\"{:.1}\" y1=\"{mid}\" x2=\"{:.1}\" y2=\"{mid}\" stroke=\"#555\"/>\
         <rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"12\" fill=\"#a0cbe8\" stroke=\"#4e79a7\"/>\
         <line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"#e15759\" stroke-width=\"2\"/>",
        x(10.0),
        x(90.0),
        x(25.0),
        y + 2.0,
        (x(75.0) - x(25.0)).max(1.0),
        x(50.0),
        y + 1.0,
        x(50.0),
        y + 15.0
    );
    for (i, s) in v.iter().enumerate() {
        // A fixed jitter per index spreads the dots without randomness.
        let jy = mid + f64::from((i * 7 % 11) as u8) - 5.0;
        let _ = write!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{jy:.1}\" r=\"1.6\" fill=\"#333\" fill-opacity=\"0.6\"/>",
            x_of(*s, lo, hi)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\">{}</text>",
        LEFT + PLOT_W + 4.0,
        y + 12.0,
        micros(percentile(v, 50.0))
    );
}

/// µs as a short label.
fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::json::Json;

    fn runs(n: u32, extra: f64) -> Series {
        let report = Json::parse(
            r#"{"timestamps_ns":{"main_entered":1500000,"first_kvm_run":2500000,"boot_complete":3000000,"guest_exit":3250000}}"#,
        )
        .unwrap();
        let runs: Vec<RunSample> = (0..n)
            .map(|i| {
                let mut r = RunSample::external(4000.0 + extra + f64::from(i), 2048.0);
                r.add_report(&report, 1_000_000);
                r
            })
            .collect();
        Series::of(&runs)
    }

    #[test]
    fn one_bar_group_per_run_and_balanced_tags() {
        let text = svg("flint <probe> & co", &runs(5, 0.0), None);
        assert!(text.starts_with("<svg "), "{text}");
        assert_eq!(text.matches("<g class=\"run\"").count(), 5);
        assert_eq!(text.matches("<g class=\"baseline-run\"").count(), 0);
        assert_eq!(text.matches("<g ").count(), text.matches("</g>").count());
        assert!(text.contains("flint &lt;probe&gt; &amp; co"));
        // Five segments per run: process start, setup, kernel, guest, exit.
        assert_eq!(text.matches("fill=\"#4e79a7\"/>").count(), 5 + 1);
        assert!(text.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn a_baseline_gets_its_own_bars_and_boxes() {
        let text = svg("t", &runs(4, 500.0), Some(&runs(3, 0.0)));
        assert_eq!(text.matches("<g class=\"run\"").count(), 4);
        assert_eq!(text.matches("<g class=\"baseline-run\"").count(), 3);
        assert_eq!(text.matches("data-side=\"baseline\"").count(), PHASES.len());
    }

    #[test]
    fn micros_labels_pick_a_unit() {
        assert_eq!(micros(950.0), "950 µs");
        assert_eq!(micros(4990.0), "4.99 ms");
        assert_eq!(micros(64_100.0), "64.1 ms");
    }
}
