//! The io_uring engine of the block device: reads (readv), writes (writev)
//! and flushes (fsync with IORING_FSYNC_DATASYNC, i.e. fdatasync) go to
//! the kernel straight over guest memory and complete later, on the
//! engine's eventfd, instead of blocking the event loop.
//!
//! Serves virtio 1.2 §5.2.6 IN / OUT / FLUSH for `device.rs`: a request
//! reaches the used ring only after its CQE reported every byte moved (a
//! short transfer or a negative result is VIRTIO_BLK_S_IOERR), and a FLUSH
//! is submitted with IOSQE_IO_DRAIN, so it starts only after every earlier
//! request completed and completes after them.
//!
//! Each in-flight transfer owns one slot of a fixed table (as many as the
//! queue has entries), indexed by the SQE's user_data; the slot keeps the
//! transfer's iovec array, which the kernel may read until the CQE
//! arrives, and is not reused before then.
//!
//! Requests that continue one another — the same direction, each starting
//! where the previous one ends, arriving in one batch — are merged into one
//! transfer (up to `MERGE_REQUESTS` requests, `MERGE_BYTES` bytes and
//! `IOV_MAX` buffers), as a disk's request queue would: a guest streaming
//! 8 KiB writes 32 at a time costs the host one writev instead of 32. The
//! last slot of a batch stays open for merging until `submit`; each merged
//! request still gets its own used element, with the transfer's outcome.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring};
use log::error;
use vm_memory::{GuestMemory, GuestMemoryMmap, Permissions};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::request::{Reply, Segment};
use super::SEG_MAX;

/// The operations the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Disk → guest memory.
    Read,
    /// Guest memory → disk.
    Write,
    /// fdatasync.
    Flush,
}

/// One guest buffer as handed to the kernel.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct IoVec(libc::iovec);

// SAFETY: the pointer is a guest-memory address flint never dereferences
// through this value, only hands to the kernel; moving it between threads is sound.
unsafe impl Send for IoVec {}

/// Most requests merged into one transfer.
const MERGE_REQUESTS: usize = 32;
/// Most bytes in one merged transfer.
const MERGE_BYTES: u64 = 4 << 20;
/// Most buffers in one transfer (the kernel's UIO_MAXIOV).
const IOV_MAX: usize = 1024;

/// An in-flight transfer: one request, or several merged.
struct Slot {
    /// The requests it answers: chain head and where its status goes.
    requests: Vec<(u16, Reply)>,
    op: Op,
    fd: RawFd,
    /// Disk offset of the first byte.
    offset: u64,
    /// Bytes the transfer must move.
    expected: u64,
    /// The iovec array the SQE points to; untouched until the CQE.
    iovecs: Vec<IoVec>,
}

/// A finished request, as reaped.
pub(super) struct Completion {
    /// The chain's head index.
    pub head: u16,
    /// Where its status goes.
    pub reply: Reply,
    /// What it was.
    pub op: Op,
    /// Whether it moved every byte.
    pub result: io::Result<()>,
}

/// Why a request could not be queued.
pub(super) enum PushError {
    /// Guest memory could not be mapped (only if the driver rewrote the
    /// chain after it was checked).
    Guest(vm_memory::GuestMemoryError),
    /// The submission queue stayed full.
    Host(io::Error),
}

/// The ring, its eventfd and the in-flight table.
pub(super) struct UringEngine {
    ring: IoUring,
    eventfd: EventFd,
    slots: Vec<Slot>,
    /// Free slot indices.
    free: Vec<u16>,
    /// The slot filled last whose SQE is not queued yet: later requests of
    /// the batch may still merge into it.
    open: Option<u16>,
    /// Requests merged into an earlier one so far.
    merged: u64,
    /// Slots whose SQE could not be queued: their requests complete with
    /// the error at the next reap.
    orphans: Vec<(u16, i32)>,
}

impl UringEngine {
    /// A ring for up to `entries` requests in flight, signalling its
    /// eventfd on every completion.
    pub(super) fn new(entries: u16) -> io::Result<Self> {
        let ring = IoUring::new(entries.into())?;
        let eventfd = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?;
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let slots = (0..entries)
            .map(|_| Slot {
                requests: Vec::with_capacity(MERGE_REQUESTS),
                op: Op::Flush,
                fd: -1,
                offset: 0,
                expected: 0,
                iovecs: Vec::with_capacity(SEG_MAX as usize),
            })
            .collect();
        Ok(UringEngine {
            ring,
            eventfd,
            slots,
            free: (0..entries).rev().collect(),
            open: None,
            merged: 0,
            orphans: Vec::new(),
        })
    }

    /// The eventfd that becomes readable when requests complete.
    pub(super) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Whether another request can be queued.
    pub(super) fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Transfers queued and not yet reaped.
    pub(super) fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Requests merged into an earlier one so far.
    pub(super) fn merged(&self) -> u64 {
        self.merged
    }

    /// Queue `op` on `fd` at byte `offset` over `segments` (checked guest
    /// buffers) for chain `head`, merged into the batch's open transfer
    /// where it continues it; [`submit`](Self::submit) sends it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        fd: RawFd,
        mem: &GuestMemoryMmap,
        head: u16,
        reply: Reply,
        op: Op,
        offset: u64,
        segments: &[Segment],
    ) -> Result<(), PushError> {
        let joinable = self
            .open
            .filter(|&i| self.continues(i, fd, op, offset, segments));
        if let Some(open) = joinable {
            let slot = &mut self.slots[usize::from(open)];
            let (iovs, bytes) = (slot.iovecs.len(), slot.expected);
            return match fill_iovecs(slot, mem, segments) {
                Ok(()) => {
                    slot.requests.push((head, reply));
                    self.merged += 1;
                    Ok(())
                }
                Err(e) => {
                    // Leave the open transfer as it was.
                    slot.iovecs.truncate(iovs);
                    slot.expected = bytes;
                    Err(e)
                }
            };
        }
        self.close_open()?;
        let Some(index) = self.free.pop() else {
            return Err(PushError::Host(io::Error::from_raw_os_error(libc::EBUSY)));
        };
        let slot = &mut self.slots[usize::from(index)];
        slot.requests.clear();
        slot.requests.push((head, reply));
        slot.op = op;
        slot.fd = fd;
        slot.offset = offset;
        slot.expected = 0;
        slot.iovecs.clear();
        if let Err(e) = fill_iovecs(slot, mem, segments) {
            self.free.push(index);
            return Err(e);
        }
        if op == Op::Flush {
            // Nothing merges into a flush (and it drains what came before).
            // Its own failure is reported to the caller, which answers it.
            return self.queue(index).inspect_err(|_| self.free.push(index));
        }
        self.open = Some(index);
        Ok(())
    }

    /// Whether a request (`op` on `fd` at `offset` over `segments`) can
    /// join transfer `index`: same direction and file, starting where it
    /// ends, within the merge limits.
    fn continues(&self, index: u16, fd: RawFd, op: Op, offset: u64, segments: &[Segment]) -> bool {
        let slot = &self.slots[usize::from(index)];
        let bytes: u64 = segments.iter().map(|s| u64::from(s.len)).sum();
        op != Op::Flush
            && slot.op == op
            && slot.fd == fd
            && slot.offset.checked_add(slot.expected) == Some(offset)
            && slot.requests.len() < MERGE_REQUESTS
            && slot.expected + bytes <= MERGE_BYTES
            // A buffer may span guest memory regions: leave room for that.
            && slot.iovecs.len() + 2 * segments.len() <= IOV_MAX
    }

    /// Queue the open transfer's SQE, if there is one.
    fn close_open(&mut self) -> Result<(), PushError> {
        let Some(index) = self.open.take() else {
            return Ok(());
        };
        self.queue(index).inspect_err(|e| self.orphan(index, e))
    }

    /// No CQE will come for slot `index`: answer its requests with `e` at
    /// the next reap, which the eventfd brings on.
    fn orphan(&mut self, index: u16, e: &PushError) {
        let errno = match e {
            PushError::Host(e) => e.raw_os_error().unwrap_or(libc::EIO),
            PushError::Guest(_) => libc::EFAULT,
        };
        self.orphans.push((index, errno));
        let _ = self.eventfd.write(1);
    }

    /// Put slot `index`'s SQE in the submission queue.
    fn queue(&mut self, index: u16) -> Result<(), PushError> {
        let slot = &self.slots[usize::from(index)];
        let (fd, offset) = (types::Fd(slot.fd), slot.offset);
        // At most IOV_MAX buffers.
        let count = u32::try_from(slot.iovecs.len()).unwrap_or(u32::MAX);
        let iovecs = slot.iovecs.as_ptr().cast::<libc::iovec>();
        let entry = match slot.op {
            Op::Read => opcode::Readv::new(fd, iovecs, count).offset(offset).build(),
            Op::Write => opcode::Writev::new(fd, iovecs, count)
                .offset(offset)
                .build(),
            Op::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .flags(squeue::Flags::IO_DRAIN),
        }
        .user_data(u64::from(index));
        for _ in 0..2 {
            // Slot `index` (IoVec is a transparent wrapper of libc::iovec) is off
            // the free list until its CQE is reaped, and the engine drains
            // in-flight requests before it is dropped; flint keeps guest memory
            // mapped, and the backend (owner of the fd) alive, while devices live.
            // SAFETY: the iovecs (slot `index`, guest memory checked at parse, mapped while
            // the VM lives) and the backend's fd stay valid until this SQE's CQE is reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            // The submission queue is full: hand it to the kernel, retry.
            self.ring.submit().map_err(PushError::Host)?;
        }
        Err(PushError::Host(io::Error::from_raw_os_error(libc::EBUSY)))
    }

    /// Hand queued requests to the kernel.
    pub(super) fn submit(&mut self) {
        if let Err(e) = self.close_open() {
            let e = match e {
                PushError::Host(e) => e,
                PushError::Guest(e) => io::Error::other(e.to_string()),
            };
            error!("virtio-blk: io_uring queueing failed: {e}");
        }
        if let Err(e) = self.ring.submit() {
            // The SQEs stay queued; the next submit retries them.
            error!("virtio-blk: io_uring submit failed: {e}");
        }
    }

    /// Whether finished requests wait to be reaped: requests served from the page cache often
    /// complete inside the submitting io_uring_enter.
    pub(super) fn has_completions(&mut self) -> bool {
        !self.orphans.is_empty() || !self.ring.completion().is_empty()
    }

    /// Clear the eventfd and pass every finished request to `done`.
    pub(super) fn reap(&mut self, mut done: impl FnMut(Completion)) {
        let _ = self.eventfd.read();
        while let Some((index, errno)) = self.orphans.pop() {
            self.finish(index, &Err(io::Error::from_raw_os_error(errno)), &mut done);
        }
        loop {
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            let Ok(index) = u16::try_from(cqe.user_data()) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(usize::from(index)) else {
                continue;
            };
            let res = cqe.result();
            let result = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else if slot.op != Op::Flush && res as u64 != slot.expected {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short transfer: {res} of {} bytes", slot.expected),
                ))
            } else {
                Ok(())
            };
            self.finish(index, &result, &mut done);
        }
    }

    /// Free slot `index` and answer each of its requests with `result`.
    fn finish(&mut self, index: u16, result: &io::Result<()>, done: &mut impl FnMut(Completion)) {
        let slot = &mut self.slots[usize::from(index)];
        slot.iovecs.clear();
        self.free.push(index);
        for &(head, reply) in &slot.requests {
            done(Completion {
                head,
                reply,
                op: slot.op,
                result: clone_result(result),
            });
        }
    }

    /// Wait for every in-flight request and drop the results (reset).
    pub(super) fn drain(&mut self) {
        // An open transfer was never queued: its requests are dropped too.
        if let Some(index) = self.open.take() {
            self.free.push(index);
        }
        while self.in_flight() > 0 {
            if !self.orphans.is_empty() {
                // No CQE will come for these.
                self.reap(|_| {});
                continue;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                if e.raw_os_error() != Some(libc::EINTR) {
                    error!("virtio-blk: io_uring wait failed: {e}");
                    return;
                }
            }
            self.reap(|_| {});
        }
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // The kernel may still use the iovec arrays and guest buffers.
        self.drain();
    }
}

/// The same outcome for each request of a merged transfer.
fn clone_result(result: &io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(match e.raw_os_error() {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::new(e.kind(), e.to_string()),
        }),
    }
}

/// Append the iovecs of `segments` (checked guest buffers) to `slot`.
fn fill_iovecs(
    slot: &mut Slot,
    mem: &GuestMemoryMmap,
    segments: &[Segment],
) -> Result<(), PushError> {
    let access = match slot.op {
        Op::Read => Permissions::Write,
        _ => Permissions::Read,
    };
    for s in segments {
        let slices = mem
            .get_slices(s.addr, s.len as usize, access)
            .map_err(PushError::Guest)?;
        for slice in slices {
            let slice = slice.map_err(PushError::Guest)?;
            slot.iovecs.push(IoVec(libc::iovec {
                iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                iov_len: slice.len(),
            }));
            slot.expected = slot.expected.saturating_add(slice.len() as u64);
        }
    }
    Ok(())
}
