//! Anonymous memory files: what flint hands the kernel loader or a disk as a file without
//! touching a file system (the embedded probe, an initrd with a one-shot command appended, the
//! `--rootfs` command disk).

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::FromRawFd;

/// A new, empty memory file named `name` (shown in /proc/PID/fd), closed on exec.
pub fn create(name: &CStr) -> std::io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}
