//! Creating the KVM VM: in-kernel irqchip, guest RAM as KVM memory slots.

use std::path::Path;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Why the VM could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm (or `--kvm-device`) could not be opened.
    #[error("cannot open the KVM device {path}: {source}")]
    OpenKvm {
        /// The path tried.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An ioctl on the VM failed.
    #[error("{what} failed: {source}")]
    Ioctl {
        /// Which step.
        what: &'static str,
        /// The cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest RAM could not be allocated.
    #[error("cannot allocate {mib} MiB of guest RAM: {source}")]
    Memory {
        /// Requested size.
        mib: u64,
        /// The cause.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
}

/// Open the KVM device at `path`.
pub fn open_kvm(path: &Path) -> Result<Kvm, VmError> {
    Kvm::new_with_path(path_cstring(path)).map_err(|e| VmError::OpenKvm {
        path: path.display().to_string(),
        source: std::io::Error::from_raw_os_error(e.errno()),
    })
}

fn path_cstring(path: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    // A path with an interior NUL cannot name a file; the empty name fails to open, naming `path`.
    std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// Create an empty VM.
pub fn create_vm(kvm: &Kvm) -> Result<VmFd, VmError> {
    kvm.create_vm().map_err(|source| VmError::Ioctl {
        what: "KVM_CREATE_VM",
        source,
    })
}

/// Allocate guest RAM for `mem_mib` and register it with the VM, one slot per range.
pub fn create_memory(vm: &VmFd, mem_mib: u64) -> Result<GuestMemoryMmap, VmError> {
    let ranges: Vec<(GuestAddress, usize)> = guest_boot::layout::ram_ranges(mem_mib << 20)
        .into_iter()
        .map(|(start, len)| (start, len as usize))
        .collect();
    let mem: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&ranges).map_err(|source| VmError::Memory {
            mib: mem_mib,
            source,
        })?;
    exclude_from_core_dumps(&mem);
    for (slot, region) in mem.iter().enumerate() {
        let slot_def = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mapping of exactly `memory_size` bytes owned by `mem`,
        // which the caller keeps alive as long as the VM (both live until process exit).
        unsafe { vm.set_user_memory_region(slot_def) }.map_err(|source| VmError::Ioctl {
            what: "KVM_SET_USER_MEMORY_REGION",
            source,
        })?;
    }
    Ok(mem)
}

/// MADV_DONTDUMP on every region: a core dump of flint then holds flint,
/// not the guest's memory (which may be large, and is the guest's data).
fn exclude_from_core_dumps(mem: &GuestMemoryMmap) {
    for region in mem.iter() {
        // SAFETY: the range is exactly one live mapping owned by `mem`;
        // MADV_DONTDUMP changes only what a core dump includes.
        let r = unsafe {
            libc::madvise(
                region.as_ptr().cast(),
                region.len() as usize,
                libc::MADV_DONTDUMP,
            )
        };
        if r != 0 {
            log::warn!(
                "guest RAM at {:#x} stays in core dumps: {}",
                region.start_addr().0,
                std::io::Error::last_os_error()
            );
        }
    }
}
