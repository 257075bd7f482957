//! virtio-net (virtio 1.2 §5.1), one queue pair: receiveq 0, transmitq 1,
//! MAC the only feature taken besides VERSION_1 (so every buffer starts
//! with the 12-byte `virtio_net_hdr`, `num_buffers` included, all zero on
//! transmit). With `probe.net-arp=<a.b.c.d>` it posts four 2 KiB receive
//! buffers, broadcasts one ARP request for that address and waits ~2 s
//! for the reply.
//!
//! ```text
//! probe: virtio-net dev=<i> mac=<xx:xx:xx:xx:xx:xx|none>
//! probe: virtio-net dev=<i> arp tx bytes=<n>                 (probe.net-arp=...)
//! probe: virtio-net dev=<i> arp reply ip=<a.b.c.d> mac=<xx:..> rx-frames=<n>
//!   -- or: probe: virtio-net dev=<i> arp timeout rx-frames=<n>
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

#[repr(C, align(64))]
struct Mem {
    tx: [u8; HDR + FRAME],
    rx: [[u8; RX_BYTES]; RX_BUFFERS],
}

static mut MEM: Mem = Mem {
    tx: [0; HDR + FRAME],
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

    let Some(peer) = cmdline::param(cmdline, "probe.net-arp").and_then(parse_ip) else {
        return;
    };
    let ip = cmdline::param(cmdline, "probe.net-ip")
        .and_then(parse_ip)
        .unwrap_or(DEFAULT_IP);
    let m = addr_of_mut!(MEM);
    let mut owner = [usize::MAX; 16];
    for k in 0..RX_BUFFERS.min(usize::from(rx.size())) {
        post(&mut rx, m, k, &mut owner);
    }
    rx.notify(&dev.transport);

    let mut frame = [0u8; FRAME];
    frame[0..6].fill(0xff);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip);
    frame[38..42].copy_from_slice(&peer);
    // SAFETY: the device does not hold the transmit buffer now.
    unsafe {
        let t = &mut (*m).tx;
        t[..HDR].fill(0);
        t[HDR..].copy_from_slice(&frame);
    }
    // SAFETY: taking the address of a static's field.
    let buf = Buf::readable(unsafe { addr_of!((*m).tx) } as *const u8, HDR + FRAME);
    if tx.round_trip(dev, &[buf]).is_none() {
        return;
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
            // SAFETY: the device returned buffer k (acquire in `poll`).
            let got = unsafe { (*m).rx[k] };
            let n = (c.len as usize).min(RX_BYTES);
            let f = &got[HDR.min(n)..n];
            // An ARP reply (oper 2) from `peer` to us.
            if f.len() >= 42
                && f[12..14] == [0x08, 0x06]
                && f[20..22] == [0, 2]
                && f[28..32] == peer
                && f[38..42] == ip
            {
                let mut l = line(dev);
                l.s(" arp reply ip=");
                ip_text(&mut l, &f[28..32]);
                l.s(" mac=");
                mac_text(&mut l, &f[22..28]);
                l.s(" rx-frames=").dec(frames).end();
                return;
            }
            post(&mut rx, m, k, &mut owner);
            rx.notify(&dev.transport);
            continue;
        }
        if dev.time.since(start) > TIMEOUT_NS {
            line(dev).s(" arp timeout rx-frames=").dec(frames).end();
            return;
        }
        core::hint::spin_loop();
    }
}

/// Makes receive buffer `k` available.
fn post(rx: &mut Queue, m: *mut Mem, k: usize, owner: &mut [usize; 16]) {
    // SAFETY: taking the address of a static's field; the device gets it
    // only through the ring.
    let buf = Buf::writable(unsafe { addr_of_mut!((*m).rx[k]) } as *mut u8, RX_BYTES);
    if let Some(head) = rx.push(&[buf]) {
        owner[usize::from(head)] = k;
    }
}
