//! Block tests with malformed guest input: every bad chain comes back,
//! with VIRTIO_BLK_S_IOERR where a status byte can be written and used
//! length 0 where none can, without touching the backend, without a panic,
//! and the device keeps working; a broken ring sets DEVICE_NEEDS_RESET
//! (virtio 1.2 §5.2.6, §2.7.5 chain rules, §2.7.5.3 indirect tables,
//! §2.1.2 needs-reset). Random descriptor tables close the file.

use virtio_bindings::virtio_blk::*;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::request::{parse, Limits, RequestFault, Scratch};
use super::testing::*;
use super::*;
use crate::device::VirtioDevice;
use crate::interrupt::InterruptType;
use crate::testing::{desc, guest_memory, Rng, INDIRECT, MEM_SIZE, NEXT, WRITE};

/// Build a chain on a fresh device over a fake backend, submit it, and
/// check the (used length, status byte) that come back; then check that
/// the backend was not called and that a good request still works.
fn check(build: impl Fn(&Rig<'_, Fake>) -> Vec<RawDescriptor>, expected: (u32, u8)) {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    let descs = build(&rig);
    assert_eq!(rig.submit(&descs), expected, "{descs:?}");
    assert!(rig.block.backend().calls.is_empty(), "backend touched");
    assert!(!rig.block.needs_reset());
    let good = rig.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    assert_eq!(good, (513, OK), "the device keeps working");
}

/// No status byte: used length 0, the byte untouched.
const SILENT: (u32, u8) = (0, UNTOUCHED);

fn status() -> RawDescriptor {
    desc(STATUS, 1, WRITE, 0)
}

#[test]
fn a_short_or_long_header_is_an_ioerr() {
    for len in [0, 8, 15, 17, 512] {
        check(|_| vec![desc(HEADER, len, NEXT, 1), status()], (1, IOERR));
    }
    check(
        |r| {
            r.header(VIRTIO_BLK_T_IN, 0);
            vec![
                desc(HEADER, 8, NEXT, 1),
                desc(DATA, 512, WRITE | NEXT, 2),
                status(),
            ]
        },
        (1, IOERR),
    );
}

#[test]
fn a_device_writable_or_unmapped_header_is_an_ioerr() {
    check(
        |r| {
            r.header(VIRTIO_BLK_T_FLUSH, 0);
            vec![desc(HEADER, 16, WRITE | NEXT, 1), status()]
        },
        (1, IOERR),
    );
    check(|_| vec![desc(MEM_SIZE, 16, NEXT, 1), status()], (1, IOERR));
    check(
        |_| vec![desc(u64::MAX - 8, 16, NEXT, 1), status()],
        (1, IOERR),
    );
}

#[test]
fn chains_without_a_writable_one_byte_status_come_back_with_length_0() {
    // Header alone.
    check(
        |r| {
            r.header(VIRTIO_BLK_T_IN, 0);
            vec![desc(HEADER, 16, 0, 0)]
        },
        SILENT,
    );
    // A lone status byte.
    check(|_| vec![status()], SILENT);
    // Status device-readable, empty, too long, or outside memory.
    for last in [
        desc(STATUS, 1, 0, 0),
        desc(STATUS, 0, WRITE, 0),
        desc(STATUS, 2, WRITE, 0),
        desc(STATUS, 512, WRITE, 0),
        desc(MEM_SIZE, 1, WRITE, 0),
        desc(u64::MAX, 1, WRITE, 0),
    ] {
        check(|r| vec![r.header(VIRTIO_BLK_T_FLUSH, 0), last], SILENT);
    }
    // A read whose data would be the status: the last descriptor is 512
    // bytes, so there is no status byte.
    check(
        |r| vec![r.header(VIRTIO_BLK_T_IN, 0), desc(DATA, 512, WRITE, 0)],
        SILENT,
    );
}

#[test]
fn data_in_the_wrong_direction_is_an_ioerr() {
    // A refused request wrote only its status byte: used length 1.
    let cases = [
        (VIRTIO_BLK_T_IN, 0, 1),
        (VIRTIO_BLK_T_OUT, WRITE, 1),
        (VIRTIO_BLK_T_GET_ID, 0, 1),
        (VIRTIO_BLK_T_DISCARD, WRITE, 1),
        (VIRTIO_BLK_T_WRITE_ZEROES, WRITE, 1),
    ];
    for (kind, flags, used) in cases {
        check(
            |r| {
                vec![
                    r.header(kind, 0),
                    desc(DATA, 512, flags | NEXT, 2),
                    status(),
                ]
            },
            (used, IOERR),
        );
    }
    // Mixed directions in one read.
    check(
        |r| {
            vec![
                r.header(VIRTIO_BLK_T_IN, 0),
                desc(DATA, 512, WRITE | NEXT, 2),
                desc(DATA + 0x1000, 512, NEXT, 3),
                status(),
            ]
        },
        (1, IOERR),
    );
}

#[test]
fn missing_empty_or_unexpected_data_is_an_ioerr() {
    for kind in [
        VIRTIO_BLK_T_IN,
        VIRTIO_BLK_T_OUT,
        VIRTIO_BLK_T_GET_ID,
        VIRTIO_BLK_T_DISCARD,
    ] {
        check(|r| vec![r.header(kind, 0), status()], (1, IOERR));
    }
    check(
        |r| {
            vec![
                r.header(VIRTIO_BLK_T_IN, 0),
                desc(DATA, 512, WRITE | NEXT, 2),
                desc(DATA + 0x1000, 0, WRITE | NEXT, 3),
                status(),
            ]
        },
        (1, IOERR),
    );
    check(
        |r| {
            vec![
                r.header(VIRTIO_BLK_T_FLUSH, 0),
                desc(DATA, 512, NEXT, 2),
                status(),
            ]
        },
        (1, IOERR),
    );
}

#[test]
fn lengths_that_are_not_whole_sectors_or_exceed_size_max_are_ioerrs() {
    for len in [1, 100, 511, 513, SIZE_MAX + 512] {
        check(
            |r| {
                vec![
                    r.header(VIRTIO_BLK_T_OUT, 0),
                    desc(DATA, len, NEXT, 2),
                    status(),
                ]
            },
            (1, IOERR),
        );
    }
    // 4 GiB in one chain: virtio-queue stops the chain, so no status byte.
    check(
        |r| {
            vec![
                r.header(VIRTIO_BLK_T_OUT, 0),
                desc(DATA, u32::MAX, NEXT, 2),
                status(),
            ]
        },
        SILENT,
    );
}

#[test]
fn sector_numbers_that_overflow_are_ioerrs() {
    for sector in [u64::MAX, u64::MAX / 512 + 1, 1 << 63] {
        check(
            |r| {
                vec![
                    r.header(VIRTIO_BLK_T_IN, sector),
                    desc(DATA, 512, WRITE | NEXT, 2),
                    status(),
                ]
            },
            (1, IOERR),
        );
    }
}

#[test]
fn data_buffers_outside_guest_memory_are_ioerrs() {
    for addr in [MEM_SIZE, MEM_SIZE - 256, u64::MAX - 100, 1 << 40] {
        check(
            |r| {
                vec![
                    r.header(VIRTIO_BLK_T_IN, 0),
                    desc(addr, 512, WRITE | NEXT, 2),
                    status(),
                ]
            },
            (1, IOERR),
        );
    }
}

#[test]
fn loops_and_dangling_links_come_back_with_length_0() {
    check(
        |r| {
            vec![
                r.header(VIRTIO_BLK_T_IN, 0),
                desc(DATA, 512, WRITE | NEXT, 0),
            ]
        },
        SILENT,
    );
    check(
        |r| {
            vec![
                r.header(VIRTIO_BLK_T_IN, 0),
                desc(DATA, 512, WRITE | NEXT, SIZE),
            ]
        },
        SILENT,
    );
    check(|_| vec![desc(HEADER, 16, NEXT, 0)], SILENT);
}

/// Write `entries` as an indirect table at `table`.
fn write_table(rig: &Rig<'_, Fake>, table: u64, entries: &[RawDescriptor]) {
    for (i, d) in (0..).zip(entries) {
        rig.mem.write_obj(*d, GuestAddress(table + 16 * i)).unwrap();
    }
}

#[test]
fn a_chain_longer_than_the_queue_is_an_ioerr() {
    let table = DATA + 0x10_0000;
    check(
        |r| {
            // Header, SIZE - 1 sectors, status: SIZE + 1 descriptors.
            let mut entries = vec![r.header(VIRTIO_BLK_T_OUT, 0)];
            for i in 1..SIZE {
                entries.push(desc(DATA + 512 * u64::from(i), 512, NEXT, i + 1));
            }
            entries.push(status());
            write_table(r, table, &entries);
            vec![desc(table, 16 * u32::from(SIZE + 1), INDIRECT, 0)]
        },
        (1, IOERR),
    );
    // A loop inside an indirect table.
    check(
        |r| {
            let entries = [r.header(VIRTIO_BLK_T_OUT, 0), desc(DATA, 512, NEXT, 0)];
            write_table(r, table, &entries);
            vec![desc(table, 32, INDIRECT, 0)]
        },
        SILENT,
    );
}

#[test]
fn more_data_descriptors_than_seg_max_is_an_ioerr() {
    let mem = guest_memory();
    let vq = MockSplitQueue::new(&mem, 16);
    let mut descs = vec![desc(HEADER, 16, NEXT, 1)];
    for i in 1..=3 {
        descs.push(desc(DATA + 512 * u64::from(i), 512, NEXT, i + 1));
    }
    descs.push(status());
    let chain = vq.build_multiple_desc_chains(&descs).unwrap();
    let limits = Limits {
        capacity: 128,
        max_descriptors: 16,
        seg_max: 2,
        size_max: SIZE_MAX,
        max_ranges: MAX_RANGES,
        max_range_sectors: MAX_RANGE_SECTORS,
    };
    let mut scratch = Scratch::new(2);
    let (reply, request) = parse(&mem, chain, &limits, &mut scratch).unwrap();
    assert_eq!(reply.status, GuestAddress(STATUS));
    assert_eq!(request.unwrap_err(), RequestFault::TooManySegments(2));
}

#[test]
fn bad_range_lists_are_ioerrs() {
    let list = DATA + 0x2000;
    let too_many: Vec<_> = (0..=u64::from(MAX_RANGES)).map(|i| (i, 1, 0)).collect();
    let lists: [&[(u64, u32, u32)]; 5] = [
        &too_many,
        &[(0, MAX_RANGE_SECTORS + 1, 0)],
        &[(127, 2, 0)],
        &[(u64::MAX, 1, 0)],
        &[(0, 1, 0), (200, 1, 0)],
    ];
    for ranges in lists {
        for kind in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
            check(
                |r| {
                    let len = r.ranges(list, ranges);
                    vec![r.header(kind, 0), desc(list, len, NEXT, 2), status()]
                },
                (1, IOERR),
            );
        }
    }
    // Not a whole number of 16-byte ranges.
    check(
        |r| {
            r.ranges(list, &[(0, 1, 0), (1, 1, 0)]);
            vec![
                r.header(VIRTIO_BLK_T_DISCARD, 0),
                desc(list, 20, NEXT, 2),
                status(),
            ]
        },
        (1, IOERR),
    );
}

#[test]
fn good_and_bad_chains_in_one_batch_are_all_answered_in_order() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    rig.header(VIRTIO_BLK_T_IN, 0);
    let statuses = [STATUS, STATUS + 1, STATUS + 2, STATUS + 3];
    let chains = [
        [
            desc(HEADER, 16, NEXT, 1),
            desc(DATA, 512, WRITE | NEXT, 2),
            desc(statuses[0], 1, WRITE, 0),
        ],
        [
            desc(HEADER, 16, NEXT, 4),
            desc(DATA, 512, NEXT, 5),
            desc(statuses[1], 1, WRITE, 0),
        ],
        [
            desc(HEADER, 16, NEXT, 7),
            desc(DATA, 512, WRITE | NEXT, 8),
            desc(statuses[2], 1, 0, 0),
        ],
        [
            desc(HEADER, 16, NEXT, 10),
            desc(DATA, 512, WRITE | NEXT, 11),
            desc(statuses[3], 1, WRITE, 0),
        ],
    ];
    mem.write_slice(&[UNTOUCHED; 4], GuestAddress(STATUS))
        .unwrap();
    for (i, chain) in (0..).zip(&chains) {
        rig.q.add_chains(chain, 3 * i);
    }
    rig.block.process_queue(0).unwrap();
    assert_eq!(rig.q.used(), vec![(0, 513), (3, 1), (6, 0), (9, 513)]);
    assert_eq!(rig.get(STATUS, 4), [OK, IOERR, UNTOUCHED, OK]);
    assert_eq!(
        rig.irq.count(InterruptType::Queue(0)),
        1,
        "one interrupt per batch"
    );
}

#[test]
fn a_head_index_past_the_queue_sets_needs_reset_until_reset() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    rig.q.make_available(SIZE + 3);
    rig.block.process_queue(0).unwrap();
    assert!(rig.block.needs_reset());
    assert_eq!(rig.irq.count(InterruptType::Config), 1);
    rig.block.reset();
    assert!(!rig.block.needs_reset());
    rig.q.restart();
    rig.activate(ALL_FEATURES);
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
}

/// A descriptor a hostile or buggy driver might write.
fn random_desc(rng: &mut Rng) -> RawDescriptor {
    let addrs = [
        HEADER,
        STATUS,
        DATA + 512 * rng.below(64),
        MEM_SIZE - rng.below(16),
        u64::MAX - rng.below(16),
        DATA + 0x8000,
    ];
    let lens = [
        0,
        1,
        1,
        16,
        16,
        20,
        512,
        1024,
        100,
        u32::MAX,
        SIZE_MAX + 512,
    ];
    let flags = rng.pick(&[0, NEXT, WRITE, WRITE | NEXT, INDIRECT, NEXT | INDIRECT]);
    let nexts = [rng.below(u64::from(SIZE)) as u16, SIZE, u16::MAX];
    let next = rng.pick(&nexts);
    desc(rng.pick(&addrs), rng.pick(&lens), flags, next)
}

#[test]
fn random_descriptor_tables_never_panic_and_every_chain_comes_back() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem, Fake::new(Access::ReadWrite));
    let mut rng = Rng::new(0xb10c_f00d);
    let mut answered = 0;
    for _ in 0..400 {
        rig.block.reset();
        rig.q.restart();
        rig.activate(ALL_FEATURES);
        let kind = rng.pick(&[0, 1, 4, 8, 11, 13, 99]);
        rig.header(kind, rng.pick(&[0, 1, 127, 128, u64::MAX]));
        rig.ranges(
            DATA,
            &[(rng.below(130), rng.below(4) as u32, rng.below(3) as u32)],
        );
        for i in 0..8u64 {
            let at = GuestAddress(DATA + 0x8000 + 16 * i);
            mem.write_obj(random_desc(&mut rng), at).unwrap();
        }
        for i in 0..SIZE {
            rig.q.set_desc(i, random_desc(&mut rng));
        }
        let heads = rng.below(u64::from(SIZE));
        for _ in 0..heads {
            rig.q.make_available(rng.below(u64::from(SIZE)) as u16);
        }
        rig.block.process_queue(0).unwrap();
        assert!(!rig.block.needs_reset());
        let used = rig.q.used();
        assert_eq!(used.len() as u64, heads, "every chain comes back");
        answered += used.iter().filter(|&&(_, len)| len > 0).count();
    }
    assert!(answered > 0, "some random chains have a status byte");
    let good = rig.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    assert_eq!(good, (513, OK));
}
