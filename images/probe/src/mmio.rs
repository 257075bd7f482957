//! virtio-mmio register reads (virtio 1.2 §4.2.2): MagicValue, Version,
//! DeviceID and VendorID of each device the DSDT or the command line names,
//! with 32-bit volatile loads from user mode. The window is identity-mapped
//! uncached (kernel.rs maps 3-4 GiB with PCD | PWT), so each load is one MMIO
//! exit to the monitor. Only windows inside the MMIO hole are read.

use crate::out::Line;

/// The 32-bit MMIO hole below 4 GiB: the only place registers are read.
const HOLE: core::ops::Range<u64> = 0xc000_0000..0x1_0000_0000;
/// Bytes of the register window the probe reads (0x000-0x00f).
const READ_SPAN: u64 = 0x10;

/// MagicValue, Version, DeviceID, VendorID.
pub struct Regs {
    pub magic: u32,
    pub version: u32,
    pub device_id: u32,
    pub vendor: u32,
}

/// Reads the four identification registers of the window at `addr` (of
/// `size` bytes), if it lies in the MMIO hole, is 4-byte aligned and at
/// least 16 bytes long.
pub fn read(addr: u64, size: u64) -> Option<Regs> {
    let end = addr.checked_add(READ_SPAN)?;
    if addr < HOLE.start || end > HOLE.end || !addr.is_multiple_of(4) || size < READ_SPAN {
        return None;
    }
    let reg = |offset: u64| {
        // SAFETY: `addr + offset` (< 16, 4-aligned) is in the user-readable MMIO
        // hole; identification-register reads have no side effects on probe memory.
        unsafe { core::ptr::read_volatile((addr + offset) as *const u32) }
    };
    Some(Regs {
        magic: reg(0x000),
        version: reg(0x004),
        device_id: reg(0x008),
        vendor: reg(0x00c),
    })
}

/// Appends ` magic=... version=... device-id=... vendor=...` (or ` skipped`)
/// and ends the line.
pub fn finish_line(line: &mut Line, addr: u64, size: u64) {
    match read(addr, size) {
        Some(r) => line
            .s(" magic=")
            .hex8(r.magic)
            .s(" version=")
            .dec(u64::from(r.version))
            .s(" device-id=")
            .dec(u64::from(r.device_id))
            .s(" vendor=")
            .hex8(r.vendor),
        None => line.s(" skipped"),
    };
    line.end();
}
