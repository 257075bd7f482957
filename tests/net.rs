//! virtio-net on a tap, end to end: the probe's user-mode driver sends an
//! ARP request through flint and the host kernel answers on the tap. All
//! of it happens inside a network namespace the test creates, so nothing
//! leaves this machine.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command};

use common::netns::Netns;
use common::*;

#[test]
fn the_guest_gets_an_arp_reply_from_the_host_through_the_tap() {
    require_kvm();
    let ns = Netns::new("arp");
    let host_mac = ns.tap("ftap0", "10.0.2.2/24");
    let out = ns.flint(&[
        "--net",
        "tap=ftap0,mac=52:54:00:12:34:56",
        "--cmdline",
        "probe.virtio=1 probe.net-arp=10.0.2.2 probe.net-ip=10.0.2.15",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.probe_line("virtio dev=1 ").contains("device-id=1 "),
        "{out}"
    );
    assert_eq!(
        out.probe_line("virtio-net dev=1 mac="),
        "probe: virtio-net dev=1 mac=52:54:00:12:34:56"
    );
    let reply = out.probe_line("virtio-net dev=1 arp reply");
    assert!(
        reply.contains(&format!("ip=10.0.2.2 mac={host_mac} ")),
        "{out}"
    );
}

#[test]
fn a_missing_tap_is_created_for_the_vm() {
    require_kvm();
    let ns = Netns::new("newtap");
    let out = ns.flint(&["--net", "tap=fnew0", "--cmdline", "probe.virtio=1"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.probe_line("virtio dev=1 ").ends_with("status=ok"),
        "{out}"
    );
}

#[test]
fn bad_net_options_exit_125_naming_the_problem() {
    let out = flint_run(&["--net", "tap=a-name-much-too-long"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("not a valid interface name"), "{out}");
    let out = flint_run(&["--net", "mac=52:54:00:12:34:56"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("missing tap="), "{out}");
}

/// A background flint, killed on drop if it is still running (a failed
/// assertion must not leave a guest behind).
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_guest_answers_twenty_pings_through_the_tap() {
    require_kvm();
    match Command::new("ping").arg("-V").output() {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("ping is missing: install iputils-ping (apt-get install iputils-ping)")
        }
        Err(e) => panic!("ping -V: {e}"),
    }
    let ns = Netns::new("ping");
    ns.tap("ftap0", "10.0.2.2/24");
    let mut flint = Background(ns.spawn_flint(&[
        "--net",
        "tap=ftap0",
        "--cmdline",
        "probe.virtio=1 probe.net-ip=10.0.2.15 probe.net-serve=12",
    ]));
    let mut stdout = BufReader::new(flint.0.stdout.take().expect("stdout"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read flint's stdout");
        seen.push_str(&line);
        assert!(n > 0, "flint ended before the probe served:\n{seen}");
        if line.starts_with("probe: virtio-net dev=1 serving ip=10.0.2.15 ") {
            break;
        }
    }

    let ping = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args(["ping", "-c", "20", "-i", "0.2", "-W", "2", "10.0.2.15"])
        .output()
        .expect("run ping");
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    let ping_err = String::from_utf8_lossy(&ping.stderr).into_owned();
    let summary = ping_out
        .lines()
        .filter(|l| l.contains("packets transmitted") || l.starts_with("rtt "))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("ping 10.0.2.15 (the probe, through flint's virtio-net):\n{summary}");

    stdout
        .read_to_string(&mut seen)
        .expect("read flint's stdout");
    let mut stderr = String::new();
    flint
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read flint's stderr");
    let out = Outcome {
        code: flint.0.wait().expect("wait for flint").code(),
        stdout: seen,
        stderr,
    };
    assert!(
        ping.status.success()
            && ping_out.contains(" 20 received,")
            && ping_out.contains(" 0% packet loss"),
        "ping failed:\n{ping_out}{ping_err}\n{out}"
    );
    assert_eq!(out.code, Some(0), "{out}");
    let served = out.probe_line("virtio-net dev=1 serve ");
    let icmp: u64 = served
        .split(' ')
        .find_map(|f| f.strip_prefix("icmp="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no icmp= in {served:?}\n{out}"));
    assert!(icmp >= 20, "{out}");
    assert!(served.contains(" arp="), "{out}");
}

#[test]
fn eight_disks_and_two_nets_enumerate_in_order() {
    require_kvm();
    let ns = Netns::new("many");
    ns.tap("ftap0", "10.0.2.2/24");
    ns.tap("ftap1", "10.0.3.2/24");
    let dir = scratch("net-many");
    let mut args = Vec::new();
    for i in 0..8 {
        let path = dir.join(format!("d{i}.img"));
        std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
        args.push("--disk".to_string());
        args.push(format!("path={}", path.display()));
    }
    for tap in ["ftap0", "ftap1"] {
        args.push("--net".to_string());
        args.push(format!("tap={tap}"));
    }
    args.extend(["--cmdline".to_string(), "probe.virtio=1".to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ns.flint(&argv);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.probe_line("acpi devices="), "probe: acpi devices=11");
    for i in 0..11u64 {
        let id = match i {
            0 => 3,
            1..=8 => 2,
            _ => 1,
        };
        let want = format!(
            "probe: virtio dev={i} addr={:#x} device-id={id} ",
            0xd000_0000u64 + i * 0x1000
        );
        let got = out.probe_line(&format!("virtio dev={i} "));
        assert!(
            got.starts_with(&want),
            "dev {i}: {got:?}, want {want:?}\n{out}"
        );
        assert!(got.ends_with(" status=ok"), "{out}");
    }
    assert_eq!(out.probe_lines("virtio dev=11 ").len(), 0, "{out}");
    for dev in 1..=8 {
        assert!(
            out.probe_line(&format!("virtio-blk dev={dev} capacity="))
                .contains("capacity=128 "),
            "{out}"
        );
    }
    for dev in 9..=10 {
        out.probe_line(&format!("virtio-net dev={dev} mac="));
    }
}
