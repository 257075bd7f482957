//! The block device: construction options (serial, geometry), feature
//! bits, configuration space, activation, reset, and dispatch of queue
//! notifications to `handler.rs`.
//!
//! Implements virtio 1.2 §5.2.1–§5.2.5 (device ID 2, one requestq, the
//! feature bits, the configuration layout of §5.2.4 and device
//! initialization) and §2.1.2 (DEVICE_NEEDS_RESET) when the guest breaks
//! the queue.

use std::os::fd::RawFd;
use std::sync::Arc;

use log::{debug, info};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::backend::{Access, BlockBackend, Capabilities};
use super::bounce::Bounce;
use super::handler::{finish, Handler, IoErrorLog, Settings, STATUS_IOERR, STATUS_OK};
use super::request::{Limits, Scratch};
use super::uring::{Op, UringEngine};
use super::{
    MAX_RANGES, MAX_RANGE_SECTORS, QUEUE_SIZE, SECTOR_SIZE, SEG_MAX, SERIAL_LEN, SIZE_MAX,
};
use crate::device::{
    exact_queues, read_config_bytes, ActivateError, DeviceError, VirtioDevice, DEVICE_TYPE_BLOCK,
    FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC, FEATURE_VERSION_1,
};
use crate::interrupt::VirtioInterrupt;
use crate::virtqueue::{
    report_needs_reset, serve_queue, signal_if_used, signal_used, FaultLog, QueueFault, ServeError,
};

/// The request queue's index.
const REQUEST_QUEUE: u16 = 0;

// Configuration space offsets (§5.2.4, struct virtio_blk_config).
pub(super) const CONFIG_CAPACITY: usize = 0;
pub(super) const CONFIG_SIZE_MAX: usize = 8;
pub(super) const CONFIG_SEG_MAX: usize = 12;
pub(super) const CONFIG_BLK_SIZE: usize = 20;
pub(super) const CONFIG_PHYSICAL_BLOCK_EXP: usize = 24;
pub(super) const CONFIG_ALIGNMENT_OFFSET: usize = 25;
pub(super) const CONFIG_MIN_IO_SIZE: usize = 26;
pub(super) const CONFIG_OPT_IO_SIZE: usize = 28;
pub(super) const CONFIG_MAX_DISCARD_SECTORS: usize = 36;
pub(super) const CONFIG_MAX_DISCARD_SEG: usize = 40;
pub(super) const CONFIG_DISCARD_SECTOR_ALIGNMENT: usize = 44;
pub(super) const CONFIG_MAX_WRITE_ZEROES_SECTORS: usize = 48;
pub(super) const CONFIG_MAX_WRITE_ZEROES_SEG: usize = 52;
pub(super) const CONFIG_WRITE_ZEROES_MAY_UNMAP: usize = 56;
/// Bytes of configuration space served (through unused1, before the
/// secure-erase fields); the rest reads as 0.
pub(super) const CONFIG_LEN: usize = 60;

/// Why a [`Block`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The serial does not fit GET_ID's 20 bytes.
    #[error("serial {0:?} is longer than 20 bytes")]
    SerialTooLong(String),
    /// The serial has non-ASCII or NUL bytes.
    #[error("serial {0:?} is not ASCII without NUL bytes")]
    SerialNotAscii(String),
    /// The logical block size is not a power of two in 512..=65536.
    #[error("logical block size {0} is not a power of two from 512 to 65536")]
    LogicalBlockSize(u32),
    /// The physical block (logical << exponent) is above 1 MiB.
    #[error("physical block exponent {0} makes blocks larger than 1 MiB")]
    PhysicalBlockExponent(u8),
}

/// The string GET_ID returns: up to 20 ASCII bytes, NUL-padded (§5.2.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Serial([u8; SERIAL_LEN]);

impl Serial {
    /// `id` as a serial: at most 20 bytes of ASCII, no NUL.
    pub fn new(id: &str) -> Result<Self, BlockError> {
        if id.len() > SERIAL_LEN {
            return Err(BlockError::SerialTooLong(id.to_string()));
        }
        if !id.bytes().all(|b| b.is_ascii() && b != 0) {
            return Err(BlockError::SerialNotAscii(id.to_string()));
        }
        let mut bytes = [0u8; SERIAL_LEN];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Ok(Serial(bytes))
    }

    /// The 20 bytes GET_ID writes.
    pub fn as_bytes(&self) -> &[u8; SERIAL_LEN] {
        &self.0
    }
}

/// Block sizes and I/O hints shown to the guest (§5.2.4: blk_size and
/// topology); a passthrough mode can copy the host device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGeometry {
    /// blk_size: the logical block size in bytes (a power of two, 512 to
    /// 65536).
    pub logical_block_size: u32,
    /// physical_block_exp: log2 of physical blocks per logical block.
    pub physical_block_exponent: u8,
    /// alignment_offset: offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// min_io_size: suggested minimum I/O size, in logical blocks (0: none).
    pub min_io_size: u16,
    /// opt_io_size: optimal sustained I/O size, in logical blocks (0: none).
    pub opt_io_size: u32,
}

impl Default for BlockGeometry {
    /// 512-byte blocks, no hints.
    fn default() -> Self {
        BlockGeometry {
            logical_block_size: SECTOR_SIZE as u32,
            physical_block_exponent: 0,
            alignment_offset: 0,
            min_io_size: 0,
            opt_io_size: 0,
        }
    }
}

impl BlockGeometry {
    fn check(&self) -> Result<(), BlockError> {
        let size = self.logical_block_size;
        if !size.is_power_of_two() || !(512..=65536).contains(&size) {
            return Err(BlockError::LogicalBlockSize(size));
        }
        let physical = u64::from(size).checked_shl(self.physical_block_exponent.into());
        if physical.is_none_or(|p| p > 1 << 20) {
            return Err(BlockError::PhysicalBlockExponent(
                self.physical_block_exponent,
            ));
        }
        Ok(())
    }

    /// The physical block size in 512-byte sectors (checked to fit).
    fn physical_sectors(&self) -> u32 {
        (self.logical_block_size << self.physical_block_exponent) / SECTOR_SIZE as u32
    }
}

/// Request limits shown to the guest (§5.2.4: size_max, seg_max,
/// max_discard_sectors, discard_sector_alignment); a passthrough disk
/// copies its host device's. Each is clamped to what the device can do
/// (`SIZE_MAX`, `SEG_MAX`, `MAX_RANGE_SECTORS`); 0 means that maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferLimits {
    /// Most bytes in one data descriptor.
    pub size_max: u32,
    /// Most data descriptors in one request.
    pub seg_max: u32,
    /// Most sectors in one discard range.
    pub max_discard_sectors: u32,
    /// Discard granularity in 512-byte sectors (0: the physical block).
    pub discard_alignment: u32,
}

impl TransferLimits {
    /// Each limit within the device's own maxima.
    fn clamped(self, geometry: &BlockGeometry) -> TransferLimits {
        let pick = |v: u32, max: u32, min: u32| if v == 0 { max } else { v.clamp(min, max) };
        TransferLimits {
            size_max: pick(self.size_max, SIZE_MAX, geometry.logical_block_size),
            seg_max: pick(self.seg_max, SEG_MAX, 1),
            max_discard_sectors: pick(self.max_discard_sectors, MAX_RANGE_SECTORS, 1),
            discard_alignment: match self.discard_alignment {
                0 => geometry.physical_sectors(),
                sectors => sectors,
            },
        }
    }
}

/// How a [`Block`] presents itself, beyond what its backend decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockOptions {
    /// GET_ID's answer (default: empty, all NUL).
    pub serial: Serial,
    /// Block sizes and hints (default: 512-byte blocks).
    pub geometry: BlockGeometry,
    /// Request limits (default: the device's maxima).
    pub limits: TransferLimits,
    /// How I/O runs (default: io_uring where available).
    pub engine: IoEngine,
}

/// How a [`Block`] runs reads, writes and flushes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoEngine {
    /// io_uring when the backend exposes a descriptor
    /// ([`BlockBackend::raw_fd`]) and the kernel allows it; synchronous
    /// otherwise (logged at info level).
    #[default]
    Auto,
    /// Synchronous calls into the backend on the thread that processes the
    /// queue.
    Sync,
}

/// Everything the device holds between DRIVER_OK and reset.
struct Active {
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    queue: Queue,
}

/// A virtio block device over backend `B`.
///
/// Offers VIRTIO_BLK_F_FLUSH, BLK_SIZE, SEG_MAX, SIZE_MAX and TOPOLOGY;
/// RO for a read-only backend; DISCARD and WRITE_ZEROES when a writable
/// backend supports them; VIRTIO_F_RING_EVENT_IDX and
/// VIRTIO_F_RING_INDIRECT_DESC. Not offered: GEOMETRY, CONFIG_WCE, MQ,
/// LIFETIME, SECURE_ERASE, ZONED.
pub struct Block<B: BlockBackend> {
    backend: B,
    settings: Settings,
    avail_features: u64,
    config: [u8; CONFIG_LEN],
    scratch: Scratch,
    active: Option<Active>,
    broken: bool,
    faults: FaultLog,
    io_errors: IoErrorLog,
    /// The io_uring engine; `None`: synchronous I/O.
    engine: Option<UringEngine>,
    /// Staging for requests an O_DIRECT backend cannot take as they are.
    bounce: Bounce,
}

impl<B: BlockBackend> Block<B> {
    /// A block device over `backend`, whose capacity (whole 512-byte
    /// sectors of it), access and capabilities it reads once, here.
    pub fn new(backend: B, options: BlockOptions) -> Result<Self, BlockError> {
        options.geometry.check()?;
        let capacity = backend.capacity() / SECTOR_SIZE;
        let access = backend.access();
        let caps = match access {
            Access::ReadWrite => backend.capabilities(),
            Access::ReadOnly => Capabilities::default(),
        };
        let transfer = options.limits.clamped(&options.geometry);
        let limits = Limits {
            capacity,
            max_descriptors: QUEUE_SIZE,
            seg_max: transfer.seg_max,
            size_max: transfer.size_max,
            max_ranges: MAX_RANGES,
            max_range_sectors: transfer.max_discard_sectors,
        };
        let engine = match options.engine {
            IoEngine::Auto if backend.raw_fd().is_some() => match UringEngine::new(QUEUE_SIZE) {
                Ok(engine) => Some(engine),
                Err(e) => {
                    info!("virtio-blk: io_uring unavailable ({e}): synchronous I/O");
                    None
                }
            },
            _ => None,
        };
        Ok(Block {
            engine,
            backend,
            settings: Settings {
                access,
                acked_features: 0,
                serial: *options.serial.as_bytes(),
                limits,
            },
            avail_features: features(access, &caps),
            config: config_space(capacity, &options.geometry, &transfer, &caps),
            scratch: Scratch::new(SEG_MAX),
            active: None,
            broken: false,
            faults: FaultLog::default(),
            io_errors: IoErrorLog::default(),
            bounce: Bounce::default(),
        })
    }

    /// The capacity the guest sees, in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.settings.limits.capacity
    }

    /// Requests that went through the bounce buffer (misaligned for
    /// O_DIRECT).
    pub fn bounced(&self) -> u64 {
        self.bounce.count()
    }

    /// Requests merged into the transfer of the one before them (io_uring
    /// engine; 0 with synchronous I/O).
    pub fn merged(&self) -> u64 {
        self.engine.as_ref().map_or(0, UringEngine::merged)
    }

    /// Whether the guest may write.
    pub fn access(&self) -> Access {
        self.settings.access
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Host I/O failures so far (each answered with VIRTIO_BLK_S_IOERR and
    /// logged, rate-limited).
    pub fn io_errors(&self) -> u64 {
        self.io_errors.count()
    }

    /// Whether reads, writes and flushes run on io_uring.
    pub fn uses_io_uring(&self) -> bool {
        self.engine.is_some()
    }

    /// The eventfd that becomes readable when io_uring requests complete;
    /// call [`process_completions`](Self::process_completions) then. `None`
    /// with synchronous I/O.
    pub fn completion_fd(&self) -> Option<RawFd> {
        self.engine.as_ref().map(UringEngine::eventfd)
    }

    /// Return finished io_uring requests through the used ring (status
    /// OK, or IOERR for a failure or a short transfer), notify the driver
    /// if it wants to know, then serve chains that waited for a free slot.
    pub fn process_completions(&mut self) -> Result<(), DeviceError> {
        self.reap()?;
        self.serve()
    }

    /// The answering half of [`Block::process_completions`].
    fn reap(&mut self) -> Result<(), DeviceError> {
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        let live = self.active.as_mut().filter(|_| !self.broken);
        let (faults, io_errors) = (&mut self.faults, &mut self.io_errors);
        let Some(active) = live else {
            // Nobody to answer (reset drains, so only a broken queue).
            engine.reap(|_| {});
            return Ok(());
        };
        let mut used = false;
        let mut fault = None;
        engine.reap(|done| {
            let status = match done.result {
                Ok(()) => STATUS_OK,
                Err(e) => {
                    let what = match done.op {
                        Op::Read => "read",
                        Op::Write => "write",
                        Op::Flush => "flush",
                    };
                    io_errors.report(what, &e);
                    STATUS_IOERR
                }
            };
            let len = finish(&active.mem, done.reply, status, faults);
            if fault.is_none() {
                match active.queue.add_used(&active.mem, done.head, len) {
                    Ok(()) => used = true,
                    Err(e) => fault = Some(QueueFault::Used(e)),
                }
            }
        });
        let result = match fault {
            Some(fault) => Err(ServeError::Guest(fault)),
            None if used => signal_used(
                &mut active.queue,
                &active.mem,
                &*active.interrupt,
                REQUEST_QUEUE,
            ),
            None => Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(ServeError::Host(e)) => Err(e),
            Err(ServeError::Guest(fault)) => self.fail(fault),
        }
    }

    /// Serve the available chains. Requests that completed while they were submitted (page
    /// cache hits, most of them) are answered at once, without the trip through the completion
    /// eventfd and the event loop: at queue depth 1 that trip is a good part of each request.
    /// A few rounds at most, so that a busy guest does not keep the event loop here.
    fn serve(&mut self) -> Result<(), DeviceError> {
        const INLINE_ROUNDS: usize = 4;
        for _ in 0..INLINE_ROUNDS {
            self.serve_available()?;
            if !self
                .engine
                .as_mut()
                .is_some_and(UringEngine::has_completions)
            {
                break;
            }
            self.reap()?;
        }
        Ok(())
    }

    fn serve_available(&mut self) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut().filter(|_| !self.broken) else {
            return Ok(());
        };
        if !active.queue.ready() {
            return Ok(());
        }
        let mut handler = Handler {
            backend: &mut self.backend,
            scratch: &mut self.scratch,
            settings: &self.settings,
            faults: &mut self.faults,
            io_errors: &mut self.io_errors,
            engine: self.engine.as_mut(),
            bounce: &mut self.bounce,
        };
        let served = serve_queue(&mut active.queue, &active.mem, &mut handler);
        if let Some(engine) = self.engine.as_mut() {
            engine.submit();
        }
        let result = served.map_err(ServeError::from).and_then(|used| {
            signal_if_used(
                used,
                &mut active.queue,
                &active.mem,
                &*active.interrupt,
                REQUEST_QUEUE,
            )
        });
        ServeError::settle(result, |fault| self.fail(fault))
    }

    fn fail(&mut self, fault: QueueFault) -> Result<(), DeviceError> {
        self.broken = true;
        let interrupt = self.active.as_ref().map(|a| &*a.interrupt);
        report_needs_reset(&mut self.faults, "virtio-blk", fault, interrupt)
    }
}

/// The feature bits offered for `access` and `caps`.
fn features(access: Access, caps: &Capabilities) -> u64 {
    let bit = |b: u32| 1u64 << b;
    let mut features = FEATURE_VERSION_1
        | FEATURE_EVENT_IDX
        | FEATURE_INDIRECT_DESC
        | bit(VIRTIO_BLK_F_FLUSH)
        | bit(VIRTIO_BLK_F_BLK_SIZE)
        | bit(VIRTIO_BLK_F_SEG_MAX)
        | bit(VIRTIO_BLK_F_SIZE_MAX)
        | bit(VIRTIO_BLK_F_TOPOLOGY);
    if access == Access::ReadOnly {
        features |= bit(VIRTIO_BLK_F_RO);
    }
    if caps.discard {
        features |= bit(VIRTIO_BLK_F_DISCARD);
    }
    if caps.write_zeroes {
        features |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
    }
    features
}

/// The configuration space (§5.2.4) for `capacity` sectors.
fn config_space(
    capacity: u64,
    geometry: &BlockGeometry,
    limits: &TransferLimits,
    caps: &Capabilities,
) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
    put(CONFIG_CAPACITY, &capacity.to_le_bytes());
    put(CONFIG_SIZE_MAX, &limits.size_max.to_le_bytes());
    put(CONFIG_SEG_MAX, &limits.seg_max.to_le_bytes());
    // geometry (cylinders, heads, sectors) stays 0: GEOMETRY not offered.
    put(CONFIG_BLK_SIZE, &geometry.logical_block_size.to_le_bytes());
    put(
        CONFIG_PHYSICAL_BLOCK_EXP,
        &[geometry.physical_block_exponent],
    );
    put(CONFIG_ALIGNMENT_OFFSET, &[geometry.alignment_offset]);
    put(CONFIG_MIN_IO_SIZE, &geometry.min_io_size.to_le_bytes());
    put(CONFIG_OPT_IO_SIZE, &geometry.opt_io_size.to_le_bytes());
    // writeback and num_queues stay 0: CONFIG_WCE and MQ not offered.
    if caps.discard {
        put(
            CONFIG_MAX_DISCARD_SECTORS,
            &limits.max_discard_sectors.to_le_bytes(),
        );
        put(CONFIG_MAX_DISCARD_SEG, &MAX_RANGES.to_le_bytes());
        put(
            CONFIG_DISCARD_SECTOR_ALIGNMENT,
            &limits.discard_alignment.to_le_bytes(),
        );
    }
    if caps.write_zeroes {
        put(
            CONFIG_MAX_WRITE_ZEROES_SECTORS,
            &MAX_RANGE_SECTORS.to_le_bytes(),
        );
        put(CONFIG_MAX_WRITE_ZEROES_SEG, &MAX_RANGES.to_le_bytes());
        put(
            CONFIG_WRITE_ZEROES_MAY_UNMAP,
            &[u8::from(caps.write_zeroes_may_unmap)],
        );
    }
    c
}

impl<B: BlockBackend> VirtioDevice for Block<B> {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn ack_features(&mut self, features: u64) {
        self.settings.acked_features = features & self.avail_features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        let [queue] = exact_queues::<1>(queues)?;
        self.settings.limits.max_descriptors = queue.size();
        self.broken = false;
        self.active = Some(Active {
            mem,
            interrupt,
            queue,
        });
        Ok(())
    }

    fn reset(&mut self) {
        // In-flight requests write guest memory and own their chains:
        // wait for them before the queue goes away.
        if let Some(engine) = self.engine.as_mut() {
            engine.drain();
        }
        self.active = None;
        self.broken = false;
        self.settings.acked_features = 0;
    }

    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        match index {
            REQUEST_QUEUE => self.serve(),
            _ => {
                debug!("virtio-blk: notification for unknown queue {index}");
                Ok(())
            }
        }
    }

    fn needs_reset(&self) -> bool {
        self.broken
    }
}
