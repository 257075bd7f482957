//! The decompressed kernel: checking it is an ELF64 x86-64 image and summarising what a
//! loader needs from it (entry point, `PT_LOAD` segments, the Xen PVH entry note).
//!
//! Implements the ELF-64 object file format (program header table and note layout) and the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note of xen/include/public/elfnote.h that the PVH boot ABI uses.

use thiserror::Error;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// Program header type of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program header type of a note segment.
pub const PT_NOTE: u32 = 4;
/// Xen note type carrying the 32-bit physical PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Why the decompressed payload is not a kernel we can load.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic.
    #[error("decompressed payload is not an ELF image")]
    NotElf,
    /// ELF, but not 64-bit little-endian x86-64.
    #[error(
        "decompressed payload is not ELF64 x86-64 (class {class}, data {data}, machine {machine})"
    )]
    WrongKind {
        /// `EI_CLASS`.
        class: u8,
        /// `EI_DATA`.
        data: u8,
        /// `e_machine`.
        machine: u16,
    },
    /// A header or table runs past the end of the image.
    #[error("ELF {what} runs past the end of the image")]
    Truncated {
        /// Which structure.
        what: &'static str,
    },
}

/// One `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// File offset of the segment's bytes.
    pub offset: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// Physical (load) address.
    pub paddr: u64,
    /// Bytes present in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest zero-filled).
    pub memsz: u64,
    /// `p_flags` (PF_X = 1, PF_W = 2, PF_R = 4).
    pub flags: u32,
}

/// What a loader needs to know about a vmlinux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSummary {
    /// `e_entry` (for vmlinux, the physical address of `startup_64`).
    pub entry: u64,
    /// The loadable segments, in program header order.
    pub loads: Vec<LoadSegment>,
    /// The PVH entry point from a `Xen` note of type 18, if there is one.
    pub pvh_entry: Option<u64>,
}

fn bytes<const N: usize>(
    data: &[u8],
    offset: usize,
    what: &'static str,
) -> Result<[u8; N], ElfError> {
    offset
        .checked_add(N)
        .and_then(|end| data.get(offset..end))
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Truncated { what })
}

fn u16_at(data: &[u8], offset: usize, what: &'static str) -> Result<u16, ElfError> {
    bytes(data, offset, what).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], offset: usize, what: &'static str) -> Result<u32, ElfError> {
    bytes(data, offset, what).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], offset: usize, what: &'static str) -> Result<u64, ElfError> {
    bytes(data, offset, what).map(u64::from_le_bytes)
}

fn to_usize(value: u64, what: &'static str) -> Result<usize, ElfError> {
    usize::try_from(value).map_err(|_| ElfError::Truncated { what })
}

/// Checks that `data` starts with an ELF64 little-endian x86-64 header.
pub fn check_x86_64(data: &[u8]) -> Result<(), ElfError> {
    if !data.starts_with(ELF_MAGIC) {
        return Err(ElfError::NotElf);
    }
    let class = *data.get(4).ok_or(ElfError::Truncated { what: "header" })?;
    let endian = *data.get(5).ok_or(ElfError::Truncated { what: "header" })?;
    let machine = u16_at(data, 18, "header")?;
    if class != ELFCLASS64 || endian != ELFDATA2LSB || machine != EM_X86_64 {
        return Err(ElfError::WrongKind {
            class,
            data: endian,
            machine,
        });
    }
    if data.len() < EHDR_SIZE {
        return Err(ElfError::Truncated { what: "header" });
    }
    Ok(())
}

impl ElfSummary {
    /// Checks `data` with [`check_x86_64`] and reads its entry, loads and PVH note.
    pub fn parse(data: &[u8]) -> Result<Self, ElfError> {
        check_x86_64(data)?;
        let entry = u64_at(data, 0x18, "header")?;
        let phoff = to_usize(u64_at(data, 0x20, "header")?, "program headers")?;
        let phentsize = usize::from(u16_at(data, 0x36, "header")?);
        let phnum = usize::from(u16_at(data, 0x38, "header")?);
        if phnum > 0 && phentsize < PHDR_SIZE {
            return Err(ElfError::Truncated {
                what: "program header entry",
            });
        }
        let mut loads = Vec::new();
        let mut pvh_entry = None;
        for index in 0..phnum {
            let at = index
                .checked_mul(phentsize)
                .and_then(|o| o.checked_add(phoff))
                .ok_or(ElfError::Truncated {
                    what: "program headers",
                })?;
            let what = "program headers";
            let segment = LoadSegment {
                flags: u32_at(data, at + 4, what)?,
                offset: u64_at(data, at + 8, what)?,
                vaddr: u64_at(data, at + 16, what)?,
                paddr: u64_at(data, at + 24, what)?,
                filesz: u64_at(data, at + 32, what)?,
                memsz: u64_at(data, at + 40, what)?,
            };
            match u32_at(data, at, what)? {
                PT_LOAD => loads.push(segment),
                PT_NOTE if pvh_entry.is_none() => pvh_entry = find_pvh_note(data, &segment)?,
                _ => {}
            }
        }
        Ok(Self {
            entry,
            loads,
            pvh_entry,
        })
    }
}

/// Walks the notes of one `PT_NOTE` segment looking for `Xen` / PHYS32_ENTRY.
fn find_pvh_note(data: &[u8], segment: &LoadSegment) -> Result<Option<u64>, ElfError> {
    let what = "note segment";
    let start = to_usize(segment.offset, what)?;
    let end = start
        .checked_add(to_usize(segment.filesz, what)?)
        .ok_or(ElfError::Truncated { what })?;
    let notes = data.get(start..end).ok_or(ElfError::Truncated { what })?;
    let align4 = |n: usize| n.div_ceil(4) * 4;
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = to_usize(u32_at(notes, at, what)?.into(), what)?;
        let descsz = to_usize(u32_at(notes, at + 4, what)?.into(), what)?;
        let kind = u32_at(notes, at + 8, what)?;
        let name_at = at + 12;
        let desc_at = name_at + align4(namesz);
        let desc = notes
            .get(desc_at..desc_at + descsz)
            .ok_or(ElfError::Truncated { what: "note" })?;
        let name = &notes[name_at..name_at + namesz];
        if name == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            // The ABI says 32 bits; Linux emits it as `.quad` on x86-64.
            return match *desc {
                [a, b, c, d] => Ok(Some(u32::from_le_bytes([a, b, c, d]).into())),
                [a, b, c, d, e, f, g, h] => Ok(Some(u64::from_le_bytes([a, b, c, d, e, f, g, h]))),
                _ => Err(ElfError::Truncated { what: "PVH note" }),
            };
        }
        at = desc_at + align4(descsz);
    }
    Ok(None)
}

/// Builds a minimal ELF64 x86-64 kernel image for tests: one `PT_LOAD` at physical 16 MiB and
/// a `PT_NOTE` with a GNU build-id note followed, when `pvh_entry` is set, by the PVH note.
#[cfg(test)]
pub(crate) fn synthetic_elf(pvh_entry: Option<u32>) -> Vec<u8> {
    fn note(out: &mut Vec<u8>, name: &[u8], kind: u32, desc: &[u8]) {
        for v in [name.len() as u32, desc.len() as u32, kind] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(name);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(desc);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    let mut notes = Vec::new();
    note(&mut notes, b"GNU\0", 3, &[0xab; 20]);
    if let Some(entry) = pvh_entry {
        note(
            &mut notes,
            b"Xen\0",
            XEN_ELFNOTE_PHYS32_ENTRY,
            &u64::from(entry).to_le_bytes(),
        );
    }
    let text = b"\xf4kernel text".repeat(64);
    let phoff = EHDR_SIZE as u64;
    let notes_off = phoff + 2 * PHDR_SIZE as u64;
    let text_off = notes_off + notes.len() as u64;
    let mut elf = Vec::new();
    elf.extend_from_slice(ELF_MAGIC);
    elf.extend_from_slice(&[ELFCLASS64, ELFDATA2LSB, 1, 0]);
    elf.resize(16, 0);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&EM_X86_64.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&0x0100_0000u64.to_le_bytes()); // e_entry
    elf.extend_from_slice(&phoff.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [EHDR_SIZE as u16, PHDR_SIZE as u16, 2, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    let phdr = |kind: u32, flags: u32, off: u64, vaddr: u64, paddr: u64, size: u64| {
        let mut p = Vec::new();
        p.extend_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(&flags.to_le_bytes());
        for v in [off, vaddr, paddr, size, size, 4] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    };
    let text_len = text.len() as u64;
    let notes_len = notes.len() as u64;
    elf.extend(phdr(
        PT_LOAD,
        5,
        text_off,
        0xffff_ffff_8100_0000,
        0x0100_0000,
        text_len,
    ));
    elf.extend(phdr(PT_NOTE, 4, notes_off, 0, 0, notes_len));
    elf.extend_from_slice(&notes);
    elf.extend_from_slice(&text);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_entry_loads_and_pvh_note() {
        let elf = synthetic_elf(Some(0x0100_0850));
        let summary = ElfSummary::parse(&elf).unwrap();
        assert_eq!(summary.entry, 0x0100_0000);
        assert_eq!(summary.loads.len(), 1);
        assert_eq!(summary.loads[0].paddr, 0x0100_0000);
        assert_eq!(summary.loads[0].vaddr, 0xffff_ffff_8100_0000);
        assert_eq!(summary.loads[0].flags, 5);
        assert_eq!(summary.pvh_entry, Some(0x0100_0850));
    }

    #[test]
    fn summary_without_pvh_note_has_none() {
        let summary = ElfSummary::parse(&synthetic_elf(None)).unwrap();
        assert_eq!(summary.pvh_entry, None);
    }

    #[test]
    fn four_byte_pvh_note_is_read() {
        let mut elf = synthetic_elf(Some(0x0123_4567));
        // Rewrite the note's descsz from 8 to 4: the entry stays in the low bytes.
        let pos = elf.windows(4).position(|w| w == b"Xen\0").unwrap() - 8;
        elf[pos..pos + 4].copy_from_slice(&4u32.to_le_bytes());
        let summary = ElfSummary::parse(&elf).unwrap();
        assert_eq!(summary.pvh_entry, Some(0x0123_4567));
    }

    #[test]
    fn non_elf_is_rejected() {
        assert_eq!(check_x86_64(b"MZ\x90\x00"), Err(ElfError::NotElf));
        assert_eq!(
            ElfError::NotElf.to_string(),
            "decompressed payload is not an ELF image"
        );
    }

    #[test]
    fn elf32_is_rejected() {
        let mut elf = synthetic_elf(None);
        elf[4] = 1;
        assert!(matches!(
            check_x86_64(&elf),
            Err(ElfError::WrongKind { class: 1, .. })
        ));
    }

    #[test]
    fn other_machine_is_rejected() {
        let mut elf = synthetic_elf(None);
        elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        assert!(matches!(
            check_x86_64(&elf),
            Err(ElfError::WrongKind { machine: 183, .. })
        ));
    }

    #[test]
    fn truncated_program_headers_are_rejected() {
        let elf = synthetic_elf(None);
        let err = ElfSummary::parse(&elf[..EHDR_SIZE + 10]).unwrap_err();
        assert_eq!(
            err,
            ElfError::Truncated {
                what: "program headers"
            }
        );
    }

    #[test]
    fn truncated_note_segment_is_rejected() {
        let elf = synthetic_elf(Some(1));
        let notes_end = EHDR_SIZE + 2 * PHDR_SIZE + 10;
        let err = ElfSummary::parse(&elf[..notes_end]).unwrap_err();
        assert_eq!(
            err,
            ElfError::Truncated {
                what: "note segment"
            }
        );
    }
}
