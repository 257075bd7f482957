//! CPUID shaping on plain data: topology, KVM paravirt leaves, feature masks.

/// One CPUID leaf/subleaf, a plain mirror of `kvm_cpuid_entry2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// Leaf (EAX input).
    pub function: u32,
    /// Subleaf (ECX input).
    pub index: u32,
    /// KVM_CPUID_FLAG_* bits, passed through.
    pub flags: u32,
    /// Output EAX.
    pub eax: u32,
    /// Output EBX.
    pub ebx: u32,
    /// Output ECX.
    pub ecx: u32,
    /// Output EDX.
    pub edx: u32,
}

/// A CPU feature that `--cpuid-mask` can hide, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Name as written on the command line (lower case, as in /proc/cpuinfo).
    pub name: &'static str,
    /// Leaf.
    pub function: u32,
    /// Subleaf.
    pub index: u32,
    /// Output register.
    pub reg: Reg,
    /// Bit number.
    pub bit: u8,
}

/// A CPUID output register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

/// How to shape the host's supported CPUID for one vCPU.
#[derive(Clone, Debug)]
pub struct CpuidConfig<'a> {
    /// This vCPU's index (= its APIC ID).
    pub vcpu_id: u8,
    /// Total vCPUs.
    pub vcpus: u8,
    /// Features to hide.
    pub mask: &'a [Feature],
}

/// Why a feature list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// An unknown feature name.
    #[error("unknown CPU feature {0:?} (known: {1})")]
    UnknownFeature(String, String),
}

/// Parse a comma-separated `--cpuid-mask` list.
pub fn parse_mask(list: &str) -> Result<Vec<Feature>, CpuidError> {
    let _ = list;
    todo!("guest-boot helper implements")
}

/// Shape `entries` (from KVM_GET_SUPPORTED_CPUID) for one vCPU: topology,
/// KVM paravirt leaves, masked features.
pub fn shape(entries: &mut Vec<CpuidEntry>, cfg: &CpuidConfig<'_>) {
    let _ = (entries, cfg);
    todo!("guest-boot helper implements")
}
