//! CPUID shaping on plain data: topology, KVM paravirt leaves, feature masks.
//!
//! Leaf and bit numbers follow the Intel SDM vol. 2A (CPUID) and the AMD
//! APM vol. 3; the KVM leaves follow Documentation/virt/kvm/x86/cpuid.rst.
//! Hiding a feature also hides the features that depend on it (after
//! Linux's arch/x86/kernel/cpu/cpuid-deps.c), so the guest never sees e.g.
//! AVX2 without XSAVE.

use Reg::{Eax, Ebx, Ecx, Edx};

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

const fn feature(name: &'static str, function: u32, index: u32, reg: Reg, bit: u8) -> Feature {
    Feature {
        name,
        function,
        index,
        reg,
        bit,
    }
}

/// Every feature `--cpuid-mask` knows, by `/proc/cpuinfo`-style name.
pub const FEATURES: &[Feature] = &[
    // Leaf 1 EDX.
    feature("tsc", 1, 0, Edx, 4),
    feature("clflush", 1, 0, Edx, 19),
    feature("mmx", 1, 0, Edx, 23),
    feature("fxsr", 1, 0, Edx, 24),
    feature("sse", 1, 0, Edx, 25),
    feature("sse2", 1, 0, Edx, 26),
    // Leaf 1 ECX.
    feature("sse3", 1, 0, Ecx, 0),
    feature("pclmulqdq", 1, 0, Ecx, 1),
    feature("ssse3", 1, 0, Ecx, 9),
    feature("fma", 1, 0, Ecx, 12),
    feature("cx16", 1, 0, Ecx, 13),
    feature("pcid", 1, 0, Ecx, 17),
    feature("sse4_1", 1, 0, Ecx, 19),
    feature("sse4_2", 1, 0, Ecx, 20),
    feature("x2apic", 1, 0, Ecx, 21),
    feature("movbe", 1, 0, Ecx, 22),
    feature("popcnt", 1, 0, Ecx, 23),
    feature("tsc-deadline", 1, 0, Ecx, 24),
    feature("aes", 1, 0, Ecx, 25),
    feature("xsave", 1, 0, Ecx, 26),
    feature("osxsave", 1, 0, Ecx, 27),
    feature("avx", 1, 0, Ecx, 28),
    feature("f16c", 1, 0, Ecx, 29),
    feature("rdrand", 1, 0, Ecx, 30),
    // Leaf 7.0 EBX.
    feature("fsgsbase", 7, 0, Ebx, 0),
    feature("bmi1", 7, 0, Ebx, 3),
    feature("hle", 7, 0, Ebx, 4),
    feature("avx2", 7, 0, Ebx, 5),
    feature("smep", 7, 0, Ebx, 7),
    feature("bmi2", 7, 0, Ebx, 8),
    feature("erms", 7, 0, Ebx, 9),
    feature("invpcid", 7, 0, Ebx, 10),
    feature("rtm", 7, 0, Ebx, 11),
    feature("avx512f", 7, 0, Ebx, 16),
    feature("avx512dq", 7, 0, Ebx, 17),
    feature("rdseed", 7, 0, Ebx, 18),
    feature("adx", 7, 0, Ebx, 19),
    feature("smap", 7, 0, Ebx, 20),
    feature("avx512ifma", 7, 0, Ebx, 21),
    feature("clflushopt", 7, 0, Ebx, 23),
    feature("clwb", 7, 0, Ebx, 24),
    feature("avx512pf", 7, 0, Ebx, 26),
    feature("avx512er", 7, 0, Ebx, 27),
    feature("avx512cd", 7, 0, Ebx, 28),
    feature("sha_ni", 7, 0, Ebx, 29),
    feature("avx512bw", 7, 0, Ebx, 30),
    feature("avx512vl", 7, 0, Ebx, 31),
    // Leaf 7.0 ECX.
    feature("avx512vbmi", 7, 0, Ecx, 1),
    feature("umip", 7, 0, Ecx, 2),
    feature("pku", 7, 0, Ecx, 3),
    feature("avx512_vbmi2", 7, 0, Ecx, 6),
    feature("gfni", 7, 0, Ecx, 8),
    feature("vaes", 7, 0, Ecx, 9),
    feature("vpclmulqdq", 7, 0, Ecx, 10),
    feature("avx512_vnni", 7, 0, Ecx, 11),
    feature("avx512_bitalg", 7, 0, Ecx, 12),
    feature("avx512_vpopcntdq", 7, 0, Ecx, 14),
    feature("la57", 7, 0, Ecx, 16),
    feature("rdpid", 7, 0, Ecx, 22),
    // Leaf 7.0 EDX.
    feature("avx512_4vnniw", 7, 0, Edx, 2),
    feature("avx512_4fmaps", 7, 0, Edx, 3),
    feature("fsrm", 7, 0, Edx, 4),
    feature("avx512_vp2intersect", 7, 0, Edx, 8),
    feature("serialize", 7, 0, Edx, 14),
    feature("amx_bf16", 7, 0, Edx, 22),
    feature("avx512_fp16", 7, 0, Edx, 23),
    feature("amx_tile", 7, 0, Edx, 24),
    feature("amx_int8", 7, 0, Edx, 25),
    // Leaf 0xD.1 EAX.
    feature("xsaveopt", 0xd, 1, Eax, 0),
    feature("xsavec", 0xd, 1, Eax, 1),
    feature("xgetbv1", 0xd, 1, Eax, 2),
    feature("xsaves", 0xd, 1, Eax, 3),
    // Leaf 0x8000_0001.
    feature("lahf_lm", 0x8000_0001, 0, Ecx, 0),
    feature("abm", 0x8000_0001, 0, Ecx, 5),
    feature("sse4a", 0x8000_0001, 0, Ecx, 6),
    feature("3dnowprefetch", 0x8000_0001, 0, Ecx, 8),
    feature("xop", 0x8000_0001, 0, Ecx, 11),
    feature("fma4", 0x8000_0001, 0, Ecx, 16),
    feature("tbm", 0x8000_0001, 0, Ecx, 21),
    feature("pdpe1gb", 0x8000_0001, 0, Edx, 26),
    feature("rdtscp", 0x8000_0001, 0, Edx, 27),
    // Leaf 0x8000_0007 EDX.
    feature("invtsc", 0x8000_0007, 0, Edx, 8),
];

/// `(feature, what it needs)`: hiding the second hides the first.
const DEPENDS_ON: &[(&str, &str)] = &[
    ("sse2", "sse"),
    ("sse3", "sse2"),
    ("ssse3", "sse3"),
    ("sse4_1", "ssse3"),
    ("sse4_2", "sse4_1"),
    ("osxsave", "xsave"),
    ("xsaveopt", "xsave"),
    ("xsavec", "xsave"),
    ("xgetbv1", "xsave"),
    ("xsaves", "xsave"),
    ("pku", "xsave"),
    ("amx_tile", "xsave"),
    ("amx_bf16", "amx_tile"),
    ("amx_int8", "amx_tile"),
    ("avx", "xsave"),
    ("fma", "avx"),
    ("f16c", "avx"),
    ("fma4", "avx"),
    ("xop", "avx"),
    ("vaes", "avx"),
    ("vpclmulqdq", "avx"),
    ("avx2", "avx"),
    ("avx512f", "avx"),
    ("avx512dq", "avx512f"),
    ("avx512ifma", "avx512f"),
    ("avx512pf", "avx512f"),
    ("avx512er", "avx512f"),
    ("avx512cd", "avx512f"),
    ("avx512bw", "avx512f"),
    ("avx512vl", "avx512f"),
    ("avx512vbmi", "avx512f"),
    ("avx512_vbmi2", "avx512f"),
    ("avx512_vnni", "avx512f"),
    ("avx512_bitalg", "avx512f"),
    ("avx512_vpopcntdq", "avx512f"),
    ("avx512_4vnniw", "avx512f"),
    ("avx512_4fmaps", "avx512f"),
    ("avx512_vp2intersect", "avx512f"),
    ("avx512_fp16", "avx512f"),
];

/// First KVM paravirt leaf: signature and highest KVM leaf.
pub const KVM_CPUID_SIGNATURE: u32 = 0x4000_0000;
/// KVM paravirt feature leaf.
pub const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];
/// KVM_FEATURE_CLOCKSOURCE, NOP_IO_DELAY, CLOCKSOURCE2, CLOCKSOURCE_STABLE_BIT.
const KVM_FEATURES_REQUIRED: u32 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 24);
/// Leaf 1 ECX: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: EBX[23:16] is valid (HTT).
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Extended topology level types (leaf 0xB / 0x1F ECX[15:8]).
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Normalised name for comparisons: lower case, `-` for `_`.
fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// Look up one feature by name (case-insensitive, `-` and `_` alike).
pub fn feature_by_name(name: &str) -> Option<Feature> {
    let wanted = normalise(name);
    FEATURES
        .iter()
        .copied()
        .find(|f| normalise(f.name) == wanted)
}

/// Parse a comma-separated `--cpuid-mask` list.
pub fn parse_mask(list: &str) -> Result<Vec<Feature>, CpuidError> {
    let mut mask: Vec<Feature> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let feature = feature_by_name(name).ok_or_else(|| {
            let known: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
            CpuidError::UnknownFeature(name.to_string(), known.join(", "))
        })?;
        if !mask.contains(&feature) {
            mask.push(feature);
        }
    }
    Ok(mask)
}

/// `mask` plus every feature that depends on one in it, transitively.
pub fn with_dependents(mask: &[Feature]) -> Vec<Feature> {
    let mut all = mask.to_vec();
    loop {
        let before = all.len();
        for (dependent, needs) in DEPENDS_ON {
            let hidden = all.iter().any(|f| f.name == *needs);
            if hidden && !all.iter().any(|f| f.name == *dependent) {
                all.extend(feature_by_name(dependent));
            }
        }
        if all.len() == before {
            return all;
        }
    }
}

/// Shape `entries` (from KVM_GET_SUPPORTED_CPUID) for one vCPU: topology,
/// KVM paravirt leaves, masked features.
pub fn shape(entries: &mut Vec<CpuidEntry>, cfg: &CpuidConfig<'_>) {
    let vcpus = u32::from(cfg.vcpus.max(1));
    let id = u32::from(cfg.vcpu_id);
    for e in entries.iter_mut() {
        match e.function {
            1 => shape_leaf_1(e, id, vcpus),
            4 => shape_cache_leaf(e, vcpus),
            0xb | 0x1f => shape_topology_leaf(e, id, vcpus),
            0x8000_001e => {
                e.eax = id;
                e.ebx = id & 0xff;
                e.ecx = 0;
            }
            _ => {}
        }
    }
    set_kvm_leaves(entries);
    for f in with_dependents(cfg.mask) {
        hide(entries, &f);
    }
}

/// Leaf 1: initial APIC ID, logical processor count, hypervisor bit.
fn shape_leaf_1(e: &mut CpuidEntry, id: u32, vcpus: u32) {
    e.ebx = (e.ebx & 0x0000_ffff) | (id << 24) | (vcpus.min(0xff) << 16);
    e.ecx |= LEAF1_ECX_HYPERVISOR;
    if vcpus > 1 {
        e.edx |= LEAF1_EDX_HTT;
    } else {
        e.edx &= !LEAF1_EDX_HTT;
    }
}

/// Leaf 4 (deterministic cache parameters): one thread per core, all
/// vCPUs in one package, the last-level cache shared by all of them.
fn shape_cache_leaf(e: &mut CpuidEntry, vcpus: u32) {
    if e.eax & 0x1f == 0 {
        return; // No more caches.
    }
    let level = (e.eax >> 5) & 0x7;
    let sharing = if level >= 3 {
        (vcpus - 1).min(0xfff)
    } else {
        0
    };
    e.eax &= !(0xfc00_0000 | 0x03ff_c000);
    e.eax |= ((vcpus - 1).min(0x3f) << 26) | (sharing << 14);
}

/// Leaves 0xB / 0x1F (extended topology): SMT level of one thread, core
/// level of `vcpus` cores; x2APIC ID = vCPU index.
fn shape_topology_leaf(e: &mut CpuidEntry, id: u32, vcpus: u32) {
    let core_shift = u32::BITS - (vcpus - 1).leading_zeros();
    (e.eax, e.ebx, e.ecx) = match e.index {
        0 => (0, 1, LEVEL_SMT << 8),
        1 => (core_shift, vcpus, (LEVEL_CORE << 8) | 1),
        n => (0, 0, n & 0xff),
    };
    e.edx = id;
}

/// Insert or fix the KVM signature and feature leaves.
fn set_kvm_leaves(entries: &mut Vec<CpuidEntry>) {
    let signature = entry_mut(entries, KVM_CPUID_SIGNATURE, 0);
    signature.eax = KVM_CPUID_FEATURES;
    [signature.ebx, signature.ecx, signature.edx] = KVM_SIGNATURE;
    entry_mut(entries, KVM_CPUID_FEATURES, 0).eax |= KVM_FEATURES_REQUIRED;
}

/// The entry for `function`/`index`, appended zeroed when missing.
fn entry_mut(entries: &mut Vec<CpuidEntry>, function: u32, index: u32) -> &mut CpuidEntry {
    let at = match entries
        .iter()
        .position(|e| e.function == function && e.index == index)
    {
        Some(at) => at,
        None => {
            entries.push(CpuidEntry {
                function,
                index,
                ..CpuidEntry::default()
            });
            entries.len() - 1
        }
    };
    &mut entries[at]
}

/// Clear `f`'s bit wherever its leaf appears.
fn hide(entries: &mut [CpuidEntry], f: &Feature) {
    for e in entries
        .iter_mut()
        .filter(|e| e.function == f.function && e.index == f.index)
    {
        let reg = match f.reg {
            Reg::Eax => &mut e.eax,
            Reg::Ebx => &mut e.ebx,
            Reg::Ecx => &mut e.ecx,
            Reg::Edx => &mut e.edx,
        };
        *reg &= !(1u32 << f.bit);
    }
}

#[cfg(test)]
mod tests;
