//! The 8250 UART at 0x3f8 (IRQ 4), from vm-superio, writing to stdout and
//! fed from stdin by the event loop. Its interrupt leaves through an eventfd
//! registered as a KVM irqfd, so raising it never enters the VMM's locks.

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Arc;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;
use crate::report::{BootTimeline, Phase};

/// Interrupt line of the UART: an eventfd that KVM turns into IRQ 4.
pub struct IrqEvent(pub EventFd);

impl Trigger for IrqEvent {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Where the guest's serial output goes: a byte buffer pushed to a file
/// descriptor at the end of each batch of writes.
pub struct SerialOut {
    fd: std::mem::ManuallyDrop<std::fs::File>,
    buf: Vec<u8>,
    timeline: Arc<BootTimeline>,
    at_line_start: bool,
}

impl SerialOut {
    /// Output to `fd` (not closed on drop), stamping the first byte in `timeline`.
    ///
    /// # Safety
    /// `fd` must stay open for the life of this value.
    pub unsafe fn new(fd: RawFd, timeline: Arc<BootTimeline>) -> Self {
        // SAFETY: the caller keeps `fd` open; ManuallyDrop keeps us from closing it.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        SerialOut {
            fd: std::mem::ManuallyDrop::new(file),
            buf: Vec::with_capacity(4096),
            timeline,
            at_line_start: true,
        }
    }
}

impl Write for SerialOut {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            self.timeline.mark(Phase::FirstSerialByte);
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 4096 {
            self.push()?;
        }
        Ok(data.len())
    }

    /// vm-superio flushes after every byte it writes, which would cost a write(2) per byte
    /// (1.2 ms for the probe's 1.2 KB report); the bus's end-of-batch flush pushes instead.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SerialOut {
    /// Write out what is buffered.
    pub fn push(&mut self) -> std::io::Result<()> {
        if let Some(&last) = self.buf.last() {
            self.at_line_start = last == b'\n';
        }
        let res = self.fd.write_all(&self.buf);
        self.buf.clear();
        res
    }
}

/// The UART as a bus device.
pub struct SerialDevice {
    uart: Serial<IrqEvent, vm_superio::serial::NoEvents, SerialOut>,
    /// Line control register as last written (bit 7: divisor latch access).
    lcr: u8,
    /// Turns write coalescing of the data register on and off.
    coalescing: Option<Box<dyn TxCoalescing>>,
}

/// Register offsets and bits this model watches.
const REG_DATA: u64 = 0;
const REG_IER: u64 = 1;
const REG_LCR: u64 = 3;
const LCR_DLAB: u8 = 0x80;
const IER_THR_EMPTY: u8 = 0x02;

/// Batches the guest's writes to the data register while the guest polls
/// instead of waiting for the transmit-empty interrupt (`kvm::coalesced`).
pub trait TxCoalescing: Send {
    /// Coalesce data-register writes (`true`) or let each one exit (`false`).
    fn set(&mut self, on: bool);
}

impl SerialDevice {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: EventFd, out: SerialOut) -> Self {
        SerialDevice {
            uart: Serial::new(IrqEvent(irq), out),
            lcr: 0,
            coalescing: None,
        }
    }

    /// Coalesce data-register writes whenever the transmit-empty interrupt is
    /// off (it is at reset): `switch` is turned on now.
    pub fn with_coalescing(mut self, mut switch: Box<dyn TxCoalescing>) -> Self {
        switch.set(true);
        self.coalescing = Some(switch);
        self
    }

    fn watch_registers(&mut self, offset: u64, value: u8) {
        match offset {
            REG_LCR => self.lcr = value,
            REG_IER if self.lcr & LCR_DLAB == 0 => {
                if let Some(switch) = self.coalescing.as_mut() {
                    switch.set(value & IER_THR_EMPTY == 0);
                }
            }
            _ => {}
        }
    }

    /// Free room in the receive FIFO.
    pub fn rx_room(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queue host input for the guest; returns how many bytes were taken.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Some(first), Ok(reg)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(reg);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&value), Ok(reg)) = (data.first(), u8::try_from(offset)) {
            if offset != REG_DATA {
                self.watch_registers(offset, value);
            }
            if let Err(e) = self.uart.write(reg, value) {
                log::debug!("serial: {e:?}");
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.uart.writer_mut().push() {
            log::debug!("serial output: {e}");
        }
    }
}

impl SerialDevice {
    /// Push any buffered guest output.
    pub fn flush_output(&mut self) {
        BusDevice::flush(self);
    }

    /// Whether the guest's output so far ends a line (or is empty), so that
    /// flint's own text on the same stream can start on a fresh line.
    pub fn at_line_start(&self) -> bool {
        self.uart.writer().at_line_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Switch(Arc<AtomicBool>);

    impl TxCoalescing for Switch {
        fn set(&mut self, on: bool) {
            self.0.store(on, Ordering::SeqCst);
        }
    }

    fn device() -> (SerialDevice, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let evt = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let null = std::fs::File::create("/dev/null").unwrap();
        use std::os::fd::IntoRawFd;
        // SAFETY: the descriptor is leaked on purpose and stays open for the test.
        let out = unsafe { SerialOut::new(null.into_raw_fd(), Arc::default()) };
        let dev = SerialDevice::new(evt, out).with_coalescing(Box::new(Switch(flag.clone())));
        (dev, flag)
    }

    #[test]
    fn output_is_written_once_per_batch_not_once_per_byte() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new descriptors into `fds`.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) };
        assert_eq!(rc, 0);
        // SAFETY: fds[1] stays open until the end of the test (leaked with the device).
        let out = unsafe { SerialOut::new(fds[1], Arc::default()) };
        let evt = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(evt, out);
        let read = |buf: &mut [u8]| {
            // SAFETY: reading into a live buffer of its own length from our pipe.
            unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) }
        };
        let mut buf = [0u8; 16];
        for b in b"hi\n" {
            dev.write(REG_DATA, &[*b]);
        }
        assert_eq!(
            read(&mut buf),
            -1,
            "bytes reached the fd before the batch ended"
        );
        assert!(dev.at_line_start());
        BusDevice::flush(&mut dev);
        assert_eq!(read(&mut buf), 3);
        assert_eq!(&buf[..3], b"hi\n");
        assert!(dev.at_line_start());
    }

    #[test]
    fn coalescing_is_on_at_reset_and_follows_the_thr_empty_interrupt() {
        let (mut dev, on) = device();
        assert!(on.load(Ordering::SeqCst));
        dev.write(REG_IER, &[IER_THR_EMPTY]);
        assert!(!on.load(Ordering::SeqCst));
        dev.write(REG_IER, &[0x01]);
        assert!(on.load(Ordering::SeqCst));
    }

    #[test]
    fn divisor_latch_writes_do_not_count_as_interrupt_enables() {
        let (mut dev, on) = device();
        dev.write(REG_LCR, &[LCR_DLAB | 0x03]);
        dev.write(REG_IER, &[IER_THR_EMPTY]); // divisor high byte, not IER
        assert!(on.load(Ordering::SeqCst));
        dev.write(REG_LCR, &[0x03]);
        dev.write(REG_IER, &[IER_THR_EMPTY]);
        assert!(!on.load(Ordering::SeqCst));
    }
}
