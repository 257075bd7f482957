//! Entry points for the fuzz targets in the repository's `fuzz/` folder
//! (cargo-fuzz, libFuzzer), built with the `fuzzing` feature; the unit
//! tests build it too and run the committed seed inputs through it.
//! Nothing here changes how a device behaves: each entry point builds a
//! device on fresh guest memory, reads the fuzz input as what a guest
//! driver can do (write descriptors, rings and buffers, notify, reset)
//! plus host events (input, frames, completions), and runs the device's
//! own code on it.
//!
//! - [`block_chains`], [`net_chains`], [`console_chains`]: a device driven
//!   directly, as its unit tests do, over in-memory backends.
//! - [`mmio_registers`]: register reads and writes on an [`MmioTransport`]
//!   around one of the three devices, with the same memory operations.
//!
//! A panic is a finding: a device must survive whatever the guest writes.
//! The backends also assert what a device must never do (block I/O past
//! the capacity, misaligned for an O_DIRECT-like backend, or written to a
//! read-only disk; a transmitted frame shorter or longer than accepted).
//!
//! # Input format
//!
//! A device-specific prologue (see `devices.rs`), then operations until
//! the input ends. Every operation starts with a byte whose value modulo
//! [`op::COUNT`] picks it; truncated operations are dropped. Queue
//! numbers are taken modulo the device's queue count. A descriptor
//! (`desc`) is a selector byte `s` and its fields:
//!
//! - `s & 3`: 0 or 1: address = [`BUFFERS`] + u16; 2: [`RINGS`] + u16
//!   (the rings themselves); 3: any u64.
//! - `s & 4`: the length is a u32 (else a u16).
//! - `DESC` and `INDIRECT` then read the flags (u8) and the next index
//!   (u16 when `s & 8`, else u8); `CHAIN` sets NEXT itself and WRITE
//!   when `s & 0x10`, INDIRECT when `s & 0x20`.
//!
//! Guest memory is two adjacent 1 MiB regions, so buffers around
//! [`REGION_SIZE`] span both. Queue `q` has its descriptor table at
//! `RINGS + 0x4000 * q`, its available ring 0x1000 and its used ring
//! 0x2000 above.

mod devices;
mod mmio;
#[cfg(test)]
mod seeds;

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::device::{VirtioDevice, FEATURE_EVENT_IDX, FEATURE_VERSION_1};
use crate::interrupt::CountingInterrupt;

pub use devices::{block_chains, console_chains, net_chains};
pub use mmio::mmio_registers;

/// Size of each of the two guest memory regions.
pub const REGION_SIZE: u64 = 0x10_0000;
/// Where the queues' rings live.
pub const RINGS: u64 = 0x1_0000;
/// Distance between two queues' rings.
const RING_STRIDE: u64 = 0x4000;
/// Start of the buffer window descriptors point into (64 KiB, across the
/// boundary between the two regions).
pub const BUFFERS: u64 = REGION_SIZE - 0x8000;

/// Operation codes: the first byte of an operation, modulo [`op::COUNT`].
pub mod op {
    /// `q, index: u8, desc`: write a descriptor into queue `q`'s table.
    pub const DESC: u8 = 0;
    /// `slot: u8, desc`: write a descriptor at `BUFFERS + 16 * slot`
    /// (an indirect table).
    pub const INDIRECT: u8 = 1;
    /// `q, start: u8, count: u8, count × desc`: a chain of up to 16
    /// descriptors from table index `start`, made available.
    pub const CHAIN: u8 = 2;
    /// `q, head: u16`: append `head` to the available ring.
    pub const AVAIL: u8 = 3;
    /// `q, idx: u16`: overwrite the available ring's index.
    pub const AVAIL_IDX: u8 = 4;
    /// `q, value: u16`: write `used_event`.
    pub const USED_EVENT: u8 = 5;
    /// `offset: u16, n: u8, n bytes`: write bytes at `BUFFERS + offset`.
    pub const DATA: u8 = 6;
    /// `q: u8`: notify queue `q` (`q | 0x80` as is: unknown queues).
    pub const NOTIFY: u8 = 7;
    /// Device-specific host event (input, a frame, completions).
    pub const HOST: u8 = 8;
    /// `features: u64`: reset, restart the rings, set up again.
    pub const RESET: u8 = 9;
    /// `offset: u16, width: u8`: a register read (MMIO only).
    pub const REG_READ: u8 = 10;
    /// `offset: u16, width: u8, bytes`: a register write (MMIO only).
    pub const REG_WRITE: u8 = 11;
    /// `register: u8, value: u32`: a 4-byte write to a known register
    /// (MMIO only).
    pub const REG_WRITE32: u8 = 12;
    /// Number of operations.
    pub const COUNT: u8 = 13;
}

/// The fuzz input, consumed from the front.
pub(crate) struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// Fresh, zeroed guest memory: two adjacent 1 MiB regions.
pub(crate) fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), REGION_SIZE as usize),
        (GuestAddress(REGION_SIZE), REGION_SIZE as usize),
    ])
    .expect("fuzz guest memory")
}

/// The driver side of the device's split queues (virtio 1.2 §2.7).
pub(crate) struct Rings {
    /// Size of each queue.
    pub sizes: Vec<u16>,
    /// Whether the driver marks each queue ready.
    pub ready: Vec<bool>,
}

impl Rings {
    /// One queue per byte of the prologue: size `1 << (b & 15) % 9`, not
    /// ready when `b & 0x80`.
    pub(crate) fn read(input: &mut Input<'_>, queues: usize) -> Option<Self> {
        let bytes = input.bytes(queues);
        if bytes.len() < queues {
            return None;
        }
        Some(Rings {
            sizes: bytes.iter().map(|b| 1 << ((b & 15) % 9)).collect(),
            ready: bytes.iter().map(|b| b & 0x80 == 0).collect(),
        })
    }

    fn pick(&self, b: u8) -> usize {
        usize::from(b) % self.sizes.len()
    }

    /// Descriptor table of queue `q`.
    pub(crate) fn desc(q: usize) -> u64 {
        RINGS + RING_STRIDE * q as u64
    }

    /// Available ring of queue `q`.
    pub(crate) fn avail(q: usize) -> u64 {
        Self::desc(q) + 0x1000
    }

    /// Used ring of queue `q`.
    pub(crate) fn used(q: usize) -> u64 {
        Self::desc(q) + 0x2000
    }

    /// The device-side queues a transport would build, every ring in
    /// place; `features` decides event-index suppression.
    pub(crate) fn queues(&self, features: u64) -> Vec<Queue> {
        let sizes = self.sizes.iter().zip(&self.ready);
        sizes
            .enumerate()
            .map(|(q, (&size, &ready))| {
                let mut queue = Queue::new(size).expect("power-of-two size");
                let rings = [Self::desc(q), Self::avail(q), Self::used(q)].map(GuestAddress);
                queue.try_set_desc_table_address(rings[0]).expect("aligned");
                queue.try_set_avail_ring_address(rings[1]).expect("aligned");
                queue.try_set_used_ring_address(rings[2]).expect("aligned");
                queue.set_event_idx(features & FEATURE_EVENT_IDX != 0);
                queue.set_ready(ready);
                queue
            })
            .collect()
    }

    fn make_available(&self, mem: &GuestMemoryMmap, q: usize, head: u16) {
        let idx: u16 = mem.read_obj(GuestAddress(Self::avail(q) + 2)).unwrap();
        let slot = 4 + 2 * u64::from(idx % self.sizes[q]);
        let _ = mem.write_obj(head, GuestAddress(Self::avail(q) + slot));
        let _ = mem.write_obj(idx.wrapping_add(1), GuestAddress(Self::avail(q) + 2));
    }

    /// Zero every ring index, as a driver re-initialising after reset.
    pub(crate) fn restart(&self, mem: &GuestMemoryMmap) {
        for q in 0..self.sizes.len() {
            let _ = mem.write_obj(0u16, GuestAddress(Self::avail(q) + 2));
            let _ = mem.write_obj(0u16, GuestAddress(Self::used(q) + 2));
        }
    }
}

/// What a harness does for the operations that are not plain memory
/// writes.
pub(crate) trait Driven {
    /// The driver notified queue `q`.
    fn notify(&mut self, q: u16);
    /// A device-specific host event, read from `input`.
    fn host_event(&mut self, input: &mut Input<'_>) -> Option<()>;
    /// Reset the device and set it up again with `features`.
    fn reset(&mut self, features: u64);
    /// A register operation (`op::REG_*`); ignored by direct harnesses.
    fn register(&mut self, _op: u8, _input: &mut Input<'_>) -> Option<()> {
        Some(())
    }
}

/// One descriptor as the input describes it (see the module docs).
struct DescSpec {
    selector: u8,
    addr: u64,
    len: u32,
}

impl DescSpec {
    fn read(input: &mut Input<'_>) -> Option<Self> {
        let selector = input.u8()?;
        let addr = match selector & 3 {
            0 | 1 => BUFFERS + u64::from(input.u16()?),
            2 => RINGS + u64::from(input.u16()?),
            _ => input.u64()?,
        };
        let len = match selector & 4 {
            0 => u32::from(input.u16()?),
            _ => input.u32()?,
        };
        Some(DescSpec {
            selector,
            addr,
            len,
        })
    }

    /// Flags and next index read from the input.
    fn read_links(&self, input: &mut Input<'_>) -> Option<(u16, u16)> {
        let flags = u16::from(input.u8()?);
        let next = match self.selector & 8 {
            0 => u16::from(input.u8()?),
            _ => input.u16()?,
        };
        Some((flags, next))
    }

    fn write(&self, mem: &GuestMemoryMmap, at: u64, flags: u16, next: u16) {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.addr.to_le_bytes());
        raw[8..12].copy_from_slice(&self.len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        let _ = mem.write_slice(&raw, GuestAddress(at));
    }
}

/// VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT.
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;
/// Longest chain one `CHAIN` operation writes.
const MAX_CHAIN: u8 = 16;

/// Run the operations in `input` until it ends.
pub(crate) fn drive(
    mem: &GuestMemoryMmap,
    rings: &Rings,
    target: &mut impl Driven,
    input: &mut Input<'_>,
) {
    while let Some(code) = input.u8() {
        if step(mem, rings, target, input, code % op::COUNT).is_none() {
            return;
        }
    }
}

fn step(
    mem: &GuestMemoryMmap,
    rings: &Rings,
    target: &mut impl Driven,
    input: &mut Input<'_>,
    code: u8,
) -> Option<()> {
    match code {
        op::DESC => {
            let (q, index) = (rings.pick(input.u8()?), input.u8()?);
            let desc = DescSpec::read(input)?;
            let (flags, next) = desc.read_links(input)?;
            desc.write(mem, Rings::desc(q) + 16 * u64::from(index), flags, next);
        }
        op::INDIRECT => {
            let slot = input.u8()?;
            let desc = DescSpec::read(input)?;
            let (flags, next) = desc.read_links(input)?;
            desc.write(mem, BUFFERS + 16 * u64::from(slot), flags, next);
        }
        op::CHAIN => chain(mem, rings, input)?,
        op::AVAIL => {
            let (q, head) = (rings.pick(input.u8()?), input.u16()?);
            rings.make_available(mem, q, head);
        }
        op::AVAIL_IDX => {
            let (q, idx) = (rings.pick(input.u8()?), input.u16()?);
            let _ = mem.write_obj(idx, GuestAddress(Rings::avail(q) + 2));
        }
        op::USED_EVENT => {
            let (q, value) = (rings.pick(input.u8()?), input.u16()?);
            let at = Rings::avail(q) + 4 + 2 * u64::from(rings.sizes[q]);
            let _ = mem.write_obj(value, GuestAddress(at));
        }
        op::DATA => {
            let (offset, n) = (input.u16()?, input.u8()?);
            let bytes = input.bytes(n.into());
            let _ = mem.write_slice(bytes, GuestAddress(BUFFERS + u64::from(offset)));
        }
        op::NOTIFY => {
            let b = input.u8()?;
            let q = match b & 0x80 {
                0 => rings.pick(b) as u16,
                _ => u16::from(b),
            };
            target.notify(q);
        }
        op::HOST => target.host_event(input)?,
        op::RESET => target.reset(input.u64()?),
        _ => target.register(code, input)?,
    }
    Some(())
}

/// `CHAIN`: `count` linked descriptors from `start`, head made available.
fn chain(mem: &GuestMemoryMmap, rings: &Rings, input: &mut Input<'_>) -> Option<()> {
    let q = rings.pick(input.u8()?);
    let size = rings.sizes[q];
    let start = u16::from(input.u8()?) % size;
    let count = (input.u8()? % MAX_CHAIN) + 1;
    for i in 0..u16::from(count) {
        let desc = DescSpec::read(input)?;
        let index = (start + i) % size;
        let last = i + 1 == u16::from(count);
        let mut flags = if last { 0 } else { NEXT };
        if desc.selector & 0x10 != 0 {
            flags |= WRITE;
        }
        if desc.selector & 0x20 != 0 {
            flags |= INDIRECT;
        }
        let at = Rings::desc(q) + 16 * u64::from(index);
        desc.write(mem, at, flags, (index + 1) % size);
    }
    rings.make_available(mem, q, start);
    Some(())
}

/// A device driven directly (no transport), as its unit tests do.
pub(crate) struct Direct<'m, D: VirtioDevice> {
    pub mem: &'m GuestMemoryMmap,
    pub rings: &'m Rings,
    pub irq: Arc<CountingInterrupt>,
    pub device: D,
}

impl<'m, D: VirtioDevice> Direct<'m, D> {
    /// Ack `features` (of those offered, with VERSION_1) and activate.
    pub(crate) fn activate(&mut self, features: u64) {
        let features = (features & self.device.avail_features()) | FEATURE_VERSION_1;
        self.device.ack_features(features);
        let queues = self.rings.queues(features);
        let _ = self
            .device
            .activate(self.mem.clone(), self.irq.clone(), queues);
    }
}

/// Host events of a device, beyond its queues.
pub(crate) trait HostSide {
    /// Read one host event from `input` and apply it.
    fn host_event(&mut self, input: &mut Input<'_>) -> Option<()>;
}

impl<D: VirtioDevice + HostSide> Driven for Direct<'_, D> {
    fn notify(&mut self, q: u16) {
        // Host failures (a failing fake backend) are not findings.
        let _ = self.device.process_queue(q);
    }

    fn host_event(&mut self, input: &mut Input<'_>) -> Option<()> {
        self.device.host_event(input)
    }

    fn reset(&mut self, features: u64) {
        self.device.reset();
        assert!(
            !self.device.needs_reset(),
            "reset clears DEVICE_NEEDS_RESET"
        );
        self.rings.restart(self.mem);
        self.activate(features);
    }
}

/// Run `input` (after the device prologue) against `device`: the
/// prologue's features and queue bytes, then the operations.
pub(crate) fn run_direct<D: VirtioDevice + HostSide>(
    mem: &GuestMemoryMmap,
    device: D,
    input: &mut Input<'_>,
) -> Option<D> {
    let features = input.u64()?;
    let rings = Rings::read(input, device.queue_max_sizes().len())?;
    let mut direct = Direct {
        mem,
        rings: &rings,
        irq: Arc::new(CountingInterrupt::new()),
        device,
    };
    direct.activate(features);
    drive(mem, &rings, &mut direct, input);
    Some(direct.device)
}
