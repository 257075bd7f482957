//! The [`VirtioDevice`] trait every device implements, the feature bits the
//! transport owns, and the errors shared by devices.
//!
//! Implements the device-side contract of virtio 1.2 §2 (basic facilities:
//! status §2.1, feature bits §2.2, configuration space §2.5, virtqueues §2.6)
//! independent of any transport; `crate::mmio` puts it behind registers.

use std::io;
use std::sync::Arc;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

use crate::interrupt::VirtioInterrupt;

/// VIRTIO_F_VERSION_1 (§6): the modern interface. Always offered by the
/// transport and required from the driver.
pub const FEATURE_VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;
/// VIRTIO_F_RING_INDIRECT_DESC (§2.7.5.3): indirect descriptor tables.
pub const FEATURE_INDIRECT_DESC: u64 = 1 << VIRTIO_RING_F_INDIRECT_DESC;
/// VIRTIO_F_RING_EVENT_IDX (§2.7.10): used_event / avail_event suppression.
pub const FEATURE_EVENT_IDX: u64 = 1 << VIRTIO_RING_F_EVENT_IDX;

/// Device type 1: network (§5.1).
pub const DEVICE_TYPE_NET: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_NET;
/// Device type 2: block (§5.2).
pub const DEVICE_TYPE_BLOCK: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
/// Device type 3: console (§5.3).
pub const DEVICE_TYPE_CONSOLE: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;

/// Why a device could not start after the driver set DRIVER_OK.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The transport handed over a different number of queues than the
    /// device declared.
    #[error("expected {expected} queues, got {got}")]
    QueueCount {
        /// Queues the device declared.
        expected: usize,
        /// Queues it was given.
        got: usize,
    },
    /// The driver configured a queue with an invalid size or alignment.
    #[error("queue {index} is misconfigured")]
    QueueConfig {
        /// The queue's index.
        index: u16,
        /// What virtio-queue refused.
        #[source]
        source: virtio_queue::Error,
    },
    /// A ready queue's rings are not inside guest memory.
    #[error("queue {index} lies outside guest memory")]
    QueueOutsideMemory {
        /// The queue's index.
        index: u16,
    },
    /// A host resource the device needs could not be set up.
    #[error("device could not start")]
    Host(#[source] io::Error),
}

/// A host-side failure while serving a queue (guest mistakes never end up
/// here: they fail the request or set DEVICE_NEEDS_RESET).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device's backend (output sink, file, tap) failed.
    #[error("device backend failed")]
    Backend(#[source] io::Error),
    /// The guest could not be notified.
    #[error("could not signal the guest")]
    Interrupt(#[source] io::Error),
}

/// A virtio device as the transport sees it: identity, features,
/// configuration space, and a lifecycle of activate / process / reset.
///
/// The vmm owns threads and epoll: it waits on each queue's notification
/// eventfd and calls [`process_queue`](VirtioDevice::process_queue) (through
/// the transport) when one fires.
pub trait VirtioDevice: Send {
    /// The virtio device ID (§5), e.g. [`DEVICE_TYPE_CONSOLE`].
    fn device_type(&self) -> u32;

    /// The maximum size of each queue, one entry per queue; each a power
    /// of two no greater than 32768.
    fn queue_max_sizes(&self) -> &[u16];

    /// The feature bits the device offers (device-specific bits, and
    /// [`FEATURE_EVENT_IDX`] / [`FEATURE_INDIRECT_DESC`] where supported).
    /// The transport adds [`FEATURE_VERSION_1`].
    fn avail_features(&self) -> u64;

    /// The driver accepted `features` (a subset of what was offered, with
    /// [`FEATURE_VERSION_1`]); called once, when FEATURES_OK is accepted.
    fn ack_features(&mut self, features: u64);

    /// Read device configuration space at `offset`; bytes past its end
    /// read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Write device configuration space at `offset`; read-only or
    /// out-of-range bytes are ignored. The default ignores every write: no
    /// field of flint's devices is writable (block offers no CONFIG_WCE, net's
    /// mac is writable for legacy drivers only, console has none).
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "virtio device type {}: ignored {}-byte config write at {offset:#x}",
            self.device_type(),
            data.len()
        );
    }

    /// A counter the device bumps whenever its configuration space changes
    /// on its own (not through `write_config`); the transport folds it into
    /// ConfigGeneration.
    fn config_generation(&self) -> u32 {
        0
    }

    /// Start the device: the driver set DRIVER_OK. `queues` has one entry
    /// per [`queue_max_sizes`](VirtioDevice::queue_max_sizes) entry; queues
    /// the driver left unready come with `ready() == false`, ready ones have
    /// been checked with `is_valid` against `mem`.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError>;

    /// Return to the initial state: drop queues, memory and interrupt,
    /// forget acked features, clear DEVICE_NEEDS_RESET.
    fn reset(&mut self);

    /// Serve queue `index` (its notification arrived). A no-op when the
    /// device is not active or the index is unknown.
    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError>;

    /// Whether the device hit a guest error it cannot recover from; the
    /// transport shows DEVICE_NEEDS_RESET in the status register while this
    /// is true. The device signals [`InterruptType::Config`] when it sets it.
    ///
    /// [`InterruptType::Config`]: crate::InterruptType::Config
    fn needs_reset(&self) -> bool {
        false
    }
}

impl<T: VirtioDevice + ?Sized> VirtioDevice for Box<T> {
    fn device_type(&self) -> u32 {
        (**self).device_type()
    }
    fn queue_max_sizes(&self) -> &[u16] {
        (**self).queue_max_sizes()
    }
    fn avail_features(&self) -> u64 {
        (**self).avail_features()
    }
    fn ack_features(&mut self, features: u64) {
        (**self).ack_features(features)
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        (**self).read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        (**self).write_config(offset, data)
    }
    fn config_generation(&self) -> u32 {
        (**self).config_generation()
    }
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        (**self).activate(mem, interrupt, queues)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        (**self).process_queue(index)
    }
    fn needs_reset(&self) -> bool {
        (**self).needs_reset()
    }
}

/// The `N` queues `activate` was handed, or [`ActivateError::QueueCount`]
/// if the transport gave a different number.
pub fn exact_queues<const N: usize>(queues: Vec<Queue>) -> Result<[Queue; N], ActivateError> {
    let got = queues.len();
    <[Queue; N]>::try_from(queues).map_err(|_| ActivateError::QueueCount { expected: N, got })
}

/// Copy bytes of a device's configuration space (`config`) at `offset` into
/// `data`; whatever lies past the end reads as 0.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_past_the_end_are_zero() {
        let config = [1u8, 2, 3, 4];
        let mut data = [0xffu8; 4];
        read_config_bytes(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0, 0]);
        read_config_bytes(&config, 9, &mut data);
        assert_eq!(data, [0; 4]);
        read_config_bytes(&config, u64::MAX, &mut data);
        assert_eq!(data, [0; 4]);
    }
}
