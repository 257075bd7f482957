//! Randomized console tests: descriptor tables full of random addresses,
//! lengths, flags and links, and random available-ring contents, thrown at
//! both queues. Whatever the guest writes, the device must not panic, must
//! return every chain it pops, and must either keep working or set
//! DEVICE_NEEDS_RESET (virtio 1.2 §2.7.5, §2.1.2).

use virtio_queue::desc::RawDescriptor;
use vm_memory::{Bytes, GuestAddress};

use super::tests::{EventIdx, Rig, SIZE};
use super::*;
use crate::device::VirtioDevice;
use crate::testing::{desc, guest_memory, Rng, BUFFERS, INDIRECT, MEM_SIZE, NEXT, WRITE};

/// A descriptor a hostile or buggy driver might write. Buffers inside
/// memory stay above the rings: a driver that points receive buffers at its
/// own rings corrupts only itself, but would make the checks below moot.
fn random_desc(rng: &mut Rng) -> RawDescriptor {
    let addrs = [
        BUFFERS + rng.below(0x1000),
        BUFFERS + rng.below(MEM_SIZE - BUFFERS),
        MEM_SIZE - rng.below(16),
        u64::MAX - rng.below(16),
        BUFFERS + 0x8000,
    ];
    let addr = rng.pick(&addrs);
    let small = 1 + rng.below(64) as u32;
    let lens = [0, small, small, small, 16, 4096, u32::MAX, 0x10_0001];
    let len = rng.pick(&lens);
    let any = rng.below(8) as u16 & (NEXT | WRITE | INDIRECT);
    let flags = rng.pick(&[0, 0, NEXT, WRITE, WRITE | NEXT, INDIRECT, any]);
    let nexts = [rng.below(u64::from(SIZE)) as u16, SIZE, u16::MAX];
    let next = rng.pick(&nexts);
    desc(addr, len, flags, next)
}

/// One round on clean rings: random tables and random heads (sometimes
/// out of range) on both queues, 100 bytes of input, then both queues
/// served. Returns the input bytes taken.
fn round(rig: &mut Rig<'_>, rng: &mut Rng) -> usize {
    rig.console.reset();
    rig.rx.restart();
    rig.tx.restart();
    rig.activate(EventIdx::Off);
    for i in 0..8u64 {
        // An indirect table random descriptors may point at.
        let at = GuestAddress(BUFFERS + 0x8000 + 16 * i);
        rig.mem.write_obj(random_desc(rng), at).unwrap();
    }
    for q in [&rig.rx, &rig.tx] {
        for i in 0..SIZE {
            q.set_desc(i, random_desc(rng));
        }
        for _ in 0..rng.below(u64::from(SIZE)) {
            let head = match rng.below(64) {
                0 => SIZE + 1,
                _ => rng.below(u64::from(SIZE)) as u16,
            };
            q.make_available(head);
        }
    }
    let taken = rig.console.push_input(&[b'i'; 100]).unwrap();
    let _ = rig.console.process_queue(RX_QUEUE);
    let _ = rig.console.process_queue(TX_QUEUE);
    taken
}

#[test]
fn random_descriptor_tables_never_panic_and_every_chain_comes_back() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let mut rng = Rng::new(0x5eed_f11e);
    let (mut broken, mut pushed, mut delivered) = (0, 0, 0);
    for _ in 0..400 {
        pushed += round(&mut rig, &mut rng);
        let rx_used = rig.rx.used();
        let tx_used = rig.tx.used();
        // Every byte taken from the input went into a used buffer.
        delivered += rx_used.iter().map(|&(_, len)| len as usize).sum::<usize>();
        assert!(rx_used
            .iter()
            .chain(&tx_used)
            .all(|&(id, _)| id < u32::from(SIZE)));
        assert!(tx_used.iter().all(|&(_, len)| len == 0));
        if rig.console.needs_reset() {
            broken += 1;
        } else {
            // A working device returned every transmit chain it was given.
            assert_eq!(tx_used.len(), usize::from(rig.tx.avail_idx()));
        }
    }
    assert_eq!(
        delivered,
        pushed - (INPUT_CAPACITY - rig.console.input_room())
    );
    eprintln!(
        "broken {broken} delivered {delivered} output {}",
        rig.output().len()
    );
    assert!(broken > 0, "out-of-range heads should break some rounds");
    assert!(broken < 400, "most rounds should leave the device working");
}
