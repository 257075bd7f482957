//! The virtio network device: a receive and a transmit queue between the
//! guest and a [`NetBackend`] (a host tap interface through [`Tap`]).
//!
//! Implements virtio 1.2 §5.1 (Network Device): device ID 1, receiveq1 (0)
//! and transmitq1 (1) (§5.1.2), the feature bits of §5.1.3 listed on
//! [`Net`], the configuration layout of §5.1.4 (mac, status,
//! max_virtqueue_pairs) and packet transmission and reception with the
//! 12-byte `virtio_net_hdr_v1` (§5.1.6), mergeable receive buffers
//! included (§5.1.6.3). The pieces:
//!
//! - `tx.rs`: transmit chain → gather list, every check made before the
//!   backend sees it (pure: looks at descriptors only), and the transmit
//!   queue handler.
//! - `rx.rs`: frames from the backend into receive chains, one or several
//!   per frame, published to the used ring together.
//! - `backend.rs`: the [`NetBackend`] trait, [`TxFrame`] and [`Offloads`].
//! - `tap.rs`: [`Tap`], a Linux tap interface with a vnet header.
//! - `device.rs`: [`Net`]: features, configuration space, activation.
//!
//! # Data path
//!
//! Transmit: each chain (header and frame, device-readable only) goes to
//! the backend as one gather list over guest memory; the tap writes it with
//! one writev, without a copy. Receive: the backend reads one frame into a
//! buffer the device owns (allocated once), and the device copies it into
//! as many receive chains as it needs. Nothing is allocated per frame.
//!
//! # Wiring (the vmm)
//!
//! Besides the queue eventfds every device has, the vmm adds the backend's
//! descriptor ([`Net::backend`], then `as_raw_fd()`) to its epoll set,
//! edge-triggered (EPOLLIN | EPOLLET), and calls [`Net::process_rx`] when
//! it is readable. [`Net::process_rx`] reads frames until the backend has
//! none or the guest has no receive buffer left; in the latter case the
//! frames wait in the tap until the guest posts buffers and notifies the
//! receive queue, whose `process_queue(0)` calls [`Net::process_rx`] again.
//! A level-triggered registration would wake the loop continuously while
//! the guest has no buffers.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::os::fd::AsRawFd;
//! use std::sync::Arc;
//! use virtio_devices::net::{MacAddr, Net, NetOptions, Tap};
//! use virtio_devices::{IrqfdInterrupt, MmioTransport};
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! # let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)])?;
//!
//! // Creates tap0 (CAP_NET_ADMIN) or attaches to an existing tap0.
//! let tap = Tap::open("tap0")?;
//! let options = NetOptions {
//!     mac: Some("52:54:00:12:34:56".parse::<MacAddr>()?),
//! };
//! let irq = Arc::new(IrqfdInterrupt::new()?);
//! let mut transport = MmioTransport::new(Net::new(tap, options), mem, irq)?;
//! let tap_fd = transport.device().backend().as_raw_fd();
//! // vmm: epoll_ctl(ADD, tap_fd, EPOLLIN | EPOLLET); queue eventfds as usual.
//! # let _ = tap_fd;
//! // Event loop: the tap is readable.
//! transport.device_mut().process_rx()?;
//! // Event loop: queue 0 (rx) or 1 (tx) was notified.
//! transport.process_queue(0)?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod device;
mod rx;
mod tap;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_malformed;
#[cfg(test)]
mod tests_rx;
#[cfg(test)]
mod tests_tap;
#[cfg(test)]
mod tests_transport;
#[cfg(test)]
mod tests_tx;
mod tx;

pub use backend::{NetBackend, Offloads, TxFrame};
pub use device::{MacAddr, MacAddrError, Net, NetOptions, NetStats};
pub use tap::{Tap, TapError};

/// receiveq1: host → guest (§5.1.2).
pub const RX_QUEUE: u16 = 0;
/// transmitq1: guest → host (§5.1.2).
pub const TX_QUEUE: u16 = 1;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes in `struct virtio_net_hdr_v1` (§5.1.6: flags, gso_type, hdr_len,
/// gso_size, csum_start, csum_offset, num_buffers), which starts every
/// frame in both directions once VIRTIO_F_VERSION_1 is negotiated.
pub const HEADER_LEN: usize = 12;
/// Largest transmit chain accepted, header included: a 64 KiB GSO frame,
/// its Ethernet header and the virtio-net header (65536 + 14 + 12).
pub const MAX_FRAME_LEN: u32 = 65562;
/// Size of the receive buffer a frame is read into, header included: the
/// largest frame plus room for a VLAN tag the tap may insert.
pub const RX_BUFFER_LEN: usize = MAX_FRAME_LEN as usize + 4;
/// Smallest transmit chain accepted: the header and an Ethernet header.
pub const MIN_TX_FRAME_LEN: u32 = HEADER_LEN as u32 + 14;
