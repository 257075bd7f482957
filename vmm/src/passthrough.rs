//! Passthrough disks, host side: whether a block device is in use on the
//! host (mounted, swap, held by another block device such as
//! device-mapper or md), and its identity as the guest should see it —
//! block sizes and I/O hints from the block-device ioctls, and a serial
//! from ATA IDENTIFY, sysfs or udev's by-id names.
//!
//! Everything here reads the host; nothing changes it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use virtio_devices::block::TransferLimits;
use virtio_devices::BlockGeometry;

/// A block device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevNum {
    /// The device number of the block device node at `path`, if it is one.
    pub fn of_node(path: &Path) -> Option<DevNum> {
        let meta = std::fs::metadata(path).ok()?;
        meta.file_type()
            .is_block_device()
            .then(|| DevNum::from_rdev(meta.rdev()))
    }

    fn from_rdev(rdev: u64) -> DevNum {
        DevNum {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        }
    }

    /// `/sys/dev/block/M:m`, resolved.
    fn sysfs(self) -> PathBuf {
        let link = PathBuf::from(format!("/sys/dev/block/{}:{}", self.major, self.minor));
        std::fs::canonicalize(&link).unwrap_or(link)
    }

    fn parse(text: &str) -> Option<DevNum> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

/// How the host uses a device.
#[derive(Debug, PartialEq, Eq)]
pub enum HostUse {
    /// A filesystem on it (or on one of its partitions) is mounted here.
    Mounted {
        /// The mount point.
        at: String,
    },
    /// It (or a partition of it) is active swap.
    Swap,
    /// Another block device (device-mapper, md, bcache...) sits on it.
    Held {
        /// The holder's kernel name.
        by: String,
    },
}

impl std::fmt::Display for HostUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostUse::Mounted { at } if at == "/" => {
                write!(f, "it holds the host's root filesystem (mounted at /)")
            }
            HostUse::Mounted { at } => write!(f, "it is mounted at {at}"),
            HostUse::Swap => write!(f, "it is in use as swap"),
            HostUse::Held { by } => write!(f, "it is held by {by}"),
        }
    }
}

/// The device and its partitions (or, for a partition, itself).
fn family(dev: DevNum) -> Vec<DevNum> {
    let dir = dev.sysfs();
    let mut all = vec![dev];
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return all;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.join("partition").exists() {
            if let Some(d) = std::fs::read_to_string(p.join("dev"))
                .ok()
                .and_then(|t| DevNum::parse(&t))
            {
                all.push(d);
            }
        }
    }
    all
}

/// The first way the host uses `dev` or one of its partitions, if any.
pub fn host_use(dev: DevNum) -> Option<HostUse> {
    let family = family(dev);
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in info.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let (Some(num), Some(at)) = (f.get(2).and_then(|t| DevNum::parse(t)), f.get(4)) else {
                continue;
            };
            if family.contains(&num) {
                return Some(HostUse::Mounted {
                    at: unescape_mount(at),
                });
            }
        }
    }
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        let on_it = swaps
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|p| DevNum::of_node(Path::new(p)))
            .any(|d| family.contains(&d));
        if on_it {
            return Some(HostUse::Swap);
        }
    }
    family.iter().find_map(|d| {
        let holders = std::fs::read_dir(d.sysfs().join("holders")).ok()?;
        let by = holders.flatten().next()?.file_name();
        Some(HostUse::Held {
            by: by.to_string_lossy().into_owned(),
        })
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// What the guest is shown of a passthrough device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Block sizes and I/O hints.
    pub geometry: BlockGeometry,
    /// Request limits from the disk's queue (sysfs).
    pub limits: TransferLimits,
    /// The serial found, and where.
    pub serial: Option<(String, &'static str)>,
    /// Whether the device has a volatile write cache ("write back").
    pub write_cache: Option<String>,
}

// Block-device ioctls (linux/fs.h), each writing one int or unsigned int.
/// _IO(0x12, 104): logical block size.
const BLKSSZGET: libc::Ioctl = 0x1268;
/// _IO(0x12, 123): physical block size.
const BLKPBSZGET: libc::Ioctl = 0x127b;
/// _IO(0x12, 122): alignment offset in bytes.
const BLKALIGNOFF: libc::Ioctl = 0x127a;
/// _IO(0x12, 120): minimum I/O size in bytes.
const BLKIOMIN: libc::Ioctl = 0x1278;
/// _IO(0x12, 121): optimal I/O size in bytes.
const BLKIOOPT: libc::Ioctl = 0x1279;
/// HDIO_GET_IDENTITY: the 512-byte ATA IDENTIFY data (struct hd_driveid).
const HDIO_GET_IDENTITY: libc::Ioctl = 0x030d;

/// One of the int-valued block-device ioctls; `None` if it fails.
pub(crate) fn ioctl_int(file: &File, request: libc::Ioctl) -> Option<u32> {
    let mut value: libc::c_uint = 0;
    // SAFETY: each request writes one int-sized value to `value`, alive and
    // writable for the call; the fd is open for the borrow of `file`.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request, &mut value as *mut libc::c_uint) };
    (r == 0).then_some(value)
}

/// The geometry of the open block device `file`, as far as the virtio-blk
/// configuration can carry it.
pub fn geometry(file: &File) -> BlockGeometry {
    let mut g = BlockGeometry::default();
    let Some(logical) = ioctl_int(file, BLKSSZGET).filter(|s| s.is_power_of_two()) else {
        return g;
    };
    g.logical_block_size = logical;
    let physical = ioctl_int(file, BLKPBSZGET).unwrap_or(logical).max(logical);
    g.physical_block_exponent = (physical / logical).trailing_zeros() as u8;
    let in_blocks = |bytes: u32| bytes / logical;
    g.alignment_offset =
        ioctl_int(file, BLKALIGNOFF).map_or(0, |a| u8::try_from(in_blocks(a)).unwrap_or(0));
    g.min_io_size =
        ioctl_int(file, BLKIOMIN).map_or(0, |m| u16::try_from(in_blocks(m)).unwrap_or(u16::MAX));
    g.opt_io_size = ioctl_int(file, BLKIOOPT).map_or(0, in_blocks);
    g
}

/// The identity of the passthrough device `file` (device number `dev`).
pub fn identity(file: &File, dev: DevNum) -> Identity {
    let disk = whole_disk(dev);
    let write_cache = std::fs::read_to_string(disk.join("queue/write_cache"))
        .ok()
        .map(|s| s.trim().to_string());
    Identity {
        geometry: geometry(file),
        limits: limits(&disk),
        serial: serial(file, &disk),
        write_cache,
    }
}

/// The disk queue's limits as virtio-blk can carry them: the largest
/// segment, segments per request (no more than a maximal transfer needs),
/// and discard limits; 0 (the device's own maximum) where sysfs is silent.
fn limits(disk: &Path) -> TransferLimits {
    let read = |name: &str| -> u64 {
        std::fs::read_to_string(disk.join("queue").join(name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let size_max = read("max_segment_size");
    let max_transfer = read("max_hw_sectors_kb") * 1024;
    let mut seg_max = read("max_segments");
    if size_max > 0 && max_transfer > 0 {
        seg_max = seg_max.min(max_transfer.div_ceil(size_max)).max(1);
    }
    TransferLimits {
        size_max: to_u32(size_max),
        seg_max: to_u32(seg_max),
        max_discard_sectors: to_u32(read("discard_max_bytes") / 512),
        discard_alignment: to_u32(read("discard_granularity") / 512),
    }
}

/// The sysfs directory of the disk `dev` is on (itself for a whole disk).
fn whole_disk(dev: DevNum) -> PathBuf {
    let dir = dev.sysfs();
    if dir.join("partition").exists() {
        dir.parent().map_or(dir.clone(), Path::to_path_buf)
    } else {
        dir
    }
}

/// The disk's serial number and where it came from: ATA IDENTIFY, then
/// sysfs (virtio, NVMe, SCSI VPD page 0x80), then udev's by-id name.
fn serial(file: &File, disk: &Path) -> Option<(String, &'static str)> {
    let clean = |s: &str| {
        let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        (!s.is_empty()).then(|| s.to_string())
    };
    if let Some(s) = ata_serial(file).as_deref().and_then(clean) {
        return Some((s, "ATA IDENTIFY"));
    }
    for (name, source) in [
        ("serial", "sysfs serial"),
        ("device/serial", "sysfs device/serial"),
    ] {
        if let Some(s) = std::fs::read_to_string(disk.join(name))
            .ok()
            .as_deref()
            .and_then(clean)
        {
            return Some((s, source));
        }
    }
    if let Some(s) = vpd_serial(disk).as_deref().and_then(clean) {
        return Some((s, "SCSI VPD page 0x80"));
    }
    by_id_name(disk).map(|s| (s, "/dev/disk/by-id"))
}

/// The serial field of ATA IDENTIFY (bytes 20..40 of struct hd_driveid,
/// already in character order), where the driver answers.
fn ata_serial(file: &File) -> Option<String> {
    let mut id = [0u8; 512];
    // SAFETY: HDIO_GET_IDENTITY writes at most 512 bytes (struct hd_driveid)
    // to `id`, alive and writable for the call; the fd is open.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), HDIO_GET_IDENTITY, id.as_mut_ptr()) };
    (r == 0).then(|| String::from_utf8_lossy(&id[20..40]).into_owned())
}

/// SCSI VPD page 0x80 (unit serial number): 4-byte header, length at 3.
fn vpd_serial(disk: &Path) -> Option<String> {
    let page = std::fs::read(disk.join("device/vpd_pg80")).ok()?;
    let len = usize::from(*page.get(3)?);
    let body = page.get(4..4 + len)?;
    Some(String::from_utf8_lossy(body).into_owned())
}

/// udev's `/dev/disk/by-id` name for the disk, without its bus prefix
/// (e.g. `ata-MODEL_SERIAL` → `MODEL_SERIAL`); world-wide names skipped.
fn by_id_name(disk: &Path) -> Option<String> {
    let name = disk.file_name()?.to_string_lossy().into_owned();
    let entries = std::fs::read_dir("/dev/disk/by-id").ok()?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy() == name.as_str()))
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("wwn-") && !n.starts_with("nvme-eui."))
        .collect();
    names.sort();
    let first = names.into_iter().next()?;
    Some(
        first
            .split_once('-')
            .map_or(first.clone(), |(_, rest)| rest.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_parse_from_sysfs_and_mountinfo_text() {
        assert_eq!(DevNum::parse("7:3\n"), Some(DevNum { major: 7, minor: 3 }));
        assert_eq!(DevNum::parse("7"), None);
        assert_eq!(DevNum::parse("a:b"), None);
    }

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
    }

    #[test]
    fn the_root_filesystem_is_named_as_such() {
        let root = HostUse::Mounted { at: "/".into() };
        assert!(root.to_string().contains("host's root filesystem"));
        let other = HostUse::Mounted { at: "/mnt".into() };
        assert_eq!(other.to_string(), "it is mounted at /mnt");
    }

    #[test]
    fn the_device_under_the_root_filesystem_is_in_use() {
        let root = std::fs::metadata("/").unwrap().dev();
        let dev = DevNum::from_rdev(root);
        // Overlay and other virtual roots have no block device behind them.
        if !dev.sysfs().exists() {
            eprintln!("/ is not on a block device here: test skipped");
            return;
        }
        assert!(matches!(host_use(dev), Some(HostUse::Mounted { .. })));
    }
}
