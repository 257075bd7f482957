//! CPUID as the guest sees it: the KVM paravirt leaves flint adds, and what
//! `--cpuid-mask` can hide. On nested PVM hosts user-mode `cpuid` is the
//! host's own (flint's table never sees it) and KVM re-fills most masked
//! bits; cx16 is one it honours from kernel mode (images/probe/README.md).

mod common;

use common::*;

/// The four registers of `probe: cpuid <mode> leaf=<leaf> ...`.
fn leaf(out: &Outcome, mode: &str, leaf: u32) -> [u32; 4] {
    let line = out.probe_line(&format!("cpuid {mode} leaf={leaf:#010x} "));
    let reg = |name: &str| {
        let v = line.split(' ').find_map(|w| w.strip_prefix(name)).unwrap();
        u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
    };
    [reg("eax="), reg("ebx="), reg("ecx="), reg("edx=")]
}

#[test]
fn the_guest_kernel_sees_kvmclock_in_the_kvm_feature_leaf() {
    require_kvm();
    let out = flint_run(&["--cmdline", "probe.cpuid=1"]);
    assert_eq!(out.code, Some(0), "{out}");
    let [eax, ..] = leaf(&out, "kernel", 0x4000_0001);
    for (bit, name) in [
        (0, "CLOCKSOURCE"),
        (3, "CLOCKSOURCE2"),
        (24, "CLOCKSOURCE_STABLE_BIT"),
    ] {
        assert_ne!(eax & (1 << bit), 0, "KVM_FEATURE_{name} missing: {eax:#x}");
    }
    let [_, ebx, ecx, _] = leaf(&out, "kernel", 1);
    assert_eq!(ebx >> 24, 0, "initial APIC ID of vCPU 0");
    assert_ne!(ecx & (1 << 31), 0, "hypervisor bit");
}

#[test]
fn cpuid_mask_hides_cx16_from_the_guest_kernel() {
    require_kvm();
    let plain = flint_run(&["--cmdline", "probe.cpuid=1"]);
    let masked = flint_run(&["--cmdline", "probe.cpuid=1", "--cpuid-mask", "cx16"]);
    assert_eq!(
        (plain.code, masked.code),
        (Some(0), Some(0)),
        "{plain}\n{masked}"
    );
    let cx16 = |o: &Outcome| leaf(o, "kernel", 1)[2] & (1 << 13) != 0;
    assert!(cx16(&plain), "the host offers cx16 to guests: {plain}");
    assert!(
        !cx16(&masked),
        "--cpuid-mask cx16 did not hide it: {masked}"
    );
}
