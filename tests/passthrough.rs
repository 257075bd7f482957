//! Passthrough disks (`--disk ...,passthrough`, `--passthrough DEV`) on
//! loop devices, which are real block devices: the guest sees the host
//! device's block sizes and capacity, misaligned guest buffers still work
//! (bounced), a mounted device or the host's root disk is refused by name
//! and `--force` overrides, GET_ID carries the serial flint reports, and
//! every block whose FLUSH the guest saw acknowledged survives a SIGKILL of
//! the monitor at a random moment.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// A loop device over a file, detached on drop.
struct Loop {
    dev: String,
    _file: PathBuf,
}

impl Loop {
    /// `losetup --direct-io=on --sector-size SECTOR` over a new file of `mib` MiB.
    fn new(dir: &Path, mib: u64, sector: u32) -> Loop {
        let file = dir.join(format!("disk-{sector}.img"));
        std::fs::File::create(&file)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on", "--sector-size"])
            .arg(sector.to_string())
            .arg(&file)
            .output()
            .expect("losetup (mount) is needed");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop {
            dev: String::from_utf8(out.stdout).unwrap().trim().to_string(),
            _file: file,
        }
    }

    /// A value from /sys/block/loopN/<name>.
    fn sys(&self, name: &str) -> u64 {
        let base = Path::new(&self.dev)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let path = format!("/sys/block/{base}/{name}");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn blk_line<'a>(out: &'a Outcome, key: &str) -> &'a str {
    out.probe_line(&format!("virtio-blk dev=1 {key}"))
}

#[test]
fn the_guest_sees_the_host_devices_block_sizes_and_capacity() {
    require_kvm();
    let dir = scratch("pt-geometry");
    for sector in [512u32, 4096] {
        let disk = Loop::new(&dir, 16, sector);
        let out = flint_run(&[
            "--passthrough",
            &disk.dev,
            "--boot-report",
            "-",
            "--cmdline",
            "probe.virtio=1 probe.blk-topology=1 probe.blk-misaligned=1",
        ]);
        assert_eq!(out.code, Some(0), "{out}");
        let logical = disk.sys("queue/logical_block_size");
        let physical = disk.sys("queue/physical_block_size");
        let info = blk_line(&out, "capacity=");
        assert_eq!(probe_u64(info, "capacity"), disk.sys("size"), "{info}");
        assert_eq!(probe_u64(info, "blk-size"), logical, "{info}");
        let topo = blk_line(&out, "topology");
        assert_eq!(
            1u64 << probe_u64(topo, "phys-exp"),
            physical / logical,
            "{topo}"
        );
        assert_eq!(
            probe_u64(topo, "min-io"),
            disk.sys("queue/minimum_io_size") / logical,
            "{topo}"
        );
        // Buffers at odd addresses: O_DIRECT alone would fail them.
        assert_eq!(
            blk_line(&out, "misaligned"),
            "probe: virtio-blk dev=1 misaligned write=0 read=0 match=1",
            "{sector}-byte sectors"
        );
        // Those two requests, and only those, went through the bounce buffer.
        let report = out.stdout.lines().last().unwrap_or_default();
        assert_eq!(json_u64(report, "bounced"), 2, "{report}");
    }
}

#[test]
fn a_mounted_device_is_refused_by_mount_point_and_force_overrides() {
    require_kvm();
    let dir = scratch("pt-mounted");
    let disk = Loop::new(&dir, 16, 512);
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", &disk.dev])
        .status()
        .expect("mkfs.ext4 (e2fsprogs) is needed");
    assert!(ok.success());
    let ok = Command::new("mount")
        .arg(&disk.dev)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount {}", disk.dev);
    let refused = flint_run(&["--passthrough", &disk.dev]);
    let forced = flint_run(&[
        "--disk",
        &format!("path={},passthrough,ro", disk.dev),
        "--force",
        "--cmdline",
        "probe.virtio=1",
    ]);
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(refused.code, Some(125), "{refused}");
    assert!(
        refused
            .stderr
            .contains(&format!("it is mounted at {}", mnt.display())),
        "{refused}"
    );
    assert!(refused.stderr.contains("--force"), "{refused}");
    assert_eq!(forced.code, Some(0), "{forced}");
    assert!(
        blk_line(&forced, "capacity=").contains(" ro=1 "),
        "{forced}"
    );
}

#[test]
fn regular_files_and_the_root_disk_are_refused() {
    require_kvm();
    let dir = scratch("pt-refused");
    let file = dir.join("file.img");
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    let out = flint_run(&["--passthrough", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("passthrough needs a block device"),
        "{out}"
    );

    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = mountinfo
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&"/"))
        .and_then(|f| f.get(2).map(|d| format!("/dev/block/{d}")));
    match root.filter(|p| Path::new(p).exists()) {
        Some(node) => {
            let out = flint_run(&["--passthrough", &node]);
            assert_eq!(out.code, Some(125), "{out}");
            assert!(
                out.stderr
                    .contains("the host's root filesystem (mounted at /)"),
                "{out}"
            );
        }
        None => eprintln!("the root filesystem is not on a block device here: root check skipped"),
    }
}

#[test]
fn get_id_returns_the_serial_flint_reports() {
    require_kvm();
    let dir = scratch("pt-serial");
    let disk = Loop::new(&dir, 4, 512);
    let out = flint_run(&[
        "--log-level",
        "info",
        "--passthrough",
        &disk.dev,
        "--cmdline",
        "probe.virtio=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let reported = out
        .stderr
        .split("-> GET_ID \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("flint reports the serial it found\n{out}"));
    assert_eq!(
        blk_line(&out, "id="),
        format!("probe: virtio-blk dev=1 id={reported} status=0")
    );
    // A serial given by the user wins over what the host has.
    let out = flint_run(&[
        "--disk",
        &format!("path={},passthrough,id=PT-SERIAL-7", disk.dev),
        "--cmdline",
        "probe.virtio=1",
    ]);
    assert_eq!(
        blk_line(&out, "id="),
        "probe: virtio-blk dev=1 id=PT-SERIAL-7 status=0"
    );
}

/// Checks block `k` of `image` (records of `block` bytes) is the probe's
/// durable record `k` for `nonce` (images/probe/src/blkpt.rs).
fn record_ok(image: &[u8], block: usize, nonce: u64, k: u64) -> bool {
    let Some(r) = image.get(k as usize * block..(k as usize + 1) * block) else {
        return false;
    };
    let u = |at: usize| u64::from_le_bytes(r[at..at + 8].try_into().unwrap());
    &r[..8] == b"FLINTDUR" && u(8) == nonce && u(16) == k && u(24) == fnv1a64(&r[32..])
}

/// One kill: the probe writes and flushes numbered blocks; flint is
/// SIGKILLed after `after`; returns (acknowledged, lost).
fn kill_once(disk: &Loop, nonce: u64, after: Duration) -> (i64, u64) {
    let cmdline = format!("probe.virtio=1 probe.blk-durable=30 probe.blk-durable-nonce={nonce}");
    let mut child = Command::new(flint_bin())
        .args([
            "run",
            "--timeout",
            "60",
            "--passthrough",
            &disk.dev,
            "--cmdline",
            &cmdline,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let acked = Arc::new(AtomicI64::new(-1));
    let stdout = child.stdout.take().unwrap();
    let seen = acked.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line
                .strip_prefix("probe: virtio-blk dev=1 durable seq=")
                .and_then(|n| n.parse::<i64>().ok())
            {
                seen.fetch_max(n, Ordering::SeqCst);
            }
        }
    });
    std::thread::sleep(after);
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let acked = acked.load(Ordering::SeqCst);
    let image = std::fs::read(&disk._file).unwrap();
    let lost = (0..=acked)
        .filter(|&k| !record_ok(&image, 512, nonce, k as u64))
        .count() as u64;
    (acked, lost)
}

#[test]
fn acknowledged_flushes_survive_sigkill_of_the_monitor() {
    require_kvm();
    let iterations: u64 = std::env::var("FLINT_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = scratch("pt-crash");
    let disk = Loop::new(&dir, 64, 512);
    let delays = pseudo_random(iterations as usize * 2, 0x5eed);
    let (mut acked_total, mut lost_total, mut with_acks) = (0, 0, 0);
    for i in 0..iterations {
        // 150..~1170 ms: across boot, the first writes and the steady state.
        let ms = 150
            + u64::from(u16::from_le_bytes([
                delays[2 * i as usize],
                delays[2 * i as usize + 1],
            ])) % 1024;
        let (acked, lost) = kill_once(&disk, 1000 + i, Duration::from_millis(ms));
        acked_total += acked.max(-1) + 1;
        lost_total += lost;
        with_acks += u64::from(acked >= 0);
    }
    eprintln!(
        "crash consistency: {iterations} SIGKILLs, {acked_total} acknowledged flushes, \
         {lost_total} lost writes"
    );
    assert_eq!(lost_total, 0, "acknowledged writes lost");
    assert!(
        with_acks * 2 >= iterations,
        "too few runs got as far as a FLUSH ({with_acks} of {iterations})"
    );
}

#[test]
fn a_partition_passes_through_and_a_mounted_sibling_guards_the_whole_disk() {
    require_kvm();
    let dir = scratch("pt-partition");
    let image = dir.join("parted.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (fdisk) is needed");
    use std::io::Write as _;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\n,8M\n,\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let out = Command::new("losetup")
        .args(["-f", "--show", "-P", "--direct-io=on"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(out.status.success());
    let disk = Loop {
        dev: String::from_utf8(out.stdout).unwrap().trim().to_string(),
        _file: image,
    };
    let (p1, p2) = (format!("{}p1", disk.dev), format!("{}p2", disk.dev));
    if !Path::new(&p1).exists() {
        eprintln!(
            "the host kernel made no partition devices for {} (no partition-table support): \
             partition passthrough not checked here",
            disk.dev
        );
        return;
    }
    let out = flint_run(&["--passthrough", &p1, "--cmdline", "probe.virtio=1"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(probe_u64(blk_line(&out, "capacity="), "capacity"), 16384);
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    assert!(Command::new("mkfs.ext4")
        .args(["-q", &p2])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("mount")
        .arg(&p2)
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    let whole = flint_run(&["--passthrough", &disk.dev]);
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(whole.code, Some(125), "{whole}");
    assert!(
        whole
            .stderr
            .contains(&format!("mounted at {}", mnt.display())),
        "{whole}"
    );
}
