//! kvmclock (Documentation/virt/kvm/x86/msr.rst, `MSR_KVM_SYSTEM_TIME_NEW`):
//! if CPUID says KVM with CLOCKSOURCE2, register a `pvclock_vcpu_time_info`
//! and turn a TSC reading into nanoseconds with it.

use core::arch::x86_64::__cpuid;
use core::ptr::{addr_of, read_volatile};
use core::sync::atomic::{fence, Ordering};

use crate::svc;

/// `MSR_KVM_SYSTEM_TIME_NEW`.
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `KVM_FEATURE_CLOCKSOURCE2` in CPUID 0x40000001 EAX.
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// `struct pvclock_vcpu_time_info`, 32 bytes, written by the hypervisor.
#[repr(C, align(64))]
struct TimeInfo {
    version: u32,
    pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    pad: [u8; 2],
}

static mut TIME_INFO: TimeInfo = TimeInfo {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
};

/// A consistent copy of the hypervisor's time parameters.
#[derive(Clone, Copy)]
pub struct Clock {
    tsc_timestamp: u64,
    system_time: u64,
    mul: u32,
    shift: i8,
    /// `PVCLOCK_*` flags (bit 0: TSC stable).
    pub flags: u8,
}

impl Clock {
    /// Nanoseconds of guest system time at TSC value `tsc`.
    pub fn ns_at(&self, tsc: u64) -> u64 {
        self.system_time
            .wrapping_add(self.scale(tsc.wrapping_sub(self.tsc_timestamp)))
    }

    /// The TSC frequency this scale implies: ns = (ticks << shift) * mul / 2^32.
    pub fn tsc_hz(&self) -> u64 {
        let per_tick = u128::from(self.mul.max(1));
        let hz = (1_000_000_000u128 << 32) / per_tick;
        let hz = if self.shift < 0 {
            hz << (-self.shift).min(63)
        } else {
            hz >> self.shift.min(63)
        };
        hz as u64
    }

    /// A TSC interval in nanoseconds.
    pub fn scale(&self, delta: u64) -> u64 {
        let shifted = if self.shift < 0 {
            delta >> (-self.shift).min(63)
        } else {
            delta << self.shift.min(63)
        };
        ((u128::from(shifted) * u128::from(self.mul)) >> 32) as u64
    }
}

/// Whether the hypervisor offers kvmclock (KVM signature + CLOCKSOURCE2).
pub fn available() -> bool {
    let sig = __cpuid(0x4000_0000);
    let kvm = sig.ebx == u32::from_le_bytes(*b"KVMK")
        && sig.ecx == u32::from_le_bytes(*b"VMKV")
        && sig.edx == u32::from_le_bytes(*b"M\0\0\0");
    kvm && sig.eax >= 0x4000_0001 && __cpuid(0x4000_0001).eax & KVM_FEATURE_CLOCKSOURCE2 != 0
}

/// Registers the time structure and reads it; `None` without kvmclock or if
/// the hypervisor never fills it in.
pub fn enable() -> Option<Clock> {
    if !available() {
        return None;
    }
    let info = addr_of!(TIME_INFO);
    // Identity-mapped: the address is the guest-physical one.
    svc::wrmsr(MSR_KVM_SYSTEM_TIME_NEW, info as u64 | 1);
    current()
}

/// Guest system time now, from a fresh read of the time structure (the
/// hypervisor may update its parameters at any time); needs [`enable`] first.
pub fn now_ns() -> Option<u64> {
    current().map(|clock| clock.ns_at(svc::rdtsc()))
}

/// A consistent read of the time structure, if the hypervisor filled it in.
pub fn current() -> Option<Clock> {
    let info = addr_of!(TIME_INFO);
    for _ in 0..1_000_000 {
        // SAFETY: TIME_INFO is only written by the hypervisor (after the wrmsr
        // above) and read here with volatile loads under its version protocol.
        let clock = unsafe {
            let v1 = read_volatile(addr_of!((*info).version));
            fence(Ordering::Acquire);
            let clock = Clock {
                tsc_timestamp: read_volatile(addr_of!((*info).tsc_timestamp)),
                system_time: read_volatile(addr_of!((*info).system_time)),
                mul: read_volatile(addr_of!((*info).tsc_to_system_mul)),
                shift: read_volatile(addr_of!((*info).tsc_shift)),
                flags: read_volatile(addr_of!((*info).flags)),
            };
            fence(Ordering::Acquire);
            let v2 = read_volatile(addr_of!((*info).version));
            (v1 == v2 && v1 & 1 == 0 && v1 != 0).then_some(clock)
        };
        if clock.is_some() {
            return clock;
        }
        core::hint::spin_loop();
    }
    None
}
