//! The device status state machine, feature negotiation, activation and
//! reset of the MMIO transport.
//!
//! Implements virtio 1.2 §2.1 (device status field: ACKNOWLEDGE → DRIVER →
//! FEATURES_OK → DRIVER_OK, FAILED, DEVICE_NEEDS_RESET; writing 0 resets),
//! §2.2 (feature bits: the device refuses FEATURES_OK for a subset it cannot
//! accept), §3.1 (device initialization order), §4.2.3.1 (MMIO device
//! initialization) and §6 (VIRTIO_F_VERSION_1 is mandatory here, the
//! transport being modern-only).

use log::{debug, error, info};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER as DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK, VIRTIO_CONFIG_S_FAILED as FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK, VIRTIO_TRANSPORT_F_END, VIRTIO_TRANSPORT_F_START,
};
use virtio_queue::Queue;

use super::MmioTransport;
use crate::device::{
    ActivateError, VirtioDevice, FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC, FEATURE_VERSION_1,
};
use crate::interrupt::InterruptType;

/// Feature bits reserved for the transport and ring (§6: bits 28..=41).
const TRANSPORT_FEATURES: u64 =
    ((1u64 << VIRTIO_TRANSPORT_F_END) - 1) & !((1u64 << VIRTIO_TRANSPORT_F_START) - 1);
/// The transport and ring features this transport can honour when the
/// device offers them.
const SUPPORTED_TRANSPORT_FEATURES: u64 = FEATURE_INDIRECT_DESC | FEATURE_EVENT_IDX;

impl<D: VirtioDevice> MmioTransport<D> {
    /// What DeviceFeatures shows: the device's own bits, the ring features
    /// it offers that this transport supports, and VERSION_1.
    pub(super) fn offered_features(&self) -> u64 {
        let device = self.device.avail_features();
        (device & !TRANSPORT_FEATURES) | (device & SUPPORTED_TRANSPORT_FEATURES) | FEATURE_VERSION_1
    }

    /// DriverFeatures: only between DRIVER and FEATURES_OK.
    pub(super) fn write_driver_features(&mut self, value: u32) {
        if self.status & (DRIVER | FEATURES_OK | FAILED) != DRIVER {
            debug!(
                "virtio-mmio: DriverFeatures write in status {:#x} ignored",
                self.status
            );
            return;
        }
        let value = u64::from(value);
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (value << 32),
            sel => debug!("virtio-mmio: DriverFeatures with selector {sel} ignored"),
        }
    }

    /// Queue registers may change after FEATURES_OK and before DRIVER_OK.
    pub(super) fn queue_config_allowed(&self) -> bool {
        self.status & (DRIVER | FEATURES_OK | DRIVER_OK | FAILED) == DRIVER | FEATURES_OK
    }

    fn features_acceptable(&self) -> bool {
        self.driver_features & FEATURE_VERSION_1 != 0
            && self.driver_features & !self.offered_features() == 0
    }

    /// A driver write to Status. Bits are only ever added, in order; a bit
    /// whose precondition is missing is dropped; 0 resets.
    pub(super) fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        if value & old != old {
            debug!("virtio-mmio: status {old:#x} -> {value:#x} clears bits; ignored");
            return;
        }
        let added = value & !old;
        let mut status = old | (added & (ACKNOWLEDGE | FAILED));
        if added & DRIVER != 0 && status & ACKNOWLEDGE != 0 {
            status |= DRIVER;
        }
        if added & FEATURES_OK != 0 && status & (DRIVER | FAILED) == DRIVER {
            if self.features_acceptable() {
                status |= FEATURES_OK;
                self.device.ack_features(self.driver_features);
            } else {
                let offered = self.offered_features();
                self.faults.report(
                    "virtio-mmio",
                    &format_args!(
                        "refusing features {:#x}: offered {offered:#x}, and a driver must take \
                         VERSION_1 and nothing more",
                        self.driver_features
                    ),
                );
            }
        }
        self.status = status;
        if added & DRIVER_OK != 0 && status & (FEATURES_OK | FAILED) == FEATURES_OK {
            self.status |= DRIVER_OK;
            self.activate();
        }
        if self.status != value {
            debug!(
                "virtio-mmio: status write {value:#x} left {:#x}",
                self.status
            );
        }
    }

    fn build_queues(&self) -> Result<Vec<Queue>, ActivateError> {
        let event_idx = self.driver_features & FEATURE_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, config) in (0u16..).zip(&self.queues) {
            queues.push(config.build(index, event_idx, &self.mem)?);
        }
        Ok(queues)
    }

    fn activate(&mut self) {
        let result = self.build_queues().and_then(|queues| {
            self.device
                .activate(self.mem.clone(), self.interrupt.clone(), queues)
        });
        let device_type = self.device.device_type();
        match result {
            Ok(()) => {
                self.active = true;
                info!("virtio-mmio: device type {device_type} activated");
                // Buffers made available before DRIVER_OK (against §3.1.1,
                // but harmless) would otherwise wait for a second kick.
                for event in &self.queue_events {
                    if let Err(e) = event.write(1) {
                        debug!("virtio-mmio: activation kick lost: {e}");
                    }
                }
            }
            Err(e) => {
                match e {
                    ActivateError::Host(_) => error!("virtio-mmio: device type {device_type}: {e}"),
                    _ => self.faults.report(
                        "virtio-mmio",
                        &format_args!("device type {device_type} not activated: {e}"),
                    ),
                }
                self.set_needs_reset();
            }
        }
    }

    /// Show DEVICE_NEEDS_RESET and tell the driver with a configuration
    /// change notification (§2.1.2).
    pub(super) fn set_needs_reset(&mut self) {
        self.needs_reset = true;
        if let Err(e) = self.interrupt.trigger(InterruptType::Config) {
            error!("virtio-mmio: could not signal DEVICE_NEEDS_RESET: {e}");
        }
    }

    /// Device reset (§2.4): the device and every transport register return
    /// to their initial values, pending interrupt reasons included.
    pub(super) fn reset(&mut self) {
        if self.status != 0 {
            info!(
                "virtio-mmio: device type {} reset",
                self.device.device_type()
            );
        }
        self.device.reset();
        self.status = 0;
        self.active = false;
        self.needs_reset = false;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.queues.iter_mut().for_each(|q| q.reset());
        self.interrupt.ack(u32::MAX);
    }
}
