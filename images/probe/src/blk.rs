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
//! probe: blk-bench dev=<i> size=<n> write-bytes=<n> write-ns=<t> read-bytes=<n> read-ns=<t>
//! ```

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cmdline;
use crate::kvmclock;
use crate::out::Line;
use crate::svc;
use crate::virtio::{Buf, Device, Queue};

pub const DEVICE_ID: u32 = 2;

const F_SIZE_MAX: u32 = 1;
const F_SEG_MAX: u32 = 2;
const F_RO: u32 = 5;
const F_BLK_SIZE: u32 = 6;
const F_FLUSH: u32 = 9;
/// Features the driver accepts when offered (besides VERSION_1).
pub const FEATURES: u64 =
    1 << F_SIZE_MAX | 1 << F_SEG_MAX | 1 << F_RO | 1 << F_BLK_SIZE | 1 << F_FLUSH;

// Config space offsets.
const CFG_CAPACITY: u64 = 0;
const CFG_SIZE_MAX: u64 = 8;
const CFG_SEG_MAX: u64 = 12;
const CFG_BLK_SIZE: u64 = 20;

// Request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

/// Bytes per pattern request (128 sectors).
const CHUNK: usize = 64 << 10;
const SECTOR: u64 = 512;
/// GET_ID's buffer (VIRTIO_BLK_ID_BYTES).
const ID_BYTES: usize = 20;
/// A status value no device writes: the request came back without one.
const NO_STATUS: u8 = 0xff;

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

fn mem() -> *mut Mem {
    addr_of_mut!(MEM)
}

/// The data buffer's first `len` bytes (no request in flight).
fn data(len: usize) -> &'static mut [u8] {
    // SAFETY: only touched between requests, when the device is not using
    // it; the probe is single-threaded and holds one such slice at a time.
    unsafe { &mut (&mut (*mem()).data)[..len] }
}

/// The byte the pattern puts at disk offset `o`.
pub fn pattern_byte(o: u64) -> u8 {
    (o.wrapping_mul(31).wrapping_add(o >> 9)) as u8
}

/// One request: `Some(status)`, or `None` on a timeout (already reported).
fn request(dev: &Device, q: &mut Queue, op: u32, sector: u64, data: Option<Buf>) -> Option<u8> {
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
    let done = match data {
        Some(d) => q.round_trip(dev, &[header, d, status]),
        None => q.round_trip(dev, &[header, status]),
    };
    done?;
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

fn line(dev: &Device) -> Line {
    let mut line = Line::new();
    line.s("virtio-blk dev=").dec(dev.index as u64);
    line
}

fn status_text(line: &mut Line, status: Option<u8>) {
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
    if cmdline::param(cmdline, "probe.blk-bench") == Some(b"1")
        && !ro
        && !BENCHED.swap(true, Ordering::Relaxed)
    {
        throughput(dev, &mut q, capacity, block);
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

/// `probe.blk-bench=1` has run (on the first writable disk only).
static BENCHED: AtomicBool = AtomicBool::new(false);

/// The largest `probe.blk-bench` request.
const BENCH_MAX: usize = 1 << 20;

#[repr(C, align(4096))]
struct BenchBuf([u8; BENCH_MAX]);

/// The data of `probe.blk-bench` requests (one in flight at a time).
static mut BENCH_BUF: BenchBuf = BenchBuf([0; BENCH_MAX]);

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

/// Data descriptors for one request of `len` bytes of the bench buffer,
/// within the limits and the queue (which also holds header and status);
/// 0 if they cannot hold it.
fn segments(lim: Limits, q: &Queue, len: usize, bufs: &mut [Buf], device_writes: bool) -> usize {
    let most = lim
        .seg_max
        .min(usize::from(q.size()).saturating_sub(2))
        .min(bufs.len());
    let base = addr_of_mut!(BENCH_BUF) as *mut u8;
    let (mut n, mut off) = (0, 0);
    while off < len && n < most {
        let l = (len - off).min(lim.size_max);
        // SAFETY: off + l <= len <= BENCH_MAX: inside the buffer.
        let p = unsafe { base.add(off) };
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

/// Most descriptors in one chain (the probe's queue size).
const CHAIN: usize = crate::virtio::QUEUE_SIZE as usize;

/// One IN or OUT of `len` bytes of the bench buffer at `sector`, in the
/// descriptors `segments` allows: `Some(status)`, `None` on a timeout or a
/// request the device's limits cannot hold (reported).
fn bench_io(
    dev: &Device,
    lim: Limits,
    q: &mut Queue,
    op: u32,
    sector: u64,
    len: usize,
) -> Option<u8> {
    let m = mem();
    let mut chain = [Buf::readable(&0u8, 0); CHAIN];
    let n = segments(lim, q, len, &mut chain[1..CHAIN - 1], op == T_IN);
    if n == 0 {
        line(dev)
            .s(" blk-bench size=")
            .dec(len as u64)
            .s(" unsupported (size_max/seg_max)")
            .end();
        return None;
    }
    // SAFETY: no request is in flight (as in `request`); the queue's release
    // store orders these writes before the device can see the chain.
    unsafe {
        let h = addr_of_mut!((*m).header) as *mut u8;
        write_volatile(h as *mut u32, op);
        write_volatile(h.add(4) as *mut u32, 0);
        write_volatile(h.add(8) as *mut u64, sector);
        let s = addr_of_mut!((*m).status);
        write_volatile(s, NO_STATUS);
        chain[0] = Buf::readable(h as *const u8, 16);
        chain[n + 1] = Buf::writable(s, 1);
    }
    q.round_trip(dev, &chain[..n + 2])?;
    // SAFETY: the device is done with the chain (acquire in `poll`).
    Some(unsafe { read_volatile(addr_of!((*m).status)) })
}

fn now() -> u64 {
    kvmclock::now_ns().unwrap_or(0)
}

/// `probe.blk-bench=1`: for 8 KiB, 16 KiB and 1 MiB requests, the whole
/// disk written sequentially (one request at a time) and FLUSHed, then read
/// back sequentially, each phase timed with kvmclock.
fn throughput(dev: &Device, q: &mut Queue, capacity: u64, block: usize) {
    let total = capacity.saturating_mul(SECTOR);
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
        let phase = |q: &mut Queue, op: u32| -> Option<(u64, u64)> {
            let start = now();
            let mut off = 0;
            while off < total {
                let n = (total - off).min(size as u64) as usize;
                let status = bench_io(dev, lim, q, op, off / SECTOR, n)?;
                if status != 0 {
                    let mut l = line(dev);
                    l.s(" blk-bench size=")
                        .dec(size as u64)
                        .s(if op == T_IN { " read" } else { " write" })
                        .s(" at=")
                        .dec(off)
                        .s(" status=");
                    status_text(&mut l, Some(status));
                    l.end();
                    return None;
                }
                off += n as u64;
            }
            if op == T_OUT && dev.has(F_FLUSH) {
                let status = request(dev, q, T_FLUSH, 0, None);
                if status != Some(0) {
                    let mut l = line(dev);
                    l.s(" blk-bench flush status=");
                    status_text(&mut l, status);
                    l.end();
                    return None;
                }
            }
            Some((off, now().saturating_sub(start)))
        };
        let Some((wbytes, wns)) = phase(q, T_OUT) else {
            return;
        };
        let Some((rbytes, rns)) = phase(q, T_IN) else {
            return;
        };
        Line::new()
            .s("blk-bench dev=")
            .dec(dev.index as u64)
            .s(" size=")
            .dec(size as u64)
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
