//! End-to-end tests: the console behind the MMIO transport, driven only
//! through register accesses and guest memory, the way a Linux driver and
//! the vmm's event loop would (virtio 1.2 §4.2.3 initialization and
//! notifications, §5.3 console, §2.1.2 DEVICE_NEEDS_RESET).

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::tests::*;
use super::*;
use crate::console::{Console, RX_QUEUE, TX_QUEUE};
use crate::interrupt::CountingInterrupt;
use crate::testing::{desc, guest_memory, DriverQueue, BUFFERS, WRITE};

type ConsoleTransport = MmioTransport<Console<Vec<u8>>>;

const SIZE: u16 = 64;
const RX_BASE: u64 = 0x1_0000;
const TX_BASE: u64 = 0x2_0000;

fn console_transport(mem: &GuestMemoryMmap) -> (ConsoleTransport, Arc<CountingInterrupt>) {
    let irq = Arc::new(CountingInterrupt::new());
    let t = MmioTransport::new(Console::new(Vec::new()), mem.clone(), irq.clone()).unwrap();
    (t, irq)
}

/// What the vmm's event loop does when a queue's eventfd is readable.
fn serve_notifications(t: &mut ConsoleTransport) {
    for index in [RX_QUEUE, TX_QUEUE] {
        if t.queue_events()[usize::from(index)].read().is_ok() {
            t.process_queue(index).unwrap();
        }
    }
}

/// The driver's side of §3.1.1 / §4.2.3: negotiate, set up both queues,
/// DRIVER_OK; then the vmm serves the activation kicks.
fn bring_up(t: &mut ConsoleTransport) {
    w32(t, STATUS, ACK);
    w32(t, STATUS, ACK | DRIVER);
    w32(t, DEVICE_FEATURES_SEL, 1);
    let high = u64::from(r32(t, DEVICE_FEATURES));
    w32(t, DEVICE_FEATURES_SEL, 0);
    let offered = high << 32 | u64::from(r32(t, DEVICE_FEATURES));
    write_features(t, offered & (VERSION_1 | crate::FEATURE_EVENT_IDX));
    w32(t, STATUS, ACK | DRIVER | FEATURES_OK);
    assert_eq!(r32(t, STATUS) & FEATURES_OK, FEATURES_OK);
    for (index, base) in [(0, RX_BASE), (1, TX_BASE)] {
        w32(t, QUEUE_SEL, index);
        assert_eq!(r32(t, QUEUE_NUM_MAX), 256);
        setup_queue(t, index, u32::from(SIZE), base);
    }
    driver_ok(t);
    assert!(t.is_active());
    serve_notifications(t);
}

#[test]
fn a_driver_brings_the_console_up_and_transmits_through_queue_notify() {
    let mem = guest_memory();
    let (mut t, _) = console_transport(&mem);
    let tx = DriverQueue::new(&mem, TX_BASE, SIZE);
    DriverQueue::new(&mem, RX_BASE, SIZE);
    bring_up(&mut t);
    assert_eq!(r32(&t, DEVICE_ID), 3);
    mem.write_slice(b"guest says hi", GuestAddress(BUFFERS))
        .unwrap();
    tx.add_chains(&[desc(BUFFERS, 13, 0, 0)], 0);
    w32(&mut t, QUEUE_NOTIFY, u32::from(TX_QUEUE));
    serve_notifications(&mut t);
    assert_eq!(t.device().sink(), b"guest says hi");
    assert_eq!(tx.used(), vec![(0, 0)]);
    assert_eq!(r32(&t, INTERRUPT_STATUS), 1);
    w32(&mut t, INTERRUPT_ACK, 1);
    assert_eq!(r32(&t, INTERRUPT_STATUS), 0);
}

#[test]
fn console_input_reaches_the_guest_through_the_transport() {
    let mem = guest_memory();
    let (mut t, irq) = console_transport(&mem);
    let rx = DriverQueue::new(&mem, RX_BASE, SIZE);
    DriverQueue::new(&mem, TX_BASE, SIZE);
    // Buffers posted before DRIVER_OK are found thanks to the activation
    // kick; input pushed before activation waits for them.
    rx.add_chains(&[desc(BUFFERS, 64, WRITE, 0)], 0);
    t.device_mut().push_input(b"typed").unwrap();
    bring_up(&mut t);
    assert_eq!(rx.used(), vec![(0, 5)]);
    let mut got = [0u8; 5];
    mem.read_slice(&mut got, GuestAddress(BUFFERS)).unwrap();
    assert_eq!(&got, b"typed");
    assert_eq!(irq.count(crate::InterruptType::Queue(RX_QUEUE)), 1);
}

#[test]
fn a_guest_that_breaks_a_queue_sees_needs_reset_and_recovers_by_reset() {
    let mem = guest_memory();
    let (mut t, irq) = console_transport(&mem);
    let tx = DriverQueue::new(&mem, TX_BASE, SIZE);
    let rx = DriverQueue::new(&mem, RX_BASE, SIZE);
    bring_up(&mut t);
    tx.make_available(SIZE + 5);
    w32(&mut t, QUEUE_NOTIFY, u32::from(TX_QUEUE));
    serve_notifications(&mut t);
    assert_eq!(r32(&t, STATUS) & NEEDS_RESET, NEEDS_RESET);
    assert_eq!(r32(&t, INTERRUPT_STATUS) & 2, 2, "configuration change");
    assert_eq!(irq.count(crate::InterruptType::Config), 1);
    // The driver resets and starts over with fresh rings.
    w32(&mut t, STATUS, 0);
    assert_eq!(r32(&t, STATUS), 0);
    tx.restart();
    rx.restart();
    bring_up(&mut t);
    mem.write_slice(b"again", GuestAddress(BUFFERS)).unwrap();
    tx.add_chains(&[desc(BUFFERS, 5, 0, 0)], 0);
    w32(&mut t, QUEUE_NOTIFY, u32::from(TX_QUEUE));
    serve_notifications(&mut t);
    assert_eq!(t.device().sink(), b"again");
}
