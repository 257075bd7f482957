//! Per-chain work of the console: copying a transmit chain to the sink and
//! filling a receive chain from pending input. Both validate the whole
//! chain before touching any buffer and reuse buffers owned by the device,
//! so nothing is allocated per request.
//!
//! Implements virtio 1.2 §5.3.6 (console device operation: transmitq
//! buffers are device-readable, receiveq buffers device-writable; the used
//! length of a receive buffer is the number of bytes written) on top of the
//! chain rules of §2.7.5.

use std::collections::VecDeque;
use std::io::{self, Write};

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::TX_CHAIN_MAX_BYTES;
use crate::virtqueue::{validate_chain, Chain, ChainHandler, ChainLimits, Direction, FaultLog};

/// Copies transmit chains into the sink. Every chain is used with length 0
/// (the device writes nothing into transmit buffers).
pub(super) struct Transmit<'a, W: Write> {
    sink: &'a mut W,
    scratch: &'a mut [u8],
    faults: &'a mut FaultLog,
    limits: ChainLimits,
    error: Option<io::Error>,
}

impl<'a, W: Write> Transmit<'a, W> {
    /// A handler for a transmit queue of `queue_size` entries.
    pub(super) fn new(
        sink: &'a mut W,
        scratch: &'a mut [u8],
        faults: &'a mut FaultLog,
        queue_size: u16,
    ) -> Self {
        let limits = ChainLimits {
            direction: Direction::DeviceReads,
            max_descriptors: queue_size,
            max_bytes: TX_CHAIN_MAX_BYTES,
        };
        Transmit {
            sink,
            scratch,
            faults,
            limits,
            error: None,
        }
    }

    /// Flush the sink; the first sink error of the batch, if any.
    pub(super) fn finish(self) -> Option<io::Error> {
        let flushed = self.sink.flush();
        self.error.or(flushed.err())
    }

    fn copy_out(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) {
        for desc in chain {
            let mut addr = desc.addr();
            let mut left = desc.len() as usize;
            while left > 0 {
                let n = left.min(self.scratch.len());
                let buf = &mut self.scratch[..n];
                if let Err(e) = mem.read_slice(buf, addr) {
                    // Only reachable if the driver rewrote the chain after
                    // validation.
                    self.faults.report("virtio-console transmit", &e);
                    return;
                }
                if let Err(e) = self.sink.write_all(buf) {
                    self.error = Some(e);
                    return;
                }
                let Some(next) = addr.checked_add(n as u64) else {
                    return;
                };
                addr = next;
                left -= n;
            }
        }
    }
}

impl<W: Write> ChainHandler for Transmit<'_, W> {
    fn handle(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        match validate_chain(&chain, &self.limits) {
            Err(fault) => self.faults.report("virtio-console transmit", &fault),
            // After a sink failure the rest of the batch is dropped.
            Ok(_) if self.error.is_some() => {}
            Ok(_) => self.copy_out(mem, chain),
        }
        0
    }
}

/// Fills receive chains from pending input; takes chains only while input
/// is pending.
pub(super) struct Receive<'a> {
    input: &'a mut VecDeque<u8>,
    faults: &'a mut FaultLog,
    limits: ChainLimits,
}

impl<'a> Receive<'a> {
    /// A handler for a receive queue of `queue_size` entries.
    pub(super) fn new(
        input: &'a mut VecDeque<u8>,
        faults: &'a mut FaultLog,
        queue_size: u16,
    ) -> Self {
        let limits = ChainLimits {
            direction: Direction::DeviceWrites,
            max_descriptors: queue_size,
            max_bytes: u32::MAX,
        };
        Receive {
            input,
            faults,
            limits,
        }
    }

    fn fill(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        let mut written: u32 = 0;
        for desc in chain {
            if self.input.is_empty() {
                break;
            }
            let n = (desc.len() as usize).min(self.input.len());
            if n == 0 {
                // Empty descriptors are not address-checked; skip them.
                continue;
            }
            if let Err(e) = write_front(mem, desc.addr(), self.input, n) {
                self.faults.report("virtio-console receive", &e);
                break;
            }
            // n <= desc.len(), and validation bounded the sum by u32::MAX.
            written = written.saturating_add(n as u32);
        }
        written
    }
}

impl ChainHandler for Receive<'_> {
    fn wants_more(&self) -> bool {
        !self.input.is_empty()
    }

    fn handle(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        match validate_chain(&chain, &self.limits) {
            Ok(_) => self.fill(mem, chain),
            Err(fault) => {
                self.faults.report("virtio-console receive", &fault);
                0
            }
        }
    }
}

/// Move the first `n` bytes of `input` to guest memory at `addr`; on error
/// `input` is left as it was.
fn write_front(
    mem: &GuestMemoryMmap,
    addr: GuestAddress,
    input: &mut VecDeque<u8>,
    n: usize,
) -> Result<(), GuestMemoryError> {
    let (front, back) = input.as_slices();
    let first = n.min(front.len());
    mem.write_slice(&front[..first], addr)?;
    if n > first {
        let rest = addr
            .checked_add(first as u64)
            .ok_or(GuestMemoryError::InvalidGuestAddress(addr))?;
        mem.write_slice(&back[..n - first], rest)?;
    }
    input.drain(..n);
    Ok(())
}
