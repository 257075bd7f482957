//! Transmit: a descriptor chain → the gather list of one frame, checked in
//! a single walk before the backend sees it, and the transmit queue
//! handler that hands each frame to the backend. Pure up to the backend
//! call: descriptors are read once and no buffer is touched; the segment
//! list is a buffer the device owns (no allocation per frame).
//!
//! Implements virtio 1.2 §5.1.6.2 (packet transmission: the header and the
//! frame in device-readable buffers, possibly split anywhere, §2.6.4
//! message framing; the used length of a transmit buffer is 0) on top of
//! the chain rules of §2.7.5 (direction, bounds, chain length; indirect
//! tables, §2.7.5.3, followed by virtio-queue).

use vm_memory::{GuestMemory, GuestMemoryMmap, Permissions};

use super::backend::{HostErrorLog, NetBackend, Segment, TxFrame};
use super::device::NetStats;
use super::{HEADER_LEN, MAX_FRAME_LEN, MIN_TX_FRAME_LEN};
use crate::virtqueue::{Chain, ChainFault, ChainHandler, FaultLog};

/// Why a transmit chain was refused: it goes back with used length 0 and
/// the frame is not sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TxFault {
    /// The chain itself is malformed.
    #[error(transparent)]
    Chain(#[from] ChainFault),
    /// Fewer bytes than a header and an Ethernet header.
    #[error("frame of {0} bytes is shorter than the virtio-net and Ethernet headers")]
    TooShort(u32),
}

/// Walk `chain` once: every descriptor device-readable and inside guest
/// memory, at most `max_descriptors` of them, at most [`MAX_FRAME_LEN`]
/// bytes in all. The non-empty buffers land in `segments` (whose capacity
/// should be `max_descriptors`); returns the frame length.
pub(crate) fn parse(
    chain: Chain<'_>,
    max_descriptors: u16,
    segments: &mut Vec<Segment>,
) -> Result<usize, TxFault> {
    segments.clear();
    let mem = chain.memory();
    let mut count: u16 = 0;
    let mut bytes: u32 = 0;
    let mut last_has_next = false;
    for desc in chain.clone() {
        count = count
            .checked_add(1)
            .filter(|&c| c <= max_descriptors)
            .ok_or(ChainFault::TooManyDescriptors(max_descriptors))?;
        if desc.is_write_only() {
            return Err(ChainFault::WrongDirection.into());
        }
        let len = desc.len();
        if len > 0 && !mem.check_range(desc.addr(), len as usize, Permissions::Read) {
            return Err(ChainFault::OutsideMemory {
                addr: desc.addr().0,
                len,
            }
            .into());
        }
        bytes = bytes
            .checked_add(len)
            .filter(|&b| b <= MAX_FRAME_LEN)
            .ok_or(ChainFault::TooLong(MAX_FRAME_LEN))?;
        if len > 0 {
            segments.push(Segment {
                addr: desc.addr(),
                len,
            });
        }
        last_has_next = desc.has_next();
    }
    if count == 0 {
        Err(ChainFault::Empty.into())
    } else if last_has_next {
        Err(ChainFault::Broken.into())
    } else if bytes == 0 {
        Err(ChainFault::ZeroLength.into())
    } else if bytes < MIN_TX_FRAME_LEN {
        Err(TxFault::TooShort(bytes))
    } else {
        // At most MAX_FRAME_LEN.
        Ok(bytes as usize)
    }
}

/// Sends every transmit chain to the backend; each is used with length 0.
pub(super) struct Transmit<'a, B: NetBackend> {
    pub backend: &'a mut B,
    pub segments: &'a mut Vec<Segment>,
    pub max_descriptors: u16,
    pub faults: &'a mut FaultLog,
    pub errors: &'a mut HostErrorLog,
    pub stats: &'a mut NetStats,
}

impl<B: NetBackend> ChainHandler for Transmit<'_, B> {
    fn handle(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        match parse(chain, self.max_descriptors, self.segments) {
            Err(fault) => {
                self.faults.report("virtio-net transmit", &fault);
                self.stats.tx_malformed += 1;
            }
            Ok(len) => match self.backend.send(&TxFrame::new(mem, self.segments, len)) {
                Ok(()) => {
                    self.stats.tx_frames += 1;
                    self.stats.tx_bytes += (len - HEADER_LEN) as u64;
                }
                Err(e) => {
                    self.errors.report("send", &e);
                    self.stats.tx_dropped += 1;
                }
            },
        }
        0
    }
}
