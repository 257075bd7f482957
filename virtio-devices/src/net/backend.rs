//! Where a network device's frames go and come from: the [`NetBackend`]
//! trait, the [`TxFrame`] gather list a transmit chain becomes, and the
//! [`Offloads`] the guest agreed to receive.
//!
//! Serves the host side of virtio 1.2 §5.1.6 (every frame, both ways,
//! starts with the 12-byte `virtio_net_hdr_v1`) and the offload features
//! of §5.1.3 (VIRTIO_NET_F_GUEST_CSUM / GUEST_TSO4 / GUEST_TSO6 /
//! GUEST_UFO, which decide what the backend may hand the guest).

use std::io;
use std::os::fd::AsRawFd;

use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryError, GuestMemoryMmap, Permissions, VolatileSlice,
};

/// The offloads the guest accepted for frames it receives: which
/// shortcuts the backend may take in what it hands over (partial
/// checksums, GSO frames larger than the MTU). All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Frames may carry a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM):
    /// VIRTIO_NET_F_GUEST_CSUM, TUN_F_CSUM.
    pub csum: bool,
    /// TCP over IPv4 segmentation: VIRTIO_NET_F_GUEST_TSO4, TUN_F_TSO4.
    pub tso4: bool,
    /// TCP over IPv6 segmentation: VIRTIO_NET_F_GUEST_TSO6, TUN_F_TSO6.
    pub tso6: bool,
    /// UDP fragmentation: VIRTIO_NET_F_GUEST_UFO, TUN_F_UFO.
    pub ufo: bool,
}

/// The host side of a network device. Every frame, both ways, starts with
/// the 12-byte `virtio_net_hdr_v1` ([`HEADER_LEN`](super::HEADER_LEN)).
///
/// Calls never block: the descriptor from [`AsRawFd`] is what the vmm
/// polls for frames to receive.
pub trait NetBackend: AsRawFd + Send {
    /// Read one frame, header included, into `buf`; `Ok(None)` when no
    /// frame is waiting. A frame longer than `buf` may be truncated.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// Send one frame, header included, gathered from guest memory.
    /// An error drops the frame; the device counts it and goes on.
    fn send(&mut self, frame: &TxFrame<'_>) -> io::Result<()>;

    /// Whether the backend honours the virtio-net header's offload
    /// fields both ways (checksum and segmentation); the device offers
    /// VIRTIO_NET_F_CSUM, GUEST_CSUM, HOST_TSO4/6 and GUEST_TSO4/6 only
    /// then.
    fn supports_offloads(&self) -> bool;

    /// The guest's choice of [`Offloads`], at each activation; never
    /// called with an offload on unless
    /// [`supports_offloads`](NetBackend::supports_offloads).
    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()>;
}

/// One buffer of a transmit chain: guest-physical start and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Length in bytes (non-zero).
    pub len: u32,
}

/// A frame the guest transmits, header included, as the list of guest
/// buffers it lies in; every buffer was checked to be inside guest memory
/// and readable.
#[derive(Clone, Copy, Debug)]
pub struct TxFrame<'a> {
    mem: &'a GuestMemoryMmap,
    segments: &'a [Segment],
    len: usize,
}

impl<'a> TxFrame<'a> {
    /// A frame over checked `segments` of `mem`, `len` bytes in all.
    pub(crate) fn new(mem: &'a GuestMemoryMmap, segments: &'a [Segment], len: usize) -> Self {
        TxFrame { mem, segments, len }
    }

    /// Bytes in the frame, header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty (never, for a frame the device sends).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame's bytes in order, as slices of guest memory (a buffer
    /// that spans two memory regions gives two slices).
    pub fn slices(&self) -> impl Iterator<Item = Result<VolatileSlice<'a>, GuestMemoryError>> + 'a {
        let mem = self.mem;
        self.segments.iter().flat_map(move |s| {
            let (slices, error) = match mem.get_slices(s.addr, s.len as usize, Permissions::Read) {
                Ok(slices) => (Some(slices), None),
                Err(e) => (None, Some(Err(e))),
            };
            slices.into_iter().flatten().chain(error)
        })
    }

    /// Copy the frame into `buf`; returns the bytes copied (all of them
    /// unless `buf` is shorter).
    pub fn copy_to(&self, buf: &mut [u8]) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        for slice in self.slices() {
            let slice = slice?;
            let n = slice.copy_to(&mut buf[done..]);
            done += n;
            if done == buf.len() {
                break;
            }
        }
        Ok(done)
    }
}

/// Counts backend failures and logs them at error level for the first
/// few and then at powers of two, debug otherwise, so a broken tap cannot
/// flood the log.
#[derive(Debug, Default)]
pub(crate) struct HostErrorLog {
    count: u64,
}

impl HostErrorLog {
    /// Record one failure of `what` (e.g. "send").
    pub(crate) fn report(&mut self, what: &str, e: &io::Error) {
        self.count = self.count.saturating_add(1);
        if self.count <= 8 || self.count.is_power_of_two() {
            log::error!(
                "virtio-net: {what} failed: {e} (backend error {})",
                self.count
            );
        } else {
            log::debug!(
                "virtio-net: {what} failed: {e} (backend error {})",
                self.count
            );
        }
    }
}
