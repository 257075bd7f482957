//! What the driver wrote into the per-queue MMIO registers, kept as plain
//! values until DRIVER_OK turns them into a checked `virtio_queue::Queue`.
//!
//! Implements the queue half of virtio 1.2 §4.2.2 (QueueNumMax, QueueNum,
//! QueueReady, QueueDesc/QueueDriver/QueueDevice low/high) and the checks
//! of §2.7 on them: size a power of two no larger than the maximum,
//! alignment (16/2/4 bytes), and rings inside guest memory.

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::device::ActivateError;

/// Which half of a 64-bit address register a write sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Half {
    /// Bits 0..32.
    Low,
    /// Bits 32..64.
    High,
}

/// Replace one half of `addr` with `value`.
pub(super) fn set_half(addr: &mut u64, half: Half, value: u32) {
    *addr = match half {
        Half::Low => (*addr & !0xffff_ffff) | u64::from(value),
        Half::High => (*addr & 0xffff_ffff) | (u64::from(value) << 32),
    };
}

/// One queue's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct QueueConfig {
    /// QueueNumMax: fixed by the device.
    pub max_size: u16,
    /// QueueNum as written (checked at activation).
    pub size: u32,
    /// QueueReady.
    pub ready: bool,
    /// QueueDesc: descriptor table.
    pub desc: u64,
    /// QueueDriver: available ring.
    pub driver: u64,
    /// QueueDevice: used ring.
    pub device: u64,
}

impl QueueConfig {
    /// Registers after reset: size defaults to the maximum.
    pub(super) fn new(max_size: u16) -> Self {
        QueueConfig {
            max_size,
            size: u32::from(max_size),
            ready: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }

    /// Back to the state after reset.
    pub(super) fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// The queue the device gets at activation. An unready queue comes back
    /// unready and unchecked; a ready one must pass every check.
    pub(super) fn build(
        &self,
        index: u16,
        event_idx: bool,
        mem: &GuestMemoryMmap,
    ) -> Result<Queue, ActivateError> {
        let config_err = |source| ActivateError::QueueConfig { index, source };
        let mut queue = Queue::new(self.max_size).map_err(config_err)?;
        if !self.ready {
            return Ok(queue);
        }
        // A QueueNum above u16::MAX becomes 0, which try_set_size refuses.
        let size = u16::try_from(self.size).unwrap_or(0);
        queue.try_set_size(size).map_err(config_err)?;
        queue
            .try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(config_err)?;
        queue
            .try_set_avail_ring_address(GuestAddress(self.driver))
            .map_err(config_err)?;
        queue
            .try_set_used_ring_address(GuestAddress(self.device))
            .map_err(config_err)?;
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        if !queue.is_valid(mem) {
            return Err(ActivateError::QueueOutsideMemory { index });
        }
        Ok(queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    fn ready(size: u32) -> QueueConfig {
        QueueConfig {
            size,
            ready: true,
            desc: 0x1000,
            driver: 0x2000,
            device: 0x3000,
            ..QueueConfig::new(256)
        }
    }

    #[test]
    fn address_halves_combine() {
        let mut a = 0;
        set_half(&mut a, Half::High, 0x1);
        set_half(&mut a, Half::Low, 0x2000);
        assert_eq!(a, 0x1_0000_2000);
        set_half(&mut a, Half::High, 0);
        assert_eq!(a, 0x2000);
    }

    #[test]
    fn a_valid_ready_queue_builds() {
        let q = ready(128).build(0, true, &mem()).unwrap();
        assert!(q.ready());
        assert_eq!(q.size(), 128);
        assert_eq!(q.desc_table(), 0x1000);
        assert!(q.event_idx_enabled());
    }

    #[test]
    fn an_unready_queue_builds_unready_whatever_its_registers() {
        let mut c = ready(3);
        c.ready = false;
        assert!(!c.build(0, false, &mem()).unwrap().ready());
    }

    #[test]
    fn sizes_that_are_not_powers_of_two_or_exceed_the_maximum_are_refused() {
        for size in [0, 3, 100, 512, 0x1_0000, u32::MAX] {
            let err = ready(size).build(1, false, &mem()).unwrap_err();
            assert!(
                matches!(err, ActivateError::QueueConfig { index: 1, .. }),
                "{size}"
            );
        }
    }

    #[test]
    fn misaligned_rings_are_refused() {
        let mut c = ready(16);
        c.desc = 0x1008;
        assert!(c.build(0, false, &mem()).is_err());
        let mut c = ready(16);
        c.driver = 0x2001;
        assert!(c.build(0, false, &mem()).is_err());
        let mut c = ready(16);
        c.device = 0x3002;
        assert!(c.build(0, false, &mem()).is_err());
    }

    #[test]
    fn rings_outside_guest_memory_are_refused() {
        for (desc, driver, device) in [
            (0x10_0000, 0x2000, 0x3000),
            (0x1000, 0xf_fff0, 0x3000),
            (0x1000, 0x2000, 0x1_0000_0000),
        ] {
            let c = QueueConfig {
                desc,
                driver,
                device,
                ..ready(16)
            };
            assert!(matches!(
                c.build(2, false, &mem()),
                Err(ActivateError::QueueOutsideMemory { index: 2 })
            ));
        }
    }
}
