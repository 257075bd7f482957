//! The vCPU state at the first guest instruction, as plain data.

/// A segment register's visible selector and hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit in bytes (already scaled by granularity).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Descriptor type field (4 bits).
    pub type_: u8,
    /// Present.
    pub present: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operand size (32-bit).
    pub db: bool,
    /// Code/data (true) or system (false) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity: limit in 4 KiB units.
    pub g: bool,
}

/// The vCPU state at the kernel's first instruction, as plain data that
/// `vmm` turns into `KVM_SET_REGS` / `KVM_SET_SREGS` / `KVM_SET_MSRS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryState {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer (0 where the protocol leaves it undefined).
    pub rsp: u64,
    /// `rbx`: `hvm_start_info` address under PVH.
    pub rbx: u64,
    /// `rsi`: zero-page address under the Linux boot protocol.
    pub rsi: u64,
    /// Flags (bit 1 is always set).
    pub rflags: u64,
    /// Code segment.
    pub cs: Segment,
    /// Data segments (ds, es, fs, gs, ss all get this).
    pub ds: Segment,
    /// Task register.
    pub tr: Segment,
    /// GDT base and limit.
    pub gdt: (u64, u16),
    /// Control registers.
    pub cr0: u64,
    /// Page-table root (0 with paging off).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}
