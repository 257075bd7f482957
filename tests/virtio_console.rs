//! The virtio console (`--console virtio|both`, the default being both)
//! driven by the probe's user-mode virtio driver: device bring-up through
//! the flat bus, output through the transmit queue (notified through a KVM
//! ioeventfd, processed on flint's event-loop thread), and host input
//! through the receive queue.

mod common;

use common::*;

#[test]
fn the_default_vm_has_a_virtio_console_at_slot_0() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.virtio=1"]);
    assert_eq!(out.code, Some(0), "{out}");
    let dev = out.probe_line("virtio dev=0 ");
    assert!(
        dev.starts_with("probe: virtio dev=0 addr=0xd0000000 device-id=3 "),
        "{dev}"
    );
    assert!(dev.ends_with("status=ok"), "{dev}");
    assert_eq!(out.probe_line("acpi devices="), "probe: acpi devices=1");
}

#[test]
fn guest_output_through_the_transmit_queue_reaches_stdout() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.virtio=1", "--boot-report", "-"]);
    assert_eq!(out.code, Some(0), "{out}");
    // This line travels through virtio-console, not the UART.
    assert!(
        out.stdout.contains("probe: hello through virtio-console\n"),
        "{out}"
    );
    assert_eq!(
        out.probe_line("virtio-console tx"),
        "probe: virtio-console tx bytes=36"
    );
    let report = out.stdout.lines().last().unwrap_or_default();
    assert!(json_u64(report, "mmio_write") > 0, "{report}");
}

#[test]
fn without_a_virtio_console_the_probe_finds_none() {
    require_kvm();
    let out = flint_run(&["--console", "serial", "--cmdline", "probe.virtio=1"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.probe_line("acpi devices="), "probe: acpi devices=0");
    assert!(
        !out.stdout.contains("hello through virtio-console"),
        "{out}"
    );
}

#[test]
fn host_input_reaches_the_guest_through_the_receive_queue() {
    require_kvm();
    // Type only once the guest's driver is up, as a person at the console would.
    let out = flint_run_typing_after(
        &[
            "--timeout",
            "30",
            "--cmdline",
            "probe.virtio=1 probe.virtio-echo=1 probe.exit=8",
        ],
        "probe: virtio-console echo ready",
        b"typed into virtio-console\n",
    );
    assert_eq!(out.code, Some(8), "{out}");
    assert_eq!(
        out.probe_line("virtio-console echo line="),
        "probe: virtio-console echo line=typed into virtio-console"
    );
}

#[test]
fn a_megabyte_streamed_with_32_chains_in_flight_reaches_stdout_whole() {
    require_kvm();
    let out = flint_run(&[
        "--cmdline",
        "probe.virtio=1 probe.console-bench=1024 probe.console-bench-uart=16",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.probe_line("console-bench virtio ")
            .starts_with("probe: console-bench virtio bytes=1048576 "),
        "{out}"
    );
    // The bench sends 64-byte lines of 63 dots: 1 MiB through the queue,
    // then 16 KiB through the UART.
    let dots = ".".repeat(63);
    let lines = out.stdout.lines().filter(|l| *l == dots).count();
    assert_eq!(lines, (1024 + 16) * 1024 / 64, "lines of the bench's bytes");
}
