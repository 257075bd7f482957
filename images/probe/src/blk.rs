//! virtio-blk (virtio 1.2 §5.2) over one request queue, one request at a
//! time: header (type, reserved, sector) the device reads, optional data,
//! status byte the device writes.
//!
//! ```text
//! probe: virtio-blk dev=<i> capacity=<sectors> ro=<0|1> blk-size=<n|none>
//! probe: virtio-blk dev=<i> read sector=0 fnv1a64=0x<16 hex> status=<n>   (of its first 512 bytes)
//! probe: virtio-blk dev=<i> id=<string> status=<n>
//! probe: virtio-blk dev=<i> ro-write status=<n>            (read-only disks)
//! probe: virtio-blk dev=<i> pattern ...                     (probe.blk-pattern=1)
//! probe: blk-bench ...                                   (probe.blk-bench=1, blkbench.rs)
//! ```

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use crate::{blkbench, blkpt, cmdline};
use crate::kvmclock;
use crate::out::Line;
use crate::svc;
use crate::virtio::{Buf, Device, Queue};

pub const DEVICE_ID: u32 = 2;

pub(crate) const F_SIZE_MAX: u32 = 1;
pub(crate) const F_SEG_MAX: u32 = 2;
const F_RO: u32 = 5;
const F_BLK_SIZE: u32 = 6;
pub(crate) const F_FLUSH: u32 = 9;
pub(crate) const F_TOPOLOGY: u32 = 10;
/// Features the driver accepts when offered (besides VERSION_1).
pub const FEATURES: u64 = 1 << F_SIZE_MAX
    | 1 << F_SEG_MAX
    | 1 << F_RO
    | 1 << F_BLK_SIZE
    | 1 << F_FLUSH
    | 1 << F_TOPOLOGY;

// Config space offsets.
const CFG_CAPACITY: u64 = 0;
pub(crate) const CFG_SIZE_MAX: u64 = 8;
pub(crate) const CFG_SEG_MAX: u64 = 12;
const CFG_BLK_SIZE: u64 = 20;

// Request types.
pub(crate) const T_IN: u32 = 0;
pub(crate) const T_OUT: u32 = 1;
pub(crate) const T_FLUSH: u32 = 4;
pub(crate) const T_GET_ID: u32 = 8;

/// Bytes per pattern request (128 sectors).
const CHUNK: usize = 64 << 10;
pub(crate) const SECTOR: u64 = 512;
/// GET_ID's buffer (VIRTIO_BLK_ID_BYTES).
const ID_BYTES: usize = 20;
/// A status value no device writes: the request came back without one.
pub(crate) const NO_STATUS: u8 = 0xff;

#[repr(C, align(4096))]
struct Mem {
    data: [u8; CHUNK],
    header: [u8; 16],
    id: [u8; ID_BYTES],
    status: u8,
}

/// The request buffers (one request in flight at a time).
static mut MEM: Mem = Mem {
    data: [0; CHUNK],
    header: [0; 16],
    id: [0; ID_BYTES],
    status: 0,
};

pub(crate) fn mem() -> *mut Mem {
    addr_of_mut!(MEM)
}

/// The data buffer's first `len` bytes (no request in flight).
pub(crate) fn data(len: usize) -> &'static mut [u8] {
    // SAFETY: only touched between requests, when the device is not using
    // it; the probe is single-threaded and holds one such slice at a time.
    unsafe { &mut (&mut (*mem()).data)[..len] }
}

/// The byte the pattern puts at disk offset `o`.
pub fn pattern_byte(o: u64) -> u8 {
    (o.wrapping_mul(31).wrapping_add(o >> 9)) as u8
}

/// One request: `Some(status)`, or `None` on a timeout (already reported).
pub(crate) fn request(dev: &Device, q: &mut Queue, op: u32, sector: u64, data: Option<Buf>) -> Option<u8> {
    match data {
        Some(d) => request_bufs(dev, q, op, sector, &[d]),
        None => request_bufs(dev, q, op, sector, &[]),
    }
}

/// One request with up to 4 data buffers: `Some(status)`, or `None` on a
/// timeout (already reported).
pub(crate) fn request_bufs(
    dev: &Device,
    q: &mut Queue,
    op: u32,
    sector: u64,
    data: &[Buf],
) -> Option<u8> {
    let m = mem();
    // SAFETY: no request is in flight, so the device is not using header or
    // status; the queue's release store publishes these writes before the chain.
    let (header, status) = unsafe {
        let h = addr_of_mut!((*m).header) as *mut u8;
        write_volatile(h as *mut u32, op);
        write_volatile(h.add(4) as *mut u32, 0);
        write_volatile(h.add(8) as *mut u64, sector);
        let s = addr_of_mut!((*m).status);
        write_volatile(s, NO_STATUS);
        (Buf::readable(h as *const u8, 16), Buf::writable(s, 1))
    };
    let mut chain = [header; 6];
    let n = data.len().min(4);
    chain[1..=n].copy_from_slice(&data[..n]);
    chain[n + 1] = status;
    q.round_trip(dev, &chain[..n + 2])?;
    // SAFETY: the device is done with the chain (acquire in `poll`).
    Some(unsafe { read_volatile(addr_of!((*m).status)) })
}

fn read(dev: &Device, q: &mut Queue, sector: u64, len: usize) -> Option<u8> {
    // SAFETY: taking the address of a static's field.
    let buf = Buf::writable(unsafe { addr_of_mut!((*mem()).data) } as *mut u8, len);
    request(dev, q, T_IN, sector, Some(buf))
}

fn write(dev: &Device, q: &mut Queue, sector: u64, len: usize) -> Option<u8> {
    // SAFETY: taking the address of a static's field.
    let buf = Buf::readable(unsafe { addr_of!((*mem()).data) } as *const u8, len);
    request(dev, q, T_OUT, sector, Some(buf))
}

pub(crate) fn line(dev: &Device) -> Line {
    let mut line = Line::new();
    line.s("virtio-blk dev=").dec(dev.index as u64);
    line
}

pub(crate) fn status_text(line: &mut Line, status: Option<u8>) {
    match status {
        Some(s) => line.dec(u64::from(s)),
        None => line.s("timeout"),
    };
}

pub fn run(dev: &Device, mut q: Queue, cmdline: &[u8]) {
    let t = &dev.transport;
    let capacity = t.config64(CFG_CAPACITY).unwrap_or(0);
    let ro = dev.has(F_RO);
    let mut l = line(dev);
    l.s(" capacity=")
        .dec(capacity)
        .s(" ro=")
        .dec(u64::from(ro))
        .s(" blk-size=");
    let blk_size = t.config32(CFG_BLK_SIZE).filter(|_| dev.has(F_BLK_SIZE));
    match blk_size {
        Some(size) => l.dec(u64::from(size)),
        None => l.s("none"),
    };
    l.end();
    // Requests are whole logical blocks (QEMU fails a 512-byte read of a
    // 4 KiB-block disk): sector 0 is read as the first block.
    let block = blk_size
        .map(|b| b as usize)
        .filter(|b| b.is_multiple_of(SECTOR as usize) && (SECTOR as usize..=CHUNK).contains(b))
        .unwrap_or(SECTOR as usize);

    data(block).fill(0);
    let status = read(dev, &mut q, 0, block);
    let mut l = line(dev);
    l.s(" read sector=0 fnv1a64=")
        .hex16(crate::fnv1a64(data(SECTOR as usize)))
        .s(" status=");
    status_text(&mut l, status);
    l.end();
    // After a timeout the request may still be in flight: leave the device
    // alone (the caller resets it).
    if status.is_none() || get_id(dev, &mut q).is_none() {
        return;
    }

    if ro {
        // Write sector 0 back as read: harmless if the device takes it.
        let status = write(dev, &mut q, 0, block);
        let mut l = line(dev);
        l.s(" ro-write status=");
        status_text(&mut l, status);
        l.end();
        if status.is_none() {
            return;
        }
    }

    let bench = cmdline::param(cmdline, "probe.bench") == Some(b"1");
    if bench && self::bench(dev, &mut q, block).is_none() {
        return;
    }
    if cmdline::param(cmdline, "probe.blk-pattern") == Some(b"1") {
        if ro {
            line(dev).s(" pattern skipped ro=1").end();
        } else {
            pattern(dev, &mut q, capacity, bench);
        }
    }
    let disk = blkpt::Disk {
        ro,
        block,
        capacity,
    };
    blkpt::run(dev, &mut q, cmdline, disk);
    if cmdline::param(cmdline, "probe.blk-bench") == Some(b"1") && !ro {
        let depth = cmdline::param_u64(cmdline, "probe.blk-bench-qd").unwrap_or(1);
        blkbench::run(dev, &mut q, capacity, block, depth);
    }
}

fn get_id(dev: &Device, q: &mut Queue) -> Option<u8> {
    let m = mem();
    // SAFETY: no request in flight.
    unsafe { (*m).id = [0; ID_BYTES] };
    // SAFETY: taking the address of a static's field.
    let buf = Buf::writable(unsafe { addr_of_mut!((*m).id) } as *mut u8, ID_BYTES);
    let status = request(dev, q, T_GET_ID, 0, Some(buf));
    // SAFETY: the request is complete.
    let id = unsafe { read_volatile(addr_of!((*m).id)) };
    let len = id.iter().position(|&b| b == 0).unwrap_or(ID_BYTES);
    let mut shown = [0u8; ID_BYTES];
    for (s, &b) in shown.iter_mut().zip(&id[..len]) {
        *s = if b.is_ascii_graphic() { b } else { b'?' };
    }
    let mut l = line(dev);
    l.s(" id=").bytes(&shown[..len]).s(" status=");
    status_text(&mut l, status);
    l.end();
    status
}

/// Min and mean of a few timings.
struct Stats {
    n: u64,
    min: u64,
    sum: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            n: 0,
            min: u64::MAX,
            sum: 0,
        }
    }

    fn add(&mut self, ns: u64) {
        self.n += 1;
        self.min = self.min.min(ns);
        self.sum += ns;
    }

    fn finish(&self, line: &mut Line) {
        line.s(" n=")
            .dec(self.n)
            .s(" ns-min=")
            .dec(if self.n == 0 { 0 } else { self.min })
            .s(" ns-avg=")
            .dec(self.sum / self.n.max(1))
            .end();
    }
}

/// `probe.bench=1`: the cost of a register read (MagicValue), of a bare QueueNotify (an MMIO write exit with
/// nothing new in the ring), of a one-block (512 bytes or blk_size) read
/// round trip and of a 64 KiB read round trip.
fn bench(dev: &Device, q: &mut Queue, block: usize) -> Option<()> {
    const N: u64 = 32;
    let time = &dev.time;
    let mut mmio = Stats::new();
    for _ in 0..N {
        let start = svc::rdtsc();
        core::hint::black_box(dev.transport.magic());
        mmio.add(time.since(start));
    }
    mmio.finish(line(dev).s(" bench mmio-read"));
    let mut notify = Stats::new();
    for _ in 0..N {
        let start = svc::rdtsc();
        q.notify(&dev.transport);
        notify.add(time.since(start));
    }
    notify.finish(line(dev).s(" bench notify"));
    for len in [block, CHUNK] {
        let mut stats = Stats::new();
        for _ in 0..N {
            let start = svc::rdtsc();
            read(dev, q, 0, len)?;
            stats.add(time.since(start));
        }
        stats.finish(line(dev).s(" bench read-").dec(len as u64));
    }
    Some(())
}

/// `probe.blk-pattern=1`: the pattern over the whole disk in 64 KiB writes,
/// FLUSH (if offered), read back and compared.
fn pattern(dev: &Device, q: &mut Queue, capacity: u64, bench: bool) {
    let total = capacity.saturating_mul(SECTOR);
    let time = &dev.time;
    let fail = |op: &str, at: u64, status: Option<u8>| {
        let mut l = line(dev);
        l.s(" pattern bytes=")
            .dec(total)
            .s(" verify=failed op=")
            .s(op)
            .s(" at=")
            .dec(at)
            .s(" status=");
        status_text(&mut l, status);
        l.end();
    };
    let start = svc::rdtsc();
    let mut off = 0;
    while off < total {
        let n = (total - off).min(CHUNK as u64) as usize;
        for (i, b) in data(n).iter_mut().enumerate() {
            *b = pattern_byte(off + i as u64);
        }
        let status = write(dev, q, off / SECTOR, n);
        if status != Some(0) {
            return fail("write", off, status);
        }
        off += n as u64;
    }
    let write_ns = time.since(start);
    let start = svc::rdtsc();
    if dev.has(F_FLUSH) {
        let status = request(dev, q, T_FLUSH, 0, None);
        if status != Some(0) {
            return fail("flush", 0, status);
        }
    }
    let flush_ns = time.since(start);
    let start = svc::rdtsc();
    let mut off = 0;
    let mut bad = None;
    while off < total {
        let n = (total - off).min(CHUNK as u64) as usize;
        data(n).fill(0);
        let status = read(dev, q, off / SECTOR, n);
        if status != Some(0) {
            return fail("read", off, status);
        }
        if let Some(i) = data(n)
            .iter()
            .enumerate()
            .position(|(i, &b)| b != pattern_byte(off + i as u64))
        {
            bad = Some(off + i as u64);
            break;
        }
        off += n as u64;
    }
    let read_ns = time.since(start);
    let mut l = line(dev);
    l.s(" pattern bytes=").dec(total);
    match bad {
        None => l.s(" verify=ok"),
        Some(at) => l.s(" verify=bad at=").dec(at),
    };
    l.end();
    if bench {
        line(dev)
            .s(" bench pattern write-ns=")
            .dec(write_ns)
            .s(" flush-ns=")
            .dec(flush_ns)
            .s(" read-ns=")
            .dec(read_ns)
            .end();
    }
}
