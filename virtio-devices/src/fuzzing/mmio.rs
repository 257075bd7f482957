//! The MMIO fuzz target: register reads and writes on an
//! [`MmioTransport`] around a block, net or console device (virtio 1.2
//! §4.2.2), mixed with the memory operations and host events of the
//! device targets. `RESET` runs a whole driver initialisation (§3.1.1,
//! §4.2.3.1) through the registers; the `REG_*` operations do anything else
//! a guest can, in any order.
//!
//! Input: a kind byte (modulo 3: block, net, console), that device's
//! prologue (`devices.rs`), one byte per queue (as for the device
//! targets), then operations.

use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

use super::devices::{block_device, console_device, net_device};
use super::{drive, guest_memory, op, Driven, HostSide, Input, Rings};
use crate::device::{VirtioDevice, FEATURE_VERSION_1};
use crate::interrupt::CountingInterrupt;
use crate::mmio::{MmioTransport, MMIO_MAGIC_VALUE, MMIO_WINDOW_SIZE};

// Register offsets (§4.2.2).
const MAGIC: u64 = 0x000;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DESC_HIGH: u64 = 0x084;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DRIVER_HIGH: u64 = 0x094;
const QUEUE_DEVICE_LOW: u64 = 0x0a0;
const QUEUE_DEVICE_HIGH: u64 = 0x0a4;

/// Every register of §4.2.2, and the first bytes of configuration space,
/// for `REG_WRITE32`.
const REGISTERS: [u64; 32] = [
    0x000, 0x004, 0x008, 0x00c, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034, 0x038, 0x044, 0x050,
    0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4, 0x0ac, 0x0b0, 0x0b4, 0x0b8,
    0x0bc, 0x0c0, 0x0fc, 0x100, 0x104, 0x108,
];

// Status bits (§2.1).
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;

/// Run register accesses on a transport around a device (see the module
/// docs).
pub fn mmio_registers(data: &[u8]) {
    let mem = guest_memory();
    let mut input = Input::new(data);
    let Some(kind) = input.u8() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Some(block) = block_device(&mut input) {
                if let Some(mut transport) = run(&mem, block, &mut input) {
                    // Waits for io_uring requests still in flight.
                    transport.write(STATUS, &0u32.to_le_bytes());
                }
            }
        }
        1 => {
            if let Some(net) = net_device(&mut input) {
                run(&mem, net, &mut input);
            }
        }
        _ => {
            run(&mem, console_device(), &mut input);
        }
    }
}

pub(super) fn run<D: VirtioDevice + HostSide>(
    mem: &GuestMemoryMmap,
    device: D,
    input: &mut Input<'_>,
) -> Option<MmioTransport<D>> {
    let rings = Rings::read(input, device.queue_max_sizes().len())?;
    let irq = Arc::new(CountingInterrupt::new());
    let transport = MmioTransport::new(device, mem.clone(), irq).expect("valid queue sizes");
    let mut driver = Driver {
        mem,
        rings: &rings,
        transport,
    };
    drive(mem, &rings, &mut driver, input);
    Some(driver.transport)
}

/// A guest driver talking to a transport.
struct Driver<'m, D: VirtioDevice> {
    mem: &'m GuestMemoryMmap,
    rings: &'m Rings,
    transport: MmioTransport<D>,
}

impl<D: VirtioDevice> Driver<'_, D> {
    fn write32(&mut self, offset: u64, value: u32) {
        self.transport.write(offset, &value.to_le_bytes());
    }

    fn read32(&self, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        self.transport.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write64(&mut self, (low, high): (u64, u64), value: u64) {
        self.write32(low, value as u32);
        self.write32(high, (value >> 32) as u32);
    }

    /// The driver's side of device initialisation, acking `features` of
    /// those offered (and VERSION_1).
    fn initialise(&mut self, features: u64) {
        self.write32(STATUS, 0);
        assert_eq!(self.read32(STATUS), 0, "reset reads back as 0");
        self.rings.restart(self.mem);
        self.write32(STATUS, ACKNOWLEDGE);
        self.write32(STATUS, ACKNOWLEDGE | DRIVER);
        let mut offered = 0u64;
        for sel in 0..2 {
            self.write32(DEVICE_FEATURES_SEL, sel);
            offered |= u64::from(self.read32(DEVICE_FEATURES)) << (32 * sel);
        }
        let features = (features & offered) | FEATURE_VERSION_1;
        for sel in 0..2 {
            self.write32(DRIVER_FEATURES_SEL, sel);
            self.write32(DRIVER_FEATURES, (features >> (32 * sel)) as u32);
        }
        self.write32(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        for q in 0..self.rings.sizes.len() {
            self.write32(QUEUE_SEL, q as u32);
            self.write32(QUEUE_NUM, self.rings.sizes[q].into());
            self.write64((QUEUE_DESC_LOW, QUEUE_DESC_HIGH), Rings::desc(q));
            self.write64((QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH), Rings::avail(q));
            self.write64((QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH), Rings::used(q));
            self.write32(QUEUE_READY, self.rings.ready[q].into());
        }
        self.write32(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }
}

impl<D: VirtioDevice + HostSide> Driven for Driver<'_, D> {
    fn notify(&mut self, q: u16) {
        self.write32(QUEUE_NOTIFY, q.into());
        // The event loop, once the queue's eventfd fired.
        if let Some(event) = self.transport.queue_events().get(usize::from(q)) {
            let _ = event.read();
        }
        let _ = self.transport.process_queue(q);
    }

    fn host_event(&mut self, input: &mut Input<'_>) -> Option<()> {
        self.transport.device_mut().host_event(input)
    }

    fn reset(&mut self, features: u64) {
        self.initialise(features);
    }

    fn register(&mut self, code: u8, input: &mut Input<'_>) -> Option<()> {
        match code {
            op::REG_READ => {
                let offset = u64::from(input.u16()?) % MMIO_WINDOW_SIZE;
                let mut data = vec![0u8; usize::from(input.u8()? % 8) + 1];
                self.transport.read(offset, &mut data);
                if offset == MAGIC && data.len() == 4 {
                    assert_eq!(data, MMIO_MAGIC_VALUE.to_le_bytes());
                }
            }
            op::REG_WRITE => {
                let offset = u64::from(input.u16()?) % MMIO_WINDOW_SIZE;
                let width = usize::from(input.u8()? % 8) + 1;
                let data = input.bytes(width);
                self.transport.write(offset, data);
            }
            _ => {
                let register = REGISTERS[usize::from(input.u8()?) % REGISTERS.len()];
                let value = input.u32()?;
                self.write32(register, value);
            }
        }
        Some(())
    }
}
