//! The network device behind the MMIO transport, driven only through
//! register accesses and guest memory the way the Linux driver and the
//! vmm's event loop would (virtio 1.2 §4.2.3 initialization, §5.1.5 device
//! initialization, §5.1.6 operation): feature negotiation reaches the
//! device and its backend, and frames cross in both directions.

use std::sync::Arc;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MRG_RXBUF};
use vm_memory::GuestMemoryMmap;

use super::testing::*;
use super::*;
use crate::interrupt::CountingInterrupt;
use crate::testing::{desc, guest_memory, DriverQueue, WRITE};
use crate::{MmioTransport, FEATURE_VERSION_1};

type NetTransport = MmioTransport<Net<Fake>>;

const RX_BASE: u64 = 0x1_0000;
const TX_BASE: u64 = 0x2_0000;

fn r32(t: &NetTransport, offset: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset.into(), &mut b);
    u32::from_le_bytes(b)
}

fn w32(t: &mut NetTransport, offset: u32, value: u32) {
    t.write(offset.into(), &value.to_le_bytes());
}

fn w64(t: &mut NetTransport, low: u32, value: u64) {
    w32(t, low, value as u32);
    w32(t, low + 4, (value >> 32) as u32);
}

/// What the event loop does when queue eventfds are readable.
fn serve_notifications(t: &mut NetTransport) {
    for index in [RX_QUEUE, TX_QUEUE] {
        if t.queue_events()[usize::from(index)].read().is_ok() {
            t.process_queue(index).unwrap();
        }
    }
}

/// Negotiate `wanted` of what is offered, set up both queues, DRIVER_OK.
fn bring_up(t: &mut NetTransport, wanted: u64) {
    let status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    w32(t, VIRTIO_MMIO_STATUS, status);
    let mut offered = 0u64;
    for sel in [1u32, 0] {
        w32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
        offered |= u64::from(r32(t, VIRTIO_MMIO_DEVICE_FEATURES)) << (32 * sel);
    }
    let accepted = offered & (wanted | FEATURE_VERSION_1);
    for sel in [0u32, 1] {
        w32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
        w32(
            t,
            VIRTIO_MMIO_DRIVER_FEATURES,
            (accepted >> (32 * sel)) as u32,
        );
    }
    let status = status | VIRTIO_CONFIG_S_FEATURES_OK;
    w32(t, VIRTIO_MMIO_STATUS, status);
    assert_eq!(r32(t, VIRTIO_MMIO_STATUS), status);
    for (index, base) in [(0, RX_BASE), (1, TX_BASE)] {
        w32(t, VIRTIO_MMIO_QUEUE_SEL, index);
        w32(t, VIRTIO_MMIO_QUEUE_NUM, u32::from(SIZE));
        w64(t, VIRTIO_MMIO_QUEUE_DESC_LOW, base);
        w64(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, base + 0x1000);
        w64(t, VIRTIO_MMIO_QUEUE_USED_LOW, base + 0x2000);
        w32(t, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    w32(t, VIRTIO_MMIO_STATUS, status | VIRTIO_CONFIG_S_DRIVER_OK);
    assert!(t.is_active());
    serve_notifications(t);
}

fn transport(mem: &GuestMemoryMmap) -> NetTransport {
    let net = Net::new(Fake::new(), NetOptions { mac: Some(MAC) });
    let irq = Arc::new(CountingInterrupt::new());
    MmioTransport::new(net, mem.clone(), irq).unwrap()
}

#[test]
fn a_driver_brings_the_device_up_and_frames_cross_both_ways() {
    let mem = guest_memory();
    let mut t = transport(&mem);
    let rxq = DriverQueue::new(&mem, RX_BASE, SIZE);
    let txq = DriverQueue::new(&mem, TX_BASE, SIZE);
    let wanted = 1 << VIRTIO_NET_F_MRG_RXBUF | 1 << VIRTIO_NET_F_GUEST_CSUM;
    bring_up(&mut t, wanted);
    let csum = Offloads {
        csum: true,
        ..Offloads::default()
    };
    assert_eq!(t.device().backend().offloads, [csum]);

    let out = frame(300, 1);
    mem_put(&mem, TX_BUF, &out);
    txq.add_chains(&[desc(TX_BUF, out.len() as u32, 0, 0)], 0);
    w32(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, TX_QUEUE.into());
    serve_notifications(&mut t);
    assert_eq!(t.device().backend().sent, [out]);
    assert_eq!(r32(&t, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
    w32(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, 1);

    // A frame arrives before the guest posts buffers: it waits.
    t.device_mut()
        .backend_mut()
        .incoming
        .push_back(frame(2000, 2));
    t.device_mut().process_rx().unwrap();
    assert!(rxq.used().is_empty());
    let descs: Vec<_> = (0..2).map(|i| desc(rx_addr(i), 1536, WRITE, 0)).collect();
    rxq.add_chains(&descs, 0);
    w32(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, RX_QUEUE.into());
    serve_notifications(&mut t);
    assert_eq!(rxq.used(), [(0, 1536), (1, 2012 - 1536)]);
    assert_eq!(r32(&t, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
}

#[test]
fn the_transport_config_window_shows_the_mac() {
    let mem = guest_memory();
    let t = transport(&mem);
    let mut mac = [0u8; 6];
    t.read(u64::from(VIRTIO_MMIO_CONFIG), &mut mac);
    assert_eq!(mac, MAC.0);
}

fn mem_put(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8]) {
    use vm_memory::{Bytes, GuestAddress};
    mem.write_slice(bytes, GuestAddress(addr)).unwrap();
}
