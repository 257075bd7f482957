//! Boots the embedded probe guest through the `flint` binary and checks what
//! it reports: exit status passthrough, boot-complete marker, ACPI tables,
//! command line, memory map, initrd contents, both entry protocols, and the
//! crash / timeout / reset / power-off endings.

mod common;

use common::*;

const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

#[test]
fn guest_exit_status_passes_through() {
    require_kvm();
    for status in [0, 7, 122] {
        let out = flint_run(&["--cmdline", &format!("probe.exit={status}")]);
        assert_eq!(out.code, Some(status), "{out}");
        assert_eq!(
            out.probe_line("exit"),
            format!("probe: exit status={status}")
        );
    }
}

#[test]
fn guest_status_above_122_is_clamped_with_a_message() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.exit=200"]);
    assert_eq!(out.code, Some(122), "{out}");
    assert!(out.stderr.contains("200"), "{out}");
}

#[test]
fn default_run_boots_the_embedded_probe() {
    require_kvm();
    let out = flint_run(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.probe_line("flint probe"),
        "probe: flint probe v1 entry=pvh"
    );
    assert_eq!(out.probe_line("boot-complete"), "probe: boot-complete");
}

#[test]
fn boot_report_records_every_phase_in_order() {
    require_kvm();
    let dir = scratch("report");
    let report = dir.join("report.json");
    let out = flint_run(&["--boot-report", report.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    let json = std::fs::read_to_string(&report).expect("report written");
    let phases = [
        "main_entered",
        "vm_created",
        "memory_ready",
        "kernel_loaded",
        "seccomp_installed",
        "first_kvm_run",
        "first_serial_byte",
        "boot_complete",
        "guest_exit",
    ];
    let stamps: Vec<u64> = phases.iter().map(|p| json_u64(&json, p)).collect();
    for (i, pair) in stamps.windows(2).enumerate() {
        assert!(
            pair[0] <= pair[1],
            "{} after {}: {json}",
            phases[i],
            phases[i + 1]
        );
    }
    assert!(json.contains("\"outcome\":\"guest-status\""), "{json}");
    assert!(json_u64(&json, "io_out") >= 3, "{json}");
}

#[test]
fn boot_report_to_stdout_follows_the_guest_output() {
    require_kvm();
    let out = flint_run(&["--boot-report", "-"]);
    assert_eq!(out.code, Some(0), "{out}");
    let last = out.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with('{') && last.contains("\"boot_complete\""),
        "{out}"
    );
}

#[test]
fn acpi_tables_are_found_with_valid_checksums() {
    require_kvm();
    let out = flint_run(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    for sig in ["XSDT", "FACP", "APIC", "DSDT"] {
        let lines = out.probe_lines(&format!("acpi table={sig} "));
        assert_eq!(lines.len(), 1, "{sig}: {out}");
        assert!(lines[0].ends_with("checksum=ok"), "{}", lines[0]);
    }
    assert!(
        out.probe_lines("acpi")
            .iter()
            .all(|l| !l.contains("checksum=bad")),
        "{out}"
    );
}

#[test]
fn no_acpi_leaves_the_guest_without_tables() {
    require_kvm();
    let out = flint_run(&["--no-acpi"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.probe_line("acpi"), "probe: acpi none");
}

#[test]
fn cmdline_arrives_byte_exact_after_the_defaults() {
    require_kvm();
    let user = "probe.exit=3 quoted=\"a b\" tab\tsep unicode=\u{e9}\u{4e2d} x=1=2";
    let out = flint_run(&["--cmdline", user]);
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(
        out.probe_line("cmdline="),
        // The default virtio console is listed after the user's part.
        format!("probe: cmdline={DEFAULT_CMDLINE} {user} virtio_mmio.device=4K@0xd0000000:5")
    );
}

/// Parse the probe's `mem` lines into (start, size, type).
fn memory_map(out: &Outcome) -> Vec<(u64, u64, u32)> {
    out.probe_lines("mem start=")
        .iter()
        .map(|l| {
            let field = |k: &str| {
                l.split(' ')
                    .find_map(|w| w.strip_prefix(k))
                    .unwrap_or_else(|| panic!("{k} in {l}"))
            };
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            (
                hex(field("start=")),
                hex(field("size=")),
                field("type=").parse().unwrap(),
            )
        })
        .collect()
}

const MIB: u64 = 1 << 20;
/// The documented layout (README "Guest memory map"): RAM below the EBDA,
/// reserved legacy area, RAM from 1 MiB to the 3 GiB MMIO hole, RAM above 4 GiB.
fn documented_map(mem_mib: u64) -> Vec<(u64, u64, u32)> {
    let mem = mem_mib * MIB;
    let hole = 3072 * MIB;
    let mut map = vec![
        (0, 0x9fc00, 1),
        (0x9fc00, 0x10_0000 - 0x9fc00, 2),
        (0x10_0000, mem.min(hole) - 0x10_0000, 1),
    ];
    if mem > hole {
        map.push((1 << 32, mem - hole, 1));
    }
    map
}

#[test]
fn memory_map_matches_the_documented_layout() {
    require_kvm();
    for mem in [128, 3500, 5000] {
        let out = flint_run(&["--mem", &mem.to_string()]);
        assert_eq!(out.code, Some(0), "--mem {mem}: {out}");
        assert_eq!(memory_map(&out), documented_map(mem), "--mem {mem}: {out}");
        let total: u64 = documented_map(mem)
            .iter()
            .filter(|e| e.2 == 1)
            .map(|e| e.1)
            .sum();
        assert_eq!(
            out.probe_line("mem total_ram="),
            format!("probe: mem total_ram={total}")
        );
    }
}

#[test]
fn odd_size_initrd_arrives_byte_exact() {
    require_kvm();
    let dir = scratch("initrd");
    let data = pseudo_random(1_000_003, 42);
    let path = dir.join("initrd.bin");
    std::fs::write(&path, &data).unwrap();
    let out = flint_run(&["--initrd", path.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    let line = out.probe_line("initrd");
    assert!(line.contains(&format!("size={} ", data.len())), "{line}");
    assert!(
        line.ends_with(&format!("fnv1a64=0x{:016x}", fnv1a64(&data))),
        "{line}"
    );
    let addr = line
        .split(' ')
        .find_map(|w| w.strip_prefix("addr=0x"))
        .unwrap();
    assert_eq!(
        u64::from_str_radix(addr, 16).unwrap() % 4096,
        0,
        "initrd not page-aligned: {line}"
    );
}

#[test]
fn linux_boot_protocol_entry_is_used_for_an_elf_without_pvh_note() {
    require_kvm();
    let dir = scratch("elf64");
    let path = dir.join("probe-no-pvh.elf");
    std::fs::write(&path, without_pvh_note(probe_elf())).unwrap();
    let initrd = dir.join("initrd");
    let data = pseudo_random(4097, 7);
    std::fs::write(&initrd, &data).unwrap();
    let out = flint_run(&[
        "--kernel",
        path.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "probe.exit=9",
    ]);
    assert_eq!(out.code, Some(9), "{out}");
    assert_eq!(
        out.probe_line("flint probe"),
        "probe: flint probe v1 entry=linux64"
    );
    assert_eq!(memory_map(&out), documented_map(128), "{out}");
    assert!(
        out.probe_line("initrd")
            .ends_with(&format!("fnv1a64=0x{:016x}", fnv1a64(&data))),
        "{out}"
    );
    for sig in ["XSDT", "FACP", "APIC", "DSDT"] {
        assert_eq!(
            out.probe_lines(&format!("acpi table={sig} ")).len(),
            1,
            "{sig}: {out}"
        );
    }
}

/// The probe ELF with every PT_NOTE program header turned into PT_NULL, so
/// flint must enter it through the 64-bit Linux boot protocol.
fn without_pvh_note(elf: &[u8]) -> Vec<u8> {
    let mut out = elf.to_vec();
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let (phoff, phentsize, phnum) = (
        u64_at(0x20) as usize,
        u16_at(0x36) as usize,
        u16_at(0x38) as usize,
    );
    let mut patched = 0;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 4 {
            out[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
            patched += 1;
        }
    }
    assert!(patched > 0, "the probe ELF has no PT_NOTE to remove");
    out
}

#[test]
fn a_crashing_guest_exits_123_with_a_register_dump() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.crash=1"]);
    assert_eq!(out.code, Some(123), "{out}");
    assert!(out.stderr.contains("guest crashed"), "{out}");
    assert!(
        out.stderr.contains("rip ") && out.stderr.contains("code at rip"),
        "{out}"
    );
}

#[test]
fn a_guest_that_never_exits_is_stopped_by_the_timeout() {
    require_kvm();
    let started = std::time::Instant::now();
    let out = flint_run(&["--cmdline", "probe.halt=1", "--timeout", "1.5"]);
    assert_eq!(out.code, Some(124), "{out}");
    assert!(out.stderr.contains("timed out"), "{out}");
    assert!(
        started.elapsed().as_secs_f64() >= 1.5,
        "stopped before the timeout"
    );
}

#[test]
fn i8042_reset_and_acpi_power_off_end_the_vm_with_status_0() {
    require_kvm();
    for (param, outcome) in [
        ("probe.reset=1", "reset"),
        ("probe.poweroff=1", "power-off"),
    ] {
        let out = flint_run(&["--cmdline", param, "--boot-report", "-"]);
        assert_eq!(out.code, Some(0), "{param}: {out}");
        assert!(
            out.stdout.contains(&format!("\"outcome\":\"{outcome}\"")),
            "{param}: {out}"
        );
    }
}
