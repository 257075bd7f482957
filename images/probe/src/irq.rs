//! `probe.irq=1` (with `probe.virtio=1`): one used-buffer interrupt of the
//! virtio console, end to end — the device's irqfd, flint's IOAPIC route
//! (an MSI in KVM's GSI table), the in-kernel LAPIC, the IDT and the
//! counting stub in kernel.rs — while user mode spins with IF set.
//!
//! Everything but the stub and the two IF services runs in user mode:
//! APIC_BASE (MSR 0x1b, through the `rdmsr` service) must show the xAPIC
//! enabled at 0xFEE00000 (not x2APIC: the stub's EOI is an xAPIC MMIO
//! store); the LAPIC is software-enabled through its SVR (0xFEE000F0: bit 8,
//! spurious vector 0xff); the console's IOAPIC pin (its DSDT / command-line
//! IRQ) gets vector 0x40, fixed, physical, destination = this LAPIC's ID,
//! edge, active high, unmasked; the transmit queue's
//! VIRTQ_AVAIL_F_NO_INTERRUPT is cleared. Then each send: one buffer,
//! `rdtsc`, QueueNotify, spin (≤ ~2 s) until the stub's counter moves. The
//! latency is the stub's TSC minus the one taken before the notify;
//! `used-first` counts the sends in which the spinning loop saw `used.idx`
//! move before the interrupt arrived, `used-ns` averages notify → that
//! moment over them (0 if none). Then
//! IF is cleared, the pin masked, the flag set and the SVR put back.
//!
//! ```text
//! probe: irq vector=0x40 pin=<n> count=<n>           (count = interrupts taken)
//! probe: irq sends=<n> latency-ns min=<n> avg=<n> max=<n> used-first=<n> used-ns avg=<n> apic-base=0x<hex>
//!   -- or: probe: irq timeout                        (the first send got none)
//!   -- or: probe: irq unusable apic-base=0x<hex> | pin=<n>
//! ```

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use crate::out::{say, Line};
use crate::svc;
use crate::virtio::{Buf, Device, Queue, TIMEOUT_NS};

/// The vector the console's pin is programmed with.
const VECTOR: u32 = 0x40;
/// flint's IOAPIC (24 pins).
const IOAPIC: u64 = 0xfec0_0000;
const IOAPIC_PINS: u32 = 24;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REDIRECTION_MASKED: u32 = 1 << 16;
/// The xAPIC page (the kernel stub's EOI address is fixed to it).
const LAPIC: u64 = 0xfee0_0000;
const LAPIC_ID: u64 = 0x20;
const LAPIC_SVR: u64 = 0xf0;
const SVR_ENABLE: u32 = 1 << 8;
const SPURIOUS_VECTOR: u32 = 0xff;
const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
/// Most sends (`probe.irq-sends=`).
const MAX_SENDS: u64 = 64;

const MESSAGE: &[u8] = b"probe: virtio-console irq-tx\n";

#[repr(C, align(64))]
struct Mem {
    tx: [u8; 64],
}

static mut MEM: Mem = Mem { tx: [0; 64] };

fn mmio_read(addr: u64) -> u32 {
    // SAFETY: `addr` is an aligned register of the IOAPIC or LAPIC page in
    // the MMIO hole, identity-mapped user-accessible and uncached.
    unsafe { read_volatile(addr as *const u32) }
}

fn mmio_write(addr: u64, value: u32) {
    // SAFETY: as `mmio_read`; a register store changes device state only.
    unsafe { write_volatile(addr as *mut u32, value) }
}

fn ioapic_write(register: u32, value: u32) {
    mmio_write(IOAPIC + IOREGSEL, register);
    mmio_write(IOAPIC + IOWIN, value);
}

/// How long stray interrupts from before the measurement get to arrive.
const SETTLE_NS: u64 = 20_000_000;

pub fn run(dev: &Device, tx: &mut Queue, cmdline: &[u8]) {
    let pin = dev.irq;
    let apic_base = svc::rdmsr(MSR_APIC_BASE);
    if apic_base & APIC_BASE_ENABLE == 0
        || apic_base & APIC_BASE_X2APIC != 0
        || apic_base & 0xf_ffff_f000 != LAPIC
    {
        Line::new()
            .s("irq unusable apic-base=")
            .hex(apic_base)
            .end();
        return;
    }
    if pin >= IOAPIC_PINS {
        Line::new().s("irq unusable pin=").dec(u64::from(pin)).end();
        return;
    }
    let sends = crate::cmdline::param_u64(cmdline, "probe.irq-sends")
        .unwrap_or(1)
        .clamp(1, MAX_SENDS);

    let apic_id = mmio_read(LAPIC + LAPIC_ID) >> 24;
    let svr = mmio_read(LAPIC + LAPIC_SVR);
    mmio_write(LAPIC + LAPIC_SVR, svr | SVR_ENABLE | SPURIOUS_VECTOR);
    let entry = 0x10 + 2 * pin;
    ioapic_write(entry + 1, apic_id << 24);
    ioapic_write(entry, VECTOR); // fixed, physical, active high, edge, unmasked
    dev.transport.ack_interrupts();
    tx.set_interrupts(true);

    let m = addr_of_mut!(MEM);
    // SAFETY: the device does not hold the buffer now.
    unsafe { (&mut (*m).tx)[..MESSAGE.len()].copy_from_slice(MESSAGE) };
    // SAFETY: taking the address of a static's field.
    let buf = Buf::readable(unsafe { addr_of!((*m).tx) } as *const u8, MESSAGE.len());

    svc::user_interrupts(true);
    // An earlier chain's interrupt may still be on its way: a device may
    // decide to notify after publishing the used element (the suppression
    // flag is only a hint), and it now finds interrupts wanted. Let any such
    // stray land before counting.
    let settle = svc::rdtsc();
    while dev.time.since(settle) < SETTLE_NS {
        core::hint::spin_loop();
    }
    dev.transport.ack_interrupts();
    let first = svc::irq_count();
    let (mut min, mut max, mut sum, mut done) = (u64::MAX, 0u64, 0u64, 0u64);
    let (mut used_first, mut used_sum) = (0u64, 0u64);
    for _ in 0..sends {
        let before = svc::irq_count();
        if tx.push(&[buf]).is_none() {
            break;
        }
        let start = svc::rdtsc();
        tx.notify(&dev.transport);
        let mut delivered = false;
        let mut seen_used = None;
        while dev.time.since(start) <= TIMEOUT_NS {
            if svc::irq_count() != before {
                delivered = true;
                break;
            }
            if seen_used.is_none() && tx.used_pending() {
                let t = svc::rdtsc();
                // Only if no interrupt came in between.
                if svc::irq_count() == before {
                    seen_used = Some(t);
                }
            }
            core::hint::spin_loop();
        }
        let at = svc::irq_tsc();
        // The chain itself (its descriptor back on the free list).
        let used = tx.wait(&dev.time).is_some();
        dev.transport.ack_interrupts();
        if !delivered || !used {
            break;
        }
        let ns = dev.time.ns(at.wrapping_sub(start));
        min = min.min(ns);
        max = max.max(ns);
        sum += ns;
        // Seen in the used ring before the interrupt arrived?
        if let Some(t) = seen_used {
            used_first += 1;
            used_sum += dev.time.ns(t.wrapping_sub(start));
        }
        done += 1;
    }
    svc::user_interrupts(false);
    let count = svc::irq_count().wrapping_sub(first);

    ioapic_write(entry, REDIRECTION_MASKED | VECTOR);
    tx.set_interrupts(false);
    mmio_write(LAPIC + LAPIC_SVR, svr);

    if count == 0 {
        say("irq timeout");
        return;
    }
    Line::new()
        .s("irq vector=")
        .hex(u64::from(VECTOR))
        .s(" pin=")
        .dec(u64::from(pin))
        .s(" count=")
        .dec(u64::from(count))
        .end();
    Line::new()
        .s("irq sends=")
        .dec(done)
        .s(" latency-ns min=")
        .dec(if done == 0 { 0 } else { min })
        .s(" avg=")
        .dec(sum / done.max(1))
        .s(" max=")
        .dec(max)
        .s(" used-first=")
        .dec(used_first)
        .s(" used-ns avg=")
        .dec(used_sum / used_first.max(1))
        .s(" apic-base=")
        .hex(apic_base)
        .end();
}
