//! Device-side split-virtqueue helpers shared by every device: popping
//! descriptor chains, validating a chain before any of its buffers is
//! touched, returning chains through the used ring with notification
//! suppression, and rate-limited reporting of guest faults.
//!
//! Implements virtio 1.2 §2.7 (split virtqueues): descriptor chains and
//! their direction (§2.7.5), indirect descriptors (§2.7.5.3, followed by
//! virtio-queue), the used ring (§2.7.8) and used-buffer / available-buffer
//! notification suppression with and without VIRTIO_F_EVENT_IDX (§2.7.7,
//! §2.7.10).

use log::{debug, warn};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestMemory, GuestMemoryMmap, Permissions};

use crate::device::DeviceError;
use crate::interrupt::{InterruptType, VirtioInterrupt};

/// A descriptor chain over the guest memory a device was activated with.
pub(crate) type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// Which way the bytes of a chain's buffers must flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Every descriptor must be device-readable (driver → device).
    DeviceReads,
    /// Every descriptor must be device-writable (device → driver).
    DeviceWrites,
}

/// What a device accepts in one chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChainLimits {
    /// The direction every descriptor must have.
    pub direction: Direction,
    /// Most descriptors, indirect ones included (§2.7.5.3.1: no longer than
    /// the queue size).
    pub max_descriptors: u16,
    /// Most bytes over all descriptors.
    pub max_bytes: u32,
}

/// Why a chain was refused. The chain goes back to the driver with used
/// length 0; the queue keeps working.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChainFault {
    /// Not even the head descriptor could be read.
    #[error("chain has no readable descriptor")]
    Empty,
    /// The last descriptor read still had NEXT set: a loop, a next index
    /// past the table, an unreadable or invalid indirect table, or more
    /// than 4 GiB in total.
    #[error("chain breaks off (loop, bad next index or bad indirect table)")]
    Broken,
    /// A descriptor flows the wrong way for this queue.
    #[error("chain has a descriptor in the wrong direction")]
    WrongDirection,
    /// More descriptors than the limit.
    #[error("chain has more than {0} descriptors")]
    TooManyDescriptors(u16),
    /// More bytes than the limit.
    #[error("chain carries more than {0} bytes")]
    TooLong(u32),
    /// Every buffer in the chain is empty.
    #[error("chain carries no bytes")]
    ZeroLength,
    /// A buffer is not inside guest memory.
    #[error("buffer at {addr:#x} of {len:#x} bytes is outside guest memory")]
    OutsideMemory {
        /// Guest-physical start of the buffer.
        addr: u64,
        /// Its length.
        len: u32,
    },
}

/// A fault that leaves a queue unusable: the device sets
/// DEVICE_NEEDS_RESET.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueueFault {
    /// The available ring index or the notification fields could not be
    /// used (e.g. the driver advanced `idx` by more than the queue size).
    #[error("available ring is inconsistent")]
    Avail(#[source] virtio_queue::Error),
    /// A chain could not be returned through the used ring (e.g. a head
    /// index past the queue size).
    #[error("used ring could not be updated")]
    Used(#[source] virtio_queue::Error),
}

/// Walk `chain` without touching its buffers and check it against
/// `limits`; returns the total byte count.
pub(crate) fn validate_chain(chain: &Chain<'_>, limits: &ChainLimits) -> Result<u32, ChainFault> {
    let mem = chain.memory();
    let (writable, access) = match limits.direction {
        Direction::DeviceReads => (false, Permissions::Read),
        Direction::DeviceWrites => (true, Permissions::Write),
    };
    let mut count: u16 = 0;
    let mut bytes: u32 = 0;
    let mut last_has_next = false;
    for desc in chain.clone() {
        count = count
            .checked_add(1)
            .filter(|&c| c <= limits.max_descriptors)
            .ok_or(ChainFault::TooManyDescriptors(limits.max_descriptors))?;
        if desc.is_write_only() != writable {
            return Err(ChainFault::WrongDirection);
        }
        let len = desc.len();
        if len > 0 && !mem.check_range(desc.addr(), len as usize, access) {
            return Err(ChainFault::OutsideMemory {
                addr: desc.addr().0,
                len,
            });
        }
        bytes = bytes
            .checked_add(len)
            .filter(|&b| b <= limits.max_bytes)
            .ok_or(ChainFault::TooLong(limits.max_bytes))?;
        last_has_next = desc.has_next();
    }
    if count == 0 {
        Err(ChainFault::Empty)
    } else if last_has_next {
        Err(ChainFault::Broken)
    } else if bytes == 0 {
        Err(ChainFault::ZeroLength)
    } else {
        Ok(bytes)
    }
}

/// A device's per-queue work: decide whether to take another chain, and
/// serve one, returning the number of bytes written into its buffers.
pub(crate) trait ChainHandler {
    /// Whether the device has work for another chain (e.g. pending input
    /// for a receive queue).
    fn wants_more(&self) -> bool {
        true
    }
    /// Serve `chain` (whose buffers are in `mem`); the return value is the
    /// used length.
    fn handle(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32;
    /// Start serving `chain`: `Some(used length)` when it is done now,
    /// `None` when it is in flight and the device will return it through
    /// the used ring itself later (an asynchronous engine).
    fn start(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> Option<u32> {
        Some(self.handle(mem, chain))
    }
}

/// Pop the next available chain, if any.
fn pop_chain<'a>(
    queue: &mut Queue,
    mem: &'a GuestMemoryMmap,
) -> Result<Option<Chain<'a>>, QueueFault> {
    let mut iter = queue.iter(mem).map_err(QueueFault::Avail)?;
    Ok(iter.next())
}

/// Serve every available chain `handler` wants, with available-buffer
/// notifications off while doing so (§2.7.10), and return whether any
/// chain went to the used ring (chains left in flight by
/// [`ChainHandler::start`] do not count).
pub(crate) fn serve_queue(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    handler: &mut impl ChainHandler,
) -> Result<bool, QueueFault> {
    let mut used = false;
    loop {
        queue.disable_notification(mem).map_err(QueueFault::Avail)?;
        while handler.wants_more() {
            let Some(chain) = pop_chain(queue, mem)? else {
                break;
            };
            let head = chain.head_index();
            if let Some(len) = handler.start(mem, chain) {
                queue.add_used(mem, head, len).map_err(QueueFault::Used)?;
                used = true;
            }
        }
        // Re-enable, then look again: a chain added in between would
        // otherwise wait for a notification the driver will not send.
        let more = queue.enable_notification(mem).map_err(QueueFault::Avail)?;
        if !more || !handler.wants_more() {
            return Ok(used);
        }
    }
}

/// Why serving a queue stopped early.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// The guest broke the queue: set DEVICE_NEEDS_RESET.
    Guest(QueueFault),
    /// The host failed: report to the vmm.
    Host(DeviceError),
}

impl From<QueueFault> for ServeError {
    fn from(fault: QueueFault) -> Self {
        ServeError::Guest(fault)
    }
}

/// Send the used-buffer notification for queue `index` if the driver
/// wants one (used_event with EVENT_IDX; otherwise always, since
/// VRING_AVAIL_F_NO_INTERRUPT is only a hint, §2.7.7).
pub(crate) fn signal_used(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &dyn VirtioInterrupt,
    index: u16,
) -> Result<(), ServeError> {
    if queue.needs_notification(mem).map_err(QueueFault::Avail)? {
        interrupt
            .trigger(InterruptType::Queue(index))
            .map_err(|e| ServeError::Host(DeviceError::Interrupt(e)))?;
    }
    Ok(())
}

/// [`signal_used`] when `used` (something was added to the used ring).
pub(crate) fn signal_if_used(
    used: bool,
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &dyn VirtioInterrupt,
    index: u16,
) -> Result<(), ServeError> {
    if used {
        signal_used(queue, mem, interrupt, index)
    } else {
        Ok(())
    }
}

impl ServeError {
    /// A queue outcome as the vmm sees it: host errors propagate, a guest
    /// fault that broke the queue goes to `needs_reset`.
    pub(crate) fn settle(
        result: Result<(), ServeError>,
        needs_reset: impl FnOnce(QueueFault) -> Result<(), DeviceError>,
    ) -> Result<(), DeviceError> {
        match result {
            Ok(()) => Ok(()),
            Err(ServeError::Host(e)) => Err(e),
            Err(ServeError::Guest(fault)) => needs_reset(fault),
        }
    }
}

/// Report a guest fault that broke `device`'s queue and raise the config
/// interrupt (when the device is active), so the driver reads
/// DEVICE_NEEDS_RESET; the caller marks the device broken.
pub(crate) fn report_needs_reset(
    faults: &mut FaultLog,
    device: &str,
    fault: QueueFault,
    interrupt: Option<&dyn VirtioInterrupt>,
) -> Result<(), DeviceError> {
    faults.report(device, &format_args!("{fault}; device needs reset"));
    match interrupt {
        Some(interrupt) => interrupt
            .trigger(InterruptType::Config)
            .map_err(DeviceError::Interrupt),
        None => Ok(()),
    }
}

/// Counts guest faults and logs them at warn level for the first few and
/// then at powers of two, debug otherwise, so a misbehaving guest cannot
/// flood the log.
#[derive(Debug, Default)]
pub(crate) struct FaultLog {
    count: u64,
}

impl FaultLog {
    /// Record one fault of `what` (e.g. "virtio-console transmit").
    pub(crate) fn report(&mut self, what: &str, fault: &dyn std::fmt::Display) {
        self.count = self.count.saturating_add(1);
        if self.count <= 8 || self.count.is_power_of_two() {
            warn!("{what}: {fault} (guest fault {})", self.count);
        } else {
            debug!("{what}: {fault} (guest fault {})", self.count);
        }
    }

    /// Faults recorded so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;

    use super::*;
    use crate::testing::{desc, guest_memory, BUFFERS, INDIRECT, MEM_SIZE, NEXT, WRITE};

    const READS: ChainLimits = ChainLimits {
        direction: Direction::DeviceReads,
        max_descriptors: 4,
        max_bytes: 0x1000,
    };

    /// Validate the chain `descs` exactly as given (flags and next
    /// untouched), built with virtio-queue's mock driver.
    fn check(descs: &[RawDescriptor], limits: &ChainLimits) -> Result<u32, ChainFault> {
        let mem = guest_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let chain = vq.build_multiple_desc_chains(descs).unwrap();
        validate_chain(&chain, limits)
    }

    #[test]
    fn a_well_formed_chain_reports_its_length() {
        let descs = [desc(BUFFERS, 10, NEXT, 1), desc(BUFFERS + 0x100, 20, 0, 0)];
        assert_eq!(check(&descs, &READS), Ok(30));
        let writes = ChainLimits {
            direction: Direction::DeviceWrites,
            ..READS
        };
        assert_eq!(check(&[desc(BUFFERS, 8, WRITE, 0)], &writes), Ok(8));
    }

    #[test]
    fn a_descriptor_in_the_wrong_direction_is_a_fault() {
        let descs = [desc(BUFFERS, 10, NEXT, 1), desc(BUFFERS, 10, WRITE, 0)];
        assert_eq!(check(&descs, &READS), Err(ChainFault::WrongDirection));
    }

    #[test]
    fn buffers_outside_memory_are_faults() {
        for (addr, len) in [(MEM_SIZE, 1), (MEM_SIZE - 1, 2), (u64::MAX, 1)] {
            assert_eq!(
                check(&[desc(addr, len, 0, 0)], &READS),
                Err(ChainFault::OutsideMemory { addr, len })
            );
        }
    }

    #[test]
    fn limits_on_bytes_and_descriptors_are_enforced() {
        let long = [desc(BUFFERS, 0x800, NEXT, 1), desc(BUFFERS, 0x801, 0, 0)];
        assert_eq!(check(&long, &READS), Err(ChainFault::TooLong(0x1000)));
        let many: Vec<_> = (0..5).map(|i| desc(BUFFERS, 1, NEXT, i + 1)).collect();
        assert_eq!(check(&many, &READS), Err(ChainFault::TooManyDescriptors(4)));
    }

    #[test]
    fn loops_and_dangling_next_links_are_broken_chains() {
        let limits = ChainLimits {
            max_descriptors: 16,
            ..READS
        };
        let looped = [desc(BUFFERS, 1, NEXT, 1), desc(BUFFERS, 1, NEXT, 0)];
        assert_eq!(check(&looped, &limits), Err(ChainFault::Broken));
        assert_eq!(
            check(&[desc(BUFFERS, 1, NEXT, 16)], &limits),
            Err(ChainFault::Broken)
        );
    }

    #[test]
    fn empty_and_zero_length_chains_are_faults() {
        assert_eq!(
            check(&[desc(BUFFERS, 0, INDIRECT, 0)], &READS),
            Err(ChainFault::Empty)
        );
        assert_eq!(
            check(&[desc(BUFFERS, 0, 0, 0)], &READS),
            Err(ChainFault::ZeroLength)
        );
    }

    #[test]
    fn the_fault_log_counts_every_report() {
        let mut log = FaultLog::default();
        for _ in 0..20 {
            log.report("test", &ChainFault::Empty);
        }
        assert_eq!(log.count(), 20);
    }
}
