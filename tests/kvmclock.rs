//! kvmclock against the host's clock: the probe writes its kvmclock reading
//! to flint's clock-sample window twice, ≥ 10 s of guest time apart; flint
//! stamps each write with CLOCK_MONOTONIC. The two intervals must agree.

mod common;

use common::*;

/// (guest_ns, host_ns) pairs from the boot report's `clock_samples`.
fn samples(report: &str) -> Vec<(u64, u64)> {
    let at = report
        .find("\"clock_samples\":[")
        .expect("clock_samples in the report");
    let list = &report[at..report[at..].find(']').map_or(report.len(), |e| at + e)];
    list.split("{\"guest_ns\":")
        .skip(1)
        .map(|s| {
            let (guest, rest) = s.split_once(",\"host_ns\":").expect("host_ns");
            let host: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (guest.parse().unwrap(), host.parse().unwrap())
        })
        .collect()
}

#[test]
fn kvmclock_keeps_pace_with_the_host_over_10_seconds() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.clock-drift=10", "--boot-report", "-"]);
    assert_eq!(out.code, Some(0), "{out}");
    let report = out.stdout.lines().last().unwrap_or_default();
    let s = samples(report);
    assert_eq!(s.len(), 2, "{report}");
    let guest = s[1].0 as f64 - s[0].0 as f64;
    let host = s[1].1 as f64 - s[0].1 as f64;
    assert!(guest >= 10e9, "the probe sampled {guest} ns apart");
    let ppm = (guest - host) / host * 1e6;
    eprintln!(
        "kvmclock drift over {:.1} s of host time: {ppm:+.1} ppm",
        host / 1e9
    );
    // One MMIO exit's jitter (tens of µs, ms under load) is a few ppm here;
    // a wrong TSC scale would be thousands.
    assert!(
        ppm.abs() < 200.0,
        "kvmclock drifted {ppm:+.1} ppm from the host's clock"
    );
}
