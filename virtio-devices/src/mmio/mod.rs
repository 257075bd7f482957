//! The virtio-mmio transport: the register window a driver sees, around one
//! [`VirtioDevice`].
//!
//! Implements virtio 1.2 §4.2 (Virtio Over MMIO), modern interface only
//! (Version 2, §4.2.2; the legacy registers of §4.2.4 read as 0 and ignore
//! writes). The device status state machine and feature negotiation live in
//! `status.rs`, the per-queue registers in `queue_config.rs`.

mod queue_config;
mod status;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_console;
#[cfg(test)]
mod tests_queues;

use std::io;
use std::sync::Arc;

use log::debug;
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;
use virtio_bindings::virtio_mmio as regs;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::device::{DeviceError, VirtioDevice};
use crate::interrupt::VirtioInterrupt;
use crate::virtqueue::FaultLog;
use queue_config::{set_half, Half, QueueConfig};

/// "virt" in little-endian: the MagicValue register.
pub const MMIO_MAGIC_VALUE: u32 = 0x7472_6976;
/// The Version register: 2, the modern interface.
pub const MMIO_VERSION: u32 = 2;
/// The VendorID register: "FLNT".
pub const FLINT_VENDOR_ID: u32 = 0x544e_4c46;
/// Offset of QueueNotify in the window: the vmm registers each queue's
/// eventfd as a KVM ioeventfd here, 4 bytes, datamatch = queue index.
pub const QUEUE_NOTIFY_OFFSET: u64 = regs::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
/// Offset where the device-specific configuration space begins.
pub const CONFIG_SPACE_OFFSET: u64 = regs::VIRTIO_MMIO_CONFIG as u64;
/// Size of one device's register window.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;

/// The largest queue size virtio allows (§2.7: split queues up to 32768).
const MAX_QUEUE_SIZE: u16 = 32768;

/// Why a transport could not be built (host-side problems only).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A queue notification eventfd could not be created.
    #[error("could not create a queue notification eventfd")]
    QueueEvent(#[source] io::Error),
    /// The device declared a queue maximum that is zero, not a power of
    /// two, or above 32768.
    #[error("device declares queue {index} with invalid maximum size {size}")]
    QueueMaxSize {
        /// The queue's index.
        index: usize,
        /// The declared maximum.
        size: u16,
    },
    /// The device declared more queues than a 16-bit index can name.
    #[error("device declares {0} queues")]
    TooManyQueues(usize),
}

/// A virtio-mmio register window around `device`.
///
/// The vmm wraps it as a bus device ([`read`](MmioTransport::read),
/// [`write`](MmioTransport::write) with offsets inside the window), registers
/// [`queue_events`](MmioTransport::queue_events) as ioeventfds, and calls
/// [`process_queue`](MmioTransport::process_queue) when one fires.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    queue_events: Vec<EventFd>,
    queues: Vec<QueueConfig>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    active: bool,
    needs_reset: bool,
    config_generation: u32,
    faults: FaultLog,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Put `device` behind a register window. `mem` is what its queues are
    /// checked against and what it gets at activation; `interrupt` is its
    /// line to the guest (an [`IrqfdInterrupt`](crate::IrqfdInterrupt) in
    /// the vmm).
    pub fn new(
        device: D,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<Self, TransportError> {
        let sizes = device.queue_max_sizes();
        if u16::try_from(sizes.len()).is_err() {
            return Err(TransportError::TooManyQueues(sizes.len()));
        }
        let mut queues = Vec::with_capacity(sizes.len());
        let mut queue_events = Vec::with_capacity(sizes.len());
        for (index, &size) in sizes.iter().enumerate() {
            if !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
                return Err(TransportError::QueueMaxSize { index, size });
            }
            queues.push(QueueConfig::new(size));
            queue_events.push(
                EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(TransportError::QueueEvent)?,
            );
        }
        Ok(MmioTransport {
            device,
            mem,
            interrupt,
            queue_events,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            active: false,
            needs_reset: false,
            config_generation: 0,
            faults: FaultLog::default(),
        })
    }

    /// One eventfd per queue, in queue order. A QueueNotify write of index
    /// `i` that reaches [`write`](MmioTransport::write) writes `queue_events()[i]`;
    /// the vmm registers each as a KVM ioeventfd so most never do.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// The device, e.g. to push console input.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Whether the driver set DRIVER_OK and the device started.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Serve queue `index` after its notification: the vmm drains the
    /// queue's eventfd, then calls this. A no-op until the device is active.
    pub fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        if !self.active {
            return Ok(());
        }
        self.device.process_queue(index)
    }

    /// A guest read of `data.len()` bytes at `offset` in the window.
    /// Registers take aligned 4-byte reads only; anything else reads as 0.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE_OFFSET {
            self.device.read_config(offset - CONFIG_SPACE_OFFSET, data);
            return;
        }
        match <&mut [u8; 4]>::try_from(&mut *data) {
            Ok(bytes) if offset.is_multiple_of(4) => {
                *bytes = self.read_register(offset).to_le_bytes()
            }
            _ => {
                debug!(
                    "virtio-mmio: ignored {}-byte read at {offset:#x}",
                    data.len()
                );
                data.fill(0);
            }
        }
    }

    /// A guest write of `data` at `offset` in the window. Registers take
    /// aligned 4-byte writes only; anything else is ignored.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE_OFFSET {
            self.device.write_config(offset - CONFIG_SPACE_OFFSET, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(bytes) if offset.is_multiple_of(4) => {
                self.write_register(offset, u32::from_le_bytes(bytes))
            }
            _ => debug!(
                "virtio-mmio: ignored {}-byte write at {offset:#x}",
                data.len()
            ),
        }
    }

    fn selected_queue(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::try_from(self.queue_sel).ok()?)
    }

    fn read_register(&self, offset: u64) -> u32 {
        let Ok(offset) = u32::try_from(offset) else {
            return 0;
        };
        match offset {
            regs::VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC_VALUE,
            regs::VIRTIO_MMIO_VERSION => MMIO_VERSION,
            regs::VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            regs::VIRTIO_MMIO_VENDOR_ID => FLINT_VENDOR_ID,
            regs::VIRTIO_MMIO_DEVICE_FEATURES => {
                let features = self.offered_features();
                match self.device_features_sel {
                    0 => features as u32,
                    1 => (features >> 32) as u32,
                    _ => 0,
                }
            }
            regs::VIRTIO_MMIO_QUEUE_NUM_MAX => {
                self.selected_queue().map_or(0, |q| q.max_size.into())
            }
            regs::VIRTIO_MMIO_QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready.into()),
            regs::VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            regs::VIRTIO_MMIO_STATUS => self.status_register(),
            // No shared memory regions: a length of -1 says so (§4.2.2).
            regs::VIRTIO_MMIO_SHM_LEN_LOW | regs::VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            regs::VIRTIO_MMIO_CONFIG_GENERATION => self
                .config_generation
                .wrapping_add(self.device.config_generation()),
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        let Ok(offset) = u32::try_from(offset) else {
            return;
        };
        match offset {
            regs::VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            regs::VIRTIO_MMIO_DRIVER_FEATURES => self.write_driver_features(value),
            regs::VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            regs::VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            regs::VIRTIO_MMIO_QUEUE_NUM
            | regs::VIRTIO_MMIO_QUEUE_READY
            | regs::VIRTIO_MMIO_QUEUE_DESC_LOW
            | regs::VIRTIO_MMIO_QUEUE_DESC_HIGH
            | regs::VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | regs::VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | regs::VIRTIO_MMIO_QUEUE_USED_LOW
            | regs::VIRTIO_MMIO_QUEUE_USED_HIGH => self.write_queue_register(offset, value),
            regs::VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(value),
            regs::VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(value),
            regs::VIRTIO_MMIO_STATUS => self.write_status(value),
            _ => debug!("virtio-mmio: ignored write of {value:#x} at {offset:#x}"),
        }
    }

    fn write_queue_register(&mut self, offset: u32, value: u32) {
        if !self.queue_config_allowed() {
            debug!("virtio-mmio: queue register write at {offset:#x} outside set-up; ignored");
            return;
        }
        let Some(queue) = usize::try_from(self.queue_sel)
            .ok()
            .and_then(|i| self.queues.get_mut(i))
        else {
            debug!("virtio-mmio: write to unknown queue {}", self.queue_sel);
            return;
        };
        match offset {
            regs::VIRTIO_MMIO_QUEUE_NUM => queue.size = value,
            regs::VIRTIO_MMIO_QUEUE_READY => match value {
                0 | 1 => queue.ready = value == 1,
                _ => debug!("virtio-mmio: QueueReady {value:#x} ignored"),
            },
            regs::VIRTIO_MMIO_QUEUE_DESC_LOW => set_half(&mut queue.desc, Half::Low, value),
            regs::VIRTIO_MMIO_QUEUE_DESC_HIGH => set_half(&mut queue.desc, Half::High, value),
            regs::VIRTIO_MMIO_QUEUE_AVAIL_LOW => set_half(&mut queue.driver, Half::Low, value),
            regs::VIRTIO_MMIO_QUEUE_AVAIL_HIGH => set_half(&mut queue.driver, Half::High, value),
            regs::VIRTIO_MMIO_QUEUE_USED_LOW => set_half(&mut queue.device, Half::Low, value),
            regs::VIRTIO_MMIO_QUEUE_USED_HIGH => set_half(&mut queue.device, Half::High, value),
            _ => {}
        }
    }

    fn notify(&self, value: u32) {
        let event = usize::try_from(value)
            .ok()
            .and_then(|i| self.queue_events.get(i));
        match event {
            Some(event) => {
                if let Err(e) = event.write(1) {
                    debug!("virtio-mmio: queue {value} notification lost: {e}");
                }
            }
            None => debug!("virtio-mmio: notification for unknown queue {value}"),
        }
    }

    fn status_register(&self) -> u32 {
        if self.needs_reset || self.device.needs_reset() {
            self.status | VIRTIO_CONFIG_S_NEEDS_RESET
        } else {
            self.status
        }
    }
}
