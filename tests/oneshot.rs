//! One-shot guests (README "One-shot guests"): `flint run --kernel K --initrd I -- CMD ARGS`
//! boots flint's minimal kernel (images/linux/build-kernel.sh) with the flint-init initramfs
//! (images/build-initramfs.sh), runs the command and exits with its status. Checked end to end:
//! the exit code, argv/env/workdir byte for byte, a --share directory, stdout and stderr kept
//! apart, stdin from a pipe and from a file, a kernel panic (123), --timeout, and the option
//! errors; then the same kernel from the ext4 root image (`--rootfs`, images/build-rootfs.sh),
//! and Debian's stock kernel with its virtio modules in the initramfs (hosts with VT-x/AMD-V
//! only: where the guest kernel is emulated the stock kernel cannot make a system call), and a
//! Debian minbase root image whose only addition is flint-init (images/build-debian-rootfs.sh).
//!
//! tests/run builds the images (cached) and passes their paths in FLINT_ONESHOT_KERNEL,
//! FLINT_ONESHOT_INITRD, FLINT_ONESHOT_ROOTFS, FLINT_DEBIAN_ROOTFS, FLINT_STOCK_KERNEL and
//! FLINT_STOCK_INITRD.
//! Where the guest kernel is emulated (nested PVM) a boot takes ~30 s; with VT-x/AMD-V,
//! boot-complete must come within 2 s.

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use common::*;

/// The paths tests/run passes in `vars`, or None (said on stderr, naming `scripts`, which
/// build them) when any is unset.
fn built<const N: usize>(vars: [&str; N], scripts: &str) -> Option<[String; N]> {
    let paths = vars.map(|v| std::env::var(v).ok().filter(|p| !p.is_empty()));
    if paths.iter().any(Option::is_none) {
        skip(&format!(
            "{} not set: run {scripts} (tests/run does)",
            vars.join(" / ")
        ));
        return None;
    }
    Some(paths.map(Option::unwrap_or_default))
}

/// flint's kernel and the flint-init initramfs.
fn images() -> Option<(String, String)> {
    let [kernel, initrd] = built(
        ["FLINT_ONESHOT_KERNEL", "FLINT_ONESHOT_INITRD"],
        "images/linux/build-kernel.sh and images/build-initramfs.sh",
    )?;
    Some((kernel, initrd))
}

struct Output {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// `flint run --kernel --initrd --timeout 480 --mem 256 EXTRA... -- ARGV...`, with `stdin`
/// written to flint's stdin (a pipe) or `file` as its stdin.
fn oneshot(extra: &[&OsStr], argv: &[&OsStr], stdin: Stdin) -> Output {
    let (kernel, initrd) = images().expect("images");
    let images = ["--kernel", &kernel, "--initrd", &initrd];
    run_oneshot(&images, extra, argv, stdin, None)
}

/// `flint run IMAGES... --timeout 480 --mem 256 EXTRA... -- ARGV...`, started in `cwd`.
fn run_oneshot(
    images: &[&str],
    extra: &[&OsStr],
    argv: &[&OsStr],
    stdin: Stdin,
    cwd: Option<&std::path::Path>,
) -> Output {
    let mut cmd = Command::new(flint_bin());
    cmd.arg("run").args(images).args(["--mem", "256"]);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if !extra.contains(&OsStr::new("--timeout")) {
        cmd.args(["--timeout", "480"]);
    }
    cmd.args(extra).arg("--").args(argv);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = match &stdin {
        Stdin::Null => cmd.stdin(Stdio::null()).spawn(),
        Stdin::Pipe(_) => cmd.stdin(Stdio::piped()).spawn(),
        Stdin::File(path) => cmd.stdin(std::fs::File::open(path).unwrap()).spawn(),
    };
    let mut child = child.expect("spawn flint");
    if let Stdin::Pipe(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out = child.wait_with_output().expect("wait for flint");
    Output {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

enum Stdin {
    Null,
    Pipe(Vec<u8>),
    File(std::path::PathBuf),
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.code,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn command_gets_argv_env_workdir_byte_exact_and_its_exit_code_is_flints() {
    if images().is_none() {
        return;
    }
    require_kvm();
    let args: [&[u8]; 6] = [
        b"two words",
        b"quotes ' \" `and` $HOME \\",
        b"new\nline",
        "non-ASCII: é ü 🦀".as_bytes(),
        b"",
        b"\xff\xfe not UTF-8",
    ];
    let script = OsStr::new(
        "for a in \"$@\"; do printf '%s\\0' \"$a\"; done; printf '%s\\0' \"$WEIRD\" \"$PLAIN\"; \
         pwd; cat /data/hello.txt; echo to-stderr >&2; exit 7",
    );
    let mut argv: Vec<&OsStr> = vec![OsStr::new("sh"), OsStr::new("-c"), script, OsStr::new("sh")];
    argv.extend(args.iter().map(|a| OsStr::from_bytes(a)));
    let dir = scratch("oneshot-argv");
    let report = dir.join("report.json");
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("hello.txt"), "from the host\n").unwrap();
    let share = format!("{}:/data", shared.display());
    let extra: Vec<&OsStr> = vec![
        OsStr::new("--env"),
        OsStr::from_bytes(b"WEIRD=a=b c\n\"d\" \xc3\xa9"),
        OsStr::new("--env"),
        OsStr::new("PLAIN=x"),
        OsStr::new("--workdir"),
        OsStr::new("/sys/kernel"),
        OsStr::new("--boot-report"),
        report.as_os_str(),
        OsStr::new("--share"),
        OsStr::new(&share),
    ];
    let o = oneshot(&extra, &argv, Stdin::Null);
    assert_eq!(o.code, Some(7), "{}", show(&o));
    let mut want = Vec::new();
    for a in args {
        want.extend_from_slice(a);
        want.push(0);
    }
    want.extend_from_slice(b"a=b c\n\"d\" \xc3\xa9\0x\0/sys/kernel\nfrom the host\n");
    assert_eq!(o.stdout, want, "{}", show(&o));
    assert_eq!(o.stderr, b"to-stderr\n", "{}", show(&o));
    if hardware_virtualization() {
        let json = std::fs::read_to_string(&report).unwrap();
        let since = &json[json.find("since_main_us").expect("since_main_us")..];
        let us = json_u64(since, "boot_complete");
        assert!(us < 2_000_000, "boot-complete after {us} µs:\n{json}");
    }
}

#[test]
fn piped_stdin_reaches_the_command_and_ends_with_eof() {
    if images().is_none() {
        return;
    }
    require_kvm();
    let o = oneshot(&[], &[OsStr::new("cat")], Stdin::Pipe(b"hi\n".to_vec()));
    assert_eq!(o.code, Some(0), "{}", show(&o));
    assert_eq!(o.stdout, b"hi\n", "{}", show(&o));
}

#[test]
fn binary_stdin_from_a_file_passes_byte_exact() {
    if images().is_none() {
        return;
    }
    require_kvm();
    let data = pseudo_random(100 * 1024, 42);
    let file = scratch("oneshot-stdin").join("input.bin");
    std::fs::write(&file, &data).unwrap();
    let o = oneshot(
        &[],
        &[
            OsStr::new("sh"),
            OsStr::new("-c"),
            OsStr::new("cat; echo done >&2"),
        ],
        Stdin::File(file),
    );
    assert_eq!(o.code, Some(0), "{}", show(&o));
    assert_eq!(o.stderr, b"done\n", "{}", show(&o));
    assert!(
        o.stdout == data,
        "stdout differs: {} bytes back",
        o.stdout.len()
    );
}

#[test]
fn kernel_panic_exits_123() {
    let Some((kernel, _)) = images() else {
        return;
    };
    require_kvm();
    // No cpio archive the kernel can use before flint's: no /init, no root, a panic.
    let junk = scratch("oneshot-panic").join("junk.img");
    std::fs::write(&junk, pseudo_random(4096, 7)).unwrap();
    let junk = junk.display().to_string();
    let out = flint_run(&[
        "--kernel",
        &kernel,
        "--initrd",
        &junk,
        "--timeout",
        "480",
        "--",
        "true",
    ]);
    assert_eq!(out.code, Some(123), "{out}");
    assert!(out.stderr.contains("kernel panicked"), "{out}");
}

#[test]
fn timeout_exits_124() {
    if images().is_none() {
        return;
    }
    require_kvm();
    let extra = [OsStr::new("--timeout"), OsStr::new("0.5")];
    let o = oneshot(
        &extra,
        &[OsStr::new("sleep"), OsStr::new("600")],
        Stdin::Null,
    );
    assert_eq!(o.code, Some(124), "{}", show(&o));
}

#[test]
fn a_root_image_boots_under_a_ram_overlay_and_is_never_written() {
    let Some((kernel, _)) = images() else {
        return;
    };
    let Some([rootfs]) = built(["FLINT_ONESHOT_ROOTFS"], "images/build-rootfs.sh") else {
        return;
    };
    require_kvm();
    let before = std::fs::read(&rootfs).unwrap();
    // Used as a test runner would use it: flint started in a shared directory runs a program
    // from it by its host path, in the same directory.
    let dir = scratch("oneshot-rootfs");
    std::fs::write(dir.join("hello.txt"), "shared\n").unwrap();
    // Writes a new file, deletes an image file (a whiteout) and replaces an image directory
    // by an empty one (an opaque directory, which needs xattrs on the tmpfs upper layer).
    let script = dir.join("run.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '%s|' \"$1\"; pwd; cat hello.txt; echo new > /etc/new && cat /etc/new\n\
         rm /bin/true && test ! -e /bin/true && echo whiteout\n\
         rm -r /usr && mkdir /usr && test ! -e /usr/bin && echo opaque\n\
         read line; echo \"stdin: $line\"; exit 9\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let argv = [script.as_os_str(), OsStr::from_bytes(b"a b\n\xc3\xa9")];
    let extra = [OsStr::new("--share"), OsStr::new(".")];
    let o = run_oneshot(
        &["--kernel", &kernel, "--rootfs", &rootfs],
        &extra,
        &argv,
        Stdin::Pipe(b"typed\n".to_vec()),
        Some(&dir),
    );
    assert_eq!(o.code, Some(9), "{}", show(&o));
    let mut want = b"a b\n\xc3\xa9|".to_vec();
    want.extend_from_slice(dir.canonicalize().unwrap().as_os_str().as_bytes());
    want.extend_from_slice(b"\nshared\nnew\nwhiteout\nopaque\nstdin: typed\n");
    assert_eq!(o.stdout, want, "{}", show(&o));
    assert!(
        std::fs::read(&rootfs).unwrap() == before,
        "{rootfs} changed on the host"
    );
}

#[test]
fn debian_stock_kernel_runs_a_command_with_its_virtio_modules_from_the_initramfs() {
    let Some([kernel, initrd]) = built(
        ["FLINT_STOCK_KERNEL", "FLINT_STOCK_INITRD"],
        "images/linux/fetch-debian-kernel.sh and images/build-initramfs.sh --modules",
    ) else {
        return;
    };
    check_stock_modules(&initrd);
    if !hardware_virtualization() {
        skip(
            "no vmx/svm in /proc/cpuinfo: where the guest kernel is emulated, Debian's \
             stock kernel stops at its first system call (images/README.md, patch 0002); \
             checked its initramfs's modules only",
        );
        return;
    }
    require_kvm();
    let argv = [
        OsStr::new("sh"),
        OsStr::new("-c"),
        OsStr::new("echo $((6 * 7)); ls /sys/bus/virtio/drivers; exit 3"),
    ];
    let o = run_oneshot(
        &["--kernel", &kernel, "--initrd", &initrd],
        &[],
        &argv,
        Stdin::Null,
        None,
    );
    assert_eq!(o.code, Some(3), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("42\n"), "{}", show(&o));
    for driver in ["virtio_blk", "virtio_console", "virtio_net"] {
        assert!(out.contains(driver), "{driver} not loaded:\n{}", show(&o));
    }
}

#[test]
fn a_debian_root_image_runs_its_own_userland_with_flint_init_as_its_only_addition() {
    let Some((kernel, _)) = images() else {
        return;
    };
    let Some([rootfs]) = built(["FLINT_DEBIAN_ROOTFS"], "images/build-debian-rootfs.sh") else {
        return;
    };
    require_kvm();
    // Debian's dash, dpkg-query and coreutils: dynamically linked against the image's glibc.
    let script = OsStr::new(
        ". /etc/os-release; echo \"$ID\"; dpkg-query -W -f='${Package}\\n' libc6 coreutils; \
         echo written > /var/tmp/x && cat /var/tmp/x; exit 4",
    );
    let argv = [OsStr::new("sh"), OsStr::new("-c"), script];
    let o = run_oneshot(
        &["--kernel", &kernel, "--rootfs", &rootfs],
        &[],
        &argv,
        Stdin::Null,
        None,
    );
    assert_eq!(o.code, Some(4), "{}", show(&o));
    assert_eq!(
        o.stdout,
        b"debian\ncoreutils\nlibc6\nwritten\n",
        "{}",
        show(&o)
    );
}

/// What can be checked of the stock-kernel initramfs on any host: it holds the virtio modules
/// flint's bus needs, listed in `load-order` after what each depends on, and no PCI transport.
fn check_stock_modules(initrd: &str) {
    let cpio = |args: &[&str]| {
        let out = Command::new("cpio")
            .args(args)
            .stdin(std::fs::File::open(initrd).expect("the stock initramfs"))
            .output()
            .expect("run cpio");
        assert!(out.status.success(), "cpio {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    };
    let order = cpio(&["-i", "--quiet", "--to-stdout", "lib/modules/load-order"]);
    let listed = cpio(&["-it", "--quiet"]);
    let at = |m: &str| {
        assert!(
            listed.lines().any(|l| l == format!("lib/modules/{m}")),
            "{m} not packed"
        );
        order
            .lines()
            .position(|l| l == m)
            .unwrap_or_else(|| panic!("{m} not in load-order:\n{order}"))
    };
    let chain = ["virtio_ring.ko", "virtio.ko", "virtio_mmio.ko"];
    for pair in chain.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{pair:?} out of order:\n{order}");
    }
    for device in ["virtio_blk.ko", "virtio_console.ko", "virtio_net.ko"] {
        assert!(
            at("virtio.ko") < at(device),
            "{device} before virtio.ko:\n{order}"
        );
    }
    assert!(
        at("failover.ko") < at("net_failover.ko") && at("net_failover.ko") < at("virtio_net.ko")
    );
    assert!(
        !order.contains("virtio_pci"),
        "a PCI transport is packed:\n{order}"
    );
}

#[test]
fn bench_times_a_one_shot_linux_boot_to_its_marker_and_the_commands_exit() {
    let Some((kernel, initrd)) = images() else {
        return;
    };
    require_kvm();
    let json = scratch("oneshot-bench").join("b.json");
    let out = Command::new(flint_bin())
        .args([
            "bench", "--kernel", &kernel, "--initrd", &initrd, "--mem", "256",
        ])
        .args([
            "--runs",
            "1",
            "--warmup",
            "0",
            "--qemu",
            "none",
            "--workload",
            "0",
        ])
        .args(["--console-kib", "0", "--blk-mib", "0", "--net-flood", "0"])
        .args(["--clock-seconds", "0", "--json"])
        .arg(&json)
        .args(["--", "sh", "-c", "exit 0"])
        .output()
        .expect("run flint bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = vmm::bench::json::Json::parse(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let meta = doc.get("metadata").expect("metadata");
    assert_eq!(
        meta.get("failures").and_then(|f| f.as_f64()),
        Some(0.0),
        "{text}"
    );
    for phase in ["kernel_boot", "guest_run"] {
        let samples = doc
            .get("phases")
            .and_then(|p| p.get(phase))
            .and_then(|p| p.get("samples"))
            .map(vmm::bench::json::Json::numbers)
            .unwrap_or_default();
        assert_eq!(samples.len(), 1, "{phase}: {text}");
        assert!(samples[0] > 0.0, "{phase}: {text}");
    }
}

#[test]
fn command_without_images_or_options_without_command_are_errors() {
    let out = flint_run(&["--", "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("--kernel and either --initrd"), "{out}");
    let out = flint_run(&[
        "--kernel", "k", "--initrd", "i", "--rootfs", "r", "--", "true",
    ]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("--rootfs and --initrd: give one"),
        "{out}"
    );
    let out = flint_run(&[
        "--kernel",
        "k",
        "--rootfs",
        "/nonexistent/r.ext4",
        "--",
        "true",
    ]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("--rootfs /nonexistent/r.ext4: "),
        "{out}"
    );
    let out = flint_run(&["--rootfs", "r.ext4"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("--rootfs needs a command"), "{out}");
    let out = flint_run(&["--env", "A=1"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("--env needs a command"), "{out}");
    let out = flint_run(&["--kernel", "k", "--initrd", "i", "--env", "A", "--", "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("expected KEY=VALUE"), "{out}");
}
