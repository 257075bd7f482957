//! `probe.virtio-faults=<seconds>` (with `probe.virtio=1`): malformed
//! queues, from user mode, against each virtio-blk and virtio-console
//! device for about that long, then a reset and one normal request.
//!
//! A round: reset and re-initialise the device (as `virtio::restart`), then
//! submit each bad chain of the device's catalogue below on its own — the
//! descriptors at table entries 0.., the head published, QueueNotify — and
//! poll the used ring for it (≤ 0.5 s, bounded); a chain that does not come
//! back ends the round. Then DEVICE_NEEDS_RESET is read and, unless already
//! set, the ring itself is broken — `avail.idx` jumps 0x8000 ahead (even
//! rounds) or a head index of 0x8000 is published (odd rounds) — and Status
//! is polled (≤ 0.5 s) for DEVICE_NEEDS_RESET (a used element instead is
//! counted as used). Rounds go on until the time is up; then the device is
//! reset, initialised again and used normally.
//!
//! The bad requests change nothing on a disk when the device refuses them
//! as it must; every one that a careless device might execute as a write
//! either writes the bytes sector 0 already holds (read just before) or
//! aims past the end, so a disk file that changed is a device bug. The
//! console's bad chains point at zeroed bytes only.
//!
//! ```text
//! probe: virtio-faults dev=<i> rounds=<n> used=<n> needs-reset=<n>
//! probe: virtio-faults dev=<i> chains=<n> timeouts=<n>[ status ok=<n> ioerr=<n> unsupp=<n> other=<n> none=<n>]
//! probe: virtio-faults dev=<i> chain=<k> used-len=<n>|none[ status=<n>]   (probe.virtio-faults-detail=1,
//!                                                     first round only)
//! probe: virtio-faults dev=<i> after-reset console ok   (or: ... after-reset console failed)
//! probe: virtio-faults dev=<i> after-reset read status=<n>|timeout
//! ```

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use crate::out::Line;
use crate::svc;
use crate::virtio::{
    self, Buf, Device, Queue, DESC_INDIRECT, DESC_NEXT, DESC_WRITE, DEVICE_NEEDS_RESET,
};
use crate::{blk, vcon};

/// Guest-physical address far outside any guest's RAM.
const OUTSIDE_RAM: u64 = 0xffff_ffff_0000;
/// In flint's MMIO hole: the first virtio-mmio window's registers.
const MMIO_HOLE: u64 = 0xd000_0000;
/// How long one chain (or the needs-reset after a broken ring) may take.
const WAIT_NS: u64 = 500_000_000;
/// Entries in the indirect table ("too many descriptors": more than the
/// queue's 16).
const INDIRECT: usize = 32;

// virtio-blk request types and status values.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_UNKNOWN: u32 = 0x7fff_0000;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Preset in the status byte: no device writes it.
const NO_STATUS: u8 = 0xff;

#[repr(C, align(4096))]
struct Mem {
    /// Zeroed bytes: data for refused writes, room for refused reads.
    scratch: [u8; 4096],
    /// Sector 0 as read before the rounds.
    golden: [u8; 512],
    header: [u8; 16],
    status: u8,
    /// An indirect descriptor table (address, len | flags << 32 | next << 48).
    indirect: [[u64; 2]; INDIRECT],
}

static mut MEM: Mem = Mem {
    scratch: [0; 4096],
    golden: [0; 512],
    header: [0; 16],
    status: 0,
    indirect: [[0; 2]; INDIRECT],
};

fn mem() -> *mut Mem {
    addr_of_mut!(MEM)
}

fn scratch() -> u64 {
    // SAFETY: taking the address of a static's field.
    unsafe { addr_of!((*mem()).scratch) as u64 }
}

fn golden() -> u64 {
    // SAFETY: as `scratch`.
    unsafe { addr_of!((*mem()).golden) as u64 }
}

fn header() -> u64 {
    // SAFETY: as `scratch`.
    unsafe { addr_of!((*mem()).header) as u64 }
}

fn status() -> u64 {
    // SAFETY: as `scratch`.
    unsafe { addr_of!((*mem()).status) as u64 }
}

fn indirect() -> u64 {
    // SAFETY: as `scratch`.
    unsafe { addr_of!((*mem()).indirect) as u64 }
}

/// One descriptor of a bad chain. NEXT and the next index are added by
/// `submit` (to the following entry) unless `next` names one.
#[derive(Clone, Copy)]
struct D {
    addr: u64,
    len: u32,
    flags: u16,
    next: Option<u16>,
}

const fn r(addr: u64, len: u32) -> D {
    D {
        addr,
        len,
        flags: 0,
        next: None,
    }
}

const fn w(addr: u64, len: u32) -> D {
    D {
        addr,
        len,
        flags: DESC_WRITE,
        next: None,
    }
}

impl D {
    const fn next(self, next: u16) -> D {
        D {
            next: Some(next),
            ..self
        }
    }
}

/// What a chain came back as.
#[derive(Default)]
struct Counts {
    rounds: u64,
    chains: u64,
    used: u64,
    needs_reset: u64,
    timeouts: u64,
    ok: u64,
    ioerr: u64,
    unsupp: u64,
    other: u64,
    none: u64,
}

/// Writes the blk request header (no request in flight).
fn set_header(kind: u32, sector: u64) {
    let h = header() as *mut u8;
    // SAFETY: the device holds no chain now (the previous one came back).
    unsafe {
        write_volatile(h as *mut u32, kind);
        write_volatile(h.add(4) as *mut u32, 0);
        write_volatile(h.add(8) as *mut u64, sector);
        write_volatile(status() as *mut u8, NO_STATUS);
    }
}

/// The indirect table: a blk request (header, data, ..., status) or, for
/// the console, one zeroed byte per entry, all readable.
fn fill_indirect(blk: bool) {
    let t = indirect() as *mut [u64; 2];
    for i in 0..INDIRECT {
        let last = i + 1 == INDIRECT;
        let (addr, len, flags): (u64, u32, u16) = match (blk, i) {
            (false, _) => (scratch(), 1, 0),
            (true, 0) => (header(), 16, 0),
            (true, _) if last => (status(), 1, DESC_WRITE),
            (true, _) => (scratch(), 512, DESC_WRITE),
        };
        let flags = flags | if last { 0 } else { DESC_NEXT };
        let next = if last { 0 } else { i as u64 + 1 };
        // SAFETY: i < INDIRECT; the device reads the table only through a
        // chain in flight, and none is.
        unsafe {
            write_volatile(
                t.add(i),
                [addr, u64::from(len) | u64::from(flags) << 32 | next << 48],
            )
        };
    }
}

/// Publishes `chain` at table entries 0.., notifies and waits (bounded)
/// for a used element: `Some(len)` or `None`.
fn submit(dev: &Device, q: &mut Queue, chain: &[D]) -> Option<u32> {
    for (i, d) in chain.iter().enumerate() {
        let last = i + 1 == chain.len();
        let (flags, next) = match d.next {
            Some(n) => (d.flags | DESC_NEXT, n),
            None if last => (d.flags, 0),
            None => (d.flags | DESC_NEXT, i as u16 + 1),
        };
        q.raw_desc(i as u16, d.addr, d.len, flags, next);
    }
    q.raw_publish(0);
    q.notify(&dev.transport);
    wait_used(dev, q)
}

fn wait_used(dev: &Device, q: &mut Queue) -> Option<u32> {
    let start = svc::rdtsc();
    loop {
        if let Some((_, len)) = q.raw_poll() {
            return Some(len);
        }
        if dev.time.since(start) > WAIT_NS {
            return None;
        }
        core::hint::spin_loop();
    }
}

/// The bad virtio-blk requests (each needs the header set first: kind and
/// sector), for a disk of `capacity` sectors; `golden_ok` when sector 0 was
/// read into `golden`.
fn blk_chain(k: usize, capacity: u64, golden_ok: bool) -> Option<(u32, u64, [D; 3], usize)> {
    let (h, s, data) = (r(header(), 16), w(status(), 1), w(scratch(), 512));
    let past = capacity;
    Some(match k {
        // Header outside RAM, then in the MMIO hole.
        0 => (T_IN, 0, [r(OUTSIDE_RAM, 16), data, s], 3),
        1 => (T_IN, 0, [r(MMIO_HOLE, 16), data, s], 3),
        // Data outside RAM / in the MMIO hole.
        2 => (T_IN, 0, [h, w(OUTSIDE_RAM, 512), s], 3),
        3 => (T_IN, 0, [h, w(MMIO_HOLE, 512), s], 3),
        // Lengths 0 and 0xffffffff, reading and writing.
        4 => (T_IN, 0, [h, w(scratch(), 0), s], 3),
        5 => (T_IN, 0, [h, w(scratch(), u32::MAX), s], 3),
        6 => (T_OUT, 0, [h, r(scratch(), u32::MAX), s], 3),
        // A loop: the status descriptor leads back to the header.
        7 => (T_IN, 0, [h, data, s.next(0)], 3),
        // Next indices past the queue (16 entries) and far past it.
        8 => (T_IN, 0, [h.next(16), data, s], 3),
        9 => (T_IN, 0, [h, data.next(0xffff), s], 3),
        // Wrong directions: read-only status, writable header, read-only
        // data of a read, writable data of a write (of sector 0's bytes).
        10 => (T_IN, 0, [h, data, r(status(), 1)], 3),
        11 => (T_IN, 0, [w(header(), 16), data, s], 3),
        12 => (T_IN, 0, [h, r(scratch(), 512), s], 3),
        13 if golden_ok => (T_OUT, 0, [h, w(golden(), 512), s], 3),
        // Past the end of the disk, straddling it, absurd sectors (1 << 55
        // wraps to offset 0 in 64-bit byte arithmetic).
        14 => (T_OUT, past, [h, r(scratch(), 512), s], 3),
        15 => (T_OUT, past.wrapping_sub(1), [h, r(scratch(), 1024), s], 3),
        16 => (T_OUT, 1 << 55, [h, r(scratch(), 512), s], 3),
        17 => (T_OUT, u64::MAX, [h, r(scratch(), 512), s], 3),
        18 => (T_IN, past, [h, data, s], 3),
        19 => (T_IN, u64::MAX - 7, [h, data, s], 3),
        // Unknown request type; header alone (no status descriptor).
        20 => (T_UNKNOWN, 0, [h, data, s], 3),
        21 => (T_IN, 0, [h, data, s], 1),
        // Too many descriptors: an indirect table of 32 (INDIRECT_DESC not
        // negotiated, and more than the queue size anyway).
        22 => (
            T_IN,
            0,
            [
                D {
                    addr: indirect(),
                    len: (INDIRECT * 16) as u32,
                    flags: DESC_INDIRECT,
                    next: None,
                },
                data,
                s,
            ],
            1,
        ),
        _ => return None,
    })
}

const BLK_CHAINS: usize = 23;

/// The bad console transmit chains (zeroed bytes only).
fn console_chain(k: usize) -> Option<([D; 2], usize)> {
    let ok = r(scratch(), 8);
    Some(match k {
        0 => ([r(OUTSIDE_RAM, 16), ok], 1),
        1 => ([r(MMIO_HOLE, 16), ok], 1),
        2 => ([r(scratch(), 0), ok], 1),
        3 => ([r(scratch(), u32::MAX), ok], 1),
        // A good buffer, then a bad one: nothing may be written out.
        4 => ([ok, r(OUTSIDE_RAM, 16)], 2),
        5 => ([ok, r(MMIO_HOLE, 16)], 2),
        // Loops: to itself, and two entries to each other.
        6 => ([ok.next(0), ok], 1),
        7 => ([ok, ok.next(0)], 2),
        // Next indices past the queue.
        8 => ([ok.next(16), ok], 1),
        9 => ([ok.next(0xffff), ok], 1),
        // Wrong direction: device-writable buffers on the transmit queue.
        10 => ([w(scratch(), 8), ok], 1),
        11 => ([ok, w(scratch(), 8)], 2),
        // Too many descriptors (indirect, 32 entries).
        12 => (
            [
                D {
                    addr: indirect(),
                    len: (INDIRECT * 16) as u32,
                    flags: DESC_INDIRECT,
                    next: None,
                },
                ok,
            ],
            1,
        ),
        _ => return None,
    })
}

fn line(dev: &Device) -> Line {
    let mut line = Line::new();
    line.s("virtio-faults dev=").dec(dev.index as u64);
    line
}

/// `probe.virtio-faults-detail=1`: what chain `k` of the first round got.
fn detail_line(dev: &Device, k: usize, used_len: Option<u32>, status: Option<u8>) {
    let mut l = line(dev);
    l.s(" chain=").dec(k as u64).s(" used-len=");
    match used_len {
        Some(n) => l.dec(u64::from(n)),
        None => l.s("none"),
    };
    if let Some(s) = status {
        l.s(" status=").dec(u64::from(s));
    }
    l.end();
}

/// A good blk IN of sector 0 (512 bytes) into `golden`: its status.
fn read_sector0(dev: &Device, q: &mut Queue) -> Option<u8> {
    set_header(T_IN, 0);
    let bufs = [
        Buf::readable(header() as *const u8, 16),
        Buf::writable(golden() as *mut u8, 512),
        Buf::writable(status() as *mut u8, 1),
    ];
    q.round_trip(dev, &bufs)?;
    // SAFETY: the request is complete (acquire in `poll`).
    Some(unsafe { read_volatile(status() as *const u8) })
}

pub fn run(dev: &Device, seconds: u64, detail: bool) {
    let blk = dev.device_id == blk::DEVICE_ID;
    let queue = if blk { 0 } else { 1 };
    // The bytes the disk holds at sector 0 (for the writes that must not
    // happen but would be harmless), and its size.
    let Some(mut queues) = virtio::restart(dev) else {
        return;
    };
    let capacity = dev.transport.config64(0).unwrap_or(0);
    let golden_ok = blk
        && queues[0]
            .as_mut()
            .is_some_and(|q| read_sector0(dev, q) == Some(S_OK));
    fill_indirect(blk);

    let mut c = Counts::default();
    let start = svc::rdtsc();
    let limit = seconds.saturating_mul(1_000_000_000);
    while dev.time.since(start) < limit {
        let Some(q) = queues[queue].as_mut() else {
            break;
        };
        // One of each chain.
        let mut k = 0;
        let mut timed_out = false;
        loop {
            let got = if blk {
                let Some((kind, sector, chain, n)) = blk_chain(k, capacity, golden_ok) else {
                    if k < BLK_CHAINS {
                        k += 1;
                        continue;
                    }
                    break;
                };
                set_header(kind, sector);
                let got = submit(dev, q, &chain[..n]);
                // SAFETY: the chain came back (acquire in `raw_poll`), or
                // is abandoned: a byte the device may still write.
                let st = unsafe { read_volatile(status() as *const u8) };
                if got.is_some() {
                    match st {
                        S_OK => c.ok += 1,
                        S_IOERR => c.ioerr += 1,
                        S_UNSUPP => c.unsupp += 1,
                        NO_STATUS => c.none += 1,
                        _ => c.other += 1,
                    }
                }
                if detail && c.rounds == 0 {
                    detail_line(dev, k, got, Some(st));
                }
                got
            } else {
                let Some((chain, n)) = console_chain(k) else {
                    break;
                };
                let got = submit(dev, q, &chain[..n]);
                if detail && c.rounds == 0 {
                    detail_line(dev, k, got, None);
                }
                got
            };
            c.chains += 1;
            k += 1;
            match got {
                Some(_) => c.used += 1,
                None => {
                    c.timeouts += 1;
                    timed_out = true;
                    break;
                }
            }
        }
        // Then break the ring itself.
        if dev.transport.status() & DEVICE_NEEDS_RESET != 0 {
            c.needs_reset += 1;
        } else if !timed_out {
            if c.rounds % 2 == 0 {
                q.raw_avail_jump(0x8000);
            } else {
                q.raw_publish(0x8000);
            }
            q.notify(&dev.transport);
            let at = svc::rdtsc();
            loop {
                if dev.transport.status() & DEVICE_NEEDS_RESET != 0 {
                    c.needs_reset += 1;
                    break;
                }
                if q.raw_poll().is_some() {
                    c.used += 1;
                    break;
                }
                if dev.time.since(at) > WAIT_NS {
                    break;
                }
            }
        }
        c.rounds += 1;
        match virtio::restart(dev) {
            Some(fresh) => queues = fresh,
            None => return,
        }
    }

    line(dev)
        .s(" rounds=")
        .dec(c.rounds)
        .s(" used=")
        .dec(c.used)
        .s(" needs-reset=")
        .dec(c.needs_reset)
        .end();
    let mut l = line(dev);
    l.s(" chains=")
        .dec(c.chains)
        .s(" timeouts=")
        .dec(c.timeouts);
    if blk {
        l.s(" status ok=")
            .dec(c.ok)
            .s(" ioerr=")
            .dec(c.ioerr)
            .s(" unsupp=")
            .dec(c.unsupp)
            .s(" other=")
            .dec(c.other)
            .s(" none=")
            .dec(c.none);
    }
    l.end();

    // Reset, initialise again, use normally.
    let Some(mut queues) = virtio::restart(dev) else {
        return;
    };
    if blk {
        let status = queues[0].as_mut().and_then(|q| read_sector0(dev, q));
        let mut l = line(dev);
        l.s(" after-reset read status=");
        match status {
            Some(s) => l.dec(u64::from(s)),
            None => l.s("timeout"),
        };
        l.end();
    } else if dev.device_id == vcon::DEVICE_ID {
        const MESSAGE: &[u8] = b"probe: virtio-console after faults\n";
        // SAFETY: no chain in flight; the scratch bytes are the probe's.
        unsafe {
            (&mut (*mem()).scratch)[..MESSAGE.len()].copy_from_slice(MESSAGE);
        }
        let buf = Buf::readable(scratch() as *const u8, MESSAGE.len());
        let ok = queues[1]
            .as_mut()
            .is_some_and(|q| q.round_trip(dev, &[buf]).is_some());
        // SAFETY: as above; zeroed again for any later device.
        unsafe { (&mut (*mem()).scratch)[..MESSAGE.len()].fill(0) };
        line(dev)
            .s(if ok {
                " after-reset console ok"
            } else {
                " after-reset console failed"
            })
            .end();
    }
}
