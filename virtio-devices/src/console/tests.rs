//! Console tests on real guest memory with hand-built driver-side queues
//! (`crate::testing::DriverQueue`): identity, transmit, receive, reset and
//! notification suppression (virtio 1.2 §5.3, §2.7.7, §2.7.10). Malformed
//! chains are in `tests_malformed.rs`.

use std::io::Write;
use std::sync::Arc;

use virtio_queue::desc::RawDescriptor;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::device::{VirtioDevice, FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC};
use crate::interrupt::{CountingInterrupt, InterruptType};
use crate::testing::{desc, guest_memory, DriverQueue, BUFFERS, INDIRECT, NEXT, WRITE};

/// Driver-side queue size in these tests.
pub(super) const SIZE: u16 = 16;

/// Whether the queues run with VIRTIO_F_EVENT_IDX.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum EventIdx {
    Off,
    On,
}

/// A console with its two queues on guest memory, driven from the driver
/// side.
pub(super) struct Rig<'m, W: Write + Send = Vec<u8>> {
    pub mem: &'m GuestMemoryMmap,
    pub rx: DriverQueue<'m>,
    pub tx: DriverQueue<'m>,
    pub irq: Arc<CountingInterrupt>,
    pub console: Console<W>,
}

impl<'m> Rig<'m> {
    /// An active console writing to a `Vec`.
    pub(super) fn new(mem: &'m GuestMemoryMmap) -> Self {
        let mut rig = Rig::inactive(mem, Vec::new());
        rig.activate(EventIdx::Off);
        rig
    }

    /// Everything the guest transmitted.
    pub(super) fn output(&self) -> &[u8] {
        self.console.sink()
    }
}

impl<'m, W: Write + Send> Rig<'m, W> {
    /// A console over `sink` that the driver has not activated yet.
    pub(super) fn inactive(mem: &'m GuestMemoryMmap, sink: W) -> Self {
        Rig {
            mem,
            rx: DriverQueue::new(mem, 0x1_0000, SIZE),
            tx: DriverQueue::new(mem, 0x2_0000, SIZE),
            irq: Arc::new(CountingInterrupt::new()),
            console: Console::new(sink),
        }
    }

    pub(super) fn activate(&mut self, event_idx: EventIdx) {
        let make = |q: &DriverQueue<'m>| {
            let mut queue = q.queue();
            queue.set_event_idx(event_idx == EventIdx::On);
            queue
        };
        let queues = vec![make(&self.rx), make(&self.tx)];
        self.console
            .activate(self.mem.clone(), self.irq.clone(), queues)
            .unwrap();
    }

    /// Put `descs` in the transmit descriptor table from index `at` (chains
    /// as their NEXT flags say), make them available and notify.
    pub(super) fn transmit(&mut self, descs: &[RawDescriptor], at: u16) {
        self.tx.add_chains(descs, at);
        self.console.process_queue(TX_QUEUE).unwrap();
    }

    /// Same for receive buffers.
    pub(super) fn post_rx(&mut self, descs: &[RawDescriptor], at: u16) {
        self.rx.add_chains(descs, at);
        self.console.process_queue(RX_QUEUE).unwrap();
    }

    /// Write `bytes` at `addr` and return a device-readable descriptor for
    /// them.
    pub(super) fn text(&self, addr: u64, bytes: &[u8], flags: u16, next: u16) -> RawDescriptor {
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        desc(addr, bytes.len() as u32, flags, next)
    }

    /// Read `len` bytes of guest memory at `addr`.
    pub(super) fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}

#[test]
fn identifies_as_a_single_port_console_with_zero_config() {
    let console = Console::new(Vec::new());
    assert_eq!(console.device_type(), 3);
    assert_eq!(console.queue_max_sizes(), &[QUEUE_SIZE, QUEUE_SIZE]);
    let features = console.avail_features();
    assert_eq!(
        features & (FEATURE_EVENT_IDX | FEATURE_INDIRECT_DESC),
        FEATURE_EVENT_IDX | FEATURE_INDIRECT_DESC
    );
    assert_eq!(features & 0b111, 0, "no SIZE, MULTIPORT or EMERG_WRITE");
    let mut config = [0xffu8; 12];
    console.read_config(0, &mut config);
    assert_eq!(config, [0; 12]);
}

#[test]
fn config_writes_are_ignored() {
    let mut console = Console::new(Vec::new());
    console.write_config(0, &[1, 2, 3, 4]);
    let mut config = [0xffu8; 4];
    console.read_config(0, &mut config);
    assert_eq!(config, [0; 4]);
}

#[test]
fn transmit_copies_every_buffer_of_a_chain_to_the_sink() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let a = rig.text(BUFFERS, b"hello ", NEXT, 1);
    let b = rig.text(BUFFERS + 0x1000, b"world", 0, 0);
    rig.transmit(&[a, b], 0);
    assert_eq!(rig.output(), b"hello world");
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 1);
}

#[test]
fn transmit_serves_every_available_chain_in_order() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let chains = [
        rig.text(BUFFERS, b"one ", 0, 0),
        rig.text(BUFFERS + 0x100, b"two ", 0, 0),
        rig.text(BUFFERS + 0x200, b"three", 0, 0),
    ];
    rig.transmit(&chains, 0);
    assert_eq!(rig.output(), b"one two three");
    assert_eq!(rig.tx.used(), vec![(0, 0), (1, 0), (2, 0)]);
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 1);
}

#[test]
fn transmit_copies_a_buffer_larger_than_its_scratch_chunk() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let data: Vec<u8> = (0..3 * TX_CHUNK + 17).map(|i| i as u8).collect();
    let d = rig.text(BUFFERS, &data, 0, 0);
    rig.transmit(&[d], 0);
    assert_eq!(rig.output(), &data[..]);
}

#[test]
fn transmit_follows_an_indirect_table() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let table = BUFFERS + 0x8000;
    let entries = [
        rig.text(BUFFERS, b"in", NEXT, 1),
        rig.text(BUFFERS + 0x100, b"direct", 0, 0),
    ];
    for (i, e) in entries.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    rig.transmit(&[desc(table, 32, INDIRECT, 0)], 0);
    assert_eq!(rig.output(), b"indirect");
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
}

#[test]
fn input_waits_for_a_receive_buffer_then_fills_it() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    assert_eq!(rig.console.push_input(b"abc").unwrap(), 3);
    assert!(rig.rx.used().is_empty());
    rig.post_rx(&[desc(BUFFERS, 16, WRITE, 0)], 0);
    assert_eq!(rig.rx.used(), vec![(0, 3)]);
    assert_eq!(rig.read(BUFFERS, 3), b"abc");
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 1);
    assert_eq!(rig.console.input_room(), INPUT_CAPACITY);
}

#[test]
fn input_goes_straight_into_a_waiting_receive_buffer() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.post_rx(&[desc(BUFFERS, 16, WRITE, 0)], 0);
    assert!(rig.rx.used().is_empty(), "no input, buffer kept");
    rig.console.push_input(b"x").unwrap();
    assert_eq!(rig.rx.used(), vec![(0, 1)]);
    assert_eq!(rig.read(BUFFERS, 1), b"x");
}

#[test]
fn input_spreads_over_descriptors_and_buffers() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.post_rx(
        &[
            desc(BUFFERS, 4, WRITE | NEXT, 1),
            desc(BUFFERS + 0x100, 4, WRITE, 0),
            desc(BUFFERS + 0x200, 8, WRITE, 0),
        ],
        0,
    );
    rig.console.push_input(b"0123456789abcd").unwrap();
    assert_eq!(rig.rx.used(), vec![(0, 8), (2, 6)]);
    assert_eq!(rig.read(BUFFERS, 4), b"0123");
    assert_eq!(rig.read(BUFFERS + 0x100, 4), b"4567");
    assert_eq!(rig.read(BUFFERS + 0x200, 6), b"89abcd");
}

#[test]
fn input_beyond_capacity_is_refused() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let big = vec![7u8; INPUT_CAPACITY + 10];
    assert_eq!(rig.console.push_input(&big).unwrap(), INPUT_CAPACITY);
    assert_eq!(rig.console.input_room(), 0);
    assert_eq!(rig.console.push_input(b"more").unwrap(), 0);
}

#[test]
fn input_keeps_its_order_across_partial_deliveries() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let data: Vec<u8> = (0..88 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let first = rig.console.push_input(&data[..40 * 1024]).unwrap();
    rig.post_rx(&[desc(BUFFERS, 32 * 1024, WRITE, 0)], 0);
    let second = rig.console.push_input(&data[first..]).unwrap();
    assert_eq!(first + second, data.len());
    rig.post_rx(&[desc(BUFFERS + 0x10_0000, 64 * 1024, WRITE, 0)], 1);
    assert_eq!(rig.rx.used(), vec![(0, 32 * 1024), (1, 56 * 1024)]);
    let mut got = rig.read(BUFFERS, 32 * 1024);
    got.extend(rig.read(BUFFERS + 0x10_0000, 56 * 1024));
    assert_eq!(got, data);
}

#[test]
fn nothing_touches_the_queues_before_activation() {
    let mem = guest_memory();
    let mut rig = Rig::inactive(&mem, Vec::new());
    rig.console.push_input(b"early").unwrap();
    rig.rx.add_chains(&[desc(BUFFERS, 16, WRITE, 0)], 0);
    let d = rig.text(BUFFERS + 0x100, b"out", 0, 0);
    rig.transmit(&[d], 0);
    rig.console.process_queue(RX_QUEUE).unwrap();
    assert!(rig.console.sink().is_empty());
    assert!(rig.rx.used().is_empty() && rig.tx.used().is_empty());
    // Activation picks up the input kept meanwhile.
    rig.activate(EventIdx::Off);
    rig.console.process_queue(RX_QUEUE).unwrap();
    assert_eq!(rig.read(BUFFERS, 5), b"early");
}

#[test]
fn reset_stops_queue_processing_and_keeps_pending_input() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.console.push_input(b"kept").unwrap();
    rig.console.reset();
    let d = rig.text(BUFFERS, b"lost", 0, 0);
    rig.transmit(&[d], 0);
    assert!(rig.output().is_empty());
    assert!(rig.tx.used().is_empty());
    assert_eq!(rig.console.input_room(), INPUT_CAPACITY - 4);
}

#[test]
fn unknown_queue_notifications_are_ignored() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.console.process_queue(2).unwrap();
    rig.console.process_queue(u16::MAX).unwrap();
    assert!(rig.irq.triggers().is_empty());
}

#[test]
fn without_event_idx_every_batch_interrupts_and_notifications_end_enabled() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    for i in 0..3 {
        let d = rig.text(BUFFERS, b"z", 0, 0);
        rig.transmit(&[d], i);
    }
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 3);
    assert_eq!(rig.tx.used_flags(), 0, "VRING_USED_F_NO_NOTIFY cleared");
}

#[test]
fn with_event_idx_the_guest_is_only_interrupted_when_used_event_is_crossed() {
    let mem = guest_memory();
    let mut rig = Rig::inactive(&mem, Vec::new());
    rig.activate(EventIdx::On);
    rig.tx.set_used_event(5);
    let d = rig.text(BUFFERS, b"a", 0, 0);
    rig.transmit(&[d], 0);
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 0);
    // avail_event tells the driver to notify for the next chain.
    assert_eq!(rig.tx.avail_event(), 1);
    // used_event = 1: notify once the used index passes 1.
    rig.tx.set_used_event(1);
    let d = rig.text(BUFFERS, b"b", 0, 0);
    rig.transmit(&[d], 1);
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 1);
    assert_eq!(rig.output(), b"ab");
}
