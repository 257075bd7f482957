//! Why a virtio-blk request is refused: chains with no usable status byte
//! (returned with used length 0) and requests answered with an error
//! status.
//!
//! Implements the error side of virtio 1.2 §5.2.6: VIRTIO_BLK_S_IOERR for
//! malformed or out-of-range requests, VIRTIO_BLK_S_UNSUPP for range flags
//! the device must refuse (§5.2.6.2), and the chain rules of §2.7.5 that
//! decide whether a status byte can be written at all.

use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP};

/// A chain with no status byte the device may write: it goes back with
/// used length 0.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unanswerable {
    /// Not even the head descriptor could be read.
    #[error("chain has no readable descriptor")]
    Empty,
    /// The last descriptor read still had NEXT set (loop, next index past
    /// the table, bad indirect table, more than 4 GiB).
    #[error("chain breaks off (loop, bad next index or bad indirect table)")]
    Broken,
    /// A single descriptor: no room for a status byte.
    #[error("chain has no status descriptor")]
    NoStatus,
    /// The last descriptor is device-readable.
    #[error("status descriptor is not device-writable")]
    StatusReadOnly,
    /// The last descriptor is not 1 byte long.
    #[error("status descriptor is {0} bytes, not 1")]
    StatusLength(u32),
    /// The status byte is not in guest memory.
    #[error("status byte at {0:#x} is outside guest memory")]
    StatusOutsideMemory(u64),
}

/// A request the device refuses; the status byte says so.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestFault {
    /// The first descriptor is device-writable.
    #[error("request header is device-writable")]
    HeaderWritable,
    /// The first descriptor is not 16 bytes long.
    #[error("request header is {0} bytes, not 16")]
    HeaderLength(u32),
    /// The header is not in guest memory.
    #[error("request header at {0:#x} is outside guest memory")]
    HeaderOutsideMemory(u64),
    /// More descriptors than the queue size.
    #[error("chain is longer than the queue ({0} descriptors)")]
    ChainTooLong(u16),
    /// More data descriptors than seg_max.
    #[error("request has more than {0} data descriptors")]
    TooManySegments(u32),
    /// A data descriptor of length 0.
    #[error("request has an empty data descriptor")]
    EmptySegment,
    /// A data descriptor longer than size_max.
    #[error("data descriptor of {0} bytes exceeds size_max")]
    SegmentTooLong(u32),
    /// A data descriptor flowing the wrong way for the request type.
    #[error("data descriptor in the wrong direction for the request type")]
    WrongDirection,
    /// A data buffer not in guest memory.
    #[error("data buffer at {addr:#x} of {len:#x} bytes is outside guest memory")]
    SegmentOutsideMemory {
        /// Guest-physical start.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// FLUSH with data descriptors.
    #[error("flush request carries data")]
    UnexpectedData,
    /// A request type that needs data came without.
    #[error("request carries no data")]
    MissingData,
    /// IN / OUT data not a whole number of sectors.
    #[error("{0} data bytes are not a multiple of 512")]
    NotSectorMultiple(u64),
    /// Sectors past the end of the disk (or an overflowing sector number).
    #[error("sectors {sector}+{sectors} are beyond the capacity")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u64,
    },
    /// A range list whose length is not a multiple of 16.
    #[error("range list of {0} bytes is not a multiple of 16")]
    BadRangeList(u64),
    /// More ranges than max_discard_seg / max_write_zeroes_seg.
    #[error("{0} ranges exceed the limit")]
    TooManyRanges(u64),
    /// A range longer than max_discard_sectors / max_write_zeroes_sectors.
    #[error("range of {0} sectors exceeds the limit")]
    RangeTooLong(u32),
    /// Flags other than UNMAP (answered UNSUPP, §5.2.6.2).
    #[error("range has unknown flags {0:#x}")]
    UnknownRangeFlags(u32),
    /// DISCARD with UNMAP set (answered UNSUPP, §5.2.6.2).
    #[error("discard range has the unmap flag")]
    DiscardUnmap,
}

impl RequestFault {
    /// The status byte to answer with.
    pub(crate) fn status(&self) -> u8 {
        match self {
            RequestFault::UnknownRangeFlags(_) | RequestFault::DiscardUnmap => {
                VIRTIO_BLK_S_UNSUPP as u8
            }
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}
