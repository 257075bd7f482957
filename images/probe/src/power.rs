//! `probe.poweroff=1`: ACPI S5 the way a hardware-reduced kernel does it
//! (ACPI 6.5 §4.8.3.7, §5.2.9): write `SLP_TYP << 2 | SLP_EN` to the FADT's
//! SLEEP_CONTROL_REG. SLP_TYP is the first element of the DSDT's
//! `Name(_S5_, Package)` when one is found, else 5.

use crate::acpi::Tables;
use crate::mem::le;
use crate::svc;

/// FADT offset of SLEEP_CONTROL_REG (a 12-byte Generic Address Structure).
const SLEEP_CONTROL_REG: usize = 244;
/// GAS address space: System I/O.
const SYSTEM_IO: u8 = 1;
/// SLP_EN in the sleep control register.
const SLP_EN: u8 = 1 << 5;
/// SLP_TYP used when the DSDT has no readable `_S5_`.
const DEFAULT_S5: u8 = 5;

/// The I/O port of the FADT's sleep control register, if the FADT is long
/// enough to hold it (ACPI 5.0+: 256 bytes) and it is a non-zero System I/O
/// address below 64 KiB.
pub fn sleep_control_port(fadt: &[u8]) -> Option<u16> {
    let gas = fadt.get(SLEEP_CONTROL_REG..SLEEP_CONTROL_REG + 12)?;
    if gas[0] != SYSTEM_IO {
        return None;
    }
    let addr = le(gas, 4, 8)?;
    u16::try_from(addr).ok().filter(|&port| port != 0)
}

/// The value written: `SLP_TYP << 2 | SLP_EN`.
pub fn sleep_value(tables: &Tables) -> u8 {
    let slp_typ = tables.dsdt.and_then(s5_type).unwrap_or(DEFAULT_S5);
    (slp_typ << 2) | SLP_EN
}

/// The first element of `Name(_S5_, Package() {...})` in `aml`, if it is an
/// integer 0-7: NameOp 0x08, optional root prefix `\`, "_S5_", PackageOp
/// 0x12, PkgLength, NumElements >= 1, then a ZeroOp/OneOp/Byte/Word/DWord/
/// QWord constant inside the package.
pub fn s5_type(aml: &[u8]) -> Option<u8> {
    let mut from = 0;
    while let Some(i) = aml.get(from..)?.windows(4).position(|w| w == b"_S5_") {
        let at = from + i;
        from = at + 1;
        let name_op = match at.checked_sub(1).map(|p| aml[p]) {
            Some(b'\\') => at.checked_sub(2).map(|p| aml[p]),
            other => other,
        };
        if name_op != Some(0x08) {
            continue;
        }
        if let Some(value) = package_first(aml, at + 4) {
            return Some(value);
        }
    }
    None
}

/// The first integer of the package at `at` (PackageOp ...), if 0-7.
fn package_first(aml: &[u8], at: usize) -> Option<u8> {
    if *aml.get(at)? != 0x12 {
        return None;
    }
    let lead = *aml.get(at + 1)?;
    let extra = usize::from(lead >> 6);
    let mut len = if extra == 0 {
        usize::from(lead & 0x3f)
    } else {
        usize::from(lead & 0x0f)
    };
    for i in 0..extra {
        len |= usize::from(*aml.get(at + 2 + i)?) << (4 + 8 * i);
    }
    let end = (at + 1).checked_add(len).filter(|&e| e <= aml.len())?;
    let count_at = at + 2 + extra;
    if count_at >= end || aml[count_at] == 0 {
        return None;
    }
    let element = count_at + 1;
    let (value, width) = match *aml.get(element).filter(|_| element < end)? {
        0x00 => (0, 0),
        0x01 => (1, 0),
        0x0a => (le(aml, element + 1, 1)?, 1),
        0x0b => (le(aml, element + 1, 2)?, 2),
        0x0c => (le(aml, element + 1, 4)?, 4),
        0x0e => (le(aml, element + 1, 8)?, 8),
        _ => return None,
    };
    if element + 1 + width > end || value > 7 {
        return None;
    }
    Some(value as u8)
}

/// Prints `probe: poweroff`, then writes the sleep register; when there is
/// none (or the write did not stop the VM) exits with status 121.
pub fn poweroff(tables: &Tables) -> ! {
    crate::out::say("poweroff");
    match tables.fadt.and_then(sleep_control_port) {
        Some(port) => {
            svc::outb(port, sleep_value(tables));
            crate::out::say("poweroff failed");
        }
        None => crate::out::say("poweroff unavailable"),
    }
    crate::exit(POWEROFF_FAILED)
}

/// Exit status when the probe cannot power off.
pub const POWEROFF_FAILED: u8 = 121;
