//! `--share HOST_DIR[:GUEST_PATH]` for one-shot guests: the directory as a read-only ext4
//! image (`mkfs.ext4 -d`), cached by content in `~/.cache/flint/share/`, attached as a
//! read-only virtio-blk disk after the `--disk`s ([`super::disks`]); flint-init mounts it read-only at GUEST_PATH
//! (default: the host path) from the list in `/flint/shares`.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A `--share` option, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// The host directory.
    pub host: PathBuf,
    /// Where the guest mounts it.
    pub guest: OsString,
}

/// Why a share could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The directory could not be read.
    #[error("--share {0}: cannot read the directory")]
    Read(String, #[source] std::io::Error),
    /// mkfs.ext4 could not run or failed.
    #[error("--share {0}: mkfs.ext4 -d failed: {1}")]
    Mkfs(String, String),
}

impl Share {
    /// Parse `HOST_DIR[:GUEST_PATH]`; HOST_DIR must be a directory (a relative one is taken
    /// from flint's working directory, and is where the guest sees it without GUEST_PATH).
    pub fn parse(spec: &std::ffi::OsStr) -> Result<Self, String> {
        let bytes = spec.as_bytes();
        let (host, guest) = match bytes.iter().position(|&b| b == b':') {
            Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
            None => (bytes, None),
        };
        let named = |why: &str| format!("--share {}: {why}", spec.to_string_lossy());
        if host.is_empty() || guest.is_some_and(|g| !g.starts_with(b"/")) {
            return Err(named("expected HOST_DIR[:/GUEST/PATH]"));
        }
        let host = std::fs::canonicalize(std::ffi::OsStr::from_bytes(host))
            .map_err(|e| named(&e.to_string()))?;
        if !host.is_dir() {
            return Err(named("not a directory"));
        }
        let guest = match guest {
            Some(g) => std::ffi::OsStr::from_bytes(g).to_os_string(),
            None => host.clone().into_os_string(),
        };
        Ok(Share { host, guest })
    }

    /// The ext4 image of the directory, built unless the cache has one for this content.
    pub fn image(&self) -> Result<PathBuf, ShareError> {
        let name = self.host.display().to_string();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut bytes = 0u64;
        let mut entries = 0u64;
        hash_tree(
            &self.host,
            Path::new(""),
            &mut hasher,
            &mut bytes,
            &mut entries,
        )
        .map_err(|e| ShareError::Read(name.clone(), e))?;
        let dir = cache_dir();
        let image = dir.join(format!("{:016x}.ext4", hasher.finish()));
        if image.exists() {
            return Ok(image);
        }
        std::fs::create_dir_all(&dir).map_err(|e| ShareError::Mkfs(name.clone(), e.to_string()))?;
        let tmp = image.with_extension(format!("tmp{}", std::process::id()));
        // Room for the data with 4 KiB blocks, the inodes and the metadata.
        let size_kib = (bytes / 1024) * 5 / 4 + entries * 8 + 8192;
        let out = Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-O",
                "^has_journal",
                "-L",
                "flint-share",
            ])
            .arg("-N")
            .arg((entries + 64).to_string())
            .arg("-E")
            .arg("root_owner=0:0")
            .arg("-d")
            .arg(&self.host)
            .arg(&tmp)
            .arg(format!("{size_kib}k"))
            .output()
            .map_err(|e| ShareError::Mkfs(name.clone(), e.to_string()))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(ShareError::Mkfs(name, msg));
        }
        std::fs::rename(&tmp, &image).map_err(|e| ShareError::Mkfs(name, e.to_string()))?;
        Ok(image)
    }
}

/// Where the guest sees host path `host` through `shares` (the deepest share holding it), if
/// one does: a one-shot command without `--workdir` starts there when flint's own working
/// directory is shared, which is what a test runner (`runner = "flint run ... --share . --"`)
/// expects.
pub fn guest_path(shares: &[Share], host: &Path) -> Option<OsString> {
    let (share, rest) = shares
        .iter()
        .filter_map(|s| Some((s, host.strip_prefix(&s.host).ok()?)))
        .max_by_key(|(s, _)| s.host.components().count())?;
    let mut guest = PathBuf::from(&share.guest);
    if !rest.as_os_str().is_empty() {
        guest.push(rest);
    }
    Some(guest.into_os_string())
}

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("flint/share")
}

/// Hash names, types, modes and contents under `root/rel`, in name order.
fn hash_tree(
    root: &Path,
    rel: &Path,
    h: &mut impl Hasher,
    bytes: &mut u64,
    entries: &mut u64,
) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path)?;
        *entries += 1;
        rel.as_os_str().as_bytes().hash(h);
        meta.mode().hash(h);
        if meta.is_dir() {
            hash_tree(root, &rel, h, bytes, entries)?;
        } else if meta.file_type().is_symlink() {
            std::fs::read_link(&path)?.as_os_str().as_bytes().hash(h);
        } else if meta.is_file() {
            *bytes += meta.len().next_multiple_of(4096);
            let mut file = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.write(&buf[..n]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_without_guest_path_mounts_at_the_host_path() {
        let s = Share::parse(std::ffi::OsStr::new("/tmp")).unwrap();
        assert_eq!(s.guest, s.host.clone().into_os_string());
        let s = Share::parse(std::ffi::OsStr::new("/tmp:/data")).unwrap();
        assert_eq!(s.guest, OsString::from("/data"));
        assert!(Share::parse(std::ffi::OsStr::new("/tmp:rel")).is_err());
        let e = Share::parse(std::ffi::OsStr::new("/nonexistent/dir")).unwrap_err();
        assert!(e.starts_with("--share /nonexistent/dir: "), "{e}");
        let e = Share::parse(std::ffi::OsStr::new("/proc/self/status")).unwrap_err();
        assert!(e.ends_with("not a directory"), "{e}");
    }

    #[test]
    fn a_shared_host_path_maps_through_the_deepest_share() {
        let share = |host: &str, guest: &str| Share {
            host: host.into(),
            guest: guest.into(),
        };
        let shares = [share("/src", "/src"), share("/src/sub", "/data")];
        let at = |p: &str| guest_path(&shares, Path::new(p));
        assert_eq!(at("/src"), Some("/src".into()));
        assert_eq!(at("/src/a/b"), Some("/src/a/b".into()));
        assert_eq!(at("/src/sub/x"), Some("/data/x".into()));
        assert_eq!(at("/srcfoo"), None);
        assert_eq!(at("/elsewhere"), None);
    }
}
