//! Split virtqueues (virtio 1.2 §2.7) for the probe's user-mode drivers:
//! static ring memory, a descriptor free list, publishing with release
//! stores and polling used elements with acquire loads (see virtio.rs for
//! the ordering rules and the transport).

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{fence, AtomicU16, Ordering};

use crate::out::Line;
use crate::svc;
use crate::virtio::{
    Device, Timebase, Transport, REG_QUEUE_DESC, REG_QUEUE_DEVICE, REG_QUEUE_DRIVER,
    REG_QUEUE_NUM, REG_QUEUE_NUM_MAX, REG_QUEUE_READY, REG_QUEUE_SEL, TIMEOUT_NS,
};

/// Entries per queue normally (less if the device's QueueNumMax is
/// smaller); fault injection (faults.rs) counts on it.
pub const QUEUE_SIZE: u16 = 16;
/// Entries per queue for the throughput benchmarks, which keep many
/// requests in flight: what the static ring memory is sized for.
pub const BENCH_QUEUE_SIZE: u16 = 128;
const QS: usize = BENCH_QUEUE_SIZE as usize;

/// VIRTQ_DESC_F_NEXT.
pub const DESC_NEXT: u16 = 1;
/// VIRTQ_DESC_F_WRITE (device writes the buffer).
pub const DESC_WRITE: u16 = 2;
/// VIRTQ_DESC_F_INDIRECT (only used to inject faults: not negotiated).
pub const DESC_INDIRECT: u16 = 4;
/// VIRTQ_AVAIL_F_NO_INTERRUPT: the probe polls.
const AVAIL_NO_INTERRUPT: u16 = 1;

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

#[repr(C, align(2))]
struct Avail {
    flags: u16,
    idx: u16,
    ring: [u16; QS],
    used_event: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UsedElem {
    id: u32,
    len: u32,
}

#[repr(C, align(4))]
struct Used {
    flags: u16,
    idx: u16,
    ring: [UsedElem; QS],
    avail_event: u16,
}

/// One queue's memory: descriptor table (16-aligned), driver area (avail,
/// 2-aligned), device area (used, 4-aligned), as §2.7 requires.
#[repr(C, align(4096))]
pub struct QueueMem {
    desc: [Desc; QS],
    avail: Avail,
    used: Used,
}

impl QueueMem {
    const fn new() -> QueueMem {
        QueueMem {
            desc: [Desc {
                addr: 0,
                len: 0,
                flags: 0,
                next: 0,
            }; QS],
            avail: Avail {
                flags: 0,
                idx: 0,
                ring: [0; QS],
                used_event: 0,
            },
            used: Used {
                flags: 0,
                idx: 0,
                ring: [UsedElem { id: 0, len: 0 }; QS],
                avail_event: 0,
            },
        }
    }
}

/// Queue memory for the two queues a device uses at most (console, net).
static mut QUEUE_MEM: [QueueMem; 2] = [QueueMem::new(), QueueMem::new()];

/// A buffer in a chain: guest-physical address, length, direction.
#[derive(Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    /// The device writes it (VIRTQ_DESC_F_WRITE); else it reads it.
    pub device_writes: bool,
}

impl Buf {
    /// A buffer the device reads.
    pub fn readable<T: ?Sized>(data: *const T, len: usize) -> Buf {
        Buf {
            addr: data as *const u8 as u64,
            len: len as u32,
            device_writes: false,
        }
    }

    /// A buffer the device writes.
    pub fn writable<T: ?Sized>(data: *mut T, len: usize) -> Buf {
        Buf {
            addr: data as *mut u8 as u64,
            len: len as u32,
            device_writes: true,
        }
    }
}

/// A used element: the chain's head and the bytes the device wrote.
#[derive(Clone, Copy)]
pub struct Completion {
    pub head: u16,
    pub len: u32,
}

/// A set-up split virtqueue. Descriptors come from a free list (linked
/// through `next`) and go back to it when their chain is used.
pub struct Queue {
    mem: *mut QueueMem,
    index: u32,
    size: u16,
    free_head: u16,
    num_free: u16,
    next_avail: u16,
    last_used: u16,
}

/// Why a queue could not be set up.
pub enum QueueError {
    /// QueueReady was already set.
    InUse,
    /// QueueNumMax is 0: no such queue.
    Unavailable,
    /// QueueReady did not read back 1.
    NotReady,
}

impl Queue {
    /// Sets up queue `index` on `slot` of the static queue memory (§4.2.3.2)
    /// with at most `want` (<= BENCH_QUEUE_SIZE) entries.
    pub(crate) fn setup(
        t: &Transport,
        index: u32,
        slot: usize,
        want: u16,
    ) -> Result<Queue, QueueError> {
        t.write(REG_QUEUE_SEL, index);
        if t.read(REG_QUEUE_READY) != 0 {
            return Err(QueueError::InUse);
        }
        let max = t.read(REG_QUEUE_NUM_MAX);
        if max == 0 {
            return Err(QueueError::Unavailable);
        }
        // Largest power of two <= min(max, want).
        let want = max.min(u32::from(want.clamp(1, BENCH_QUEUE_SIZE)));
        let size = 1u16 << (31 - want.leading_zeros());
        // SAFETY: slot < 2, devices are set up one at a time and the slot's previous
        // user was reset (or failed before DRIVER_OK), so no device accesses it now.
        let mem = unsafe { addr_of_mut!(QUEUE_MEM[slot]) };
        // SAFETY: `mem` is valid; nothing else references it.
        unsafe { mem.write_bytes(0, 1) };
        let mut q = Queue {
            mem,
            index,
            size,
            free_head: 0,
            num_free: size,
            next_avail: 0,
            last_used: 0,
        };
        for i in 0..size {
            q.desc_mut(i).next = (i + 1) % size;
        }
        // SAFETY: `mem` is valid; the device has not been given it yet.
        unsafe { (*mem).avail.flags = AVAIL_NO_INTERRUPT };
        t.write(REG_QUEUE_NUM, u32::from(size));
        // SAFETY: taking field addresses of a valid static.
        let (desc, avail, used) = unsafe {
            (
                addr_of!((*mem).desc) as u64,
                addr_of!((*mem).avail) as u64,
                addr_of!((*mem).used) as u64,
            )
        };
        t.write64(REG_QUEUE_DESC, desc);
        t.write64(REG_QUEUE_DRIVER, avail);
        t.write64(REG_QUEUE_DEVICE, used);
        // Ring memory written before the device may look at it.
        fence(Ordering::SeqCst);
        t.write(REG_QUEUE_READY, 1);
        if t.read(REG_QUEUE_READY) != 1 {
            return Err(QueueError::NotReady);
        }
        Ok(q)
    }

    fn desc_mut(&mut self, i: u16) -> &mut Desc {
        // SAFETY: i < size <= QS; the device only reads descriptors that are
        // in a submitted chain, and this is only called on free ones.
        unsafe { &mut (*self.mem).desc[usize::from(i)] }
    }

    /// The queue's size (entries).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Makes the chain `bufs` available (without notifying); returns its
    /// head, or `None` if there are not enough free descriptors.
    pub fn push(&mut self, bufs: &[Buf]) -> Option<u16> {
        if bufs.is_empty() || bufs.len() > usize::from(self.num_free) {
            return None;
        }
        let head = self.free_head;
        let mut at = head;
        for (n, b) in bufs.iter().enumerate() {
            let last = n + 1 == bufs.len();
            let d = self.desc_mut(at);
            let next = d.next;
            d.addr = b.addr;
            d.len = b.len;
            d.flags =
                if b.device_writes { DESC_WRITE } else { 0 } | if last { 0 } else { DESC_NEXT };
            if last {
                self.free_head = next;
            } else {
                at = next;
            }
        }
        self.num_free -= bufs.len() as u16;
        self.raw_publish(head);
        Some(head)
    }

    /// Stores `next_avail` as `avail.idx` with release ordering, so every
    /// descriptor and ring write before it is visible to the device first.
    fn store_avail_idx(&mut self) {
        // SAFETY: the driver area is ours; an atomic store on an aligned u16.
        unsafe {
            let idx = &*(addr_of!((*self.mem).avail.idx) as *const AtomicU16);
            idx.store(self.next_avail, Ordering::Release);
        }
    }

    /// `used.idx`, read with acquire ordering: the elements and buffers it
    /// covers are read after it.
    fn load_used_idx(&self) -> u16 {
        // SAFETY: `used` is written by the device; an atomic load on an aligned u16.
        unsafe {
            let idx = &*(addr_of!((*self.mem).used.idx) as *const AtomicU16);
            idx.load(Ordering::Acquire)
        }
    }

    /// The next used element, taken off the ring, if the device published one.
    fn next_used(&mut self) -> Option<UsedElem> {
        if self.load_used_idx() == self.last_used {
            return None;
        }
        let slot = usize::from(self.last_used % self.size);
        self.last_used = self.last_used.wrapping_add(1);
        // SAFETY: the device wrote this element before publishing `idx`.
        Some(unsafe { read_volatile(addr_of!((*self.mem).used.ring[slot])) })
    }

    /// QueueNotify, after a full fence so `avail.idx` is visible first.
    pub fn notify(&self, t: &Transport) {
        fence(Ordering::SeqCst);
        t.notify(self.index);
    }

    /// The next used element, if the device has returned one; its
    /// descriptors go back to the free list.
    pub fn poll(&mut self) -> Option<Completion> {
        let elem = self.next_used()?;
        let head = (elem.id as u16) % self.size;
        // Free the chain.
        let mut at = head;
        let mut count = 1;
        loop {
            let d = *self.desc_mut(at);
            if d.flags & DESC_NEXT == 0 || count >= self.size {
                break;
            }
            at = d.next % self.size;
            count += 1;
        }
        self.desc_mut(at).next = self.free_head;
        self.free_head = head;
        self.num_free = (self.num_free + count).min(self.size);
        Some(Completion {
            head,
            len: elem.len,
        })
    }

    /// Asks for used-buffer notifications (clears VIRTQ_AVAIL_F_NO_INTERRUPT)
    /// or suppresses them again.
    pub fn set_interrupts(&mut self, on: bool) {
        // SAFETY: the driver area's flags are ours to write; the device
        // reads them concurrently, hence a volatile store and a fence.
        unsafe {
            write_volatile(
                addr_of_mut!((*self.mem).avail.flags),
                if on { 0 } else { AVAIL_NO_INTERRUPT },
            )
        };
        fence(Ordering::SeqCst);
    }

    // -- raw access for fault injection (faults.rs): no free-list
    // bookkeeping; the queue is thrown away (device reset) afterwards.

    /// Writes descriptor `i` (< size) as given.
    pub fn raw_desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.desc_mut(i % self.size);
        d.addr = addr;
        d.len = len;
        d.flags = flags;
        d.next = next;
    }

    /// Puts `head` (any value, even past the table) in the next avail slot
    /// and publishes it.
    pub fn raw_publish(&mut self, head: u16) {
        let slot = usize::from(self.next_avail % self.size);
        self.next_avail = self.next_avail.wrapping_add(1);
        // SAFETY: the avail ring is ours; the device reads this slot only
        // after the release store of `idx` below.
        unsafe { write_volatile(addr_of_mut!((*self.mem).avail.ring[slot]), head) };
        self.store_avail_idx();
    }

    /// Moves `avail.idx` `by` entries ahead without filling the ring.
    pub fn raw_avail_jump(&mut self, by: u16) {
        self.next_avail = self.next_avail.wrapping_add(by);
        self.store_avail_idx();
    }

    /// Whether the device has published a used element not yet polled.
    pub fn used_pending(&self) -> bool {
        self.load_used_idx() != self.last_used
    }

    /// The next used element without freeing anything: (id, len).
    pub fn raw_poll(&mut self) -> Option<(u32, u32)> {
        self.next_used().map(|e| (e.id, e.len))
    }

    /// Polls until a used element arrives or ~2 s pass (`None`).
    pub fn wait(&mut self, time: &Timebase) -> Option<Completion> {
        let start = svc::rdtsc();
        loop {
            if let Some(c) = self.poll() {
                return Some(c);
            }
            if time.since(start) > TIMEOUT_NS {
                return None;
            }
            core::hint::spin_loop();
        }
    }

    /// Pushes `bufs`, notifies, waits for that chain; `None` (after printing
    /// `virtio dev=<i> queue=<q> timeout`) if it does not come back.
    pub fn round_trip(&mut self, dev: &Device, bufs: &[Buf]) -> Option<Completion> {
        let Some(head) = self.push(bufs) else {
            self.report(dev, " full");
            return None;
        };
        self.notify(&dev.transport);
        loop {
            match self.wait(&dev.time) {
                Some(c) if c.head == head => return Some(c),
                Some(_) => continue,
                None => {
                    self.report(dev, " timeout");
                    return None;
                }
            }
        }
    }

    /// The head the next `push` will use (the free list's first entry), so
    /// a driver can pick per-request memory by it before pushing.
    pub fn next_head(&self) -> u16 {
        self.free_head
    }

    /// Streams `count` chains through the queue with up to `depth` in
    /// flight: `submit(queue, n)` pushes chain `n` (`None` stops);
    /// `complete(c)` takes each used element (`false` stops). The window
    /// is refilled, with one QueueNotify, whenever half of it has come back,
    /// so a notify exit is paid per batch rather than per chain. Returns
    /// the chains completed, or `None` on a stop or a timeout (reported).
    pub fn stream(
        &mut self,
        dev: &Device,
        count: u64,
        depth: u16,
        mut submit: impl FnMut(&mut Queue, u64) -> Option<u16>,
        mut complete: impl FnMut(Completion) -> bool,
    ) -> Option<u64> {
        let depth = u64::from(depth.clamp(1, self.size));
        let (mut submitted, mut done) = (0u64, 0u64);
        while done < count {
            if submitted - done <= depth / 2 && submitted < count {
                while submitted < count && submitted - done < depth {
                    submit(self, submitted)?;
                    submitted += 1;
                }
                self.notify(&dev.transport);
            }
            let Some(c) = self.wait(&dev.time) else {
                self.report(dev, " timeout");
                return None;
            };
            done += 1;
            if !complete(c) {
                return None;
            }
        }
        Some(done)
    }

    fn report(&self, dev: &Device, what: &str) {
        Line::new()
            .s("virtio dev=")
            .dec(dev.index as u64)
            .s(" queue=")
            .dec(u64::from(self.index))
            .s(what)
            .end();
    }
}
