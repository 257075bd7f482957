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
//! Each in-flight request owns one slot of a fixed table (as many as the
//! queue has entries), indexed by the SQE's user_data; the slot keeps the
//! request's iovec array, which the kernel may read until the CQE arrives,
//! and is not reused before then.

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

/// An in-flight request.
struct Slot {
    head: u16,
    reply: Reply,
    op: Op,
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
                head: 0,
                reply: Reply {
                    status: vm_memory::GuestAddress(0),
                    used_len: 0,
                },
                op: Op::Flush,
                expected: 0,
                iovecs: Vec::with_capacity(SEG_MAX as usize),
            })
            .collect();
        Ok(UringEngine {
            ring,
            eventfd,
            slots,
            free: (0..entries).rev().collect(),
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

    /// Requests queued and not yet reaped.
    pub(super) fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Queue `op` on `fd` at byte `offset` over `segments` (checked guest
    /// buffers) for chain `head`; [`submit`](Self::submit) sends it.
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
        let Some(index) = self.free.pop() else {
            return Err(PushError::Host(io::Error::from_raw_os_error(libc::EBUSY)));
        };
        let result = self.fill(index, mem, head, reply, op, segments);
        let result = result.and_then(|()| self.queue(index, fd, offset));
        if result.is_err() {
            self.free.push(index);
        }
        result
    }

    /// Record the request in slot `index` and build its iovecs.
    fn fill(
        &mut self,
        index: u16,
        mem: &GuestMemoryMmap,
        head: u16,
        reply: Reply,
        op: Op,
        segments: &[Segment],
    ) -> Result<(), PushError> {
        let slot = &mut self.slots[usize::from(index)];
        slot.head = head;
        slot.reply = reply;
        slot.op = op;
        slot.expected = 0;
        slot.iovecs.clear();
        let access = match op {
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

    /// Put slot `index`'s SQE in the submission queue.
    fn queue(&mut self, index: u16, fd: RawFd, offset: u64) -> Result<(), PushError> {
        let slot = &self.slots[usize::from(index)];
        let fd = types::Fd(fd);
        // At most SEG_MAX segments, each in a few memory regions.
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
        if let Err(e) = self.ring.submit() {
            // The SQEs stay queued; the next submit retries them.
            error!("virtio-blk: io_uring submit failed: {e}");
        }
    }

    /// Clear the eventfd and pass every finished request to `done`.
    pub(super) fn reap(&mut self, mut done: impl FnMut(Completion)) {
        let _ = self.eventfd.read();
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
            slot.iovecs.clear();
            self.free.push(index);
            done(Completion {
                head: slot.head,
                reply: slot.reply,
                op: slot.op,
                result,
            });
        }
    }

    /// Wait for every in-flight request and drop the results (reset).
    pub(super) fn drain(&mut self) {
        while self.in_flight() > 0 {
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
