//! Measurements and deliberate faults, for checking what the host's
//! virtualisation does (`probe.bench=1`, `probe.fault=<kind>`). Lines:
//! `probe: bench <what> cycles=<per operation> [ns=<per operation>]`.

use core::arch::asm;
use core::arch::x86_64::__cpuid;

use crate::kvmclock::Clock;
use crate::out::{say, Line};
use crate::svc;

fn report(what: &str, total_cycles: u64, count: u64, clock: Option<&Clock>) {
    let per = total_cycles / count.max(1);
    let mut line = Line::new();
    line.s("bench ").s(what).s(" cycles=").dec(per);
    if let Some(c) = clock {
        line.s(" ns=").dec(c.scale(per));
    }
    line.end();
}

fn time(count: u64, mut op: impl FnMut()) -> u64 {
    let start = svc::rdtsc();
    for _ in 0..count {
        op();
    }
    svc::rdtsc().wrapping_sub(start)
}

/// Measures the costs of the service calls and of what user mode traps on.
pub fn run(boot_tsc: u64, user_tsc: u64, clock: Option<&Clock>) {
    report("kernel-setup", user_tsc.wrapping_sub(boot_tsc), 1, clock);
    report(
        "rdtsc",
        time(1000, || {
            core::hint::black_box(svc::rdtsc());
        }),
        1000,
        clock,
    );
    report(
        "cpuid",
        time(100, || {
            core::hint::black_box(__cpuid(0));
        }),
        100,
        clock,
    );
    report("int3-nop", time(200, svc::nop), 200, clock);
    let base = time(20, || svc::spin(0));
    let spun = time(20, || svc::spin(5000));
    // 2 instructions per iteration: dec + jnz.
    report(
        "kernel-instruction",
        spun.saturating_sub(base),
        20 * 2 * 5000,
        clock,
    );
    report(
        "rdmsr-efer",
        time(100, || {
            core::hint::black_box(svc::rdmsr(0xc000_0080));
        }),
        100,
        clock,
    );
    report("outb-0x80", time(100, || svc::outb(0x80, 0)), 100, clock);
    report(
        "inb-0x3fd",
        time(100, || {
            core::hint::black_box(svc::inb(0x3fd));
        }),
        100,
        clock,
    );
    const PAD: &[u8; 64] = b"probe: bench-pad 0123456789abcdef0123456789abcdef0123456789abcd\n";
    report("line64-rep-outsb", time(10, || svc::write(PAD)), 10, clock);
    report(
        "line64-per-byte-outb",
        time(10, || {
            for &b in PAD {
                svc::outb(0x3f8, b);
            }
        }),
        10,
        clock,
    );
    report(
        "line16-rep-outsb",
        time(10, || svc::write(&PAD[48..])),
        10,
        clock,
    );
}

/// Executes a faulting instruction of `kind`; returns only if it did not fault.
pub fn fault(kind: &[u8]) {
    // SAFETY: each instruction traps to the IDT, whose handler reports the
    // fault and exits; none touches memory the probe relies on.
    unsafe {
        match kind {
            b"ud2" => asm!("ud2", options(nostack)),
            b"out" => asm!("out 0x80, al", in("al") 0u8, options(nostack)),
            b"hlt" => asm!("hlt", options(nostack)),
            b"int80" => asm!("int 0x80", options(nostack)),
            b"syscall" => asm!("syscall", out("rcx") _, out("r11") _, options(nostack)),
            b"pf" => {
                core::ptr::read_volatile((9u64 << 30) as *const u8);
            }
            b"div" => asm!("div {0}", in(reg) 0u64, inout("rax") 1u64 => _, inout("rdx") 0u64 => _),
            b"wrmsr" => svc::wrmsr(0xdead_0000, 0),
            b"panic" => panic!("deliberate"),
            _ => {
                Line::new().s("fault unknown kind=").bytes(kind).end();
                return;
            }
        }
    }
    Line::new()
        .s("fault kind=")
        .bytes(kind)
        .s(" did not fault")
        .end();
    say("fault none");
}
