//! Just enough AML (ACPI 6.5 §20) to find virtio-mmio devices: walks the
//! DSDT's term lists through Scope and Device, reads `Name(_HID, ...)` and
//! `Name(_CRS, ResourceTemplate)` of each Device, and skips the other named
//! objects a device tree holds (methods, regions, fields, packages...). An
//! opcode it does not know makes it resynchronise on the next `DeviceOp`.
//! Every read is bounds-checked against the table.

/// A device whose `_HID` is "LNRO0005".
pub struct Device {
    /// Memory32Fixed (or address-space descriptor) base.
    pub addr: u64,
    /// Its length.
    pub size: u64,
    /// First interrupt of an Extended Interrupt or IRQ descriptor.
    pub irq: u32,
}

const VIRTIO_HID: &[u8] = b"LNRO0005";
const MAX_DEPTH: u32 = 16;

/// Calls `found` for each virtio-mmio device in `aml`, in table order.
pub fn virtio_devices(aml: &[u8], found: &mut dyn FnMut(Device)) {
    let mut walker = Walker { aml, found };
    walker.term_list(0, aml.len(), 0);
}

/// What a device's direct children say.
#[derive(Default)]
struct Ids {
    virtio: bool,
    crs: Option<(usize, usize)>,
}

struct Walker<'a, 'f> {
    aml: &'a [u8],
    found: &'f mut dyn FnMut(Device),
}

impl Walker<'_, '_> {
    fn byte(&self, at: usize) -> Option<u8> {
        self.aml.get(at).copied()
    }

    /// Walks `[pos, end)`, recursing into Scopes and Devices; returns what
    /// the `Name` objects directly in this list declare.
    fn term_list(&mut self, mut pos: usize, end: usize, depth: u32) -> Ids {
        let mut ids = Ids::default();
        while pos < end {
            match self.term(pos, end, depth, &mut ids) {
                Some(next) if next > pos && next <= end => pos = next,
                _ => match self.find_device(pos + 1, end) {
                    Some(next) => pos = next,
                    None => break,
                },
            }
        }
        ids
    }

    /// One term at `pos`: returns where the next begins.
    fn term(&mut self, pos: usize, end: usize, depth: u32, ids: &mut Ids) -> Option<usize> {
        match self.byte(pos)? {
            0x10 => {
                // ScopeOp PkgLength NameString TermList
                let (body_end, name) = self.package(pos + 1, end)?;
                let body = self.name_string(name)?.0;
                if depth < MAX_DEPTH {
                    self.term_list(body, body_end, depth + 1);
                }
                Some(body_end)
            }
            0x08 => {
                // NameOp NameString DataRefObject
                let (data, seg) = self.name_string(pos + 1)?;
                let next = self.data_object(data, end)?;
                match &seg {
                    b"_HID" => ids.virtio |= self.is_virtio_hid(data),
                    b"_CRS" => ids.crs = Some((data, next)),
                    _ => {}
                }
                Some(next)
            }
            0x14 | 0xa0 | 0xa1 | 0xa2 => Some(self.package(pos + 1, end)?.0), // Method, If, Else, While
            0x06 => self.name_string(self.name_string(pos + 1)?.0).map(|n| n.0), // Alias
            0x5b => self.ext_term(pos, end, depth),
            _ => None,
        }
    }

    fn ext_term(&mut self, pos: usize, end: usize, depth: u32) -> Option<usize> {
        match self.byte(pos + 1)? {
            0x82 => {
                // DeviceOp PkgLength NameString TermList
                let (body_end, name) = self.package(pos + 2, end)?;
                let body = self.name_string(name)?.0;
                if depth < MAX_DEPTH {
                    self.device(body, body_end, depth + 1);
                }
                Some(body_end)
            }
            // Field, Processor, PowerRes, ThermalZone, IndexField, BankField
            0x81 | 0x83 | 0x84 | 0x85 | 0x86 | 0x87 => Some(self.package(pos + 2, end)?.0),
            0x80 => {
                // OpRegion NameString RegionSpace RegionOffset RegionLen
                let space = self.name_string(pos + 2)?.0;
                let offset = self.data_object(space + 1, end)?;
                self.data_object(offset, end)
            }
            0x01 => Some(self.name_string(pos + 2)?.0 + 1), // Mutex NameString SyncFlags
            0x02 => Some(self.name_string(pos + 2)?.0),     // Event NameString
            _ => None,
        }
    }

    /// A Device body: devices nested in it are reported first (none are in
    /// practice), then this one if it is virtio-mmio.
    fn device(&mut self, body: usize, end: usize, depth: u32) {
        let ids = self.term_list(body, end, depth);
        if !ids.virtio {
            return;
        }
        let mut dev = Device {
            addr: 0,
            size: 0,
            irq: 0,
        };
        if let Some((start, stop)) = ids.crs {
            self.resources(start, stop, &mut dev);
        }
        (self.found)(dev);
    }

    /// PkgLength at `at` (§20.2.4): (end of the package, first byte after the
    /// encoding), the end clamped to `limit`'s check.
    fn package(&self, at: usize, limit: usize) -> Option<(usize, usize)> {
        let lead = self.byte(at)?;
        let extra = usize::from(lead >> 6);
        let mut len = if extra == 0 {
            usize::from(lead & 0x3f)
        } else {
            usize::from(lead & 0x0f)
        };
        for i in 0..extra {
            len |= usize::from(self.byte(at + 1 + i)?) << (4 + 8 * i);
        }
        let end = at.checked_add(len)?;
        (end <= limit && len > extra).then_some((end, at + 1 + extra))
    }

    /// NameString at `at`: (first byte after it, its last NameSeg).
    fn name_string(&self, mut at: usize) -> Option<(usize, [u8; 4])> {
        while matches!(self.byte(at)?, b'\\' | b'^') {
            at += 1;
        }
        let count = match self.byte(at)? {
            0x00 => return Some((at + 1, [0; 4])),
            0x2e => {
                at += 1;
                2
            }
            0x2f => {
                at += 2;
                usize::from(self.byte(at - 1)?)
            }
            b'A'..=b'Z' | b'_' => 1,
            _ => return None,
        };
        let end = at + 4 * count;
        let last = self.aml.get(end.checked_sub(4)?..end)?;
        Some((end, [last[0], last[1], last[2], last[3]]))
    }

    /// A data object (integer, string, buffer, package) at `at`: where it ends.
    fn data_object(&self, at: usize, limit: usize) -> Option<usize> {
        let next = match self.byte(at)? {
            0x00 | 0x01 | 0xff => at + 1,
            0x0a => at + 2,
            0x0b => at + 3,
            0x0c => at + 5,
            0x0e => at + 9,
            0x0d => at + 1 + self.aml.get(at + 1..limit)?.iter().position(|&b| b == 0)? + 1,
            0x11 | 0x12 | 0x13 => self.package(at + 1, limit)?.0,
            0x5b if self.byte(at + 1)? == 0x30 => at + 2, // Revision
            _ => return None,
        };
        (next <= limit).then_some(next)
    }

    /// Whether the `_HID` data at `at` is "LNRO0005" (a string, or an
    /// EISA-id integer decoding to it: impossible for an 8-character id,
    /// but integer ids are decoded and compared all the same).
    fn is_virtio_hid(&self, at: usize) -> bool {
        match self.byte(at) {
            Some(0x0d) => self
                .aml
                .get(at + 1..)
                .is_some_and(|s| s.starts_with(VIRTIO_HID) && s.get(VIRTIO_HID.len()) == Some(&0)),
            Some(0x0c) => self.aml.get(at + 1..at + 5).is_some_and(|b| {
                eisa_id(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).as_slice() == VIRTIO_HID
            }),
            _ => false,
        }
    }

    /// Reads the resource descriptors of the `_CRS` buffer at `[start, stop)`.
    fn resources(&self, start: usize, stop: usize, dev: &mut Device) {
        // BufferOp PkgLength BufferSize ByteList
        let Some((end, size_at)) = self.package(start + 1, stop) else {
            return;
        };
        let Some(mut at) = self.data_object(size_at, end) else {
            return;
        };
        let (mut have_mem, mut have_irq) = (false, false);
        while let Some(tag) = self.byte(at).filter(|_| at < end) {
            let (body, len) = if tag & 0x80 != 0 {
                let Some(len) = self.aml.get(at + 1..at + 3) else {
                    return;
                };
                (at + 3, usize::from(u16::from_le_bytes([len[0], len[1]])))
            } else {
                (at + 1, usize::from(tag & 7))
            };
            let Some(d) = self.aml.get(body..body + len).filter(|_| body + len <= end) else {
                return;
            };
            let le = |off: usize, w: usize| crate::mem::le(d, off, w);
            let mem = match tag {
                0x86 => le(1, 4).zip(le(5, 4)), // Memory32Fixed
                0x87 if d.first() == Some(&0) => le(7, 4).zip(le(19, 4)), // DWord memory
                0x8a if d.first() == Some(&0) => le(11, 8).zip(le(35, 8)), // QWord memory
                _ => None,
            };
            if let (Some((addr, size)), false) = (mem, have_mem) {
                (dev.addr, dev.size, have_mem) = (addr, size, true);
            }
            let irq = match tag {
                0x89 if d.get(1).is_some_and(|&n| n > 0) => le(2, 4),
                0x22 | 0x23 => le(0, 2)
                    .filter(|&m| m != 0)
                    .map(|m| u64::from(m.trailing_zeros())),
                0x79 => return,
                _ => None,
            };
            if let (Some(irq), false) = (irq, have_irq) {
                (dev.irq, have_irq) = (irq as u32, true);
            }
            at = body + len;
        }
    }

    /// The next `DeviceOp` in `[from, end)`, to resynchronise after an
    /// opcode the walker does not know.
    fn find_device(&self, from: usize, end: usize) -> Option<usize> {
        let window = self.aml.get(from..end)?;
        let i = window.windows(2).position(|w| w == [0x5b, 0x82])?;
        Some(from + i)
    }
}

/// Decodes a compressed EISA id (e.g. 0x0105d041 -> "PNP0501").
fn eisa_id(raw: u32) -> [u8; 7] {
    let v = raw.swap_bytes();
    let letter = |shift: u32| b'@' + ((v >> shift) & 0x1f) as u8;
    let hex = |shift: u32| b"0123456789ABCDEF"[((v >> shift) & 0xf) as usize];
    [
        letter(26),
        letter(21),
        letter(16),
        hex(12),
        hex(8),
        hex(4),
        hex(0),
    ]
}
