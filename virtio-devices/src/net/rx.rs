//! Receive: frames from the backend into the guest's receive chains. A
//! frame is read into a buffer the device owns only when the guest has
//! posted a receive buffer, copied into one chain (or, with mergeable
//! buffers, as many as it needs, possibly across calls while the guest
//! posts more), and the chains of a frame go to the used ring together.
//! Nothing is allocated per frame.
//!
//! Implements virtio 1.2 §5.1.6.3–§5.1.6.4 (setting up receive buffers;
//! processing of incoming packets: num_buffers is 1 without
//! VIRTIO_NET_F_MRG_RXBUF, and the number of buffers used with it, each
//! buffer holding at least a header) on top of §2.7.8 (the used ring, here
//! written directly so that all buffers of a frame appear with one index
//! update) and §2.7.10 (used_event / avail_event with EVENT_IDX).

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::backend::NetBackend;
use super::device::NetStats;
use super::{HEADER_LEN, QUEUE_SIZE, RX_BUFFER_LEN};
use crate::device::DeviceError;
use crate::virtqueue::{
    validate_chain, Chain, ChainLimits, Direction, FaultLog, QueueFault, ServeError,
};

/// Offset of num_buffers in the header.
const NUM_BUFFERS: usize = 10;

/// How frames are laid out in receive chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// One chain per frame (no VIRTIO_NET_F_MRG_RXBUF): a frame longer than
    /// the chain is dropped and the chain stays available.
    Single,
    /// As many chains as the frame needs (VIRTIO_NET_F_MRG_RXBUF).
    Mergeable,
}

/// One used-ring entry in the making: a chain's head and the bytes written.
#[derive(Clone, Copy, Debug)]
struct Used {
    head: u16,
    len: u32,
}

/// Receive state kept between calls: the frame being delivered and the
/// chains it already fills.
pub(super) struct RxState {
    buf: Vec<u8>,
    /// Length of the frame in `buf`; 0 when there is none.
    len: usize,
    /// Bytes of it already in guest buffers.
    copied: usize,
    /// Chains holding those bytes, not yet in the used ring.
    chains: Vec<Used>,
    /// Where the first chain holds the two bytes of num_buffers.
    num_buffers_at: [GuestAddress; 2],
    /// next_used when the driver was last considered for a notification.
    signalled: Wrapping<u16>,
}

impl RxState {
    /// Empty, with the receive buffer allocated.
    pub(super) fn new() -> Self {
        RxState {
            buf: vec![0; RX_BUFFER_LEN],
            len: 0,
            copied: 0,
            chains: Vec::with_capacity(QUEUE_SIZE.into()),
            num_buffers_at: [GuestAddress(0); 2],
            signalled: Wrapping(0),
        }
    }

    /// Forget the chains (the queue is gone); a frame read but not
    /// delivered is kept for the next driver.
    pub(super) fn reset(&mut self) {
        self.copied = 0;
        self.chains.clear();
        self.signalled = Wrapping(0);
    }

    /// Whether a frame waits for receive buffers.
    pub(super) fn has_frame(&self) -> bool {
        self.len > 0
    }

    fn drop_frame(&mut self, stats: &mut NetStats) {
        stats.rx_dropped += 1;
        self.len = 0;
        self.copied = 0;
        self.chains.clear();
    }
}

/// What became of the pending frame.
enum Fill {
    /// In the used ring.
    Delivered,
    /// Dropped; the next frame may be read.
    Dropped,
    /// Waiting for more receive chains.
    NeedBuffers,
}

/// One round of receiving against `queue`.
pub(super) struct Receive<'a, B: NetBackend> {
    pub backend: &'a mut B,
    pub state: &'a mut RxState,
    pub queue: &'a mut Queue,
    pub mem: &'a GuestMemoryMmap,
    pub layout: Layout,
    pub faults: &'a mut FaultLog,
    pub stats: &'a mut NetStats,
    /// Whether anything went to the used ring.
    pub published: bool,
}

impl<B: NetBackend> Receive<'_, B> {
    /// Deliver frames until the backend has none or the guest has no
    /// receive buffer; in the latter case notifications are enabled so the
    /// driver kicks the queue when it posts more.
    pub(super) fn run(&mut self) -> Result<(), ServeError> {
        loop {
            if !self.state.has_frame() {
                if !self.buffers_available()? {
                    return Ok(());
                }
                if !self.read_frame()? {
                    return Ok(());
                }
                continue;
            }
            match self.fill()? {
                Fill::Delivered | Fill::Dropped => {}
                Fill::NeedBuffers => {
                    let more = self
                        .queue
                        .enable_notification(self.mem)
                        .map_err(QueueFault::Avail)?;
                    if !more {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Whether the driver has posted a chain not yet taken; when not,
    /// notifications are enabled (and the ring looked at once more).
    fn buffers_available(&mut self) -> Result<bool, QueueFault> {
        let avail = self
            .queue
            .avail_idx(self.mem, Ordering::Acquire)
            .map_err(QueueFault::Avail)?;
        if avail.0 != self.queue.next_avail() {
            return Ok(true);
        }
        self.queue
            .enable_notification(self.mem)
            .map_err(QueueFault::Avail)
    }

    /// Read the next frame from the backend; false when there is none.
    fn read_frame(&mut self) -> Result<bool, ServeError> {
        let state = &mut *self.state;
        let n = match self.backend.recv(&mut state.buf) {
            Ok(Some(n)) => n.min(state.buf.len()),
            Ok(None) => return Ok(false),
            Err(e) => return Err(ServeError::Host(DeviceError::Backend(e))),
        };
        if n < HEADER_LEN {
            log::debug!("virtio-net: dropped a {n}-byte frame from the backend");
            state.drop_frame(self.stats);
            return Ok(true);
        }
        // num_buffers: 1 unless a mergeable frame takes more chains.
        state.buf[NUM_BUFFERS..HEADER_LEN].copy_from_slice(&1u16.to_le_bytes());
        state.len = n;
        state.copied = 0;
        state.chains.clear();
        Ok(true)
    }

    /// Copy the pending frame into receive chains and publish them once it
    /// is all in.
    fn fill(&mut self) -> Result<Fill, QueueFault> {
        let limits = ChainLimits {
            direction: Direction::DeviceWrites,
            max_descriptors: self.queue.size(),
            max_bytes: u32::MAX,
        };
        while self.state.copied < self.state.len {
            if self.state.chains.len() >= usize::from(self.queue.size()) {
                // Every buffer the ring can hold is not enough.
                self.abandon()?;
                return Ok(Fill::Dropped);
            }
            let mem = self.mem;
            let mut iter = self.queue.iter(mem).map_err(QueueFault::Avail)?;
            let Some(chain) = iter.next() else {
                return Ok(Fill::NeedBuffers);
            };
            let head = chain.head_index();
            let capacity = match validate_chain(&chain, &limits) {
                Ok(capacity) => capacity,
                Err(fault) => {
                    self.refuse(head, &fault)?;
                    continue;
                }
            };
            if self.state.chains.is_empty() && capacity < HEADER_LEN as u32 {
                self.refuse(head, &"receive chain is shorter than the header")?;
                continue;
            }
            if self.layout == Layout::Single && (capacity as usize) < self.state.len {
                // The chain stays for a smaller frame.
                iter.go_to_previous_position();
                log::debug!("virtio-net: dropped a receive frame larger than the chain");
                self.state.drop_frame(self.stats);
                return Ok(Fill::Dropped);
            }
            match copy_into(mem, chain, self.state) {
                Ok(len) => self.state.chains.push(Used { head, len }),
                Err(e) => self.refuse(head, &e)?,
            }
        }
        self.deliver()?;
        Ok(Fill::Delivered)
    }

    /// Give back a chain the device cannot use, with used length 0.
    fn refuse(&mut self, head: u16, fault: &dyn std::fmt::Display) -> Result<(), QueueFault> {
        self.faults.report("virtio-net receive", fault);
        self.stats.rx_malformed += 1;
        self.publish_one(Used { head, len: 0 })
    }

    fn publish_one(&mut self, used: Used) -> Result<(), QueueFault> {
        publish(self.queue, self.mem, &[used])?;
        self.published = true;
        Ok(())
    }

    /// The frame is in its chains: set num_buffers, publish them together.
    fn deliver(&mut self) -> Result<(), QueueFault> {
        let state = &mut *self.state;
        let count = state.chains.len();
        if count > 1 {
            // At most the queue size, 256.
            let bytes = (count as u16).to_le_bytes();
            for (byte, at) in bytes.into_iter().zip(state.num_buffers_at) {
                if let Err(e) = self.mem.write_obj(byte, at) {
                    self.faults.report("virtio-net receive", &e);
                }
            }
        }
        publish(self.queue, self.mem, &state.chains)?;
        self.published = true;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += (state.len - HEADER_LEN) as u64;
        state.len = 0;
        state.copied = 0;
        state.chains.clear();
        Ok(())
    }

    /// Drop the pending frame and give its chains back with used length 0.
    fn abandon(&mut self) -> Result<(), QueueFault> {
        log::debug!("virtio-net: dropped a receive frame larger than the whole ring");
        for used in &mut self.state.chains {
            used.len = 0;
        }
        publish(self.queue, self.mem, &self.state.chains)?;
        self.published = true;
        self.state.drop_frame(self.stats);
        Ok(())
    }
}

/// Copy as much of the pending frame as fits into `chain` (checked
/// device-writable and in memory), noting where num_buffers lands;
/// returns the bytes written.
fn copy_into(
    mem: &GuestMemoryMmap,
    chain: Chain<'_>,
    state: &mut RxState,
) -> Result<u32, GuestMemoryError> {
    let frame = &state.buf[..state.len];
    let start = state.copied;
    let mut at = start;
    for desc in chain {
        if at == frame.len() {
            break;
        }
        let n = (desc.len() as usize).min(frame.len() - at);
        if n == 0 {
            continue;
        }
        mem.write_slice(&frame[at..at + n], desc.addr())?;
        for (i, offset) in [NUM_BUFFERS, NUM_BUFFERS + 1].into_iter().enumerate() {
            if (at..at + n).contains(&offset) {
                state.num_buffers_at[i] = desc
                    .addr()
                    .checked_add((offset - at) as u64)
                    .ok_or(GuestMemoryError::InvalidGuestAddress(desc.addr()))?;
            }
        }
        at += n;
    }
    state.copied = at;
    // Bounded by the chain's length, a u32 (validated).
    Ok((at - start) as u32)
}

/// Put `entries` in the used ring and advance its index once, so the
/// driver sees all of them or none (§2.7.8).
fn publish(queue: &mut Queue, mem: &GuestMemoryMmap, entries: &[Used]) -> Result<(), QueueFault> {
    let used_error = |e| QueueFault::Used(virtio_queue::Error::GuestMemory(e));
    let size = queue.size();
    let ring = GuestAddress(queue.used_ring());
    let start = Wrapping(queue.next_used());
    let mut next = start;
    for entry in entries {
        if entry.head >= size {
            return Err(QueueFault::Used(
                virtio_queue::Error::InvalidDescriptorIndex,
            ));
        }
        let slot = u64::from(next.0 % size);
        let addr = ring
            .checked_add(4 + 8 * slot)
            .ok_or(QueueFault::Used(virtio_queue::Error::AddressOverflow))?;
        // struct virtq_used_elem: le32 id, le32 len.
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(entry.head).to_le_bytes());
        elem[4..].copy_from_slice(&entry.len.to_le_bytes());
        mem.write_slice(&elem, addr).map_err(used_error)?;
        next += Wrapping(1);
    }
    let idx = ring
        .checked_add(2)
        .ok_or(QueueFault::Used(virtio_queue::Error::AddressOverflow))?;
    // Release: the elements are visible before the index that covers them.
    mem.store(u16::to_le(next.0), idx, Ordering::Release)
        .map_err(used_error)?;
    queue.set_next_used(next.0);
    Ok(())
}

/// Whether the driver wants a used-buffer notification for what was
/// published since the last call: always without EVENT_IDX (the
/// NO_INTERRUPT flag is a hint, §2.7.7), else when used_event was passed
/// (§2.7.10).
pub(super) fn needs_notification(
    queue: &Queue,
    mem: &GuestMemoryMmap,
    state: &mut RxState,
) -> Result<bool, QueueFault> {
    let new = Wrapping(queue.next_used());
    let old = std::mem::replace(&mut state.signalled, new);
    if !queue.event_idx_enabled() {
        return Ok(true);
    }
    // The used index store before the used_event load.
    fence(Ordering::SeqCst);
    let at = GuestAddress(queue.avail_ring())
        .checked_add(4 + 2 * u64::from(queue.size()))
        .ok_or(QueueFault::Avail(virtio_queue::Error::AddressOverflow))?;
    let used_event: u16 = mem
        .load(at, Ordering::Acquire)
        .map_err(|e| QueueFault::Avail(virtio_queue::Error::GuestMemory(e)))?;
    let used_event = Wrapping(u16::from_le(used_event));
    Ok(new - used_event - Wrapping(1) < new - old)
}
