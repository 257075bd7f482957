//! One-shot guests: `flint run --kernel K (--initrd I | --rootfs IMG) [--env K=V]...
//! [--workdir DIR] -- CMD ARGS...` (README "One-shot guests"). flint hands the command to the
//! guest's init (images/src/bin/flint_init/) in a small cpio archive, so argv, env and the
//! working directory arrive byte for byte. With `--initrd` the archive is appended to the
//! initrd (Linux unpacks concatenated archives into one initramfs); with `--rootfs` there is
//! no initramfs, so the archive is written raw on a read-only disk of its own, the last one,
//! named on the command line by `flint.cmd=` ([`disks`]). The archive holds:
//!
//! | file | content |
//! |---|---|
//! | `/flint/argv` | the command and its arguments, each followed by a NUL |
//! | `/flint/env` | the `--env` entries, each followed by a NUL |
//! | `/flint/workdir` | `--workdir`, if given |
//! | `/flint/shares` | per `--share`: its disk's device node and mount point, each followed by a NUL |
//!
//! The command's stdout and stderr come back on two virtio consoles (hvc0, hvc1), its stdin
//! goes to hvc0 in frames (see [`frame`]) so that end of file reaches it, and the kernel's
//! own messages (the UART) are dropped unless `--verbose` sends them to stderr.

pub mod cpio;
pub mod disks;
pub mod share;

use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Kernel parameters for hosts whose guest kernel mode is emulated (nested KVM through PVM):
/// no xsave, fsgsbase, popcnt, SMAP or cmpxchg16b instructions (the emulator lacks them), no read-only
/// remapping of kernel data and no speculation mitigations (each costs emulated time).
pub const EMULATED_KERNEL_PARAMS: &str =
    "noxsave nofsgsbase clearcpuid=popcnt,smap,cx16 rodata=off mitigations=off";

/// Where the kernel's console messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelLog {
    /// Dropped, and the kernel booted with `quiet` (the default).
    Hidden,
    /// To flint's stderr (`--verbose`).
    Stderr,
}

/// The command a one-shot guest runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneShot {
    /// The command and its arguments.
    pub argv: Vec<OsString>,
    /// `KEY=VALUE` entries from `--env`.
    pub env: Vec<OsString>,
    /// `--workdir`.
    pub workdir: Option<OsString>,
    /// Where the kernel's messages go.
    pub kernel_log: KernelLog,
    /// `--share` directories, in order.
    pub shares: Vec<share::Share>,
    /// How many `--disk`s come before the shares on the bus (their guest names follow).
    pub disks_before_shares: usize,
    /// Where the guest's root filesystem comes from.
    pub root: GuestRoot,
}

/// The root filesystem of a one-shot guest; either way its `/init` is flint-init.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestRoot {
    /// `--initrd`: the initramfs, with the command's archive appended.
    Initramfs,
    /// `--rootfs IMG`: an ext4 image on the first disk (vda), read-only; the command's archive
    /// on the last disk.
    Image(PathBuf),
}

impl OneShot {
    /// The cpio archive that carries the command to the guest's init.
    pub fn archive(&self) -> Vec<u8> {
        let mut a = cpio::Archive::default();
        a.dir("flint");
        a.file("flint/argv", &nul_list(&self.argv));
        a.file("flint/env", &nul_list(&self.env));
        if let Some(dir) = &self.workdir {
            a.file("flint/workdir", dir.as_bytes());
        }
        if !self.shares.is_empty() {
            let mut list = Vec::new();
            for (i, s) in self.shares.iter().enumerate() {
                list.extend_from_slice(disk_name(self.disks_before_shares + i).as_bytes());
                list.push(0);
                list.extend_from_slice(s.guest.as_bytes());
                list.push(0);
            }
            a.file("flint/shares", &list);
        }
        a.finish()
    }

    /// The kernel command line flint adds before the user's `--cmdline`.
    pub fn cmdline_prefix(&self, host: HostKind) -> String {
        let mut words = Vec::new();
        match self.kernel_log {
            KernelLog::Hidden => words.push("quiet"),
            // From the first line, before the 8250 driver registers its console.
            KernelLog::Stderr => words.push("earlyprintk=serial,ttyS0"),
        }
        if host == HostKind::EmulatedKernel {
            words.push(EMULATED_KERNEL_PARAMS);
        }
        let mut line = words.join(" ");
        if let GuestRoot::Image(_) = self.root {
            // `ro`: the disk is read-only anyway; flint-init lays a RAM overlay over it.
            line.push_str(" root=/dev/vda ro rootfstype=ext4 init=/init flint.cmd=");
            line.push_str(&disk_name(self.command_disk_index()));
        }
        line
    }

    /// The bus index, among the disks, of the `--rootfs` command disk: after the root image,
    /// the `--disk`s and the shares.
    pub fn command_disk_index(&self) -> usize {
        self.disks_before_shares + self.shares.len()
    }
}

/// The guest's name for the virtio-blk disk at `index` among the disks: vda, vdb, ... vdz, vdaa.
fn disk_name(index: usize) -> String {
    let mut name = String::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        name.insert(0, (b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    format!("/dev/vd{name}")
}

/// Entries each followed by a NUL byte.
fn nul_list(items: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(item.as_bytes());
        out.push(0);
    }
    out
}

/// Whether guest kernel code runs on hardware virtualization here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// vmx or svm in /proc/cpuinfo.
    HardwareVirt,
    /// Neither: /dev/kvm is nested through PVM and kernel mode is emulated.
    EmulatedKernel,
}

impl HostKind {
    /// Read /proc/cpuinfo's flags.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::from_cpuinfo(&cpuinfo)
    }

    fn from_cpuinfo(cpuinfo: &str) -> Self {
        let flags = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags").and_then(|r| r.split_once(':')))
            .map(|(_, f)| f)
            .unwrap_or_default();
        if flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
            HostKind::HardwareVirt
        } else {
            HostKind::EmulatedKernel
        }
    }
}

/// The initrd at `path` with `oneshot`'s archive appended (the original padded to 512
/// bytes first), as an anonymous memory file, and its size.
pub fn initrd_with_command(path: &Path, oneshot: &OneShot) -> std::io::Result<(File, u64)> {
    let mut original = File::open(path)?;
    if original.metadata()?.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    let mut file = crate::memfd::create(c"flint-initrd")?;
    let len = std::io::copy(&mut original, &mut file)?;
    let padded = len.next_multiple_of(512);
    file.write_all(&vec![0; (padded - len) as usize])?;
    file.write_all(&oneshot.archive())?;
    let size = file.stream_position()?;
    file.seek(SeekFrom::Start(0))?;
    Ok((file, size))
}

/// Host stdin bytes as one frame for flint-init's stdin pump: a 4-byte little-endian length,
/// then the bytes. An empty `data` is the end-of-file frame.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oneshot(argv: &[&[u8]]) -> OneShot {
        use std::os::unix::ffi::OsStringExt;
        OneShot {
            argv: argv
                .iter()
                .map(|a| OsString::from_vec(a.to_vec()))
                .collect(),
            env: vec!["A=b c".into()],
            workdir: None,
            kernel_log: KernelLog::Hidden,
            shares: Vec::new(),
            disks_before_shares: 0,
            root: GuestRoot::Initramfs,
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn archive_carries_argv_byte_exact_nul_separated() {
        let bytes = oneshot(&[b"sh", b"-c", b"echo 'a\"b'\n\xff\xc3\xa9", b""]).archive();
        assert!(find(&bytes, b"flint/argv\0"));
        assert!(find(&bytes, b"sh\0-c\0echo 'a\"b'\n\xff\xc3\xa9\0\0"));
        assert!(find(&bytes, b"A=b c\0"));
        assert!(!find(&bytes, b"flint/workdir"));
    }

    #[test]
    fn quiet_unless_verbose_and_emulated_host_params() {
        let mut o = oneshot(&[b"true"]);
        assert_eq!(o.cmdline_prefix(HostKind::HardwareVirt), "quiet");
        o.kernel_log = KernelLog::Stderr;
        assert_eq!(
            o.cmdline_prefix(HostKind::EmulatedKernel),
            format!("earlyprintk=serial,ttyS0 {EMULATED_KERNEL_PARAMS}")
        );
    }

    #[test]
    fn a_root_image_is_vda_and_the_command_disk_comes_last() {
        let mut o = oneshot(&[b"true"]);
        o.root = GuestRoot::Image("/img/rootfs.ext4".into());
        o.disks_before_shares = 3; // the root image and two --disks
        o.shares = vec![share::Share::parse(std::ffi::OsStr::new("/tmp")).unwrap()];
        assert_eq!(
            o.cmdline_prefix(HostKind::HardwareVirt),
            "quiet root=/dev/vda ro rootfstype=ext4 init=/init flint.cmd=/dev/vde"
        );
    }

    #[test]
    fn cpuinfo_with_vmx_or_svm_is_hardware_virt() {
        let hw = "processor: 0\nflags\t\t: fpu vme vmx sse\n";
        assert_eq!(HostKind::from_cpuinfo(hw), HostKind::HardwareVirt);
        let amd = "flags : fpu svm\n";
        assert_eq!(HostKind::from_cpuinfo(amd), HostKind::HardwareVirt);
        let pvm = "flags : fpu hypervisor sse\n";
        assert_eq!(HostKind::from_cpuinfo(pvm), HostKind::EmulatedKernel);
    }

    #[test]
    fn disks_are_named_as_linux_names_them() {
        assert_eq!(disk_name(0), "/dev/vda");
        assert_eq!(disk_name(25), "/dev/vdz");
        assert_eq!(disk_name(26), "/dev/vdaa");
    }

    #[test]
    fn frame_is_length_prefixed_and_empty_frame_is_eof() {
        let mut out = Vec::new();
        frame(b"hi\n", &mut out);
        frame(b"", &mut out);
        assert_eq!(out, b"\x03\0\0\0hi\n\0\0\0\0");
    }
}
