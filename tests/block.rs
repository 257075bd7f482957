//! virtio-blk through the flint binary, driven by the probe's user-mode
//! driver: file-backed and raw-partition disks, the whole-disk write
//! pattern checked from the host, read-only disks left byte-identical,
//! GET_ID, capacity, bus order, and bad `--disk` options.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The probe's pattern: byte at disk offset `o` (images/probe/src/blk.rs).
fn pattern_byte(o: u64) -> u8 {
    (o.wrapping_mul(31).wrapping_add(o >> 9)) as u8
}

fn assert_pattern(data: &[u8], what: &str) {
    if let Some(at) = (0..data.len()).find(|&i| data[i] != pattern_byte(i as u64)) {
        panic!("{what}: pattern broken at byte {at}");
    }
}

fn disk_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn disk_arg(path: &Path, extra: &str) -> String {
    format!("path={}{extra}", path.display())
}

/// The `probe: virtio-blk dev=<dev> <key>...` line.
fn blk_line<'a>(out: &'a Outcome, dev: usize, key: &str) -> &'a str {
    out.probe_line(&format!("virtio-blk dev={dev} {key}"))
}

#[test]
fn a_file_backed_disk_reports_capacity_id_and_sector_0() {
    require_kvm();
    let dir = scratch("blk-file");
    let data = pseudo_random(4 << 20, 11);
    let path = disk_file(&dir, "disk.img", &data);
    let out = flint_run(&[
        "--disk",
        &disk_arg(&path, ",id=FLINT-SERIAL-1"),
        "--cmdline",
        "probe.virtio=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    // The virtio console holds slot 0; the disk is device 1.
    assert!(
        out.probe_line("virtio dev=1 ").contains("device-id=2 "),
        "{out}"
    );
    assert!(
        blk_line(&out, 1, "capacity=").starts_with("probe: virtio-blk dev=1 capacity=8192 ro=0"),
        "{out}"
    );
    let sector0 = format!("fnv1a64=0x{:016x} status=0", fnv1a64(&data[..512]));
    assert!(
        blk_line(&out, 1, "read sector=0").ends_with(&sector0),
        "{out}"
    );
    assert_eq!(
        blk_line(&out, 1, "id="),
        "probe: virtio-blk dev=1 id=FLINT-SERIAL-1 status=0"
    );
}

#[test]
fn the_guest_writes_the_whole_disk_and_the_host_reads_it_back() {
    require_kvm();
    let dir = scratch("blk-pattern");
    let path = disk_file(&dir, "disk.img", &vec![0u8; 3 << 20]);
    let out = flint_run(&[
        "--disk",
        &disk_arg(&path, ""),
        "--cmdline",
        "probe.virtio=1 probe.blk-pattern=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        blk_line(&out, 1, "pattern"),
        format!(
            "probe: virtio-blk dev=1 pattern bytes={} verify=ok",
            3 << 20
        )
    );
    assert_pattern(&std::fs::read(&path).unwrap(), "host view of the disk");
}

#[test]
fn thirty_two_requests_in_flight_land_where_the_guest_asked() {
    require_kvm();
    let dir = scratch("blk-qd32");
    let path = disk_file(&dir, "disk.img", &vec![0u8; 4 << 20]);
    let out = flint_run(&[
        "--disk",
        &disk_arg(&path, ""),
        "--cmdline",
        "probe.virtio=1 probe.blk-bench=1 probe.blk-bench-qd=32",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let lines = out.probe_lines("blk-bench dev=1 ");
    assert_eq!(lines.len(), 3, "one line per request size\n{out}");
    for line in lines {
        assert!(
            line.contains(" qd=32 write-bytes=4194304 ") && line.contains(" read-bytes=4194304 "),
            "{line}"
        );
    }
    // The last pass wrote the bench buffer (the pattern's first MiB) as
    // 1 MiB requests, up to 32 at once: every MiB of the disk holds it.
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len(), 4 << 20);
    for (i, mib) in data.chunks(1 << 20).enumerate() {
        assert_pattern(mib, &format!("MiB {i} after queue-depth-32 writes"));
    }
}

#[test]
fn a_read_only_disk_refuses_writes_and_stays_byte_identical() {
    require_kvm();
    let dir = scratch("blk-ro");
    let data = pseudo_random(1 << 20, 5);
    let path = disk_file(&dir, "disk.img", &data);
    let out = flint_run(&[
        "--disk",
        &disk_arg(&path, ",ro"),
        "--cmdline",
        "probe.virtio=1 probe.blk-pattern=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(blk_line(&out, 1, "capacity=").contains(" ro=1 "), "{out}");
    assert_eq!(
        blk_line(&out, 1, "ro-write"),
        "probe: virtio-blk dev=1 ro-write status=1"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        data,
        "the read-only disk changed"
    );
}

#[test]
fn disks_enumerate_in_command_line_order() {
    require_kvm();
    let dir = scratch("blk-order");
    let mut args = Vec::new();
    for i in 0..8u64 {
        let path = disk_file(
            &dir,
            &format!("d{i}.img"),
            &vec![0u8; ((i + 1) * 64 * 1024) as usize],
        );
        args.push("--disk".to_string());
        args.push(disk_arg(&path, &format!(",id=disk{i}")));
    }
    args.extend(["--cmdline".to_string(), "probe.virtio=1".to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = flint_run(&argv);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.probe_line("acpi devices="), "probe: acpi devices=9");
    for i in 0..8usize {
        let dev = i + 1;
        let sectors = (i + 1) * 128;
        assert!(
            blk_line(&out, dev, "capacity=").contains(&format!("capacity={sectors} ")),
            "{out}"
        );
        assert_eq!(
            blk_line(&out, dev, "id="),
            format!("probe: virtio-blk dev={dev} id=disk{i} status=0")
        );
    }
}

/// The partition sfdisk puts in the test images: sectors 2048..6144.
const PART_START: u64 = 2048;
const PART_SECTORS: u64 = 4096;

/// A loop device (detached on drop, with any node the test made removed).
struct LoopDisk {
    dev: String,
    made_node: Option<String>,
}

impl LoopDisk {
    fn attach(image: &Path, extra: &[String]) -> LoopDisk {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .args(extra)
            .arg(image)
            .output()
            .expect("losetup (util-linux) is needed");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        LoopDisk {
            dev,
            made_node: None,
        }
    }

    /// A whole-image loop device, read-only on the host.
    fn read_only(image: &Path) -> LoopDisk {
        LoopDisk::attach(image, &["--read-only".to_string()])
    }

    /// The partition of a partitioned image as a host block device: the
    /// kernel's own partition node (`losetup --partscan`, `/dev/loopNp1`)
    /// where the host kernel reads partition tables, else — on kernels
    /// built without partition-table support, like this project's nested
    /// hosts — a loop device over exactly the partition's byte range,
    /// which is what a partition is to whoever opens it.
    fn partition(image: &Path) -> (LoopDisk, String) {
        partition_image(image);
        let mut whole = LoopDisk::attach(image, &["--partscan".to_string()]);
        if let Some(part) = whole.partition_node() {
            return (whole, part);
        }
        drop(whole);
        eprintln!(
            "block: this host kernel does not parse partition tables; \
             using a loop device over the partition's sectors {PART_START}..{}",
            PART_START + PART_SECTORS
        );
        let range = [
            format!("--offset={}", PART_START * 512),
            format!("--sizelimit={}", PART_SECTORS * 512),
        ];
        let loop_dev = LoopDisk::attach(image, &range);
        let dev = loop_dev.dev.clone();
        (loop_dev, dev)
    }

    /// `/dev/loopNp1` if the kernel found the partition (made from sysfs's
    /// numbers when there is no udev to create it).
    fn partition_node(&mut self) -> Option<String> {
        let part = format!("{}p1", self.dev);
        let base = self.dev.trim_start_matches("/dev/");
        let sys = format!("/sys/block/{base}/{base}p1/dev");
        for _ in 0..25 {
            if Path::new(&part).exists() || Path::new(&sys).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if Path::new(&part).exists() {
            return Some(part);
        }
        let numbers = std::fs::read_to_string(&sys).ok()?;
        let (major, minor) = numbers.trim().split_once(':')?;
        let status = Command::new("mknod")
            .args([&part, "b", major, minor])
            .status()
            .ok()?;
        status.success().then(|| {
            self.made_node = Some(part.clone());
            part
        })
    }
}

fn partition_image(image: &Path) {
    use std::io::Write;
    let mut sfdisk = Command::new("sfdisk")
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sfdisk (Debian package fdisk) is needed for the raw-partition test");
    let table = format!("label: dos\nstart={PART_START}, size={PART_SECTORS}, type=83\n");
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(table.as_bytes())
        .unwrap();
    assert!(sfdisk.wait().unwrap().success(), "sfdisk failed");
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        if let Some(node) = &self.made_node {
            let _ = std::fs::remove_file(node);
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
fn a_raw_partition_on_a_loop_device_is_a_disk() {
    require_kvm();
    let dir = scratch("blk-loop");
    let image = dir.join("image.raw");
    std::fs::write(&image, vec![0u8; 4 << 20]).unwrap();
    let (disk, part) = LoopDisk::partition(&image);
    let out = flint_run(&[
        "--disk",
        &format!("path={part}"),
        "--cmdline",
        "probe.virtio=1 probe.blk-pattern=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        blk_line(&out, 1, "capacity=").contains(&format!("capacity={PART_SECTORS} ")),
        "{out}"
    );
    assert!(blk_line(&out, 1, "pattern").ends_with("verify=ok"), "{out}");
    drop(disk);
    let raw = std::fs::read(&image).unwrap();
    let (start, end) = (
        (PART_START * 512) as usize,
        ((PART_START + PART_SECTORS) * 512) as usize,
    );
    assert_pattern(&raw[start..end], "the partition seen from the image");
    assert!(
        raw[512..start].iter().chain(&raw[end..]).all(|&b| b == 0),
        "the guest wrote outside its partition"
    );
}

#[test]
fn a_read_only_device_opened_writable_is_refused_by_name() {
    require_kvm();
    let dir = scratch("blk-rodev");
    let image = dir.join("image.raw");
    std::fs::write(&image, vec![0u8; 4 << 20]).unwrap();
    let disk = LoopDisk::read_only(&image);
    let out = flint_run(&["--disk", &format!("path={}", disk.dev)]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains(&disk.dev) && out.stderr.contains("add ,ro"),
        "{out}"
    );
    let ok = flint_run(&[
        "--disk",
        &format!("path={},ro", disk.dev),
        "--cmdline",
        "probe.virtio=1",
    ]);
    assert_eq!(ok.code, Some(0), "{ok}");
}

#[test]
fn bad_disk_options_exit_125_naming_the_problem() {
    let out = flint_run(&["--disk", "path=/nonexistent/disk.img"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("/nonexistent/disk.img"), "{out}");
    let out = flint_run(&["--disk", "ro"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("missing path="), "{out}");
    let out = flint_run(&["--disk", "path=/tmp"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("not a regular file or a block device"),
        "{out}"
    );
}
