//! Boots Debian's stock cloud kernel (fetched by images/linux/fetch-debian-kernel.sh,
//! which tests/run calls) through both entry protocols and checks its early
//! log: the exact command line, an e820 map equal to flint's layout, the
//! ACPI tables without checksum complaints, KVM detected, kvm-clock in use.
//!
//! On this project's PVM hosts guest kernel code is emulated and a stock
//! kernel stops a few seconds in, on an instruction the emulator lacks; the
//! checks stop at what is printed by then. Where the host has VT-x/AMD-V the
//! kernel runs to its root-mount panic and reboots, and that is checked too.

mod common;

use std::path::PathBuf;

use common::*;

/// Early console, the parameters this host's emulator needs, and checksum
/// verification of every ACPI table (Linux skips it for early tables by default).
const PARAMS: &str =
    "earlyprintk=serial,ttyS0,115200 noxsave nofsgsbase clearcpuid=popcnt,smap rodata=off \
                      mitigations=off acpi_force_table_verification";
const MEM_MIB: u64 = 256;
/// The default virtio console, listed on the command line for kernels without ACPI.
const CONSOLE_DEVICE: &str = "virtio_mmio.device=4K@0xd0000000:5";

fn kernel_dir() -> PathBuf {
    let dir = std::env::var_os("FLINT_LINUX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../images/linux/out"));
    assert!(
        dir.join("vmlinux").exists() && dir.join("bzImage").exists(),
        "Debian's kernel is missing from {}: run images/linux/fetch-debian-kernel.sh (tests/run does)",
        dir.display()
    );
    dir
}

/// Boot `kernel` with `cmdline` for at most `timeout` seconds, boot report on stdout.
fn boot(kernel: &str, cmdline: &str, timeout: &str) -> Outcome {
    require_kvm();
    let path = kernel_dir().join(kernel);
    let mem = MEM_MIB.to_string();
    let args = [
        "--kernel",
        path.to_str().unwrap(),
        "--mem",
        &mem,
        "--cmdline",
        cmdline,
        "--timeout",
        timeout,
    ];
    flint_run(&[&args[..], &["--boot-report", "-"]].concat())
}

/// The boot report flint printed last on stdout.
fn report(out: &Outcome) -> &str {
    out.stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"flint_version\""))
        .unwrap_or_else(|| panic!("no boot report: {out}"))
}

fn exits(out: &Outcome, kind: &str) -> u64 {
    json_u64(report(out), kind)
}

fn check_early_log(out: &Outcome) {
    assert_ne!(out.code, Some(125), "flint refused the kernel: {out}");
    let log = &out.stdout;
    let has = |needle: &str| log.contains(needle);
    assert!(
        has(&format!(
            "Command line: console=ttyS0 reboot=k panic=-1 {PARAMS} {CONSOLE_DEVICE}\n"
        )) || has(&format!(
            "Command line: console=ttyS0 reboot=k panic=-1 {PARAMS} {CONSOLE_DEVICE}\r\n"
        )),
        "{out}"
    );
    let end_low = MEM_MIB * (1 << 20) - 1;
    for entry in [
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable".to_string(),
        "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved".to_string(),
        format!("BIOS-e820: [mem 0x0000000000100000-0x{end_low:016x}] usable"),
    ] {
        assert!(has(&entry), "missing {entry:?}: {out}");
    }
    assert_eq!(
        log.matches("BIOS-e820:").count(),
        3,
        "unexpected e820 entries: {out}"
    );
    for table in [
        "ACPI: RSDP 0x00000000000E0000",
        "ACPI: XSDT",
        "ACPI: FACP",
        "ACPI: DSDT",
        "ACPI: APIC",
    ] {
        assert!(has(table), "missing {table:?}: {out}");
    }
    assert!(
        has("ACPI: Early table checksum verification enabled"),
        "{out}"
    );
    for complaint in [
        "Incorrect checksum",
        "ACPI BIOS Warning",
        "ACPI BIOS Error",
        "ACPI Error",
    ] {
        assert!(!has(complaint), "{complaint}: {out}");
    }
    assert!(has("Hypervisor detected: KVM"), "{out}");
    assert!(has("kvm-clock: Using msrs 4b564d01 and 4b564d00"), "{out}");
    assert!(has("clocksource: kvm-clock"), "{out}");
    if hardware_virtualization() {
        assert!(
            has("VFS: Unable to mount root fs"),
            "full boot expected with VT-x/AMD-V: {out}"
        );
        assert_eq!(
            out.code,
            Some(0),
            "panic=-1 reboot=k should reset the VM: {out}"
        );
    } else {
        skip(
            "linux_boot: no vmx/svm on this host (nested PVM): checked the early log only; \
             the full-boot assertions need hardware virtualization",
        );
    }
}

/// Under PVM the first log line takes 10-20 s (early kernel code is
/// emulated instruction by instruction) and the kernel stops about 20 s in,
/// on `lock cmpxchg16b`, which the emulator lacks (exit 123), or is still
/// running at the timeout (124). Either way the early log must be complete.
#[test]
fn debian_vmlinux_boots_through_pvh() {
    let timeout = if hardware_virtualization() {
        "30"
    } else {
        "40"
    };
    let out = boot("vmlinux", PARAMS, timeout);
    assert!(
        report(&out).contains("\"kernel_format\":\"pvh-elf\""),
        "{out}"
    );
    check_early_log(&out);
}

/// A bzImage first runs its decompressor. Where kernel code is emulated
/// (PVM) decompressing 53 MB takes minutes, so there the test checks what
/// the boot stub does first: it reads `earlyprintk=` from the command line
/// flint put in the zero page and programs the UART (port writes that do not
/// happen without the parameter; here 2-3 s after entry on an idle machine,
/// after the stub has copied itself in emulated kernel mode, hence the 10 s
/// allowance). With VT-x/AMD-V the whole early log is checked.
#[test]
fn debian_bzimage_boots_through_the_64bit_entry() {
    if hardware_virtualization() {
        let out = boot("bzImage", PARAMS, "30");
        assert!(
            report(&out).contains("\"kernel_format\":\"bzimage\""),
            "{out}"
        );
        check_early_log(&out);
        return;
    }
    let with = boot("bzImage", PARAMS, "10");
    assert_eq!(
        with.code,
        Some(124),
        "the decompressor should still be running: {with}"
    );
    assert!(
        report(&with).contains("\"kernel_format\":\"bzimage\""),
        "{with}"
    );
    assert!(
        exits(&with, "io_out") >= 5,
        "the boot stub did not program the UART: {with}"
    );
    let without = boot("bzImage", "noxsave", "2");
    assert_eq!(without.code, Some(124), "{without}");
    assert_eq!(
        exits(&without, "io_out"),
        0,
        "UART programmed without earlyprintk=: {without}"
    );
    eprintln!(
        "linux_boot: no vmx/svm on this host (nested PVM): checked that the bzImage boot stub \
         read flint's command line; the decompressed kernel's log needs hardware virtualization"
    );
}
