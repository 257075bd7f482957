//! `probe.virtio=1`: user-mode virtio-mmio drivers (virtio 1.2 §4.2, version
//! 2 "modern" transport only) over split virtqueues (§2.7), polled, with no
//! interrupts. Each device the DSDT lists (else each `virtio_mmio.device=`)
//! is reset, initialised as §3.1.1 says, reported, exercised by its type's
//! driver (blk.rs, vcon.rs) and reset again, so one set of static queue
//! memory serves them all in turn.
//!
//! Register accesses are 32-bit volatile loads/stores to the uncached
//! identity map of the MMIO hole: each one is an MMIO exit to the monitor.
//! The rings live in `.bss` (guest RAM, identity-mapped, so an address is
//! its guest-physical address). User mode runs natively while the device
//! model runs on another host thread, so ring updates are ordered with real
//! fences: descriptors and ring entry before `avail.idx` (release store),
//! `avail.idx` before the QueueNotify write (full fence), `used.idx` before
//! the used element and the buffers it returns (acquire load). Every wait is
//! bounded (~2 s by `rdtsc`) and ends in a `timeout` line, never a hang.
//!
//! Two extras hook in per device after its driver: `probe.irq=1` (irq.rs,
//! the console's used-buffer interrupt) and `probe.virtio-faults=<s>`
//! (faults.rs, malformed queues, then `restart` and one normal request).

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{fence, AtomicU16, Ordering};

use crate::acpi::Tables;
use crate::kvmclock::Clock;
use crate::out::Line;
use crate::{aml, blk, cmdline, faults, irq, net, svc, vcon};

/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;

// Register offsets (virtio 1.2 §4.2.2).
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC: u64 = 0x080;
const REG_QUEUE_DRIVER: u64 = 0x090;
const REG_QUEUE_DEVICE: u64 = 0x0a0;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
/// Device-specific configuration space.
const REG_CONFIG: u64 = 0x100;

// Device status bits (§2.1).
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
pub const DEVICE_NEEDS_RESET: u32 = 64;
const FAILED: u32 = 128;

/// VIRTIO_F_VERSION_1.
pub const F_VERSION_1: u64 = 1 << 32;

/// The 32-bit MMIO hole: the only place registers are touched.
const HOLE: core::ops::Range<u64> = 0xc000_0000..0x1_0000_0000;

/// Most devices looked at.
const MAX_DEVICES: usize = 32;
/// How long any single wait (reset, a request) may take.
pub const TIMEOUT_NS: u64 = 2_000_000_000;

// ---- time ------------------------------------------------------------------

/// TSC intervals to nanoseconds: kvmclock's scale when there is one, else
/// the frequency CPUID states, else 3 GHz (as echo.rs).
#[derive(Clone, Copy)]
pub struct Timebase {
    clock: Option<Clock>,
    hz: u64,
}

impl Timebase {
    pub fn new(clock: Option<&Clock>) -> Timebase {
        let hz = match clock {
            Some(_) => 0,
            None => crate::echo::cpuid_tsc_hz()
                .filter(|&hz| hz >= 1_000_000)
                .unwrap_or(3_000_000_000),
        };
        Timebase {
            clock: clock.copied(),
            hz,
        }
    }

    /// Nanoseconds in `ticks` TSC ticks.
    pub fn ns(&self, ticks: u64) -> u64 {
        match &self.clock {
            Some(clock) => clock.scale(ticks),
            None => (u128::from(ticks) * 1_000_000_000 / u128::from(self.hz)) as u64,
        }
    }

    /// Nanoseconds since TSC value `start`.
    pub fn since(&self, start: u64) -> u64 {
        self.ns(svc::rdtsc().wrapping_sub(start))
    }
}

// ---- transport -------------------------------------------------------------

/// One virtio-mmio register window (in the MMIO hole, at least 0x100 bytes).
#[derive(Clone, Copy)]
pub struct Transport {
    base: u64,
    size: u64,
}

impl Transport {
    fn new(base: u64, size: u64) -> Option<Transport> {
        let end = base.checked_add(size.min(0x1000))?;
        (base >= HOLE.start && end <= HOLE.end && base.is_multiple_of(4) && size >= REG_CONFIG)
            .then_some(Transport {
                base,
                size: size.min(0x1000),
            })
    }

    fn read(&self, offset: u64) -> u32 {
        // SAFETY: `base + offset` (< 0x100, 4-aligned) is in the MMIO hole (checked
        // in `new`), mapped user-accessible and uncached; loads touch no probe memory.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: u64, value: u32) {
        // SAFETY: as `read`; a register store changes device state only
        // (queue addresses written are the probe's own static rings).
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn write64(&self, offset: u64, value: u64) {
        self.write(offset, value as u32);
        self.write(offset + 4, (value >> 32) as u32);
    }

    /// MagicValue (for timing a bare register read).
    pub fn magic(&self) -> u32 {
        self.read(REG_MAGIC)
    }

    /// Device status (§2.1).
    pub fn status(&self) -> u32 {
        self.read(REG_STATUS)
    }

    /// Reads InterruptStatus and acknowledges every bit it shows.
    pub fn ack_interrupts(&self) -> u32 {
        let pending = self.read(REG_INTERRUPT_STATUS);
        if pending != 0 {
            self.write(REG_INTERRUPT_ACK, pending);
        }
        pending
    }

    fn add_status(&self, bits: u32) {
        self.write(REG_STATUS, self.status() | bits);
    }

    /// Writes 0 to Status and waits (bounded) until it reads back 0.
    pub fn reset(&self, time: &Timebase) -> bool {
        self.write(REG_STATUS, 0);
        let start = svc::rdtsc();
        while self.status() != 0 {
            if time.since(start) > TIMEOUT_NS {
                return false;
            }
        }
        true
    }

    /// The config byte at `offset`, if the window holds it.
    pub fn config8(&self, offset: u64) -> Option<u8> {
        (REG_CONFIG + offset < self.size).then(|| {
            // SAFETY: as `read`, one byte inside the checked window.
            unsafe { read_volatile((self.base + REG_CONFIG + offset) as *const u8) }
        })
    }

    /// The 32-bit config field at `offset`, if the window holds it.
    pub fn config32(&self, offset: u64) -> Option<u32> {
        (REG_CONFIG + offset + 4 <= self.size && offset.is_multiple_of(4))
            .then(|| self.read(REG_CONFIG + offset))
    }

    /// The 64-bit config field at `offset`, as two 32-bit reads repeated
    /// until ConfigGeneration is the same before and after (§4.2.2.2).
    pub fn config64(&self, offset: u64) -> Option<u64> {
        if REG_CONFIG + offset + 8 > self.size || !offset.is_multiple_of(4) {
            return None;
        }
        for _ in 0..100 {
            let before = self.read(REG_CONFIG_GENERATION);
            let lo = self.read(REG_CONFIG + offset);
            let hi = self.read(REG_CONFIG + offset + 4);
            if self.read(REG_CONFIG_GENERATION) == before {
                return Some(u64::from(hi) << 32 | u64::from(lo));
            }
        }
        None
    }

    fn notify(&self, queue: u32) {
        self.write(REG_QUEUE_NOTIFY, queue);
    }
}

// ---- split virtqueue -------------------------------------------------------

/// Entries per queue (at most; less if the device's QueueNumMax is smaller).
pub const QUEUE_SIZE: u16 = 16;
const QS: usize = QUEUE_SIZE as usize;

/// VIRTQ_DESC_F_NEXT.
pub const DESC_NEXT: u16 = 1;
/// VIRTQ_DESC_F_WRITE (device writes the buffer).
pub const DESC_WRITE: u16 = 2;
/// VIRTQ_DESC_F_INDIRECT (only used to inject faults: not negotiated).
pub const DESC_INDIRECT: u16 = 4;
/// VIRTQ_AVAIL_F_NO_INTERRUPT: the probe polls.
const AVAIL_NO_INTERRUPT: u16 = 1;

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

#[repr(C, align(2))]
struct Avail {
    flags: u16,
    idx: u16,
    ring: [u16; QS],
    used_event: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UsedElem {
    id: u32,
    len: u32,
}

#[repr(C, align(4))]
struct Used {
    flags: u16,
    idx: u16,
    ring: [UsedElem; QS],
    avail_event: u16,
}

/// One queue's memory: descriptor table (16-aligned), driver area (avail,
/// 2-aligned), device area (used, 4-aligned), as §2.7 requires.
#[repr(C, align(4096))]
pub struct QueueMem {
    desc: [Desc; QS],
    avail: Avail,
    used: Used,
}

impl QueueMem {
    const fn new() -> QueueMem {
        QueueMem {
            desc: [Desc {
                addr: 0,
                len: 0,
                flags: 0,
                next: 0,
            }; QS],
            avail: Avail {
                flags: 0,
                idx: 0,
                ring: [0; QS],
                used_event: 0,
            },
            used: Used {
                flags: 0,
                idx: 0,
                ring: [UsedElem { id: 0, len: 0 }; QS],
                avail_event: 0,
            },
        }
    }
}

/// Queue memory for the two queues a device uses at most (console, net).
static mut QUEUE_MEM: [QueueMem; 2] = [QueueMem::new(), QueueMem::new()];

/// A buffer in a chain: guest-physical address, length, direction.
#[derive(Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    /// The device writes it (VIRTQ_DESC_F_WRITE); else it reads it.
    pub device_writes: bool,
}

impl Buf {
    /// A buffer the device reads.
    pub fn readable<T: ?Sized>(data: *const T, len: usize) -> Buf {
        Buf {
            addr: data as *const u8 as u64,
            len: len as u32,
            device_writes: false,
        }
    }

    /// A buffer the device writes.
    pub fn writable<T: ?Sized>(data: *mut T, len: usize) -> Buf {
        Buf {
            addr: data as *mut u8 as u64,
            len: len as u32,
            device_writes: true,
        }
    }
}

/// A used element: the chain's head and the bytes the device wrote.
#[derive(Clone, Copy)]
pub struct Completion {
    pub head: u16,
    pub len: u32,
}

/// A set-up split virtqueue. Descriptors come from a free list (linked
/// through `next`) and go back to it when their chain is used.
pub struct Queue {
    mem: *mut QueueMem,
    index: u32,
    size: u16,
    free_head: u16,
    num_free: u16,
    next_avail: u16,
    last_used: u16,
}

/// Why a queue could not be set up.
pub enum QueueError {
    /// QueueReady was already set.
    InUse,
    /// QueueNumMax is 0: no such queue.
    Unavailable,
    /// QueueReady did not read back 1.
    NotReady,
}

impl Queue {
    /// Sets up queue `index` on `slot` of the static queue memory (§4.2.3.2).
    fn setup(t: &Transport, index: u32, slot: usize) -> Result<Queue, QueueError> {
        t.write(REG_QUEUE_SEL, index);
        if t.read(REG_QUEUE_READY) != 0 {
            return Err(QueueError::InUse);
        }
        let max = t.read(REG_QUEUE_NUM_MAX);
        if max == 0 {
            return Err(QueueError::Unavailable);
        }
        // Largest power of two <= min(max, QUEUE_SIZE).
        let want = max.min(u32::from(QUEUE_SIZE));
        let size = 1u16 << (31 - want.leading_zeros());
        // SAFETY: slot < 2, devices are set up one at a time and the slot's previous
        // user was reset (or failed before DRIVER_OK), so no device accesses it now.
        let mem = unsafe { addr_of_mut!(QUEUE_MEM[slot]) };
        // SAFETY: `mem` is valid; nothing else references it.
        unsafe { mem.write_bytes(0, 1) };
        let mut q = Queue {
            mem,
            index,
            size,
            free_head: 0,
            num_free: size,
            next_avail: 0,
            last_used: 0,
        };
        for i in 0..size {
            q.desc_mut(i).next = (i + 1) % size;
        }
        // SAFETY: `mem` is valid; the device has not been given it yet.
        unsafe { (*mem).avail.flags = AVAIL_NO_INTERRUPT };
        t.write(REG_QUEUE_NUM, u32::from(size));
        // SAFETY: taking field addresses of a valid static.
        let (desc, avail, used) = unsafe {
            (
                addr_of!((*mem).desc) as u64,
                addr_of!((*mem).avail) as u64,
                addr_of!((*mem).used) as u64,
            )
        };
        t.write64(REG_QUEUE_DESC, desc);
        t.write64(REG_QUEUE_DRIVER, avail);
        t.write64(REG_QUEUE_DEVICE, used);
        // Ring memory written before the device may look at it.
        fence(Ordering::SeqCst);
        t.write(REG_QUEUE_READY, 1);
        if t.read(REG_QUEUE_READY) != 1 {
            return Err(QueueError::NotReady);
        }
        Ok(q)
    }

    fn desc_mut(&mut self, i: u16) -> &mut Desc {
        // SAFETY: i < size <= QS; the device only reads descriptors that are
        // in a submitted chain, and this is only called on free ones.
        unsafe { &mut (*self.mem).desc[usize::from(i)] }
    }

    /// The queue's size (entries).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Makes the chain `bufs` available (without notifying); returns its
    /// head, or `None` if there are not enough free descriptors.
    pub fn push(&mut self, bufs: &[Buf]) -> Option<u16> {
        if bufs.is_empty() || bufs.len() > usize::from(self.num_free) {
            return None;
        }
        let head = self.free_head;
        let mut at = head;
        for (n, b) in bufs.iter().enumerate() {
            let last = n + 1 == bufs.len();
            let d = self.desc_mut(at);
            let next = d.next;
            d.addr = b.addr;
            d.len = b.len;
            d.flags =
                if b.device_writes { DESC_WRITE } else { 0 } | if last { 0 } else { DESC_NEXT };
            if last {
                self.free_head = next;
            } else {
                at = next;
            }
        }
        self.num_free -= bufs.len() as u16;
        let slot = usize::from(self.next_avail % self.size);
        self.next_avail = self.next_avail.wrapping_add(1);
        // SAFETY: the avail ring is ours; the atomic release store of `idx` orders
        // the descriptor and ring writes above before the device can see them.
        unsafe {
            write_volatile(addr_of_mut!((*self.mem).avail.ring[slot]), head);
            let idx = &*(addr_of!((*self.mem).avail.idx) as *const AtomicU16);
            idx.store(self.next_avail, Ordering::Release);
        }
        Some(head)
    }

    /// QueueNotify, after a full fence so `avail.idx` is visible first.
    pub fn notify(&self, t: &Transport) {
        fence(Ordering::SeqCst);
        t.notify(self.index);
    }

    /// The next used element, if the device has returned one; its
    /// descriptors go back to the free list.
    pub fn poll(&mut self) -> Option<Completion> {
        // SAFETY: `used` is written by the device; `idx` read atomically with
        // acquire, so the element and the buffers it returns are read after.
        let used_idx = unsafe {
            let idx = &*(addr_of!((*self.mem).used.idx) as *const AtomicU16);
            idx.load(Ordering::Acquire)
        };
        if used_idx == self.last_used {
            return None;
        }
        let slot = usize::from(self.last_used % self.size);
        self.last_used = self.last_used.wrapping_add(1);
        // SAFETY: the device wrote this element before publishing `idx`.
        let elem = unsafe { read_volatile(addr_of!((*self.mem).used.ring[slot])) };
        let head = (elem.id as u16) % self.size;
        // Free the chain.
        let mut at = head;
        let mut count = 1;
        loop {
            let d = *self.desc_mut(at);
            if d.flags & DESC_NEXT == 0 || count >= self.size {
                break;
            }
            at = d.next % self.size;
            count += 1;
        }
        self.desc_mut(at).next = self.free_head;
        self.free_head = head;
        self.num_free = (self.num_free + count).min(self.size);
        Some(Completion {
            head,
            len: elem.len,
        })
    }

    /// Asks for used-buffer notifications (clears VIRTQ_AVAIL_F_NO_INTERRUPT)
    /// or suppresses them again.
    pub fn set_interrupts(&mut self, on: bool) {
        // SAFETY: the driver area's flags are ours to write; the device
        // reads them concurrently, hence a volatile store and a fence.
        unsafe {
            write_volatile(
                addr_of_mut!((*self.mem).avail.flags),
                if on { 0 } else { AVAIL_NO_INTERRUPT },
            )
        };
        fence(Ordering::SeqCst);
    }

    // -- raw access for fault injection (faults.rs): no free-list
    // bookkeeping; the queue is thrown away (device reset) afterwards.

    /// Writes descriptor `i` (< size) as given.
    pub fn raw_desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.desc_mut(i % self.size);
        d.addr = addr;
        d.len = len;
        d.flags = flags;
        d.next = next;
    }

    /// Puts `head` (any value, even past the table) in the next avail slot
    /// and publishes it.
    pub fn raw_publish(&mut self, head: u16) {
        let slot = usize::from(self.next_avail % self.size);
        self.next_avail = self.next_avail.wrapping_add(1);
        // SAFETY: as in `push`.
        unsafe {
            write_volatile(addr_of_mut!((*self.mem).avail.ring[slot]), head);
            let idx = &*(addr_of!((*self.mem).avail.idx) as *const AtomicU16);
            idx.store(self.next_avail, Ordering::Release);
        }
    }

    /// Moves `avail.idx` `by` entries ahead without filling the ring.
    pub fn raw_avail_jump(&mut self, by: u16) {
        self.next_avail = self.next_avail.wrapping_add(by);
        // SAFETY: as in `push`.
        unsafe {
            let idx = &*(addr_of!((*self.mem).avail.idx) as *const AtomicU16);
            idx.store(self.next_avail, Ordering::Release);
        }
    }

    /// Whether the device has published a used element not yet polled.
    pub fn used_pending(&self) -> bool {
        // SAFETY: as in `poll`.
        let used_idx = unsafe {
            let idx = &*(addr_of!((*self.mem).used.idx) as *const AtomicU16);
            idx.load(Ordering::Acquire)
        };
        used_idx != self.last_used
    }

    /// The next used element without freeing anything: (id, len).
    pub fn raw_poll(&mut self) -> Option<(u32, u32)> {
        // SAFETY: as in `poll`.
        let used_idx = unsafe {
            let idx = &*(addr_of!((*self.mem).used.idx) as *const AtomicU16);
            idx.load(Ordering::Acquire)
        };
        if used_idx == self.last_used {
            return None;
        }
        let slot = usize::from(self.last_used % self.size);
        self.last_used = self.last_used.wrapping_add(1);
        // SAFETY: the device wrote this element before publishing `idx`.
        let elem = unsafe { read_volatile(addr_of!((*self.mem).used.ring[slot])) };
        Some((elem.id, elem.len))
    }

    /// Polls until a used element arrives or ~2 s pass (`None`).
    pub fn wait(&mut self, time: &Timebase) -> Option<Completion> {
        let start = svc::rdtsc();
        loop {
            if let Some(c) = self.poll() {
                return Some(c);
            }
            if time.since(start) > TIMEOUT_NS {
                return None;
            }
            core::hint::spin_loop();
        }
    }

    /// Pushes `bufs`, notifies, waits for that chain; `None` (after printing
    /// `virtio dev=<i> queue=<q> timeout`) if it does not come back.
    pub fn round_trip(&mut self, dev: &Device, bufs: &[Buf]) -> Option<Completion> {
        let Some(head) = self.push(bufs) else {
            Line::new()
                .s("virtio dev=")
                .dec(dev.index as u64)
                .s(" queue=")
                .dec(u64::from(self.index))
                .s(" full")
                .end();
            return None;
        };
        self.notify(&dev.transport);
        loop {
            match self.wait(&dev.time) {
                Some(c) if c.head == head => return Some(c),
                Some(_) => continue,
                None => {
                    Line::new()
                        .s("virtio dev=")
                        .dec(dev.index as u64)
                        .s(" queue=")
                        .dec(u64::from(self.index))
                        .s(" timeout")
                        .end();
                    return None;
                }
            }
        }
    }
}

// ---- devices ---------------------------------------------------------------

/// An initialised device, as the type drivers see it.
pub struct Device {
    pub index: usize,
    /// Device ID (2 block, 3 console, ...).
    pub device_id: u32,
    /// Its interrupt (GSI = IOAPIC pin) as the DSDT or command line says.
    pub irq: u32,
    pub transport: Transport,
    /// Features accepted (FEATURES_OK stuck with these).
    pub features: u64,
    pub time: Timebase,
}

impl Device {
    pub fn has(&self, feature_bit: u32) -> bool {
        self.features & (1 << feature_bit) != 0
    }
}

/// What a device type's driver asks of initialisation.
struct Kind {
    /// Feature bits accepted when offered (VERSION_1 is required).
    features: u64,
    /// Queues to set up (0..queues).
    queues: u32,
}

fn kind(device_id: u32) -> Kind {
    match device_id {
        blk::DEVICE_ID => Kind {
            features: blk::FEATURES,
            queues: 1,
        },
        net::DEVICE_ID => Kind {
            features: net::FEATURES,
            queues: 2,
        },
        vcon::DEVICE_ID => Kind {
            features: vcon::FEATURES,
            queues: 2,
        },
        _ => Kind {
            features: 0,
            queues: 0,
        },
    }
}

/// Runs the virtio drivers over the devices the DSDT declares, or if it
/// declares none, those on the command line.
pub fn run(cmdline: &[u8], tables: &Tables, clock: Option<&Clock>) {
    let time = Timebase::new(clock);
    let mut list = [(0u64, 0u64, 0u32); MAX_DEVICES];
    let mut count = 0;
    if let Some(body) = tables.dsdt {
        aml::virtio_devices(body, &mut |dev: aml::Device| {
            if count < MAX_DEVICES {
                list[count] = (dev.addr, dev.size, dev.irq);
                count += 1;
            }
        });
    }
    if count == 0 {
        for dev in cmdline::devices(cmdline).take(MAX_DEVICES) {
            list[count] = (dev.addr, dev.size, dev.irq.min(u64::from(u32::MAX)) as u32);
            count += 1;
        }
    }
    for (index, &(addr, size, irq)) in list[..count].iter().enumerate() {
        device(index, addr, size, irq, cmdline, time);
    }
}

/// Why initialisation stopped.
enum Fail {
    Magic,
    Version(u32),
    Reset,
    NoVersion1,
    FeaturesRejected,
    Queue(u32, QueueError),
    NeedsReset,
}

impl Fail {
    fn describe(&self, line: &mut Line) {
        match self {
            Fail::Magic => line.s("bad-magic"),
            Fail::Version(v) => line.s("version-").dec(u64::from(*v)),
            Fail::Reset => line.s("reset-timeout"),
            Fail::NoVersion1 => line.s("no-version-1"),
            Fail::FeaturesRejected => line.s("features-rejected"),
            Fail::Queue(q, e) => line.s("queue-").dec(u64::from(*q)).s(match e {
                QueueError::InUse => "-in-use",
                QueueError::Unavailable => "-unavailable",
                QueueError::NotReady => "-not-ready",
            }),
            Fail::NeedsReset => line.s("needs-reset"),
        };
    }
}

fn device(index: usize, addr: u64, size: u64, irq: u32, cmdline: &[u8], time: Timebase) {
    let mut line = Line::new();
    line.s("virtio dev=")
        .dec(index as u64)
        .s(" addr=")
        .hex(addr);
    let Some(t) = Transport::new(addr, size) else {
        line.s(" status=unusable-window").end();
        return;
    };
    let magic = t.read(REG_MAGIC);
    let version = t.read(REG_VERSION);
    let device_id = t.read(REG_DEVICE_ID);
    line.s(" device-id=").dec(u64::from(device_id));
    if magic == MAGIC && version == 2 && device_id == 0 {
        line.s(" placeholder").end();
        return;
    }
    let mut offered = 0;
    let mut queues: [Option<Queue>; 2] = [None, None];
    let result = init(
        &t,
        magic,
        version,
        device_id,
        &time,
        &mut offered,
        &mut queues,
    );
    line.s(" features=").hex16(offered).s(" status=");
    let accepted = match result {
        Ok(accepted) => {
            line.s("ok").end();
            accepted
        }
        Err(fail) => {
            fail.describe(&mut line);
            line.end();
            if !matches!(fail, Fail::Magic | Fail::Version(_)) {
                t.add_status(FAILED);
            }
            return;
        }
    };
    let dev = Device {
        index,
        device_id,
        irq,
        transport: t,
        features: accepted,
        time,
    };
    let [q0, q1] = queues;
    match device_id {
        blk::DEVICE_ID => {
            if let Some(q) = q0 {
                blk::run(&dev, q, cmdline);
            }
        }
        vcon::DEVICE_ID => {
            if let (Some(mut rx), Some(mut tx)) = (q0, q1) {
                vcon::run(&dev, &mut rx, &mut tx, cmdline);
                if cmdline::param(cmdline, "probe.irq") == Some(b"1") {
                    irq::run(&dev, &mut tx, cmdline);
                }
            }
        }
        net::DEVICE_ID => {
            if let (Some(rx), Some(tx)) = (q0, q1) {
                net::run(&dev, rx, tx, cmdline);
            }
        }
        _ => {}
    }
    if let Some(seconds) = cmdline::param_u64(cmdline, "probe.virtio-faults").filter(|&s| s > 0) {
        if matches!(device_id, blk::DEVICE_ID | vcon::DEVICE_ID) {
            let detail = cmdline::param(cmdline, "probe.virtio-faults-detail") == Some(b"1");
            faults::run(&dev, seconds.min(600), detail);
        }
    }
    if !t.reset(&time) {
        Line::new()
            .s("virtio dev=")
            .dec(index as u64)
            .s(" reset timeout")
            .end();
    }
}

/// §3.1.1 up to DRIVER_OK; returns the accepted features.
fn init(
    t: &Transport,
    magic: u32,
    version: u32,
    device_id: u32,
    time: &Timebase,
    offered: &mut u64,
    queues: &mut [Option<Queue>; 2],
) -> Result<u64, Fail> {
    if magic != MAGIC {
        return Err(Fail::Magic);
    }
    if version != 2 {
        return Err(Fail::Version(version));
    }
    if !t.reset(time) {
        return Err(Fail::Reset);
    }
    t.add_status(ACKNOWLEDGE);
    t.add_status(DRIVER);
    t.write(REG_DEVICE_FEATURES_SEL, 0);
    let lo = t.read(REG_DEVICE_FEATURES);
    t.write(REG_DEVICE_FEATURES_SEL, 1);
    let hi = t.read(REG_DEVICE_FEATURES);
    *offered = u64::from(hi) << 32 | u64::from(lo);
    if *offered & F_VERSION_1 == 0 {
        return Err(Fail::NoVersion1);
    }
    let kind = kind(device_id);
    let accepted = *offered & (F_VERSION_1 | kind.features);
    t.write(REG_DRIVER_FEATURES_SEL, 0);
    t.write(REG_DRIVER_FEATURES, accepted as u32);
    t.write(REG_DRIVER_FEATURES_SEL, 1);
    t.write(REG_DRIVER_FEATURES, (accepted >> 32) as u32);
    t.add_status(FEATURES_OK);
    if t.status() & FEATURES_OK == 0 {
        return Err(Fail::FeaturesRejected);
    }
    for q in 0..kind.queues {
        match Queue::setup(t, q, q as usize) {
            Ok(queue) => queues[q as usize] = Some(queue),
            Err(e) => return Err(Fail::Queue(q, e)),
        }
    }
    t.add_status(DRIVER_OK);
    if t.status() & DEVICE_NEEDS_RESET != 0 {
        return Err(Fail::NeedsReset);
    }
    Ok(accepted)
}

/// Resets `dev` and initialises it again as at first (same features, fresh
/// queues on the same static memory); `None` (after a line saying why) if
/// it fails.
pub fn restart(dev: &Device) -> Option<[Option<Queue>; 2]> {
    let t = &dev.transport;
    let mut offered = 0;
    let mut queues: [Option<Queue>; 2] = [None, None];
    let result = init(
        t,
        t.read(REG_MAGIC),
        t.read(REG_VERSION),
        dev.device_id,
        &dev.time,
        &mut offered,
        &mut queues,
    );
    match result {
        Ok(_) => Some(queues),
        Err(fail) => {
            let mut line = Line::new();
            line.s("virtio dev=")
                .dec(dev.index as u64)
                .s(" restart status=");
            fail.describe(&mut line);
            line.end();
            None
        }
    }
}
