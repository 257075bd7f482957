//! Per-chain work of the block device: parse the chain (`request.rs`), run
//! the request against the backend, write the status byte. Guest faults
//! are answered with VIRTIO_BLK_S_IOERR / UNSUPP (or used length 0 when
//! there is no status byte) and logged at warn level, rate-limited; host
//! I/O failures are answered with IOERR and logged at error level,
//! rate-limited.
//!
//! Implements virtio 1.2 §5.2.6.2 (device requirements: IOERR for writes
//! to a read-only device without writing, UNSUPP for unknown types,
//! write-through completion when VIRTIO_BLK_F_FLUSH was offered but not
//! negotiated, reads of zeroed ranges return zeros) and §5.2.6.4 (GET_ID's
//! NUL-padded 20-byte serial).

use log::{debug, error};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use vm_memory::{Bytes, GuestMemory, GuestMemoryMmap, Permissions};

use super::backend::{Access, BlockBackend};
use super::bounce::{direct_ok, Bounce, BounceError, Direction};
use super::request::{parse, Kind, Limits, Reply, Request, Scratch, Segment};
use super::uring::{Op, PushError, UringEngine};
use super::{SECTOR_SIZE, SERIAL_LEN};
use crate::virtqueue::{Chain, ChainHandler, FaultLog};

pub(super) const STATUS_OK: u8 = VIRTIO_BLK_S_OK as u8;
pub(super) const STATUS_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const STATUS_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// Counts host I/O failures and logs them at error level for the first
/// few and then at powers of two, debug otherwise.
#[derive(Debug, Default)]
pub(super) struct IoErrorLog {
    count: u64,
}

impl IoErrorLog {
    pub(super) fn report(&mut self, what: &str, e: &std::io::Error) {
        self.count = self.count.saturating_add(1);
        if self.count <= 8 || self.count.is_power_of_two() {
            error!("virtio-blk: {what} failed: {e} (I/O error {})", self.count);
        } else {
            debug!("virtio-blk: {what} failed: {e} (I/O error {})", self.count);
        }
    }

    /// Failures so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

/// What the device negotiated, as requests need it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// Whether writes are refused.
    pub access: Access,
    /// The features the driver accepted.
    pub acked_features: u64,
    /// GET_ID's answer.
    pub serial: [u8; SERIAL_LEN],
    /// What the device accepts.
    pub limits: Limits,
}

impl Settings {
    fn acked(&self, bit: u32) -> bool {
        self.acked_features & (1u64 << bit) != 0
    }
}

/// Serves request chains against `backend`.
pub(super) struct Handler<'a, B: BlockBackend> {
    pub backend: &'a mut B,
    pub scratch: &'a mut Scratch,
    pub settings: &'a Settings,
    pub faults: &'a mut FaultLog,
    pub io_errors: &'a mut IoErrorLog,
    /// The io_uring engine, when the device has one.
    pub engine: Option<&'a mut UringEngine>,
    /// Staging for requests O_DIRECT cannot take as they are.
    pub bounce: &'a mut Bounce,
}

/// Why a transfer stopped.
enum TransferError {
    /// Guest memory could not be mapped (only if the driver rewrote the
    /// chain after it was checked).
    Guest(vm_memory::GuestMemoryError),
    /// The backend failed.
    Host(std::io::Error),
}

/// Which way a transfer goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transfer {
    /// Disk → guest memory.
    ToGuest,
    /// Guest memory → disk.
    FromGuest,
}

impl<B: BlockBackend> ChainHandler for Handler<'_, B> {
    fn wants_more(&self) -> bool {
        self.engine.as_ref().is_none_or(|e| e.has_room())
    }

    fn handle(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        self.serve(mem, chain, false).unwrap_or(0)
    }

    fn start(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> Option<u32> {
        self.serve(mem, chain, true)
    }
}

/// Where a request went.
enum Started {
    /// Queued on io_uring: it completes later.
    Queued,
    /// Finished with this status byte.
    Done(u8),
    /// Not for the engine: run it synchronously.
    Sync,
}

impl<B: BlockBackend> Handler<'_, B> {
    /// Serve one chain; `None` when it went to io_uring (only if
    /// `may_defer`).
    fn serve(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>, may_defer: bool) -> Option<u32> {
        let head = chain.head_index();
        let (reply, request) = match parse(mem, chain, &self.settings.limits, self.scratch) {
            Ok(parsed) => parsed,
            Err(fault) => {
                self.faults.report("virtio-blk", &fault);
                return Some(0);
            }
        };
        let status = match request {
            Ok(request) => {
                let started = match may_defer {
                    true => match self.engine.as_deref_mut() {
                        Some(engine) => start_async(
                            mem,
                            engine,
                            Queued {
                                head,
                                reply,
                                request: &request,
                            },
                            &*self.backend,
                            self.settings,
                            self.faults,
                            self.io_errors,
                        ),
                        None => Started::Sync,
                    },
                    false => Started::Sync,
                };
                match started {
                    Started::Queued => return None,
                    Started::Done(status) => status,
                    Started::Sync => execute(
                        mem,
                        &request,
                        Backing {
                            backend: self.backend,
                            bounce: self.bounce,
                        },
                        self.settings,
                        self.faults,
                        self.io_errors,
                    ),
                }
            }
            Err(fault) => {
                self.faults.report("virtio-blk", &fault);
                fault.status()
            }
        };
        Some(finish(mem, reply, status, self.faults))
    }
}

/// A request bound for the engine.
struct Queued<'r, 's> {
    head: u16,
    reply: Reply,
    request: &'r Request<'s>,
}

/// Queue IN, OUT and FLUSH on `engine`. Everything else, writes to a
/// read-only disk, and writes that must be write-through (FLUSH not
/// negotiated, §5.2.6.2) stay synchronous.
fn start_async<B: BlockBackend>(
    mem: &GuestMemoryMmap,
    engine: &mut UringEngine,
    q: Queued<'_, '_>,
    backend: &B,
    settings: &Settings,
    faults: &mut FaultLog,
    io_errors: &mut IoErrorLog,
) -> Started {
    let Some(fd) = backend.raw_fd() else {
        return Started::Sync;
    };
    if let Kind::Read { offset } | Kind::Write { offset } = q.request.kind {
        if !direct_ok(backend.alignment(), q.request.segments, offset) {
            return Started::Sync;
        }
    }
    let writable = settings.access == Access::ReadWrite;
    let (op, offset) = match q.request.kind {
        Kind::Read { offset } => (Op::Read, offset),
        Kind::Write { offset } if writable && settings.acked(VIRTIO_BLK_F_FLUSH) => {
            (Op::Write, offset)
        }
        Kind::Flush => (Op::Flush, 0),
        _ => return Started::Sync,
    };
    let segments = q.request.segments;
    match engine.push(fd, mem, q.head, q.reply, op, offset, segments) {
        Ok(()) => Started::Queued,
        Err(PushError::Guest(e)) => {
            faults.report("virtio-blk data", &e);
            Started::Done(STATUS_IOERR)
        }
        Err(PushError::Host(e)) => {
            io_errors.report(operation(q.request.kind), &e);
            Started::Done(STATUS_IOERR)
        }
    }
}

/// Write `status` for the request answered at `reply`; returns the used
/// length.
pub(super) fn finish(
    mem: &GuestMemoryMmap,
    reply: Reply,
    status: u8,
    faults: &mut FaultLog,
) -> u32 {
    if let Err(e) = mem.write_obj(status, reply.status) {
        // Checked by parse; only a changed memory map gets here.
        faults.report("virtio-blk status", &e);
        return 0;
    }
    // A refused or failed request wrote only its status byte, and the
    // used length must not claim more than the device wrote (§2.7.8.1).
    if status == STATUS_OK {
        reply.used_len
    } else {
        1
    }
}

/// The backend and its bounce buffer, as the synchronous path needs them.
struct Backing<'a, B: BlockBackend> {
    backend: &'a mut B,
    bounce: &'a mut Bounce,
}

/// Run one checked request; returns the status byte.
fn execute<B: BlockBackend>(
    mem: &GuestMemoryMmap,
    request: &Request<'_>,
    backing: Backing<'_, B>,
    settings: &Settings,
    faults: &mut FaultLog,
    io_errors: &mut IoErrorLog,
) -> u8 {
    let writes = matches!(
        request.kind,
        Kind::Write { .. } | Kind::Discard | Kind::WriteZeroes
    );
    let unnegotiated = match request.kind {
        Kind::Discard => !settings.acked(VIRTIO_BLK_F_DISCARD),
        Kind::WriteZeroes => !settings.acked(VIRTIO_BLK_F_WRITE_ZEROES),
        Kind::Unsupported(_) => true,
        _ => false,
    };
    if unnegotiated {
        debug!("virtio-blk: unsupported request {:?}", request.kind);
        return STATUS_UNSUPP;
    }
    if writes && settings.access == Access::ReadOnly {
        faults.report("virtio-blk", &"write to a read-only disk");
        return STATUS_IOERR;
    }
    let Backing { backend, bounce } = backing;
    let result = match request.kind {
        Kind::Read { offset } => transfer(
            mem,
            request.segments,
            offset,
            Transfer::ToGuest,
            backend,
            bounce,
        ),
        Kind::Write { offset } => transfer(
            mem,
            request.segments,
            offset,
            Transfer::FromGuest,
            backend,
            bounce,
        ),
        Kind::Flush => backend.flush().map_err(TransferError::Host),
        Kind::GetId => write_serial(mem, request, &settings.serial),
        Kind::Discard | Kind::WriteZeroes => ranges(request, backend),
        Kind::Unsupported(_) => return STATUS_UNSUPP,
    };
    // Without a negotiated FLUSH every write must be stable when it
    // completes (§5.2.6.2, write-through).
    let result = match result {
        Ok(()) if writes && !settings.acked(VIRTIO_BLK_F_FLUSH) => {
            backend.flush().map_err(TransferError::Host)
        }
        other => other,
    };
    match result {
        Ok(()) => STATUS_OK,
        Err(TransferError::Guest(e)) => {
            faults.report("virtio-blk data", &e);
            STATUS_IOERR
        }
        Err(TransferError::Host(e)) => {
            io_errors.report(operation(request.kind), &e);
            STATUS_IOERR
        }
    }
}

fn operation(kind: Kind) -> &'static str {
    match kind {
        Kind::Read { .. } => "read",
        Kind::Write { .. } => "write",
        Kind::Flush => "flush",
        Kind::GetId => "get id",
        Kind::Discard => "discard",
        Kind::WriteZeroes => "write zeroes",
        Kind::Unsupported(_) => "unsupported request",
    }
}

/// Move the data of `segments` between guest memory and the disk at
/// `offset`, slice by slice (a buffer may span guest memory regions), or
/// through the bounce buffer when the backend's alignment demands it.
fn transfer<B: BlockBackend>(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    mut offset: u64,
    direction: Transfer,
    backend: &mut B,
    bounce: &mut Bounce,
) -> Result<(), TransferError> {
    if !direct_ok(backend.alignment(), segments, offset) {
        let direction = match direction {
            Transfer::ToGuest => Direction::ToGuest,
            Transfer::FromGuest => Direction::FromGuest,
        };
        return bounce
            .transfer(mem, segments, offset, direction, backend)
            .map_err(|e| match e {
                BounceError::Guest(e) => TransferError::Guest(e),
                BounceError::Host(e) => TransferError::Host(e),
            });
    }
    let access = match direction {
        Transfer::ToGuest => Permissions::Write,
        Transfer::FromGuest => Permissions::Read,
    };
    for s in segments {
        let slices = mem
            .get_slices(s.addr, s.len as usize, access)
            .map_err(TransferError::Guest)?;
        for slice in slices {
            let mut slice = slice.map_err(TransferError::Guest)?;
            match direction {
                Transfer::ToGuest => backend.read_at(offset, &mut slice),
                Transfer::FromGuest => backend.write_at(offset, &slice),
            }
            .map_err(TransferError::Host)?;
            offset = offset.saturating_add(slice.len() as u64);
        }
    }
    Ok(())
}

/// GET_ID: the serial, NUL-padded to 20 bytes (no terminator at 20),
/// into the first bytes of the data buffers.
fn write_serial(
    mem: &GuestMemoryMmap,
    request: &Request<'_>,
    serial: &[u8; SERIAL_LEN],
) -> Result<(), TransferError> {
    // Bounded by SERIAL_LEN.
    let mut left = &serial[..request.data_len.min(SERIAL_LEN as u64) as usize];
    for s in request.segments {
        if left.is_empty() {
            break;
        }
        let n = left.len().min(s.len as usize);
        mem.write_slice(&left[..n], s.addr)
            .map_err(TransferError::Guest)?;
        left = &left[n..];
    }
    Ok(())
}

/// DISCARD or WRITE_ZEROES over every range.
fn ranges<B: BlockBackend>(request: &Request<'_>, backend: &mut B) -> Result<(), TransferError> {
    for r in request.ranges.iter().filter(|r| r.sectors > 0) {
        // Checked against the capacity, itself a byte count / 512.
        let offset = r.sector.saturating_mul(SECTOR_SIZE);
        let len = u64::from(r.sectors) * SECTOR_SIZE;
        match request.kind {
            Kind::Discard => backend.discard(offset, len),
            _ => backend.write_zeroes(offset, len, r.unmap),
        }
        .map_err(TransferError::Host)?;
    }
    Ok(())
}
