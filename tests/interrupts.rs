//! Interrupt delivery end to end with the probe's `probe.irq=1`: the
//! virtio console's irqfd, flint's userspace IOAPIC (a redirection entry
//! the guest programs becomes an MSI route in KVM), the in-kernel LAPIC,
//! the guest's IDT and its handler, while guest user mode spins with IF set.

mod common;

use common::*;

#[test]
fn a_used_buffer_interrupt_reaches_the_guest_handler() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.virtio=1 probe.irq=1"]);
    assert_eq!(out.code, Some(0), "{out}");
    // The console is slot 0 and its DSDT IRQ is the IOAPIC pin programmed.
    let dsdt = out.probe_line("virtio-mmio index=0 ");
    let pin = dsdt.rsplit("irq=").next().unwrap();
    let line = out.probe_line("irq vector=");
    assert!(
        line.starts_with(&format!("probe: irq vector=0x40 pin={pin} count=")),
        "{out}"
    );
    assert!(probe_u64(line, "count") >= 1, "{out}");
    let stats = out.probe_line("irq sends=");
    assert_eq!(probe_u64(stats, "sends"), 1, "{out}");
    assert!(
        stats.ends_with("apic-base=0xfee00900"),
        "xAPIC, enabled, BSP: {out}"
    );
    assert!(
        out.stdout.contains("probe: virtio-console irq-tx\n"),
        "{out}"
    );
}

#[test]
fn every_send_raises_one_interrupt_also_with_devices_from_the_command_line() {
    require_kvm();
    // Without ACPI the probe takes the console and its IRQ from
    // virtio_mmio.device= on the command line.
    let out = flint_run(&[
        "--no-acpi",
        "--cmdline",
        "probe.virtio=1 probe.irq=1 probe.irq-sends=8",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let dev = out.probe_line("cmdline-device addr=0xd0000000 ");
    let pin = dev.rsplit("irq=").next().unwrap();
    let line = out.probe_line("irq vector=");
    assert_eq!(
        line,
        format!("probe: irq vector=0x40 pin={pin} count=8"),
        "{out}"
    );
    assert_eq!(probe_u64(out.probe_line("irq sends="), "sends"), 8, "{out}");
}

#[test]
fn without_the_parameter_no_interrupt_is_set_up() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.virtio=1"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.probe_lines("irq ").is_empty(), "{out}");
}
