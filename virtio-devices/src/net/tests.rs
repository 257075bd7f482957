//! Network device tests on real guest memory (fixtures in `testing.rs`):
//! identity, feature bits, configuration space, offloads following the
//! negotiated features, activation and reset (virtio 1.2 §5.1.1–§5.1.5).
//! Transmission is in `tests_tx.rs`, reception in `tests_rx.rs`,
//! malformed chains in `tests_malformed.rs`, the tap in `tests_tap.rs`.

use std::sync::Arc;

use virtio_bindings::virtio_net::*;

use super::device::*;
use super::testing::*;
use super::*;
use crate::device::{
    ActivateError, VirtioDevice, FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC, FEATURE_VERSION_1,
};
use crate::interrupt::CountingInterrupt;
use crate::testing::guest_memory;
use crate::MmioTransport;

fn bit(b: u32) -> u64 {
    1 << b
}

const OFFLOAD_BITS: [u32; 6] = [
    VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6,
];

fn offload_mask() -> u64 {
    OFFLOAD_BITS.iter().fold(0, |f, &b| f | bit(b))
}

#[test]
fn identifies_as_a_network_device_with_two_queues() {
    let net = Net::new(Fake::new(), NetOptions::default());
    assert_eq!(net.device_type(), 1);
    assert_eq!(net.queue_max_sizes(), &[256, 256]);
}

#[test]
fn offers_offloads_mac_and_ring_features_with_a_capable_backend() {
    let net = Net::new(Fake::new(), NetOptions { mac: Some(MAC) });
    let expected = [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_STATUS,
    ]
    .iter()
    .fold(
        FEATURE_VERSION_1 | FEATURE_EVENT_IDX | FEATURE_INDIRECT_DESC | offload_mask(),
        |f, &b| f | bit(b),
    );
    assert_eq!(net.avail_features(), expected);
}

#[test]
fn offers_no_offload_when_the_backend_has_none() {
    let fake = Fake {
        offload_support: false,
        ..Fake::new()
    };
    let net = Net::new(fake, NetOptions { mac: Some(MAC) });
    assert_eq!(net.avail_features() & offload_mask(), 0);
    assert_ne!(net.avail_features() & bit(VIRTIO_NET_F_MRG_RXBUF), 0);
}

#[test]
fn offers_mac_only_when_one_is_given() {
    let net = Net::new(Fake::new(), NetOptions::default());
    assert_eq!(net.avail_features() & bit(VIRTIO_NET_F_MAC), 0);
    let mut mac = [0xffu8; 6];
    net.read_config(0, &mut mac);
    assert_eq!(mac, [0; 6]);
}

#[test]
fn config_fields_sit_at_the_spec_offsets() {
    use std::mem::offset_of;
    type C = virtio_net_config;
    assert_eq!(CONFIG_MAC, offset_of!(C, mac));
    assert_eq!(CONFIG_STATUS, offset_of!(C, status));
    assert_eq!(
        CONFIG_MAX_VIRTQUEUE_PAIRS,
        offset_of!(C, max_virtqueue_pairs)
    );
    assert_eq!(CONFIG_LEN, offset_of!(C, mtu));
}

#[test]
fn config_space_reads_mac_link_up_and_one_queue_pair() {
    let net = Net::new(Fake::new(), NetOptions { mac: Some(MAC) });
    let mut c = [0xffu8; 16];
    net.read_config(0, &mut c);
    assert_eq!(&c[..6], &MAC.0);
    assert_eq!(
        u16::from_le_bytes([c[6], c[7]]),
        VIRTIO_NET_S_LINK_UP as u16
    );
    assert_eq!(u16::from_le_bytes([c[8], c[9]]), 1);
    assert_eq!(&c[10..], &[0; 6], "mtu and beyond read 0");
    let mut status = [0u8; 2];
    net.read_config(6, &mut status);
    assert_eq!(status, [1, 0]);
    let mut tail = [0xffu8; 4];
    net.read_config(4, &mut tail);
    assert_eq!(tail, [0x34, 0x56, 1, 0]);
}

#[test]
fn config_writes_change_nothing() {
    let mut net = Net::new(Fake::new(), NetOptions { mac: Some(MAC) });
    net.write_config(0, &[0; 10]);
    let mut c = [0u8; 10];
    net.read_config(0, &mut c);
    assert_eq!(&c[..6], &MAC.0);
    assert_eq!(c[6], 1);
}

#[test]
fn the_device_id_register_reads_1_behind_the_transport() {
    let mem = guest_memory();
    let irq = Arc::new(CountingInterrupt::new());
    let transport = MmioTransport::new(Net::new(Fake::new(), NetOptions::default()), mem, irq);
    let transport = transport.unwrap();
    let mut id = [0u8; 4];
    transport.read(0x8, &mut id);
    assert_eq!(u32::from_le_bytes(id), 1);
    let mut status = [0u8; 2];
    transport.read(0x100 + 6, &mut status);
    assert_eq!(status, [1, 0], "config space at 0x100");
}

#[test]
fn activation_turns_on_the_offloads_the_guest_accepted() {
    let mem = guest_memory();
    let features = bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    let mut rig = Rig::new(&mem, features);
    let expected = Offloads {
        csum: true,
        tso4: true,
        ..Offloads::default()
    };
    assert_eq!(rig.fake().offloads, [expected]);
}

#[test]
fn every_guest_offload_reaches_the_backend_with_all_features() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    let expected = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
        ufo: false,
    };
    assert_eq!(rig.fake().offloads, [expected]);
}

#[test]
fn segmentation_without_guest_csum_turns_on_nothing() {
    let mem = guest_memory();
    let features = bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6);
    let mut rig = Rig::new(&mem, features);
    assert_eq!(rig.fake().offloads, [Offloads::default()]);
}

#[test]
fn host_offloads_alone_ask_nothing_of_the_backend() {
    let mem = guest_memory();
    let features =
        bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6);
    let mut rig = Rig::new(&mem, features);
    assert_eq!(rig.fake().offloads, [Offloads::default()]);
}

#[test]
fn reset_forgets_the_negotiated_offloads() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, ALL_FEATURES);
    rig.net.reset();
    rig.activate(0);
    assert_eq!(rig.fake().offloads[1], Offloads::default());
}

#[test]
fn a_backend_refusing_offloads_fails_activation() {
    let mem = guest_memory();
    let fake = Fake {
        fail_offloads: true,
        ..Fake::new()
    };
    let mut net = Net::new(fake, NetOptions::default());
    net.ack_features(net.avail_features());
    let rig_queues = |base| crate::testing::DriverQueue::new(&mem, base, SIZE).queue();
    let queues = vec![rig_queues(0x1_0000), rig_queues(0x2_0000)];
    let irq = Arc::new(CountingInterrupt::new());
    let err = net.activate(mem.clone(), irq, queues).unwrap_err();
    assert!(matches!(err, ActivateError::Host(_)));
}

#[test]
fn activation_wants_exactly_two_queues() {
    let mem = guest_memory();
    let mut net = Net::new(Fake::new(), NetOptions::default());
    let queue = crate::testing::DriverQueue::new(&mem, 0x1_0000, SIZE).queue();
    let irq = Arc::new(CountingInterrupt::new());
    let err = net.activate(mem.clone(), irq, vec![queue]).unwrap_err();
    assert!(matches!(
        err,
        ActivateError::QueueCount {
            expected: 2,
            got: 1
        }
    ));
}

#[test]
fn mac_addresses_parse_and_print_with_colons() {
    let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
    assert_eq!(mac, MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]));
    assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
    for bad in [
        "",
        "52:54:00:ab:cd",
        "52:54:00:ab:cd:0f:00",
        "52-54-00-ab-cd-0f",
        "5:254:00:ab:cd:0f",
        "52:54:00:ab:cd:0g",
        "+2:54:00:ab:cd:0f",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
    }
}

#[test]
fn nothing_moves_before_activation() {
    let mut net = Net::new(Fake::new(), NetOptions::default());
    net.backend_mut().incoming.push_back(frame(64, 0));
    net.process_rx().unwrap();
    net.process_queue(TX_QUEUE).unwrap();
    net.process_queue(7).unwrap();
    assert_eq!(net.backend().recv_calls, 0);
    assert_eq!(net.stats(), NetStats::default());
}
