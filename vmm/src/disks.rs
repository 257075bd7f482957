//! Opening the host side of `--disk`: a regular file or a block device
//! (whole disk or partition), with the access the user asked for, and
//! errors that name the path and say what to do.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use virtio_devices::block::{BackendError, BackingKind};
use virtio_devices::{BlockBackend, FileBackend};

use crate::config::devices::{Access, CacheMode, DiskConfig, DiskMode, InUse};
use crate::passthrough::{self, DevNum};

/// Why a disk cannot be used; every message names the path.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// open(2) failed.
    #[error("--disk {path}: {source}")]
    Open {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writable access asked for a file or device the host has read-only.
    #[error("--disk {path}: read-only on the host ({source}); add ,ro to give it to the guest read-only")]
    ReadOnlyOnHost {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Neither a regular file nor a block device.
    #[error("--disk {0}: not a regular file or a block device")]
    NotADisk(String),
    /// Passthrough asked for something that is not a block device.
    #[error("--disk {0}: passthrough needs a block device (a whole disk or a partition)")]
    NotABlockDevice(String),
    /// The host uses the device.
    #[error("--disk {path}: refusing to pass it through: {why}; --force overrides")]
    InUse {
        /// The path given.
        path: String,
        /// How the host uses it.
        why: passthrough::HostUse,
    },
    /// O_EXCL failed: something holds the device exclusively.
    #[error(
        "--disk {0}: refusing to pass it through: another program holds it exclusively \
         (a mounted filesystem, LVM, md, or another VM); --force overrides"
    )]
    Busy(String),
    /// Zero bytes, or not a whole number of 512-byte sectors.
    #[error("--disk {path}: size {size} bytes is not a non-zero multiple of 512")]
    BadSize {
        /// The path given.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The backend could not be set up over the open file.
    #[error("--disk {path}: {source}")]
    Backend {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: BackendError,
    },
}

/// Open `cfg.path` for `cfg.access` (O_DIRECT with `cache=direct`) as a
/// virtio-blk backend, refusing what the guest could not use. A
/// passthrough disk must be a block device the host does not use (unless
/// `--force`), and is opened O_DIRECT | O_EXCL.
pub fn open_disk(cfg: &DiskConfig) -> Result<FileBackend, DiskError> {
    let path = cfg.path.display().to_string();
    let mut options = OpenOptions::new();
    options.read(true).write(cfg.access == Access::ReadWrite);
    let mut flags = 0;
    if cfg.cache == CacheMode::Direct {
        flags |= libc::O_DIRECT;
    }
    if let DiskMode::Passthrough(in_use) = cfg.mode {
        let dev =
            DevNum::of_node(&cfg.path).ok_or_else(|| DiskError::NotABlockDevice(path.clone()))?;
        if in_use == InUse::Refuse {
            if let Some(why) = passthrough::host_use(dev) {
                return Err(DiskError::InUse { path, why });
            }
            flags |= libc::O_EXCL;
        }
        flags |= libc::O_DIRECT;
    }
    options.custom_flags(flags);
    let file = options
        .open(&cfg.path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EROFS) | Some(libc::EACCES)
                if cfg.access == Access::ReadWrite && readable(&cfg.path) =>
            {
                DiskError::ReadOnlyOnHost {
                    path: path.clone(),
                    source,
                }
            }
            Some(libc::EISDIR) => DiskError::NotADisk(path.clone()),
            Some(libc::EBUSY) if flags & libc::O_EXCL != 0 => DiskError::Busy(path.clone()),
            _ => DiskError::Open {
                path: path.clone(),
                source,
            },
        })?;
    let backend = FileBackend::new(file, cfg.access).map_err(|source| match source {
        BackendError::NotADisk => DiskError::NotADisk(path.clone()),
        source => DiskError::Backend {
            path: path.clone(),
            source,
        },
    })?;
    // Linux lets a read-only block device be opened for writing and fails
    // the writes later: ask the device instead.
    if backend.kind() == BackingKind::BlockDevice
        && cfg.access == Access::ReadWrite
        && device_read_only(backend.file())
    {
        let source = std::io::Error::from_raw_os_error(libc::EROFS);
        return Err(DiskError::ReadOnlyOnHost { path, source });
    }
    let size = backend.capacity();
    if size == 0 || size % 512 != 0 {
        return Err(DiskError::BadSize { path, size });
    }
    Ok(backend)
}

fn readable(path: &Path) -> bool {
    File::open(path).is_ok()
}

/// BLKROGET: whether a block device is read-only (an error counts as no).
fn device_read_only(file: &File) -> bool {
    // _IO(0x12, 94)
    const BLKROGET: libc::Ioctl = 0x125e;
    passthrough::ioctl_int(file, BLKROGET).is_some_and(|ro| ro != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(path: &Path, access: Access) -> DiskConfig {
        DiskConfig {
            path: path.to_path_buf(),
            access,
            id: None,
            cache: CacheMode::Writeback,
            mode: crate::config::devices::DiskMode::Emulated,
        }
    }

    fn scratch(name: &str, len: u64) -> PathBuf {
        let path = std::env::temp_dir().join(format!("flint-disk-{}-{name}", std::process::id()));
        let f = File::create(&path).unwrap();
        f.set_len(len).unwrap();
        path
    }

    #[test]
    fn a_regular_file_opens_with_its_size() {
        let path = scratch("ok", 1 << 20);
        let disk = open_disk(&cfg(&path, Access::ReadWrite)).unwrap();
        assert_eq!((disk.kind(), disk.capacity()), (BackingKind::File, 1 << 20));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn missing_empty_odd_sized_and_directory_paths_are_refused_by_name() {
        let err = |p: &Path| {
            open_disk(&cfg(p, Access::ReadWrite))
                .unwrap_err()
                .to_string()
        };
        assert!(err(Path::new("/nonexistent/disk.img")).contains("/nonexistent/disk.img"));
        let empty = scratch("empty", 0);
        assert!(err(&empty).contains("not a non-zero multiple of 512"));
        let odd = scratch("odd", 1000);
        assert!(err(&odd).contains("1000 bytes"));
        let dir = err(Path::new("/tmp"));
        assert!(
            dir.contains("not a regular file or a block device"),
            "{dir}"
        );
        std::fs::remove_file(empty).unwrap();
        std::fs::remove_file(odd).unwrap();
    }

    #[test]
    fn read_only_access_opens_without_write_permission() {
        let path = scratch("ro", 4096);
        let disk = open_disk(&cfg(&path, Access::ReadOnly)).unwrap();
        use std::io::Write;
        assert!(
            disk.file().write(b"x").is_err(),
            "a read-only disk must be opened O_RDONLY"
        );
        std::fs::remove_file(path).unwrap();
    }
}
