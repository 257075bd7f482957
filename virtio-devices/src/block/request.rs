//! Descriptor chain → typed virtio-blk request, with every check made
//! before the device touches a data buffer or the backend. Pure: it reads
//! the header and range lists from guest memory and nothing else, and
//! fills buffers the device owns (no allocation per request).
//!
//! Implements virtio 1.2 §5.2.6 (the request layout: header {type,
//! reserved, sector}, data, status; the request types; the discard /
//! write-zeroes range list and the device requirements of §5.2.6.2 on
//! flags and ranges) on top of the chain rules of §2.7.5 (descriptor
//! direction; indirect tables, §2.7.5.3, followed by virtio-queue).

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

use super::backend::Unmap;
pub(crate) use super::fault::{RequestFault, Unanswerable};
use super::{MAX_RANGES, SECTOR_SIZE};
use crate::virtqueue::Chain;

/// Bytes in the request header (§5.2.6: le32 type, le32 reserved, le64
/// sector).
const HEADER_LEN: u32 = 16;
/// Bytes in one discard / write-zeroes range (le64 sector, le32
/// num_sectors, le32 flags).
const RANGE_LEN: u64 = 16;

/// One data buffer of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
    /// Whether the driver marked it device-writable.
    pub device_writable: bool,
}

/// One entry of a DISCARD or WRITE_ZEROES range list, checked against the
/// capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    /// First sector.
    pub sector: u64,
    /// Number of sectors.
    pub sectors: u32,
    /// The UNMAP flag (WRITE_ZEROES only).
    pub unmap: Unmap,
}

impl Range {
    const EMPTY: Range = Range {
        sector: 0,
        sectors: 0,
        unmap: Unmap::Forbidden,
    };
}

/// What the device accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Most descriptors in a chain (the queue size, §2.7.5.3.1).
    pub max_descriptors: u16,
    /// Most data descriptors (seg_max).
    pub seg_max: u32,
    /// Most bytes in one data descriptor (size_max).
    pub size_max: u32,
    /// Most ranges in one DISCARD / WRITE_ZEROES request.
    pub max_ranges: u32,
    /// Most sectors in one range.
    pub max_range_sectors: u32,
}

/// Buffers reused by every request.
pub(crate) struct Scratch {
    segments: Vec<Segment>,
    ranges: [Range; MAX_RANGES as usize],
}

impl Scratch {
    /// Room for `seg_max` data descriptors.
    pub(crate) fn new(seg_max: u32) -> Self {
        Scratch {
            segments: Vec::with_capacity(seg_max as usize),
            ranges: [Range::EMPTY; MAX_RANGES as usize],
        }
    }
}

/// The operation a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// VIRTIO_BLK_T_IN: fill the (device-writable) segments from this
    /// byte offset.
    Read {
        /// Byte offset on the disk.
        offset: u64,
    },
    /// VIRTIO_BLK_T_OUT: store the (device-readable) segments at this
    /// byte offset.
    Write {
        /// Byte offset on the disk.
        offset: u64,
    },
    /// VIRTIO_BLK_T_FLUSH.
    Flush,
    /// VIRTIO_BLK_T_GET_ID: the serial into the segments.
    GetId,
    /// VIRTIO_BLK_T_DISCARD over the ranges.
    Discard,
    /// VIRTIO_BLK_T_WRITE_ZEROES over the ranges.
    WriteZeroes,
    /// Any other type: answered VIRTIO_BLK_S_UNSUPP.
    Unsupported(u32),
}

/// A checked request.
#[derive(Debug)]
pub(crate) struct Request<'s> {
    /// What to do.
    pub kind: Kind,
    /// The data buffers, each checked against guest memory.
    pub segments: &'s [Segment],
    /// The total of the segments' lengths.
    pub data_len: u64,
    /// DISCARD / WRITE_ZEROES ranges, read once from guest memory.
    pub ranges: &'s [Range],
}

/// Where the answer goes: the status byte, and the used length of a
/// successful request (every device-writable byte of the chain, status
/// included; a refused or failed one reports 1, the status byte alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The status byte's guest address.
    pub status: GuestAddress,
    /// The used length to report.
    pub used_len: u32,
}

/// What a request type does with its data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    None,
    DeviceReads,
    DeviceWrites,
}

/// The shape of a chain: its first and last descriptors, how many it has
/// (the data descriptors beyond seg_max are counted, not kept), and its
/// device-writable byte count.
struct Shape {
    header: Descriptor,
    status: Descriptor,
    descriptors: u32,
    writable: u32,
}

/// Check `chain` (buffers in `mem`) and turn it into a request; the data
/// descriptors land in `scratch`.
pub(crate) fn parse<'s>(
    mem: &GuestMemoryMmap,
    chain: Chain<'_>,
    limits: &Limits,
    scratch: &'s mut Scratch,
) -> Result<(Reply, Result<Request<'s>, RequestFault>), Unanswerable> {
    let shape = walk(chain, limits, &mut scratch.segments)?;
    let status = shape.status;
    if !status.is_write_only() {
        return Err(Unanswerable::StatusReadOnly);
    }
    if status.len() != 1 {
        return Err(Unanswerable::StatusLength(status.len()));
    }
    if !mem.check_range(status.addr(), 1, Permissions::Write) {
        return Err(Unanswerable::StatusOutsideMemory(status.addr().0));
    }
    let reply = Reply {
        status: status.addr(),
        used_len: shape.writable,
    };
    Ok((reply, request(mem, &shape, limits, scratch)))
}

/// Walk the chain once: the first descriptor is the header, the last the
/// status, those between go to `segments` (up to seg_max of them).
fn walk(
    chain: Chain<'_>,
    limits: &Limits,
    segments: &mut Vec<Segment>,
) -> Result<Shape, Unanswerable> {
    segments.clear();
    let (mut header, mut last) = (None, None::<Descriptor>);
    let mut descriptors: u32 = 0;
    let mut writable: u32 = 0;
    let mut has_next = false;
    // virtio-queue stops a chain after 65535 descriptors or 4 GiB.
    for desc in chain {
        descriptors = descriptors.saturating_add(1);
        has_next = desc.has_next();
        if desc.is_write_only() {
            writable = writable.saturating_add(desc.len());
        }
        if header.is_none() {
            header = Some(desc);
        } else if let Some(prev) = last.replace(desc) {
            if segments.len() < limits.seg_max as usize {
                segments.push(Segment {
                    addr: prev.addr(),
                    len: prev.len(),
                    device_writable: prev.is_write_only(),
                });
            }
        }
    }
    let header = header.ok_or(Unanswerable::Empty)?;
    if has_next {
        return Err(Unanswerable::Broken);
    }
    let status = last.ok_or(Unanswerable::NoStatus)?;
    Ok(Shape {
        header,
        status,
        descriptors,
        writable,
    })
}

/// Everything after the status byte is known to be writable.
fn request<'s>(
    mem: &GuestMemoryMmap,
    shape: &Shape,
    limits: &Limits,
    scratch: &'s mut Scratch,
) -> Result<Request<'s>, RequestFault> {
    let (request_type, sector) = header(mem, &shape.header)?;
    let data = match request_type {
        VIRTIO_BLK_T_IN | VIRTIO_BLK_T_GET_ID => Data::DeviceWrites,
        VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => Data::DeviceReads,
        VIRTIO_BLK_T_FLUSH => Data::None,
        other => {
            return Ok(Request {
                kind: Kind::Unsupported(other),
                segments: &[],
                data_len: 0,
                ranges: &[],
            })
        }
    };
    if shape.descriptors > u32::from(limits.max_descriptors) {
        return Err(RequestFault::ChainTooLong(limits.max_descriptors));
    }
    // Header and status are not data.
    if shape.descriptors - 2 > limits.seg_max {
        return Err(RequestFault::TooManySegments(limits.seg_max));
    }
    let segments = &scratch.segments[..];
    let data_len = check_segments(mem, segments, data, limits)?;
    let mut ranges = 0;
    let kind = match request_type {
        VIRTIO_BLK_T_IN => Kind::Read {
            offset: byte_offset(sector, data_len, limits.capacity)?,
        },
        VIRTIO_BLK_T_OUT => Kind::Write {
            offset: byte_offset(sector, data_len, limits.capacity)?,
        },
        VIRTIO_BLK_T_FLUSH => Kind::Flush,
        VIRTIO_BLK_T_GET_ID => Kind::GetId,
        discard_or_zeroes => {
            let kind = match discard_or_zeroes {
                VIRTIO_BLK_T_DISCARD => Kind::Discard,
                _ => Kind::WriteZeroes,
            };
            ranges = read_ranges(mem, segments, data_len, kind, limits, &mut scratch.ranges)?;
            kind
        }
    };
    Ok(Request {
        kind,
        segments,
        data_len,
        ranges: &scratch.ranges[..ranges],
    })
}

/// The header's type and sector.
fn header(mem: &GuestMemoryMmap, desc: &Descriptor) -> Result<(u32, u64), RequestFault> {
    if desc.is_write_only() {
        return Err(RequestFault::HeaderWritable);
    }
    if desc.len() != HEADER_LEN {
        return Err(RequestFault::HeaderLength(desc.len()));
    }
    let mut raw = [0u8; HEADER_LEN as usize];
    mem.read_slice(&mut raw, desc.addr())
        .map_err(|_| RequestFault::HeaderOutsideMemory(desc.addr().0))?;
    let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = raw;
    Ok((
        u32::from_le_bytes([t0, t1, t2, t3]),
        u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
    ))
}

/// Check every data descriptor; returns the total length.
fn check_segments(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    data: Data,
    limits: &Limits,
) -> Result<u64, RequestFault> {
    let (device_writable, access) = match data {
        Data::None if segments.is_empty() => return Ok(0),
        Data::None => return Err(RequestFault::UnexpectedData),
        Data::DeviceReads => (false, Permissions::Read),
        Data::DeviceWrites => (true, Permissions::Write),
    };
    if segments.is_empty() {
        return Err(RequestFault::MissingData);
    }
    let mut total: u64 = 0;
    for s in segments {
        if s.len == 0 {
            return Err(RequestFault::EmptySegment);
        }
        if s.len > limits.size_max {
            return Err(RequestFault::SegmentTooLong(s.len));
        }
        if s.device_writable != device_writable {
            return Err(RequestFault::WrongDirection);
        }
        if !mem.check_range(s.addr, s.len as usize, access) {
            return Err(RequestFault::SegmentOutsideMemory {
                addr: s.addr.0,
                len: s.len,
            });
        }
        // At most 65535 descriptors of u32 bytes: no overflow.
        total = total.saturating_add(u64::from(s.len));
    }
    Ok(total)
}

/// The byte offset of `len` bytes at `sector`, all inside `capacity`
/// sectors.
fn byte_offset(sector: u64, len: u64, capacity: u64) -> Result<u64, RequestFault> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(RequestFault::NotSectorMultiple(len));
    }
    let sectors = len / SECTOR_SIZE;
    sector
        .checked_add(sectors)
        .filter(|&end| end <= capacity)
        .and_then(|_| sector.checked_mul(SECTOR_SIZE))
        .ok_or(RequestFault::OutOfRange { sector, sectors })
}

/// Read and check the range list of a DISCARD (`kind`) or WRITE_ZEROES
/// request into `out`; returns how many ranges there are.
fn read_ranges(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    data_len: u64,
    kind: Kind,
    limits: &Limits,
    out: &mut [Range],
) -> Result<usize, RequestFault> {
    if !data_len.is_multiple_of(RANGE_LEN) {
        return Err(RequestFault::BadRangeList(data_len));
    }
    let count = data_len / RANGE_LEN;
    let max = u64::from(limits.max_ranges).min(out.len() as u64);
    if count > max {
        return Err(RequestFault::TooManyRanges(count));
    }
    // count <= out.len(), a usize.
    let count = count as usize;
    let mut at = 0;
    for slot in &mut out[..count] {
        let mut raw = [0u8; RANGE_LEN as usize];
        read_data(mem, segments, at, &mut raw)?;
        at += RANGE_LEN;
        *slot = range(raw, kind, limits)?;
    }
    Ok(count)
}

/// Decode and check one range.
fn range(
    raw: [u8; RANGE_LEN as usize],
    kind: Kind,
    limits: &Limits,
) -> Result<Range, RequestFault> {
    let [s0, s1, s2, s3, s4, s5, s6, s7, n0, n1, n2, n3, f0, f1, f2, f3] = raw;
    let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    let sectors = u32::from_le_bytes([n0, n1, n2, n3]);
    let flags = u32::from_le_bytes([f0, f1, f2, f3]);
    if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 {
        return Err(RequestFault::UnknownRangeFlags(flags));
    }
    let unmap = match flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP {
        0 => Unmap::Forbidden,
        _ if kind == Kind::Discard => return Err(RequestFault::DiscardUnmap),
        _ => Unmap::Allowed,
    };
    if sectors > limits.max_range_sectors {
        return Err(RequestFault::RangeTooLong(sectors));
    }
    let fits = sector
        .checked_add(u64::from(sectors))
        .is_some_and(|end| end <= limits.capacity);
    if !fits {
        return Err(RequestFault::OutOfRange {
            sector,
            sectors: sectors.into(),
        });
    }
    Ok(Range {
        sector,
        sectors,
        unmap,
    })
}

/// Copy `buf.len()` bytes starting `offset` bytes into the data segments
/// (which were checked against guest memory) into `buf`.
fn read_data(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    mut offset: u64,
    buf: &mut [u8],
) -> Result<(), RequestFault> {
    let mut done = 0;
    for s in segments {
        let len = u64::from(s.len);
        if offset >= len {
            offset -= len;
            continue;
        }
        // Bounded by buf.len(), a usize.
        let n = (len - offset).min((buf.len() - done) as u64) as usize;
        let outside = || RequestFault::SegmentOutsideMemory {
            addr: s.addr.0,
            len: s.len,
        };
        let addr = s.addr.checked_add(offset).ok_or_else(outside)?;
        mem.read_slice(&mut buf[done..done + n], addr)
            .map_err(|_| outside())?;
        done += n;
        offset = 0;
        if done == buf.len() {
            return Ok(());
        }
    }
    Err(RequestFault::MissingData)
}
