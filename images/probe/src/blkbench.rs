//! `probe.blk-bench=1` (`probe.blk-bench-qd=<n>`, default 1): sequential
//! throughput of the first writable virtio-blk disk. For 8 KiB, 16 KiB and
//! 1 MiB requests the whole disk is written (then FLUSHed) and read back,
//! with up to `n` requests in flight (fewer when the 128-entry queue
//! cannot hold `n` requests of that many segments: `qd=` says how many),
//! each phase timed with kvmclock.
//! **Destroys the disk's contents.**
//!
//! ```text
//! probe: blk-bench dev=<i> size=<n> qd=<n> write-bytes=<n> write-ns=<t> read-bytes=<n> read-ns=<t>
//!   -- or: probe: virtio-blk dev=<i> blk-bench size=<n> unsupported (size_max/seg_max)
//!   -- or: probe: virtio-blk dev=<i> blk-bench size=<n> write|read at=<offset> status=<n>
//!   -- or: probe: virtio-blk dev=<i> blk-bench flush status=<n>|timeout
//! ```
//!
//! Each request's header and status live in a slot picked by its chain's
//! head, so requests in flight never share them. The data comes from one
//! 1 MiB buffer cut into request-sized pieces used in turn; with more
//! requests in flight than pieces, reads land in the same memory (the
//! bench does not look at what it read).

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::blk::{
    line, pattern_byte, request, status_text, CFG_SEG_MAX, CFG_SIZE_MAX, F_FLUSH, F_SEG_MAX,
    F_SIZE_MAX, NO_STATUS, SECTOR, T_FLUSH, T_IN, T_OUT,
};
use crate::kvmclock;
use crate::out::Line;
use crate::virtio::{Buf, Device, Queue, BENCH_QUEUE_SIZE};

/// Has run (on the first writable disk only).
static BENCHED: AtomicBool = AtomicBool::new(false);

/// The largest request.
const BENCH_MAX: usize = 1 << 20;
/// Most descriptors in one chain here (a 1 MiB request in 64 KiB segments,
/// as a passthrough loop device allows, plus header and status).
const CHAIN: usize = 34;
const SLOTS: usize = BENCH_QUEUE_SIZE as usize;

#[repr(C, align(4096))]
struct BenchBuf([u8; BENCH_MAX]);

/// Request data (see the module comment).
#[link_section = ".lazy.blkbench"]
static mut BENCH_BUF: BenchBuf = BenchBuf([0; BENCH_MAX]);

/// A request's header and status byte.
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct Slot {
    header: [u8; 16],
    status: u8,
}

/// One slot per descriptor head.
static mut SLOTS_MEM: [Slot; SLOTS] = [Slot {
    header: [0; 16],
    status: 0,
}; SLOTS];

/// The device's request limits: size_max (bytes per data descriptor) and
/// seg_max (data descriptors per request), where negotiated; read once, as
/// each config read is an exit.
#[derive(Clone, Copy)]
struct Limits {
    size_max: usize,
    seg_max: usize,
}

fn limits(dev: &Device) -> Limits {
    let t = &dev.transport;
    let get = |bit: u32, offset: u64| {
        t.config32(offset)
            .filter(|&s| dev.has(bit) && s > 0)
            .map_or(usize::MAX, |s| s as usize)
    };
    Limits {
        size_max: get(F_SIZE_MAX, CFG_SIZE_MAX),
        seg_max: get(F_SEG_MAX, CFG_SEG_MAX),
    }
}

/// One request's shape: data descriptors for `len` bytes at `offset` in
/// the bench buffer, within the limits; 0 descriptors if they cannot hold it.
fn segments(lim: Limits, offset: usize, len: usize, bufs: &mut [Buf], device_writes: bool) -> usize {
    let most = lim.seg_max.min(bufs.len());
    let base = addr_of_mut!(BENCH_BUF) as *mut u8;
    let (mut n, mut off) = (0, 0);
    while off < len && n < most {
        let l = (len - off).min(lim.size_max);
        // SAFETY: offset + off + l <= offset + len <= BENCH_MAX: inside the buffer.
        let p = unsafe { base.add(offset + off) };
        bufs[n] = if device_writes {
            Buf::writable(p, l)
        } else {
            Buf::readable(p as *const u8, l)
        };
        n += 1;
        off += l;
    }
    if off < len {
        0
    } else {
        n
    }
}

/// Pushes request `n` of a phase (`len` bytes at `sector`) without
/// notifying; its head, or `None` if the queue or the limits cannot hold it.
fn submit(q: &mut Queue, lim: Limits, op: u32, sector: u64, len: usize, n: u64) -> Option<u16> {
    let pieces = (BENCH_MAX / len).max(1);
    let offset = (n as usize % pieces) * len;
    let mut chain = [Buf::readable(&0u8, 0); CHAIN];
    let segs = segments(lim, offset, len, &mut chain[1..CHAIN - 1], op == T_IN);
    if segs == 0 || segs + 2 > usize::from(q.size()) {
        return None;
    }
    let head = usize::from(q.next_head()) % SLOTS;
    // SAFETY: slot `head` belongs to the chain about to be pushed with that
    // head; its previous request completed (its head came back to the free
    // list). The queue's release store publishes these writes.
    unsafe {
        let slot = addr_of_mut!(SLOTS_MEM[head]);
        let h = addr_of_mut!((*slot).header) as *mut u8;
        write_volatile(h as *mut u32, op);
        write_volatile(h.add(4) as *mut u32, 0);
        write_volatile(h.add(8) as *mut u64, sector);
        let s = addr_of_mut!((*slot).status);
        write_volatile(s, NO_STATUS);
        chain[0] = Buf::readable(h as *const u8, 16);
        chain[segs + 1] = Buf::writable(s, 1);
    }
    q.push(&chain[..segs + 2])
}

/// The status the device wrote for the request whose chain had `head`.
fn status_of(head: u16) -> u8 {
    // SAFETY: the device is done with the chain (acquire in `poll`).
    unsafe { read_volatile(addr_of!(SLOTS_MEM[usize::from(head) % SLOTS].status)) }
}

fn now() -> u64 {
    kvmclock::now_ns().unwrap_or(0)
}

/// What one phase does.
#[derive(Clone, Copy)]
struct Phase {
    op: u32,
    size: usize,
    depth: u16,
    total: u64,
}

/// The whole disk in `size` requests, `depth` in flight (fewer if the
/// queue cannot hold that many); then FLUSH after writes. `(bytes, ns,
/// depth used)`, or `None` after reporting what failed.
fn phase(dev: &Device, q: &mut Queue, lim: Limits, p: Phase) -> Option<(u64, u64, u16)> {
    // As many requests in flight as the queue has descriptors for.
    let per_request = p.size.div_ceil(lim.size_max.min(p.size).max(1)) + 2;
    let depth = p.depth.min((usize::from(q.size()) / per_request).max(1) as u16);
    let start = now();
    let count = p.total.div_ceil(p.size as u64);
    let len_of = |n: u64| (p.total - n * p.size as u64).min(p.size as u64) as usize;
    let mut failed: Option<(u64, u8)> = None;
    let mut unsupported = false;
    let submitted = q.stream(
        dev,
        count,
        depth,
        |q, n| {
            let head = submit(q, lim, p.op, n * p.size as u64 / SECTOR, len_of(n), n);
            unsupported |= head.is_none();
            head
        },
        |c| match status_of(c.head) {
            0 => true,
            s => {
                failed = Some((u64::from(c.head), s));
                false
            }
        },
    );
    if unsupported {
        line(dev)
            .s(" blk-bench size=")
            .dec(p.size as u64)
            .s(" unsupported (size_max/seg_max)")
            .end();
        return None;
    }
    if let Some((head, status)) = failed {
        let mut l = line(dev);
        l.s(" blk-bench size=")
            .dec(p.size as u64)
            .s(if p.op == T_IN { " read" } else { " write" })
            .s(" head=")
            .dec(head)
            .s(" status=");
        status_text(&mut l, Some(status));
        l.end();
        return None;
    }
    submitted?;
    if p.op == T_OUT && dev.has(F_FLUSH) {
        let status = request(dev, q, T_FLUSH, 0, None);
        if status != Some(0) {
            let mut l = line(dev);
            l.s(" blk-bench flush status=");
            status_text(&mut l, status);
            l.end();
            return None;
        }
    }
    Some((p.total, now().saturating_sub(start), depth))
}

/// Runs the bench once per boot, on the first writable disk it is asked on.
pub fn run(dev: &Device, q: &mut Queue, capacity: u64, block: usize, depth: u64) {
    if BENCHED.swap(true, Ordering::Relaxed) {
        return;
    }
    let total = capacity.saturating_mul(SECTOR);
    let depth = depth.clamp(1, u64::from(q.size())) as u16;
    let lim = limits(dev);
    // SAFETY: no request in flight; the probe is single-threaded.
    unsafe {
        let b = &mut *addr_of_mut!(BENCH_BUF);
        for (i, x) in b.0.iter_mut().enumerate() {
            *x = pattern_byte(i as u64);
        }
    }
    for size in [8usize << 10, 16 << 10, BENCH_MAX] {
        // Whole logical blocks only (the last request of an odd-sized disk).
        let size = size - size % block;
        let mut p = Phase {
            op: T_OUT,
            size,
            depth,
            total,
        };
        let Some((wbytes, wns, used)) = phase(dev, q, lim, p) else {
            return;
        };
        p.op = T_IN;
        let Some((rbytes, rns, _)) = phase(dev, q, lim, p) else {
            return;
        };
        Line::new()
            .s("blk-bench dev=")
            .dec(dev.index as u64)
            .s(" size=")
            .dec(size as u64)
            .s(" qd=")
            .dec(u64::from(used))
            .s(" write-bytes=")
            .dec(wbytes)
            .s(" write-ns=")
            .dec(wns)
            .s(" read-bytes=")
            .dec(rbytes)
            .s(" read-ns=")
            .dec(rns)
            .end();
    }
}
