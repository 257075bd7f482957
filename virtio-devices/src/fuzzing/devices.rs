//! The three devices as fuzz targets: in-memory backends that assert what
//! a device must never ask of them, the device prologues, and the host
//! events each device takes besides its queues.
//!
//! Prologues (before the features and queue bytes of [`super::run_direct`]):
//!
//! - block: options `o: u8` and a capacity `u64` in bytes. `o & 1`: read
//!   only; `(o >> 1) & 3`: the backend's alignment (1, 512, 4096, 1; above
//!   1 the device must bounce misaligned requests); `o & 8`, `o & 0x10`,
//!   `o & 0x20`: DISCARD, WRITE_ZEROES, write-zeroes-may-unmap; `o & 0x40`:
//!   a 64 KiB temporary file instead ([`FileBackend`]), on io_uring unless
//!   `o & 2`; `o & 0x80`: 4096-byte logical blocks.
//! - net: options `o: u8`. `o & 1`: a MAC; `o & 2`: the backend supports
//!   offloads; `o & 4`: setting them fails.
//! - console: nothing.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vm_memory::{Bytes, GuestMemoryMmap, VolatileSlice};

use super::{guest_memory, run_direct, HostSide, Input};
use crate::block::{
    Access, Block, BlockBackend, BlockGeometry, BlockOptions, Capabilities, FileBackend, IoEngine,
    Unmap,
};
use crate::console::Console;
use crate::device::VirtioDevice;
use crate::net::{
    MacAddr, Net, NetBackend, NetOptions, Offloads, TxFrame, MAX_FRAME_LEN, MIN_TX_FRAME_LEN,
    RX_BUFFER_LEN,
};

/// Run virtio-blk request processing on `data` (see the module docs).
pub fn block_chains(data: &[u8]) {
    if let Some((_, mut block)) = run_block(data) {
        // Waits for io_uring requests still in flight.
        block.reset();
    }
}

/// Run virtio-net transmit and receive processing on `data`.
pub fn net_chains(data: &[u8]) {
    run_net(data);
}

/// Run virtio-console transmit and receive processing on `data`.
pub fn console_chains(data: &[u8]) {
    run_console(data);
}

/// [`block_chains`], returning the memory and the device.
pub(crate) fn run_block(data: &[u8]) -> Option<(GuestMemoryMmap, Block<Disk>)> {
    let mem = guest_memory();
    let mut input = Input::new(data);
    let block = block_device(&mut input)?;
    let block = run_direct(&mem, block, &mut input)?;
    Some((mem, block))
}

/// [`net_chains`], returning the memory and the device.
pub(crate) fn run_net(data: &[u8]) -> Option<(GuestMemoryMmap, Net<Frames>)> {
    let mem = guest_memory();
    let mut input = Input::new(data);
    let net = net_device(&mut input)?;
    let net = run_direct(&mem, net, &mut input)?;
    Some((mem, net))
}

/// [`console_chains`], returning the memory and the device.
pub(crate) fn run_console(data: &[u8]) -> Option<(GuestMemoryMmap, Console<Sink>)> {
    let mem = guest_memory();
    let mut input = Input::new(data);
    let console = run_direct(&mem, console_device(), &mut input)?;
    Some((mem, console))
}

/// A block backend either in memory or on a temporary file.
pub(crate) enum Disk {
    Memory(MemDisk),
    File(FileBackend),
}

/// An in-memory disk that stores nothing: reads return a pattern. Every
/// call is checked against the capacity, the access and the alignment.
pub(crate) struct MemDisk {
    capacity: u64,
    access: Access,
    caps: Capabilities,
    alignment: usize,
    /// Every operation fails with EIO while set.
    fail: Cell<bool>,
}

impl MemDisk {
    fn check(&self, what: &str, offset: u64, len: u64) -> io::Result<()> {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.capacity),
            "virtio-blk asked for {what} of {len} bytes at {offset} on a disk of {} bytes",
            self.capacity
        );
        match self.fail.get() {
            true => Err(io::Error::from_raw_os_error(libc::EIO)),
            false => Ok(()),
        }
    }

    fn check_aligned(&self, offset: u64, buf: &VolatileSlice<'_>) {
        let a = self.alignment;
        let addr = buf.ptr_guard().as_ptr() as usize;
        assert!(
            offset.is_multiple_of(a as u64)
                && buf.len().is_multiple_of(a)
                && addr.is_multiple_of(a),
            "virtio-blk sent {} bytes at {offset} from {addr:#x} to a backend aligned to {a}",
            buf.len()
        );
    }

    fn check_writable(&self, what: &str) {
        assert_eq!(
            self.access,
            Access::ReadWrite,
            "virtio-blk sent {what} to a read-only disk"
        );
    }
}

/// A pattern read from [`MemDisk`].
static PATTERN: [u8; 4096] = [0x5a; 4096];

impl BlockBackend for MemDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn access(&self) -> Access {
        self.access
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn alignment(&self) -> usize {
        self.alignment
    }
    fn read_at(&mut self, offset: u64, buf: &mut VolatileSlice<'_>) -> io::Result<()> {
        self.check_aligned(offset, buf);
        self.check("a read", offset, buf.len() as u64)?;
        for at in (0..buf.len()).step_by(PATTERN.len()) {
            let n = (buf.len() - at).min(PATTERN.len());
            buf.write_slice(&PATTERN[..n], at)
                .expect("inside the slice");
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        self.check_writable("a write");
        self.check_aligned(offset, buf);
        self.check("a write", offset, buf.len() as u64)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.check("a flush", 0, 0)
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable("a discard");
        assert!(self.caps.discard, "virtio-blk sent an unoffered discard");
        self.check("a discard", offset, len)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, _unmap: Unmap) -> io::Result<()> {
        self.check_writable("write zeroes");
        assert!(
            self.caps.write_zeroes,
            "virtio-blk sent unoffered write zeroes"
        );
        self.check("write zeroes", offset, len)
    }
}

impl BlockBackend for Disk {
    fn capacity(&self) -> u64 {
        match self {
            Disk::Memory(d) => d.capacity(),
            Disk::File(f) => f.capacity(),
        }
    }
    fn access(&self) -> Access {
        match self {
            Disk::Memory(d) => d.access(),
            Disk::File(f) => f.access(),
        }
    }
    fn capabilities(&self) -> Capabilities {
        match self {
            Disk::Memory(d) => d.capabilities(),
            Disk::File(f) => f.capabilities(),
        }
    }
    fn alignment(&self) -> usize {
        match self {
            Disk::Memory(d) => d.alignment(),
            Disk::File(f) => f.alignment(),
        }
    }
    fn raw_fd(&self) -> Option<RawFd> {
        match self {
            Disk::Memory(_) => None,
            Disk::File(f) => f.raw_fd(),
        }
    }
    fn read_at(&mut self, offset: u64, buf: &mut VolatileSlice<'_>) -> io::Result<()> {
        match self {
            Disk::Memory(d) => d.read_at(offset, buf),
            Disk::File(f) => f.read_at(offset, buf),
        }
    }
    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        match self {
            Disk::Memory(d) => d.write_at(offset, buf),
            Disk::File(f) => f.write_at(offset, buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Disk::Memory(d) => d.flush(),
            Disk::File(f) => f.flush(),
        }
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Disk::Memory(d) => d.discard(offset, len),
            Disk::File(f) => f.discard(offset, len),
        }
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: Unmap) -> io::Result<()> {
        match self {
            Disk::Memory(d) => d.write_zeroes(offset, len, unmap),
            Disk::File(f) => f.write_zeroes(offset, len, unmap),
        }
    }
}

/// Size of the temporary file behind a [`Disk::File`].
const FILE_DISK_LEN: u64 = 64 << 10;

/// Where scratch files go: tmpfs (/dev/shm) where there is one, so that
/// truncating and FLUSH (fdatasync) cost no disk I/O.
pub(crate) fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    match shm.is_dir() {
        true => shm.to_path_buf(),
        false => std::env::temp_dir(),
    }
}

/// The process's temporary disk file, zeroed: one file per process,
/// unlinked at once.
fn temp_disk() -> io::Result<File> {
    static FILE: OnceLock<File> = OnceLock::new();
    let file = match FILE.get() {
        Some(file) => file,
        None => {
            let name = format!("flint-fuzz-disk-{}", std::process::id());
            let path = scratch_dir().join(name);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            FILE.get_or_init(|| file)
        }
    };
    file.set_len(0)?;
    file.set_len(FILE_DISK_LEN)?;
    file.try_clone()
}

/// A block device from the block prologue.
pub(crate) fn block_device(input: &mut Input<'_>) -> Option<Block<Disk>> {
    let (o, capacity) = (input.u8()?, input.u64()?);
    let access = match o & 1 {
        0 => Access::ReadWrite,
        _ => Access::ReadOnly,
    };
    let mut options = BlockOptions {
        engine: IoEngine::Sync,
        ..BlockOptions::default()
    };
    if o & 0x80 != 0 {
        options.geometry = BlockGeometry {
            logical_block_size: 4096,
            ..BlockGeometry::default()
        };
    }
    let disk = if o & 0x40 != 0 {
        if o & 2 == 0 {
            options.engine = IoEngine::Auto;
        }
        let file = temp_disk().expect("temporary disk file");
        Disk::File(FileBackend::new(file, access).expect("a regular file"))
    } else {
        Disk::Memory(MemDisk {
            capacity,
            access,
            caps: Capabilities {
                discard: o & 8 != 0,
                write_zeroes: o & 0x10 != 0,
                write_zeroes_may_unmap: o & 0x20 != 0,
            },
            alignment: [1, 512, 4096, 1][usize::from((o >> 1) & 3)],
            fail: Cell::new(false),
        })
    };
    Some(Block::new(disk, options).expect("valid options"))
}

impl HostSide for Block<Disk> {
    /// `0`: reap io_uring completions; `1`: toggle backend failures.
    fn host_event(&mut self, input: &mut Input<'_>) -> Option<()> {
        match input.u8()? % 2 {
            0 => {
                let _ = self.process_completions();
            }
            _ => {
                if let Disk::Memory(d) = self.backend() {
                    d.fail.set(!d.fail.get());
                }
            }
        }
        Some(())
    }
}

/// A network backend made of frame queues; it checks every transmitted
/// frame's length and reads it through [`TxFrame::copy_to`].
#[derive(Default)]
pub(crate) struct Frames {
    incoming: VecDeque<Vec<u8>>,
    offloads: bool,
    fail_offloads: bool,
    fail_send: bool,
    fail_recv: bool,
    copy: Vec<u8>,
    /// Frames sent so far.
    pub(crate) sent: usize,
}

impl AsRawFd for Frames {
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
}

impl NetBackend for Frames {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.fail_recv {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(self.incoming.pop_front().map(|frame| {
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            n
        }))
    }

    fn send(&mut self, frame: &TxFrame<'_>) -> io::Result<()> {
        let len = frame.len();
        assert!(
            (MIN_TX_FRAME_LEN as usize..=MAX_FRAME_LEN as usize).contains(&len),
            "virtio-net sent a frame of {len} bytes"
        );
        self.copy.resize(len, 0);
        let copied = frame.copy_to(&mut self.copy).expect("checked buffers");
        assert_eq!(copied, len, "the frame's buffers hold its length");
        self.sent += 1;
        match self.fail_send {
            true => Err(io::Error::from_raw_os_error(libc::EIO)),
            false => Ok(()),
        }
    }

    fn supports_offloads(&self) -> bool {
        self.offloads
    }

    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        let any = offloads.csum || offloads.tso4 || offloads.tso6 || offloads.ufo;
        assert!(self.offloads || !any, "offloads set on a backend without");
        match self.fail_offloads {
            true => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            false => Ok(()),
        }
    }
}

/// A network device from the net prologue.
pub(crate) fn net_device(input: &mut Input<'_>) -> Option<Net<Frames>> {
    let o = input.u8()?;
    let mac = (o & 1 != 0).then_some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    let frames = Frames {
        offloads: o & 2 != 0,
        fail_offloads: o & 4 != 0,
        ..Frames::default()
    };
    Some(Net::new(frames, NetOptions { mac }))
}

/// Longest frame a `HOST` event queues: past what the device reads.
const MAX_INCOMING: usize = RX_BUFFER_LEN + 64;

impl HostSide for Net<Frames> {
    /// `0, len: u16, bytes`: queue a frame of `len % MAX_INCOMING` bytes
    /// (the input's, then a pattern) and receive; `1`: receive; `2`,
    /// `3`: toggle send and receive failures.
    fn host_event(&mut self, input: &mut Input<'_>) -> Option<()> {
        match input.u8()? % 4 {
            0 => {
                let len = usize::from(input.u16()?) % MAX_INCOMING;
                let mut frame = input.bytes(len).to_vec();
                frame.resize(len, 0xa5);
                self.backend_mut().incoming.push_back(frame);
                let _ = self.process_rx();
            }
            1 => {
                let _ = self.process_rx();
            }
            2 => self.backend_mut().fail_send ^= true,
            _ => self.backend_mut().fail_recv ^= true,
        }
        Some(())
    }
}

/// A console sink that keeps the last output and fails on demand.
#[derive(Default)]
pub(crate) struct Sink {
    pub(crate) out: Vec<u8>,
    fail: Cell<bool>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.fail.get() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if self.out.len() > 1 << 20 {
            self.out.clear();
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A console over a [`Sink`].
pub(crate) fn console_device() -> Console<Sink> {
    Console::new(Sink::default())
}

impl HostSide for Console<Sink> {
    /// `0, n: u8, bytes`: push `n` bytes of input; `1, n: u16`: push `n`
    /// bytes of a pattern; `2`: toggle sink failures.
    fn host_event(&mut self, input: &mut Input<'_>) -> Option<()> {
        match input.u8()? % 3 {
            0 => {
                let n = input.u8()?;
                let _ = self.push_input(input.bytes(n.into()));
            }
            1 => {
                let n = input.u16()?;
                let _ = self.push_input(&vec![b'x'; n.into()]);
            }
            _ => {
                let fail = &self.sink().fail;
                fail.set(!fail.get());
            }
        }
        Some(())
    }
}
