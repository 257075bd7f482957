//! Block device tests of DISCARD and WRITE_ZEROES, read-only disks,
//! out-of-range and unsupported requests, and backend failures (virtio 1.2
//! §5.2.6.2 device requirements), on real guest memory with the fixtures
//! of `testing.rs`.

use virtio_bindings::virtio_blk::*;

use super::testing::*;
use super::*;
use crate::device::VirtioDevice;
use crate::testing::{guest_memory, WRITE};

#[test]
fn a_write_to_a_read_only_disk_is_an_ioerr_and_changes_nothing() {
    for engine in ENGINES {
        a_write_to_a_read_only_disk_is_an_ioerr_and_changes_nothing_on(engine);
    }
}

fn a_write_to_a_read_only_disk_is_an_ioerr_and_changes_nothing_on(engine: IoEngine) {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadOnly));
    rig.put(DATA, &[0x11; 512]);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, 0)]),
        (1, IOERR)
    );
    assert!(rig.block.backend().calls.is_empty(), "backend untouched");

    let (tmp, backend) = disk(DISK_LEN, 0x42, Access::ReadOnly);
    let mut rig = Rig::on(&mem, backend, engine);
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
    for engine in ENGINES {
        requests_past_the_end_are_ioerrs_and_write_nothing_on(engine);
    }
}

fn requests_past_the_end_are_ioerrs_and_write_nothing_on(engine: IoEngine) {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let mut rig = Rig::on(&mem, backend, engine);
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
            (1, UNSUPP),
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
    for engine in ENGINES {
        discard_and_write_zeroes_read_back_as_zeros_on(engine);
    }
}

fn discard_and_write_zeroes_read_back_as_zeros_on(engine: IoEngine) {
    let mem = guest_memory();
    let (tmp, backend) = disk(DISK_LEN, 0xab, Access::ReadWrite);
    let mut rig = Rig::on(&mem, backend, engine);
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
