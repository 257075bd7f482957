//! Coalesced port I/O for the UART's transmit register.
//!
//! A guest that prints by polling (early consoles, boot loaders, the probe)
//! costs one VM exit per byte; on this project's nested hosts that is ~10 µs
//! a byte, most of a short guest's life. With `KVM_CAP_COALESCED_PIO` KVM
//! appends such writes to a ring shared with flint instead of exiting, and
//! flint replays them to the UART before it handles the next exit (so they
//! stay in order with every other device access) and on the event loop's
//! tick (so output never waits long).
//!
//! Only writes are coalesced; reads still exit. flint coalesces port 0x3f8
//! only while the guest has the transmit-empty interrupt off: a driver that
//! waits for that interrupt must see each write when it happens.

use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, Ordering};

use kvm_bindings::{kvm_coalesced_mmio, KVM_COALESCED_MMIO_PAGE_OFFSET};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};

/// Size of the ring's header (`first`, `last`).
const RING_HEADER: usize = 8;

/// The per-VM ring of coalesced writes, mapped from a vCPU fd.
pub struct CoalescedRing {
    page: *mut u8,
    page_size: usize,
    entries: u32,
}

// SAFETY: only flint advances the ring's consumer index, callers serialize
// draining with a Mutex, and the mapping lives as long as the value.
unsafe impl Send for CoalescedRing {}

impl CoalescedRing {
    /// Map the ring through `vcpu`, if this KVM supports coalesced port I/O.
    pub fn map(kvm: &Kvm, vcpu: &VcpuFd) -> Option<Self> {
        if !kvm.check_extension(Cap::CoalescedPio) {
            return None;
        }
        // SAFETY: sysconf has no memory effects.
        let page_size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        let offset =
            libc::off_t::try_from(KVM_COALESCED_MMIO_PAGE_OFFSET as usize * page_size).ok()?;
        // SAFETY: mapping one page of the vCPU fd at KVM's documented ring
        // offset; the result is checked before use.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                offset,
            )
        };
        if page == libc::MAP_FAILED {
            log::debug!(
                "coalesced I/O ring not mapped: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        let entries =
            ((page_size - RING_HEADER) / std::mem::size_of::<kvm_coalesced_mmio>()) as u32;
        Some(CoalescedRing {
            page: page.cast(),
            page_size,
            entries,
        })
    }

    /// Replay every queued write, oldest first, as `(port or address, bytes)`.
    /// Returns how many were replayed.
    pub fn drain(&mut self, mut write: impl FnMut(u64, &[u8])) -> usize {
        let head = self.page.cast::<u32>();
        let mut replayed = 0;
        loop {
            // SAFETY: `page` maps the ring page; `first` and `last` are its
            // first two u32s, read volatile because KVM writes `last` concurrently.
            let (first, last) = unsafe { (head.read_volatile(), head.add(1).read_volatile()) };
            if first == last || first >= self.entries {
                return replayed;
            }
            // Entries up to `last` are complete once we have seen `last`.
            fence(Ordering::Acquire);
            // SAFETY: `first < entries`, so the entry lies inside the page.
            let entry = unsafe {
                self.page
                    .add(RING_HEADER + first as usize * std::mem::size_of::<kvm_coalesced_mmio>())
                    .cast::<kvm_coalesced_mmio>()
                    .read_volatile()
            };
            let len = (entry.len as usize).min(entry.data.len());
            write(entry.phys_addr, &entry.data[..len]);
            replayed += 1;
            fence(Ordering::Release);
            // SAFETY: as above; flint is the ring's only consumer.
            unsafe { head.write_volatile((first + 1) % self.entries) };
        }
    }
}

impl Drop for CoalescedRing {
    fn drop(&mut self) {
        // SAFETY: `page` is the mapping made in `map`, of `page_size` bytes.
        unsafe { libc::munmap(self.page.cast(), self.page_size) };
    }
}

/// Start coalescing writes to `port`.
pub fn register(vm: &VmFd, port: u16) -> Result<(), kvm_ioctls::Error> {
    vm.register_coalesced_mmio(IoEventAddress::Pio(u64::from(port)), 1)
}

/// Stop coalescing writes to `port`.
pub fn unregister(vm: &VmFd, port: u16) -> Result<(), kvm_ioctls::Error> {
    vm.unregister_coalesced_mmio(IoEventAddress::Pio(u64::from(port)), 1)
}

/// The VM's ring, once the boot vCPU has mapped it; shared by every vCPU
/// and the event loop, which all replay it.
pub type SharedRing = std::sync::Arc<std::sync::Mutex<Option<CoalescedRing>>>;

/// Replay the ring's queued writes to `pio`, then flush the device written.
pub fn replay(ring: &SharedRing, pio: &crate::devices::Bus) {
    let mut guard = ring.lock().unwrap_or_else(|p| p.into_inner());
    let Some(ring) = guard.as_mut() else { return };
    let mut last = None;
    ring.drain(|port, data| {
        pio.write_unflushed(port, data);
        last = Some(port);
    });
    if let Some(port) = last {
        pio.flush(port);
    }
}

/// Switches coalescing of one port on and off in KVM, for the UART.
pub struct KvmTxCoalescing {
    vm: std::sync::Arc<VmFd>,
    port: u16,
    active: bool,
}

impl KvmTxCoalescing {
    /// A switch for `port`, off; `None` when KVM cannot coalesce port I/O.
    pub fn new(kvm: &Kvm, vm: std::sync::Arc<VmFd>, port: u16) -> Option<Self> {
        kvm.check_extension(Cap::CoalescedPio)
            .then_some(KvmTxCoalescing {
                vm,
                port,
                active: false,
            })
    }
}

impl crate::devices::serial::TxCoalescing for KvmTxCoalescing {
    fn set(&mut self, on: bool) {
        if on == self.active {
            return;
        }
        let result = if on {
            register(&self.vm, self.port)
        } else {
            unregister(&self.vm, self.port)
        };
        match result {
            Ok(()) => self.active = on,
            Err(e) => log::warn!("coalesced I/O on port {:#x}: {e}", self.port),
        }
    }
}
