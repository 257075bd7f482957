//! virtio-mmio devices on flint's MMIO bus: the bus adapter for the
//! `virtio-devices` transport and its KVM wiring — an irqfd on the device's
//! GSI, one ioeventfd per queue on QueueNotify (so a notify never runs
//! device code on a vCPU thread), and the event-loop sources that process
//! the queues — plus the routing of host input to the console the guest uses.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use guest_boot::layout::VirtioMmioSlot;
use kvm_ioctls::{IoEventAddress, VmFd};
use virtio_devices::block::BlockBackend;
use virtio_devices::{
    Block, Console, IrqfdInterrupt, MmioTransport, Net, NetBackend, VirtioDevice,
    QUEUE_NOTIFY_OFFSET,
};

use super::serial::SerialDevice;
use super::BusDevice;
use crate::event_loop::EventSource;

impl<D: VirtioDevice> BusDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        MmioTransport::read(self, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        MmioTransport::write(self, offset, data);
    }
}

/// Why a virtio device could not be wired to KVM.
#[derive(Debug, thiserror::Error)]
pub enum VirtioWiringError {
    /// KVM_IRQFD failed.
    #[error("KVM_IRQFD for the virtio device at {addr:#x} (IRQ {irq}) failed: {source}")]
    Irqfd {
        /// Window base.
        addr: u64,
        /// Its interrupt line.
        irq: u32,
        /// The cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM_IOEVENTFD failed.
    #[error("KVM_IOEVENTFD for queue {queue} of the virtio device at {addr:#x} failed: {source}")]
    Ioeventfd {
        /// Window base.
        addr: u64,
        /// Queue index.
        queue: usize,
        /// The cause.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// Wire `transport` (built with `irq`) at `slot`: irqfd, ioeventfds, and the
/// event sources that run its queues on the event-loop thread.
pub fn wire<D: VirtioDevice + 'static>(
    vm: &VmFd,
    slot: VirtioMmioSlot,
    irq: &IrqfdInterrupt,
    transport: Arc<Mutex<MmioTransport<D>>>,
) -> Result<Vec<EventSource>, VirtioWiringError> {
    vm.register_irqfd(irq.eventfd(), slot.irq)
        .map_err(|source| VirtioWiringError::Irqfd {
            addr: slot.addr,
            irq: slot.irq,
            source,
        })?;
    let notify = IoEventAddress::Mmio(slot.addr + QUEUE_NOTIFY_OFFSET);
    let guard = lock(&transport);
    let mut sources = Vec::with_capacity(guard.queue_events().len());
    for (queue, event) in guard.queue_events().iter().enumerate() {
        vm.register_ioevent(event, &notify, queue as u32)
            .map_err(|source| VirtioWiringError::Ioeventfd {
                addr: slot.addr,
                queue,
                source,
            })?;
        let device = transport.clone();
        sources.push(EventSource {
            fd: event.as_raw_fd(),
            edge_triggered: false,
            on_ready: Box::new(move || {
                let mut t = lock(&device);
                let _ = t.queue_events()[queue].read();
                if let Err(e) = t.process_queue(queue as u16) {
                    log::error!("virtio device at {:#x}, queue {queue}: {e}", slot.addr);
                }
            }),
        });
    }
    Ok(sources)
}

/// The event source for a virtio-net device's tap: edge-triggered, since
/// the device leaves frames in the tap while the guest has no buffers.
pub fn tap_source<B: NetBackend + 'static>(
    fd: std::os::fd::RawFd,
    transport: Arc<Mutex<MmioTransport<Net<B>>>>,
    slot: VirtioMmioSlot,
) -> EventSource {
    EventSource {
        fd,
        edge_triggered: true,
        on_ready: Box::new(move || {
            if let Err(e) = lock(&transport).device_mut().process_rx() {
                log::error!("virtio-net at {:#x}: {e}", slot.addr);
            }
        }),
    }
}

/// The event source for a virtio-blk device's io_uring completions (none
/// when the device runs synchronous I/O): the device returns finished
/// requests through the used ring on the event-loop thread.
pub fn completion_source<B: BlockBackend + 'static>(
    transport: Arc<Mutex<MmioTransport<Block<B>>>>,
    slot: VirtioMmioSlot,
) -> Option<EventSource> {
    let fd = lock(&transport).device().completion_fd()?;
    Some(EventSource {
        fd,
        edge_triggered: false,
        on_ready: Box::new(move || {
            if let Err(e) = lock(&transport).device_mut().process_completions() {
                log::error!("virtio-blk at {:#x}: {e}", slot.addr);
            }
        }),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a virtio console's output goes: straight to flint's stdout or stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostSink {
    /// flint's stdout (the console; a one-shot command's stdout).
    Stdout,
    /// flint's stderr (a one-shot command's stderr).
    Stderr,
}

impl Write for HostSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            HostSink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data)?;
                out.flush()?;
            }
            HostSink::Stderr => std::io::stderr().lock().write_all(data)?,
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            HostSink::Stdout => std::io::stdout().lock().flush(),
            HostSink::Stderr => Ok(()),
        }
    }
}

/// flint's virtio console behind its transport.
pub type VirtioConsole = Arc<Mutex<MmioTransport<Console<HostSink>>>>;

/// How host stdin is passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinFraming {
    /// Byte for byte; end of file is not signalled (a terminal or console).
    Raw,
    /// In length-prefixed frames ending with an empty one (a one-shot command's stdin,
    /// [`crate::oneshot::frame`]), read even from a file that cannot be polled.
    Frames,
}

/// Where host input goes: the virtio console once the guest has brought it
/// up (or when there is no UART), the UART otherwise — the guest picks by
/// using one. With no console at all, input is read and dropped.
pub struct InputRouter {
    /// The UART, if the VM has one.
    pub serial: Option<Arc<Mutex<SerialDevice>>>,
    /// The virtio console, if the VM has one.
    pub console: Option<VirtioConsole>,
    /// How stdin is passed on.
    pub framing: StdinFraming,
}

impl InputRouter {
    /// Offer `bytes`; returns how many were taken.
    pub fn feed(&self, bytes: &[u8]) -> usize {
        if let Some(console) = &self.console {
            let mut t = lock(console);
            if t.is_active() || self.serial.is_none() {
                // Before the driver is up, the console keeps up to 64 KiB.
                return t.device_mut().push_input(bytes).unwrap_or(0);
            }
        }
        match &self.serial {
            Some(serial) => lock(serial).enqueue_input(bytes),
            None => bytes.len(),
        }
    }
}
