//! Bad input from the user: every case exits 125 with a message on stderr
//! that names the offending file or option, and never panics.

mod common;

use common::*;

fn assert_flint_error(out: &Outcome, needles: &[&str]) {
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.starts_with("flint: error:") || out.stderr.starts_with("error:"),
        "{out}"
    );
    for n in needles {
        assert!(out.stderr.contains(n), "stderr lacks {n:?}\n{out}");
    }
    assert!(!out.stderr.contains("panicked"), "{out}");
}

#[test]
fn missing_kernel_file_is_named() {
    let out = flint_run(&["--kernel", "/nonexistent/vmlinux"]);
    assert_flint_error(&out, &["/nonexistent/vmlinux", "No such file"]);
}

#[test]
fn empty_kernel_file_is_refused() {
    require_kvm();
    let dir = scratch("empty");
    let path = dir.join("empty-kernel");
    std::fs::write(&path, b"").unwrap();
    let out = flint_run(&["--kernel", path.to_str().unwrap()]);
    assert_flint_error(&out, &[path.to_str().unwrap(), "empty"]);
}

#[test]
fn garbage_kernel_file_is_refused() {
    require_kvm();
    let dir = scratch("garbage");
    let path = dir.join("garbage-kernel");
    std::fs::write(&path, pseudo_random(64 * 1024, 3)).unwrap();
    let out = flint_run(&["--kernel", path.to_str().unwrap()]);
    assert_flint_error(&out, &[path.to_str().unwrap(), "not a kernel image"]);
}

#[test]
fn truncated_kernel_file_is_refused() {
    require_kvm();
    let dir = scratch("truncated");
    let elf = probe_elf();
    for len in [16, 100, elf.len() / 2] {
        let path = dir.join(format!("truncated-{len}"));
        std::fs::write(&path, &elf[..len]).unwrap();
        let out = flint_run(&["--kernel", path.to_str().unwrap()]);
        assert_flint_error(&out, &[path.to_str().unwrap()]);
    }
}

#[test]
fn kernel_path_that_is_a_directory_is_refused() {
    require_kvm();
    let out = flint_run(&["--kernel", "/tmp"]);
    assert_flint_error(&out, &["/tmp"]);
}

#[test]
fn initrd_larger_than_ram_is_refused() {
    require_kvm();
    let dir = scratch("big-initrd");
    let path = dir.join("initrd");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(40 << 20).unwrap(); // sparse: costs no disk
    let out = flint_run(&["--mem", "32", "--initrd", path.to_str().unwrap()]);
    assert_flint_error(&out, &["initrd", "does not fit"]);
}

#[test]
fn missing_initrd_is_named() {
    let out = flint_run(&["--initrd", "/nonexistent/initrd.img"]);
    assert_flint_error(&out, &["/nonexistent/initrd.img"]);
}

#[test]
fn zero_or_absurd_memory_is_refused() {
    for mem in ["0", "1", "99999999"] {
        let out = flint_run(&["--mem", mem]);
        assert_flint_error(&out, &[&format!("--mem {mem}")]);
    }
    let out = flint_run(&["--mem", "lots"]);
    assert_flint_error(&out, &["--mem", "lots"]);
}

#[test]
fn too_long_cmdline_is_an_error_not_a_truncation() {
    require_kvm();
    let long = "x".repeat(4096);
    let out = flint_run(&["--cmdline", &long]);
    assert_flint_error(&out, &["command line", "longer than the kernel accepts"]);
}

#[test]
fn missing_kvm_device_is_named() {
    let out = flint_run(&["--kvm-device", "/nonexistent/kvm"]);
    assert_flint_error(&out, &["/nonexistent/kvm"]);
}

#[test]
fn unknown_cpuid_feature_is_named() {
    let out = flint_run(&["--cpuid-mask", "xsave,warpdrive"]);
    assert_flint_error(&out, &["--cpuid-mask", "warpdrive"]);
}

#[test]
fn bad_vcpus_and_timeout_are_named() {
    assert_flint_error(&flint_run(&["--vcpus", "0"]), &["--vcpus 0"]);
    assert_flint_error(&flint_run(&["--timeout", "-1"]), &["--timeout"]);
}

#[test]
fn unknown_option_is_reported() {
    let out = flint_run(&["--frobnicate"]);
    assert_flint_error(&out, &["--frobnicate"]);
}

#[test]
fn unwritable_boot_report_path_is_named_before_the_guest_runs() {
    let out = flint_run(&[
        "--boot-report",
        "/nonexistent/report.json",
        "--cmdline",
        "probe.exit=7",
    ]);
    assert_flint_error(&out, &["--boot-report /nonexistent/report.json"]);
    assert!(!out.stdout.contains("probe:"), "the guest ran: {out}");
}

#[test]
fn more_memory_than_the_host_has_is_refused_naming_both() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("MemTotal in /proc/meminfo");
    let host = kib / 1024;
    let mem = (host + 1).to_string();
    let out = flint_run(&["--mem", &mem]);
    assert_flint_error(&out, &[&format!("--mem {mem}"), &format!("{host} MiB")]);
}
