//! `--seccomp`: the probe drives every device with the filters killing
//! anything off their lists (the default; the rest of the suite runs that
//! way too), each of flint's threads runs filtered, a guest crash still
//! gets its register dump, and the option takes kill, log or off only.
//! The filters themselves are tested in seccomp/tests/sigsys.rs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::netns::Netns;
use common::*;

#[test]
fn the_probe_drives_console_disks_and_net_under_seccomp_kill() {
    require_kvm();
    let dir = scratch("seccomp-all");
    let rw = dir.join("rw.img");
    std::fs::write(&rw, vec![0u8; 2 << 20]).unwrap();
    let ro = dir.join("ro.img");
    std::fs::write(&ro, pseudo_random(1 << 20, 5)).unwrap();
    let report = dir.join("report.json");
    let ns = Netns::new("seccomp");
    ns.tap("ftap0", "10.0.2.2/24");
    let out = ns.flint(&[
        "--seccomp",
        "kill",
        "--disk",
        &format!("path={}", rw.display()),
        "--disk",
        &format!("path={},ro", ro.display()),
        "--net",
        "tap=ftap0",
        "--boot-report",
        report.to_str().unwrap(),
        "--cmdline",
        "probe.virtio=1 probe.irq=1 probe.blk-pattern=1 probe.blk-bench=1 \
         probe.console-bench=64 probe.net-arp=10.0.2.2 probe.net-ip=10.0.2.15",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.probe_line("virtio-console tx").contains("bytes="),
        "{out}"
    );
    assert!(
        out.probe_line("virtio-blk dev=1 pattern")
            .ends_with("verify=ok"),
        "{out}"
    );
    assert_eq!(out.probe_lines("blk-bench dev=1 size=").len(), 3, "{out}");
    assert!(
        out.probe_line("virtio-blk dev=2 ro-write")
            .ends_with("status=1"),
        "{out}"
    );
    assert!(
        out.probe_line("virtio-net dev=3 arp reply")
            .contains("ip=10.0.2.2"),
        "{out}"
    );
    assert_eq!(out.probe_lines("console-bench ").len(), 2, "{out}");
    assert!(out.probe_line("irq sends=").contains("latency-ns"), "{out}");
    let json = std::fs::read_to_string(&report).expect("report written");
    assert!(
        json_u64(&json, "seccomp_installed") <= json_u64(&json, "first_kvm_run"),
        "the guest ran before the event loop's filter was on: {json}"
    );
}

#[test]
fn a_guest_crash_still_gets_its_register_dump() {
    require_kvm();
    let out = flint_run(&["--seccomp", "kill", "--cmdline", "probe.crash=1"]);
    assert_eq!(out.code, Some(123), "{out}");
    assert!(out.stderr.contains("triple fault"), "{out}");
    assert!(out.stderr.contains("code at rip:"), "{out}");
}

/// `Seccomp:` of each of `pid`'s threads, by thread name (flint's own:
/// KVM's `kvm-nx-lpage-recovery` worker joins the thread group at the
/// first KVM_RUN, but runs only kernel code, where filters do not apply).
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
    let mut modes: Vec<(String, String)> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .map(|status| {
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            (field("Name:"), field("Seccomp:"))
        })
        .filter(|(name, _)| !name.starts_with("kvm-"))
        .collect();
    modes.sort();
    modes
}

/// The threads of a flint waiting for console input, with `--seccomp MODE`.
fn thread_modes_while_running(mode: &str) -> Vec<(String, String)> {
    let mut child = Command::new(flint_bin())
        .args(["run", "--timeout", "30", "--seccomp", mode])
        .args(["--cmdline", "probe.echo=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flint");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("probe: echo ready") {
        line.clear();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "flint ended before the probe was ready");
    }
    let modes = seccomp_modes(child.id());
    child.stdin.take().unwrap().write_all(b"done\n").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    modes
}

#[test]
fn every_thread_runs_filtered_unless_seccomp_is_off() {
    require_kvm();
    // Seccomp: 2 is SECCOMP_MODE_FILTER; the cpuid thread is gone by now.
    let filtered = |m: &str| vec![("flint".into(), m.into()), ("vcpu0".into(), m.into())];
    assert_eq!(thread_modes_while_running("kill"), filtered("2"));
    assert_eq!(thread_modes_while_running("log"), filtered("2"));
    assert_eq!(thread_modes_while_running("off"), filtered("0"));
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let (name, tio, size) = (std::ptr::null_mut(), std::ptr::null(), std::ptr::null());
    // SAFETY: two valid out-pointers; no name, mode or window size.
    let r = unsafe { libc::openpty(&mut master, &mut slave, name, tio, size) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two new descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

fn local_flags(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: an all-zero termios is valid, and tcgetattr fills it.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and termios pointer.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut tio) }, 0);
    tio.c_lflag
}

#[test]
fn sigterm_on_a_terminal_restores_its_mode_under_seccomp_kill() {
    require_kvm();
    let (_master, slave) = pty();
    let cooked = libc::ICANON | libc::ECHO;
    assert_eq!(local_flags(&slave) & cooked, cooked);
    let mut child = Command::new(flint_bin())
        .args(["run", "--timeout", "30", "--seccomp", "kill"])
        .args(["--cmdline", "probe.echo=1"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flint");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("probe: echo ready") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "flint ended early"
        );
    }
    assert_eq!(local_flags(&slave) & cooked, 0, "raw mode while running");
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert_eq!(local_flags(&slave) & cooked, cooked, "mode not restored");
}

#[test]
fn seccomp_off_boots_and_an_unknown_mode_is_refused_by_name() {
    require_kvm();
    let out = flint_run(&["--seccomp", "off", "--cmdline", "probe.exit=3"]);
    assert_eq!(out.code, Some(3), "{out}");
    let out = flint_run(&["--seccomp", "bogus"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("'bogus'"), "{out}");
    assert!(out.stderr.contains("kill, log, off"), "{out}");
}
