//! virtio-net on a tap, end to end: the probe's user-mode driver sends an
//! ARP request through flint and the host kernel answers on the tap. All
//! of it happens inside a network namespace the test creates, so nothing
//! leaves this machine.

mod common;

use std::process::Command;

use common::*;

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("flint-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip (iproute2) is needed");
        assert!(ok.success(), "ip netns add {name}");
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Run `ip ARGS` inside the namespace.
    fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip")
            .args(["netns", "exec", &self.0, "ip"])
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "ip {args:?} in {}", self.0);
    }

    /// A tap named `tap`, up, with `addr` on it; returns its MAC.
    fn tap(&self, tap: &str, addr: &str) -> String {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        self.ip(&["addr", "add", addr, "dev", tap]);
        self.ip(&["link", "set", tap, "up"]);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "cat",
                &format!("/sys/class/net/{tap}/address"),
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `flint run ARGS...` inside the namespace.
    fn flint(&self, args: &[&str]) -> Outcome {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.0,
            flint_bin(),
            "run",
            "--timeout",
            "60",
        ])
        .args(args);
        run(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

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
