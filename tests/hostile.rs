//! A hostile guest (`probe.hostile=<s>`): for a few seconds the probe
//! writes random values to every virtio-mmio register, brings devices up
//! on random descriptor tables and notifies them, and does random port
//! I/O; then it resets the devices and uses them normally. The monitor
//! must stay up, exit with the guest's status, and serve the devices
//! afterwards — on a disk, the console and a tap. The same run under
//! AddressSanitizer (a flint built with `-Zsanitizer=address`, path in
//! FLINT_ASAN_BIN, which `tests/run` builds and sets) must report nothing.

mod common;

use std::process::Command;

use common::netns::Netns;
use common::*;

fn hostile_args(disk: &str, seed: u64) -> Vec<String> {
    vec![
        "--disk".into(),
        format!("path={disk}"),
        "--net".into(),
        "tap=hostile0".into(),
        "--cmdline".into(),
        format!("probe.virtio=1 probe.hostile=4 probe.hostile-seed={seed}"),
    ]
}

/// What must hold after the attack, whatever the devices printed meanwhile.
fn assert_devices_survived(out: &Outcome) {
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = &out.stdout;
    // The attack's own summary line may be cut by the random bytes the
    // console was made to print; the monitor's warnings show it happened.
    assert!(
        out.stderr.contains("(guest fault "),
        "the monitor saw the attack\n{}",
        out.stderr
    );
    assert!(
        text.contains("\nprobe: virtio-console tx bytes=36\n"),
        "the console works after the attack"
    );
    assert!(
        text.contains("\nprobe: virtio-blk dev=1 read sector=0 fnv1a64="),
        "the disk works after the attack"
    );
    assert!(
        text.contains("\nprobe: exit status=0"),
        "the probe finished normally"
    );
}

fn run_in(ns: &Netns, bin: &str, extra: &[&str], args: &[String]) -> Outcome {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0, bin, "run", "--timeout", "60"])
        .args(extra)
        .args(args);
    run(cmd)
}

#[test]
fn the_monitor_survives_a_hostile_guest_and_serves_it_afterwards() {
    require_kvm();
    let dir = scratch("hostile");
    let disk = dir.join("disk.img");
    std::fs::write(&disk, pseudo_random(1 << 20, 9)).unwrap();
    let ns = Netns::new("hostile");
    ns.tap("hostile0", "10.0.9.1/24");
    for seed in [1, 2, 3] {
        let out = run_in(
            &ns,
            flint_bin(),
            &[],
            &hostile_args(disk.to_str().unwrap(), seed),
        );
        assert_devices_survived(&out);
    }
}

#[test]
fn a_hostile_guest_finds_no_memory_error_under_addresssanitizer() {
    require_kvm();
    let Ok(asan) = std::env::var("FLINT_ASAN_BIN") else {
        skip(
            "FLINT_ASAN_BIN is not set: AddressSanitizer run skipped \
             (bash tests/run builds an ASan flint and sets it)",
        );
        return;
    };
    let dir = scratch("hostile-asan");
    let disk = dir.join("disk.img");
    std::fs::write(&disk, pseudo_random(1 << 20, 10)).unwrap();
    let ns = Netns::new("hostasan");
    ns.tap("hostile0", "10.0.9.1/24");
    // The sanitizer's runtime makes syscalls the filters do not list.
    let out = run_in(
        &ns,
        &asan,
        &["--seccomp", "off"],
        &hostile_args(disk.to_str().unwrap(), 4),
    );
    assert!(
        !out.stderr.contains("AddressSanitizer"),
        "ASan found an error:\n{}",
        out.stderr
    );
    assert_devices_survived(&out);
}
