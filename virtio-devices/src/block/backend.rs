//! Where a block device's sectors live: the [`BlockBackend`] trait and
//! [`FileBackend`], a regular file or a host block device.
//!
//! Serves the storage side of virtio 1.2 §5.2.6 (reads, writes, flush,
//! discard and write zeroes, §5.2.6.2) for the device in `device.rs`. Data
//! moves between the file and guest memory with pread/pwrite straight on
//! the guest's pages (no bounce buffer). Regular files discard with
//! fallocate(PUNCH_HOLE) and zero with fallocate(ZERO_RANGE), writing zeros
//! where the filesystem has neither; block devices use BLKDISCARD and
//! BLKZEROOUT, and report their size through BLKGETSIZE64.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use log::debug;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice, WriteVolatile};
use vmm_sys_util::fallocate::{fallocate, FallocateMode};

/// Whether the guest may change the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Reads and writes.
    #[default]
    ReadWrite,
    /// Reads only: the device offers VIRTIO_BLK_F_RO and fails writes with
    /// VIRTIO_BLK_S_IOERR without calling the backend.
    ReadOnly,
}

/// Whether a write-zeroes request may deallocate the range (§5.2.6.2:
/// the VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmap {
    /// The range may become a hole, as long as it reads back as zeros.
    Allowed,
    /// The range must stay allocated.
    Forbidden,
}

/// The optional operations a backend can carry out; the device offers
/// VIRTIO_BLK_F_DISCARD and VIRTIO_BLK_F_WRITE_ZEROES accordingly (never on
/// a read-only backend).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// [`BlockBackend::discard`] can deallocate ranges.
    pub discard: bool,
    /// [`BlockBackend::write_zeroes`] works.
    pub write_zeroes: bool,
    /// Write zeroes with [`Unmap::Allowed`] can deallocate (the
    /// configuration's write_zeroes_may_unmap).
    pub write_zeroes_may_unmap: bool,
}

/// Storage behind a virtio block device. All offsets and lengths are in
/// bytes; the device only asks for ranges inside
/// [`capacity`](BlockBackend::capacity).
///
/// Calls are synchronous: a call returns when the operation is done. A
/// backend that exposes [`raw_fd`](BlockBackend::raw_fd) lets the device
/// run reads, writes and flushes on io_uring instead.
pub trait BlockBackend: Send {
    /// The size in bytes (the device exposes whole 512-byte sectors).
    fn capacity(&self) -> u64;

    /// Whether the backend may be written.
    fn access(&self) -> Access;

    /// The optional operations supported.
    fn capabilities(&self) -> Capabilities;

    /// Fill `buf` (guest memory) from `offset`; short reads are errors.
    fn read_at(&mut self, offset: u64, buf: &mut VolatileSlice<'_>) -> io::Result<()>;

    /// Write all of `buf` (guest memory) at `offset`.
    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()>;

    /// Make completed writes stable (fdatasync).
    fn flush(&mut self) -> io::Result<()>;

    /// Deallocate a range; the contents afterwards are unspecified.
    /// Advisory: a backend that cannot may do nothing.
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()>;

    /// Make a range read back as zeros.
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: Unmap) -> io::Result<()>;

    /// A descriptor the io_uring engine may read, write and fdatasync at
    /// the same byte offsets instead of calling `read_at`, `write_at` and
    /// `flush`; `None` (the default) keeps every request synchronous. It
    /// must stay open for as long as the backend lives.
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    /// The alignment (bytes) that buffer addresses, lengths and offsets
    /// need for the backend to move data without a bounce buffer: the
    /// logical block size under O_DIRECT, 1 (the default) otherwise.
    fn alignment(&self) -> usize {
        1
    }
}

/// What a [`FileBackend`] sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingKind {
    /// A regular file on a host filesystem.
    File,
    /// A block device node (whole disk or partition).
    BlockDevice,
}

/// Why a [`FileBackend`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// open(2) failed.
    #[error("cannot open {}", path.display())]
    Open {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// fstat(2) failed.
    #[error("cannot read the backing file's metadata")]
    Metadata(#[source] io::Error),
    /// Neither a regular file nor a block device.
    #[error("not a regular file or a block device")]
    NotADisk,
    /// BLKGETSIZE64 failed.
    #[error("cannot read the block device's size")]
    Size(#[source] io::Error),
}

/// A disk in a regular file or on a host block device, read and written
/// with pread/pwrite at the guest's offsets.
///
/// The file may have been opened with O_DIRECT; then requests whose
/// buffers are not aligned to the logical block size go through the
/// device's bounce buffer (`bounce.rs`).
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    kind: BackingKind,
    access: Access,
    capacity: u64,
    discard: bool,
    /// Cleared when fallocate(PUNCH_HOLE) says EOPNOTSUPP.
    punch_hole: bool,
    /// Cleared when fallocate(ZERO_RANGE) says EOPNOTSUPP.
    zero_range: bool,
    /// O_DIRECT's alignment (1 without O_DIRECT).
    alignment: usize,
}

/// Zeros written by the write-zeroes fallback (no allocation per request).
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

// Block-device ioctls (linux/fs.h).
/// _IOR(0x12, 114, size_t): the size in bytes.
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272;
/// _IO(0x12, 119): discard a range {start, len}.
const BLKDISCARD: libc::Ioctl = 0x1277;
/// _IO(0x12, 127): zero a range {start, len}.
const BLKZEROOUT: libc::Ioctl = 0x127f;

impl FileBackend {
    /// Open `path` for `access` (O_RDONLY or O_RDWR) and wrap it.
    pub fn open(path: &Path, access: Access) -> Result<Self, BackendError> {
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .open(path)
            .map_err(|source| BackendError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Self::new(file, access)
    }

    /// Wrap an already open regular file or block device; `access` must
    /// match how it was opened (a read-only descriptor with
    /// [`Access::ReadWrite`] fails every write with IOERR).
    pub fn new(file: File, access: Access) -> Result<Self, BackendError> {
        let meta = file.metadata().map_err(BackendError::Metadata)?;
        let (kind, capacity, discard) = if meta.file_type().is_block_device() {
            let size = device_size(&file).map_err(BackendError::Size)?;
            (BackingKind::BlockDevice, size, device_discards(meta.rdev()))
        } else if meta.is_file() {
            (BackingKind::File, meta.len(), true)
        } else {
            return Err(BackendError::NotADisk);
        };
        let alignment = direct_alignment(&file, kind);
        Ok(FileBackend {
            file,
            kind,
            access,
            capacity,
            discard,
            punch_hole: true,
            zero_range: true,
            alignment,
        })
    }

    /// File or block device.
    pub fn kind(&self) -> BackingKind {
        self.kind
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn punch(&mut self, offset: u64, len: u64) -> io::Result<Done> {
        if !self.punch_hole {
            return Ok(Done::No);
        }
        match fallocate(&self.file, FallocateMode::PunchHole, true, offset, len) {
            Ok(()) => Ok(Done::Yes),
            Err(e) if e.errno() == libc::EOPNOTSUPP => {
                debug!("virtio-blk: the backing filesystem cannot punch holes");
                self.punch_hole = false;
                Ok(Done::No)
            }
            Err(e) => Err(io::Error::from_raw_os_error(e.errno())),
        }
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<Done> {
        if !self.zero_range {
            return Ok(Done::No);
        }
        match fallocate(&self.file, FallocateMode::ZeroRange, true, offset, len) {
            Ok(()) => Ok(Done::Yes),
            Err(e) if e.errno() == libc::EOPNOTSUPP => {
                debug!("virtio-blk: the backing filesystem cannot zero ranges; writing zeros");
                self.zero_range = false;
                Ok(Done::No)
            }
            Err(e) => Err(io::Error::from_raw_os_error(e.errno())),
        }
    }

    fn write_zeros(&self, mut offset: u64, mut len: u64) -> io::Result<()> {
        while len > 0 {
            let n = len.min(ZEROS.len() as u64);
            // n <= ZEROS.len(), a usize.
            self.file.write_all_at(&ZEROS[..n as usize], offset)?;
            offset = offset.saturating_add(n);
            len -= n;
        }
        Ok(())
    }
}

/// Whether an optional operation took effect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Done {
    Yes,
    No,
}

impl BlockBackend for FileBackend {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn access(&self) -> Access {
        self.access
    }

    fn capabilities(&self) -> Capabilities {
        let writable = self.access == Access::ReadWrite;
        Capabilities {
            discard: writable && self.discard,
            write_zeroes: writable,
            write_zeroes_may_unmap: writable && self.kind == BackingKind::File,
        }
    }

    fn read_at(&mut self, offset: u64, buf: &mut VolatileSlice<'_>) -> io::Result<()> {
        let mut at = FileAt {
            file: &self.file,
            offset,
        };
        at.read_exact_volatile(buf).map_err(into_io)
    }

    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        let mut at = FileAt {
            file: &self.file,
            offset,
        };
        at.write_all_volatile(buf).map_err(into_io)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match self.kind {
            BackingKind::File => self.punch(offset, len).map(|_| ()),
            BackingKind::BlockDevice => match ioctl_range(&self.file, BLKDISCARD, offset, len) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
                other => other,
            },
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn alignment(&self) -> usize {
        self.alignment
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: Unmap) -> io::Result<()> {
        if self.kind == BackingKind::BlockDevice {
            return ioctl_range(&self.file, BLKZEROOUT, offset, len);
        }
        if unmap == Unmap::Allowed && self.punch(offset, len)? == Done::Yes {
            return Ok(());
        }
        if self.zero_range(offset, len)? == Done::Yes {
            return Ok(());
        }
        self.write_zeros(offset, len)
    }
}

/// A file read or written at a moving offset with pread/pwrite, for
/// vm-memory's volatile copies.
struct FileAt<'f> {
    file: &'f File,
    offset: u64,
}

impl FileAt<'_> {
    fn position(&self) -> Result<libc::off64_t, VolatileMemoryError> {
        libc::off64_t::try_from(self.offset)
            .map_err(|_| VolatileMemoryError::IOError(io::Error::from_raw_os_error(libc::EINVAL)))
    }

    fn advance(&mut self, n: libc::ssize_t) -> Result<usize, VolatileMemoryError> {
        // A negative count is an error reported through errno.
        let n = usize::try_from(n)
            .map_err(|_| VolatileMemoryError::IOError(io::Error::last_os_error()))?;
        self.offset = self.offset.saturating_add(n as u64);
        Ok(n)
    }
}

impl ReadVolatile for FileAt<'_> {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let position = self.position()?;
        let guard = buf.ptr_guard_mut();
        // SAFETY: `guard` points to `buf.len()` bytes of mapped guest memory (vm-memory's
        // VolatileSlice invariant), pread writes at most that; the fd is open (borrowed).
        let n = unsafe {
            libc::pread64(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                position,
            )
        };
        let result = self.advance(n);
        // On an error part of the buffer may have been written.
        let dirty = result.as_ref().map_or(buf.len(), |&n| n);
        buf.bitmap().mark_dirty(0, dirty);
        result
    }
}

impl WriteVolatile for FileAt<'_> {
    fn write_volatile<B: BitmapSlice>(
        &mut self,
        buf: &VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let position = self.position()?;
        let guard = buf.ptr_guard();
        // SAFETY: `guard` points to `buf.len()` readable bytes of mapped guest memory
        // (vm-memory's VolatileSlice invariant); the fd is open (borrowed).
        let n = unsafe {
            libc::pwrite64(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                position,
            )
        };
        self.advance(n)
    }
}

fn into_io(e: VolatileMemoryError) -> io::Error {
    match e {
        VolatileMemoryError::IOError(e) => e,
        other => io::Error::other(other),
    }
}

/// _IO(0x12, 104): the logical block size, an int.
const BLKSSZGET: libc::Ioctl = 0x1268;

/// The alignment O_DIRECT needs on `file`: 1 when it was opened without
/// O_DIRECT; a block device's logical block size; 4096 for a regular file
/// (at least the logical block size of any disk a filesystem sits on).
fn direct_alignment(file: &File, kind: BackingKind) -> usize {
    // SAFETY: F_GETFL only reads the descriptor's flags; the fd is open.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || flags & libc::O_DIRECT == 0 {
        return 1;
    }
    if kind == BackingKind::File {
        return 4096;
    }
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int to `size`, alive and writable for the
    // call; the fd is open for the borrow of `file`.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size as *mut libc::c_int) };
    match usize::try_from(size) {
        Ok(size) if r == 0 && size.is_power_of_two() => size,
        _ => 4096,
    }
}

/// A block device's size in bytes.
fn device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to `size`, alive and writable for the
    // call; the fd is open for the borrow of `file`.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// BLKDISCARD or BLKZEROOUT over `len` bytes at `offset`.
fn ioctl_range(file: &File, request: libc::Ioctl, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: both requests read two u64s (start, length) from `range`, alive
    // for the call; the fd is open for the borrow of `file`.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request, range.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the block device `rdev` (or the disk holding that partition)
/// accepts discards, from sysfs; no when sysfs cannot tell.
fn device_discards(rdev: u64) -> bool {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let dir = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    ["queue/discard_max_bytes", "../queue/discard_max_bytes"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(dir.join(name)).ok())
        .find_map(|text| text.trim().parse::<u64>().ok())
        .is_some_and(|max| max > 0)
}
