//! `flint-init`: PID 1 of a one-shot guest (`flint run ... -- CMD ARGS...`, README "One-shot
//! guests"). It mounts devtmpfs, proc and sysfs, tells flint the boot is complete (123 to port
//! 0x3f0), runs the command flint handed over and reports its exit status through the exit
//! port 0xf4, then powers off.
//!
//! What flint hands over (`request.rs`), as files in the initramfs (`--initrd`) or as the same
//! cpio archive on a disk named by `flint.cmd=` (`--rootfs`):
//! - `/flint/argv`: the command and its arguments, each followed by a NUL byte;
//! - `/flint/env`: `KEY=VALUE` entries, each followed by a NUL byte (added to a default PATH/HOME);
//! - `/flint/workdir`: the directory to run in (optional);
//! - `/flint/shares`: `--share` disks, pairs of device node and mount point, each followed by a
//!   NUL; each is mounted read-only as ext4 before the command starts.
//!
//! The root it starts on (`root.rs`): a read-only root image gets a RAM overlay first; an
//! initramfs built for Debian's stock kernel has its virtio modules loaded first.
//!
//! Consoles (opened in raw mode before the boot-complete marker, which tells flint to start
//! sending stdin): hvc0 carries the command's stdout (and, from flint, its stdin, framed as chunks of
//! a 4-byte little-endian length and the bytes, a zero length meaning end of file); hvc1 its
//! stderr. Both are put in raw mode, so bytes pass unchanged.
//!
//! Port I/O goes through /dev/port: on hosts where the guest kernel is emulated (nested KVM
//! through PVM) a user-mode `out` faults even after ioperm. Kernels without /dev/port (Debian's
//! stock kernel) get `out` after ioperm, which works where guest kernels run on VT-x/AMD-V.

/// A message for the kernel log (`/dev/kmsg`, which `flint run --verbose` shows; stderr before
/// devtmpfs is mounted). Errors are ignored: PID 1 must not die of a message, as `eprintln!`
/// would make it (a panic) when the console cannot be written.
macro_rules! say {
    ($($arg:tt)*) => { $crate::say(format_args!($($arg)*)) };
}

mod request;
mod root;

fn say(args: std::fmt::Arguments) {
    let line = format!("flint-init: {args}\n");
    match OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(mut kmsg) => {
            let _ = kmsg.write_all(line.as_bytes());
        }
        Err(_) => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

use std::ffi::{OsStr, OsString};

use request::{Request, Source};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// flint's boot-complete port and the value that marks it.
const BOOT_COMPLETE_PORT: u16 = 0x3f0;
const BOOT_COMPLETE: u8 = 123;
/// flint's exit port: the byte written is the VM's exit status.
const EXIT_PORT: u16 = 0xf4;
/// Status when init itself cannot run the command (as a shell's "not found").
const STATUS_NOT_RUN: u8 = 127;
/// PATH and HOME the command starts with, before `/flint/env`.
const DEFAULT_ENV: [(&str, &str); 2] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
];

fn main() {
    std::panic::set_hook(Box::new(|info| say!("{info}")));
    if root::is_read_only() {
        root::overlay();
    }
    mount_filesystems();
    root::load_modules();
    // Raw mode before boot-complete: flint sends stdin only after the marker, so no byte
    // meets the tty's default line discipline (echo, ^C, ^S...).
    let out = open_console("/dev/hvc0");
    let err = open_console("/dev/hvc1");
    outb(BOOT_COMPLETE_PORT, BOOT_COMPLETE);
    let (request, source) = Request::load();
    match source {
        Source::Initramfs => {}
        Source::Disk(dev) => say!("command from {dev}"),
        Source::Missing(why) => say!("{why}"),
    }
    mount_shares(&request.shares);
    let status = run_command(&request, out, err);
    outb(EXIT_PORT, status);
    // Only reached if the exit port did not end the VM (another monitor).
    // SAFETY: reboot(2) with a valid command; PID 1 may call it.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
}

/// devtmpfs on /dev (for /dev/port and the consoles), proc and sysfs. Failures are reported
/// and otherwise ignored: a missing one only matters to the command.
fn mount_filesystems() {
    for (source, target, fstype) in [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
    ] {
        let _ = std::fs::create_dir_all(target);
        // EBUSY: the kernel mounted it already (CONFIG_DEVTMPFS_MOUNT).
        if let Err(e) = root::mount(source, target, fstype, 0, "") {
            if !e.contains("busy") {
                say!("{e}");
            }
        }
    }
    // Commands expect a /tmp; a user's root image may not have one.
    if std::fs::create_dir("/tmp").is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions("/tmp", std::fs::Permissions::from_mode(0o1777));
    }
}

/// Mount each `--share` (pairs of device node and mount point) read-only.
fn mount_shares(list: &[OsString]) {
    for pair in list.chunks(2) {
        let [dev, target] = pair else { continue };
        let _ = std::fs::create_dir_all(target);
        wait_for(&dev.to_string_lossy());
        let (Some(d), Some(t)) = (dev.to_str(), target.to_str()) else {
            say!("share {dev:?} on {target:?}: not UTF-8");
            continue;
        };
        if let Err(e) = root::mount(d, t, "ext4", libc::MS_RDONLY, "") {
            say!("{d}: {e}");
        }
    }
}

/// Wait up to 2 s for a device node: virtio-blk has probed the disk before init runs, but
/// devtmpfs may need a moment.
pub(crate) fn wait_for(dev: &str) {
    for _ in 0..200 {
        if std::path::Path::new(dev).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Write `value` to I/O port `port`: through /dev/port where the kernel has it (flint's own
/// kernel: where the guest kernel is emulated a user-mode `out` faults even after ioperm), else
/// with `out` after ioperm(2) (Debian's stock kernel is built without /dev/port).
fn outb(port: u16, value: u8) {
    match OpenOptions::new().write(true).open("/dev/port") {
        Ok(dev) => {
            if let Err(e) = dev.write_all_at(&[value], port.into()) {
                say!("/dev/port {port:#x}: {e}");
            }
        }
        Err(_) => out_instruction(port, value),
    }
}

fn out_instruction(port: u16, value: u8) {
    // SAFETY: ioperm(2) only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(port.into(), 1, 1) } != 0 {
        say!("ioperm {port:#x}: {}", std::io::Error::last_os_error());
        return;
    }
    // SAFETY: ioperm granted this port; `out` touches no memory and no flags.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") port, in("al") value,
            options(nomem, nostack, preserves_flags));
    }
}

/// Run the command with the consoles as its stdio; its exit status (128 + signal number after
/// a signal, as a shell reports it).
fn run_command(request: &Request, out: Option<OwnedFd>, err: Option<OwnedFd>) -> u8 {
    let Some((program, args)) = request.argv.split_first() else {
        say!("the command is missing or empty: nothing to run");
        return STATUS_NOT_RUN;
    };
    let mut command = Command::new(program);
    command.args(args).env_clear().envs(DEFAULT_ENV);
    for entry in &request.env {
        let bytes = entry.as_bytes();
        let split = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
        let value = bytes.get(split + 1..).unwrap_or_default();
        command.env(OsStr::from_bytes(&bytes[..split]), OsStr::from_bytes(value));
    }
    if let Some(dir) = &request.workdir {
        command.current_dir(dir);
    }
    let pump = out.as_ref().and_then(|o| start_stdin_pump(o, &mut command));
    if let Some(o) = &out {
        command.stdout(dup(o));
    }
    if let Some(e) = err.as_ref().or(out.as_ref()) {
        command.stderr(dup(e));
    }
    let status = match command.spawn().and_then(|mut child| child.wait()) {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => code as u8,
            (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
            (None, None) => STATUS_NOT_RUN,
        },
        Err(e) => {
            let msg = format!("flint-init: {}: {e}\n", program.to_string_lossy());
            let _ = (&File::from(dup(err.as_ref().or(out.as_ref()).unwrap_or(&stderr()))))
                .write_all(msg.as_bytes());
            STATUS_NOT_RUN
        }
    };
    if let Some(pid) = pump {
        // SAFETY: kill(2) and waitpid(2) on our own child; a null status pointer is allowed.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    // Everything written must have reached flint before the exit port ends the VM.
    for console in out.iter().chain(err.iter()) {
        // SAFETY: tcdrain on an open descriptor.
        unsafe { libc::tcdrain(console.as_raw_fd()) };
    }
    status
}

fn stderr() -> OwnedFd {
    // SAFETY: fd 2 is open for the process's lifetime; dup gives a descriptor we own.
    unsafe { OwnedFd::from_raw_fd(libc::dup(libc::STDERR_FILENO)) }
}

fn dup(fd: &OwnedFd) -> OwnedFd {
    fd.try_clone().unwrap_or_else(|_| stderr())
}

/// `path` opened read-write in raw mode (no newline translation, echo or signals), retrying
/// for a second while the driver brings it up; none if it never appears.
fn open_console(path: &str) -> Option<OwnedFd> {
    for _ in 0..100 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path);
        if let Ok(file) = file {
            let fd = OwnedFd::from(file);
            // SAFETY: termios is plain data; tcgetattr fills it and tcsetattr reads it, both on
            // an open descriptor.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(fd.as_raw_fd(), &mut t) == 0 {
                    libc::cfmakeraw(&mut t);
                    libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t);
                }
            }
            return Some(fd);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    say!("{path} did not appear");
    None
}

/// Fork a process that decodes flint's framed stdin from `console` into a pipe, and make the
/// pipe's read end the command's stdin; the pump's pid.
fn start_stdin_pump(console: &OwnedFd, command: &mut Command) -> Option<libc::pid_t> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: pipe2 succeeded; each descriptor is owned once.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork in a single-threaded process; the child only reads, writes and exits.
    match unsafe { libc::fork() } {
        0 => {
            drop(read_end);
            let code = i32::from(pump(File::from(dup(console)), File::from(write_end)).is_err());
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        pid if pid > 0 => {
            drop(write_end);
            command.stdin(Stdio::from(read_end));
            Some(pid)
        }
        _ => None,
    }
}

/// Copy frames from `input` to `output` until the end-of-file frame.
fn pump(mut input: File, mut output: File) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let cap = buf.len();
    loop {
        let mut header = [0u8; 4];
        input.read_exact(&mut header)?;
        let mut left = u32::from_le_bytes(header) as usize;
        if left == 0 {
            return Ok(());
        }
        while left > 0 {
            let n = input.read(&mut buf[..left.min(cap)])?;
            if n == 0 {
                return Ok(());
            }
            // A command that stops reading closes the pipe; keep draining the console.
            let _ = output.write_all(&buf[..n]);
            left -= n;
        }
    }
}
