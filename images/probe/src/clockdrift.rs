//! `probe.clock-drift=<seconds>`: two kvmclock readings, <seconds> of guest
//! time apart, each written as one 8-byte MMIO write to flint's
//! clock-sample window (0xD800_0000), where flint records it with its own
//! CLOCK_MONOTONIC at that exit. The host compares the two intervals. The
//! line at the end also gives the TSC ticks between the samples and the TSC
//! frequency kvmclock's scale implies, so the host can tell a drift of the
//! scale (KVM's idea of the TSC frequency) from anything else.

use core::ptr::write_volatile;

use crate::kvmclock;
use crate::out::{say, Line};
use crate::svc;

/// flint's clock-sample window (guest-boot's layout::CLOCK_PROBE_START).
const CLOCK_PROBE: u64 = 0xD800_0000;

/// Take the two samples `seconds` apart (user mode spins in between).
pub fn run(seconds: u64) {
    let Some(clock) = kvmclock::current() else {
        say("clock-drift none");
        return;
    };
    let tsc0 = svc::rdtsc();
    let start = clock.ns_at(tsc0);
    sample(start);
    let until = start.saturating_add(seconds.saturating_mul(1_000_000_000));
    let mut now = start;
    while now < until {
        for _ in 0..10_000 {
            core::hint::spin_loop();
        }
        now = kvmclock::now_ns().unwrap_or(until);
    }
    let tsc1 = svc::rdtsc();
    let now = kvmclock::current().map_or(now, |c| c.ns_at(tsc1));
    sample(now);
    Line::new()
        .s("clock-drift samples=2 guest_ns=")
        .dec(now - start)
        .s(" tsc_ticks=")
        .dec(tsc1.wrapping_sub(tsc0))
        .s(" kvmclock_tsc_hz=")
        .dec(clock.tsc_hz())
        .end();
}

fn sample(ns: u64) {
    // SAFETY: the window is in the MMIO hole, identity-mapped uncached and
    // user-accessible by the probe's page tables; the write exits to flint.
    unsafe { write_volatile(CLOCK_PROBE as *mut u64, ns) };
}
