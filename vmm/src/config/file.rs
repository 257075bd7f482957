//! `--config FILE`: a VM described in a file instead of (or besides) the
//! command line. Two formats:
//!
//! - flint's own TOML: the `flint run` options by their long names,
//!   `disk` and `net` as lists of the same specs the options take:
//!
//!   ```toml
//!   kernel = "vmlinux"
//!   initrd = "initrd.img"       # or rootfs = "rootfs.ext4", for a one-shot command
//!   cmdline = "quiet"
//!   mem = 256
//!   vcpus = 2
//!   timeout = 30
//!   console = "both"
//!   disk = ["path=rootfs.ext4", "path=/dev/sdb,passthrough"]
//!   net = ["tap=tap0,mac=52:54:00:12:34:56"]
//!   ```
//!
//! - a Firecracker configuration file (JSON: `boot-source`, `drives`,
//!   `network-interfaces`, `machine-config`), so its users can point flint
//!   at the file they have. Sections flint has no use for are named in a
//!   warning and ignored.
//!
//! A value given on the command line wins over the file's; the file's
//! disks and nets come first on the bus, the command line's after them.
//! Relative paths in the file are relative to the file's directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::devices::{Access, CacheMode, ConsoleMode, DiskConfig, DiskMode, NetConfig};

/// Why a configuration file cannot be used; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It cannot be read.
    #[error("--config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not valid TOML / JSON of the expected shape (the message
    /// names the key and line).
    #[error("--config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A value is not acceptable (a bad disk spec, a MAC, ...).
    #[error("--config {path}: {key}: {message}")]
    Value {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The VM a file describes; `None` / empty where it says nothing.
#[derive(Debug, Default, PartialEq)]
pub struct VmFile {
    /// Guest kernel.
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// One-shot root image (`--rootfs`).
    pub rootfs: Option<PathBuf>,
    /// Command line (appended to flint's defaults).
    pub cmdline: Option<String>,
    /// Guest RAM in MiB.
    pub mem: Option<u64>,
    /// vCPUs.
    pub vcpus: Option<u16>,
    /// Seconds before the guest is stopped.
    pub timeout: Option<f64>,
    /// Consoles.
    pub console: Option<ConsoleMode>,
    /// Disks, in bus order.
    pub disks: Vec<DiskConfig>,
    /// Network interfaces, in bus order.
    pub nets: Vec<NetConfig>,
    /// Firecracker sections flint ignored.
    pub ignored: Vec<String>,
}

/// flint's TOML format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Toml {
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    rootfs: Option<PathBuf>,
    cmdline: Option<String>,
    mem: Option<u64>,
    vcpus: Option<u16>,
    timeout: Option<f64>,
    console: Option<String>,
    #[serde(default)]
    disk: Vec<String>,
    #[serde(default)]
    net: Vec<String>,
}

/// Reads `path`: Firecracker JSON if it starts with `{`, flint TOML otherwise.
pub fn load(path: &Path) -> Result<VmFile, FileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: name.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    if text.trim_start().starts_with('{') {
        firecracker(&text, base).map_err(|e| e.named(&name))
    } else {
        flint_toml(&text, base).map_err(|e| e.named(&name))
    }
}

/// An error before the file's name is known.
enum Problem {
    Parse(String),
    Value(String, String),
}

impl Problem {
    fn named(self, path: &str) -> FileError {
        match self {
            Problem::Parse(message) => FileError::Parse {
                path: path.to_string(),
                message,
            },
            Problem::Value(key, message) => FileError::Value {
                path: path.to_string(),
                key,
                message,
            },
        }
    }
}

fn relative(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_relative() {
        base.join(p)
    } else {
        p
    }
}

fn flint_toml(text: &str, base: &Path) -> Result<VmFile, Problem> {
    let t: Toml = toml::from_str(text).map_err(|e| Problem::Parse(e.to_string()))?;
    let value = |key: &str, e: String| Problem::Value(key.to_string(), e);
    let mut disks = Vec::new();
    for spec in &t.disk {
        let mut d: DiskConfig = spec.parse().map_err(|e| value("disk", e))?;
        d.path = relative(base, d.path);
        disks.push(d);
    }
    let nets = t
        .net
        .iter()
        .map(|spec| spec.parse().map_err(|e| value("net", e)))
        .collect::<Result<_, _>>()?;
    let console = t
        .console
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| value("console", e))?;
    Ok(VmFile {
        kernel: t.kernel.map(|p| relative(base, p)),
        initrd: t.initrd.map(|p| relative(base, p)),
        rootfs: t.rootfs.map(|p| relative(base, p)),
        cmdline: t.cmdline,
        mem: t.mem,
        vcpus: t.vcpus,
        timeout: t.timeout,
        console,
        disks,
        nets,
        ignored: Vec::new(),
    })
}

// Firecracker's format (its JSON keys, as in its API's swagger file).

#[derive(Deserialize)]
struct FcBootSource {
    kernel_image_path: PathBuf,
    boot_args: Option<String>,
    initrd_path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct FcDrive {
    drive_id: String,
    path_on_host: Option<PathBuf>,
    #[serde(default)]
    is_root_device: bool,
    #[serde(default)]
    is_read_only: bool,
    cache_type: Option<String>,
}

#[derive(Deserialize)]
struct FcNet {
    iface_id: String,
    host_dev_name: String,
    guest_mac: Option<String>,
}

#[derive(Deserialize)]
struct FcMachine {
    vcpu_count: u16,
    mem_size_mib: u64,
}

#[derive(Deserialize)]
struct Firecracker {
    #[serde(rename = "boot-source")]
    boot_source: FcBootSource,
    #[serde(default)]
    drives: Vec<FcDrive>,
    #[serde(rename = "network-interfaces", default)]
    network_interfaces: Vec<FcNet>,
    #[serde(rename = "machine-config")]
    machine_config: Option<FcMachine>,
    #[serde(flatten)]
    rest: std::collections::BTreeMap<String, serde_json::Value>,
}

fn firecracker(text: &str, base: &Path) -> Result<VmFile, Problem> {
    let fc: Firecracker = serde_json::from_str(text).map_err(|e| Problem::Parse(e.to_string()))?;
    let mut cmdline = fc.boot_source.boot_args.unwrap_or_default();
    // Firecracker puts the root device first and names it on the command line.
    let mut drives = fc.drives;
    drives.sort_by_key(|d| !d.is_root_device);
    let mut disks = Vec::new();
    for d in drives {
        let key = format!("drives[{}]", d.drive_id);
        let path = d
            .path_on_host
            .ok_or_else(|| Problem::Value(key.clone(), "path_on_host is missing".into()))?;
        if d.is_root_device && !cmdline.split(' ').any(|w| w.starts_with("root=")) {
            let mode = if d.is_read_only { "ro" } else { "rw" };
            cmdline = format!("{cmdline} root=/dev/vda {mode}").trim().to_string();
        }
        if d.cache_type
            .as_deref()
            .is_some_and(|c| c != "Unsafe" && c != "Writeback")
        {
            return Err(Problem::Value(
                key,
                "cache_type must be Unsafe or Writeback".into(),
            ));
        }
        disks.push(DiskConfig {
            path: relative(base, path),
            access: if d.is_read_only {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            },
            id: Some(d.drive_id.chars().take(20).collect()),
            cache: CacheMode::Writeback,
            mode: DiskMode::Emulated,
        });
    }
    let mut nets = Vec::new();
    for n in fc.network_interfaces {
        let spec = match &n.guest_mac {
            Some(mac) => format!("tap={},mac={mac}", n.host_dev_name),
            None => format!("tap={}", n.host_dev_name),
        };
        let key = format!("network-interfaces[{}]", n.iface_id);
        nets.push(spec.parse().map_err(|e| Problem::Value(key, e))?);
    }
    let machine = fc.machine_config;
    Ok(VmFile {
        kernel: Some(relative(base, fc.boot_source.kernel_image_path)),
        initrd: fc.boot_source.initrd_path.map(|p| relative(base, p)),
        rootfs: None,
        cmdline: (!cmdline.is_empty()).then_some(cmdline),
        mem: machine.as_ref().map(|m| m.mem_size_mib),
        vcpus: machine.as_ref().map(|m| m.vcpu_count),
        timeout: None,
        console: None,
        disks,
        nets,
        ignored: fc.rest.into_keys().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<VmFile, Problem> {
        flint_toml(text, Path::new("/cfg"))
    }

    fn message(p: Problem) -> String {
        p.named("vm.toml").to_string()
    }

    #[test]
    fn toml_takes_the_run_options_by_name_with_paths_relative_to_the_file() {
        let f = toml(
            "kernel = \"vmlinux\"\nmem = 256\nvcpus = 2\ntimeout = 1.5\nconsole = \"serial\"\n\
             cmdline = \"quiet\"\ndisk = [\"path=root.img,ro\", \"path=/dev/sdb,passthrough\"]\n\
             net = [\"tap=tap0\"]\n",
        )
        .ok()
        .unwrap();
        assert_eq!(f.kernel, Some(PathBuf::from("/cfg/vmlinux")));
        assert_eq!((f.mem, f.vcpus, f.timeout), (Some(256), Some(2), Some(1.5)));
        assert_eq!(f.console, Some(ConsoleMode::Serial));
        assert_eq!(f.disks[0].path, PathBuf::from("/cfg/root.img"));
        assert_eq!(f.disks[0].access, Access::ReadOnly);
        assert!(matches!(f.disks[1].mode, DiskMode::Passthrough(_)));
        assert_eq!(f.nets[0].tap, "tap0");
    }

    #[test]
    fn toml_rootfs_is_relative_to_the_file() {
        let f = toml("kernel = \"vmlinux\"\nrootfs = \"images/rootfs.ext4\"\n")
            .ok()
            .unwrap();
        assert_eq!(f.rootfs, Some(PathBuf::from("/cfg/images/rootfs.ext4")));
        assert_eq!(f.initrd, None);
    }

    #[test]
    fn toml_mistakes_name_the_key() {
        let unknown = message(toml("memory = 5\n").err().unwrap());
        assert!(unknown.contains("memory"), "{unknown}");
        let disk = message(toml("disk = [\"ro\"]\n").err().unwrap());
        assert!(disk.contains("disk: missing path="), "{disk}");
        let console = message(toml("console = \"tty\"\n").err().unwrap());
        assert!(console.contains("console"), "{console}");
    }

    #[test]
    fn a_firecracker_file_maps_to_the_same_vm() {
        let f = firecracker(
            r#"{
              "boot-source": {"kernel_image_path": "vmlinux.bin", "boot_args": "console=ttyS0"},
              "drives": [
                {"drive_id": "data", "path_on_host": "data.ext4", "is_root_device": false, "is_read_only": true},
                {"drive_id": "rootfs", "path_on_host": "/img/rootfs.ext4", "is_root_device": true, "is_read_only": false}
              ],
              "network-interfaces": [{"iface_id": "eth0", "guest_mac": "06:00:ac:10:00:02", "host_dev_name": "tap0"}],
              "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false},
              "logger": {"log_path": "/tmp/fc.log"}
            }"#,
            Path::new("/cfg"),
        )
        .ok()
        .unwrap();
        assert_eq!(f.kernel, Some(PathBuf::from("/cfg/vmlinux.bin")));
        assert_eq!(f.cmdline.as_deref(), Some("console=ttyS0 root=/dev/vda rw"));
        assert_eq!(f.disks[0].path, PathBuf::from("/img/rootfs.ext4"));
        assert_eq!(f.disks[1].access, Access::ReadOnly);
        assert_eq!(f.disks[1].id.as_deref(), Some("data"));
        assert_eq!(f.nets[0].mac, Some([6, 0, 0xac, 0x10, 0, 2]));
        assert_eq!((f.mem, f.vcpus), (Some(1024), Some(2)));
        assert_eq!(f.ignored, vec!["logger".to_string()]);
    }

    #[test]
    fn a_firecracker_file_without_boot_source_is_refused_by_name() {
        let e = message(
            firecracker("{\"drives\": []}", Path::new("/"))
                .err()
                .unwrap(),
        );
        assert!(e.contains("boot-source"), "{e}");
    }
}
