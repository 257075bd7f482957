//! The console device: features, configuration space, activation, reset,
//! host input, and dispatch of queue notifications to `handler.rs`.
//!
//! Implements virtio 1.2 §5.3.1–§5.3.5 (device ID, virtqueues, feature
//! bits, configuration layout, initialization) for a single port, and
//! §2.1.2 (DEVICE_NEEDS_RESET) when the guest breaks a queue.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use log::debug;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::handler::{Receive, Transmit};
use super::{INPUT_CAPACITY, QUEUE_SIZE, RX_QUEUE, TX_CHUNK, TX_QUEUE};
use crate::device::{
    exact_queues, read_config_bytes, ActivateError, DeviceError, VirtioDevice, DEVICE_TYPE_CONSOLE,
    FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC, FEATURE_VERSION_1,
};
use crate::interrupt::VirtioInterrupt;
use crate::virtqueue::{
    report_needs_reset, serve_queue, signal_if_used, FaultLog, QueueFault, ServeError,
};

/// The configuration space (§5.3.4): cols, rows, max_nr_ports, emerg_wr.
/// None of the features that give these meaning is offered: all zero.
const CONFIG_SPACE: [u8; 12] = [0; 12];

/// Everything the device holds between DRIVER_OK and reset.
struct Active {
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    rx: Queue,
    tx: Queue,
}

/// A single-port virtio console writing guest output to `W`.
pub struct Console<W: Write + Send> {
    sink: W,
    input: VecDeque<u8>,
    scratch: Vec<u8>,
    active: Option<Active>,
    broken: bool,
    faults: FaultLog,
}

impl<W: Write + Send> Console<W> {
    /// A console whose transmitted bytes go to `sink` (flushed after each
    /// batch of buffers).
    pub fn new(sink: W) -> Self {
        Console {
            sink,
            input: VecDeque::with_capacity(INPUT_CAPACITY),
            scratch: vec![0; TX_CHUNK],
            active: None,
            broken: false,
            faults: FaultLog::default(),
        }
    }

    /// The output sink.
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// How many more bytes [`push_input`](Console::push_input) accepts now.
    pub fn input_room(&self) -> usize {
        INPUT_CAPACITY - self.input.len()
    }

    /// Host input for the guest (e.g. stdin). Takes as much as fits (see
    /// [`input_room`](Console::input_room)), delivers what it can into the
    /// guest's receive buffers at once, keeps the rest until the guest
    /// posts more; returns how many bytes were taken.
    pub fn push_input(&mut self, data: &[u8]) -> Result<usize, DeviceError> {
        let n = data.len().min(self.input_room());
        self.input.extend(&data[..n]);
        self.receive()?;
        Ok(n)
    }

    fn receive(&mut self) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut().filter(|_| !self.broken) else {
            return Ok(());
        };
        if !active.rx.ready() || self.input.is_empty() {
            return Ok(());
        }
        let size = active.rx.size();
        let mut handler = Receive::new(&mut self.input, &mut self.faults, size);
        let result = serve_queue(&mut active.rx, &active.mem, &mut handler)
            .map_err(ServeError::from)
            .and_then(|used| {
                signal_if_used(
                    used,
                    &mut active.rx,
                    &active.mem,
                    &*active.interrupt,
                    RX_QUEUE,
                )
            });
        ServeError::settle(result, |fault| self.fail(fault))
    }

    fn transmit(&mut self) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut().filter(|_| !self.broken) else {
            return Ok(());
        };
        if !active.tx.ready() {
            return Ok(());
        }
        let size = active.tx.size();
        let mut handler = Transmit::new(&mut self.sink, &mut self.scratch, &mut self.faults, size);
        let served = serve_queue(&mut active.tx, &active.mem, &mut handler);
        let sink_error = handler.finish();
        let result = served.map_err(ServeError::from).and_then(|used| {
            signal_if_used(
                used,
                &mut active.tx,
                &active.mem,
                &*active.interrupt,
                TX_QUEUE,
            )
        });
        ServeError::settle(result, |fault| self.fail(fault))?;
        sink_error.map_or(Ok(()), |e| Err(DeviceError::Backend(e)))
    }

    fn fail(&mut self, fault: QueueFault) -> Result<(), DeviceError> {
        self.broken = true;
        let interrupt = self.active.as_ref().map(|a| &*a.interrupt);
        report_needs_reset(&mut self.faults, "virtio-console", fault, interrupt)
    }
}

impl<W: Write + Send> VirtioDevice for Console<W> {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE_CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        FEATURE_VERSION_1 | FEATURE_EVENT_IDX | FEATURE_INDIRECT_DESC
    }

    fn ack_features(&mut self, _features: u64) {
        // No console feature is offered; the ring features reach the
        // queues through the transport.
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&CONFIG_SPACE, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        let [rx, tx] = exact_queues::<2>(queues)?;
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
        // Pending host input is host data, not device state: it stays for
        // the next driver.
        self.active = None;
        self.broken = false;
    }

    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        match index {
            RX_QUEUE => self.receive(),
            TX_QUEUE => self.transmit(),
            _ => {
                debug!("virtio-console: notification for unknown queue {index}");
                Ok(())
            }
        }
    }

    fn needs_reset(&self) -> bool {
        self.broken
    }
}
