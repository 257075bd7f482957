//! Receive tests (virtio 1.2 §5.1.6.3–§5.1.6.4): frames land in one
//! chain (num_buffers 1) or, with VIRTIO_NET_F_MRG_RXBUF, in as many
//! chains as they need, published together with num_buffers set; without
//! receive buffers frames stay in the backend; notifications follow
//! used_event; oversized and short frames are dropped.

use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;

use super::testing::*;
use super::*;
use crate::device::{DeviceError, VirtioDevice};
use crate::interrupt::InterruptType;
use crate::testing::{desc, guest_memory, NEXT, WRITE};

/// The bytes of receive buffer `i`, as the used ring says it was filled.
fn received(rig: &Rig<'_>, i: u16, len: u32) -> Vec<u8> {
    rig.get(rx_addr(i), len as usize)
}

/// `f` as the guest must see it: num_buffers set to `n`.
fn with_num_buffers(f: &[u8], n: u16) -> Vec<u8> {
    let mut f = f.to_vec();
    f[10..12].copy_from_slice(&n.to_le_bytes());
    f
}

#[test]
fn a_frame_fills_one_buffer_with_num_buffers_1_without_mrg_rxbuf() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, NO_MRG);
    rig.post_rx(0, 2, 2048);
    let f = frame(500, 3);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used(), [(0, f.len() as u32)]);
    assert_eq!(received(&rig, 0, f.len() as u32), with_num_buffers(&f, 1));
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 1);
    let stats = rig.net.stats();
    assert_eq!((stats.rx_frames, stats.rx_bytes), (1, 500));
}

#[test]
fn a_frame_fills_a_chain_of_several_descriptors_without_mrg_rxbuf() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, NO_MRG);
    // Header alone, then two data buffers ("big packets").
    let descs = [
        desc(rx_addr(0), HEADER_LEN as u32, WRITE | NEXT, 1),
        desc(rx_addr(1), 1000, WRITE | NEXT, 2),
        desc(rx_addr(2), 4000, WRITE, 0),
    ];
    rig.rxq.add_chains(&descs, 0);
    let f = frame(3000, 8);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used(), [(0, f.len() as u32)]);
    let expected = with_num_buffers(&f, 1);
    assert_eq!(rig.get(rx_addr(0), HEADER_LEN), &expected[..HEADER_LEN]);
    assert_eq!(rig.get(rx_addr(1), 1000), &expected[HEADER_LEN..1012]);
    assert_eq!(rig.get(rx_addr(2), 2000), &expected[1012..]);
}

#[test]
fn a_frame_larger_than_the_chain_is_dropped_and_the_chain_kept_without_mrg_rxbuf() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, NO_MRG);
    rig.post_rx(0, 1, 1526);
    rig.incoming(frame(9000, 0));
    let small = frame(100, 1);
    rig.incoming(small.clone());
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used(), [(0, small.len() as u32)]);
    assert_eq!(
        received(&rig, 0, small.len() as u32),
        with_num_buffers(&small, 1)
    );
    let stats = rig.net.stats();
    assert_eq!((stats.rx_frames, stats.rx_dropped), (1, 1));
}

#[test]
fn a_frame_spreads_over_mergeable_buffers_published_together() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 4, 1536);
    let f = frame(4000, 2);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    let total = f.len() as u32;
    assert_eq!(rig.rxq.used(), [(0, 1536), (1, 1536), (2, total - 3072)]);
    let mut got = received(&rig, 0, 1536);
    got.extend(received(&rig, 1, 1536));
    got.extend(received(&rig, 2, total - 3072));
    assert_eq!(got, with_num_buffers(&f, 3));
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 1);
}

#[test]
fn a_small_frame_takes_one_mergeable_buffer_with_num_buffers_1() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 2, 1536);
    let f = frame(60, 4);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used(), [(0, f.len() as u32)]);
    assert_eq!(num_buffers(&received(&rig, 0, 12)), 1);
}

#[test]
fn the_largest_frame_fits_mergeable_page_buffers() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, SIZE, 0x1_0000);
    let f = frame(MAX_FRAME_LEN as usize - HEADER_LEN, 6);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    let used = rig.rxq.used();
    assert_eq!(used, [(0, 0x1_0000), (1, f.len() as u32 - 0x1_0000)]);
    let mut got = received(&rig, 0, 0x1_0000);
    got.extend(received(&rig, 1, used[1].1));
    assert_eq!(got, with_num_buffers(&f, 2));
}

#[test]
fn without_receive_buffers_the_frame_stays_in_the_backend() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let f = frame(100, 0);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    assert_eq!(rig.fake().recv_calls, 0);
    assert_eq!(rig.fake().incoming.len(), 1);
    assert!(rig.rxq.used().is_empty());
    // The driver was asked to notify once it posts a buffer.
    assert_eq!(rig.rxq.avail_event(), 0);

    rig.post_rx(0, 1, 1536);
    rig.net.process_queue(RX_QUEUE).unwrap();
    assert_eq!(rig.rxq.used(), [(0, f.len() as u32)]);
    assert!(rig.fake().incoming.is_empty());
}

#[test]
fn a_mergeable_frame_waits_in_its_buffers_until_enough_are_posted() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 1, 1000);
    let f = frame(2500, 1);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    assert!(
        rig.rxq.used().is_empty(),
        "nothing until the frame is whole"
    );
    assert_eq!(rig.rxq.avail_event(), 1);

    rig.post_rx(1, 2, 1000);
    rig.net.process_queue(RX_QUEUE).unwrap();
    let total = f.len() as u32;
    assert_eq!(rig.rxq.used(), [(0, 1000), (1, 1000), (2, total - 2000)]);
    let mut got = received(&rig, 0, 1000);
    got.extend(received(&rig, 1, 1000));
    got.extend(received(&rig, 2, total - 2000));
    assert_eq!(got, with_num_buffers(&f, 3));
}

#[test]
fn several_frames_are_delivered_in_order_with_one_interrupt() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 4, 1536);
    let frames: Vec<_> = (0..3u8)
        .map(|i| frame(100 * usize::from(i + 1), i))
        .collect();
    for f in &frames {
        rig.incoming(f.clone());
    }
    rig.net.process_rx().unwrap();
    let used = rig.rxq.used();
    assert_eq!(used.len(), 3);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(used[i], (i as u32, f.len() as u32));
        assert_eq!(
            received(&rig, i as u16, f.len() as u32),
            with_num_buffers(f, 1)
        );
    }
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 1);
    assert_eq!(rig.fake().recv_calls, 4, "read until the backend is empty");
}

#[test]
fn reading_stops_when_the_buffers_run_out() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, NO_MRG);
    rig.post_rx(0, 2, 1536);
    for i in 0..5 {
        rig.incoming(frame(100, i));
    }
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used().len(), 2);
    assert_eq!(rig.fake().incoming.len(), 3);
}

#[test]
fn used_event_decides_the_receive_interrupt() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 4, 1536);
    // Interrupt once the second frame is in (used index passes 1).
    rig.rxq.set_used_event(1);
    rig.incoming(frame(10, 0));
    rig.net.process_rx().unwrap();
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 0);
    rig.incoming(frame(10, 1));
    rig.net.process_rx().unwrap();
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 1);
    rig.incoming(frame(10, 2));
    rig.net.process_rx().unwrap();
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 1);
}

#[test]
fn used_event_inside_a_multi_buffer_frame_interrupts() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 4, 1000);
    // The used index goes from 0 to 3 in one step: used_event 1 is passed.
    rig.rxq.set_used_event(1);
    rig.incoming(frame(2500, 0));
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used().len(), 3);
    assert_eq!(rig.irq.count(InterruptType::Queue(RX_QUEUE)), 1);
}

#[test]
fn a_frame_shorter_than_the_header_is_dropped() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 2, 1536);
    rig.incoming(vec![0; HEADER_LEN - 1]);
    let f = frame(20, 0);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used(), [(0, f.len() as u32)]);
    assert_eq!(rig.net.stats().rx_dropped, 1);
}

#[test]
fn a_frame_larger_than_the_whole_ring_is_dropped_and_the_buffers_returned_empty() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, SIZE, 64);
    rig.incoming(frame(2000, 0));
    rig.net.process_rx().unwrap();
    let used = rig.rxq.used();
    assert_eq!(used.len(), usize::from(SIZE));
    assert!(used.iter().all(|&(_, len)| len == 0));
    assert_eq!(rig.net.stats().rx_dropped, 1);
    assert!(!rig.net.needs_reset());
}

#[test]
fn a_backend_read_error_is_returned_and_receiving_resumes_after() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 2, 1536);
    rig.fake().fail_recv = true;
    let err = rig.net.process_rx().unwrap_err();
    assert!(matches!(err, DeviceError::Backend(_)));
    rig.fake().fail_recv = false;
    rig.incoming(frame(30, 0));
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used().len(), 1);
}

#[test]
fn a_frame_read_before_a_reset_is_delivered_whole_after_it() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.post_rx(0, 1, 1000);
    let f = frame(2500, 1);
    rig.incoming(f.clone());
    rig.net.process_rx().unwrap();
    rig.net.reset();
    rig.rxq.restart();
    rig.activate(ALL_FEATURES);
    rig.post_rx(0, 1, 4096);
    rig.net.process_rx().unwrap();
    assert_eq!(rig.rxq.used(), [(0, f.len() as u32)]);
    assert_eq!(received(&rig, 0, f.len() as u32), with_num_buffers(&f, 1));
}

#[test]
fn mergeable_is_what_the_driver_acked_not_what_was_offered() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES & !(1 << VIRTIO_NET_F_MRG_RXBUF));
    rig.post_rx(0, 2, 1000);
    rig.incoming(frame(1500, 0));
    rig.net.process_rx().unwrap();
    assert!(rig.rxq.used().is_empty(), "dropped, not merged");
    assert_eq!(rig.net.stats().rx_dropped, 1);
}
