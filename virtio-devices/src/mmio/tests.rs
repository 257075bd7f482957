//! Register-level tests of the MMIO transport, part 1: the recording test
//! device and register helpers shared with `tests_queues.rs` and
//! `tests_console.rs`, then identification, feature negotiation and the
//! status state machine (virtio 1.2 §4.2.2 registers, §2.1 status, §2.2
//! features, §4.2.3 initialization).

use std::io;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::*;
use crate::device::{ActivateError, DeviceError, VirtioDevice, FEATURE_EVENT_IDX};
use crate::interrupt::{CountingInterrupt, InterruptType};
use crate::testing::guest_memory;

// Register offsets, from the table in §4.2.2.
pub(super) const MAGIC: u64 = 0x000;
pub(super) const VERSION: u64 = 0x004;
pub(super) const DEVICE_ID: u64 = 0x008;
pub(super) const VENDOR_ID: u64 = 0x00c;
pub(super) const DEVICE_FEATURES: u64 = 0x010;
pub(super) const DEVICE_FEATURES_SEL: u64 = 0x014;
pub(super) const DRIVER_FEATURES: u64 = 0x020;
pub(super) const DRIVER_FEATURES_SEL: u64 = 0x024;
pub(super) const QUEUE_SEL: u64 = 0x030;
pub(super) const QUEUE_NUM_MAX: u64 = 0x034;
pub(super) const QUEUE_NUM: u64 = 0x038;
pub(super) const QUEUE_READY: u64 = 0x044;
pub(super) const QUEUE_NOTIFY: u64 = 0x050;
pub(super) const INTERRUPT_STATUS: u64 = 0x060;
pub(super) const INTERRUPT_ACK: u64 = 0x064;
pub(super) const STATUS: u64 = 0x070;
pub(super) const QUEUE_DESC_LOW: u64 = 0x080;
pub(super) const QUEUE_DESC_HIGH: u64 = 0x084;
pub(super) const QUEUE_DRIVER_LOW: u64 = 0x090;
pub(super) const QUEUE_DRIVER_HIGH: u64 = 0x094;
pub(super) const QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub(super) const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
pub(super) const SHM_LEN_LOW: u64 = 0x0b0;
pub(super) const CONFIG_GENERATION: u64 = 0x0fc;
pub(super) const CONFIG: u64 = 0x100;

// Status bits (§2.1).
pub(super) const ACK: u32 = 1;
pub(super) const DRIVER: u32 = 2;
pub(super) const DRIVER_OK: u32 = 4;
pub(super) const FEATURES_OK: u32 = 8;
pub(super) const NEEDS_RESET: u32 = 0x40;
pub(super) const FAILED: u32 = 0x80;

pub(super) const VERSION_1: u64 = 1 << 32;
/// A device-specific feature bit the test device offers.
pub(super) const DEV_F0: u64 = 1;
/// VIRTIO_F_RING_PACKED: offered by the test device, not supported here.
pub(super) const RING_PACKED: u64 = 1 << 34;

/// What the device saw of one queue at activation.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SeenQueue {
    pub ready: bool,
    pub size: u16,
    pub desc: u64,
    pub event_idx: bool,
}

#[derive(Default)]
pub(super) struct TestDevice {
    pub acked: Option<u64>,
    pub config: [u8; 8],
    pub generation: u32,
    pub activations: Vec<Vec<SeenQueue>>,
    pub resets: usize,
    pub processed: Vec<u16>,
    pub broken: bool,
    pub refuse_activation: bool,
}

impl VirtioDevice for TestDevice {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 16]
    }
    fn avail_features(&self) -> u64 {
        DEV_F0 | FEATURE_EVENT_IDX | RING_PACKED
    }
    fn ack_features(&mut self, features: u64) {
        self.acked = Some(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::device::read_config_bytes(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = self.config.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
    }
    fn config_generation(&self) -> u32 {
        self.generation
    }
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap,
        _interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        if self.refuse_activation {
            return Err(ActivateError::Host(io::Error::other("no")));
        }
        let seen = queues.iter().map(|q| SeenQueue {
            ready: q.ready(),
            size: q.size(),
            desc: q.desc_table(),
            event_idx: q.event_idx_enabled(),
        });
        self.activations.push(seen.collect());
        Ok(())
    }
    fn reset(&mut self) {
        self.resets += 1;
        self.acked = None;
        self.broken = false;
    }
    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        self.processed.push(index);
        Ok(())
    }
    fn needs_reset(&self) -> bool {
        self.broken
    }
}

pub(super) type Transport = MmioTransport<TestDevice>;

pub(super) fn transport() -> (Transport, Arc<CountingInterrupt>) {
    let irq = Arc::new(CountingInterrupt::new());
    let t = MmioTransport::new(TestDevice::default(), guest_memory(), irq.clone()).unwrap();
    (t, irq)
}

pub(super) fn r32<D: VirtioDevice>(t: &MmioTransport<D>, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

pub(super) fn w32<D: VirtioDevice>(t: &mut MmioTransport<D>, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

pub(super) fn write_features<D: VirtioDevice>(t: &mut MmioTransport<D>, features: u64) {
    w32(t, DRIVER_FEATURES_SEL, 0);
    w32(t, DRIVER_FEATURES, features as u32);
    w32(t, DRIVER_FEATURES_SEL, 1);
    w32(t, DRIVER_FEATURES, (features >> 32) as u32);
}

/// ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the status read back.
pub(super) fn negotiate<D: VirtioDevice>(t: &mut MmioTransport<D>, features: u64) -> u32 {
    w32(t, STATUS, ACK);
    w32(t, STATUS, ACK | DRIVER);
    write_features(t, features);
    w32(t, STATUS, ACK | DRIVER | FEATURES_OK);
    r32(t, STATUS)
}

pub(super) fn setup_queue<D: VirtioDevice>(
    t: &mut MmioTransport<D>,
    index: u32,
    size: u32,
    base: u64,
) {
    w32(t, QUEUE_SEL, index);
    w32(t, QUEUE_NUM, size);
    for (low, high, addr) in [
        (QUEUE_DESC_LOW, QUEUE_DESC_HIGH, base),
        (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, base + 0x1000),
        (QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, base + 0x2000),
    ] {
        w32(t, low, addr as u32);
        w32(t, high, (addr >> 32) as u32);
    }
    w32(t, QUEUE_READY, 1);
}

pub(super) fn driver_ok<D: VirtioDevice>(t: &mut MmioTransport<D>) {
    w32(t, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
}

#[test]
fn identifies_as_modern_virtio_mmio_with_the_flint_vendor_id() {
    let (t, _) = transport();
    assert_eq!(r32(&t, MAGIC), 0x7472_6976);
    assert_eq!(r32(&t, VERSION), 2);
    assert_eq!(r32(&t, DEVICE_ID), 42);
    assert_eq!(r32(&t, VENDOR_ID), 0x544e_4c46);
}

#[test]
fn device_features_add_version_1_and_hide_unsupported_ring_features() {
    let (mut t, _) = transport();
    w32(&mut t, DEVICE_FEATURES_SEL, 0);
    assert_eq!(
        r32(&t, DEVICE_FEATURES),
        (DEV_F0 | FEATURE_EVENT_IDX) as u32
    );
    w32(&mut t, DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        r32(&t, DEVICE_FEATURES),
        1,
        "VERSION_1 only, no RING_PACKED"
    );
    w32(&mut t, DEVICE_FEATURES_SEL, 2);
    assert_eq!(r32(&t, DEVICE_FEATURES), 0);
}

#[test]
fn features_ok_is_refused_without_version_1() {
    let (mut t, _) = transport();
    assert_eq!(negotiate(&mut t, DEV_F0), ACK | DRIVER);
    assert_eq!(t.device().acked, None);
}

#[test]
fn features_ok_is_refused_for_features_never_offered() {
    let (mut t, _) = transport();
    assert_eq!(negotiate(&mut t, VERSION_1 | RING_PACKED), ACK | DRIVER);
    let (mut t, _) = transport();
    assert_eq!(negotiate(&mut t, VERSION_1 | 1 << 5), ACK | DRIVER);
}

#[test]
fn accepted_features_reach_the_device_once_features_ok_is_set() {
    let (mut t, _) = transport();
    let features = VERSION_1 | DEV_F0 | FEATURE_EVENT_IDX;
    assert_eq!(negotiate(&mut t, features), ACK | DRIVER | FEATURES_OK);
    assert_eq!(t.device().acked, Some(features));
}

#[test]
fn driver_features_are_ignored_outside_negotiation() {
    let (mut t, _) = transport();
    // Before DRIVER.
    write_features(&mut t, VERSION_1);
    w32(&mut t, STATUS, ACK);
    w32(&mut t, STATUS, ACK | DRIVER);
    w32(&mut t, STATUS, ACK | DRIVER | FEATURES_OK);
    assert_eq!(r32(&t, STATUS), ACK | DRIVER, "early write did not count");
    // After FEATURES_OK.
    assert_eq!(negotiate(&mut t, VERSION_1), ACK | DRIVER | FEATURES_OK);
    write_features(&mut t, VERSION_1 | DEV_F0);
    driver_ok(&mut t);
    assert_eq!(t.device().acked, Some(VERSION_1));
}

#[test]
fn status_bits_without_their_predecessors_are_dropped() {
    let (mut t, _) = transport();
    w32(&mut t, STATUS, DRIVER);
    assert_eq!(r32(&t, STATUS), 0);
    w32(&mut t, STATUS, ACK | DRIVER | DRIVER_OK);
    assert_eq!(r32(&t, STATUS), ACK | DRIVER, "DRIVER_OK needs FEATURES_OK");
    assert!(!t.is_active());
    assert!(t.device().activations.is_empty());
}

#[test]
fn status_writes_that_clear_bits_are_ignored() {
    let (mut t, _) = transport();
    negotiate(&mut t, VERSION_1);
    w32(&mut t, STATUS, ACK);
    assert_eq!(r32(&t, STATUS), ACK | DRIVER | FEATURES_OK);
}

#[test]
fn driver_ok_activates_the_device_with_the_configured_queues() {
    let (mut t, _) = transport();
    negotiate(&mut t, VERSION_1 | FEATURE_EVENT_IDX);
    setup_queue(&mut t, 0, 128, 0x1_0000);
    driver_ok(&mut t);
    assert_eq!(r32(&t, STATUS), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    assert!(t.is_active());
    let seen = &t.device().activations;
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0],
        vec![
            SeenQueue {
                ready: true,
                size: 128,
                desc: 0x1_0000,
                event_idx: true
            },
            SeenQueue {
                ready: false,
                size: 16,
                desc: 0,
                event_idx: false
            },
        ]
    );
}

#[test]
fn activation_kicks_every_queue_once() {
    let (mut t, _) = transport();
    negotiate(&mut t, VERSION_1);
    driver_ok(&mut t);
    for event in t.queue_events() {
        assert_eq!(event.read().unwrap(), 1);
    }
}

#[test]
fn failed_stops_the_driver_from_activating_the_device() {
    let (mut t, _) = transport();
    negotiate(&mut t, VERSION_1);
    w32(&mut t, STATUS, ACK | DRIVER | FEATURES_OK | FAILED);
    driver_ok(&mut t);
    assert_eq!(r32(&t, STATUS), ACK | DRIVER | FEATURES_OK | FAILED);
    assert!(!t.is_active());
}

#[test]
fn writing_zero_resets_the_device_and_every_register() {
    let (mut t, irq) = transport();
    negotiate(&mut t, VERSION_1);
    setup_queue(&mut t, 1, 8, 0x1_0000);
    driver_ok(&mut t);
    irq.trigger(InterruptType::Queue(1)).unwrap();
    w32(&mut t, STATUS, 0);
    assert_eq!(r32(&t, STATUS), 0);
    assert!(!t.is_active());
    assert_eq!(t.device().resets, 1);
    assert_eq!(r32(&t, INTERRUPT_STATUS), 0);
    w32(&mut t, QUEUE_SEL, 1);
    assert_eq!(r32(&t, QUEUE_READY), 0);
    // Queue 1 comes back with its defaults at the next activation.
    negotiate(&mut t, VERSION_1);
    w32(&mut t, QUEUE_SEL, 1);
    w32(&mut t, QUEUE_READY, 1);
    driver_ok(&mut t);
    let seen = &t.device().activations[1][1];
    assert_eq!((seen.size, seen.desc), (16, 0));
}
