//! The virtio-net figure of `flint bench`: ping round-trip time and
//! frames per second (a `ping -f` flood) to the probe answering ICMP
//! (`probe.net-serve`), through flint and through QEMU microvm's
//! virtio-net, each on the same tap in a network namespace made for the
//! run, so nothing leaves this machine.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::Monitor;

/// The namespace's side of the tap and the probe's address.
const HOST_ADDR: &str = "10.213.0.1/24";
const GUEST_IP: &str = "10.213.0.2";
const TAP: &str = "flintb0";
/// How long the probe answers (the pings end well before).
const SERVE_SECONDS: u64 = 60;
/// Pings for the round-trip time, 10 ms apart.
const RTT_PINGS: u32 = 50;

/// A network namespace with the tap in it; deleted (with the tap) on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let ns = Netns(format!("flint-bench-{}", std::process::id()));
        run_ip(&["netns", "add", &ns.0])?;
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", TAP, "mode", "tap"],
            &["addr", "add", HOST_ADDR, "dev", TAP],
            &["link", "set", TAP, "up"],
        ] {
            ns.ip(args)?;
        }
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.0, "ip"];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// `cmd` run inside the namespace.
    fn command(&self, cmd: &[OsString]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(cmd);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn run_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What one monitor achieved.
struct NetRates {
    rtt_avg_ms: f64,
    flood_pps: f64,
}

/// Prints the net table: flint, and QEMU where `qemu` is given.
pub(super) fn net_figure(flood: u64, probe: &Path, qemu: Option<&Path>) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("\nvirtio-net: skipped (needs root for a tap and a network namespace)");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            println!("\nvirtio-net: skipped ({e})");
            return;
        }
    };
    let serve = format!("probe.virtio=1 probe.net-ip={GUEST_IP} probe.net-serve={SERVE_SECONDS}");
    let me = std::env::current_exe().map(OsString::from);
    let mut rows = Vec::new();
    if let Ok(me) = me {
        let cmd: Vec<OsString> = [
            me,
            "run".into(),
            "--net".into(),
            format!("tap={TAP}").into(),
            "--cmdline".into(),
            serve.clone().into(),
        ]
        .into();
        rows.push((Monitor::Flint, measure(&ns, &cmd, flood)));
    }
    if let Some(q) = qemu {
        let mut cmd = super::qemu_cmd(q, probe, 64);
        for a in [
            "-global",
            "virtio-mmio.force-legacy=false",
            "-netdev",
            &format!("tap,id=n0,ifname={TAP},script=no,downscript=no"),
            "-device",
            "virtio-net-device,netdev=n0",
            "-append",
            &serve,
        ] {
            cmd.push(a.into());
        }
        rows.push((Monitor::Qemu, measure(&ns, &cmd, flood)));
    }
    println!(
        "\nvirtio-net: the probe answering ICMP on a tap (private namespace); \
         {RTT_PINGS} pings 10 ms apart, then `ping -f -c {flood}`:"
    );
    println!(
        "  {:<14} {:>12} {:>14} {:>16}",
        "monitor", "rtt avg ms", "flood pings/s", "frames/s (rx+tx)"
    );
    for (monitor, rates) in rows {
        match rates {
            Ok(r) => println!(
                "  {:<14} {:>12.3} {:>14.0} {:>16.0}",
                monitor.name(),
                r.rtt_avg_ms,
                r.flood_pps,
                2.0 * r.flood_pps
            ),
            Err(e) => println!("  {:<14} failed: {e}", monitor.name()),
        }
    }
}

/// Starts the monitor, waits for the probe to serve, pings it, stops it.
fn measure(ns: &Netns, cmd: &[OsString], flood: u64) -> Result<NetRates, String> {
    let mut child = ns
        .command(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", cmd[0].to_string_lossy()))?;
    let result = wait_serving(&mut child).and_then(|()| pings(ns, flood));
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Reads the monitor's output until the probe says it is serving.
fn wait_serving(child: &mut Child) -> Result<(), String> {
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains(" serving ip="));
    // Keep draining so the guest never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    if serving {
        Ok(())
    } else {
        Err("the probe never served (no virtio-net device?)".into())
    }
}

fn pings(ns: &Netns, flood: u64) -> Result<NetRates, String> {
    let rtt = ping(
        ns,
        &["-c", &RTT_PINGS.to_string(), "-i", "0.01", "-q", GUEST_IP],
    )?;
    let rtt_avg_ms = rtt
        .split(" = ")
        .nth(1)
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no rtt in ping's output: {rtt}"))?;
    let text = ping(ns, &["-f", "-c", &flood.to_string(), "-q", GUEST_IP])?;
    let received: f64 = number_before(&text, " received").ok_or("no count")?;
    let ms: f64 = text
        .split("time ")
        .nth(1)
        .and_then(|t| t.split("ms").next())
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("no time in ping's output: {text}"))?;
    Ok(NetRates {
        rtt_avg_ms,
        flood_pps: received * 1000.0 / ms.max(1.0),
    })
}

fn ping(ns: &Netns, args: &[&str]) -> Result<String, String> {
    let mut cmd: Vec<OsString> = vec!["ping".into()];
    cmd.extend(args.iter().map(OsString::from));
    let out = ns
        .command(&cmd)
        .output()
        .map_err(|e| format!("ping (iputils-ping): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("ping {}: {}", args.join(" "), text.trim()))
    }
}

/// The number just before `marker` ("20 received" → 20).
fn number_before(text: &str, marker: &str) -> Option<f64> {
    let head = &text[..text.find(marker)?];
    head.rsplit([' ', ',']).next()?.parse().ok()
}
