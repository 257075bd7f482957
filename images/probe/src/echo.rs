//! `probe.echo=1`: read one line of host input from COM1's receive side by
//! polling (no interrupts): LSR (0x3fd) bit 0 "data ready", then RBR
//! (0x3f8), each through the `inb` service, and print it back.
//!
//! ```text
//! probe: echo ready
//! probe: echo line=<bytes up to '\n' (excluded) or 256 bytes, as received>
//!   -- or, after ~5 s without a complete line: probe: echo timeout got=<n>
//! ```

use crate::kvmclock::Clock;
use crate::out::{say, Line};
use crate::svc;

/// Receive buffer register (DLAB clear).
const COM1_RBR: u16 = 0x3f8;
/// Line status register.
const COM1_LSR: u16 = 0x3fd;
/// LSR bit 0: a byte waits in the receive buffer.
const LSR_DATA_READY: u8 = 0x01;
/// Longest line kept.
const MAX_LINE: usize = 256;
/// How long to wait for a complete line.
const TIMEOUT_NS: u64 = 5_000_000_000;
/// TSC frequency assumed when neither kvmclock nor CPUID gives one: on
/// the high side, so a slower TSC only stretches the wait.
const FALLBACK_TSC_HZ: u64 = 3_000_000_000;

/// Prints `echo ready`, collects one line from COM1 and prints it (or the
/// timeout line).
pub fn run(clock: Option<&Clock>) {
    // Without kvmclock: the frequency CPUID states, once.
    let hz = match clock {
        Some(_) => 0,
        None => cpuid_tsc_hz()
            .filter(|&hz| hz >= 1_000_000)
            .unwrap_or(FALLBACK_TSC_HZ),
    };
    let elapsed_ns = |ticks: u64| match clock {
        Some(clock) => clock.scale(ticks),
        None => (u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64,
    };
    let mut buf = [0u8; MAX_LINE];
    let mut len = 0;
    say("echo ready");
    let start = svc::rdtsc();
    loop {
        if svc::inb(COM1_LSR) & LSR_DATA_READY != 0 {
            let byte = svc::inb(COM1_RBR);
            if byte == b'\n' {
                break;
            }
            buf[len] = byte;
            len += 1;
            if len == MAX_LINE {
                break;
            }
            // More may be waiting: check LSR again at once, without the clock.
            continue;
        }
        if elapsed_ns(svc::rdtsc().wrapping_sub(start)) > TIMEOUT_NS {
            Line::new().s("echo timeout got=").dec(len as u64).end();
            return;
        }
    }
    Line::new().s("echo line=").bytes(&buf[..len]).end();
}

/// The TSC frequency CPUID states, if any: leaf 0x15 (TSC/crystal ratio
/// times crystal Hz), else leaf 0x16 (base MHz). User-mode CPUID is the
/// host's own on PVM, which is what the TSC runs at.
pub fn cpuid_tsc_hz() -> Option<u64> {
    use core::arch::x86_64::__cpuid;
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let r = __cpuid(0x15);
        // eax = denominator, ebx = numerator, ecx = crystal Hz (0: unknown).
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return Some(u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax));
        }
    }
    if max >= 0x16 {
        let mhz = __cpuid(0x16).eax & 0xffff;
        if mhz != 0 {
            return Some(u64::from(mhz) * 1_000_000);
        }
    }
    None
}
