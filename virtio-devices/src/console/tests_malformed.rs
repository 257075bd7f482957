//! Console tests with malformed guest input: every bad chain comes back
//! with used length 0 and writes nothing, a broken ring sets
//! DEVICE_NEEDS_RESET, and the device keeps working afterwards (virtio 1.2
//! §2.7.5 chain rules, §2.7.5.3.1 indirect rules, §2.1.2 needs-reset).

use std::io::{self, Write};

use vm_memory::{Bytes, GuestAddress};

use super::tests::{EventIdx, Rig, SIZE};
use super::*;
use crate::device::{DeviceError, VirtioDevice};
use crate::interrupt::InterruptType;
use crate::testing::{desc, guest_memory, BUFFERS, INDIRECT, MEM_SIZE, NEXT, WRITE};

/// Transmit `descs` (one chain, heads as their NEXT flags say) and check
/// that the chain headed at `at` came back with length 0 and nothing
/// reached the sink; then check that a good chain still goes through.
fn assert_tx_rejected(descs: &[virtio_queue::desc::RawDescriptor]) {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.transmit(descs, 0);
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
    assert!(rig.output().is_empty(), "bad chain reached the sink");
    assert!(!rig.console.needs_reset());
    let good = rig.text(BUFFERS + 0x3000, b"ok", 0, 0);
    rig.transmit(&[good], SIZE - 1);
    assert_eq!(rig.output(), b"ok");
    assert_eq!(rig.tx.used()[1], (u32::from(SIZE) - 1, 0));
}

#[test]
fn a_transmit_chain_with_a_device_writable_descriptor_is_rejected() {
    assert_tx_rejected(&[
        desc(BUFFERS, 4, NEXT, 1),
        desc(BUFFERS + 0x100, 4, WRITE, 0),
    ]);
}

#[test]
fn transmit_buffers_outside_guest_memory_are_rejected() {
    assert_tx_rejected(&[desc(MEM_SIZE, 4, 0, 0)]);
    assert_tx_rejected(&[desc(MEM_SIZE - 4, 8, 0, 0)]);
    assert_tx_rejected(&[desc(u64::MAX - 2, 8, 0, 0)]);
    assert_tx_rejected(&[desc(BUFFERS, 4, NEXT, 1), desc(1 << 40, 4, 0, 0)]);
}

#[test]
fn transmit_buffers_of_absurd_length_are_rejected() {
    assert_tx_rejected(&[desc(BUFFERS, u32::MAX, 0, 0)]);
    assert_tx_rejected(&[desc(0, TX_CHAIN_MAX_BYTES + 1, 0, 0)]);
    // Two halves that are fine alone but too long together.
    let half = TX_CHAIN_MAX_BYTES / 2 + 1;
    assert_tx_rejected(&[desc(0, half, NEXT, 1), desc(0, half, 0, 0)]);
}

#[test]
fn a_zero_length_transmit_chain_is_rejected() {
    assert_tx_rejected(&[desc(BUFFERS, 0, 0, 0)]);
    assert_tx_rejected(&[desc(BUFFERS, 0, NEXT, 1), desc(BUFFERS, 0, 0, 0)]);
}

#[test]
fn a_descriptor_loop_is_rejected() {
    assert_tx_rejected(&[desc(BUFFERS, 4, NEXT, 1), desc(BUFFERS, 4, NEXT, 0)]);
    assert_tx_rejected(&[desc(BUFFERS, 4, NEXT, 0)]);
}

#[test]
fn a_next_index_past_the_queue_is_rejected() {
    assert_tx_rejected(&[desc(BUFFERS, 4, NEXT, SIZE)]);
    assert_tx_rejected(&[desc(BUFFERS, 4, NEXT, u16::MAX)]);
}

/// Write `entries` as an indirect table at `table`.
fn write_table(mem: &vm_memory::GuestMemoryMmap, table: u64, entries: &[(u64, u32, u16, u16)]) {
    for (i, &(addr, len, flags, next)) in entries.iter().enumerate() {
        mem.write_obj(
            desc(addr, len, flags, next),
            GuestAddress(table + 16 * i as u64),
        )
        .unwrap();
    }
}

#[test]
fn an_indirect_chain_longer_than_the_queue_is_rejected() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let table = BUFFERS + 0x8000;
    let n = SIZE + 1;
    let entries: Vec<_> = (0..n)
        .map(|i| (BUFFERS, 1, if i + 1 < n { NEXT } else { 0 }, i + 1))
        .collect();
    write_table(&mem, table, &entries);
    rig.transmit(&[desc(table, 16 * u32::from(n), INDIRECT, 0)], 0);
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
    assert!(rig.output().is_empty());
}

#[test]
fn malformed_indirect_tables_are_rejected() {
    let table = BUFFERS + 0x8000;
    // Length not a multiple of 16.
    assert_tx_rejected(&[desc(table, 24, INDIRECT, 0)]);
    // Table outside guest memory.
    assert_tx_rejected(&[desc(MEM_SIZE, 32, INDIRECT, 0)]);
    // Empty table.
    assert_tx_rejected(&[desc(table, 0, INDIRECT, 0)]);
    // An indirect descriptor inside an indirect table (§2.7.5.3.1).
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    write_table(&mem, table, &[(table, 16, INDIRECT, 0)]);
    rig.transmit(&[desc(table, 16, INDIRECT, 0)], 0);
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
    // A loop inside an indirect table.
    let mut rig = Rig::new(&mem);
    let b = BUFFERS;
    write_table(&mem, table, &[(b, 1, NEXT, 1), (b, 1, NEXT, 0)]);
    rig.transmit(&[desc(table, 32, INDIRECT, 0)], 0);
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
    assert!(rig.output().is_empty());
}

#[test]
fn the_console_keeps_working_after_bad_chains_in_the_same_batch() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let chains = [
        rig.text(BUFFERS, b"before ", 0, 0),
        desc(MEM_SIZE, 4, 0, 0),
        desc(BUFFERS, 4, WRITE, 0),
        desc(BUFFERS, 4, NEXT, 3),
        rig.text(BUFFERS + 0x100, b"after", 0, 0),
    ];
    // One chain each (add_chains would join a chain to a NEXT before it).
    for (i, d) in (0..).zip(chains) {
        rig.tx.add_chains(&[d], i);
    }
    rig.console.process_queue(TX_QUEUE).unwrap();
    assert_eq!(rig.output(), b"before after");
    assert_eq!(rig.tx.used(), vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]);
    assert!(!rig.console.needs_reset());
}

#[test]
fn a_receive_chain_with_a_device_readable_descriptor_is_rejected() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.console.push_input(b"data").unwrap();
    rig.post_rx(
        &[
            desc(BUFFERS, 8, WRITE | NEXT, 1),
            desc(BUFFERS + 0x100, 8, 0, 0),
            desc(BUFFERS + 0x200, 8, WRITE, 0),
        ],
        0,
    );
    assert_eq!(rig.rx.used(), vec![(0, 0), (2, 4)]);
    assert_eq!(
        rig.read(BUFFERS, 4),
        [0; 4],
        "nothing written to the bad chain"
    );
    assert_eq!(rig.read(BUFFERS + 0x200, 4), b"data");
}

#[test]
fn an_empty_receive_descriptor_anywhere_is_skipped() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.console.push_input(b"data").unwrap();
    rig.post_rx(
        &[
            desc(u64::MAX, 0, WRITE | NEXT, 1),
            desc(BUFFERS, 8, WRITE, 0),
        ],
        0,
    );
    assert_eq!(rig.rx.used(), vec![(0, 4)]);
    assert_eq!(rig.read(BUFFERS, 4), b"data");
}

#[test]
fn receive_buffers_outside_guest_memory_are_rejected_and_input_kept() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.console.push_input(b"data").unwrap();
    rig.post_rx(&[desc(MEM_SIZE - 2, 8, WRITE, 0)], 0);
    rig.post_rx(&[desc(u64::MAX, 1, WRITE, 0)], 1);
    rig.post_rx(&[desc(BUFFERS, 0, WRITE, 0)], 2);
    assert_eq!(rig.rx.used(), vec![(0, 0), (1, 0), (2, 0)]);
    rig.post_rx(&[desc(BUFFERS, 8, WRITE, 0)], 3);
    assert_eq!(rig.rx.used()[3], (3, 4));
    assert_eq!(rig.read(BUFFERS, 4), b"data");
}

#[test]
fn a_head_index_past_the_queue_sets_needs_reset_until_reset() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.tx.make_available(SIZE + 3);
    rig.console.process_queue(TX_QUEUE).unwrap();
    assert!(rig.console.needs_reset());
    assert_eq!(rig.irq.count(InterruptType::Config), 1);
    // Ignored while broken.
    let d = rig.text(BUFFERS, b"x", 0, 0);
    rig.transmit(&[d], 1);
    assert!(rig.output().is_empty());
    // A driver reset and re-initialised rings bring it back.
    rig.console.reset();
    assert!(!rig.console.needs_reset());
    rig.tx.restart();
    rig.activate(EventIdx::Off);
    let d = rig.text(BUFFERS, b"y", 0, 0);
    rig.transmit(&[d], 0);
    assert_eq!(rig.output(), b"y");
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
}

#[test]
fn an_available_index_beyond_the_queue_size_sets_needs_reset() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.rx.set_avail_idx(SIZE + 1);
    rig.console.push_input(b"x").unwrap();
    assert!(rig.console.needs_reset());
    assert_eq!(rig.irq.count(InterruptType::Config), 1);
    assert!(rig.rx.used().is_empty());
    // Reset and reactivation (the driver re-initialises its rings).
    rig.console.reset();
    rig.rx.restart();
    rig.activate(EventIdx::Off);
    rig.post_rx(&[desc(BUFFERS, 8, WRITE, 0)], 0);
    assert_eq!(rig.rx.used(), vec![(0, 1)]);
}

/// A sink that fails its first `failures` writes.
struct Flaky {
    failures: usize,
    data: Vec<u8>,
}

impl Write for Flaky {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(io::Error::other("sink down"));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_sink_is_a_host_error_and_the_chain_is_still_returned() {
    let mem = guest_memory();
    let sink = Flaky {
        failures: 1,
        data: Vec::new(),
    };
    let mut rig = Rig::inactive(&mem, sink);
    rig.activate(EventIdx::Off);
    let d = rig.text(BUFFERS, b"lost", 0, 0);
    rig.tx.add_chains(&[d], 0);
    let err = rig.console.process_queue(TX_QUEUE).unwrap_err();
    assert!(matches!(err, DeviceError::Backend(_)));
    assert_eq!(rig.tx.used(), vec![(0, 0)]);
    assert!(!rig.console.needs_reset());
    let d = rig.text(BUFFERS, b"back", 0, 0);
    rig.transmit(&[d], 1);
    assert_eq!(rig.console.sink().data, b"back");
}
