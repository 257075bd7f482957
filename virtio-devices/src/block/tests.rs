//! Block device tests on real guest memory (fixtures in `testing.rs`):
//! identity, configuration space, and round trips of reads, writes,
//! flushes and GET_ID through a temporary file or a fake backend (virtio
//! 1.2 §5.2.3–§5.2.6). Ranges, read-only disks and failures are in
//! `tests_ranges.rs`, malformed chains in `tests_malformed.rs`, the file
//! backend alone in `tests_backend.rs`.

use virtio_bindings::virtio_blk::*;
use vm_memory::{Bytes, GuestAddress};

use super::device::*;
use super::testing::*;
use super::*;
use crate::device::{VirtioDevice, FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC};
use crate::interrupt::InterruptType;
use crate::testing::{desc, guest_memory, INDIRECT, NEXT, WRITE};

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
fn host_transfer_limits_reach_the_config_space_within_the_devices_own() {
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let options = BlockOptions {
        limits: TransferLimits {
            size_max: 65536,
            seg_max: 100_000,
            max_discard_sectors: 2048,
            discard_alignment: 8,
        },
        ..BlockOptions::default()
    };
    let block = Block::new(backend, options).unwrap();
    let mut c = [0u8; 48];
    block.read_config(0, &mut c);
    let le32 = |at: usize| u32::from_le_bytes(c[at..at + 4].try_into().unwrap());
    assert_eq!((le32(8), le32(12)), (65536, SEG_MAX), "seg_max clamped");
    assert_eq!((le32(36), le32(44)), (2048, 8));
}

#[test]
fn a_data_descriptor_beyond_the_hosts_size_max_fails() {
    let mem = guest_memory();
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let options = BlockOptions {
        limits: TransferLimits {
            size_max: 4096,
            ..TransferLimits::default()
        },
        ..BlockOptions::default()
    };
    let mut rig = Rig::with(&mem, backend, options, ALL_FEATURES);
    let ok = rig.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 4096, WRITE)]);
    assert_eq!(ok.1, OK);
    let too_big = rig.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 8192, WRITE)]);
    assert_eq!(too_big.1, IOERR);
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
    for engine in ENGINES {
        a_write_then_a_read_round_trip_through_the_file_on(engine);
    }
}

fn a_write_then_a_read_round_trip_through_the_file_on(engine: IoEngine) {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::on(&mem, backend, engine);
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
    for engine in ENGINES {
        the_last_sector_can_be_read_and_written_on(engine);
    }
}

fn the_last_sector_can_be_read_and_written_on(engine: IoEngine) {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::on(&mem, backend, engine);
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
    for engine in ENGINES {
        a_request_through_an_indirect_table_works_on(engine);
    }
}

fn a_request_through_an_indirect_table_works_on(engine: IoEngine) {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0x33, Access::ReadWrite);
    let mut rig = Rig::on(&mem, backend, engine);
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
    for engine in ENGINES {
        flush_reaches_the_backend_on(engine);
    }
}

fn flush_reaches_the_backend_on(engine: IoEngine) {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
    assert_eq!(rig.block.backend().calls, vec![Op::Flush]);
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::on(&mem, backend, engine);
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

#[test]
fn behind_the_mmio_transport_it_shows_id_2_and_its_capacity() {
    let mem = guest_memory();
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadOnly);
    let block = Block::new(backend, BlockOptions::default()).unwrap();
    let irq = std::sync::Arc::new(crate::CountingInterrupt::new());
    let t = crate::MmioTransport::new(block, mem, irq).unwrap();
    let read32 = |offset: u64| {
        let mut b = [0u8; 4];
        t.read(offset, &mut b);
        u32::from_le_bytes(b)
    };
    assert_eq!(read32(0x008), 2, "DeviceID");
    assert_eq!(read32(0x034), u32::from(QUEUE_SIZE), "QueueNumMax");
    assert_ne!(read32(0x010) & bit(VIRTIO_BLK_F_RO) as u32, 0);
    let mut capacity = [0u8; 8];
    t.read(0x100, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), 128);
}
