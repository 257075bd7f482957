//! The `seccomp` crate spells out the KVM ioctl numbers of its allow-lists
//! (it may not depend on KVM crates); this checks each against the number
//! derived here from kvm-bindings' structs, the way kvm-ioctls derives the
//! numbers it issues.

#![allow(non_snake_case)]

use kvm_bindings::{
    kvm_coalesced_mmio_zone, kvm_cpuid2, kvm_irq_routing, kvm_regs, kvm_sregs, kvm_translation,
    KVMIO,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

ioctl_iowr_nr!(KVM_GET_SUPPORTED_CPUID, KVMIO, 0x05, kvm_cpuid2);
ioctl_iow_nr!(
    KVM_REGISTER_COALESCED_MMIO,
    KVMIO,
    0x67,
    kvm_coalesced_mmio_zone
);
ioctl_iow_nr!(
    KVM_UNREGISTER_COALESCED_MMIO,
    KVMIO,
    0x68,
    kvm_coalesced_mmio_zone
);
ioctl_iow_nr!(KVM_SET_GSI_ROUTING, KVMIO, 0x6a, kvm_irq_routing);
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iow_nr!(KVM_SET_SREGS, KVMIO, 0x84, kvm_sregs);
ioctl_iowr_nr!(KVM_TRANSLATE, KVMIO, 0x85, kvm_translation);

#[test]
fn the_seccomp_crates_kvm_numbers_are_kvm_bindings_numbers() {
    use seccomp::ioctls as s;
    let pairs = [
        (s::KVM_GET_SUPPORTED_CPUID, KVM_GET_SUPPORTED_CPUID()),
        (
            s::KVM_REGISTER_COALESCED_MMIO,
            KVM_REGISTER_COALESCED_MMIO(),
        ),
        (
            s::KVM_UNREGISTER_COALESCED_MMIO,
            KVM_UNREGISTER_COALESCED_MMIO(),
        ),
        (s::KVM_SET_GSI_ROUTING, KVM_SET_GSI_ROUTING()),
        (s::KVM_RUN, KVM_RUN()),
        (s::KVM_GET_REGS, KVM_GET_REGS()),
        (s::KVM_SET_REGS, KVM_SET_REGS()),
        (s::KVM_GET_SREGS, KVM_GET_SREGS()),
        (s::KVM_SET_SREGS, KVM_SET_SREGS()),
        (s::KVM_TRANSLATE, KVM_TRANSLATE()),
    ];
    for (i, (ours, theirs)) in pairs.into_iter().enumerate() {
        assert_eq!(
            u64::from(ours),
            theirs,
            "entry {i}: {ours:#x} vs {theirs:#x}"
        );
    }
}
