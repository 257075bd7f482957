//! ACPI discovery (ACPI 6.5 §5.2): RSDP (given, or found in the EBDA /
//! 0xE0000-0xFFFFF as Linux does), XSDT (or RSDT), every table's checksum,
//! FADT -> DSDT, then the virtio-mmio devices the DSDT declares (aml.rs).
//! Every address and length is bounds-checked; nothing here can fault.

use crate::aml;
use crate::mem::{le, le32, le64, phys};
use crate::mmio;
use crate::out::{say, Line};

/// The tables later steps use (power-off): each bounds-checked, whole.
#[derive(Default)]
pub struct Tables {
    /// The (last) FADT, header included.
    pub fadt: Option<&'static [u8]>,
    /// The DSDT's AML (after the 36-byte header).
    pub dsdt: Option<&'static [u8]>,
}

/// Largest table length believed.
const TABLE_LIMIT: u64 = 16 << 20;
/// Most root-table entries looked at.
const MAX_TABLES: usize = 64;

/// Reports the ACPI tables, starting from `hint` (0: scan for the RSDP),
/// then reads each virtio-mmio device's identification registers.
pub fn report(hint: u64) -> Tables {
    let rsdp = if hint != 0 { hint } else { scan() };
    let Some(header) = phys(rsdp, 20).filter(|h| h.starts_with(b"RSD PTR ")) else {
        say("acpi none");
        return Tables::default();
    };
    let revision = header[15];
    let mut ok = sum(header) == 0;
    let mut root = le32(header, 16).map_or(0, u64::from);
    let mut entry_size = 4;
    if revision >= 2 {
        let length = phys(rsdp, 36)
            .and_then(|r| le32(r, 20))
            .map_or(0, u64::from);
        match phys(rsdp, length).filter(|_| length >= 36) {
            Some(full) => {
                ok &= sum(full) == 0;
                let xsdt = le64(full, 24).unwrap_or(0);
                if xsdt != 0 {
                    root = xsdt;
                    entry_size = 8;
                }
            }
            None => ok = false,
        }
    }
    Line::new()
        .s("acpi rsdp addr=")
        .hex(rsdp)
        .s(" revision=")
        .dec(u64::from(revision))
        .s(" checksum=")
        .s(if ok { "ok" } else { "bad" })
        .end();
    let tables = walk_root(root, entry_size);
    let mut count = 0;
    if let Some(body) = tables.dsdt {
        aml::virtio_devices(body, &mut |dev: aml::Device| {
            Line::new()
                .s("virtio-mmio index=")
                .dec(count)
                .s(" addr=")
                .hex(dev.addr)
                .s(" size=")
                .hex(dev.size)
                .s(" irq=")
                .dec(u64::from(dev.irq))
                .end();
            count += 1;
        });
    }
    Line::new().s("acpi devices=").dec(count).end();
    if let Some(body) = tables.dsdt {
        let mut index = 0;
        aml::virtio_devices(body, &mut |dev: aml::Device| {
            let mut line = Line::new();
            line.s("virtio-mmio-regs index=").dec(index);
            mmio::finish_line(&mut line, dev.addr, dev.size);
            index += 1;
        });
    }
    tables
}

/// Prints the root table and every table it lists; returns the FADT and
/// the DSDT's AML.
fn walk_root(root: u64, entry_size: usize) -> Tables {
    let mut tables = Tables::default();
    let Some(table) = report_table(root) else {
        return tables;
    };
    for entry in table[36..].chunks_exact(entry_size).take(MAX_TABLES) {
        let addr = le(entry, 0, entry_size).unwrap_or(0);
        let Some(t) = report_table(addr) else {
            continue;
        };
        if t.starts_with(b"FACP") {
            let x_dsdt = if t.len() >= 148 {
                le64(t, 140).unwrap_or(0)
            } else {
                0
            };
            let addr = if x_dsdt != 0 {
                x_dsdt
            } else {
                le32(t, 40).map_or(0, u64::from)
            };
            tables.fadt = Some(t);
            tables.dsdt = report_table(addr).map(|d| &d[36..]);
        }
    }
    tables
}

/// Prints `acpi table=...` for the table at `addr`; returns its bytes when
/// the header is readable and the length sane.
fn report_table(addr: u64) -> Option<&'static [u8]> {
    let header = phys(addr, 36);
    let length = header.and_then(|h| le32(h, 4)).map_or(0, u64::from);
    let table = phys(addr, length).filter(|_| (36..=TABLE_LIMIT).contains(&length));
    let mut signature = [b'?'; 4];
    if let Some(h) = header {
        for (s, &b) in signature.iter_mut().zip(h) {
            if b.is_ascii_graphic() {
                *s = b;
            }
        }
    }
    let ok = table.is_some_and(|t| sum(t) == 0);
    Line::new()
        .s("acpi table=")
        .bytes(&signature)
        .s(" addr=")
        .hex(addr)
        .s(" len=")
        .dec(length)
        .s(" checksum=")
        .s(if ok { "ok" } else { "bad" })
        .end();
    table
}

/// Byte sum modulo 256 (0 for a valid table).
fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, &b| acc.wrapping_add(b))
}

/// Looks for a valid RSDP where BIOSes leave it: the first KiB of the EBDA,
/// then 0xE0000-0xFFFFF, on 16-byte boundaries. 0 if none.
fn scan() -> u64 {
    let ebda = phys(0x40e, 2).and_then(|b| le(b, 0, 2)).unwrap_or(0) << 4;
    let mut areas = [(0xe0000, 0x20000), (0, 0)];
    if (0x80000..0xa0000).contains(&ebda) {
        areas = [(ebda, 1024), (0xe0000, 0x20000)];
    }
    for (start, len) in areas {
        let Some(area) = phys(start, len) else {
            continue;
        };
        for (i, candidate) in area.chunks_exact(16).enumerate() {
            if candidate.starts_with(b"RSD PTR ") {
                let found = start + 16 * i as u64;
                if phys(found, 20).is_some_and(|h| sum(h) == 0) {
                    return found;
                }
            }
        }
    }
    0
}
