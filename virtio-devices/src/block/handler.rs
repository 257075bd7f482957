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
use super::request::{parse, Kind, Limits, Request, Scratch, Segment};
use super::{SECTOR_SIZE, SERIAL_LEN};
use crate::virtqueue::{Chain, ChainHandler, FaultLog};

const STATUS_OK: u8 = VIRTIO_BLK_S_OK as u8;
const STATUS_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const STATUS_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// Counts host I/O failures and logs them at error level for the first
/// few and then at powers of two, debug otherwise.
#[derive(Debug, Default)]
pub(super) struct IoErrorLog {
    count: u64,
}

impl IoErrorLog {
    fn report(&mut self, what: &str, e: &std::io::Error) {
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
    fn handle(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        let (reply, request) = match parse(mem, chain, &self.settings.limits, self.scratch) {
            Ok(parsed) => parsed,
            Err(fault) => {
                self.faults.report("virtio-blk", &fault);
                return 0;
            }
        };
        let status = match request {
            Ok(request) => execute(
                mem,
                &request,
                self.backend,
                self.settings,
                self.faults,
                self.io_errors,
            ),
            Err(fault) => {
                self.faults.report("virtio-blk", &fault);
                fault.status()
            }
        };
        if let Err(e) = mem.write_obj(status, reply.status) {
            // Checked by parse; only a changed memory map gets here.
            self.faults.report("virtio-blk status", &e);
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
}

/// Run one checked request; returns the status byte.
fn execute<B: BlockBackend>(
    mem: &GuestMemoryMmap,
    request: &Request<'_>,
    backend: &mut B,
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
    let result = match request.kind {
        Kind::Read { offset } => {
            transfer(mem, request.segments, offset, Transfer::ToGuest, backend)
        }
        Kind::Write { offset } => {
            transfer(mem, request.segments, offset, Transfer::FromGuest, backend)
        }
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
/// `offset`, slice by slice (a buffer may span guest memory regions).
fn transfer<B: BlockBackend>(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    mut offset: u64,
    direction: Transfer,
    backend: &mut B,
) -> Result<(), TransferError> {
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
