//! Test fixtures shared by the unit tests: guest memory, hand-built
//! descriptors and the driver side of a split virtqueue (virtio 1.2 §2.7
//! layout).

use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM size in the tests: 4 MiB from address 0.
pub(crate) const MEM_SIZE: u64 = 0x40_0000;
/// Where test buffers start (rings live below).
pub(crate) const BUFFERS: u64 = 0x10_0000;

/// NEXT flag.
pub(crate) const NEXT: u16 = VRING_DESC_F_NEXT as u16;
/// Device-writable flag.
pub(crate) const WRITE: u16 = VRING_DESC_F_WRITE as u16;
/// Indirect-table flag.
pub(crate) const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// Fresh, zeroed guest memory.
pub(crate) fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

/// One raw descriptor, exactly as given.
pub(crate) fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// The driver side of one split virtqueue, laid out as §2.7 says:
/// descriptor table at `base`, available ring at `base + 0x1000`, used ring
/// at `base + 0x2000` (sizes up to 256).
///
/// virtio-queue 0.18's `MockSplitQueue` is not used for rings the device
/// writes: it places the used ring 20 bytes after the start of the
/// available ring (its `SplitQueueRing::end` counts entries, not bytes), so
/// used entries overwrite `used_event` and available entries from 8 on.
pub(crate) struct DriverQueue<'m> {
    mem: &'m GuestMemoryMmap,
    /// Descriptor table.
    pub desc: GuestAddress,
    /// Available ring.
    pub avail: GuestAddress,
    /// Used ring.
    pub used: GuestAddress,
    /// Queue size.
    pub size: u16,
}

impl<'m> DriverQueue<'m> {
    /// A queue of `size` entries at `base`, rings zeroed.
    pub(crate) fn new(mem: &'m GuestMemoryMmap, base: u64, size: u16) -> Self {
        assert!(size <= 256);
        mem.write_slice(&[0u8; 0x3000], GuestAddress(base)).unwrap();
        DriverQueue {
            mem,
            desc: GuestAddress(base),
            avail: GuestAddress(base + 0x1000),
            used: GuestAddress(base + 0x2000),
            size,
        }
    }

    /// The device-side queue a transport would build for this ring: ready,
    /// full size.
    pub(crate) fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.try_set_desc_table_address(self.desc).unwrap();
        q.try_set_avail_ring_address(self.avail).unwrap();
        q.try_set_used_ring_address(self.used).unwrap();
        q.set_ready(true);
        q
    }

    /// Store `descs` at table indices `at..`; a descriptor starts a new
    /// chain (made available) unless the one before it has NEXT set.
    pub(crate) fn add_chains(&self, descs: &[RawDescriptor], at: u16) {
        let mut prev_next = false;
        for (i, d) in (at..).zip(descs) {
            self.set_desc(i, *d);
            if !prev_next {
                self.make_available(i);
            }
            prev_next = Descriptor::from(*d).has_next();
        }
    }

    /// Store `d` at table index `index` without making anything available.
    pub(crate) fn set_desc(&self, index: u16, d: RawDescriptor) {
        self.mem
            .write_obj(d, self.desc.unchecked_add(16 * u64::from(index)))
            .unwrap();
    }

    /// Append `head` to the available ring, whatever it is.
    pub(crate) fn make_available(&self, head: u16) {
        let idx = self.avail_idx();
        let slot = 4 + 2 * u64::from(idx % self.size);
        self.mem
            .write_obj(head, self.avail.unchecked_add(slot))
            .unwrap();
        self.set_avail_idx(idx.wrapping_add(1));
    }

    /// The available ring's `idx`.
    pub(crate) fn avail_idx(&self) -> u16 {
        self.mem.read_obj(self.avail.unchecked_add(2)).unwrap()
    }

    /// Overwrite the available ring's `idx`.
    pub(crate) fn set_avail_idx(&self, idx: u16) {
        self.mem
            .write_obj(idx, self.avail.unchecked_add(2))
            .unwrap();
    }

    /// Set `used_event` (after the available ring entries, §2.7.6).
    pub(crate) fn set_used_event(&self, value: u16) {
        let at = 4 + 2 * u64::from(self.size);
        self.mem
            .write_obj(value, self.avail.unchecked_add(at))
            .unwrap();
    }

    /// Read `avail_event` (after the used ring entries, §2.7.8).
    pub(crate) fn avail_event(&self) -> u16 {
        let at = 4 + 8 * u64::from(self.size);
        self.mem.read_obj(self.used.unchecked_add(at)).unwrap()
    }

    /// The used ring's `flags`.
    pub(crate) fn used_flags(&self) -> u16 {
        self.mem.read_obj(self.used).unwrap()
    }

    /// Every used element so far as (head, length), oldest first.
    pub(crate) fn used(&self) -> Vec<(u32, u32)> {
        let idx: u16 = self.mem.read_obj(self.used.unchecked_add(2)).unwrap();
        (0..idx)
            .map(|i| {
                let at = self.used.unchecked_add(4 + 8 * u64::from(i % self.size));
                let id: u32 = self.mem.read_obj(at).unwrap();
                let len: u32 = self.mem.read_obj(at.unchecked_add(4)).unwrap();
                (id, len)
            })
            .collect()
    }

    /// Zero both rings' indices, as a driver re-initialising after reset.
    pub(crate) fn restart(&self) {
        self.set_avail_idx(0);
        self.mem
            .write_obj(0u16, self.used.unchecked_add(2))
            .unwrap();
    }
}

/// A small deterministic xorshift generator for randomized tests (no
/// dependency, same sequence on every run).
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (non-zero).
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// One of `choices`.
    pub(crate) fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len() as u64) as usize]
    }
}
