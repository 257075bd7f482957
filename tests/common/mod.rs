//! Shared helpers for the integration tests: run the `flint` binary with a
//! safety timeout, capture its output, parse the probe's report lines.
#![allow(dead_code)]

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `flint` binary built by this test run.
pub fn flint_bin() -> &'static str {
    env!("CARGO_BIN_EXE_flint")
}

/// The probe ELF embedded in flint (built by vmm/build.rs).
pub fn probe_elf() -> &'static [u8] {
    include_bytes!(env!("FLINT_PROBE_ELF"))
}

/// Every machine that runs these tests has KVM; a missing /dev/kvm is a
/// broken machine, not a reason to skip.
pub fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: flint's integration tests boot real guests and need KVM"
    );
}

/// Whether guest kernels run on VT-x/AMD-V here (vmx or svm in /proc/cpuinfo); without, this
/// project's hosts emulate guest kernel mode (nested KVM through PVM).
pub fn hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.split_whitespace().any(|w| w == "vmx" || w == "svm"))
        .unwrap_or(false)
}

/// Say why a test skipped a check, on the process's stderr itself: the test harness captures
/// `eprintln!` of passing tests, and a skip nobody sees reads like a pass.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// What a flint run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    /// Lines the probe printed that start with `probe: <key>`.
    pub fn probe_lines(&self, key: &str) -> Vec<&str> {
        let prefix = format!("probe: {key}");
        self.stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .collect()
    }

    /// The single probe line starting with `probe: <key>`.
    pub fn probe_line(&self, key: &str) -> &str {
        let lines = self.probe_lines(key);
        assert_eq!(lines.len(), 1, "expected one 'probe: {key}' line\n{self}");
        lines[0]
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `flint run ARGS...` with stdin closed; flint's own `--timeout 60`
/// keeps a broken guest from hanging the suite (tests may pass their own).
pub fn flint_run(args: &[&str]) -> Outcome {
    let mut cmd = Command::new(flint_bin());
    cmd.arg("run");
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", "60"]);
    }
    cmd.args(args);
    run(cmd)
}

/// Run a prepared command, capturing its output.
pub fn run(mut cmd: Command) -> Outcome {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn flint");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flint-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// FNV-1a 64, the hash the probe prints for the initrd.
pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Deterministic pseudo-random bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The first number after `"key":` in a flat JSON text (the boot report).
pub fn json_u64(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing from {json}"))
        + pat.len();
    json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

/// Run `flint run ARGS...`, wait until the guest prints a line starting
/// with `ready`, then type `input` on flint's stdin and close it, as a
/// person at the console would; returns everything flint printed.
pub fn flint_run_typing_after(args: &[&str], ready: &str, input: &[u8]) -> Outcome {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(flint_bin())
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flint");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read flint's stdout");
        seen.push_str(&line);
        assert!(n > 0, "flint ended before {ready:?}:\n{seen}");
        if line.starts_with(ready) {
            break;
        }
    }
    stdin.write_all(input).expect("write flint's stdin");
    drop(stdin);
    stdout
        .read_to_string(&mut seen)
        .expect("read flint's stdout");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read flint's stderr");
    Outcome {
        code: child.wait().expect("wait for flint").code(),
        stdout: seen,
        stderr,
    }
}

/// `key=<number>` out of a probe line.
pub fn probe_u64(line: &str, key: &str) -> u64 {
    let pat = format!(" {key}=");
    let at = line
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing from {line:?}"))
        + pat.len();
    line[at..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line:?}: {e}"))
}
