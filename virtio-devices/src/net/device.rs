//! The network device: construction options (MAC address), feature bits,
//! configuration space, activation (offloads to the backend), reset, and
//! dispatch of queue notifications and backend readiness to `tx.rs` and
//! `rx.rs`.
//!
//! Implements virtio 1.2 §5.1.1–§5.1.5 (device ID 1, receiveq1 and
//! transmitq1, the feature bits, the configuration layout of §5.1.4 and
//! device initialization, §5.1.5: offloads follow the negotiated GUEST_*
//! features) and §2.1.2 (DEVICE_NEEDS_RESET) when the guest breaks a
//! queue.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use log::debug;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::backend::{HostErrorLog, NetBackend, Offloads, Segment};
use super::rx::{needs_notification, Layout, Receive, RxState};
use super::tx::Transmit;
use super::{QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use crate::device::{
    exact_queues, read_config_bytes, ActivateError, DeviceError, VirtioDevice, DEVICE_TYPE_NET,
    FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC, FEATURE_VERSION_1,
};
use crate::interrupt::{InterruptType, VirtioInterrupt};
use crate::virtqueue::{
    report_needs_reset, serve_queue, signal_if_used, FaultLog, QueueFault, ServeError,
};

// Configuration space offsets (§5.1.4, struct virtio_net_config).
pub(super) const CONFIG_MAC: usize = 0;
pub(super) const CONFIG_STATUS: usize = 6;
pub(super) const CONFIG_MAX_VIRTQUEUE_PAIRS: usize = 8;
/// Bytes of configuration space served (through max_virtqueue_pairs; mtu
/// and what follows belong to features not offered and read as 0).
pub(super) const CONFIG_LEN: usize = 10;

/// A MAC address that did not parse.
#[derive(Debug, thiserror::Error)]
#[error("MAC address {0:?} is not six hex bytes separated by colons")]
pub struct MacAddrError(String);

/// An Ethernet MAC address, written `52:54:00:12:34:56`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = MacAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacAddrError(s.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts
                .next()
                .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(MacAddr(bytes)),
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// How a [`Net`] presents itself, beyond what its backend decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// The guest's MAC address (VIRTIO_NET_F_MAC); without one the driver
    /// picks a random address.
    pub mac: Option<MacAddr>,
}

/// Frame counters, for a status line or a test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the backend.
    pub tx_frames: u64,
    /// Their bytes, virtio-net header excluded.
    pub tx_bytes: u64,
    /// Frames the backend refused.
    pub tx_dropped: u64,
    /// Transmit chains refused as malformed (used length 0, not sent).
    pub tx_malformed: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Their bytes, virtio-net header excluded.
    pub rx_bytes: u64,
    /// Frames from the backend dropped: shorter than a header, or larger
    /// than the guest's receive buffers.
    pub rx_dropped: u64,
    /// Receive chains refused as malformed (used length 0, nothing
    /// delivered in them).
    pub rx_malformed: u64,
}

/// Everything the device holds between DRIVER_OK and reset.
struct Active {
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    rx: Queue,
    tx: Queue,
}

/// A virtio network device over backend `B`.
///
/// Offers VIRTIO_NET_F_MAC (when a MAC is given), MRG_RXBUF, STATUS (the
/// link is always up), VIRTIO_F_RING_EVENT_IDX and
/// VIRTIO_F_RING_INDIRECT_DESC; CSUM, GUEST_CSUM, HOST_TSO4/6 and
/// GUEST_TSO4/6 when the backend supports offloads. Not offered: the
/// control queue and everything behind it (CTRL_*, MQ, GUEST_ANNOUNCE),
/// MTU, UFO, USO, ECN, RSS, hash reports, SPEED_DUPLEX.
pub struct Net<B: NetBackend> {
    backend: B,
    avail_features: u64,
    acked_features: u64,
    config: [u8; CONFIG_LEN],
    segments: Vec<Segment>,
    rx: RxState,
    active: Option<Active>,
    broken: bool,
    faults: FaultLog,
    errors: HostErrorLog,
    stats: NetStats,
}

impl<B: NetBackend> Net<B> {
    /// A network device over `backend`, whose offload support it reads
    /// once, here.
    pub fn new(backend: B, options: NetOptions) -> Self {
        let avail_features = features(options.mac.is_some(), backend.supports_offloads());
        Net {
            backend,
            avail_features,
            acked_features: 0,
            config: config_space(options.mac),
            segments: Vec::with_capacity(QUEUE_SIZE.into()),
            rx: RxState::new(),
            active: None,
            broken: false,
            faults: FaultLog::default(),
            errors: HostErrorLog::default(),
            stats: NetStats::default(),
        }
    }

    /// The backend: its descriptor (`as_raw_fd()`) is what the vmm polls
    /// to call [`process_rx`](Net::process_rx).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Frame counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Move frames from the backend into the guest's receive buffers: call
    /// when the backend's descriptor is readable (and, through
    /// `process_queue(0)`, when the guest posts receive buffers). Reads
    /// until the backend has no frame or the guest no buffer; a no-op
    /// until the device is active. Backend read errors are returned.
    pub fn process_rx(&mut self) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut().filter(|_| !self.broken) else {
            return Ok(());
        };
        if !active.rx.ready() {
            return Ok(());
        }
        let layout = match self.acked_features & bit(VIRTIO_NET_F_MRG_RXBUF) {
            0 => Layout::Single,
            _ => Layout::Mergeable,
        };
        let mut receive = Receive {
            backend: &mut self.backend,
            state: &mut self.rx,
            queue: &mut active.rx,
            mem: &active.mem,
            layout,
            faults: &mut self.faults,
            stats: &mut self.stats,
            published: false,
        };
        let ran = receive.run();
        let signal = match receive.published {
            true => Self::signal_rx(active, &mut self.rx),
            false => Ok(()),
        };
        // A guest fault wins: the device stops until reset.
        match (ran, signal) {
            (Err(ServeError::Guest(fault)), _) | (_, Err(ServeError::Guest(fault))) => {
                self.fail(fault)
            }
            (Err(ServeError::Host(e)), _) | (_, Err(ServeError::Host(e))) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    fn signal_rx(active: &mut Active, rx: &mut RxState) -> Result<(), ServeError> {
        if needs_notification(&active.rx, &active.mem, rx)? {
            active
                .interrupt
                .trigger(InterruptType::Queue(RX_QUEUE))
                .map_err(|e| ServeError::Host(DeviceError::Interrupt(e)))?;
        }
        Ok(())
    }

    fn process_tx(&mut self) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut().filter(|_| !self.broken) else {
            return Ok(());
        };
        if !active.tx.ready() {
            return Ok(());
        }
        let mut handler = Transmit {
            backend: &mut self.backend,
            segments: &mut self.segments,
            max_descriptors: active.tx.size(),
            faults: &mut self.faults,
            errors: &mut self.errors,
            stats: &mut self.stats,
        };
        let result = serve_queue(&mut active.tx, &active.mem, &mut handler)
            .map_err(ServeError::from)
            .and_then(|used| {
                signal_if_used(
                    used,
                    &mut active.tx,
                    &active.mem,
                    &*active.interrupt,
                    TX_QUEUE,
                )
            });
        ServeError::settle(result, |fault| self.fail(fault))
    }

    fn fail(&mut self, fault: QueueFault) -> Result<(), DeviceError> {
        self.broken = true;
        let interrupt = self.active.as_ref().map(|a| &*a.interrupt);
        report_needs_reset(&mut self.faults, "virtio-net", fault, interrupt)
    }

    /// The offloads the acked features ask of the backend (each GUEST_TSO
    /// and GUEST_UFO only with GUEST_CSUM, §5.1.3.1).
    fn offloads(&self) -> Offloads {
        let acked = |b: u32| self.acked_features & bit(b) != 0;
        let csum = acked(VIRTIO_NET_F_GUEST_CSUM);
        Offloads {
            csum,
            tso4: csum && acked(VIRTIO_NET_F_GUEST_TSO4),
            tso6: csum && acked(VIRTIO_NET_F_GUEST_TSO6),
            ufo: csum && acked(VIRTIO_NET_F_GUEST_UFO),
        }
    }
}

/// Feature bit `b` as a mask.
fn bit(b: u32) -> u64 {
    1 << b
}

/// The feature bits offered.
fn features(mac: bool, offloads: bool) -> u64 {
    let mut features = FEATURE_VERSION_1
        | FEATURE_EVENT_IDX
        | FEATURE_INDIRECT_DESC
        | bit(VIRTIO_NET_F_MRG_RXBUF)
        | bit(VIRTIO_NET_F_STATUS);
    if mac {
        features |= bit(VIRTIO_NET_F_MAC);
    }
    if offloads {
        features |= [
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
        ]
        .iter()
        .fold(0, |f, &b| f | bit(b));
    }
    features
}

/// The configuration space (§5.1.4): mac (zero without one), status (link
/// up), max_virtqueue_pairs (1).
fn config_space(mac: Option<MacAddr>) -> [u8; CONFIG_LEN] {
    let mut config = [0u8; CONFIG_LEN];
    config[CONFIG_MAC..CONFIG_MAC + 6].copy_from_slice(&mac.unwrap_or_default().0);
    config[CONFIG_STATUS..CONFIG_STATUS + 2]
        .copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
    config[CONFIG_MAX_VIRTQUEUE_PAIRS..CONFIG_MAX_VIRTQUEUE_PAIRS + 2]
        .copy_from_slice(&1u16.to_le_bytes());
    config
}

impl<B: NetBackend> VirtioDevice for Net<B> {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.avail_features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        let [rx, tx] = exact_queues::<2>(queues)?;
        self.backend
            .set_offloads(self.offloads())
            .map_err(ActivateError::Host)?;
        self.rx.reset();
        self.broken = false;
        self.active = Some(Active {
            mem,
            interrupt,
            rx,
            tx,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.broken = false;
        self.acked_features = 0;
        self.rx.reset();
    }

    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        match index {
            RX_QUEUE => self.process_rx(),
            TX_QUEUE => self.process_tx(),
            _ => {
                debug!("virtio-net: notification for unknown queue {index}");
                Ok(())
            }
        }
    }

    fn needs_reset(&self) -> bool {
        self.broken
    }
}
