//! Malformed virtqueues against flint's virtio devices, driven by the
//! probe's `probe.virtio-faults=<seconds>` mode: bad descriptor chains
//! (outside RAM, in the MMIO hole, lengths 0 and 0xffffffff, loops, next
//! indices past the queue, wrong directions, too many descriptors, blk
//! requests past the end of the disk and at absurd sectors) and broken
//! rings (avail index far ahead, head index past the queue). Every chain
//! must come back, every broken ring must end in DEVICE_NEEDS_RESET, the
//! device must work again after a reset, flint must exit with the guest's
//! status, and the disk must be byte-identical afterwards.

mod common;

use common::*;

/// Checks one device's summary lines; returns its rounds.
fn check_device(out: &Outcome, dev: usize) -> u64 {
    let summary = out.probe_line(&format!("virtio-faults dev={dev} rounds="));
    let rounds = probe_u64(summary, "rounds");
    let used = probe_u64(summary, "used");
    let needs_reset = probe_u64(summary, "needs-reset");
    let detail = out.probe_line(&format!("virtio-faults dev={dev} chains="));
    let chains = probe_u64(detail, "chains");
    assert!(rounds >= 1, "{summary}\n{out}");
    assert_eq!(
        probe_u64(detail, "timeouts"),
        0,
        "a bad chain never came back\n{out}"
    );
    // Every bad chain is returned through the used ring (with an error
    // status or length 0), and every broken ring sets DEVICE_NEEDS_RESET.
    assert_eq!(used, chains, "{summary}\n{detail}\n{out}");
    assert_eq!(needs_reset, rounds, "{summary}\n{out}");
    rounds
}

#[test]
fn bad_chains_come_back_broken_rings_need_reset_and_the_disk_is_untouched() {
    require_kvm();
    let dir = scratch("virtio-faults");
    let data = pseudo_random(2 << 20, 42);
    let disk = dir.join("disk.img");
    std::fs::write(&disk, &data).unwrap();
    let out = flint_run(&[
        "--disk",
        &format!("path={}", disk.display()),
        "--cmdline",
        "probe.virtio=1 probe.virtio-faults=2 probe.exit=7",
    ]);
    // The guest's own status: flint survived and did not report an error
    // (123 crash / 124 timeout / 125 host error).
    assert_eq!(out.code, Some(7), "{out}");
    assert_eq!(out.probe_line("exit status="), "probe: exit status=7");
    assert!(!out.stdout.contains("probe: FAULT"), "{out}");
    assert!(!out.stdout.contains("probe: panic"), "{out}");

    // Device 0: the virtio console.
    assert!(
        out.probe_line("virtio dev=0 ").contains("device-id=3 "),
        "{out}"
    );
    check_device(&out, 0);
    assert_eq!(
        out.probe_line("virtio-faults dev=0 after-reset"),
        "probe: virtio-faults dev=0 after-reset console ok",
        "{out}"
    );
    // What the console sent after its reset reached flint's stdout.
    assert!(
        out.stdout.contains("probe: virtio-console after faults\n"),
        "{out}"
    );

    // Device 1: the disk.
    assert!(
        out.probe_line("virtio dev=1 ").contains("device-id=2 "),
        "{out}"
    );
    check_device(&out, 1);
    let detail = out.probe_line("virtio-faults dev=1 chains=");
    // No bad request was answered OK, and every status byte written was
    // IOERR or UNSUPP.
    assert_eq!(probe_u64(detail, "ok"), 0, "{detail}");
    assert_eq!(probe_u64(detail, "other"), 0, "{detail}");
    assert!(probe_u64(detail, "ioerr") > 0, "{detail}");
    assert_eq!(
        out.probe_line("virtio-faults dev=1 after-reset"),
        "probe: virtio-faults dev=1 after-reset read status=0",
        "{out}"
    );

    // None of the bad writes reached the file.
    let after = std::fs::read(&disk).unwrap();
    assert_eq!(after.len(), data.len(), "the disk changed size");
    assert!(after == data, "the disk's contents changed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_bad_chain_of_the_first_round_is_answered_as_the_spec_allows() {
    require_kvm();
    let dir = scratch("virtio-faults-detail");
    let data = pseudo_random(1 << 20, 7);
    let disk = dir.join("disk.img");
    std::fs::write(&disk, &data).unwrap();
    let out = flint_run(&[
        "--disk",
        &format!("path={}", disk.display()),
        "--cmdline",
        "probe.virtio=1 probe.virtio-faults=1 probe.virtio-faults-detail=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    // Console transmit chains: refused whole, used length 0.
    let console = out.probe_lines("virtio-faults dev=0 chain=");
    assert_eq!(console.len(), 13, "{out}");
    for line in console {
        assert!(line.ends_with(" used-len=0"), "{line}");
    }
    // Disk requests: a status byte of IOERR (1) or UNSUPP (2 for the
    // unknown type), or, where no status byte can be written, none (255)
    // with used length 0; never OK.
    let disk_lines = out.probe_lines("virtio-faults dev=1 chain=");
    assert_eq!(disk_lines.len(), 23, "{out}");
    for line in disk_lines {
        let status = probe_u64(line, "status");
        assert!(!line.contains("used-len=none"), "{line}");
        match status {
            1 | 2 => {}
            255 => assert!(line.contains(" used-len=0 "), "{line}"),
            _ => panic!("unexpected status: {line}"),
        }
    }
    assert_eq!(
        probe_u64(out.probe_line("virtio-faults dev=1 chain=20 "), "status"),
        2
    );
    assert!(
        std::fs::read(&disk).unwrap() == data,
        "the disk's contents changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
