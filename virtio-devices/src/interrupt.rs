//! Device-to-driver notifications: the [`VirtioInterrupt`] trait, the
//! irqfd-backed implementation the vmm wires to KVM, and a counting one for
//! tests.
//!
//! Implements the notification side of virtio 1.2 §2.3 (used-buffer and
//! configuration-change notifications) as the MMIO transport presents them
//! (§4.2.2: the InterruptStatus bits 0 "used buffer" and 1 "configuration
//! change", cleared through InterruptACK).

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

/// What a notification tells the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptType {
    /// The device put buffers in the used ring of this queue.
    Queue(u16),
    /// The device configuration space (or the device status) changed.
    Config,
}

impl InterruptType {
    /// The InterruptStatus bit this notification sets (§4.2.2).
    pub fn status_bit(self) -> u32 {
        match self {
            InterruptType::Queue(_) => VIRTIO_MMIO_INT_VRING,
            InterruptType::Config => VIRTIO_MMIO_INT_CONFIG,
        }
    }
}

/// The line from a device to the guest driver.
///
/// The transport reads [`status`](VirtioInterrupt::status) for the
/// InterruptStatus register and forwards InterruptACK writes to
/// [`ack`](VirtioInterrupt::ack); devices call
/// [`trigger`](VirtioInterrupt::trigger).
pub trait VirtioInterrupt: Send + Sync {
    /// Set the status bit for `kind` and notify the guest.
    fn trigger(&self, kind: InterruptType) -> io::Result<()>;
    /// The current InterruptStatus bits.
    fn status(&self) -> u32;
    /// Clear `bits` from InterruptStatus (the driver's InterruptACK write,
    /// or a device reset).
    fn ack(&self, bits: u32);
}

/// An interrupt delivered by writing an eventfd that the vmm registered as
/// a KVM irqfd on the device's GSI.
///
/// The eventfd is written on every trigger, so the line behaves as edge
/// triggered; InterruptStatus keeps the reasons until the driver acks them.
#[derive(Debug)]
pub struct IrqfdInterrupt {
    interrupt_status: AtomicU32,
    eventfd: EventFd,
}

impl IrqfdInterrupt {
    /// A new interrupt with a fresh non-blocking eventfd.
    pub fn new() -> io::Result<Self> {
        Ok(IrqfdInterrupt {
            interrupt_status: AtomicU32::new(0),
            eventfd: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
        })
    }

    /// The eventfd to register as a KVM irqfd.
    pub fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }
}

impl VirtioInterrupt for IrqfdInterrupt {
    fn trigger(&self, kind: InterruptType) -> io::Result<()> {
        self.interrupt_status
            .fetch_or(kind.status_bit(), Ordering::SeqCst);
        self.eventfd.write(1)
    }

    fn status(&self) -> u32 {
        self.interrupt_status.load(Ordering::SeqCst)
    }

    fn ack(&self, bits: u32) {
        self.interrupt_status.fetch_and(!bits, Ordering::SeqCst);
    }
}

/// An interrupt that records every trigger instead of signalling anyone:
/// for unit tests of devices and transports (here and in the vmm).
#[derive(Debug, Default)]
pub struct CountingInterrupt {
    interrupt_status: AtomicU32,
    triggers: Mutex<Vec<InterruptType>>,
}

impl CountingInterrupt {
    /// A new interrupt with no triggers recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times `kind` was triggered.
    pub fn count(&self, kind: InterruptType) -> usize {
        self.log().iter().filter(|&&k| k == kind).count()
    }

    /// Every trigger so far, oldest first.
    pub fn triggers(&self) -> Vec<InterruptType> {
        self.log().clone()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<InterruptType>> {
        self.triggers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl VirtioInterrupt for CountingInterrupt {
    fn trigger(&self, kind: InterruptType) -> io::Result<()> {
        self.interrupt_status
            .fetch_or(kind.status_bit(), Ordering::SeqCst);
        self.log().push(kind);
        Ok(())
    }

    fn status(&self) -> u32 {
        self.interrupt_status.load(Ordering::SeqCst)
    }

    fn ack(&self, bits: u32) {
        self.interrupt_status.fetch_and(!bits, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irqfd_trigger_sets_the_status_bit_and_writes_the_eventfd() {
        let irq = IrqfdInterrupt::new().unwrap();
        irq.trigger(InterruptType::Queue(1)).unwrap();
        irq.trigger(InterruptType::Config).unwrap();
        assert_eq!(irq.status(), 0b11);
        assert_eq!(irq.eventfd().read().unwrap(), 2);
    }

    #[test]
    fn ack_clears_only_the_acknowledged_bits() {
        let irq = IrqfdInterrupt::new().unwrap();
        irq.trigger(InterruptType::Queue(0)).unwrap();
        irq.trigger(InterruptType::Config).unwrap();
        irq.ack(VIRTIO_MMIO_INT_VRING);
        assert_eq!(irq.status(), VIRTIO_MMIO_INT_CONFIG);
    }

    #[test]
    fn counting_interrupt_records_each_kind() {
        let irq = CountingInterrupt::new();
        irq.trigger(InterruptType::Queue(1)).unwrap();
        irq.trigger(InterruptType::Queue(1)).unwrap();
        irq.trigger(InterruptType::Config).unwrap();
        assert_eq!(irq.count(InterruptType::Queue(1)), 2);
        assert_eq!(irq.count(InterruptType::Queue(0)), 0);
        assert_eq!(irq.count(InterruptType::Config), 1);
        assert_eq!(irq.status(), 0b11);
    }
}
