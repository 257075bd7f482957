//! Device options as typed values: `--disk`, `--net` and `--console`,
//! parsed from their `key=value,flag` syntax with errors that quote the
//! offending part. Whether the files and taps exist is checked when the VM
//! is built, not here.

use std::path::PathBuf;

use virtio_devices::MacAddr;

/// Which consoles the guest gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsoleMode {
    /// virtio-console only.
    Virtio,
    /// The 8250 UART only.
    Serial,
    /// Both; the guest picks (the default).
    #[default]
    Both,
    /// Neither.
    None,
}

impl std::str::FromStr for ConsoleMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtio" => Ok(ConsoleMode::Virtio),
            "serial" => Ok(ConsoleMode::Serial),
            "both" => Ok(ConsoleMode::Both),
            "none" => Ok(ConsoleMode::None),
            other => Err(format!(
                "unknown console mode {other:?} (virtio, serial, both, none)"
            )),
        }
    }
}

/// How a disk's writes reach the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Through the host page cache; FLUSH is fdatasync.
    #[default]
    Writeback,
    /// O_DIRECT: no host page cache.
    Direct,
}

/// How flint treats a disk in use on the host (mounted, swap, held by
/// another device or opened exclusively by another process).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InUse {
    /// Refuse it, naming the mount point or holder (the default).
    #[default]
    Refuse,
    /// `--force`: open it anyway, without O_EXCL.
    Allow,
}

/// Whether a disk is emulated over a file or device, or a host disk is
/// handed to the guest whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskMode {
    /// A file or device behind virtio-blk, with the cache mode given.
    #[default]
    Emulated,
    /// `passthrough`: a host block device (whole disk or partition) opened
    /// O_DIRECT | O_EXCL, its block sizes, I/O hints and serial shown to
    /// the guest as the host sees them.
    Passthrough(InUse),
}

/// Whether the guest may write: the virtio-blk device's own notion (read
/// only: the backend is opened O_RDONLY and writes fail with IOERR).
pub use virtio_devices::Access;

/// One `--disk` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Backing file or block device.
    pub path: PathBuf,
    /// Read-only or not.
    pub access: Access,
    /// Serial returned by GET_ID (at most 20 bytes).
    pub id: Option<String>,
    /// Host caching.
    pub cache: CacheMode,
    /// Emulated or passthrough.
    pub mode: DiskMode,
}

/// Longest serial GET_ID can return (virtio 1.2 §5.2.6: 20 bytes).
pub const DISK_ID_MAX: usize = 20;

/// One `--net` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Tap interface name.
    pub tap: String,
    /// Guest MAC address, if given.
    pub mac: Option<[u8; 6]>,
}

/// Longest Linux interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Split `a=b,c,d=e` into (key, optional value) pairs.
fn pairs(spec: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    spec.split(',').map(|part| match part.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (part, None),
    })
}

impl std::str::FromStr for DiskConfig {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (mut path, mut access, mut id, mut cache) = (None, Access::ReadWrite, None, None);
        let mut mode = DiskMode::Emulated;
        for (key, value) in pairs(spec) {
            match (key, value) {
                ("path", Some(p)) if !p.is_empty() => path = Some(PathBuf::from(p)),
                ("ro", None) => access = Access::ReadOnly,
                ("id", Some(v)) if v.len() <= DISK_ID_MAX => id = Some(v.to_string()),
                ("id", Some(v)) => {
                    return Err(format!("id {v:?} is longer than {DISK_ID_MAX} bytes"))
                }
                ("cache", Some("writeback")) => cache = Some(CacheMode::Writeback),
                ("cache", Some("direct")) => cache = Some(CacheMode::Direct),
                ("passthrough", None) => mode = DiskMode::Passthrough(InUse::Refuse),
                ("cache", Some(v)) => {
                    return Err(format!("unknown cache mode {v:?} (writeback, direct)"))
                }
                _ => {
                    return Err(format!(
                        "unexpected {key:?} \
                         (path=P[,ro][,id=SERIAL][,cache=writeback|direct][,passthrough])"
                    ))
                }
            }
        }
        let path = path.ok_or("missing path=")?;
        let cache = match (mode, cache) {
            (DiskMode::Passthrough(_), Some(CacheMode::Writeback)) => {
                return Err(
                    "passthrough bypasses the host page cache: drop cache=writeback".to_string(),
                )
            }
            (DiskMode::Passthrough(_), _) => CacheMode::Direct,
            (DiskMode::Emulated, cache) => cache.unwrap_or_default(),
        };
        Ok(DiskConfig {
            path,
            access,
            id,
            cache,
            mode,
        })
    }
}

impl std::str::FromStr for NetConfig {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (mut tap, mut mac) = (None, None);
        for (key, value) in pairs(spec) {
            match (key, value) {
                ("tap", Some(t)) if !t.is_empty() && t.len() <= IFNAME_MAX && !t.contains('/') => {
                    tap = Some(t.to_string())
                }
                ("tap", Some(t)) => return Err(format!("{t:?} is not a valid interface name")),
                ("mac", Some(m)) => mac = Some(parse_mac(m)?),
                _ => return Err(format!("unexpected {key:?} (tap=NAME[,mac=MAC])")),
            }
        }
        Ok(NetConfig {
            tap: tap.ok_or("missing tap=")?,
            mac,
        })
    }
}

/// `52:54:00:12:34:56` → bytes; rejects multicast addresses.
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a MAC address (like 52:54:00:12:34:56)");
    let MacAddr(mac) = s.parse().map_err(|_| bad())?;
    if mac[0] & 1 != 0 {
        return Err(format!("{s:?} is a multicast address"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_takes_path_ro_id_and_cache() {
        let d: DiskConfig = "path=/dev/loop0p1,ro,id=SER1,cache=direct".parse().unwrap();
        assert_eq!(d.path, PathBuf::from("/dev/loop0p1"));
        assert_eq!((d.access, d.cache), (Access::ReadOnly, CacheMode::Direct));
        assert_eq!(d.id.as_deref(), Some("SER1"));
        let d: DiskConfig = "path=disk.img".parse().unwrap();
        assert_eq!(
            (d.access, d.cache, d.id),
            (Access::ReadWrite, CacheMode::Writeback, None)
        );
    }

    #[test]
    fn passthrough_means_direct_and_refuses_the_page_cache() {
        let d: DiskConfig = "path=/dev/loop3,passthrough,ro".parse().unwrap();
        assert_eq!(d.mode, DiskMode::Passthrough(InUse::Refuse));
        assert_eq!((d.access, d.cache), (Access::ReadOnly, CacheMode::Direct));
        let err = "path=/dev/loop3,passthrough,cache=writeback"
            .parse::<DiskConfig>()
            .unwrap_err();
        assert!(err.contains("drop cache=writeback"), "{err}");
    }

    #[test]
    fn bad_disk_specs_name_the_problem() {
        let err = |s: &str| s.parse::<DiskConfig>().unwrap_err();
        assert!(err("ro").contains("missing path="));
        assert!(err("path=x,cache=none").contains("\"none\""));
        assert!(err("path=x,id=123456789012345678901").contains("longer than 20"));
        assert!(err("path=x,bogus").contains("\"bogus\""));
        assert!(err("path=").contains("\"path\""));
    }

    #[test]
    fn a_net_takes_a_tap_and_a_mac() {
        let n: NetConfig = "tap=tap0,mac=52:54:00:12:34:56".parse().unwrap();
        assert_eq!(n.tap, "tap0");
        assert_eq!(n.mac, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    }

    #[test]
    fn bad_net_specs_name_the_problem() {
        let err = |s: &str| s.parse::<NetConfig>().unwrap_err();
        assert!(err("mac=52:54:00:12:34:56").contains("missing tap="));
        assert!(err("tap=a-name-much-too-long").contains("not a valid interface name"));
        assert!(err("tap=t,mac=52:54:00:12:34").contains("not a MAC address"));
        assert!(err("tap=t,mac=01:00:5e:00:00:01").contains("multicast"));
        assert!(err("tap=t,mac=zz:54:00:12:34:56").contains("not a MAC address"));
    }

    #[test]
    fn console_modes_parse_and_default_to_both() {
        assert_eq!("virtio".parse::<ConsoleMode>(), Ok(ConsoleMode::Virtio));
        assert_eq!(ConsoleMode::default(), ConsoleMode::Both);
        assert!("tty"
            .parse::<ConsoleMode>()
            .unwrap_err()
            .contains("\"tty\""));
    }
}
