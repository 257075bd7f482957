//! virtio-devices: the virtio-mmio transport and the devices behind it,
//! written against small traits so they are tested on plain guest memory.
//!
//! Owns the [`VirtioDevice`] trait, the [`VirtioInterrupt`] line back to the
//! guest, the [`MmioTransport`] register window (virtio 1.2 §4.2), shared
//! split-virtqueue handling (§2.7) and the devices: [`Net`] (§5.1, over a
//! host tap interface through [`Tap`]), [`Block`] (§5.2, over a file or
//! host block device through [`FileBackend`]) and [`Console`] (§5.3).
//! It never depends on KVM (`kvm-ioctls`, `kvm-bindings`), `seccomp` or
//! `vmm`: notifications arrive as eventfds and interrupts leave through a
//! trait, so `vmm` does the wiring.
//!
//! # How the vmm wires a device
//!
//! 1. Create the line: `let irq = Arc::new(IrqfdInterrupt::new()?)` and
//!    register `irq.eventfd()` as a KVM irqfd on the device's GSI.
//! 2. Build the device and its window:
//!    `MmioTransport::new(Console::new(stdout), mem.clone(), irq)?`, wrap it
//!    in a `Mutex` and put it on the MMIO bus at its 4 KiB window
//!    ([`MMIO_WINDOW_SIZE`]); the bus forwards `read`/`write` with offsets
//!    inside the window.
//! 3. For each queue `i`, register `transport.queue_events()[i]` as a KVM
//!    ioeventfd at window base + [`QUEUE_NOTIFY_OFFSET`], 4 bytes,
//!    datamatch `i`, and add it to the event loop's epoll set.
//! 4. When queue `i`'s eventfd is readable, read it (to clear it), lock the
//!    transport and call `transport.process_queue(i)`. Devices never start
//!    threads; all queue work happens in that call (or in device-specific
//!    calls such as [`Console::push_input`] and [`Net::process_rx`]).
//!
//! ```
//! use std::sync::Arc;
//! use virtio_devices::{Console, IrqfdInterrupt, MmioTransport, QUEUE_NOTIFY_OFFSET};
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//!
//! let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
//! let irq = Arc::new(IrqfdInterrupt::new().unwrap());
//! // vmm: KVM_IRQFD(irq.eventfd(), gsi)
//! let mut transport =
//!     MmioTransport::new(Console::new(std::io::sink()), mem, irq.clone()).unwrap();
//! for (i, event) in transport.queue_events().iter().enumerate() {
//!     // vmm: KVM_IOEVENTFD(event, base + QUEUE_NOTIFY_OFFSET, 4 bytes, datamatch i),
//!     // and add `event` to the event loop's epoll set.
//!     let _ = (i, event, QUEUE_NOTIFY_OFFSET);
//! }
//! // Event loop: queue 1's eventfd is readable.
//! let _ = transport.queue_events()[1].read();
//! transport.process_queue(1).unwrap();
//! // Event loop: stdin is readable.
//! let taken = transport.device_mut().push_input(b"ls\n").unwrap();
//! assert_eq!(taken, 3);
//! ```
//!
//! Guest misbehaviour never surfaces as an error: a bad descriptor chain is
//! returned with used length 0, a broken queue sets DEVICE_NEEDS_RESET. The
//! errors returned ([`DeviceError`], [`TransportError`]) are host failures.
//!
//! # Limits
//!
//! - Interrupts are edge-style: every trigger writes the irqfd once, and
//!   InterruptStatus keeps the reasons until the driver acks them. A vmm
//!   that models the pin as level-triggered should re-assert while
//!   [`VirtioInterrupt::status`] is non-zero (e.g. from a resample eventfd).
//! - Used-buffer notifications are suppressed through `used_event`
//!   (VIRTIO_F_EVENT_IDX) only; VRING_AVAIL_F_NO_INTERRUPT is a hint the
//!   device may ignore (§2.7.7) and does.
//! - Not offered: packed rings, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_RESET
//!   (QueueReset reads 0), shared memory regions (SHMLen reads -1), and the
//!   console's SIZE, MULTIPORT and EMERG_WRITE features.
//! - Queue work runs on the caller's thread: a console sink that blocks
//!   (a full pipe) blocks the vmm's event loop, and so does every block
//!   request (synchronous pread/pwrite/fdatasync; no io_uring yet).
//! - Block: not offered are GEOMETRY, CONFIG_WCE, MQ, LIFETIME,
//!   SECURE_ERASE and ZONED; requests must put header, data and status in
//!   separate descriptors (see [`block`]); the capacity is read once, at
//!   construction; an O_DIRECT backing gets no bounce buffer, so guest
//!   buffers that break its alignment fail with IOERR.
//! - Net: one queue pair; no control queue (so no CTRL_RX filtering, VLAN
//!   filtering, GUEST_ANNOUNCE or MQ), no MTU, UFO/USO, ECN, RSS or hash
//!   reports; the link always reads up. The vmm must also poll the
//!   backend's descriptor, edge-triggered, and call [`Net::process_rx`]
//!   (see [`net`]). Received frames are copied once (tap → device buffer
//!   → guest); transmitted frames are written straight from guest memory.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod block;
pub mod console;
mod device;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod interrupt;
pub mod mmio;
pub mod net;
#[cfg(test)]
mod testing;
mod virtqueue;

pub use block::{Access, Block, BlockBackend, BlockGeometry, BlockOptions, FileBackend};
pub use console::Console;
pub use device::{
    read_config_bytes, ActivateError, DeviceError, VirtioDevice, DEVICE_TYPE_BLOCK,
    DEVICE_TYPE_CONSOLE, DEVICE_TYPE_NET, FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC,
    FEATURE_VERSION_1,
};
pub use interrupt::{CountingInterrupt, InterruptType, IrqfdInterrupt, VirtioInterrupt};
pub use mmio::{MmioTransport, TransportError, MMIO_WINDOW_SIZE, QUEUE_NOTIFY_OFFSET};
pub use net::{MacAddr, Net, NetBackend, NetOptions, Tap};

#[cfg(test)]
mod tests {
    /// The vmm keeps transports in `Arc<Mutex<dyn BusDevice>>` (which needs
    /// `Send`) and interrupts in `Arc`s shared across threads.
    #[test]
    fn transports_and_interrupts_can_cross_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<crate::MmioTransport<crate::Console<std::io::Stdout>>>();
        send::<crate::MmioTransport<crate::Block<crate::FileBackend>>>();
        send::<crate::MmioTransport<crate::Net<crate::Tap>>>();
        send::<crate::MmioTransport<Box<dyn crate::VirtioDevice>>>();
        send_sync::<crate::IrqfdInterrupt>();
    }
}
