//! Fixtures for the block tests: a device on real guest memory driven
//! through a hand-built driver-side queue (`crate::testing::DriverQueue`),
//! temporary disk files, and a fake backend that records calls and fails
//! on demand (virtio 1.2 §5.2.6 request layout).

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, VolatileSlice};
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::device::{VirtioDevice, FEATURE_EVENT_IDX};
use crate::interrupt::CountingInterrupt;
use crate::testing::{desc, DriverQueue, BUFFERS, NEXT, WRITE};

/// Driver-side queue size in these tests.
pub(super) const SIZE: u16 = 16;
/// Where requests put their header, status byte and data.
pub(super) const HEADER: u64 = BUFFERS;
pub(super) const STATUS: u64 = BUFFERS + 0x100;
pub(super) const DATA: u64 = BUFFERS + 0x1000;
/// The test disks: 128 sectors.
pub(super) const DISK_LEN: u64 = 64 << 10;
/// What the status byte holds before the device answers.
pub(super) const UNTOUCHED: u8 = 0xee;

pub(super) const OK: u8 = VIRTIO_BLK_S_OK as u8;
pub(super) const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
pub(super) const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// Every feature bit the device may offer.
pub(super) const ALL_FEATURES: u64 = u64::MAX;

/// A temporary disk of `len` bytes filled with `fill`, and a backend on it.
pub(super) fn disk(len: u64, fill: u8, access: Access) -> (TempFile, FileBackend) {
    let tmp = TempFile::new_with_prefix("/tmp/flint-blk-test").unwrap();
    tmp.as_file()
        .write_all_at(&vec![fill; len as usize], 0)
        .unwrap();
    let backend = FileBackend::open(tmp.as_path(), access).unwrap();
    (tmp, backend)
}

/// `len` bytes of the file at `offset`.
pub(super) fn file_bytes(tmp: &TempFile, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    tmp.as_file().read_exact_at(&mut v, offset).unwrap();
    v
}

/// A block device on guest memory, driven from the driver side.
pub(super) struct Rig<'m, B: BlockBackend> {
    pub mem: &'m GuestMemoryMmap,
    pub q: DriverQueue<'m>,
    pub irq: Arc<CountingInterrupt>,
    pub block: Block<B>,
}

impl<'m, B: BlockBackend> Rig<'m, B> {
    /// An active device over `backend` with every offered feature acked.
    pub(super) fn new(mem: &'m GuestMemoryMmap, backend: B) -> Self {
        Self::with(mem, backend, BlockOptions::default(), ALL_FEATURES)
    }

    /// An active device over `backend` running I/O with `engine`, every
    /// offered feature acked.
    pub(super) fn on(mem: &'m GuestMemoryMmap, backend: B, engine: IoEngine) -> Self {
        let options = BlockOptions {
            engine,
            ..BlockOptions::default()
        };
        Self::with(mem, backend, options, ALL_FEATURES)
    }

    /// An active device with `options`, the driver acking `features` of
    /// those offered.
    pub(super) fn with(
        mem: &'m GuestMemoryMmap,
        backend: B,
        options: BlockOptions,
        features: u64,
    ) -> Self {
        let mut rig = Rig {
            mem,
            q: DriverQueue::new(mem, 0x1_0000, SIZE),
            irq: Arc::new(CountingInterrupt::new()),
            block: Block::new(backend, options).unwrap(),
        };
        rig.activate(features);
        rig
    }

    pub(super) fn activate(&mut self, features: u64) {
        let features = features & self.block.avail_features();
        self.block.ack_features(features);
        let mut queue = self.q.queue();
        queue.set_event_idx(features & FEATURE_EVENT_IDX != 0);
        self.block
            .activate(self.mem.clone(), self.irq.clone(), vec![queue])
            .unwrap();
    }

    /// Write a request header at [`HEADER`] and return its descriptor,
    /// chained to descriptor 1.
    pub(super) fn header(&self, request_type: u32, sector: u64) -> RawDescriptor {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&request_type.to_le_bytes());
        raw[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&raw, GuestAddress(HEADER)).unwrap();
        desc(HEADER, 16, NEXT, 1)
    }

    /// Make `descs` (one chain from table index 0) available, notify, and
    /// return the used length and the status byte at [`STATUS`].
    pub(super) fn submit(&mut self, descs: &[RawDescriptor]) -> (u32, u8) {
        self.mem.write_obj(UNTOUCHED, GuestAddress(STATUS)).unwrap();
        let before = self.q.used().len();
        self.q.add_chains(descs, 0);
        self.block.process_queue(0).unwrap();
        self.settle(before + 1);
        let used = self.q.used();
        assert_eq!(used.len(), before + 1, "exactly one chain comes back");
        assert_eq!(used[before].0, 0, "the chain's head comes back");
        let status = self.mem.read_obj(GuestAddress(STATUS)).unwrap();
        (used[before].1, status)
    }

    /// Wait (up to 5 s) for io_uring completions until the used ring holds
    /// `want` entries; nothing to do with synchronous I/O.
    pub(super) fn settle(&mut self, want: usize) {
        let Some(fd) = self.block.completion_fd() else {
            return;
        };
        while self.q.used().len() < want {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, alive for the call.
            let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
            assert!(n > 0, "io_uring completions within 5 s");
            self.block.process_completions().unwrap();
        }
    }

    /// A well-framed request: header, `data` descriptors (addr, len,
    /// WRITE or 0), status at [`STATUS`].
    pub(super) fn request(
        &mut self,
        kind: u32,
        sector: u64,
        data: &[(u64, u32, u16)],
    ) -> (u32, u8) {
        let mut descs = vec![self.header(kind, sector)];
        for (i, &(addr, len, flags)) in (2..).zip(data) {
            descs.push(desc(addr, len, flags | NEXT, i));
        }
        descs.push(desc(STATUS, 1, WRITE, 0));
        self.submit(&descs)
    }

    /// Write `bytes` into guest memory at `addr`.
    pub(super) fn put(&self, addr: u64, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
    }

    /// Read `len` bytes of guest memory at `addr`.
    pub(super) fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Write a DISCARD / WRITE_ZEROES range list at `addr`.
    pub(super) fn ranges(&self, addr: u64, ranges: &[(u64, u32, u32)]) -> u32 {
        for (i, &(sector, sectors, flags)) in ranges.iter().enumerate() {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&sector.to_le_bytes());
            raw[8..12].copy_from_slice(&sectors.to_le_bytes());
            raw[12..].copy_from_slice(&flags.to_le_bytes());
            self.put(addr + 16 * i as u64, &raw);
        }
        16 * ranges.len() as u32
    }
}

/// One backend operation, as the fake saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Read(u64, usize),
    Write(u64, usize),
    Flush,
    Discard(u64, u64),
    WriteZeroes(u64, u64, Unmap),
}

/// A backend that records calls, reads 0x5a, and fails when told to.
pub(super) struct Fake {
    pub access: Access,
    pub calls: Vec<Op>,
    /// Operations (compared by variant) that fail with EIO.
    pub failing: Vec<Op>,
}

impl Fake {
    pub(super) fn new(access: Access) -> Self {
        Fake {
            access,
            calls: Vec::new(),
            failing: Vec::new(),
        }
    }

    fn record(&mut self, op: Op) -> io::Result<()> {
        self.calls.push(op);
        let fails = self
            .failing
            .iter()
            .any(|f| std::mem::discriminant(f) == std::mem::discriminant(&op));
        match fails {
            true => Err(io::Error::from_raw_os_error(libc::EIO)),
            false => Ok(()),
        }
    }
}

impl BlockBackend for Fake {
    fn capacity(&self) -> u64 {
        DISK_LEN
    }
    fn access(&self) -> Access {
        self.access
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: true,
            write_zeroes: true,
            write_zeroes_may_unmap: false,
        }
    }
    fn read_at(&mut self, offset: u64, buf: &mut VolatileSlice<'_>) -> io::Result<()> {
        self.record(Op::Read(offset, buf.len()))?;
        buf.write_slice(&vec![0x5a; buf.len()], 0).unwrap();
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &VolatileSlice<'_>) -> io::Result<()> {
        self.record(Op::Write(offset, buf.len()))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.record(Op::Flush)
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.record(Op::Discard(offset, len))
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: Unmap) -> io::Result<()> {
        self.record(Op::WriteZeroes(offset, len, unmap))
    }
}

/// Both engines, for tests on a real file (io_uring falls back to
/// synchronous I/O where the kernel refuses it).
pub(super) const ENGINES: [IoEngine; 2] = [IoEngine::Sync, IoEngine::Auto];

/// Feature bit `b` as a mask.
pub(super) fn bit(b: u32) -> u64 {
    1 << b
}
