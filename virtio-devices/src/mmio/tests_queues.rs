//! Register-level tests of the MMIO transport, part 2: queue registers and
//! their checks at activation, DEVICE_NEEDS_RESET, configuration space and
//! generation, queue notifications, interrupt status, and accesses of the
//! wrong size or at unknown offsets (virtio 1.2 §4.2.2, §4.2.3.2, §2.1.2,
//! §2.5.1).

use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

use super::tests::*;
use super::*;
use crate::device::{ActivateError, DeviceError, VirtioDevice};
use crate::interrupt::{CountingInterrupt, InterruptType};
use crate::testing::guest_memory;

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
