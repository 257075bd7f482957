//! Thin setters from `guest_boot::entry::EntryState` to KVM register
//! structures, and the register dump printed when a guest crashes.

use std::fmt::Write as _;

use guest_boot::entry::{EntryState, Segment};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// IA32_MISC_ENABLE and its fast-strings bit, which Linux expects set.
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// Local APIC LVT registers and delivery modes, for LINT0/LINT1 wiring.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;
/// Default x87 control word and MXCSR after reset.
const FPU_FCW: u16 = 0x37f;
const FPU_MXCSR: u32 = 0x1f80;

/// Why the vCPU's entry state could not be set.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed: {source}")]
pub struct RegsError {
    what: &'static str,
    #[source]
    source: kvm_ioctls::Error,
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> RegsError {
    move |source| RegsError { what, source }
}

fn kvm_seg(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present.into(),
        dpl: s.dpl,
        db: s.db.into(),
        s: s.s.into(),
        l: s.l.into(),
        g: s.g.into(),
        avl: 0,
        unusable: (!s.present).into(),
        padding: 0,
    }
}

/// Load the boot vCPU with `entry`: general and special registers, FPU, MSRs.
pub fn set_entry_state(vcpu: &VcpuFd, entry: &EntryState) -> Result<(), RegsError> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    sregs.cs = kvm_seg(&entry.cs);
    let ds = kvm_seg(&entry.ds);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (ds, ds, ds, ds, ds);
    sregs.tr = kvm_seg(&entry.tr);
    sregs.gdt.base = entry.gdt.0;
    sregs.gdt.limit = entry.gdt.1;
    sregs.cr0 = entry.cr0;
    sregs.cr3 = entry.cr3;
    sregs.cr4 = entry.cr4;
    sregs.efer = entry.efer;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: entry.rip,
        rsp: entry.rsp,
        rbp: entry.rsp,
        rbx: entry.rbx,
        rsi: entry.rsi,
        rflags: entry.rflags,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
    Ok(())
}

/// Reset-time FPU, MSR and LAPIC state every vCPU gets.
pub fn set_common_state(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: FPU_FCW,
        mxcsr: FPU_MXCSR,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))?;
    let msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_IA32_MISC_ENABLE,
        data: MISC_ENABLE_FAST_STRING,
        ..Default::default()
    }])
    .map_err(|_| RegsError {
        what: "building the MSR list",
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    vcpu.set_msrs(&msrs).map_err(ioctl("KVM_SET_MSRS"))?;
    let mut lapic = vcpu.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
    set_lvt_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_lvt_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(ioctl("KVM_SET_LAPIC"))?;
    Ok(())
}

fn set_lvt_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut raw = [0u8; 4];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = regs[offset + i] as u8;
    }
    let value = (u32::from_le_bytes(raw) & !0x700) | (mode << 8);
    for (i, b) in value.to_le_bytes().into_iter().enumerate() {
        regs[offset + i] = b as std::os::raw::c_char;
    }
}

/// A human-readable dump of the vCPU's registers and the code bytes at RIP,
/// for the crash message on stderr.
pub fn crash_dump(vcpu: &VcpuFd, mem: &GuestMemoryMmap) -> String {
    let mut out = String::new();
    let (Ok(r), Ok(s)) = (vcpu.get_regs(), vcpu.get_sregs()) else {
        return "registers unavailable".into();
    };
    let _ = writeln!(
        out,
        "  rip {:016x}  rsp {:016x}  rflags {:08x}",
        r.rip, r.rsp, r.rflags
    );
    let _ = writeln!(
        out,
        "  rax {:016x}  rbx {:016x}  rcx {:016x}  rdx {:016x}",
        r.rax, r.rbx, r.rcx, r.rdx
    );
    let _ = writeln!(
        out,
        "  rsi {:016x}  rdi {:016x}  rbp {:016x}",
        r.rsi, r.rdi, r.rbp
    );
    let _ = writeln!(
        out,
        "  r8  {:016x}  r9  {:016x}  r10 {:016x}  r11 {:016x}",
        r.r8, r.r9, r.r10, r.r11
    );
    let _ = writeln!(
        out,
        "  r12 {:016x}  r13 {:016x}  r14 {:016x}  r15 {:016x}",
        r.r12, r.r13, r.r14, r.r15
    );
    let _ = writeln!(
        out,
        "  cs {:04x} (l={} db={} dpl={})  ss {:04x}  cr0 {:x}  cr3 {:x}  cr4 {:x}  efer {:x}",
        s.cs.selector, s.cs.l, s.cs.db, s.cs.dpl, s.ss.selector, s.cr0, s.cr3, s.cr4, s.efer
    );
    let linear = s.cs.base.wrapping_add(r.rip);
    let phys = if s.cr0 & (1 << 31) != 0 {
        vcpu.translate_gva(linear)
            .ok()
            .filter(|t| t.valid != 0)
            .map(|t| t.physical_address)
    } else {
        Some(linear)
    };
    let mut code = [0u8; 16];
    match phys.map(|p| mem.read_slice(&mut code, GuestAddress(p))) {
        Some(Ok(())) => {
            let hex: Vec<String> = code.iter().map(|b| format!("{b:02x}")).collect();
            let _ = write!(out, "  code at rip: {}", hex.join(" "));
        }
        _ => {
            let _ = write!(out, "  code at rip: not in guest RAM");
        }
    }
    out
}
