//! `probe.clock-drift=<seconds>`: two kvmclock readings, <seconds> of guest
//! time apart, each written as one 8-byte MMIO write to flint's
//! clock-sample window (0xD800_0000), where flint records it with its own
//! CLOCK_MONOTONIC at that exit. The host compares the two intervals.

use core::ptr::write_volatile;

use crate::kvmclock;
use crate::out::{say, Line};

/// flint's clock-sample window (guest-boot's layout::CLOCK_PROBE_START).
const CLOCK_PROBE: u64 = 0xD800_0000;

/// Take the two samples `seconds` apart (user mode spins in between).
pub fn run(seconds: u64) {
    let Some(start) = kvmclock::now_ns() else {
        say("clock-drift none");
        return;
    };
    sample(start);
    let until = start.saturating_add(seconds.saturating_mul(1_000_000_000));
    let mut now = start;
    while now < until {
        for _ in 0..10_000 {
            core::hint::spin_loop();
        }
        now = kvmclock::now_ns().unwrap_or(until);
    }
    sample(now);
    Line::new().s("clock-drift samples=2 guest_ns=").dec(now - start).end();
}

fn sample(ns: u64) {
    // SAFETY: the window is in the MMIO hole, identity-mapped uncached and
    // user-accessible by the probe's page tables; the write exits to flint.
    unsafe { write_volatile(CLOCK_PROBE as *mut u64, ns) };
}
