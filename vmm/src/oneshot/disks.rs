//! The disks a one-shot guest gets beyond its `--disk`s, in bus order: the `--rootfs` image
//! first (vda, so that `root=/dev/vda` holds whatever else is attached), then the `--disk`s,
//! then each `--share`, then, with `--rootfs`, the command disk: the command's cpio archive in
//! an anonymous memory file, which flint-init reads raw from the device `flint.cmd=` names.

use std::fs::File;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;

use super::share::ShareError;
use super::GuestRoot;
use crate::config::devices::{Access, CacheMode, DiskConfig, DiskMode};
use crate::config::RunConfig;

/// GET_ID serial of the command disk, so that it is recognisable in the guest.
pub const COMMAND_DISK_ID: &str = "flint-command";

/// Why a one-shot guest's disks could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum OneShotDiskError {
    /// A `--share` failed.
    #[error(transparent)]
    Share(#[from] ShareError),
    /// The root image cannot be used.
    #[error("--rootfs {0}: {1}")]
    Rootfs(String, String),
    /// The command disk could not be made.
    #[error("the --rootfs command disk: {0}")]
    CommandDisk(#[source] std::io::Error),
}

/// Add the root image, the shares and the command disk of `cfg`'s one-shot command to its
/// disks.
pub fn attach(cfg: &mut RunConfig) -> Result<(), OneShotDiskError> {
    let Some(oneshot) = &cfg.oneshot else {
        return Ok(());
    };
    if let GuestRoot::Image(path) = &oneshot.root {
        check_rootfs(path)?;
        cfg.disks.insert(0, read_only(path.clone(), None));
    }
    for share in &oneshot.shares {
        let path = share.image()?;
        log::info!("--share {}: {}", share.host.display(), path.display());
        cfg.disks.push(read_only(path, None));
    }
    if let GuestRoot::Image(_) = oneshot.root {
        let path = command_disk(&oneshot.archive()).map_err(OneShotDiskError::CommandDisk)?;
        cfg.disks
            .push(read_only(path, Some(COMMAND_DISK_ID.to_string())));
    }
    Ok(())
}

fn read_only(path: PathBuf, id: Option<String>) -> DiskConfig {
    DiskConfig {
        path,
        access: Access::ReadOnly,
        id,
        cache: CacheMode::Writeback,
        mode: DiskMode::Emulated,
    }
}

/// A root image must be a readable regular file or block device; said here by its option's
/// name rather than later as a `--disk`.
fn check_rootfs(path: &std::path::Path) -> Result<(), OneShotDiskError> {
    let bad = |why: String| OneShotDiskError::Rootfs(path.display().to_string(), why);
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    use std::os::unix::fs::FileTypeExt;
    if !meta.is_file() && !meta.file_type().is_block_device() {
        return Err(bad("not a regular file or a block device".into()));
    }
    if meta.is_file() && meta.len() < 1024 + 1024 {
        return Err(bad(format!(
            "{} bytes is too small for an ext4 image (build one with images/build-rootfs.sh)",
            meta.len()
        )));
    }
    Ok(())
}

/// `archive` (already a multiple of 512 bytes) in a memory file that stays open for the life
/// of the process, and the path the disk opens it by.
fn command_disk(archive: &[u8]) -> std::io::Result<PathBuf> {
    let mut file = crate::memfd::create(c"flint-command")?;
    file.write_all(archive)?;
    // The disk reopens it by path when the VM is built; one descriptor for the life of a
    // one-shot process is the price of not threading an open file through RunConfig.
    let fd = file.into_raw_fd();
    Ok(PathBuf::from(format!("/proc/self/fd/{fd}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_disk_reads_back_as_the_archive() {
        let data = vec![7u8; 1024];
        let path = command_disk(&data).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_rootfs_that_is_missing_small_or_a_directory_is_named() {
        let e = check_rootfs("/nonexistent/rootfs.ext4".as_ref()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--rootfs /nonexistent/rootfs.ext4: "),
            "{e}"
        );
        let e = check_rootfs("/".as_ref()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let small = std::env::temp_dir().join(format!("flint-small-{}", std::process::id()));
        std::fs::write(&small, b"tiny").unwrap();
        let e = check_rootfs(&small).unwrap_err();
        let _ = std::fs::remove_file(&small);
        assert!(e.to_string().contains("too small"), "{e}");
    }
}
