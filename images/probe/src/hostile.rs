//! `probe.hostile=<seconds>` (with `probe.virtio=1`): a guest that attacks
//! its monitor from user mode for about that long — random values to every
//! virtio-mmio register of every device (status, features, queue
//! selection, sizes, addresses, ready, notify, interrupt ack, config
//! space), devices brought up properly but on random descriptor tables,
//! avail rings and indirect tables and then notified,
//! random reads and writes anywhere in the MMIO hole's device area, and
//! random port I/O (through the service call) — then resets every device
//! and hands back to the normal drivers (virtio.rs runs them again), which
//! must find the devices working.
//!
//! The monitor is the target, not the probe: whatever the devices are told
//! to write lands in memory the probe keeps for the purpose. Every address
//! the probe hands a device — a queue's rings, a descriptor's buffer, an
//! indirect table — is either in that memory or outside RAM. Tables and
//! driver rings live in TABLES, which no descriptor the probe writes lets
//! a device write (device-writable buffers point into DATA, used rings
//! into USED), so a device never reads a table it could have rewritten.
//! Ports that end the VM (the exit port, i8042 reset, ACPI sleep), the UART
//! (whose divisor latch would garble the report) and the LAPIC and IOAPIC
//! pages (an INIT IPI or an interrupt storm would end the probe, not test
//! the monitor's device models) are left alone.
//!
//! ```text
//! probe: hostile seconds=<s> mmio-writes=<n> mmio-reads=<n> ports=<n> notifies=<n> activations=<n>
//! ```

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use crate::kvmclock;
use crate::out::Line;
use crate::svc;

const TABLES_LEN: usize = 64 << 10;
const DATA_LEN: usize = 64 << 10;
const USED_LEN: usize = 16 << 10;

#[repr(C, align(4096))]
struct Chaos {
    tables: [u8; TABLES_LEN],
    data: [u8; DATA_LEN],
    used: [u8; USED_LEN],
}

#[link_section = ".lazy.hostile"]
static mut CHAOS: Chaos = Chaos {
    tables: [0; TABLES_LEN],
    data: [0; DATA_LEN],
    used: [0; USED_LEN],
};

/// Far outside any guest's RAM, and the MMIO hole itself: addresses a
/// device must refuse to touch.
const OUTSIDE: [u64; 4] = [
    0x0000_7fff_ffff_f000,
    0xffff_ffff_ffff_f000,
    0xd000_0000,
    0x1_0000_0000 - 0x1000,
];

/// The device area of the MMIO hole: the virtio-mmio slots.
const DEVICE_AREA: core::ops::Range<u64> = 0xd000_0000..0xd002_0000;

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn base(area: u8) -> (u64, usize) {
    let c = addr_of_mut!(CHAOS);
    // SAFETY: taking field addresses of a static.
    unsafe {
        match area {
            0 => (addr_of_mut!((*c).tables) as u64, TABLES_LEN),
            1 => (addr_of_mut!((*c).data) as u64, DATA_LEN),
            _ => (addr_of_mut!((*c).used) as u64, USED_LEN),
        }
    }
}

/// An address for a device to read tables from (TABLES or outside RAM).
fn table_addr(r: &mut Rng) -> u64 {
    let (b, len) = base(0);
    match r.below(8) {
        0 => OUTSIDE[r.below(4) as usize] + r.below(0x1000),
        _ => b + r.below(len as u64 - 64) & !0xf,
    }
}

/// An address (and a length keeping it inside) for a device to write.
fn writable(r: &mut Rng, area: u8) -> (u64, u32) {
    if r.below(8) == 0 {
        return (OUTSIDE[r.below(4) as usize] + r.below(0x1000), r.next() as u32);
    }
    let (b, len) = base(area);
    let off = r.below(len as u64);
    let room = len as u64 - off;
    (b + off, (r.below(room) + 1) as u32)
}

/// Fills TABLES with descriptors whose buffers are in DATA (writable or
/// not), in TABLES (read-only or indirect), or outside RAM; random lengths
/// within their area, random flags and next indices. Avail rings are
/// whatever these bytes say.
fn fill_tables(r: &mut Rng) {
    let (b, len) = base(0);
    for at in (0..len).step_by(16) {
        let flags = r.below(8) as u16;
        let (addr, dlen, flags) = match r.below(4) {
            // Device-writable, or plain data: DATA only.
            0 | 1 => {
                let (a, l) = writable(r, 1);
                (a, l, flags & !4)
            }
            // Read-only or an indirect table: TABLES, never WRITE.
            2 => {
                let a = table_addr(r);
                let room = (b + len as u64).saturating_sub(a).min(u64::from(u32::MAX));
                (a, r.below(room.max(1)) as u32, flags & !2)
            }
            _ => (OUTSIDE[r.below(4) as usize], r.next() as u32, flags & !2),
        };
        let next = r.next() as u16;
        // SAFETY: `at + 16 <= len`: inside TABLES, which only the probe writes.
        unsafe {
            let p = (b as *mut u8).add(at);
            write_volatile(p as *mut u64, addr);
            write_volatile(p.add(8) as *mut u32, dlen);
            write_volatile(p.add(12) as *mut u16, flags);
            write_volatile(p.add(14) as *mut u16, next);
        }
    }
}

/// The value to write at register `offset`: addresses sanitised as the
/// module comment says, anything else random (often small).
fn register_value(r: &mut Rng, offset: u64) -> u32 {
    match offset {
        // QueueDesc / QueueDriver low: tables; QueueDevice low: USED.
        0x80 | 0x90 => table_addr(r) as u32,
        0xa0 => writable(r, 2).0 as u32,
        // The high halves: 0 (below 4 GiB, in RAM) or far away.
        0x84 | 0x94 | 0xa4 => {
            if r.below(4) == 0 {
                (r.next() as u32) | 1
            } else {
                0
            }
        }
        _ => match r.below(4) {
            0 => r.next() as u32,
            1 => r.below(0x100) as u32,
            2 => 1 << r.below(32),
            _ => r.below(8) as u32,
        },
    }
}

fn in_device_area(addr: u64) -> bool {
    DEVICE_AREA.contains(&addr) && DEVICE_AREA.contains(&(addr + 3))
}

/// One MMIO access somewhere in the device area.
fn mmio(r: &mut Rng, counts: &mut Counts) {
    let slot = DEVICE_AREA.start + r.below(32) * 0x1000;
    let offset = match r.below(4) {
        0 => r.below(0x1000) & !3,
        _ => r.below(0x140) & !3,
    };
    let addr = slot + offset;
    if !in_device_area(addr) {
        return;
    }
    if r.below(3) == 0 {
        // SAFETY: in the device area of the MMIO hole (identity-mapped,
        // uncached, user-accessible): the load is an exit, no probe memory.
        unsafe { read_volatile(addr as *const u32) };
        counts.mmio_reads += 1;
    } else {
        let value = register_value(r, offset);
        // SAFETY: as above; device registers only (addresses the devices are
        // given are sanitised by `register_value`).
        unsafe { write_volatile(addr as *mut u32, value) };
        counts.mmio_writes += 1;
        counts.notifies += u64::from(offset == 0x50);
    }
}

/// Ports left alone (see the module comment).
fn spared(port: u16) -> bool {
    matches!(port, 0xf4 | 0x64 | 0x60 | 0x3c0 | 0x3c1 | 0xcf9 | 0x3f8..=0x3ff | 0x80)
}

fn port(r: &mut Rng, counts: &mut Counts) {
    let port = match r.below(2) {
        0 => r.next() as u16,
        _ => [0x3f0u16, 0x3c2, 0x20, 0x21, 0x40, 0x43, 0x70, 0x71, 0x2f8, 0x510][r.below(10) as usize],
    };
    if spared(port) {
        return;
    }
    if r.below(2) == 0 {
        svc::outb(port, r.next() as u8);
    } else {
        core::hint::black_box(svc::inb(port));
    }
    counts.ports += 1;
}

/// Drives device `slot` to DRIVER_OK the proper way (VERSION_1 accepted)
/// but with queues on random tables, then notifies its queues, so the
/// random rings are actually processed rather than refused at the door.
fn activate(r: &mut Rng, slot: u64, counts: &mut Counts) {
    let reg = |offset: u64, value: u32| {
        // SAFETY: a register of a device slot in the device area (checked by
        // the caller); queue addresses come from `table_addr` / `writable`.
        unsafe { write_volatile((slot + offset) as *mut u32, value) }
    };
    reg(0x70, 0);
    reg(0x70, 1 | 2);
    reg(0x24, 1);
    reg(0x20, 1); // VERSION_1
    // SAFETY: as `reg`: DeviceFeaturesSel, then DeviceFeatures.
    let offered = unsafe {
        write_volatile((slot + 0x14) as *mut u32, 0);
        read_volatile((slot + 0x10) as *const u32)
    };
    reg(0x24, 0);
    reg(0x20, offered & r.next() as u32);
    reg(0x70, 1 | 2 | 8);
    for q in 0..2 {
        reg(0x30, q);
        // SAFETY: as `reg`: QueueNumMax of the selected queue.
        let max = unsafe { read_volatile((slot + 0x34) as *const u32) }.max(1);
        reg(0x38, (1 << r.below(9)).min(max));
        let desc = table_addr(r);
        let avail = table_addr(r);
        // The used ring's 4-byte alignment (and room for it in USED).
        let (b, len) = base(2);
        let used = match r.below(8) {
            0 => writable(r, 2).0,
            _ => b + (r.below(len as u64 / 2) & !3),
        };
        for (offset, addr) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            reg(offset, addr as u32);
            reg(offset + 4, (addr >> 32) as u32);
        }
        reg(0x44, 1);
    }
    reg(0x70, 1 | 2 | 8 | 4);
    for _ in 0..4 {
        reg(0x50, r.below(3) as u32);
        counts.notifies += 1;
    }
    counts.activations += 1;
}

#[derive(Default)]
struct Counts {
    activations: u64,
    mmio_writes: u64,
    mmio_reads: u64,
    ports: u64,
    notifies: u64,
}

/// Attack for `seconds`, then reset every device in `slots` (their MMIO
/// base addresses).
pub fn run(seconds: u64, seed: u64, slots: &[u64]) {
    let mut r = Rng(seed | 1);
    let mut counts = Counts::default();
    let start = kvmclock::now_ns().unwrap_or(0);
    let until = start.saturating_add(seconds.saturating_mul(1_000_000_000));
    let mut round = 0u64;
    while kvmclock::now_ns().unwrap_or(until) < until {
        if round.is_multiple_of(64) {
            fill_tables(&mut r);
        }
        round += 1;
        if round.is_multiple_of(16) && !slots.is_empty() {
            let slot = slots[r.below(slots.len() as u64) as usize];
            if in_device_area(slot) && in_device_area(slot + 0xa4) {
                activate(&mut r, slot, &mut counts);
            }
        }
        for _ in 0..32 {
            mmio(&mut r, &mut counts);
        }
        port(&mut r, &mut counts);
    }
    for &slot in slots {
        if in_device_area(slot + 0x70) {
            // SAFETY: a device's Status register: writing 0 resets it.
            unsafe { write_volatile((slot + 0x70) as *mut u32, 0) };
        }
    }
    Line::new()
        .s("hostile seconds=")
        .dec(seconds)
        .s(" mmio-writes=")
        .dec(counts.mmio_writes)
        .s(" mmio-reads=")
        .dec(counts.mmio_reads)
        .s(" ports=")
        .dec(counts.ports)
        .s(" notifies=")
        .dec(counts.notifies)
        .s(" activations=")
        .dec(counts.activations)
        .end();
}
