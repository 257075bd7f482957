//! [`Tap`] tests: the writev / read paths over a datagram socket pair
//! (no root needed), and, behind `#[ignore]` (root and iproute2), a real
//! tap interface carrying frames both ways through a [`Net`] device
//! (virtio 1.2 §5.1.6 framing, with the 12-byte header the tap strips
//! and adds).

use std::fs::File;
use std::net::UdpSocket;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

use super::backend::Segment;
use super::testing::{frame, MAC};
use super::*;
use crate::device::{VirtioDevice, FEATURE_EVENT_IDX};
use crate::interrupt::CountingInterrupt;
use crate::testing::{desc, guest_memory, DriverQueue, BUFFERS, NEXT, WRITE};

/// A tap over one end of a datagram socket pair; the other end is
/// returned to play the kernel.
fn socket_tap() -> (Tap, UnixDatagram) {
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs.set_nonblocking(true).unwrap();
    let file = File::from(OwnedFd::from(ours));
    (Tap::with_file(file, "pair".to_string(), false), theirs)
}

/// `f` in guest memory at [`BUFFERS`], cut into segments of `piece` bytes
/// placed 0x100 apart.
fn scattered(mem: &vm_memory::GuestMemoryMmap, f: &[u8], piece: usize) -> Vec<Segment> {
    f.chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let addr = GuestAddress(BUFFERS + 0x100 * i as u64);
            mem.write_slice(chunk, addr).unwrap();
            Segment {
                addr,
                len: chunk.len() as u32,
            }
        })
        .collect()
}

#[test]
fn a_gathered_frame_leaves_as_one_write() {
    let mem = guest_memory();
    let (mut tap, peer) = socket_tap();
    let f = frame(500, 1);
    let segments = scattered(&mem, &f, 200);
    tap.send(&TxFrame::new(&mem, &segments, f.len())).unwrap();
    let mut got = vec![0; 4096];
    let n = peer.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &f[..]);
}

#[test]
fn a_frame_in_more_pieces_than_iovecs_is_copied_and_sent_whole() {
    let mem = guest_memory();
    let (mut tap, peer) = socket_tap();
    let f = frame(1000, 2);
    let segments = scattered(&mem, &f, 10);
    assert!(segments.len() > 64);
    tap.send(&TxFrame::new(&mem, &segments, f.len())).unwrap();
    let mut got = vec![0; 4096];
    let n = peer.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &f[..]);
}

#[test]
fn recv_takes_one_frame_at_a_time_and_none_when_empty() {
    let (mut tap, peer) = socket_tap();
    let mut buf = vec![0; RX_BUFFER_LEN];
    assert_eq!(tap.recv(&mut buf).unwrap(), None);
    peer.send(&frame(30, 0)).unwrap();
    peer.send(&frame(40, 0)).unwrap();
    assert_eq!(tap.recv(&mut buf).unwrap(), Some(42));
    assert_eq!(&buf[..42], &frame(30, 0)[..]);
    assert_eq!(tap.recv(&mut buf).unwrap(), Some(52));
    assert_eq!(tap.recv(&mut buf).unwrap(), None);
}

#[test]
fn a_tap_without_offloads_accepts_an_empty_offload_set() {
    let (mut tap, _peer) = socket_tap();
    assert!(!tap.supports_offloads());
    tap.set_offloads(Offloads::default()).unwrap();
    assert_eq!(tap.name(), "pair");
}

#[test]
fn interface_names_longer_than_15_bytes_are_refused() {
    let err = Tap::open("sixteen-bytes-xx").unwrap_err();
    assert!(matches!(err, TapError::Name(_)));
    assert!(err.to_string().contains("sixteen-bytes-xx"));
    assert!(matches!(Tap::open("a\0b"), Err(TapError::Name(_))));
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?}");
}

/// The standard one's-complement sum over an IPv4 header.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP datagram from 10.211.7.2:4000 to 10.211.7.1:`port` as a frame
/// (virtio-net header, Ethernet, IPv4, UDP without checksum).
fn udp_frame(dst_mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; HEADER_LEN];
    f.extend(dst_mac);
    f.extend(MAC.0);
    f.extend([0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend([10, 211, 7, 2, 10, 211, 7, 1]);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(4000u16.to_be_bytes());
    f.extend(port.to_be_bytes());
    f.extend((8 + payload.len() as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN) and iproute2"]
fn a_real_tap_carries_frames_both_ways_through_the_device() {
    let name = format!("flnt{}", std::process::id() % 100_000);
    let tap = Tap::open(&name).unwrap();
    assert_eq!(tap.name(), name);
    assert!(tap.supports_offloads());
    ip(&["addr", "add", "10.211.7.1/24", "dev", &name]);
    ip(&["link", "set", "dev", &name, "up"]);
    let tap_mac: MacAddr = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let mem = guest_memory();
    let rxq = DriverQueue::new(&mem, 0x1_0000, 16);
    let txq = DriverQueue::new(&mem, 0x2_0000, 16);
    let mut net = Net::new(tap, NetOptions { mac: Some(MAC) });
    let features = net.avail_features();
    net.ack_features(features);
    let queues = [&rxq, &txq].map(|q| {
        let mut queue = q.queue();
        queue.set_event_idx(features & FEATURE_EVENT_IDX != 0);
        queue
    });
    let irq = Arc::new(CountingInterrupt::new());
    net.activate(mem.clone(), irq, queues.into()).unwrap();

    // Guest → host: a UDP datagram to the tap's address.
    let host = UdpSocket::bind("10.211.7.1:40000").unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let f = udp_frame(tap_mac.0, 40000, b"flint");
    mem.write_slice(&f, GuestAddress(BUFFERS)).unwrap();
    txq.add_chains(
        &[
            desc(BUFFERS, HEADER_LEN as u32, NEXT, 1),
            desc(
                BUFFERS + HEADER_LEN as u64,
                (f.len() - HEADER_LEN) as u32,
                0,
                0,
            ),
        ],
        0,
    );
    net.process_queue(TX_QUEUE).unwrap();
    assert_eq!(net.stats().tx_frames, 1);
    let mut got = [0u8; 64];
    let (n, from) = host.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], b"flint");
    assert_eq!(from.to_string(), "10.211.7.2:4000");

    // Host → guest: a datagram to 10.211.7.2 makes the host ask for its
    // MAC with an ARP request through the tap.
    let buffers: Vec<_> = (0..16u16)
        .map(|i| desc(0x20_0000 + 0x1_0000 * u64::from(i), 0x1_0000, WRITE, 0))
        .collect();
    rxq.add_chains(&buffers, 0);
    host.send_to(b"x", "10.211.7.2:9").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let arp = loop {
        net.process_rx().unwrap();
        let arp = rxq.used().into_iter().find_map(|(head, len)| {
            let mut buf = vec![0u8; len as usize];
            let at = GuestAddress(0x20_0000 + 0x1_0000 * u64::from(head));
            mem.read_slice(&mut buf, at).unwrap();
            let ether_type = buf.get(HEADER_LEN + 12..HEADER_LEN + 14)?;
            (ether_type == [0x08, 0x06]).then_some(buf)
        });
        if let Some(arp) = arp {
            break arp;
        }
        assert!(Instant::now() < deadline, "no ARP request from the tap");
        std::thread::sleep(Duration::from_millis(10));
    };
    let payload = &arp[HEADER_LEN + 14..];
    assert_eq!(&payload[6..8], &[0, 1], "an ARP request");
    assert_eq!(&payload[24..28], &[10, 211, 7, 2], "for 10.211.7.2");
    assert_eq!(u16::from_le_bytes([arp[10], arp[11]]), 1, "num_buffers");
}
