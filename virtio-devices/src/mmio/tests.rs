//! Register-level tests of the MMIO transport: a driver's register writes
//! alone, against a device that records what reaches it (virtio 1.2 §4.2.2
//! registers, §2.1 status, §2.2 features, §4.2.3 initialization).

use std::io;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::*;
use crate::device::{ActivateError, DeviceError, VirtioDevice, FEATURE_EVENT_IDX};
use crate::interrupt::{CountingInterrupt, InterruptType};
use crate::testing::guest_memory;

// Register offsets, from the table in §4.2.2.
const MAGIC: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const VENDOR_ID: u64 = 0x00c;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DESC_HIGH: u64 = 0x084;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DRIVER_HIGH: u64 = 0x094;
const QUEUE_DEVICE_LOW: u64 = 0x0a0;
const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const SHM_LEN_LOW: u64 = 0x0b0;
const CONFIG_GENERATION: u64 = 0x0fc;
const CONFIG: u64 = 0x100;

// Status bits (§2.1).
const ACK: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
const NEEDS_RESET: u32 = 0x40;
const FAILED: u32 = 0x80;

const VERSION_1: u64 = 1 << 32;
/// A device-specific feature bit the test device offers.
const DEV_F0: u64 = 1;
/// VIRTIO_F_RING_PACKED: offered by the test device, not supported here.
const RING_PACKED: u64 = 1 << 34;

/// What the device saw of one queue at activation.
#[derive(Debug, PartialEq, Eq)]
struct SeenQueue {
    ready: bool,
    size: u16,
    desc: u64,
    event_idx: bool,
}

#[derive(Default)]
struct TestDevice {
    acked: Option<u64>,
    config: [u8; 8],
    generation: u32,
    activations: Vec<Vec<SeenQueue>>,
    resets: usize,
    processed: Vec<u16>,
    broken: bool,
    refuse_activation: bool,
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

type Transport = MmioTransport<TestDevice>;

fn transport() -> (Transport, Arc<CountingInterrupt>) {
    let irq = Arc::new(CountingInterrupt::new());
    let t = MmioTransport::new(TestDevice::default(), guest_memory(), irq.clone()).unwrap();
    (t, irq)
}

fn r32(t: &Transport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn w32(t: &mut Transport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn write_features(t: &mut Transport, features: u64) {
    w32(t, DRIVER_FEATURES_SEL, 0);
    w32(t, DRIVER_FEATURES, features as u32);
    w32(t, DRIVER_FEATURES_SEL, 1);
    w32(t, DRIVER_FEATURES, (features >> 32) as u32);
}

/// ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the status read back.
fn negotiate(t: &mut Transport, features: u64) -> u32 {
    w32(t, STATUS, ACK);
    w32(t, STATUS, ACK | DRIVER);
    write_features(t, features);
    w32(t, STATUS, ACK | DRIVER | FEATURES_OK);
    r32(t, STATUS)
}

fn setup_queue(t: &mut Transport, index: u32, size: u32, base: u64) {
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

fn driver_ok(t: &mut Transport) {
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

#[test]
fn queue_registers_change_only_between_features_ok_and_driver_ok() {
    let (mut t, _) = transport();
    w32(&mut t, QUEUE_READY, 1);
    assert_eq!(r32(&t, QUEUE_READY), 0, "before FEATURES_OK");
    negotiate(&mut t, VERSION_1);
    w32(&mut t, QUEUE_READY, 1);
    assert_eq!(r32(&t, QUEUE_READY), 1);
    driver_ok(&mut t);
    w32(&mut t, QUEUE_READY, 0);
    assert_eq!(r32(&t, QUEUE_READY), 1, "after DRIVER_OK");
}

#[test]
fn queue_num_max_and_ready_follow_queue_sel() {
    let (mut t, _) = transport();
    assert_eq!(r32(&t, QUEUE_NUM_MAX), 256);
    w32(&mut t, QUEUE_SEL, 1);
    assert_eq!(r32(&t, QUEUE_NUM_MAX), 16);
    w32(&mut t, QUEUE_SEL, 2);
    assert_eq!(r32(&t, QUEUE_NUM_MAX), 0);
    negotiate(&mut t, VERSION_1);
    w32(&mut t, QUEUE_READY, 1);
    assert_eq!(r32(&t, QUEUE_READY), 0, "no queue 2");
}

#[test]
fn an_invalid_queue_size_fails_activation_with_needs_reset() {
    let (mut t, irq) = transport();
    negotiate(&mut t, VERSION_1);
    setup_queue(&mut t, 0, 100, 0x1_0000);
    driver_ok(&mut t);
    assert!(!t.is_active());
    assert!(t.device().activations.is_empty());
    assert_eq!(r32(&t, STATUS) & NEEDS_RESET, NEEDS_RESET);
    assert_eq!(irq.count(InterruptType::Config), 1);
    assert_eq!(r32(&t, INTERRUPT_STATUS), 2);
}

#[test]
fn a_queue_larger_than_its_maximum_fails_activation() {
    let (mut t, _) = transport();
    negotiate(&mut t, VERSION_1);
    setup_queue(&mut t, 1, 32, 0x1_0000);
    driver_ok(&mut t);
    assert!(!t.is_active());
    assert_eq!(r32(&t, STATUS) & NEEDS_RESET, NEEDS_RESET);
}

#[test]
fn a_queue_outside_guest_memory_fails_activation() {
    let (mut t, _) = transport();
    negotiate(&mut t, VERSION_1);
    setup_queue(&mut t, 0, 256, 0x1_0000_0000);
    driver_ok(&mut t);
    assert!(!t.is_active());
    assert_eq!(r32(&t, STATUS) & NEEDS_RESET, NEEDS_RESET);
}

#[test]
fn a_device_refusing_activation_sets_needs_reset_until_reset() {
    let (mut t, _) = transport();
    t.device_mut().refuse_activation = true;
    negotiate(&mut t, VERSION_1);
    driver_ok(&mut t);
    assert_eq!(r32(&t, STATUS) & NEEDS_RESET, NEEDS_RESET);
    w32(&mut t, STATUS, 0);
    assert_eq!(r32(&t, STATUS), 0);
}

#[test]
fn a_broken_device_shows_needs_reset_in_status() {
    let (mut t, _) = transport();
    negotiate(&mut t, VERSION_1);
    driver_ok(&mut t);
    t.device_mut().broken = true;
    assert_eq!(
        r32(&t, STATUS),
        ACK | DRIVER | FEATURES_OK | DRIVER_OK | NEEDS_RESET
    );
    // A driver writing the value back does not trip over the extra bit.
    let status = r32(&t, STATUS);
    w32(&mut t, STATUS, status);
    assert!(t.is_active());
    w32(&mut t, STATUS, 0);
    assert_eq!(r32(&t, STATUS), 0);
}

#[test]
fn config_space_reaches_the_device_and_writes_bump_the_generation() {
    let (mut t, _) = transport();
    let generation = r32(&t, CONFIG_GENERATION);
    t.write(CONFIG + 2, &[0xab, 0xcd]);
    assert_eq!(t.device().config[2..4], [0xab, 0xcd]);
    let mut b = [0u8; 2];
    t.read(CONFIG + 2, &mut b);
    assert_eq!(b, [0xab, 0xcd]);
    assert_ne!(r32(&t, CONFIG_GENERATION), generation);
    let mut past = [0xffu8; 4];
    t.read(CONFIG + 8, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn a_device_side_config_change_bumps_the_generation() {
    let (mut t, _) = transport();
    let generation = r32(&t, CONFIG_GENERATION);
    t.device_mut().generation += 1;
    assert_eq!(r32(&t, CONFIG_GENERATION), generation.wrapping_add(1));
}

#[test]
fn queue_notify_writes_that_queues_eventfd() {
    let (mut t, _) = transport();
    w32(&mut t, QUEUE_NOTIFY, 1);
    w32(&mut t, QUEUE_NOTIFY, 1);
    assert_eq!(t.queue_events()[1].read().unwrap(), 2);
    assert!(t.queue_events()[0].read().is_err(), "queue 0 not signalled");
    w32(&mut t, QUEUE_NOTIFY, 7);
    w32(&mut t, QUEUE_NOTIFY, u32::MAX);
}

#[test]
fn process_queue_reaches_the_device_only_while_active() {
    let (mut t, _) = transport();
    t.process_queue(0).unwrap();
    assert!(t.device().processed.is_empty());
    negotiate(&mut t, VERSION_1);
    driver_ok(&mut t);
    t.process_queue(1).unwrap();
    assert_eq!(t.device().processed, vec![1]);
}

#[test]
fn interrupt_status_shows_pending_reasons_until_acked() {
    let (mut t, irq) = transport();
    irq.trigger(InterruptType::Queue(0)).unwrap();
    irq.trigger(InterruptType::Config).unwrap();
    assert_eq!(r32(&t, INTERRUPT_STATUS), 3);
    w32(&mut t, INTERRUPT_ACK, 1);
    assert_eq!(r32(&t, INTERRUPT_STATUS), 2);
    w32(&mut t, INTERRUPT_ACK, 2);
    assert_eq!(r32(&t, INTERRUPT_STATUS), 0);
}

#[test]
fn ill_sized_and_unaligned_register_accesses_are_ignored() {
    let (mut t, _) = transport();
    let mut two = [0xffu8; 2];
    t.read(MAGIC, &mut two);
    assert_eq!(two, [0, 0]);
    let mut eight = [0xffu8; 8];
    t.read(MAGIC, &mut eight);
    assert_eq!(eight, [0; 8]);
    let mut four = [0xffu8; 4];
    t.read(MAGIC + 1, &mut four);
    assert_eq!(four, [0; 4]);
    t.read(STATUS, &mut []);
    t.write(STATUS, &[ACK as u8]);
    t.write(STATUS + 2, &ACK.to_le_bytes());
    t.write(STATUS, &[1, 0, 0, 0, 0, 0, 0, 0]);
    t.write(STATUS, &[]);
    assert_eq!(r32(&t, STATUS), 0);
}

#[test]
fn unknown_and_legacy_registers_read_zero_and_ignore_writes() {
    let (mut t, _) = transport();
    for offset in [0x028, 0x03c, 0x040, 0x0c0, 0x0f0, 0x0f8] {
        w32(&mut t, offset, 0x1234);
        assert_eq!(r32(&t, offset), 0, "{offset:#x}");
    }
    assert_eq!(r32(&t, SHM_LEN_LOW), u32::MAX, "no shared memory region");
}

#[test]
fn a_device_with_an_invalid_queue_maximum_is_refused() {
    struct Bad;
    impl VirtioDevice for Bad {
        fn device_type(&self) -> u32 {
            1
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[256, 100]
        }
        fn avail_features(&self) -> u64 {
            0
        }
        fn ack_features(&mut self, _: u64) {}
        fn read_config(&self, _: u64, _: &mut [u8]) {}
        fn write_config(&mut self, _: u64, _: &[u8]) {}
        fn activate(
            &mut self,
            _: GuestMemoryMmap,
            _: Arc<dyn VirtioInterrupt>,
            _: Vec<Queue>,
        ) -> Result<(), ActivateError> {
            Ok(())
        }
        fn reset(&mut self) {}
        fn process_queue(&mut self, _: u16) -> Result<(), DeviceError> {
            Ok(())
        }
    }
    let irq = Arc::new(CountingInterrupt::new());
    let err = MmioTransport::new(Bad, guest_memory(), irq).err().unwrap();
    assert!(matches!(
        err,
        TransportError::QueueMaxSize {
            index: 1,
            size: 100
        }
    ));
}
