//! Fixtures for the network tests: a fake backend (a pair of frame
//! queues), and a device on real guest memory driven through two
//! hand-built driver-side queues (`crate::testing::DriverQueue`), with
//! helpers for frames in the virtio 1.2 §5.1.6 layout.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::device::{VirtioDevice, FEATURE_EVENT_IDX};
use crate::interrupt::CountingInterrupt;
use crate::testing::{desc, DriverQueue, WRITE};

/// Driver-side queue size in these tests.
pub(super) const SIZE: u16 = 16;
/// Where transmit frames and receive buffers live.
pub(super) const TX_BUF: u64 = 0x10_0000;
pub(super) const RX_BUF: u64 = 0x20_0000;
/// The test MAC.
pub(super) const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/// Every feature bit the device may offer.
pub(super) const ALL_FEATURES: u64 = u64::MAX;
/// Everything but mergeable receive buffers.
pub(super) const NO_MRG: u64 = !(1 << VIRTIO_NET_F_MRG_RXBUF);

/// A backend made of two frame queues: `incoming` for the guest,
/// `sent` from it.
#[derive(Debug, Default)]
pub(super) struct Fake {
    /// Frames `recv` hands out, oldest first.
    pub incoming: VecDeque<Vec<u8>>,
    /// Frames `send` took, oldest first.
    pub sent: Vec<Vec<u8>>,
    /// What `supports_offloads` says.
    pub offload_support: bool,
    /// Every `set_offloads` call.
    pub offloads: Vec<Offloads>,
    /// `recv` calls so far.
    pub recv_calls: usize,
    /// `send` fails with EIO while set.
    pub fail_send: bool,
    /// `recv` fails with EIO while set.
    pub fail_recv: bool,
    /// `set_offloads` fails with EINVAL while set.
    pub fail_offloads: bool,
}

impl Fake {
    pub(super) fn new() -> Self {
        Fake {
            offload_support: true,
            ..Fake::default()
        }
    }
}

impl AsRawFd for Fake {
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
}

impl NetBackend for Fake {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.recv_calls += 1;
        if self.fail_recv {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(self.incoming.pop_front().map(|frame| {
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            n
        }))
    }

    fn send(&mut self, frame: &TxFrame<'_>) -> io::Result<()> {
        if self.fail_send {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut bytes = vec![0; frame.len()];
        assert_eq!(frame.copy_to(&mut bytes).unwrap(), frame.len());
        self.sent.push(bytes);
        Ok(())
    }

    fn supports_offloads(&self) -> bool {
        self.offload_support
    }

    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        if self.fail_offloads {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.offloads.push(offloads);
        Ok(())
    }
}

/// A network device on guest memory, driven from the driver side.
pub(super) struct Rig<'m> {
    pub mem: &'m GuestMemoryMmap,
    pub rxq: DriverQueue<'m>,
    pub txq: DriverQueue<'m>,
    pub irq: Arc<CountingInterrupt>,
    pub net: Net<Fake>,
}

impl<'m> Rig<'m> {
    /// An active device with a MAC, an offload-capable fake, and the
    /// driver acking `features` of those offered.
    pub(super) fn new(mem: &'m GuestMemoryMmap, features: u64) -> Self {
        let options = NetOptions { mac: Some(MAC) };
        Self::with(mem, Fake::new(), options, features)
    }

    /// An active device over `fake` with `options`.
    pub(super) fn with(
        mem: &'m GuestMemoryMmap,
        fake: Fake,
        options: NetOptions,
        features: u64,
    ) -> Self {
        let mut rig = Rig {
            mem,
            rxq: DriverQueue::new(mem, 0x1_0000, SIZE),
            txq: DriverQueue::new(mem, 0x2_0000, SIZE),
            irq: Arc::new(CountingInterrupt::new()),
            net: Net::new(fake, options),
        };
        rig.activate(features);
        rig
    }

    pub(super) fn activate(&mut self, features: u64) {
        let features = features & self.net.avail_features();
        self.net.ack_features(features);
        let queues = [&self.rxq, &self.txq].map(|q| {
            let mut queue = q.queue();
            queue.set_event_idx(features & FEATURE_EVENT_IDX != 0);
            queue
        });
        self.net
            .activate(self.mem.clone(), self.irq.clone(), queues.into())
            .unwrap();
    }

    pub(super) fn fake(&mut self) -> &mut Fake {
        self.net.backend_mut()
    }

    /// Write `bytes` into guest memory at `addr`.
    pub(super) fn put(&self, addr: u64, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
    }

    /// Read `len` bytes of guest memory at `addr`.
    pub(super) fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Make `descs` available on the transmit queue from table index
    /// `at`, notify, and return the used ring entries added.
    pub(super) fn transmit_at(&mut self, descs: &[RawDescriptor], at: u16) -> Vec<(u32, u32)> {
        let before = self.txq.used().len();
        self.txq.add_chains(descs, at);
        self.net.process_queue(TX_QUEUE).unwrap();
        self.txq.used()[before..].to_vec()
    }

    /// Put `frame` at [`TX_BUF`] in one descriptor, transmit it, and
    /// return the used ring entries added.
    pub(super) fn transmit(&mut self, frame: &[u8]) -> Vec<(u32, u32)> {
        self.put(TX_BUF, frame);
        self.transmit_at(&[desc(TX_BUF, frame.len() as u32, 0, 0)], 0)
    }

    /// Post `count` single-descriptor receive buffers of `len` bytes from
    /// table index `at` (buffer `i` at `RX_BUF + i * 0x1_0000`).
    pub(super) fn post_rx(&self, at: u16, count: u16, len: u32) {
        let descs: Vec<_> = (at..at + count)
            .map(|i| desc(rx_addr(i), len, WRITE, 0))
            .collect();
        self.rxq.add_chains(&descs, at);
    }

    /// Queue `frame` in the fake for the guest.
    pub(super) fn incoming(&mut self, frame: Vec<u8>) {
        self.fake().incoming.push_back(frame);
    }
}

/// Where receive buffer `i` of [`Rig::post_rx`] lies.
pub(super) fn rx_addr(i: u16) -> u64 {
    RX_BUF + u64::from(i) * 0x1_0000
}

/// A header as a driver or a tap would write it: NEEDS_CSUM, hdr_len 54,
/// gso_size 1500, csum_start 34, csum_offset 16, num_buffers 0.
pub(super) const HEADER: [u8; HEADER_LEN] = [1, 0, 54, 0, 0xdc, 0x05, 34, 0, 16, 0, 0, 0];

/// A frame: [`HEADER`], then `payload_len` bytes of a pattern starting at
/// `seed`.
pub(super) fn frame(payload_len: usize, seed: u8) -> Vec<u8> {
    let mut f = HEADER.to_vec();
    f.extend((0..payload_len).map(|i| seed.wrapping_add(i as u8)));
    f
}

/// num_buffers of a header.
pub(super) fn num_buffers(header: &[u8]) -> u16 {
    u16::from_le_bytes([header[10], header[11]])
}
