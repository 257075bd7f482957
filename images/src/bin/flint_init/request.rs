//! What flint asks the guest to run, from either of the two places flint puts it:
//! `/flint/*` files in the initramfs (`--initrd`: flint appends a cpio archive to it), or the
//! same cpio archive written raw on a read-only disk named by `flint.cmd=DEV` on the kernel
//! command line (`--rootfs`, where there is no initramfs to append to).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// The command and its surroundings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `/flint/argv`: the program and its arguments.
    pub argv: Vec<OsString>,
    /// `/flint/env`: `KEY=VALUE` entries.
    pub env: Vec<OsString>,
    /// `/flint/workdir`.
    pub workdir: Option<OsString>,
    /// `/flint/shares`: pairs of device node and mount point.
    pub shares: Vec<OsString>,
}

/// Where the request was found (or why not), for the log.
pub enum Source {
    Initramfs,
    Disk(String),
    Missing(String),
}

impl Request {
    /// Read the request from the initramfs, else from the `flint.cmd=` disk.
    pub fn load() -> (Self, Source) {
        if std::path::Path::new("/flint/argv").exists() {
            let req = Self::from_files(|name| std::fs::read(format!("/flint/{name}")).ok());
            return (req, Source::Initramfs);
        }
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let Some(dev) = cmdline_value(&cmdline, "flint.cmd") else {
            let why = "no /flint/argv and no flint.cmd= on the kernel command line".to_string();
            return (Self::default(), Source::Missing(why));
        };
        crate::wait_for(dev);
        match std::fs::read(dev) {
            Ok(bytes) => (Self::from_archive(&bytes), Source::Disk(dev.to_string())),
            Err(e) => (Self::default(), Source::Missing(format!("{dev}: {e}"))),
        }
    }

    /// The request in a cpio archive whose entries are named `flint/argv` and so on.
    fn from_archive(archive: &[u8]) -> Self {
        let entries = cpio_entries(archive);
        Self::from_files(|name| {
            let path = format!("flint/{name}");
            entries
                .iter()
                .find(|(n, _)| *n == path.as_bytes())
                .map(|(_, d)| d.to_vec())
        })
    }

    fn from_files(get: impl Fn(&str) -> Option<Vec<u8>>) -> Self {
        let list = |name| get(name).map(|b| nul_list(&b)).unwrap_or_default();
        Request {
            argv: list("argv"),
            env: list("env"),
            workdir: get("workdir").map(|d| OsStr::from_bytes(&d).to_os_string()),
            shares: list("shares"),
        }
    }
}

/// The value of `key=value` on a kernel command line.
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// NUL-terminated entries.
fn nul_list(bytes: &[u8]) -> Vec<OsString> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    body.split(|&b| b == 0)
        .map(|s| OsStr::from_bytes(s).to_os_string())
        .collect()
}

/// Length of a newc header: the magic and 13 eight-digit hex fields.
const NEWC_HEADER: usize = 110;

/// (name, data) of each entry of a newc cpio archive, up to its trailer. A malformed entry ends
/// the list: the archive comes from flint, but the disk is read whole, padding included.
fn cpio_entries(mut data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    while data.len() >= NEWC_HEADER && data.starts_with(b"070701") {
        let field = |i: usize| {
            let hex = std::str::from_utf8(&data[6 + 8 * i..14 + 8 * i]).ok()?;
            usize::from_str_radix(hex, 16).ok()
        };
        let (Some(size), Some(namesize)) = (field(6), field(11)) else {
            break;
        };
        let start = (NEWC_HEADER + namesize).next_multiple_of(4);
        let Some(end) = start.checked_add(size).filter(|&e| e <= data.len()) else {
            break;
        };
        let name = &data[NEWC_HEADER..NEWC_HEADER + namesize.saturating_sub(1)];
        if name == b"TRAILER!!!" {
            break;
        }
        out.push((name, &data[start..end]));
        data = &data[end.next_multiple_of(4).min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newc entry as vmm/src/oneshot/cpio.rs writes it.
    fn entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut e = format!("070701{:08x}{:08x}", 1, 0o100644).into_bytes();
        for v in [0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0] {
            e.extend_from_slice(format!("{v:08x}").as_bytes());
        }
        e.extend_from_slice(name.as_bytes());
        e.push(0);
        e.resize(e.len().next_multiple_of(4), 0);
        e.extend_from_slice(data);
        e.resize(e.len().next_multiple_of(4), 0);
        e
    }

    #[test]
    fn archive_entries_are_read_up_to_the_trailer() {
        let mut a = entry("flint/argv", b"sh\0-c\0echo \xff\0");
        a.extend(entry("flint/workdir", b"/tmp"));
        a.extend(entry("TRAILER!!!", b""));
        a.extend(entry("flint/env", b"AFTER=trailer\0"));
        a.resize(a.len().next_multiple_of(512), 0);
        assert_eq!(cpio_entries(&a).len(), 2);
        let req = Request::from_archive(&a);
        assert_eq!(req.argv.len(), 3);
        assert_eq!(req.argv[2].as_bytes(), b"echo \xff");
        assert_eq!(req.workdir, Some(OsString::from("/tmp")));
        assert!(req.env.is_empty());
    }

    #[test]
    fn truncated_or_garbage_archives_end_the_list_without_panicking() {
        let a = entry("flint/argv", b"true\0");
        for cut in 0..a.len() {
            let _ = cpio_entries(&a[..cut]);
        }
        let mut huge = a.clone();
        huge[6 + 8 * 6..14 + 8 * 6].copy_from_slice(b"ffffffff");
        assert!(cpio_entries(&huge).is_empty());
        assert!(cpio_entries(b"not an archive at all").is_empty());
    }

    #[test]
    fn cmdline_values_match_whole_keys() {
        let c = "quiet root=/dev/vda flint.cmd=/dev/vdc flint.cmdx=no";
        assert_eq!(cmdline_value(c, "flint.cmd"), Some("/dev/vdc"));
        assert_eq!(cmdline_value(c, "root"), Some("/dev/vda"));
        assert_eq!(cmdline_value(c, "flint"), None);
    }
}
