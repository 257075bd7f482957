//! Block device tests on real guest memory with a hand-built driver-side
//! queue (`crate::testing::DriverQueue`), over a temporary file or a fake
//! backend: identity, configuration space, and the round trips of each
//! request type (virtio 1.2 §5.2.3–§5.2.6). Malformed chains are in
//! `tests_malformed.rs`, the file backend alone in `tests_backend.rs`.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use virtio_bindings::virtio_blk::*;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, VolatileSlice};
use vmm_sys_util::tempfile::TempFile;

use super::device::*;
use super::*;
use crate::device::{VirtioDevice, FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC};
use crate::interrupt::{CountingInterrupt, InterruptType};
use crate::testing::{desc, guest_memory, DriverQueue, BUFFERS, INDIRECT, NEXT, WRITE};

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
        let used = self.q.used();
        assert_eq!(used.len(), before + 1, "exactly one chain comes back");
        assert_eq!(used[before].0, 0, "the chain's head comes back");
        let status = self.mem.read_obj(GuestAddress(STATUS)).unwrap();
        (used[before].1, status)
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

fn bit(b: u32) -> u64 {
    1 << b
}

#[test]
fn identifies_as_a_block_device_offering_its_features() {
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let block = Block::new(backend, BlockOptions::default()).unwrap();
    assert_eq!(block.device_type(), 2);
    assert_eq!(block.queue_max_sizes(), &[256]);
    assert_eq!(block.capacity_sectors(), 128);
    let expected = [
        VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
    ]
    .iter()
    .fold(FEATURE_EVENT_IDX | FEATURE_INDIRECT_DESC, |f, &b| {
        f | bit(b)
    });
    assert_eq!(block.avail_features() & !crate::FEATURE_VERSION_1, expected);
}

#[test]
fn a_read_only_backend_offers_ro_and_neither_discard_nor_write_zeroes() {
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadOnly);
    let block = Block::new(backend, BlockOptions::default()).unwrap();
    let f = block.avail_features();
    assert_ne!(f & bit(VIRTIO_BLK_F_RO), 0);
    assert_eq!(
        f & (bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES)),
        0
    );
    let mut zeroes = [0xffu8; 24];
    block.read_config(36, &mut zeroes);
    assert_eq!(zeroes, [0; 24], "discard / write-zeroes limits read 0");
}

#[test]
fn config_fields_sit_at_the_spec_offsets() {
    use std::mem::offset_of;
    type C = virtio_blk_config;
    let pairs = [
        (CONFIG_CAPACITY, offset_of!(C, capacity)),
        (CONFIG_SIZE_MAX, offset_of!(C, size_max)),
        (CONFIG_SEG_MAX, offset_of!(C, seg_max)),
        (CONFIG_BLK_SIZE, offset_of!(C, blk_size)),
        (CONFIG_PHYSICAL_BLOCK_EXP, offset_of!(C, physical_block_exp)),
        (CONFIG_ALIGNMENT_OFFSET, offset_of!(C, alignment_offset)),
        (CONFIG_MIN_IO_SIZE, offset_of!(C, min_io_size)),
        (CONFIG_OPT_IO_SIZE, offset_of!(C, opt_io_size)),
        (
            CONFIG_MAX_DISCARD_SECTORS,
            offset_of!(C, max_discard_sectors),
        ),
        (CONFIG_MAX_DISCARD_SEG, offset_of!(C, max_discard_seg)),
        (
            CONFIG_DISCARD_SECTOR_ALIGNMENT,
            offset_of!(C, discard_sector_alignment),
        ),
        (
            CONFIG_MAX_WRITE_ZEROES_SECTORS,
            offset_of!(C, max_write_zeroes_sectors),
        ),
        (
            CONFIG_MAX_WRITE_ZEROES_SEG,
            offset_of!(C, max_write_zeroes_seg),
        ),
        (
            CONFIG_WRITE_ZEROES_MAY_UNMAP,
            offset_of!(C, write_zeroes_may_unmap),
        ),
        (CONFIG_LEN, offset_of!(C, max_secure_erase_sectors)),
    ];
    for (ours, spec) in pairs {
        assert_eq!(ours, spec);
    }
}

#[test]
fn config_space_reads_capacity_limits_geometry_and_ranges() {
    let (_tmp, backend) = disk(DISK_LEN + 100, 0, Access::ReadWrite);
    let geometry = BlockGeometry {
        logical_block_size: 4096,
        physical_block_exponent: 1,
        alignment_offset: 3,
        min_io_size: 2,
        opt_io_size: 64,
    };
    let options = BlockOptions {
        geometry,
        ..BlockOptions::default()
    };
    let block = Block::new(backend, options).unwrap();
    let mut c = [0xffu8; 72];
    block.read_config(0, &mut c);
    let le32 = |at: usize| u32::from_le_bytes(c[at..at + 4].try_into().unwrap());
    assert_eq!(
        u64::from_le_bytes(c[..8].try_into().unwrap()),
        128,
        "whole sectors only"
    );
    assert_eq!((le32(8), le32(12)), (SIZE_MAX, SEG_MAX));
    assert_eq!(&c[16..20], &[0; 4], "no GEOMETRY");
    assert_eq!(le32(20), 4096);
    assert_eq!((c[24], c[25]), (1, 3));
    assert_eq!((u16::from_le_bytes([c[26], c[27]]), le32(28)), (2, 64));
    assert_eq!(&c[32..36], &[0; 4], "writeback and num_queues");
    assert_eq!(
        (le32(36), le32(40), le32(44)),
        (MAX_RANGE_SECTORS, MAX_RANGES, 16)
    );
    assert_eq!(
        (le32(48), le32(52), c[56]),
        (MAX_RANGE_SECTORS, MAX_RANGES, 1)
    );
    assert_eq!(&c[57..], &[0; 15], "unused1 and secure erase");
    let mut one = [0xffu8; 2];
    block.read_config(20, &mut one);
    assert_eq!(one, [0x00, 0x10], "partial reads see the same bytes");
}

#[test]
fn bad_serials_and_geometries_are_refused() {
    assert!(Serial::new(&"x".repeat(21)).is_err());
    assert!(Serial::new("nul\0").is_err());
    assert!(Serial::new("é").is_err());
    for size in [0, 256, 1000, 1 << 17] {
        let geometry = BlockGeometry {
            logical_block_size: size,
            ..BlockGeometry::default()
        };
        let options = BlockOptions {
            geometry,
            ..BlockOptions::default()
        };
        assert!(
            Block::new(Fake::new(Access::ReadWrite), options).is_err(),
            "{size}"
        );
    }
    let geometry = BlockGeometry {
        physical_block_exponent: 200,
        ..BlockGeometry::default()
    };
    let options = BlockOptions {
        geometry,
        ..BlockOptions::default()
    };
    assert!(Block::new(Fake::new(Access::ReadWrite), options).is_err());
}

#[test]
fn a_write_then_a_read_round_trip_through_the_file() {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::new(&mem, backend);
    let data: Vec<u8> = (0..1536u32).map(|i| (i * 7) as u8).collect();
    rig.put(DATA, &data[..512]);
    rig.put(DATA + 0x4000, &data[512..]);
    let out = [(DATA, 512, 0), (DATA + 0x4000, 1024, 0)];
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 3, &out), (1, OK));
    assert_eq!(rig.irq.count(InterruptType::Queue(0)), 1);
    assert_eq!(file_bytes(&tmp, 3 * 512, 1536), data);
    assert_eq!(file_bytes(&tmp, 0, 3 * 512), vec![0; 3 * 512]);

    // EVENT_IDX: the driver asks to hear about the next used entry.
    rig.q.set_used_event(1);
    let back = [(DATA + 0x8000, 1024, WRITE), (DATA + 0xa000, 512, WRITE)];
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 3, &back), (1537, OK));
    assert_eq!(rig.get(DATA + 0x8000, 1024), &data[..1024]);
    assert_eq!(rig.get(DATA + 0xa000, 512), &data[1024..]);
    assert_eq!(rig.irq.count(InterruptType::Queue(0)), 2);
}

#[test]
fn the_last_sector_can_be_read_and_written() {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::new(&mem, backend);
    rig.put(DATA, &[0x77; 512]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_OUT, 127, &[(DATA, 512, 0)]),
        (1, OK)
    );
    assert_eq!(file_bytes(&tmp, DISK_LEN - 512, 512), vec![0x77; 512]);
    let read = rig.request(VIRTIO_BLK_T_IN, 127, &[(DATA + 0x1000, 512, WRITE)]);
    assert_eq!(read, (513, OK));
}

#[test]
fn a_request_through_an_indirect_table_works() {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0x33, Access::ReadWrite);
    let mut rig = Rig::new(&mem, backend);
    let table = DATA + 0x10_0000;
    let header = rig.header(VIRTIO_BLK_T_IN, 1);
    let entries = [
        header,
        desc(DATA, 512, WRITE | NEXT, 2),
        desc(STATUS, 1, WRITE, 0),
    ];
    for (i, d) in (0..).zip(entries) {
        mem.write_obj(d, GuestAddress(table + 16 * i)).unwrap();
    }
    assert_eq!(rig.submit(&[desc(table, 48, INDIRECT, 0)]), (513, OK));
    assert_eq!(rig.get(DATA, 512), file_bytes(&tmp, 512, 512));
}

#[test]
fn flush_reaches_the_backend() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
    assert_eq!(rig.block.backend().calls, vec![Op::Flush]);
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::new(&mem, backend);
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
}

#[test]
fn writes_are_flushed_one_by_one_when_flush_is_not_negotiated() {
    let mem = guest_memory();
    let features = ALL_FEATURES & !bit(VIRTIO_BLK_F_FLUSH);
    let mut rig = Rig::with(
        &mem,
        Fake::new(Access::ReadWrite),
        BlockOptions::default(),
        features,
    );
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 2, &[(DATA, 512, 0)]), (1, OK));
    assert_eq!(
        rig.block.backend().calls,
        vec![Op::Write(1024, 512), Op::Flush]
    );
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    rig.request(VIRTIO_BLK_T_OUT, 2, &[(DATA, 512, 0)]);
    assert_eq!(rig.block.backend().calls, vec![Op::Write(1024, 512)]);
}

#[test]
fn get_id_returns_the_serial_nul_padded() {
    let mem = guest_memory();
    let options = BlockOptions {
        serial: Serial::new("flint-disk-0").unwrap(),
        ..BlockOptions::default()
    };
    let features = ALL_FEATURES;
    let mut rig = Rig::with(&mem, Fake::new(Access::ReadWrite), options, features);
    rig.put(DATA, &[0xff; 32]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 20, WRITE)]),
        (21, OK)
    );
    let mut expected = b"flint-disk-0".to_vec();
    expected.resize(20, 0);
    assert_eq!(rig.get(DATA, 20), expected);
    assert_eq!(rig.get(DATA + 20, 1), [0xff], "nothing past the buffer");
    assert!(rig.block.backend().calls.is_empty());
}

#[test]
fn a_20_byte_serial_has_no_terminator_and_short_buffers_get_a_prefix() {
    let mem = guest_memory();
    let options = BlockOptions {
        serial: Serial::new("ABCDEFGHIJKLMNOPQRST").unwrap(),
        ..BlockOptions::default()
    };
    let mut rig = Rig::with(&mem, Fake::new(Access::ReadWrite), options, ALL_FEATURES);
    rig.put(DATA, &[0xff; 32]);
    rig.put(DATA + 0x100, &[0xff; 32]);
    let split = [(DATA, 8, WRITE), (DATA + 0x100, 24, WRITE)];
    assert_eq!(rig.request(VIRTIO_BLK_T_GET_ID, 0, &split), (33, OK));
    assert_eq!(rig.get(DATA, 8), b"ABCDEFGH");
    assert_eq!(rig.get(DATA + 0x100, 13), b"IJKLMNOPQRST\xff");
    rig.put(DATA, &[0xff; 32]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 4, WRITE)]),
        (5, OK)
    );
    assert_eq!(rig.get(DATA, 5), b"ABCD\xff");
}

#[test]
fn a_write_to_a_read_only_disk_is_an_ioerr_and_changes_nothing() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadOnly));
    rig.put(DATA, &[0x11; 512]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, 0)]),
        (1, IOERR)
    );
    assert!(rig.block.backend().calls.is_empty(), "backend untouched");

    let (tmp, backend) = disk(DISK_LEN, 0x42, Access::ReadOnly);
    let mut rig = Rig::new(&mem, backend);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, 0)]),
        (1, IOERR)
    );
    assert_eq!(
        file_bytes(&tmp, 0, DISK_LEN as usize),
        vec![0x42; DISK_LEN as usize]
    );
    let read = rig.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    assert_eq!(read, (513, OK), "reads still work");
    assert_eq!(rig.get(DATA, 512), vec![0x42; 512]);
    let ranges = rig.ranges(DATA + 0x1000, &[(0, 8, 0)]);
    let discard = rig.request(VIRTIO_BLK_T_DISCARD, 0, &[(DATA + 0x1000, ranges, 0)]);
    assert_eq!(discard, (1, UNSUPP), "discard is not offered read-only");
}

#[test]
fn requests_past_the_end_are_ioerrs_and_write_nothing() {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::new(&mem, backend);
    rig.put(DATA, &[0x99; 1024]);
    for sector in [127, 128, 1 << 40, u64::MAX / 512, u64::MAX - 1, u64::MAX] {
        let (_, status) = rig.request(VIRTIO_BLK_T_OUT, sector, &[(DATA, 1024, 0)]);
        assert_eq!(status, IOERR, "sector {sector}");
        let (_, status) = rig.request(VIRTIO_BLK_T_IN, sector, &[(DATA, 1024, WRITE)]);
        assert_eq!(status, IOERR, "sector {sector}");
    }
    assert_eq!(
        file_bytes(&tmp, 0, DISK_LEN as usize),
        vec![0; DISK_LEN as usize]
    );
    assert_eq!(rig.get(DATA, 1024), vec![0x99; 1024], "no data read either");
}

#[test]
fn unknown_request_types_are_unsupported() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    for kind in [2, 10, 14, 0x8000_0000] {
        assert_eq!(
            rig.request(kind, 0, &[(DATA, 512, WRITE)]),
            (513, UNSUPP),
            "{kind}"
        );
    }
    assert!(rig.block.backend().calls.is_empty());
}

#[test]
fn backend_failures_are_ioerrs_counted_and_the_device_goes_on() {
    let mem = guest_memory();
    let mut fake = Fake::new(Access::ReadWrite);
    fake.failing = vec![Op::Write(0, 0), Op::Flush];
    let mut rig = Rig::new(&mem, fake);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, 0)]),
        (1, IOERR)
    );
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, IOERR));
    assert_eq!(rig.block.io_errors(), 2);
    assert!(!rig.block.needs_reset());
    assert_eq!(
        rig.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]),
        (513, OK)
    );
    assert_eq!(rig.get(DATA, 512), vec![0x5a; 512]);
}

#[test]
fn discard_and_write_zeroes_read_back_as_zeros() {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0xab, Access::ReadWrite);
    let mut rig = Rig::new(&mem, backend);
    let list = DATA + 0x2000;
    let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    let len = rig.ranges(list, &[(8, 8, 0), (32, 16, unmap), (100, 0, 0)]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[(list, len, 0)]),
        (1, OK)
    );
    let disk = file_bytes(&tmp, 0, DISK_LEN as usize);
    let zeroed = |s: usize| (8..16).contains(&s) || (32..48).contains(&s);
    for (sector, bytes) in disk.chunks(512).enumerate() {
        let want = if zeroed(sector) { 0 } else { 0xab };
        assert!(bytes.iter().all(|&b| b == want), "sector {sector}");
    }
    let len = rig.ranges(list, &[(64, 8, 0)]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_DISCARD, 0, &[(list, len, 0)]),
        (1, OK)
    );
    // Punching a hole on ext4 / tmpfs / xfs zeroes the range.
    assert_eq!(file_bytes(&tmp, 64 * 512, 4096), vec![0; 4096]);
}

#[test]
fn ranges_go_to_the_backend_with_their_flags() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    let list = DATA + 0x2000;
    let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    let len = rig.ranges(list, &[(1, 2, unmap), (3, 4, 0)]);
    // Split across two descriptors in the middle of a range.
    let data = [(list, 20, 0), (list + 20, len - 20, 0)];
    assert_eq!(rig.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &data), (1, OK));
    let len = rig.ranges(list, &[(5, 6, 0)]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_DISCARD, 0, &[(list, len, 0)]),
        (1, OK)
    );
    let calls = &rig.block.backend().calls;
    assert_eq!(
        calls,
        &[
            Op::WriteZeroes(512, 1024, Unmap::Allowed),
            Op::WriteZeroes(1536, 2048, Unmap::Forbidden),
            Op::Discard(2560, 3072),
        ]
    );
}

#[test]
fn discard_with_unmap_unknown_flags_or_unnegotiated_is_unsupported() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    let list = DATA + 0x2000;
    let len = rig.ranges(list, &[(0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_DISCARD, 0, &[(list, len, 0)]),
        (1, UNSUPP)
    );
    let len = rig.ranges(list, &[(0, 1, 2)]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[(list, len, 0)]),
        (1, UNSUPP)
    );
    let features = ALL_FEATURES & !bit(VIRTIO_BLK_F_DISCARD) & !bit(VIRTIO_BLK_F_WRITE_ZEROES);
    let mut rig = Rig::with(
        &mem,
        Fake::new(Access::ReadWrite),
        BlockOptions::default(),
        features,
    );
    let len = rig.ranges(list, &[(0, 1, 0)]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_DISCARD, 0, &[(list, len, 0)]),
        (1, UNSUPP)
    );
    assert_eq!(
        rig.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[(list, len, 0)]),
        (1, UNSUPP)
    );
    assert!(rig.block.backend().calls.is_empty());
}

#[test]
fn reset_stops_the_device_until_it_is_activated_again() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    rig.block.reset();
    rig.q.add_chains(
        &[rig.header(VIRTIO_BLK_T_FLUSH, 0), desc(STATUS, 1, WRITE, 0)],
        0,
    );
    rig.block.process_queue(0).unwrap();
    assert!(rig.q.used().is_empty());
    rig.q.restart();
    rig.activate(ALL_FEATURES);
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
    assert!(
        rig.block.process_queue(7).is_ok(),
        "unknown queues are ignored"
    );
}
