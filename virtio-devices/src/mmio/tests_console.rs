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
use crate::testing::{desc, guest_memory, DriverQueue, Rng, BUFFERS, WRITE};

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

/// One random access: mostly aligned 4-byte register accesses (so the
/// state machine gets somewhere), some of any size anywhere.
fn random_access(t: &mut ConsoleTransport, rng: &mut Rng) {
    let offsets = [
        rng.below(0x40) * 4,
        rng.below(0x110),
        STATUS,
        QUEUE_SEL,
        QUEUE_NUM,
        QUEUE_READY,
        QUEUE_NOTIFY,
        DRIVER_FEATURES,
        DRIVER_FEATURES_SEL,
        MMIO_WINDOW_SIZE - 1,
    ];
    let offset = rng.pick(&offsets);
    let len = rng.pick(&[4, 4, 4, 0, 1, 2, 3, 8]);
    let values = [
        0,
        1,
        2,
        3,
        4,
        8,
        0xf,
        0x40,
        0x80,
        64,
        0x1_0000,
        rng.next() as u32,
    ];
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&rng.pick(&values).to_le_bytes());
    if rng.below(2) == 0 {
        t.write(offset, &bytes[..len]);
    } else {
        t.read(offset, &mut bytes[..len]);
    }
}

#[test]
fn random_register_traffic_never_panics() {
    let mem = guest_memory();
    let (mut t, _) = console_transport(&mem);
    let mut rng = Rng::new(0xf1a7);
    let mut activations = 0;
    for _ in 0..100 {
        // A proper negotiation with random queue registers, so the random
        // traffic below also meets an active device.
        w32(&mut t, STATUS, 0);
        negotiate(&mut t, VERSION_1);
        for _ in 0..rng.below(12) {
            let registers = [QUEUE_SEL, QUEUE_NUM, QUEUE_READY, QUEUE_DESC_LOW];
            let register = rng.pick(&registers);
            let values = [0, 1, 16, 64, 0x1_0000, 0x2_0000, rng.next() as u32];
            let value = rng.pick(&values);
            w32(&mut t, register, value);
        }
        driver_ok(&mut t);
        activations += usize::from(t.is_active());
        for _ in 0..500 {
            random_access(&mut t, &mut rng);
            match rng.below(32) {
                0 => drop(t.process_queue(rng.below(3) as u16)),
                1 => drop(t.device_mut().push_input(b"x")),
                _ => {}
            }
        }
    }
    assert!(activations > 0, "some rounds should activate");
}
