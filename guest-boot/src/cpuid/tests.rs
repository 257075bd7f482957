//! Unit tests for CPUID shaping and `--cpuid-mask` parsing.

use super::*;

fn entry(function: u32, index: u32, regs: [u32; 4]) -> CpuidEntry {
    CpuidEntry {
        function,
        index,
        flags: 0,
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
    }
}

fn find(entries: &[CpuidEntry], function: u32, index: u32) -> CpuidEntry {
    *entries
        .iter()
        .find(|e| e.function == function && e.index == index)
        .unwrap_or_else(|| panic!("no leaf {function:#x}.{index}"))
}

fn shaped(entries: &[CpuidEntry], vcpu_id: u8, vcpus: u8, mask: &[Feature]) -> Vec<CpuidEntry> {
    let mut entries = entries.to_vec();
    shape(
        &mut entries,
        &CpuidConfig {
            vcpu_id,
            vcpus,
            mask,
        },
    );
    entries
}

fn host() -> Vec<CpuidEntry> {
    vec![
        entry(1, 0, [0x000a_06a4, 0x0a10_0800, 0x7ffa_fbff, 0xbfeb_fbff]),
        entry(4, 0, [0x1c00_4121, 0x01c0_003f, 0x3f, 0]),
        entry(4, 3, [0x1c03_c163, 0x02c0_003f, 0x3fff, 6]),
        entry(4, 4, [0, 0, 0, 0]),
        entry(7, 0, [0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]),
        entry(0xb, 0, [1, 2, 0x100, 7]),
        entry(0xb, 1, [5, 16, 0x201, 7]),
        entry(0xb, 2, [0, 0, 2, 7]),
        entry(0xd, 1, [0xf, 0, 0, 0]),
        entry(0x8000_0001, 0, [0, 0, 0xffff_ffff, 0xffff_ffff]),
    ]
}

#[test]
fn table_has_the_documented_bits() {
    let expect = [
        ("xsave", 1, 0, Reg::Ecx, 26),
        ("avx", 1, 0, Reg::Ecx, 28),
        ("avx2", 7, 0, Reg::Ebx, 5),
        ("cx16", 1, 0, Reg::Ecx, 13),
        ("pcid", 1, 0, Reg::Ecx, 17),
        ("fsgsbase", 7, 0, Reg::Ebx, 0),
        ("popcnt", 1, 0, Reg::Ecx, 23),
        ("smap", 7, 0, Reg::Ebx, 20),
        ("smep", 7, 0, Reg::Ebx, 7),
        ("x2apic", 1, 0, Reg::Ecx, 21),
        ("tsc-deadline", 1, 0, Reg::Ecx, 24),
        ("avx512f", 7, 0, Reg::Ebx, 16),
        ("xsaveopt", 0xd, 1, Reg::Eax, 0),
    ];
    for (name, function, index, reg, bit) in expect {
        let f = feature_by_name(name).unwrap();
        assert_eq!(
            (f.function, f.index, f.reg, f.bit),
            (function, index, reg, bit),
            "{name}"
        );
    }
}

#[test]
fn table_names_are_unique_lowercase_and_bits_distinct() {
    for (i, a) in FEATURES.iter().enumerate() {
        assert_eq!(a.name, a.name.to_ascii_lowercase());
        for b in &FEATURES[i + 1..] {
            assert_ne!(normalise(a.name), normalise(b.name));
            assert!((a.function, a.index, a.reg, a.bit) != (b.function, b.index, b.reg, b.bit));
        }
    }
    for (dependent, needs) in DEPENDS_ON {
        assert!(feature_by_name(dependent).is_some(), "{dependent}");
        assert!(feature_by_name(needs).is_some(), "{needs}");
    }
}

#[test]
fn parse_mask_trims_ignores_case_and_dedups() {
    let mask = parse_mask(" xsave, AVX2 ,Pcid,xsave").unwrap();
    let names: Vec<&str> = mask.iter().map(|f| f.name).collect();
    assert_eq!(names, ["xsave", "avx2", "pcid"]);
}

#[test]
fn parse_mask_accepts_empty_lists() {
    assert!(parse_mask("").unwrap().is_empty());
    assert!(parse_mask(" , ,").unwrap().is_empty());
}

#[test]
fn parse_mask_treats_dash_and_underscore_alike() {
    assert_eq!(parse_mask("tsc_deadline").unwrap()[0].name, "tsc-deadline");
    assert_eq!(parse_mask("SSE4-2").unwrap()[0].name, "sse4_2");
}

#[test]
fn parse_mask_names_the_unknown_feature_and_the_known_ones() {
    let e = parse_mask("avx,warp-drive").unwrap_err();
    let CpuidError::UnknownFeature(name, known) = &e;
    assert_eq!(name, "warp-drive");
    assert!(known.contains("xsave") && known.contains("tsc-deadline"));
    assert!(e
        .to_string()
        .starts_with("unknown CPU feature \"warp-drive\" (known: "));
}

#[test]
fn hiding_xsave_hides_everything_built_on_it() {
    let all: Vec<&str> = with_dependents(&parse_mask("xsave").unwrap())
        .iter()
        .map(|f| f.name)
        .collect();
    for needed in [
        "osxsave", "avx", "avx2", "fma", "avx512f", "avx512vl", "xsaveopt", "pku",
    ] {
        assert!(all.contains(&needed), "{needed} missing from {all:?}");
    }
    assert!(!all.contains(&"sse4_2"));
}

#[test]
fn shape_clears_xsave_and_dependent_bits() {
    let out = shaped(&host(), 0, 1, &parse_mask("xsave").unwrap());
    let l1 = find(&out, 1, 0);
    assert_eq!(l1.ecx & (0b111 << 26), 0, "xsave, osxsave, avx");
    assert_ne!(l1.ecx & (1 << 23), 0, "popcnt untouched");
    let l7 = find(&out, 7, 0);
    assert_eq!(l7.ebx & (1 << 5), 0, "avx2");
    assert_eq!(l7.ebx & (1 << 16), 0, "avx512f");
    assert_ne!(l7.ebx & (1 << 7), 0, "smep untouched");
    assert_eq!(find(&out, 0xd, 1).eax & 1, 0, "xsaveopt");
}

#[test]
fn shape_clears_a_masked_bit_only() {
    let out = shaped(&host(), 0, 1, &parse_mask("smap,rdtscp").unwrap());
    assert_eq!(find(&out, 7, 0).ebx, !(1 << 20));
    assert_eq!(find(&out, 0x8000_0001, 0).edx, !(1 << 27));
}

#[test]
fn leaf_1_carries_apic_id_count_and_hypervisor_bit() {
    let out = shaped(&host(), 2, 4, &[]);
    let l1 = find(&out, 1, 0);
    assert_eq!(l1.ebx >> 24, 2);
    assert_eq!((l1.ebx >> 16) & 0xff, 4);
    assert_eq!(l1.ebx & 0xffff, 0x0800, "CLFLUSH size kept");
    assert_ne!(l1.ecx & (1 << 31), 0);
    assert_ne!(l1.edx & (1 << 28), 0, "HTT with several vCPUs");
    let single = find(&shaped(&host(), 0, 1, &[]), 1, 0);
    assert_eq!(single.edx & (1 << 28), 0);
}

#[test]
fn extended_topology_reports_x2apic_id_and_levels() {
    let out = shaped(&host(), 3, 6, &[]);
    for index in 0..3 {
        assert_eq!(find(&out, 0xb, index).edx, 3);
    }
    let smt = find(&out, 0xb, 0);
    assert_eq!((smt.eax, smt.ebx, smt.ecx), (0, 1, 0x100));
    let core = find(&out, 0xb, 1);
    assert_eq!((core.eax, core.ebx, core.ecx), (3, 6, 0x201));
    let end = find(&out, 0xb, 2);
    assert_eq!((end.eax, end.ebx, end.ecx), (0, 0, 2));
}

#[test]
fn cache_leaf_reports_cores_and_llc_sharing() {
    let out = shaped(&host(), 0, 4, &[]);
    let l1d = find(&out, 4, 0);
    assert_eq!(
        (l1d.eax >> 26, (l1d.eax >> 14) & 0xfff, l1d.eax & 0x3fff),
        (3, 0, 0x0121)
    );
    let l3 = find(&out, 4, 3);
    assert_eq!((l3.eax >> 26, (l3.eax >> 14) & 0xfff), (3, 3));
    assert_eq!(find(&out, 4, 4).eax, 0, "terminator untouched");
}

#[test]
fn kvm_leaves_are_added_when_missing() {
    let out = shaped(&host(), 0, 1, &[]);
    let sig = find(&out, 0x4000_0000, 0);
    assert_eq!(sig.eax, 0x4000_0001);
    let mut text = Vec::new();
    for r in [sig.ebx, sig.ecx, sig.edx] {
        text.extend_from_slice(&r.to_le_bytes());
    }
    assert_eq!(&text, b"KVMKVMKVM\0\0\0");
    assert_eq!(find(&out, 0x4000_0001, 0).eax, 0x0100_000b);
}

#[test]
fn kvm_leaves_keep_what_kvm_reported() {
    let mut base = host();
    base.push(entry(0x4000_0000, 0, [0x4000_0001, 1, 2, 3]));
    base.push(entry(0x4000_0001, 0, [1 << 7, 0, 0, 0]));
    let out = shaped(&base, 0, 1, &[]);
    assert_eq!(out.iter().filter(|e| e.function == 0x4000_0000).count(), 1);
    assert_eq!(find(&out, 0x4000_0000, 0).ebx, 0x4b4d_564b);
    assert_eq!(find(&out, 0x4000_0001, 0).eax, 0x0100_008b);
}

#[test]
fn zero_vcpus_is_treated_as_one() {
    let out = shaped(&host(), 0, 0, &[]);
    assert_eq!((find(&out, 1, 0).ebx >> 16) & 0xff, 1);
    assert_eq!(find(&out, 0xb, 1).ebx, 1);
}
