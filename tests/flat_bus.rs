//! The flat virtio-mmio bus as the guest sees it: the devices in the ACPI
//! DSDT (LNRO0005) and on the command line (`virtio_mmio.device=`), in bus
//! order, each window answering MMIO reads from guest user mode. Uses
//! `--placeholder-devices`: windows with device ID 0, which drivers ignore,
//! with `--console serial` so that no virtio console takes slot 0.

mod common;

use common::*;

fn expected_slot(i: u64) -> (u64, u64) {
    (0xd000_0000 + i * 0x1000, 5 + i)
}

fn assert_regs_answer(lines: &[&str]) {
    for line in lines {
        assert!(
            line.ends_with("magic=0x74726976 version=2 device-id=0 vendor=0x544e4c46"),
            "{line}"
        );
    }
}

#[test]
fn devices_are_listed_in_order_in_the_dsdt_and_on_the_command_line() {
    require_kvm();
    let out = flint_run(&["--console", "serial", "--placeholder-devices", "3"]);
    assert_eq!(out.code, Some(0), "{out}");
    let acpi = out.probe_lines("virtio-mmio index=");
    assert_eq!(acpi.len(), 3, "{out}");
    for (i, line) in acpi.iter().enumerate() {
        let (addr, irq) = expected_slot(i as u64);
        assert_eq!(
            *line,
            format!("probe: virtio-mmio index={i} addr={addr:#x} size=0x1000 irq={irq}")
        );
    }
    assert_eq!(out.probe_line("acpi devices="), "probe: acpi devices=3");
    let cmdline = out.probe_line("cmdline=");
    let list: Vec<String> = (0..3)
        .map(|i| {
            let (addr, irq) = expected_slot(i);
            format!("virtio_mmio.device=4K@{addr:#x}:{irq}")
        })
        .collect();
    assert!(cmdline.ends_with(&list.join(" ")), "{cmdline}");
    assert_eq!(out.probe_lines("cmdline-device addr=").len(), 3, "{out}");
    let regs = out.probe_lines("virtio-mmio-regs index=");
    assert_eq!(regs.len(), 3, "{out}");
    assert_regs_answer(&regs);
}

#[test]
fn without_acpi_the_command_line_alone_lists_the_devices() {
    require_kvm();
    let out = flint_run(&[
        "--console",
        "serial",
        "--placeholder-devices",
        "2",
        "--no-acpi",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.probe_line("acpi"), "probe: acpi none");
    let devices = out.probe_lines("cmdline-device addr=");
    assert_eq!(devices.len(), 2, "{out}");
    let regs = out.probe_lines("cmdline-device-regs addr=");
    assert_eq!(regs.len(), 2, "{out}");
    assert_regs_answer(&regs);
}

#[test]
fn without_command_line_devices_acpi_alone_lists_them() {
    require_kvm();
    let out = flint_run(&[
        "--console",
        "serial",
        "--placeholder-devices",
        "2",
        "--no-cmdline-devices",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.probe_line("cmdline=").contains("virtio_mmio"), "{out}");
    assert_eq!(out.probe_line("acpi devices="), "probe: acpi devices=2");
}

#[test]
fn the_bus_holds_at_most_19_devices() {
    require_kvm();
    let out = flint_run(&[
        "--console",
        "serial",
        "--placeholder-devices",
        "19",
        "--cmdline",
        "probe.exit=4",
    ]);
    assert_eq!(out.code, Some(4), "{out}");
    assert_eq!(out.probe_line("acpi devices="), "probe: acpi devices=19");
    let out = flint_run(&["--console", "serial", "--placeholder-devices", "20"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("--placeholder-devices 20"), "{out}");
}

#[test]
fn register_reads_are_real_mmio_exits_to_the_monitor() {
    require_kvm();
    let out = flint_run(&[
        "--console",
        "serial",
        "--placeholder-devices",
        "2",
        "--boot-report",
        "-",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let report = out.stdout.lines().last().unwrap_or_default();
    // Four registers per device, read once for the ACPI list and once for the command-line list.
    assert!(json_u64(report, "mmio_read") >= 16, "{report}");
}
