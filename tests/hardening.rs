//! Process hygiene of a running flint, read from /proc while the probe
//! waits for console input: every descriptor flint opened is closed on
//! exec, and guest RAM is left out of core dumps. (The seccomp filters
//! have tests/seccomp.rs.)

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;

/// Run flint with `args` until the probe is ready, call `inspect` with its
/// pid, then let the guest finish.
fn while_running<T>(args: &[&str], inspect: impl FnOnce(u32) -> T) -> T {
    let mut child = Command::new(flint_bin())
        .args([
            "run",
            "--timeout",
            "30",
            "--cmdline",
            "probe.virtio=1 probe.echo=1",
        ])
        .args(args)
        .stdin(Stdio::piped())
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
    let seen = inspect(child.id());
    child.stdin.take().unwrap().write_all(b"done\n").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    seen
}

/// `pid`'s descriptors above stdio, each with its `open` flags.
fn descriptors(pid: &str) -> Vec<(i32, u32)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap();
    fds.filter_map(|e| {
        let e = e.ok()?;
        let n: i32 = e.file_name().to_str()?.parse().ok()?;
        let info = std::fs::read_to_string(e.path()).ok()?;
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
        Some((n, u32::from_str_radix(flags.trim(), 8).ok()?))
    })
    .filter(|&(n, _)| n > 2)
    .collect()
}

fn cloexec(flags: u32) -> bool {
    flags & libc::O_CLOEXEC as u32 != 0
}

#[test]
fn every_descriptor_flint_opens_is_closed_on_exec() {
    require_kvm();
    let dir = scratch("cloexec");
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let report = dir.join("report.json");
    let args = [
        "--disk",
        &format!("path={}", disk.display()),
        "--boot-report",
        report.to_str().unwrap(),
    ];
    // What flint inherits from this test (cargo's jobserver pipe, ...) is not its own.
    let inherited: Vec<i32> = descriptors("self")
        .into_iter()
        .filter(|&(_, flags)| !cloexec(flags))
        .map(|(n, _)| n)
        .collect();
    let (count, leaks) = while_running(&args, |pid| {
        let own: Vec<(i32, u32)> = descriptors(&pid.to_string())
            .into_iter()
            .filter(|(n, _)| !inherited.contains(n))
            .collect();
        let leaks: Vec<String> = own
            .iter()
            .filter(|&&(_, flags)| !cloexec(flags))
            .map(|(n, _)| {
                format!(
                    "fd {n}: {:?}",
                    std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                )
            })
            .collect();
        (own.len(), leaks)
    });
    // KVM, the VM, its vCPU, eventfds, the disk and its io_uring, epoll, the report.
    assert!(count >= 8, "only {count} descriptors: is this flint?");
    assert!(leaks.is_empty(), "not close-on-exec: {leaks:?}");
}

#[test]
fn guest_ram_is_left_out_of_core_dumps() {
    require_kvm();
    // 64 MiB of RAM: one mapping of exactly that size.
    let flags = while_running(&["--mem", "64"], |pid| {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
        let mut in_ram = false;
        let mut flags = None;
        for l in smaps.lines() {
            if let Some(size) = l.strip_prefix("Size:") {
                in_ram = size.trim() == "65536 kB";
            } else if let Some(f) = l.strip_prefix("VmFlags:").filter(|_| in_ram) {
                flags = Some(f.trim().to_string());
            }
        }
        flags
    });
    let flags = flags.expect("no 64 MiB mapping in /proc/PID/smaps");
    assert!(flags.split(' ').any(|f| f == "dd"), "VmFlags: {flags}");
}
