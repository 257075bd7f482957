//! A network namespace per test, for the virtio-net tests: taps made
//! inside it and flint run inside it, so nothing leaves this machine.

use std::process::{Child, Command, Stdio};

use super::{flint_bin, run, Outcome};

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
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
    pub fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip")
            .args(["netns", "exec", &self.0, "ip"])
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "ip {args:?} in {}", self.0);
    }

    /// A tap named `tap`, up, with `addr` on it; returns its MAC.
    pub fn tap(&self, tap: &str, addr: &str) -> String {
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
    pub fn flint(&self, args: &[&str]) -> Outcome {
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

    /// `flint run ARGS...` inside the namespace, in the background, with
    /// stdout and stderr piped.
    pub fn spawn_flint(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                flint_bin(),
                "run",
                "--timeout",
                "60",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flint")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
