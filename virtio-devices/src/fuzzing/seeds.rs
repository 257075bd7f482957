//! The seed corpus of the virtio fuzz targets, built here in code: each
//! seed is checked to do what it is meant to (a request served, a frame
//! sent, output written), and to match its file under
//! `fuzz/corpus/<target>/`. After a change to the input format, rewrite
//! the files with `FLINT_WRITE_SEEDS=1 cargo test -p virtio-devices seeds`.

use std::path::PathBuf;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::devices::{console_device, run_block, run_console, run_net};
use super::{mmio, op, BUFFERS};
use crate::device::VirtioDevice;
use crate::net::HEADER_LEN;

/// A fuzz input under construction.
#[derive(Clone, Default)]
struct Script(Vec<u8>);

/// One buffer of a `CHAIN`: offset in the buffer window, length, whether
/// the device writes it.
type Buf = (u16, u16, Dir);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Reads,
    Writes,
    /// An indirect table.
    Table,
}
use Dir::{Reads, Table, Writes};

impl Script {
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }

    fn u8(self, v: u8) -> Self {
        self.bytes(&[v])
    }

    fn u16(self, v: u16) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    /// `CHAIN` of `bufs` on queue `q` from table index `start`.
    fn chain(self, q: u8, start: u8, bufs: &[Buf]) -> Self {
        let mut s = self.u8(op::CHAIN).u8(q).u8(start).u8(bufs.len() as u8 - 1);
        for &(offset, len, dir) in bufs {
            let selector = match dir {
                Reads => 0,
                Writes => 0x10,
                Table => 0x20,
            };
            s = s.u8(selector).u16(offset).u16(len);
        }
        s
    }

    /// `DATA`: `bytes` at `BUFFERS + offset`.
    fn data(self, offset: u16, bytes: &[u8]) -> Self {
        self.u8(op::DATA)
            .u16(offset)
            .u8(bytes.len() as u8)
            .bytes(bytes)
    }

    fn notify(self, q: u8) -> Self {
        self.u8(op::NOTIFY).u8(q)
    }

    fn host(self, event: &[u8]) -> Self {
        self.u8(op::HOST).bytes(event)
    }

    /// A virtio-blk request header at `offset`.
    fn blk_header(self, offset: u16, kind: u32, sector: u64) -> Self {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&kind.to_le_bytes());
        raw[8..].copy_from_slice(&sector.to_le_bytes());
        self.data(offset, &raw)
    }

    /// A request on queue 0: header at `header`, `data` buffers, status
    /// byte at `status`.
    fn blk_request(self, start: u8, header: u16, data: &[Buf], status: u16) -> Self {
        let mut bufs = vec![(header, 16, Reads)];
        bufs.extend_from_slice(data);
        bufs.push((status, 1, Writes));
        self.chain(0, start, &bufs)
    }
}

// Block request types (§5.2.6).
const IN: u32 = 0;
const OUT: u32 = 1;
const FLUSH: u32 = 4;
const GET_ID: u32 = 8;
const DISCARD: u32 = 11;
const WRITE_ZEROES: u32 = 13;
/// Every feature the device offers.
const ALL: u64 = u64::MAX;
/// A queue byte: 16 entries, ready.
const Q16: u8 = 4;

/// A block prologue: options, a 64 KiB capacity, every feature, one
/// 16-entry queue.
fn block(options: u8) -> Script {
    Script::default().u8(options).u64(64 << 10).u64(ALL).u8(Q16)
}

fn block_seeds() -> Vec<(&'static str, Script)> {
    let read = |s: Script| {
        s.blk_header(0, IN, 1)
            .blk_request(0, 0, &[(0x1000, 512, Writes)], 0x100)
            .notify(0)
    };
    let write_flush = block(0x18)
        .blk_header(0, OUT, 2)
        .data(0x1000, b"written by the driver")
        .blk_request(0, 0, &[(0x1000, 1024, Reads)], 0x100)
        .blk_header(0x20, FLUSH, 0)
        .blk_request(3, 0x20, &[], 0x101)
        .notify(0);
    let ranges = {
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&4u64.to_le_bytes());
        raw[8..12].copy_from_slice(&8u32.to_le_bytes());
        raw[16..24].copy_from_slice(&16u64.to_le_bytes());
        raw[24..28].copy_from_slice(&2u32.to_le_bytes());
        raw[28..].copy_from_slice(&1u32.to_le_bytes());
        raw
    };
    let discard_zeroes = block(0x38)
        .data(0x2000, &ranges)
        .blk_header(0, DISCARD, 0)
        .blk_request(0, 0, &[(0x2000, 16, Reads)], 0x100)
        .blk_header(0x20, WRITE_ZEROES, 0)
        .blk_request(3, 0x20, &[(0x2010, 16, Reads)], 0x101)
        .notify(0);
    let get_id = block(0)
        .blk_header(0, GET_ID, 0)
        .blk_request(0, 0, &[(0x1000, 20, Writes)], 0x100)
        .notify(0);
    // Three descriptors in an indirect table at slot 0x80, event index on.
    let indirect_desc = |slot: u8, offset: u16, len: u16, flags: u8, next: u8| {
        Script::default()
            .u8(op::INDIRECT)
            .u8(slot)
            .u8(0)
            .u16(offset)
            .u16(len)
            .u8(flags)
            .u8(next)
    };
    let indirect = block(0)
        .blk_header(0, IN, 3)
        .bytes(&indirect_desc(0x80, 0, 16, 1, 1).0)
        .bytes(&indirect_desc(0x81, 0x1000, 512, 3, 2).0)
        .bytes(&indirect_desc(0x82, 0x100, 1, 2, 0).0)
        .chain(0, 0, &[(0x800, 48, Table)])
        .u8(op::USED_EVENT)
        .u8(0)
        .u16(0)
        .notify(0);
    vec![
        ("read", read(block(0x18))),
        ("write-flush", write_flush),
        ("discard-write-zeroes", discard_zeroes),
        ("get-id", get_id),
        ("indirect", indirect),
        (
            "read-only-write",
            block(1)
                .blk_header(0, OUT, 0)
                .blk_request(0, 0, &[(0x1000, 512, Reads)], 0x100)
                .notify(0),
        ),
        // Alignment 512: a buffer at an odd address is bounced.
        ("bounce", {
            let s = block(2).blk_header(0, IN, 1);
            s.blk_request(0, 0, &[(0x1001, 512, Writes)], 0x100)
                .notify(0)
        }),
        // A temporary file on io_uring; completions reaped.
        ("file-uring", read(block(0x40)).host(&[0])),
    ]
}

/// A frame for the transmit queue: the virtio-net header and an Ethernet
/// frame of 60 bytes.
fn tx_frame() -> Vec<u8> {
    let mut f = vec![0u8; HEADER_LEN];
    f.extend((0..60u8).map(|i| i.wrapping_mul(7)));
    f
}

fn net(options: u8, features: u64) -> Script {
    Script::default().u8(options).u64(features).u8(Q16).u8(Q16)
}

fn net_seeds() -> Vec<(&'static str, Script)> {
    let frame = tx_frame();
    let tx = net(3, ALL)
        .data(0x1000, &frame)
        .chain(1, 0, &[(0x1000, frame.len() as u16, Reads)])
        .notify(1);
    // Header and frame in two descriptors.
    let tx_split = net(1, ALL)
        .data(0x1000, &frame)
        .chain(1, 0, &[(0x1000, 12, Reads), (0x100c, 60, Reads)])
        .notify(1);
    let rx = |s: Script| {
        s.chain(0, 0, &[(0x4000, 2048, Writes)])
            .chain(0, 1, &[(0x5000, 2048, Writes)])
            .notify(0)
            .host(&[0])
            .u16(100)
            .bytes(&[0xab; 100])
    };
    // Mergeable buffers: 64-byte buffers, a 200-byte frame takes four.
    let mut mergeable = net(3, ALL);
    for i in 0..6u8 {
        mergeable = mergeable.chain(0, i, &[(0x4000 + 0x100 * u16::from(i), 64, Writes)]);
    }
    let mergeable = mergeable.host(&[0]).u16(200).bytes(&[0xcd; 200]);
    vec![
        ("tx", tx),
        ("tx-split", tx_split),
        ("rx", rx(net(1, ALL & !(1 << 15)))),
        ("rx-mergeable", mergeable),
    ]
}

fn console() -> Script {
    Script::default().u64(ALL).u8(Q16).u8(Q16)
}

fn console_seeds() -> Vec<(&'static str, Script)> {
    let tx = console()
        .data(0x1000, b"hello\n")
        .chain(1, 0, &[(0x1000, 6, Reads)])
        .notify(1);
    let rx = console()
        .chain(0, 0, &[(0x2000, 64, Writes)])
        .notify(0)
        .host(&[0, 5])
        .bytes(b"ls -l");
    vec![("tx", tx), ("rx", rx)]
}

/// An MMIO seed: `kind`, the device prologue (`device` without its queue
/// bytes), queue bytes, then an initialisation with every feature.
fn mmio(kind: u8, device: &[u8], queues: usize) -> Script {
    let s = Script::default().u8(kind).bytes(device);
    s.bytes(&vec![Q16; queues]).u8(op::RESET).u64(ALL)
}

fn mmio_seeds() -> Vec<(&'static str, Script)> {
    let console_tx = |s: Script| {
        s.data(0x1000, b"hello\n")
            .chain(1, 0, &[(0x1000, 6, Reads)])
            .notify(1)
    };
    let mut registers = Script::default().u8(2).u8(Q16).u8(Q16);
    for offset in (0..0x110u16).step_by(4) {
        registers = registers.u8(op::REG_READ).u16(offset).u8(3);
    }
    // Init by hand: ACKNOWLEDGE, DRIVER, VERSION_1, FEATURES_OK, DRIVER_OK.
    for (register, value) in [(15u8, 1u32), (15, 3), (7, 1), (6, 1), (15, 11), (15, 15)] {
        registers = registers
            .u8(op::REG_WRITE32)
            .u8(register)
            .bytes(&value.to_le_bytes());
    }
    let block_read = mmio(0, &[0x18, 0, 0, 1, 0, 0, 0, 0, 0], 1)
        .blk_header(0, IN, 1)
        .blk_request(0, 0, &[(0x1000, 512, Writes)], 0x100)
        .notify(0)
        .u8(op::REG_READ)
        .u16(0x70)
        .u8(3);
    let frame = tx_frame();
    let net_tx = mmio(1, &[3], 2)
        .data(0x1000, &frame)
        .chain(1, 0, &[(0x1000, frame.len() as u16, Reads)])
        .notify(1);
    vec![
        ("console", console_tx(mmio(2, &[], 2))),
        ("registers", registers),
        ("block", block_read),
        ("net", net_tx),
    ]
}

/// Every seed, as (target, name, bytes).
fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    type Seeds = fn() -> Vec<(&'static str, Script)>;
    let targets: [(&str, Seeds); 4] = [
        ("virtio_block", block_seeds),
        ("virtio_net", net_seeds),
        ("virtio_console", console_seeds),
        ("virtio_mmio", mmio_seeds),
    ];
    targets
        .into_iter()
        .flat_map(|(target, seeds)| {
            seeds()
                .into_iter()
                .map(move |(name, s)| (target, name, s.0))
        })
        .collect()
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn byte(mem: &GuestMemoryMmap, offset: u16) -> u8 {
    mem.read_obj(GuestAddress(BUFFERS + u64::from(offset)))
        .unwrap()
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let all = all();
    let found = all.into_iter().find(|s| s.0 == target && s.1 == name);
    found.expect("seed exists").2
}

#[test]
fn seeds_match_the_committed_corpus() {
    let write = std::env::var_os("FLINT_WRITE_SEEDS").is_some();
    for (target, name, bytes) in all() {
        let path = corpus().join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} is stale: FLINT_WRITE_SEEDS=1 cargo test -p virtio-devices seeds",
            path.display()
        );
    }
}

#[test]
fn block_seeds_complete_their_requests() {
    const OK: u8 = 0;
    const IOERR: u8 = 1;
    for (name, statuses) in [
        ("read", &[OK][..]),
        ("write-flush", &[OK, OK]),
        ("discard-write-zeroes", &[OK, OK]),
        ("get-id", &[OK]),
        ("indirect", &[OK]),
        ("read-only-write", &[IOERR]),
        ("bounce", &[OK]),
    ] {
        let (mem, block) = run_block(&seed("virtio_block", name)).unwrap();
        for (i, &want) in statuses.iter().enumerate() {
            assert_eq!(byte(&mem, 0x100 + i as u16), want, "{name}: request {i}");
        }
        assert!(!block.needs_reset(), "{name}");
    }
    let (mem, mut block) = run_block(&seed("virtio_block", "file-uring")).unwrap();
    block.reset();
    assert_eq!(byte(&mem, 0x100), OK);
}

#[test]
fn net_seeds_move_frames() {
    for name in ["tx", "tx-split"] {
        let (_, net) = run_net(&seed("virtio_net", name)).unwrap();
        assert_eq!(net.backend().sent, 1, "{name}");
    }
    for (name, buffers) in [("rx", 1), ("rx-mergeable", 4)] {
        let (mem, net) = run_net(&seed("virtio_net", name)).unwrap();
        let used_idx: u16 = mem.read_obj(GuestAddress(0x1_2002)).unwrap();
        assert_eq!(used_idx, buffers, "{name}");
        assert_eq!(net.stats().rx_frames, 1, "{name}");
    }
}

#[test]
fn console_seeds_move_bytes() {
    let (_, console) = run_console(&seed("virtio_console", "tx")).unwrap();
    assert_eq!(console.sink().out, b"hello\n");
    let (mem, _) = run_console(&seed("virtio_console", "rx")).unwrap();
    let mut got = [0u8; 5];
    mem.read_slice(&mut got, GuestAddress(BUFFERS + 0x2000))
        .unwrap();
    assert_eq!(&got, b"ls -l");
}

#[test]
fn mmio_seeds_reach_the_devices() {
    let data = seed("virtio_mmio", "console");
    let mem = super::guest_memory();
    let mut input = super::Input::new(&data[1..]);
    let transport = mmio::run(&mem, console_device(), &mut input).unwrap();
    assert!(transport.is_active());
    assert_eq!(transport.device().sink().out, b"hello\n");
    for name in ["registers", "block", "net"] {
        super::mmio_registers(&seed("virtio_mmio", name));
    }
}
