//! CPUID per vCPU: KVM's supported leaves, shaped by `guest_boot::cpuid`.

use guest_boot::cpuid::{CpuidConfig, CpuidEntry, Feature};
use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use kvm_ioctls::{Kvm, VcpuFd};

/// Why CPUID could not be set.
#[derive(Debug, thiserror::Error)]
pub enum CpuidSetupError {
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed: {0}")]
    Supported(#[source] kvm_ioctls::Error),
    /// KVM_SET_CPUID2 failed.
    #[error("KVM_SET_CPUID2 failed: {0}")]
    Set(#[source] kvm_ioctls::Error),
    /// Too many entries after shaping.
    #[error("too many CPUID entries ({0})")]
    TooMany(usize),
    /// The thread's system-call filter could not be set up.
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
}

/// The host's supported CPUID as plain entries.
pub fn supported(kvm: &Kvm) -> Result<Vec<CpuidEntry>, CpuidSetupError> {
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(CpuidSetupError::Supported)?;
    Ok(cpuid
        .as_slice()
        .iter()
        .map(|e| CpuidEntry {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        })
        .collect())
}

type CpuidJob = JoinHandle<Result<Vec<CpuidEntry>, CpuidSetupError>>;

/// KVM_GET_SUPPORTED_CPUID run on its own thread from the moment /dev/kvm
/// is open: it is the slowest ioctl of a boot (~350 µs on nested hosts) and
/// needs no VM, so it overlaps VM creation instead of delaying the vCPU.
pub struct SupportedCpuid {
    job: Mutex<Option<CpuidJob>>,
    result: OnceLock<Result<Vec<CpuidEntry>, String>>,
}

impl SupportedCpuid {
    /// Start fetching, on a thread filtered by `seccomp` from its start.
    pub fn fetch(kvm: Arc<Kvm>, seccomp: seccomp::Mode) -> std::io::Result<Self> {
        let job = std::thread::Builder::new()
            .name("cpuid".into())
            .spawn(move || {
                seccomp::Filter::new(seccomp::ThreadKind::Cpuid, seccomp)?.install()?;
                supported(&kvm)
            })?;
        Ok(SupportedCpuid {
            job: Mutex::new(Some(job)),
            result: OnceLock::new(),
        })
    }

    /// The entries, waiting for the fetch if it is still running.
    pub fn get(&self) -> Result<&[CpuidEntry], String> {
        let result = self.result.get_or_init(|| {
            let job = self.job.lock().unwrap_or_else(|p| p.into_inner()).take();
            match job.map(JoinHandle::join) {
                Some(Ok(r)) => r.map_err(|e| crate::exit::error_chain(&e)),
                Some(Err(_)) => Err("the CPUID thread panicked".into()),
                None => Err("CPUID was already taken".into()),
            }
        });
        result.as_deref().map_err(Clone::clone)
    }
}

/// Shape `base` for vCPU `vcpu_id` and load it.
pub fn configure(
    vcpu: &VcpuFd,
    base: &[CpuidEntry],
    vcpu_id: u8,
    vcpus: u8,
    mask: &[Feature],
) -> Result<(), CpuidSetupError> {
    let mut entries = base.to_vec();
    guest_boot::cpuid::shape(
        &mut entries,
        &CpuidConfig {
            vcpu_id,
            vcpus,
            mask,
        },
    );
    let raw: Vec<kvm_cpuid_entry2> = entries
        .iter()
        .map(|e| kvm_cpuid_entry2 {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            ..Default::default()
        })
        .collect();
    let cpuid = CpuId::from_entries(&raw).map_err(|_| CpuidSetupError::TooMany(raw.len()))?;
    vcpu.set_cpuid2(&cpuid).map_err(CpuidSetupError::Set)
}
