//! The io_uring engine (`uring.rs`) on a real file: which devices get it,
//! a FLUSH completing after every write submitted before it (virtio 1.2
//! §5.2.6.2 via IOSQE_IO_DRAIN), and reset waiting for requests in flight.
//! Skipped, with a note, where the kernel refuses io_uring.

use virtio_bindings::virtio_blk::*;
use vm_memory::{Bytes, GuestAddress};

use super::testing::*;
use super::*;
use crate::device::VirtioDevice;
use crate::testing::{desc, guest_memory, INDIRECT, NEXT, WRITE};

/// A rig on a fresh file with the io_uring engine, or `None` (logged)
/// where the kernel has none.
fn uring_rig(
    mem: &vm_memory::GuestMemoryMmap,
) -> Option<(vmm_sys_util::tempfile::TempFile, Rig<'_, FileBackend>)> {
    let (tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let rig = Rig::on(mem, backend, IoEngine::Auto);
    if !rig.block.uses_io_uring() {
        eprintln!("io_uring unavailable here: test skipped");
        return None;
    }
    Some((tmp, rig))
}

#[test]
fn only_file_backends_in_auto_mode_get_an_engine() {
    let mem = guest_memory();
    let (_tmp, backend) = disk(DISK_LEN, 0, Access::ReadWrite);
    let rig = Rig::on(&mem, backend, IoEngine::Sync);
    assert_eq!(rig.block.completion_fd(), None);
    let rig = Rig::on(&mem, Fake::new(Access::ReadWrite), IoEngine::Auto);
    assert_eq!(rig.block.completion_fd(), None);
    assert!(!rig.block.uses_io_uring());
}

#[test]
fn many_writes_then_a_flush_complete_in_order() {
    let mem = guest_memory();
    let Some((tmp, mut rig)) = uring_rig(&mem) else {
        return;
    };
    const WRITES: u16 = SIZE - 1;
    const LEN: u32 = 4096;
    let tables = DATA + 0x10_0000;
    let headers = DATA + 0x20_0000;
    let chain = |i: u16, kind: u32, data: Option<u64>| {
        let header = headers + 16 * u64::from(i);
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&kind.to_le_bytes());
        raw[8..].copy_from_slice(&(8 * u64::from(i)).to_le_bytes());
        mem.write_slice(&raw, GuestAddress(header)).unwrap();
        let mut entries = vec![desc(header, 16, NEXT, 1)];
        if let Some(data) = data {
            entries.push(desc(data, LEN, NEXT, 2));
        }
        entries.push(desc(STATUS + u64::from(i), 1, WRITE, 0));
        let table = tables + 0x100 * u64::from(i);
        for (j, d) in (0..).zip(&entries) {
            mem.write_obj(*d, GuestAddress(table + 16 * j)).unwrap();
        }
        desc(table, 16 * entries.len() as u32, INDIRECT, 0)
    };
    mem.write_slice(&[UNTOUCHED; SIZE as usize], GuestAddress(STATUS))
        .unwrap();
    let mut heads = Vec::new();
    for i in 0..WRITES {
        let data = DATA + u64::from(i) * u64::from(LEN);
        rig.put(data, &vec![i as u8 + 1; LEN as usize]);
        heads.push(chain(i, VIRTIO_BLK_T_OUT, Some(data)));
    }
    heads.push(chain(WRITES, VIRTIO_BLK_T_FLUSH, None));
    rig.q.add_chains(&heads, 0);
    rig.block.process_queue(0).unwrap();
    rig.settle(usize::from(SIZE));
    let used = rig.q.used();
    assert_eq!(used.len(), usize::from(SIZE));
    assert_eq!(
        used.last(),
        Some(&(u32::from(WRITES), 1)),
        "FLUSH comes last"
    );
    let mut writes: Vec<u32> = used[..usize::from(WRITES)].iter().map(|u| u.0).collect();
    writes.sort_unstable();
    assert_eq!(writes, (0..u32::from(WRITES)).collect::<Vec<_>>());
    assert_eq!(
        rig.get(STATUS, usize::from(SIZE)),
        vec![OK; usize::from(SIZE)]
    );
    for i in 0..WRITES {
        let at = u64::from(i) * u64::from(LEN);
        assert_eq!(
            file_bytes(&tmp, at, LEN as usize),
            vec![i as u8 + 1; LEN as usize]
        );
    }
}

#[test]
fn reset_waits_for_requests_in_flight() {
    let mem = guest_memory();
    let Some((tmp, mut rig)) = uring_rig(&mem) else {
        return;
    };
    rig.put(DATA, &[0x77; 512]);
    let descs = [
        rig.header(VIRTIO_BLK_T_OUT, 2),
        desc(DATA, 512, NEXT, 2),
        desc(STATUS, 1, WRITE, 0),
    ];
    rig.q.add_chains(&descs, 0);
    rig.block.process_queue(0).unwrap();
    rig.block.reset();
    assert_eq!(file_bytes(&tmp, 1024, 512), vec![0x77; 512]);
    // Nothing is left to complete, and a fresh activation works.
    rig.block.process_completions().unwrap();
    rig.q.restart();
    rig.activate(ALL_FEATURES);
    assert_eq!(
        rig.request(VIRTIO_BLK_T_IN, 2, &[(DATA + 0x1000, 512, WRITE)]),
        (513, OK)
    );
    assert_eq!(rig.get(DATA + 0x1000, 512), vec![0x77; 512]);
}

/// One batch of requests (type, sector, data address) made available at
/// once and served with one notification; their statuses in order.
fn batch(rig: &mut Rig<'_, FileBackend>, requests: &[(u32, u64, u64)]) -> Vec<u8> {
    const LEN: u32 = 4096;
    let (tables, headers) = (DATA + 0x10_0000, DATA + 0x20_0000);
    let mut heads = Vec::new();
    for (i, &(kind, sector, data)) in (0u64..).zip(requests) {
        let header = headers + 16 * i;
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&kind.to_le_bytes());
        raw[8..].copy_from_slice(&sector.to_le_bytes());
        rig.put(header, &raw);
        let flags = if kind == VIRTIO_BLK_T_IN { WRITE } else { 0 };
        let entries = [
            desc(header, 16, NEXT, 1),
            desc(data, LEN, flags | NEXT, 2),
            desc(STATUS + i, 1, WRITE, 0),
        ];
        let table = tables + 0x100 * i;
        for (j, d) in (0..).zip(&entries) {
            rig.mem.write_obj(*d, GuestAddress(table + 16 * j)).unwrap();
        }
        heads.push(desc(table, 48, INDIRECT, 0));
    }
    rig.put(STATUS, &vec![UNTOUCHED; requests.len()]);
    let before = rig.q.used().len();
    rig.q.add_chains(&heads, 0);
    rig.block.process_queue(0).unwrap();
    rig.settle(before + requests.len());
    rig.get(STATUS, requests.len())
}

#[test]
fn contiguous_requests_of_one_batch_merge_into_one_transfer() {
    let mem = guest_memory();
    let Some((tmp, mut rig)) = uring_rig(&mem) else {
        return;
    };
    let data = |i: u64| DATA + i * 0x1000;
    for i in 0..6 {
        rig.put(data(i), &[i as u8 + 1; 4096]);
    }
    // Four writes end to end (sectors 0, 8, 16, 24), then two elsewhere.
    let writes: Vec<(u32, u64, u64)> = [0, 8, 16, 24, 100, 60]
        .iter()
        .zip(0..)
        .map(|(&sector, i)| (VIRTIO_BLK_T_OUT, sector, data(i)))
        .collect();
    assert_eq!(batch(&mut rig, &writes), vec![OK; 6]);
    assert_eq!(
        rig.block.merged(),
        3,
        "sectors 8, 16 and 24 joined sector 0"
    );
    for (i, at) in [0u64, 4096, 8192, 12288, 100 * 512, 60 * 512]
        .iter()
        .enumerate()
    {
        assert_eq!(file_bytes(&tmp, *at, 4096), vec![i as u8 + 1; 4096]);
    }
    // Reads merge too, into buffers scattered in guest memory.
    let reads: Vec<(u32, u64, u64)> = (0..4)
        .map(|i| (VIRTIO_BLK_T_IN, 8 * i, DATA + 0x8_0000 + 0x3000 * i))
        .collect();
    assert_eq!(batch(&mut rig, &reads), vec![OK; 4]);
    assert_eq!(rig.block.merged(), 6);
    for i in 0..4u64 {
        assert_eq!(
            rig.get(DATA + 0x8_0000 + 0x3000 * i, 4096),
            vec![i as u8 + 1; 4096]
        );
    }
    // A read then a write of the next sectors: different directions never merge.
    let mixed = [
        (VIRTIO_BLK_T_IN, 0, data(0)),
        (VIRTIO_BLK_T_OUT, 8, data(1)),
    ];
    assert_eq!(batch(&mut rig, &mixed), vec![OK; 2]);
    assert_eq!(rig.block.merged(), 6);
}
