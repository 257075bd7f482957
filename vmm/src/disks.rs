//! Opening the host side of `--disk`: a regular file or a block device
//! (whole disk or partition), with the access the user asked for, and
//! errors that name the path and say what to do.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::config::devices::{Access, CacheMode, DiskConfig};

/// What backs a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKind {
    /// A regular file on a host filesystem.
    File,
    /// A block device node (`/dev/sdb`, `/dev/loop0p1`).
    BlockDevice,
}

/// A disk's backing, open and sized.
#[derive(Debug)]
pub struct HostDisk {
    /// The open file or device.
    pub file: File,
    /// File or device.
    pub kind: DiskKind,
    /// Size in bytes.
    pub size: u64,
}

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
    /// Zero bytes, or not a whole number of 512-byte sectors.
    #[error("--disk {path}: size {size} bytes is not a non-zero multiple of 512")]
    BadSize {
        /// The path given.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The size could not be read.
    #[error("--disk {path}: cannot read its size: {source}")]
    Size {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Open `cfg.path` for `cfg.access` (O_DIRECT with `cache=direct`).
pub fn open_disk(cfg: &DiskConfig) -> Result<HostDisk, DiskError> {
    let path = cfg.path.display().to_string();
    let mut options = OpenOptions::new();
    options.read(true).write(cfg.access == Access::ReadWrite);
    if cfg.cache == CacheMode::Direct {
        options.custom_flags(libc::O_DIRECT);
    }
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
            _ => DiskError::Open {
                path: path.clone(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| DiskError::Open {
        path: path.clone(),
        source,
    })?;
    let (kind, size) = if meta.file_type().is_block_device() {
        (
            DiskKind::BlockDevice,
            device_size(&file).map_err(|source| DiskError::Size {
                path: path.clone(),
                source,
            })?,
        )
    } else if meta.is_file() {
        (DiskKind::File, meta.len())
    } else {
        return Err(DiskError::NotADisk(path));
    };
    // Linux lets a read-only block device be opened for writing and fails
    // the writes later: ask the device instead.
    if kind == DiskKind::BlockDevice && cfg.access == Access::ReadWrite && device_read_only(&file) {
        let source = std::io::Error::from_raw_os_error(libc::EROFS);
        return Err(DiskError::ReadOnlyOnHost { path, source });
    }
    if size == 0 || size % 512 != 0 {
        return Err(DiskError::BadSize { path, size });
    }
    Ok(HostDisk { file, kind, size })
}

fn readable(path: &Path) -> bool {
    File::open(path).is_ok()
}

/// BLKROGET: whether a block device is read-only (an error counts as no).
fn device_read_only(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // _IO(0x12, 94)
    const BLKROGET: libc::c_ulong = 0x125e;
    let mut ro: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int to the pointer, which is valid and writable.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKROGET, &mut ro) };
    r == 0 && ro != 0
}

/// BLKGETSIZE64: a block device's size in bytes.
fn device_size(file: &File) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    // _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which is valid and writable.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
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
        assert_eq!((disk.kind, disk.size), (DiskKind::File, 1 << 20));
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
            (&disk.file).write(b"x").is_err(),
            "a read-only disk must be opened O_RDONLY"
        );
        std::fs::remove_file(path).unwrap();
    }
}
