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

use core::ptr::{read_volatile, write_volatile};

use crate::acpi::Tables;
use crate::kvmclock::Clock;
use crate::out::Line;
use crate::{aml, blk, cmdline, faults, hostile, irq, net, svc, vcon};

pub use crate::virtq::{
    Buf, Queue, QueueError, BENCH_QUEUE_SIZE, DESC_INDIRECT, DESC_NEXT, DESC_WRITE, QUEUE_SIZE,
};

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
pub(crate) const REG_QUEUE_SEL: u64 = 0x030;
pub(crate) const REG_QUEUE_NUM_MAX: u64 = 0x034;
pub(crate) const REG_QUEUE_NUM: u64 = 0x038;
pub(crate) const REG_QUEUE_READY: u64 = 0x044;
const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
pub(crate) const REG_QUEUE_DESC: u64 = 0x080;
pub(crate) const REG_QUEUE_DRIVER: u64 = 0x090;
pub(crate) const REG_QUEUE_DEVICE: u64 = 0x0a0;
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

    pub(crate) fn read(&self, offset: u64) -> u32 {
        // SAFETY: `base + offset` (< 0x100, 4-aligned) is in the MMIO hole (checked
        // in `new`), mapped user-accessible and uncached; loads touch no probe memory.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    pub(crate) fn write(&self, offset: u64, value: u32) {
        // SAFETY: as `read`; a register store changes device state only
        // (queue addresses written are the probe's own static rings).
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    pub(crate) fn write64(&self, offset: u64, value: u64) {
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

    pub(crate) fn notify(&self, queue: u32) {
        self.write(REG_QUEUE_NOTIFY, queue);
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
    /// The queue size asked for (restart asks for the same).
    pub queue_size: u16,
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
    if let Some(seconds) = cmdline::param_u64(cmdline, "probe.hostile").filter(|&s| s > 0) {
        let seed = cmdline::param_u64(cmdline, "probe.hostile-seed").unwrap_or_else(svc::rdtsc);
        let mut slots = [0u64; MAX_DEVICES];
        for (s, d) in slots.iter_mut().zip(&list[..count]) {
            *s = d.0;
        }
        hostile::run(seconds.min(600), seed, &slots[..count]);
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
    let queue_size = queue_size(cmdline);
    let ident = Ident {
        magic,
        version,
        device_id,
        queue_size,
    };
    let result = init(&t, ident, &time, &mut offered, &mut queues);
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
        queue_size,
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

/// The queue size drivers ask for: larger for the throughput benchmarks,
/// which keep many requests in flight.
fn queue_size(cmdline: &[u8]) -> u16 {
    let bench = cmdline::param(cmdline, "probe.blk-bench").is_some()
        || cmdline::param(cmdline, "probe.console-bench").is_some();
    if bench {
        BENCH_QUEUE_SIZE
    } else {
        QUEUE_SIZE
    }
}

/// What a device's registers said before initialisation, and the queue
/// size to ask for.
#[derive(Clone, Copy)]
struct Ident {
    magic: u32,
    version: u32,
    device_id: u32,
    queue_size: u16,
}

/// §3.1.1 up to DRIVER_OK; returns the accepted features.
fn init(
    t: &Transport,
    ident: Ident,
    time: &Timebase,
    offered: &mut u64,
    queues: &mut [Option<Queue>; 2],
) -> Result<u64, Fail> {
    let Ident {
        magic,
        version,
        device_id,
        queue_size,
    } = ident;
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
        match Queue::setup(t, q, q as usize, queue_size) {
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
    let ident = Ident {
        magic: t.read(REG_MAGIC),
        version: t.read(REG_VERSION),
        device_id: dev.device_id,
        queue_size: dev.queue_size,
    };
    let result = init(t, ident, &dev.time, &mut offered, &mut queues);
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
