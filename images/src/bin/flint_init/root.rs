//! The root filesystem flint-init starts on, made fit for a command: a read-only root image
//! (`flint run --rootfs IMG`, mounted `ro` by the kernel so the host file is never written)
//! gets a RAM overlay, and the stock-kernel initramfs variant loads its virtio modules.

use std::ffi::CString;
use std::os::fd::AsRawFd;

/// Whether `/` is mounted read-only.
pub fn is_read_only() -> bool {
    // SAFETY: statvfs is plain data that statvfs(3) fills; the path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c"/".as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0
    }
}

/// Make `/` writable without writing the image: a tmpfs holds an overlay's upper and work
/// directories, the overlay of `/` is mounted beside them and becomes the root (as switch_root
/// does: move it onto `/`, chroot). The tmpfs borrows `/dev`, the one directory every root
/// image has, before devtmpfs takes it (in the new root), so that a user's own image needs
/// nothing of flint's but `/init`. Everything the command writes stays in guest RAM and is
/// gone at exit. On failure `/` stays read-only, with a tmpfs on `/tmp` so that the command
/// still has somewhere to write.
pub fn overlay() {
    if let Err(e) = try_overlay() {
        say!("no writable overlay on the read-only root ({e}); / stays read-only");
        let _ = mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
    }
}

/// Where the overlay's tmpfs is mounted while the root is switched.
const SCRATCH: &str = "/dev";

fn try_overlay() -> Result<(), String> {
    mount("tmpfs", SCRATCH, "tmpfs", 0, "mode=0755")?;
    for dir in ["upper", "work", "root"] {
        let dir = format!("{SCRATCH}/{dir}");
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    let layers = format!("lowerdir=/,upperdir={SCRATCH}/upper,workdir={SCRATCH}/work");
    mount("overlay", &format!("{SCRATCH}/root"), "overlay", 0, &layers)?;
    std::env::set_current_dir(format!("{SCRATCH}/root")).map_err(|e| format!("chdir: {e}"))?;
    mount_raw(c".", c"/", None, libc::MS_MOVE, None).map_err(|e| format!("move to /: {e}"))?;
    // SAFETY: chroot(2) and chdir(2) with valid C strings.
    unsafe {
        if libc::chroot(c".".as_ptr()) != 0 {
            return Err(format!("chroot: {}", std::io::Error::last_os_error()));
        }
        libc::chdir(c"/".as_ptr());
    }
    Ok(())
}

/// Where the stock-kernel initramfs keeps its modules (`images/build-initramfs.sh --modules`).
const MODULES: &str = "/lib/modules";

/// Load the modules listed in `/lib/modules/load-order` (dependencies first), if there is
/// such a list: Debian's stock kernel builds virtio-mmio, -blk, -console and -net as modules.
pub fn load_modules() {
    let Ok(order) = std::fs::read_to_string(format!("{MODULES}/load-order")) else {
        return;
    };
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = format!("{MODULES}/{name}");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                say!("{path}: {e}");
                continue;
            }
        };
        // SAFETY: finit_module(2) on an open descriptor with an empty parameter string.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
        let e = std::io::Error::last_os_error();
        if rc != 0 && e.raw_os_error() != Some(libc::EEXIST) {
            say!("load {path}: {e}");
        }
    }
}

/// mount(2) with Rust strings; the error names the target.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: u64,
    data: &str,
) -> Result<(), String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?}: NUL in a mount argument"));
    let (s, t, f, d) = (c(source)?, c(target)?, c(fstype)?, c(data)?);
    let data = (!data.is_empty()).then_some(d.as_c_str());
    mount_raw(&s, &t, Some(&f), flags, data).map_err(|e| format!("mount {target}: {e}"))
}

fn mount_raw(
    source: &std::ffi::CStr,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: u64,
    data: Option<&std::ffi::CStr>,
) -> std::io::Result<()> {
    // SAFETY: every pointer is a valid NUL-terminated string or null, which mount(2) allows for
    // the type (MS_MOVE) and the data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
