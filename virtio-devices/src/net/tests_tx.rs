//! Transmit tests (virtio 1.2 §5.1.6.2): frames in one or many
//! descriptors, direct or indirect, up to the largest, reach the backend
//! whole; every chain comes back with used length 0; backend failures
//! drop the frame and the queue goes on; frames spanning two guest memory
//! regions come out as two slices.

use virtio_queue::desc::RawDescriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::backend::Segment;
use super::testing::*;
use super::*;
use crate::device::{VirtioDevice, FEATURE_EVENT_IDX};
use crate::interrupt::InterruptType;
use crate::testing::{desc, guest_memory, INDIRECT, NEXT};

#[test]
fn a_single_descriptor_frame_is_sent_whole_and_used_with_length_0() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let f = frame(100, 7);
    assert_eq!(rig.transmit(&f), [(0, 0)]);
    assert_eq!(rig.fake().sent, [f]);
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 1);
    let stats = rig.net.stats();
    assert_eq!((stats.tx_frames, stats.tx_bytes), (1, 100));
}

#[test]
fn a_frame_split_across_descriptors_is_sent_as_one_frame() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let f = frame(3000, 1);
    // Header alone, then the payload in pieces of 1000, 0 (skipped) and
    // the rest, scattered.
    rig.put(TX_BUF, &f[..HEADER_LEN]);
    rig.put(TX_BUF + 0x1000, &f[HEADER_LEN..1012]);
    rig.put(TX_BUF + 0x3000, &f[1012..]);
    let descs = [
        desc(TX_BUF, HEADER_LEN as u32, NEXT, 1),
        desc(TX_BUF + 0x1000, 1000, NEXT, 2),
        desc(TX_BUF + 0x2000, 0, NEXT, 3),
        desc(TX_BUF + 0x3000, 2000, 0, 0),
    ];
    assert_eq!(rig.transmit_at(&descs, 0), [(0, 0)]);
    assert_eq!(rig.fake().sent, [f]);
}

#[test]
fn a_header_split_mid_field_is_passed_on_unchanged() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let f = frame(60, 9);
    rig.put(TX_BUF, &f[..5]);
    rig.put(TX_BUF + 0x100, &f[5..]);
    let descs = [
        desc(TX_BUF, 5, NEXT, 1),
        desc(TX_BUF + 0x100, f.len() as u32 - 5, 0, 0),
    ];
    rig.transmit_at(&descs, 0);
    assert_eq!(rig.fake().sent, [f]);
}

#[test]
fn an_indirect_chain_is_sent() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let f = frame(200, 3);
    rig.put(TX_BUF, &f[..HEADER_LEN]);
    rig.put(TX_BUF + 0x100, &f[HEADER_LEN..]);
    let table: [RawDescriptor; 2] = [
        desc(TX_BUF, HEADER_LEN as u32, NEXT, 1),
        desc(TX_BUF + 0x100, 200, 0, 0),
    ];
    let table_at = GuestAddress(TX_BUF + 0x8000);
    for (i, d) in table.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(table_at.0 + 16 * i as u64))
            .unwrap();
    }
    rig.transmit_at(&[desc(table_at.0, 32, INDIRECT, 0)], 0);
    assert_eq!(rig.fake().sent, [f]);
}

#[test]
fn the_largest_frame_is_sent() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let f = frame(MAX_FRAME_LEN as usize - HEADER_LEN, 0);
    assert_eq!(rig.transmit(&f), [(0, 0)]);
    assert_eq!(rig.fake().sent.len(), 1);
    assert_eq!(rig.fake().sent[0], f);
}

#[test]
fn every_chain_of_a_notification_is_sent_in_order_with_one_interrupt() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let frames: Vec<_> = (0..5u8).map(|i| frame(50 + usize::from(i), i)).collect();
    let descs: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let addr = TX_BUF + 0x1000 * i as u64;
            rig.put(addr, f);
            desc(addr, f.len() as u32, 0, 0)
        })
        .collect();
    let used = rig.transmit_at(&descs, 0);
    assert_eq!(used, [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]);
    assert_eq!(rig.fake().sent, frames);
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 1);
}

#[test]
fn used_event_suppresses_the_transmit_interrupt() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    assert!(rig.net.avail_features() & FEATURE_EVENT_IDX != 0);
    // Interrupt only once the used index passes 5.
    rig.txq.set_used_event(5);
    rig.transmit(&frame(40, 0));
    assert_eq!(rig.irq.count(InterruptType::Queue(TX_QUEUE)), 0);
    assert_eq!(rig.fake().sent.len(), 1);
}

#[test]
fn a_failing_backend_drops_the_frame_and_the_queue_goes_on() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.fake().fail_send = true;
    assert_eq!(rig.transmit(&frame(64, 0)), [(0, 0)]);
    rig.fake().fail_send = false;
    let f = frame(64, 1);
    rig.put(TX_BUF + 0x1000, &f);
    let used = rig.transmit_at(&[desc(TX_BUF + 0x1000, f.len() as u32, 0, 0)], 1);
    assert_eq!(used, [(1, 0)]);
    assert_eq!(rig.fake().sent, [f]);
    let stats = rig.net.stats();
    assert_eq!((stats.tx_frames, stats.tx_dropped), (1, 1));
    assert!(!rig.net.needs_reset());
}

#[test]
fn a_frame_across_two_memory_regions_comes_out_as_two_slices() {
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x20_0000),
        (GuestAddress(0x20_0000), 0x20_0000),
    ])
    .unwrap();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let f = frame(100, 5);
    let at = 0x20_0000 - 50;
    rig.put(at, &f);
    let used = rig.transmit_at(&[desc(at, f.len() as u32, 0, 0)], 0);
    assert_eq!(used, [(0, 0)]);
    assert_eq!(rig.fake().sent, std::slice::from_ref(&f));

    let segments = [Segment {
        addr: GuestAddress(at),
        len: f.len() as u32,
    }];
    let tx = TxFrame::new(&mem, &segments, f.len());
    let lens: Vec<_> = tx.slices().map(|s| s.unwrap().len()).collect();
    assert_eq!(lens, [50, f.len() - 50]);
}

#[test]
fn copy_to_a_short_buffer_stops_at_its_end() {
    let mem = guest_memory();
    let f = frame(100, 5);
    mem.write_slice(&f, GuestAddress(TX_BUF)).unwrap();
    let segments = [
        Segment {
            addr: GuestAddress(TX_BUF),
            len: 60,
        },
        Segment {
            addr: GuestAddress(TX_BUF + 60),
            len: f.len() as u32 - 60,
        },
    ];
    let tx = TxFrame::new(&mem, &segments, f.len());
    assert!(!tx.is_empty());
    let mut short = [0u8; 80];
    assert_eq!(tx.copy_to(&mut short).unwrap(), 80);
    assert_eq!(&short[..], &f[..80]);
}
