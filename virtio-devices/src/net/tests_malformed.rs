//! Malformed chains on both network queues (virtio 1.2 §2.7.5 chain
//! rules, §5.1.6 framing): each bad chain comes back with used length 0,
//! nothing of it reaches the backend or carries a frame, and the next
//! chain is served; a broken ring sets DEVICE_NEEDS_RESET, which a reset
//! clears.

use virtio_queue::desc::RawDescriptor;
use vm_memory::{Bytes, GuestAddress};

use super::testing::*;
use super::*;
use crate::device::VirtioDevice;
use crate::interrupt::InterruptType;
use crate::testing::{desc, guest_memory, MEM_SIZE, NEXT, WRITE};

/// Send the bad chain `bad` at table index 0 and a good frame after it;
/// the bad one must come back empty and only the good one be sent.
fn tx_refuses(bad: &[RawDescriptor]) {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let good = frame(64, 9);
    rig.put(TX_BUF + 0x8000, &good);
    let at = bad.len() as u16;
    let used = rig.transmit_at(bad, 0);
    assert_eq!(used, [(0, 0)], "the bad chain comes back empty");
    let used = rig.transmit_at(&[desc(TX_BUF + 0x8000, good.len() as u32, 0, 0)], at);
    assert_eq!(used, [(u32::from(at), 0)]);
    assert_eq!(rig.fake().sent, [good], "only the good frame is sent");
    let stats = rig.net.stats();
    assert_eq!((stats.tx_malformed, stats.tx_frames), (1, 1));
    assert!(!rig.net.needs_reset());
}

#[test]
fn a_writable_descriptor_in_a_transmit_chain_is_refused() {
    tx_refuses(&[
        desc(TX_BUF, 12, NEXT, 1),
        desc(TX_BUF + 0x100, 60, WRITE, 0),
    ]);
}

#[test]
fn a_transmit_buffer_outside_memory_is_refused() {
    tx_refuses(&[desc(TX_BUF, 12, NEXT, 1), desc(MEM_SIZE - 10, 60, 0, 0)]);
    tx_refuses(&[desc(u64::MAX - 5, 64, 0, 0)]);
}

#[test]
fn a_looping_transmit_chain_is_refused() {
    tx_refuses(&[desc(TX_BUF, 40, NEXT, 1), desc(TX_BUF, 40, NEXT, 0)]);
}

#[test]
fn a_transmit_chain_whose_next_leaves_the_table_is_refused() {
    tx_refuses(&[desc(TX_BUF, 40, NEXT, SIZE)]);
}

#[test]
fn a_zero_length_transmit_chain_is_refused() {
    tx_refuses(&[desc(TX_BUF, 0, NEXT, 1), desc(TX_BUF, 0, 0, 0)]);
}

#[test]
fn a_transmit_chain_shorter_than_the_headers_is_refused() {
    tx_refuses(&[desc(TX_BUF, MIN_TX_FRAME_LEN - 1, 0, 0)]);
}

#[test]
fn a_transmit_chain_one_byte_over_the_largest_frame_is_refused() {
    tx_refuses(&[desc(TX_BUF, MAX_FRAME_LEN + 1, 0, 0)]);
    tx_refuses(&[desc(TX_BUF, MAX_FRAME_LEN, NEXT, 1), desc(TX_BUF, 1, 0, 0)]);
}

#[test]
fn a_transmit_chain_longer_than_the_queue_is_refused() {
    // An indirect table of SIZE + 1 descriptors.
    let table = TX_BUF + 0x2_0000;
    let mem = guest_memory();
    for i in 0..=SIZE {
        let next_flag = if i < SIZE { NEXT } else { 0 };
        rig_write(&mem, table, i, desc(TX_BUF, 4, next_flag, i + 1));
    }
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let len = 16 * (u32::from(SIZE) + 1);
    let used = rig.transmit_at(&[desc(table, len, crate::testing::INDIRECT, 0)], 0);
    assert_eq!(used, [(0, 0)]);
    assert!(rig.fake().sent.is_empty());
}

fn rig_write(mem: &vm_memory::GuestMemoryMmap, table: u64, i: u16, d: RawDescriptor) {
    mem.write_obj(d, GuestAddress(table + 16 * u64::from(i)))
        .unwrap();
}

/// Post the bad receive chain `bad` at table index 0, then a good
/// 2048-byte buffer after it; a frame must skip the bad chain (returned
/// empty) and land whole in the good one.
fn rx_refuses(bad: &[RawDescriptor], features: u64) {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, features);
    let at = bad.len() as u16;
    rig.rxq.add_chains(bad, 0);
    rig.rxq.add_chains(&[desc(rx_addr(at), 2048, WRITE, 0)], at);
    let f = frame(100, 2);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    let used = rig.rxq.used();
    assert_eq!(used, [(0, 0), (u32::from(at), f.len() as u32)]);
    let got = rig.get(rx_addr(at), f.len());
    assert_eq!(&got[HEADER_LEN..], &f[HEADER_LEN..]);
    assert_eq!(num_buffers(&got), 1);
    assert_eq!(rig.net.stats().rx_malformed, 1);
    assert!(!rig.net.needs_reset());
}

#[test]
fn a_device_readable_receive_buffer_is_refused() {
    rx_refuses(&[desc(rx_addr(0), 2048, 0, 0)], ALL_FEATURES);
    rx_refuses(&[desc(rx_addr(0), 2048, 0, 0)], NO_MRG);
}

#[test]
fn a_receive_buffer_outside_memory_is_refused() {
    rx_refuses(&[desc(MEM_SIZE - 100, 2048, WRITE, 0)], ALL_FEATURES);
}

#[test]
fn a_zero_length_receive_chain_is_refused() {
    rx_refuses(&[desc(rx_addr(0), 0, WRITE, 0)], ALL_FEATURES);
}

#[test]
fn a_looping_receive_chain_is_refused() {
    let looped = [
        desc(rx_addr(0), 100, WRITE | NEXT, 1),
        desc(rx_addr(0), 100, WRITE | NEXT, 0),
    ];
    rx_refuses(&looped, ALL_FEATURES);
}

#[test]
fn a_mergeable_first_buffer_shorter_than_the_header_is_refused() {
    rx_refuses(
        &[desc(rx_addr(0), HEADER_LEN as u32 - 1, WRITE, 0)],
        ALL_FEATURES,
    );
}

#[test]
fn a_bad_chain_between_mergeable_buffers_is_returned_first() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.rxq.add_chains(
        &[
            desc(rx_addr(0), 1000, WRITE, 0),
            desc(rx_addr(1), 1000, 0, 0),
            desc(rx_addr(2), 1000, WRITE, 0),
        ],
        0,
    );
    let f = frame(1500, 0);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    let total = f.len() as u32;
    assert_eq!(rig.rxq.used(), [(1, 0), (0, 1000), (2, total - 1000)]);
    let mut got = rig.get(rx_addr(0), 1000);
    got.extend(rig.get(rx_addr(2), total as usize - 1000));
    assert_eq!(num_buffers(&got), 2);
    assert_eq!(&got[HEADER_LEN..], &f[HEADER_LEN..]);
}

#[test]
fn an_available_index_far_ahead_sets_needs_reset_and_a_reset_recovers() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.txq.set_avail_idx(SIZE + 1);
    rig.net.process_queue(TX_QUEUE).unwrap();
    assert!(rig.net.needs_reset());
    assert_eq!(rig.irq.count(InterruptType::Config), 1);
    // Nothing moves while broken.
    rig.post_rx(0, 1, 2048);
    rig.incoming(frame(10, 0));
    rig.net.process_rx().unwrap();
    assert_eq!(rig.fake().recv_calls, 0);

    rig.net.reset();
    assert!(!rig.net.needs_reset());
    rig.txq.restart();
    rig.rxq.restart();
    rig.activate(ALL_FEATURES);
    assert_eq!(rig.transmit(&frame(50, 0)), [(0, 0)]);
    rig.post_rx(0, 1, 2048);
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used().len(), 1);
}

#[test]
fn a_receive_head_past_the_queue_sets_needs_reset() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.rxq.make_available(SIZE);
    rig.incoming(frame(10, 0));
    rig.net.process_rx().unwrap();
    assert!(rig.net.needs_reset());
    assert_eq!(rig.irq.count(InterruptType::Config), 1);
}

#[test]
fn a_transmit_head_past_the_queue_sets_needs_reset() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.txq.make_available(SIZE + 3);
    rig.net.process_queue(TX_QUEUE).unwrap();
    assert!(rig.net.needs_reset());
    assert!(rig.fake().sent.is_empty());
}

#[test]
fn a_frame_read_when_the_ring_broke_is_delivered_after_the_reset() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.rxq.set_avail_idx(SIZE + 1);
    let f = frame(10, 0);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    assert!(rig.net.needs_reset());

    rig.net.reset();
    rig.rxq.restart();
    rig.activate(ALL_FEATURES);
    rig.post_rx(0, 1, 2048);
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used(), [(0, f.len() as u32)]);
    assert_eq!(
        &rig.get(rx_addr(0), f.len())[HEADER_LEN..],
        &f[HEADER_LEN..]
    );
}
