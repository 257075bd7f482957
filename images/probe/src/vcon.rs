//! virtio-console (virtio 1.2 §5.3), port 0 only: MULTIPORT is declined,
//! so receiveq is queue 0 and transmitq queue 1. Four 64-byte receive
//! buffers are posted at start (as Linux does), read only with
//! `probe.virtio-echo=1`.
//!
//! ```text
//! probe: virtio-console tx bytes=<n>          (after the device used the message)
//! probe: virtio-console echo ready            (probe.virtio-echo=1)
//! probe: virtio-console echo line=<bytes>     (or: ... echo timeout got=<n>)
//! ```

use core::ptr::{addr_of, addr_of_mut};

use crate::cmdline;
use crate::kvmclock;
use crate::out::{say, Line};
use crate::svc;
use crate::virtio::{Buf, Device, Queue};

pub const DEVICE_ID: u32 = 3;
/// Nothing beyond VERSION_1 (no SIZE, MULTIPORT, EMERG_WRITE).
pub const FEATURES: u64 = 0;

/// What goes out through the transmit queue.
const MESSAGE: &[u8] = b"probe: hello through virtio-console\n";
const RX_BUFFERS: usize = 4;
const RX_BYTES: usize = 64;
/// Longest echoed line.
const MAX_LINE: usize = 256;
/// How long `probe.virtio-echo=1` waits for a line.
const ECHO_TIMEOUT_NS: u64 = 5_000_000_000;

#[repr(C, align(64))]
struct Mem {
    tx: [u8; 64],
    rx: [[u8; RX_BYTES]; RX_BUFFERS],
}

static mut MEM: Mem = Mem {
    tx: [0; 64],
    rx: [[0; RX_BYTES]; RX_BUFFERS],
};

pub fn run(dev: &Device, rx: &mut Queue, tx: &mut Queue, cmdline: &[u8]) {
    let m = addr_of_mut!(MEM);
    // Receive buffers first; `owner[head]` says which one a chain is.
    let mut owner = [usize::MAX; crate::virtio::BENCH_QUEUE_SIZE as usize];
    for k in 0..RX_BUFFERS.min(usize::from(rx.size())) {
        post(rx, m, k, &mut owner);
    }
    rx.notify(&dev.transport);

    // SAFETY: the device does not hold the transmit buffer now.
    unsafe { (&mut (*m).tx)[..MESSAGE.len()].copy_from_slice(MESSAGE) };
    // SAFETY: taking the address of a static's field.
    let buf = Buf::readable(unsafe { addr_of!((*m).tx) } as *const u8, MESSAGE.len());
    if tx.round_trip(dev, &[buf]).is_some() {
        Line::new()
            .s("virtio-console tx bytes=")
            .dec(MESSAGE.len() as u64)
            .end();
    }

    if cmdline::param(cmdline, "probe.virtio-echo") == Some(b"1") {
        echo(dev, rx, m, &mut owner);
    }
    if let Some(kib) = cmdline::param_u64(cmdline, "probe.console-bench") {
        // The UART is ~1000x slower: it may send less.
        let uart = cmdline::param_u64(cmdline, "probe.console-bench-uart").unwrap_or(kib);
        bench(dev, tx, kib.min(1 << 20) * 1024, uart.min(1 << 20) * 1024);
    }
}

/// Chain size of `probe.console-bench`.
const BENCH_CHUNK: usize = 16 << 10;
/// Chains in flight.
const BENCH_DEPTH: u16 = 32;
/// What the benchmark sends: lines of dots (any bytes would do).
static mut BENCH: [u8; BENCH_CHUNK] = [b'.'; BENCH_CHUNK];

/// `probe.console-bench=<KiB>`: bytes through the transmit queue
/// (16 KiB chains, up to 32 in flight, as a driver with a backlog would
/// send them), then the same bytes (or `probe.console-bench-uart=<KiB>`)
/// through the UART (16 KiB `rep outsb` service calls), each timed with
/// kvmclock; flint's bench turns the two lines into bytes per second.
fn bench(dev: &Device, tx: &mut Queue, bytes: u64, uart_bytes: u64) {
    // SAFETY: BENCH is only touched here, before the device sees it.
    unsafe {
        let b = &mut *addr_of_mut!(BENCH);
        for i in (63..BENCH_CHUNK).step_by(64) {
            b[i] = b'\n';
        }
    }
    // SAFETY: taking the address of a static; the device only reads it.
    let data = unsafe { &*addr_of!(BENCH) };
    let chunks = bytes.div_ceil(BENCH_CHUNK as u64);
    let Some(start) = kvmclock::now_ns() else {
        say("console-bench none");
        return;
    };
    let chain = [Buf::readable(data.as_ptr(), BENCH_CHUNK)];
    let sent = tx
        .stream(dev, chunks, BENCH_DEPTH, |q, _| q.push(&chain), |_| true)
        .unwrap_or(0)
        * BENCH_CHUNK as u64;
    let virtio_ns = kvmclock::now_ns().unwrap_or(start) - start;
    let uart_chunks = uart_bytes.div_ceil(BENCH_CHUNK as u64);
    let start = kvmclock::now_ns().unwrap_or(0);
    for _ in 0..uart_chunks {
        svc::write(data);
    }
    let uart_ns = kvmclock::now_ns().unwrap_or(start) - start;
    let uart_sent = uart_chunks * BENCH_CHUNK as u64;
    Line::new().s("console-bench virtio bytes=").dec(sent).s(" ns=").dec(virtio_ns).end();
    Line::new().s("console-bench uart bytes=").dec(uart_sent).s(" ns=").dec(uart_ns).end();
}

/// Makes receive buffer `k` available.
fn post(rx: &mut Queue, m: *mut Mem, k: usize, owner: &mut [usize; crate::virtio::BENCH_QUEUE_SIZE as usize]) {
    // SAFETY: taking the address of a static's field; the device gets it
    // only through the ring.
    let buf = Buf::writable(unsafe { addr_of_mut!((*m).rx[k]) } as *mut u8, RX_BYTES);
    if let Some(head) = rx.push(&[buf]) {
        owner[usize::from(head)] = k;
    }
}

/// Collects one line from the receive queue (up to `\n` or 256 bytes, ~5 s).
fn echo(dev: &Device, rx: &mut Queue, m: *mut Mem, owner: &mut [usize; crate::virtio::BENCH_QUEUE_SIZE as usize]) {
    let mut line = [0u8; MAX_LINE];
    let mut len = 0;
    say("virtio-console echo ready");
    let start = svc::rdtsc();
    loop {
        if let Some(c) = rx.poll() {
            let k = owner[usize::from(c.head)];
            if k < RX_BUFFERS {
                // SAFETY: the device returned buffer k (acquire in `poll`).
                let got = unsafe { (*m).rx[k] };
                let n = (c.len as usize).min(RX_BYTES);
                for &b in &got[..n] {
                    if b == b'\n' || len == MAX_LINE {
                        return done(&line[..len]);
                    }
                    line[len] = b;
                    len += 1;
                }
                if len == MAX_LINE {
                    return done(&line[..len]);
                }
                post(rx, m, k, owner);
                rx.notify(&dev.transport);
            }
            continue;
        }
        if dev.time.since(start) > ECHO_TIMEOUT_NS {
            Line::new()
                .s("virtio-console echo timeout got=")
                .dec(len as u64)
                .end();
            return;
        }
        core::hint::spin_loop();
    }
}

fn done(line: &[u8]) {
    Line::new().s("virtio-console echo line=").bytes(line).end();
}
