//! The guest physical memory map: one place for every address flint uses.
//!
//! ```text
//! 0x0000_0000 ..0x0000_0500   real-mode IVT/BDA area, left zero (RAM)
//! 0x0000_0500                 GDT used at entry (5 descriptors)
//! 0x0000_6000                 hvm_start_info (PVH)      | zero page (Linux boot)
//! 0x0000_7000 ..0x0000_8000   PVH memory map (24-byte entries), then the module list
//! 0x0000_8000 ..0x0000_8FF0   boot stack (grows down from BOOT_STACK_POINTER)
//! 0x0000_9000 ..0x0000_F000   identity page tables (PML4, PDPT, 4 PDs: 4 GiB in 2 MiB pages)
//! 0x0002_0000                 kernel command line, NUL-terminated (the kernel's limit,
//!                             CMDLINE_MAX for ELF kernels; never past EBDA_START)
//! 0x0009_FC00 ..0x0010_0000   reserved (EBDA, VGA hole, BIOS area)
//! 0x000E_0000                 RSDP, then XSDT, FADT, MADT, DSDT (inside the reserved range)
//! 0x0010_0000 ..              bzImage protected-mode part; ELF segments at their p_paddr
//!                             (Linux: 16 MiB); initrd page-aligned at the top of low RAM
//!                             (below the kernel's initrd_addr_max)
//! MMIO_HOLE_START .. 4 GiB    no RAM: virtio-mmio windows, clock-sample window, IOAPIC, LAPIC
//! 4 GiB ..                    the rest of RAM when --mem exceeds MMIO_HOLE_START
//! ```

use vm_memory::GuestAddress;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// Where the entry GDT is written.
pub const GDT_START: u64 = 0x500;
/// `hvm_start_info` (PVH) or the zero page (Linux boot protocol).
pub const BOOT_INFO_START: u64 = 0x6000;
/// PVH memory map entries and module list (one page).
pub const PVH_MEMMAP_START: u64 = 0x7000;
/// Initial stack pointer handed to the kernel (top of the page below the
/// page tables; both boot protocols set up their own stack early).
pub const BOOT_STACK_POINTER: u64 = 0x8FF0;
/// First page-table page (PML4); PDPT and four PDs follow, one page each.
pub const PAGE_TABLES_START: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Largest command line flint writes, NUL included (the x86 Linux COMMAND_LINE_SIZE).
pub const CMDLINE_MAX: usize = 2048;
/// End of the first RAM range (the EBDA starts here).
pub const EBDA_START: u64 = 0x9_FC00;
/// RSDP; the other ACPI tables follow it, all below [`HIMEM_START`].
pub const ACPI_START: u64 = 0xE_0000;
/// Where RAM resumes after the legacy hole, and where kernels load.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the hole below 4 GiB that holds device MMIO, not RAM.
pub const MMIO_HOLE_START: u64 = 0xC000_0000;
/// 4 GiB: RAM beyond the hole continues here.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// First virtio-mmio window; device `i` sits at `VIRTIO_MMIO_START + i * VIRTIO_MMIO_SIZE`.
pub const VIRTIO_MMIO_START: u64 = 0xD000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// Legacy IRQ of the first virtio-mmio device; device `i` gets `VIRTIO_IRQ_START + i`.
pub const VIRTIO_IRQ_START: u32 = 5;
/// Most virtio-mmio devices one VM can have (IRQs 5..=23 on the IOAPIC).
pub const VIRTIO_MAX_DEVICES: usize = 19;
/// flint's clock-sample window: a guest's 8-byte write of its own clock
/// reading here is recorded with the host's CLOCK_MONOTONIC at that exit
/// (the boot report's `clock_samples`), to measure kvmclock drift.
pub const CLOCK_PROBE_START: u64 = 0xD800_0000;
/// Size of the clock-sample window.
pub const CLOCK_PROBE_SIZE: u64 = 0x1000;
/// IOAPIC registers.
pub const IOAPIC_START: u64 = 0xFEC0_0000;
/// Local APIC registers.
pub const LAPIC_START: u64 = 0xFEE0_0000;
/// I/O port of the 8250 UART (COM1), IRQ 4.
pub const SERIAL_PORT: u16 = 0x3f8;
/// UART interrupt line.
pub const SERIAL_IRQ: u32 = 4;
/// I/O port the guest writes 123 to when it has booted (Firecracker's boot timer).
pub const BOOT_COMPLETE_PORT: u16 = 0x3f0;
/// Value written to [`BOOT_COMPLETE_PORT`].
pub const BOOT_COMPLETE_VALUE: u8 = 123;
/// I/O port the guest writes its exit status byte to.
pub const EXIT_PORT: u16 = 0xf4;
/// i8042 command port; 0xFE written here resets (ends) the VM.
pub const I8042_PORT: u16 = 0x64;
/// ACPI sleep control register (HW-reduced FADT), one byte.
pub const ACPI_SLEEP_CONTROL_PORT: u16 = 0x3c0;
/// ACPI sleep status register (HW-reduced FADT), one byte.
pub const ACPI_SLEEP_STATUS_PORT: u16 = 0x3c1;

// The fixed areas below 1 MiB must not overlap: GDT (5 descriptors) <
// boot info page < PVH memory map page < stack < page tables (6 pages) <
// command line < EBDA; the ACPI tables sit in the legacy hole.
const _: () = {
    assert!(GDT_START + 5 * 8 <= BOOT_INFO_START);
    assert!(BOOT_INFO_START + 0x1000 <= PVH_MEMMAP_START);
    assert!(PVH_MEMMAP_START + 0x1000 < BOOT_STACK_POINTER);
    assert!(BOOT_STACK_POINTER < PAGE_TABLES_START);
    assert!(PAGE_TABLES_START + 6 * 0x1000 <= CMDLINE_START);
    assert!(CMDLINE_START + CMDLINE_MAX as u64 <= EBDA_START);
    assert!(ACPI_START >= EBDA_START && ACPI_START < HIMEM_START);
    assert!(VIRTIO_MMIO_START >= MMIO_HOLE_START);
};

/// Kind of an e820 / PVH memory map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM (e820 type 1).
    Ram,
    /// Reserved (e820 type 2).
    Reserved,
}

impl MemoryKind {
    /// The e820 / PVH type number.
    pub fn e820_type(self) -> u32 {
        match self {
            MemoryKind::Ram => 1,
            MemoryKind::Reserved => 2,
        }
    }
}

/// One entry of the memory map given to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMapEntry {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: MemoryKind,
}

/// End of the RAM below the MMIO hole for a VM of `mem_bytes`.
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_HOLE_START)
}

/// The RAM of a VM of `mem_bytes`, split around the MMIO hole: the ranges to
/// back with host memory (and register with KVM), in ascending order.
pub fn ram_ranges(mem_bytes: u64) -> Vec<(GuestAddress, u64)> {
    let low = mem_bytes.min(MMIO_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low)];
    if mem_bytes > MMIO_HOLE_START {
        ranges.push((GuestAddress(HIGH_RAM_START), mem_bytes - MMIO_HOLE_START));
    }
    ranges
}

/// The memory map the guest sees (e820 and PVH memmap alike).
pub fn memory_map(mem_bytes: u64) -> Vec<MemoryMapEntry> {
    let low_end = mem_bytes.min(MMIO_HOLE_START);
    let mut map = vec![
        MemoryMapEntry {
            start: 0,
            size: EBDA_START,
            kind: MemoryKind::Ram,
        },
        MemoryMapEntry {
            start: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: MemoryKind::Reserved,
        },
    ];
    if low_end > HIMEM_START {
        map.push(MemoryMapEntry {
            start: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: MemoryKind::Ram,
        });
    }
    if mem_bytes > MMIO_HOLE_START {
        map.push(MemoryMapEntry {
            start: HIGH_RAM_START,
            size: mem_bytes - MMIO_HOLE_START,
            kind: MemoryKind::Ram,
        });
    }
    map
}

/// Window and interrupt of the `index`-th virtio-mmio device, or `None` past
/// [`VIRTIO_MAX_DEVICES`].
pub fn virtio_mmio_slot(index: usize) -> Option<VirtioMmioSlot> {
    (index < VIRTIO_MAX_DEVICES).then(|| VirtioMmioSlot {
        addr: VIRTIO_MMIO_START + index as u64 * VIRTIO_MMIO_SIZE,
        size: VIRTIO_MMIO_SIZE,
        irq: VIRTIO_IRQ_START + index as u32,
    })
}

/// Where one virtio-mmio device lives on the flat bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioSlot {
    /// Guest-physical base of its register window.
    pub addr: u64,
    /// Window size.
    pub size: u64,
    /// Its IOAPIC interrupt line (edge-triggered, active high).
    pub irq: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(start: u64, end: u64) -> MemoryMapEntry {
        MemoryMapEntry {
            start,
            size: end - start,
            kind: MemoryKind::Ram,
        }
    }

    const LEGACY_HOLE: MemoryMapEntry = MemoryMapEntry {
        start: 0x9_FC00,
        size: 0x10_0000 - 0x9_FC00,
        kind: MemoryKind::Reserved,
    };

    #[test]
    fn memory_map_of_3500_mib_splits_around_the_hole() {
        let mem = 3500 * MIB;
        assert_eq!(
            memory_map(mem),
            vec![
                ram(0, 0x9_FC00),
                LEGACY_HOLE,
                ram(MIB, 3 << 30),
                ram(4 << 30, (4 << 30) + mem - (3 << 30)),
            ]
        );
    }

    #[test]
    fn memory_map_of_5000_mib_puts_the_rest_above_4_gib() {
        let mem = 5000 * MIB;
        let map = memory_map(mem);
        assert_eq!(map[2], ram(MIB, 3 << 30));
        assert_eq!(map[3], ram(4 << 30, (4 << 30) + (5000 - 3072) * MIB));
        let ram_total: u64 = map
            .iter()
            .filter(|e| e.kind == MemoryKind::Ram)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram_total, mem - LEGACY_HOLE.size);
    }

    #[test]
    fn memory_map_of_small_vm_has_no_high_ram() {
        let map = memory_map(128 * MIB);
        assert_eq!(
            map,
            vec![ram(0, 0x9_FC00), LEGACY_HOLE, ram(MIB, 128 * MIB)]
        );
    }

    #[test]
    fn memory_map_of_exactly_3_gib_has_no_high_ram() {
        let map = memory_map(3 << 30);
        assert_eq!(map.len(), 3);
        assert_eq!(map[2], ram(MIB, 3 << 30));
    }

    #[test]
    fn ram_ranges_skip_the_mmio_hole() {
        assert_eq!(ram_ranges(512 * MIB), vec![(GuestAddress(0), 512 * MIB)]);
        assert_eq!(
            ram_ranges(5000 * MIB),
            vec![
                (GuestAddress(0), 3 << 30),
                (GuestAddress(4 << 30), (5000 - 3072) * MIB)
            ]
        );
    }

    #[test]
    fn memory_map_ram_is_backed_by_ram_ranges() {
        for mem in [64 * MIB, 3500 * MIB, 5000 * MIB] {
            let ranges = ram_ranges(mem);
            for e in memory_map(mem) {
                let end = e.start + e.size;
                assert!(
                    ranges.iter().any(|(s, l)| e.start >= s.0 && end <= s.0 + l),
                    "{e:?} not backed for {mem}"
                );
            }
        }
    }

    #[test]
    fn virtio_slots_are_consecutive_pages_and_irqs() {
        let first = virtio_mmio_slot(0).unwrap();
        assert_eq!(
            (first.addr, first.size, first.irq),
            (0xD000_0000, 0x1000, 5)
        );
        let last = virtio_mmio_slot(VIRTIO_MAX_DEVICES - 1).unwrap();
        assert_eq!((last.addr, last.irq), (0xD001_2000, 23));
        assert!(virtio_mmio_slot(VIRTIO_MAX_DEVICES).is_none());
    }

    #[test]
    fn the_clock_window_sits_between_the_virtio_windows_and_the_ioapic() {
        let last = virtio_mmio_slot(VIRTIO_MAX_DEVICES - 1).unwrap();
        assert!(last.addr + last.size <= CLOCK_PROBE_START);
        const { assert!(CLOCK_PROBE_START + CLOCK_PROBE_SIZE <= IOAPIC_START) };
        const { assert!(CLOCK_PROBE_START >= MMIO_HOLE_START) };
    }

    #[test]
    fn last_virtio_window_ends_below_the_ioapic() {
        let last = virtio_mmio_slot(VIRTIO_MAX_DEVICES - 1).unwrap();
        assert!(last.addr + last.size <= IOAPIC_START);
    }
}
