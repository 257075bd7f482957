//! User-mode side of the service call: `int3` with rax = service number
//! (see the ABI table in `kernel.rs`). Each call is one trip to CPL0.

use core::arch::asm;

use crate::kernel::svc;

/// Writes `bytes` to COM1 in one `rep outsb`.
pub fn write(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: the kernel reads `len` bytes from `ptr`, which `bytes` covers;
    // it clobbers rsi, rcx and rdx (declared).
    unsafe {
        asm!("int3",
            inout("rax") svc::WRITE => _,
            inout("rsi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => _,
            out("rdx") _,
            options(nostack, readonly));
    }
}

/// `out port, value`.
pub fn outb(port: u16, value: u8) {
    // SAFETY: the kernel performs one `out` and preserves all but rax.
    unsafe {
        asm!("int3",
            inout("rax") svc::OUTB => _,
            in("rdx") u64::from(port),
            in("rdi") u64::from(value),
            options(nostack, nomem));
    }
}

/// `in port`.
pub fn inb(port: u16) -> u8 {
    let value: u64;
    // SAFETY: the kernel performs one `in` and returns the byte in rax.
    unsafe {
        asm!("int3",
            inout("rax") svc::INB => value,
            in("rdx") u64::from(port),
            options(nostack, nomem));
    }
    value as u8
}

/// `wrmsr`. A write the CPU refuses is a #GP in kernel mode: reported as a fault.
pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the kernel performs one `wrmsr`; the only MSR written is the
    // kvmclock one, whose target memory the caller owns (see kvmclock.rs).
    unsafe {
        asm!("int3",
            inout("rax") svc::WRMSR => _,
            in("rcx") u64::from(msr),
            in("rdi") value,
            options(nostack));
    }
}

/// `rdmsr`.
pub fn rdmsr(msr: u32) -> u64 {
    let value: u64;
    // SAFETY: the kernel performs one `rdmsr` and returns edx:eax in rax.
    unsafe {
        asm!("int3",
            inout("rax") svc::RDMSR => value,
            in("rcx") u64::from(msr),
            options(nostack, nomem));
    }
    value
}

/// A round trip that does nothing (for measurements).
pub fn nop() {
    // SAFETY: the kernel returns at once, rax = 0.
    unsafe {
        asm!("int3", inout("rax") svc::NOP => _, options(nostack, nomem));
    }
}

/// Spins `count` two-instruction iterations in (emulated) kernel mode.
pub fn spin(count: u64) {
    // SAFETY: the kernel decrements rcx to zero and returns rax = 0.
    unsafe {
        asm!("int3",
            inout("rax") svc::SPIN => _,
            inout("rcx") count => _,
            options(nostack, nomem));
    }
}

/// `cpuid` executed in kernel mode: [eax, ebx, ecx, edx] for `leaf`/`subleaf`.
pub fn cpuid_kernel(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (eax, ebx, ecx, edx): (u64, u64, u64, u64);
    // SAFETY: the kernel service runs `cpuid` (eax = edi, ecx as given) and
    // returns its four registers; rbx, reserved by LLVM, is saved around it.
    unsafe {
        asm!("mov {save}, rbx",
            "int3",
            "xchg {save}, rbx",
            save = out(reg) ebx,
            inout("rax") svc::CPUID => eax,
            in("rdi") u64::from(leaf),
            inout("rcx") u64::from(subleaf) => ecx,
            out("rdx") edx,
            options(nostack, nomem));
    }
    [eax as u32, ebx as u32, ecx as u32, edx as u32]
}

/// Sets (`true`) or clears IF in user mode's RFLAGS: with IF set, external
/// interrupts reach the counting stub in kernel.rs.
pub fn user_interrupts(on: bool) {
    let service = if on { svc::IRQ_ON } else { svc::IRQ_OFF };
    // SAFETY: the kernel edits only the RFLAGS of the frame it returns
    // through; the interrupt stub preserves every register.
    unsafe {
        asm!("int3", inout("rax") service => _, options(nostack));
    }
}

extern "C" {
    /// Interrupts taken on vectors 32-255 (written at CPL0).
    static probe_irq_count: u32;
    /// TSC at the last of them.
    static probe_irq_tsc: u64;
}

/// How many external interrupts the stub has counted.
pub fn irq_count() -> u32 {
    // SAFETY: a 4-byte aligned static only the interrupt stub writes.
    unsafe { core::ptr::read_volatile(&raw const probe_irq_count) }
}

/// The TSC the stub read at the last interrupt.
pub fn irq_tsc() -> u64 {
    // SAFETY: an 8-byte aligned static only the interrupt stub writes.
    unsafe { core::ptr::read_volatile(&raw const probe_irq_tsc) }
}

/// Halts forever (`cli; hlt` at CPL0).
pub fn halt() -> ! {
    // SAFETY: the kernel never returns from this service.
    unsafe {
        asm!("int3", in("rax") svc::HALT, options(nostack, nomem, noreturn));
    }
}

/// Triple-faults the vCPU: empty IDT, then an exception.
pub fn crash() -> ! {
    // SAFETY: the kernel never returns from this service.
    unsafe {
        asm!("int3", in("rax") svc::CRASH, options(nostack, nomem, noreturn));
    }
}

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc has no memory effects; CR4.TSD is clear.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}
