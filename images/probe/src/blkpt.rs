//! Checks for passthrough disks (flint's `--disk ...,passthrough`), each
//! asked for on the command line:
//!
//! ```text
//! probe.blk-topology=1    probe: virtio-blk dev=<i> topology phys-exp=<n> align=<n> min-io=<n> opt-io=<n>
//!                         (or: ... topology none, when VIRTIO_BLK_F_TOPOLOGY is not offered)
//! probe.blk-misaligned=1  probe: virtio-blk dev=<i> misaligned write=<status> read=<status> match=<0|1>
//! probe.blk-durable=<s>   probe: virtio-blk dev=<i> durable seq=<n>      (after each acknowledged FLUSH)
//!                         probe: virtio-blk dev=<i> durable done seq=<n> (the last one, after <s> seconds
//!                                                                        or when the disk is full)
//! ```
//!
//! `misaligned`: one logical block written from two buffers at odd
//! addresses (valid virtio, not what O_DIRECT takes) and read back into two
//! others, so the monitor must bounce both ways.
//!
//! `durable` (with `probe.blk-durable-nonce=<n>`): block k of the disk gets
//! a record {magic "FLINTDUR", nonce, k, FNV-1a of the rest, payload
//! derived from nonce and k}; each write is followed by a FLUSH, and only
//! once the FLUSH is acknowledged does the probe print `durable seq=k`. A
//! host that kills the monitor at any moment must then find every block up
//! to the last printed k intact.

use core::ptr::{addr_of_mut, write_bytes};

use crate::blk::{data, line, request, request_bufs, status_text, F_TOPOLOGY, SECTOR, T_FLUSH, T_IN, T_OUT};
use crate::cmdline;
use crate::kvmclock;
use crate::virtio::{Buf, Device, Queue};

/// What the checks need to know of the disk.
#[derive(Clone, Copy)]
pub struct Disk {
    pub ro: bool,
    /// Logical block size in bytes (a multiple of 512, at most 64 KiB).
    pub block: usize,
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
}

pub fn run(dev: &Device, q: &mut Queue, cmdline: &[u8], disk: Disk) {
    if cmdline::param(cmdline, "probe.blk-topology") == Some(b"1") {
        topology(dev);
    }
    if disk.ro {
        return;
    }
    if cmdline::param(cmdline, "probe.blk-misaligned") == Some(b"1") {
        misaligned(dev, q, disk.block);
    }
    if let Some(seconds) = cmdline::param_u64(cmdline, "probe.blk-durable") {
        let nonce = cmdline::param_u64(cmdline, "probe.blk-durable-nonce").unwrap_or(0);
        durable(dev, q, disk, seconds.min(600), nonce);
    }
}

fn topology(dev: &Device) {
    let t = &dev.transport;
    let mut l = line(dev);
    l.s(" topology");
    match (dev.has(F_TOPOLOGY), t.config32(24), t.config32(28)) {
        (true, Some(a), Some(opt)) => {
            l.s(" phys-exp=")
                .dec(u64::from(a & 0xff))
                .s(" align=")
                .dec(u64::from((a >> 8) & 0xff))
                .s(" min-io=")
                .dec(u64::from(a >> 16))
                .s(" opt-io=")
                .dec(u64::from(opt));
        }
        _ => {
            l.s(" none");
        }
    }
    l.end();
}

/// Staging for the misaligned check: two source and two destination
/// windows, each at an odd offset.
#[repr(C, align(4096))]
struct Odd([u8; 4 * 0x11000]);

#[link_section = ".lazy.blkpt"]
static mut ODD: Odd = Odd([0; 4 * 0x11000]);

fn misaligned(dev: &Device, q: &mut Queue, block: usize) {
    let base = addr_of_mut!(ODD) as *mut u8;
    let first = block / 3 + 1;
    // Windows 0x11000 apart, each starting 1..4 bytes past a page.
    // SAFETY: offsets + block <= 4 * 0x11000 (block <= 64 KiB); no request
    // is in flight while the probe writes them.
    let at = |w: usize| unsafe { base.add(w * 0x11000 + 1 + w) };
    for i in 0..block {
        let b = (i as u8).wrapping_mul(13).wrapping_add(5);
        // SAFETY: as `at`: inside the static, not in flight.
        unsafe {
            if i < first {
                at(0).add(i).write_volatile(b);
            } else {
                at(1).add(i - first).write_volatile(b);
            }
        }
    }
    let sector = 2 * block as u64 / SECTOR;
    let out = [
        Buf::readable(at(0) as *const u8, first),
        Buf::readable(at(1) as *const u8, block - first),
    ];
    let write = request_bufs(dev, q, T_OUT, sector, &out);
    // SAFETY: as `at`.
    unsafe {
        write_bytes(at(2), 0, block);
        write_bytes(at(3), 0, block);
    }
    let second = block - first / 2;
    let back = [
        Buf::writable(at(2), block - second),
        Buf::writable(at(3), second),
    ];
    let read = request_bufs(dev, q, T_IN, sector, &back);
    let same = (0..block).all(|i| {
        // SAFETY: as `at`; the read has completed.
        let (a, b) = unsafe {
            let a = if i < first { at(0).add(i) } else { at(1).add(i - first) };
            let b = if i < block - second { at(2).add(i) } else { at(3).add(i - (block - second)) };
            (a.read_volatile(), b.read_volatile())
        };
        a == b
    });
    let mut l = line(dev);
    l.s(" misaligned write=");
    status_text(&mut l, write);
    l.s(" read=");
    status_text(&mut l, read);
    l.s(" match=").dec(u64::from(same)).end();
}

const MAGIC: &[u8; 8] = b"FLINTDUR";

/// Builds block `seq`'s record in the data buffer.
fn record(buf: &mut [u8], nonce: u64, seq: u64) {
    let mut x = nonce ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    for b in buf[32..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    buf[..8].copy_from_slice(MAGIC);
    buf[8..16].copy_from_slice(&nonce.to_le_bytes());
    buf[16..24].copy_from_slice(&seq.to_le_bytes());
    let sum = crate::fnv1a64(&buf[32..]);
    buf[24..32].copy_from_slice(&sum.to_le_bytes());
}

fn durable(dev: &Device, q: &mut Queue, disk: Disk, seconds: u64, nonce: u64) {
    let blocks = disk.capacity * SECTOR / disk.block as u64;
    let start = kvmclock::now_ns().unwrap_or(0);
    let until = start.saturating_add(seconds.saturating_mul(1_000_000_000));
    let mut last = None;
    let mut seq = 0;
    while seq < blocks && kvmclock::now_ns().unwrap_or(until) < until {
        record(data(disk.block), nonce, seq);
        // SAFETY: taking the address of the data buffer, not in flight.
        let buf = Buf::readable(data(disk.block).as_ptr(), disk.block);
        let sector = seq * disk.block as u64 / SECTOR;
        let written = request(dev, q, T_OUT, sector, Some(buf));
        let flushed = match written {
            Some(0) => request(dev, q, T_FLUSH, 0, None),
            other => other,
        };
        if flushed != Some(0) {
            let mut l = line(dev);
            l.s(" durable failed seq=").dec(seq).s(" status=");
            status_text(&mut l, flushed);
            l.end();
            return;
        }
        line(dev).s(" durable seq=").dec(seq).end();
        last = Some(seq);
        seq += 1;
    }
    let mut l = line(dev);
    l.s(" durable done seq=");
    match last {
        Some(s) => l.dec(s),
        None => l.s("none"),
    };
    l.end();
}
