//! The ioctl request numbers the allow-lists name, computed here with the
//! kernel's `_IOC` encoding (include/uapi/asm-generic/ioctl.h) from the
//! request's type, number and argument size, so this crate needs no KVM or
//! device crate. Sources: include/uapi/linux/kvm.h (KVM), asm-generic/ioctls.h
//! (terminal), include/uapi/linux/if_tun.h (tap), include/uapi/linux/fs.h
//! (block). The argument sizes are those of the x86_64 structs (kvm-bindings
//! 0.14 has the same layouts); `vmm` cross-checks every KVM number against
//! kvm-bindings in a unit test.

const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}

/// `_IO(type, nr)`: no argument.
const fn io(ty: u32, nr: u32) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(type, nr, T)`: the kernel writes a `T` (`size` bytes).
const fn ior(ty: u32, nr: u32, size: u32) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}

/// `_IOW(type, nr, T)`: the kernel reads a `T`.
const fn iow(ty: u32, nr: u32, size: u32) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOWR(type, nr, T)`: both.
const fn iowr(ty: u32, nr: u32, size: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// KVM's ioctl type.
const KVMIO: u32 = 0xAE;

/// `_IOWR(KVMIO, 0x05, struct kvm_cpuid2)` (8-byte header).
pub const KVM_GET_SUPPORTED_CPUID: u32 = iowr(KVMIO, 0x05, 8);
/// `_IOW(KVMIO, 0x67, struct kvm_coalesced_mmio_zone)` (16 bytes).
pub const KVM_REGISTER_COALESCED_MMIO: u32 = iow(KVMIO, 0x67, 16);
/// `_IOW(KVMIO, 0x68, struct kvm_coalesced_mmio_zone)`.
pub const KVM_UNREGISTER_COALESCED_MMIO: u32 = iow(KVMIO, 0x68, 16);
/// `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)` (8-byte header).
pub const KVM_SET_GSI_ROUTING: u32 = iow(KVMIO, 0x6a, 8);
/// `_IO(KVMIO, 0x80)` = 0xAE80.
pub const KVM_RUN: u32 = io(KVMIO, 0x80);
/// `_IOR(KVMIO, 0x81, struct kvm_regs)` (144 bytes).
pub const KVM_GET_REGS: u32 = ior(KVMIO, 0x81, 144);
/// `_IOW(KVMIO, 0x82, struct kvm_regs)`.
pub const KVM_SET_REGS: u32 = iow(KVMIO, 0x82, 144);
/// `_IOR(KVMIO, 0x83, struct kvm_sregs)` (312 bytes).
pub const KVM_GET_SREGS: u32 = ior(KVMIO, 0x83, 312);
/// `_IOW(KVMIO, 0x84, struct kvm_sregs)`.
pub const KVM_SET_SREGS: u32 = iow(KVMIO, 0x84, 312);
/// `_IOWR(KVMIO, 0x85, struct kvm_translation)` (24 bytes).
pub const KVM_TRANSLATE: u32 = iowr(KVMIO, 0x85, 24);

/// TCGETS (asm-generic/ioctls.h): read the terminal mode.
pub const TCGETS: u32 = 0x5401;
/// TCSETS: set the terminal mode now.
pub const TCSETS: u32 = 0x5402;

/// `_IOW('T', 208, unsigned int)`: TUNSETOFFLOAD.
pub const TUNSETOFFLOAD: u32 = iow(b'T' as u32, 208, 4);

/// `_IO(0x12, 119)`: BLKDISCARD.
pub const BLKDISCARD: u32 = io(0x12, 119);
/// `_IO(0x12, 127)`: BLKZEROOUT.
pub const BLKZEROOUT: u32 = io(0x12, 127);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_values_in_the_kernel_headers() {
        assert_eq!(KVM_RUN, 0xAE80);
        assert_eq!(KVM_GET_REGS, 0x8090_AE81);
        assert_eq!(KVM_GET_SREGS, 0x8138_AE83);
        assert_eq!(KVM_TRANSLATE, 0xC018_AE85);
        assert_eq!(KVM_GET_SUPPORTED_CPUID, 0xC008_AE05);
        assert_eq!(KVM_SET_GSI_ROUTING, 0x4008_AE6A);
        assert_eq!(KVM_REGISTER_COALESCED_MMIO, 0x4010_AE67);
        assert_eq!(TUNSETOFFLOAD, libc::TUNSETOFFLOAD as u32);
        assert_eq!((TCGETS, TCSETS), (libc::TCGETS as u32, libc::TCSETS as u32));
        assert_eq!((BLKDISCARD, BLKZEROOUT), (0x1277, 0x127f));
    }
}
