//! Launching the contestants of `flint bench`: the command lines that boot
//! one guest with flint, QEMU microvm, Firecracker or the raw-KVM floor,
//! and one measured run — spawn, reap with wait4 (peak RSS), read flint's
//! boot report.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::args::GuestSpec;
use super::json::Json;
use super::phases::RunSample;

/// Why a contestant cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A peer binary that is not there.
    #[error("{what} {path}: no such executable file ({hint})")]
    MissingBinary {
        /// Which option named it.
        what: &'static str,
        /// The path tried.
        path: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// A temporary file could not be written.
    #[error("cannot write {0}")]
    TempFile(String, #[source] std::io::Error),
}

/// One kind of process the benchmark launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    /// flint itself.
    Flint,
    /// Another flint binary, the baseline of `--compare-binary`.
    FlintBaseline,
    /// QEMU `-M microvm`.
    Qemu,
    /// Firecracker.
    Firecracker,
    /// The raw-KVM floor program.
    Floor,
}

impl Monitor {
    /// What the tables call it.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Flint => "flint",
            Monitor::FlintBaseline => "flint (baseline)",
            Monitor::Qemu => "qemu microvm",
            Monitor::Firecracker => "firecracker",
            Monitor::Floor => "floor (raw KVM)",
        }
    }
}

/// A monitor booting a guest, and what its runs measured.
pub struct Contestant {
    /// Which monitor.
    pub monitor: Monitor,
    /// Which guest (a short name).
    pub guest: String,
    /// The command line.
    pub cmd: Vec<OsString>,
    /// Exit codes that count as a clean run.
    pub ok_codes: &'static [i32],
    /// flint's boot report, read after each run.
    pub report: Option<PathBuf>,
    /// The measured runs.
    pub runs: Vec<RunSample>,
    /// Runs that did not start or ended with another code.
    pub failures: usize,
}

impl Contestant {
    /// A contestant with no runs yet.
    pub fn new(monitor: Monitor, guest: &str, cmd: Vec<OsString>, ok: &'static [i32]) -> Self {
        Contestant {
            monitor,
            guest: guest.to_string(),
            cmd,
            ok_codes: ok,
            report: None,
            runs: Vec::new(),
            failures: 0,
        }
    }
}

/// Whether a run counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A warm-up run: checked, not kept.
    Warmup,
    /// A measured run.
    Keep,
}

/// `warmup` unmeasured and `runs` measured rounds, every contestant once
/// a round: A B, then B A, so each runs as often first as last and what
/// one run leaves behind (the previous VM's teardown still running) does
/// not always land on the same contestant.
pub fn rounds(cs: &mut [Contestant], warmup: u64, runs: u64) {
    for round in 0..warmup + runs {
        let record = if round < warmup {
            Record::Warmup
        } else {
            Record::Keep
        };
        let order: Vec<usize> = match round % 2 {
            0 => (0..cs.len()).collect(),
            _ => (0..cs.len()).rev().collect(),
        };
        for i in order {
            measure(&mut cs[i], record);
        }
    }
}

/// Run `c` once; on success with [`Record::Keep`], keep what it measured.
pub fn measure(c: &mut Contestant, record: Record) {
    if let Some(r) = &c.report {
        let _ = std::fs::remove_file(r);
    }
    let spawn_ns = crate::time::monotonic_ns();
    let Ok(child) = spawn_quiet(&c.cmd) else {
        c.failures += 1;
        return;
    };
    let (status, rss) = wait_with_rusage(child.id() as libc::pid_t);
    let wall_us = (crate::time::monotonic_ns() - spawn_ns) as f64 / 1e3;
    let ok = status.is_some_and(|s| c.ok_codes.contains(&s));
    if !ok {
        c.failures += 1;
        return;
    }
    if record == Record::Warmup {
        return;
    }
    let mut sample = RunSample::external(wall_us, rss as f64);
    let report = c
        .report
        .as_ref()
        .and_then(|r| std::fs::read_to_string(r).ok());
    if let Some(json) = report.and_then(|text| Json::parse(&text).ok()) {
        sample.add_report(&json, spawn_ns);
    }
    c.runs.push(sample);
}

/// Spawn `cmd` with stdin, stdout and stderr on /dev/null.
pub fn spawn_quiet(cmd: &[OsString]) -> std::io::Result<std::process::Child> {
    Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Reap `pid`, returning its exit code and peak RSS (KiB) from wait4.
pub fn wait_with_rusage(pid: libc::pid_t) -> (Option<i32>, i64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child; `status` and `usage` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return (None, 0);
    }
    (
        std::process::ExitStatus::from_raw(status).code(),
        usage.ru_maxrss,
    )
}

/// `flint run` booting `g`, with the boot report to `report` if given.
pub fn flint_cmd(
    g: &GuestSpec,
    report: Option<&Path>,
    debug_delay_ms: u64,
) -> Result<Vec<OsString>, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find flint's own binary: {e}"))?;
    Ok(flint_binary_cmd(&me, g, report, debug_delay_ms))
}

/// `flint run` of the binary `flint`, as [`flint_cmd`].
pub fn flint_binary_cmd(
    me: &Path,
    g: &GuestSpec,
    report: Option<&Path>,
    debug_delay_ms: u64,
) -> Vec<OsString> {
    let mut cmd: Vec<OsString> = vec![
        me.into(),
        "run".into(),
        "--kernel".into(),
        g.kernel.clone().into(),
    ];
    if let Some(i) = &g.initrd {
        cmd.extend(["--initrd".into(), i.into()]);
    }
    if let Some(r) = &g.rootfs {
        cmd.extend(["--rootfs".into(), r.into()]);
    }
    for (opt, val) in [
        ("--cmdline", g.cmdline.clone()),
        ("--mem", g.mem.to_string()),
        ("--vcpus", g.vcpus.to_string()),
    ] {
        cmd.extend([opt.into(), val.into()]);
    }
    if let Some(r) = report {
        cmd.extend(["--boot-report".into(), r.into()]);
    }
    if debug_delay_ms > 0 {
        cmd.extend(["--debug-delay-ms".into(), debug_delay_ms.to_string().into()]);
    }
    if g.is_oneshot() {
        cmd.push("--".into());
        cmd.extend(g.command.iter().cloned());
    }
    cmd
}

/// The QEMU line that boots the probe (or another PVH ELF) with `mem` MiB
/// and no command line; see [`qemu_guest_cmd`].
pub fn qemu_cmd(qemu: &Path, guest: &Path, mem: u64) -> Vec<OsString> {
    qemu_base(qemu, mem, 1, guest)
}

/// The QEMU microvm line that boots `g` as flint does. Plain `-cpu host`
/// aborts on nested PVM hosts reading MSR 0x10a; isa-debug-exit gives
/// status 1 for the probe's 0 write (and a guest reset with -no-reboot, 0).
pub fn qemu_guest_cmd(qemu: &Path, g: &GuestSpec) -> Vec<OsString> {
    let mut cmd = qemu_base(qemu, g.mem, g.vcpus, &g.kernel);
    if let Some(i) = &g.initrd {
        cmd.extend(["-initrd".into(), i.into()]);
    }
    cmd.extend(["-append".into(), g.full_cmdline().into()]);
    cmd
}

fn qemu_base(qemu: &Path, mem: u64, vcpus: u16, kernel: &Path) -> Vec<OsString> {
    let mut cmd: Vec<OsString> = vec![qemu.into()];
    for a in [
        "-M",
        "microvm,x-option-roms=off,rtc=off",
        "-enable-kvm",
        "-cpu",
        "host,-arch-capabilities",
        "-m",
        &mem.to_string(),
        "-smp",
        &vcpus.to_string(),
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=1",
        "-kernel",
    ] {
        cmd.push(a.into());
    }
    cmd.push(kernel.into());
    cmd
}

/// Firecracker booting `g` from a JSON config written to `config`
/// (`--no-api --config-file`): boot-source and machine-config, no drives.
pub fn firecracker_cmd(
    fc: &Path,
    g: &GuestSpec,
    config: &Path,
) -> Result<Vec<OsString>, LaunchError> {
    if !is_executable(fc) {
        return Err(LaunchError::MissingBinary {
            what: "--against firecracker=",
            path: fc.display().to_string(),
            hint: "give the path of a Firecracker binary",
        });
    }
    let mut boot = vec![
        (
            "kernel_image_path",
            Json::str(g.kernel.display().to_string()),
        ),
        ("boot_args", Json::str(g.full_cmdline())),
    ];
    if let Some(i) = &g.initrd {
        boot.push(("initrd_path", Json::str(i.display().to_string())));
    }
    let json = Json::obj([
        ("boot-source", Json::obj(boot)),
        (
            "machine-config",
            Json::obj([
                ("vcpu_count", Json::Num(f64::from(g.vcpus))),
                ("mem_size_mib", Json::Num(g.mem as f64)),
            ]),
        ),
        ("drives", Json::Arr(Vec::new())),
    ]);
    std::fs::write(config, json.pretty())
        .map_err(|e| LaunchError::TempFile(config.display().to_string(), e))?;
    Ok(vec![
        fc.into(),
        "--no-api".into(),
        "--config-file".into(),
        config.into(),
    ])
}

/// The QEMU binary `--qemu` names, or the one on PATH; `None` for "none".
pub fn qemu_binary(opt: Option<&str>) -> Option<PathBuf> {
    match opt {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => find_on_path("qemu-system-x86_64"),
    }
}

/// The QEMU binary `--against qemu` needs: an error if there is none.
pub fn require_qemu(opt: Option<&str>) -> Result<PathBuf, LaunchError> {
    let path = qemu_binary(opt).filter(|p| is_executable(p));
    path.ok_or_else(|| LaunchError::MissingBinary {
        what: "--against qemu:",
        path: opt.unwrap_or("qemu-system-x86_64 on PATH").to_string(),
        hint: "install qemu-system-x86 or give --qemu PATH",
    })
}

/// The flint binary `--compare-binary` names: an error if it is not there.
pub fn require_flint(path: &Path) -> Result<(), LaunchError> {
    if is_executable(path) {
        return Ok(());
    }
    Err(LaunchError::MissingBinary {
        what: "--compare-binary",
        path: path.display().to_string(),
        hint: "give the path of another flint build",
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `name` in a directory of PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GuestSpec {
        GuestSpec {
            kernel: "/k/vmlinux".into(),
            kernel_name: "/k/vmlinux".into(),
            initrd: Some("/k/initrd".into()),
            rootfs: None,
            command: Vec::new(),
            cmdline: "quiet".into(),
            mem: 256,
            vcpus: 2,
        }
    }

    fn text(cmd: &[OsString]) -> String {
        let parts: Vec<String> = cmd
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        parts.join(" ")
    }

    #[test]
    fn qemu_gets_the_same_guest_as_flint() {
        let cmd = text(&qemu_guest_cmd(Path::new("/q"), &spec()));
        assert!(cmd.contains("-cpu host,-arch-capabilities"), "{cmd}");
        assert!(cmd.contains("-m 256 -smp 2"), "{cmd}");
        assert!(
            cmd.contains("-kernel /k/vmlinux -initrd /k/initrd -append"),
            "{cmd}"
        );
        assert!(
            cmd.ends_with(&format!("{} quiet", crate::cli::default_cmdline())),
            "{cmd}"
        );
    }

    #[test]
    fn flint_gets_every_run_option() {
        let cmd = text(&flint_cmd(&spec(), Some(Path::new("/r.json")), 20).unwrap());
        assert!(
            cmd.ends_with("run --kernel /k/vmlinux --initrd /k/initrd --cmdline quiet --mem 256 --vcpus 2 --boot-report /r.json --debug-delay-ms 20"),
            "{cmd}"
        );
    }

    #[test]
    fn a_one_shot_guest_gets_its_root_image_and_command_last() {
        let g = GuestSpec {
            initrd: None,
            rootfs: Some("/k/rootfs.ext4".into()),
            command: vec!["sh".into(), "-c".into(), "exit 0".into()],
            ..spec()
        };
        let cmd = text(&flint_cmd(&g, None, 0).unwrap());
        assert!(
            cmd.ends_with("run --kernel /k/vmlinux --rootfs /k/rootfs.ext4 --cmdline quiet --mem 256 --vcpus 2 -- sh -c exit 0"),
            "{cmd}"
        );
    }

    #[test]
    fn a_missing_firecracker_is_named_and_its_config_is_json() {
        let dir = std::env::temp_dir().join(format!("flint-fc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("fc.json");
        let err =
            firecracker_cmd(Path::new("/nonexistent/firecracker"), &spec(), &config).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/firecracker: no such executable"),
            "{err}"
        );
        let cmd = firecracker_cmd(Path::new("/bin/true"), &spec(), &config).unwrap();
        assert_eq!(
            text(&cmd[1..]),
            format!("--no-api --config-file {}", config.display())
        );
        let json = Json::parse(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let mc = json.get("machine-config").unwrap();
        assert_eq!(mc.get("mem_size_mib").and_then(Json::as_f64), Some(256.0));
        let boot = json.get("boot-source").unwrap();
        assert_eq!(
            boot.get("initrd_path").and_then(Json::as_str),
            Some("/k/initrd")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
