//! virtio-net (virtio 1.2 §5.1), one queue pair: receiveq 0, transmitq 1,
//! MAC the only feature taken besides VERSION_1 (so every buffer starts
//! with the 12-byte `virtio_net_hdr`, `num_buffers` included, all zero on
//! transmit). With `probe.net-arp=<a.b.c.d>` it posts four 2 KiB receive
//! buffers, broadcasts one ARP request for that address and waits ~2 s
//! for the reply. With `probe.net-serve=<s>` it then answers, for `<s>`
//! seconds, ARP requests for `probe.net-ip` and ICMP echo requests to it,
//! re-posting each receive buffer and ignoring everything else.
//!
//! ```text
//! probe: virtio-net dev=<i> mac=<xx:xx:xx:xx:xx:xx|none>
//! probe: virtio-net dev=<i> arp tx bytes=<n>                 (probe.net-arp=...)
//! probe: virtio-net dev=<i> arp reply ip=<a.b.c.d> mac=<xx:..> rx-frames=<n>
//!   -- or: probe: virtio-net dev=<i> arp timeout rx-frames=<n>
//! probe: virtio-net dev=<i> serving ip=<a.b.c.d> seconds=<s>   (probe.net-serve=...)
//! probe: virtio-net dev=<i> serve arp=<n> icmp=<n> other=<n>
//! ```

use core::ptr::{addr_of, addr_of_mut};

use crate::cmdline;
use crate::out::Line;
use crate::svc;
use crate::virtio::{Buf, Device, Queue, TIMEOUT_NS};

pub const DEVICE_ID: u32 = 1;

const F_MAC: u32 = 5;
/// Features the driver accepts when offered (besides VERSION_1).
pub const FEATURES: u64 = 1 << F_MAC;

/// `struct virtio_net_hdr` with `num_buffers` (VERSION_1).
const HDR: usize = 12;
const RX_BUFFERS: usize = 4;
/// Header + a 1514-byte frame fits.
const RX_BYTES: usize = 2048;
/// The ARP request, padded to the 60-byte Ethernet minimum.
const FRAME: usize = 60;
/// Used when the device offers no MAC: QEMU's default.
const DEFAULT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Source address when `probe.net-ip=` is absent: slirp's default guest.
const DEFAULT_IP: [u8; 4] = [10, 0, 2, 15];

/// The largest frame sent: an echo reply as long as the request.
const TX_FRAME: usize = 1514;

#[repr(C, align(64))]
struct Mem {
    tx: [u8; HDR + TX_FRAME],
    rx: [[u8; RX_BYTES]; RX_BUFFERS],
}

static mut MEM: Mem = Mem {
    tx: [0; HDR + TX_FRAME],
    rx: [[0; RX_BYTES]; RX_BUFFERS],
};

fn line(dev: &Device) -> Line {
    let mut line = Line::new();
    line.s("virtio-net dev=").dec(dev.index as u64);
    line
}

fn mac_text(line: &mut Line, mac: &[u8]) {
    for (i, &b) in mac.iter().enumerate() {
        if i > 0 {
            line.s(":");
        }
        line.bytes(&[
            b"0123456789abcdef"[usize::from(b >> 4)],
            b"0123456789abcdef"[usize::from(b & 15)],
        ]);
    }
}

fn ip_text(line: &mut Line, ip: &[u8]) {
    for (i, &b) in ip.iter().enumerate() {
        if i > 0 {
            line.s(".");
        }
        line.dec(u64::from(b));
    }
}

/// `a.b.c.d`.
fn parse_ip(s: &[u8]) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for byte in ip.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = part.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
        *byte = u8::try_from(v).ok()?;
    }
    parts.next().is_none().then_some(ip)
}

pub fn run(dev: &Device, mut rx: Queue, mut tx: Queue, cmdline: &[u8]) {
    let mut mac = DEFAULT_MAC;
    let offered = dev.has(F_MAC);
    if offered {
        for (i, b) in mac.iter_mut().enumerate() {
            *b = dev.transport.config8(i as u64).unwrap_or(0);
        }
    }
    let mut l = line(dev);
    l.s(" mac=");
    if offered {
        mac_text(&mut l, &mac);
    } else {
        l.s("none");
    }
    l.end();

    let peer = cmdline::param(cmdline, "probe.net-arp").and_then(parse_ip);
    let serve = cmdline::param_u64(cmdline, "probe.net-serve").filter(|&s| s > 0);
    if peer.is_none() && serve.is_none() {
        return;
    }
    let ip = cmdline::param(cmdline, "probe.net-ip")
        .and_then(parse_ip)
        .unwrap_or(DEFAULT_IP);
    let m = addr_of_mut!(MEM);
    let mut owner = [usize::MAX; crate::virtio::BENCH_QUEUE_SIZE as usize];
    for k in 0..RX_BUFFERS.min(usize::from(rx.size())) {
        post(&mut rx, m, k, &mut owner);
    }
    rx.notify(&dev.transport);

    if let Some(peer) = peer {
        if !arp(dev, &mut rx, &mut tx, m, &mut owner, mac, ip, peer) {
            return;
        }
    }
    if let Some(seconds) = serve {
        self::serve(
            dev,
            &mut rx,
            &mut tx,
            m,
            &mut owner,
            mac,
            ip,
            seconds.min(600),
        );
    }
}

/// Sends `frame` (already in `MEM.tx` after the header, `len` bytes) and
/// waits for the device to use it.
fn send(dev: &Device, tx: &mut Queue, m: *mut Mem, len: usize) -> bool {
    // SAFETY: the device does not hold the transmit buffer now.
    unsafe { (&mut (*m).tx)[..HDR].fill(0) };
    // SAFETY: taking the address of a static's field.
    let buf = Buf::readable(unsafe { addr_of!((*m).tx) } as *const u8, HDR + len);
    tx.round_trip(dev, &[buf]).is_some()
}

/// The `probe.net-arp` exchange; false if the transmit queue failed.
#[allow(clippy::too_many_arguments)]
fn arp(
    dev: &Device,
    rx: &mut Queue,
    tx: &mut Queue,
    m: *mut Mem,
    owner: &mut [usize; crate::virtio::BENCH_QUEUE_SIZE as usize],
    mac: [u8; 6],
    ip: [u8; 4],
    peer: [u8; 4],
) -> bool {
    // SAFETY: the device does not hold the transmit buffer now.
    let frame = unsafe { &mut (&mut (*m).tx)[HDR..HDR + FRAME] };
    frame.fill(0);
    frame[0..6].fill(0xff);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip);
    frame[38..42].copy_from_slice(&peer);
    if !send(dev, tx, m, FRAME) {
        return false;
    }
    line(dev).s(" arp tx bytes=").dec(FRAME as u64).end();

    let start = svc::rdtsc();
    let mut frames = 0u64;
    loop {
        if let Some(c) = rx.poll() {
            let k = owner[usize::from(c.head)];
            if k >= RX_BUFFERS {
                continue;
            }
            frames += 1;
            let n = (c.len as usize).min(RX_BYTES);
            // SAFETY: the device returned buffer k (acquire in `poll`).
            let f = unsafe { &(&(*m).rx[k])[HDR.min(n)..n] };
            // An ARP reply (oper 2) from `peer` to us.
            let reply = f.len() >= 42
                && f[12..14] == [0x08, 0x06]
                && f[20..22] == [0, 2]
                && f[28..32] == peer
                && f[38..42] == ip;
            if reply {
                let mut l = line(dev);
                l.s(" arp reply ip=");
                ip_text(&mut l, &f[28..32]);
                l.s(" mac=");
                mac_text(&mut l, &f[22..28]);
                l.s(" rx-frames=").dec(frames).end();
            }
            post(rx, m, k, owner);
            rx.notify(&dev.transport);
            if reply {
                return true;
            }
            continue;
        }
        if dev.time.since(start) > TIMEOUT_NS {
            line(dev).s(" arp timeout rx-frames=").dec(frames).end();
            return true;
        }
        core::hint::spin_loop();
    }
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut pairs = data.chunks_exact(2);
    for p in &mut pairs {
        sum += u32::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds the answer to received frame `f` in `out` (the transmit buffer
/// after the header): its length and kind, or `Err(Kind::Other)` when
/// there is nothing to answer. Works in place, allocates nothing.
fn answer(f: &[u8], out: &mut [u8], mac: &[u8; 6], ip: &[u8; 4]) -> Result<(usize, Kind), Kind> {
    if f.len() < 14 {
        return Err(Kind::Other);
    }
    match [f[12], f[13]] {
        // ARP request (Ethernet/IPv4) for our address.
        [0x08, 0x06] => {
            if f.len() < 42 || f[14..22] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] || f[38..42] != *ip {
                return Err(Kind::Other);
            }
            let o = &mut out[..FRAME];
            o.fill(0);
            o[0..6].copy_from_slice(&f[22..28]);
            o[6..12].copy_from_slice(mac);
            o[12..14].copy_from_slice(&[0x08, 0x06]);
            o[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]); // reply
            o[22..28].copy_from_slice(mac);
            o[28..32].copy_from_slice(ip);
            o[32..42].copy_from_slice(&f[22..32]); // their MAC and IP
            Ok((FRAME, Kind::Arp))
        }
        // IPv4: an unfragmented ICMP echo request to our address.
        [0x08, 0x00] => {
            if f.len() < 34 || f[14] >> 4 != 4 {
                return Err(Kind::Other);
            }
            let ihl = usize::from(f[14] & 15) * 4;
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            let fragment = u16::from_be_bytes([f[20], f[21]]) & 0x3fff;
            if ihl < 20
                || total < ihl + 8
                || 14 + total > f.len()
                || 14 + total > out.len()
                || fragment != 0
                || f[23] != 1
                || f[30..34] != *ip
                || f[14 + ihl] != 8
                || f[14 + ihl + 1] != 0
            {
                return Err(Kind::Other);
            }
            let len = 14 + total;
            let o = &mut out[..len.max(FRAME)];
            o[..len].copy_from_slice(&f[..len]);
            o[len..].fill(0);
            o[0..6].copy_from_slice(&f[6..12]);
            o[6..12].copy_from_slice(mac);
            // IPv4 header: swap the addresses, fresh TTL and checksum.
            o[26..30].copy_from_slice(ip);
            o[30..34].copy_from_slice(&f[26..30]);
            o[22] = 64;
            o[24..26].fill(0);
            let sum = checksum(&o[14..14 + ihl]);
            o[24..26].copy_from_slice(&sum.to_be_bytes());
            // ICMP: echo reply, id/seq/payload as they came.
            let icmp = &mut o[14 + ihl..len];
            icmp[0] = 0;
            icmp[2..4].fill(0);
            let sum = checksum(icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            Ok((len.max(FRAME), Kind::Icmp))
        }
        _ => Err(Kind::Other),
    }
}

/// What a received frame was, for the counters.
#[derive(Clone, Copy)]
enum Kind {
    Arp,
    Icmp,
    Other,
}

/// `probe.net-serve=<s>`: answer ARP and ICMP echo for `ip` for `seconds`.
#[allow(clippy::too_many_arguments)]
fn serve(
    dev: &Device,
    rx: &mut Queue,
    tx: &mut Queue,
    m: *mut Mem,
    owner: &mut [usize; crate::virtio::BENCH_QUEUE_SIZE as usize],
    mac: [u8; 6],
    ip: [u8; 4],
    seconds: u64,
) {
    let mut l = line(dev);
    l.s(" serving ip=");
    ip_text(&mut l, &ip);
    l.s(" seconds=").dec(seconds).end();
    let mut counts = [0u64; 3];
    let limit = seconds * 1_000_000_000;
    let start = svc::rdtsc();
    'serve: while dev.time.since(start) < limit {
        let Some(c) = rx.poll() else {
            core::hint::spin_loop();
            continue;
        };
        let k = owner[usize::from(c.head)];
        if k >= RX_BUFFERS {
            continue;
        }
        let n = (c.len as usize).min(RX_BYTES);
        // SAFETY: the device returned buffer k (acquire in `poll`) and
        // does not hold the transmit buffer between round trips.
        let (f, out) = unsafe { (&(&(*m).rx[k])[HDR.min(n)..n], &mut (&mut (*m).tx)[HDR..]) };
        let result = answer(f, out, &mac, &ip);
        post(rx, m, k, owner);
        rx.notify(&dev.transport);
        match result {
            Ok((len, kind)) => {
                counts[kind as usize] += 1;
                if !send(dev, tx, m, len) {
                    break 'serve;
                }
            }
            Err(kind) => counts[kind as usize] += 1,
        }
    }
    line(dev)
        .s(" serve arp=")
        .dec(counts[Kind::Arp as usize])
        .s(" icmp=")
        .dec(counts[Kind::Icmp as usize])
        .s(" other=")
        .dec(counts[Kind::Other as usize])
        .end();
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
