//! ELF64 kernels: plain vmlinux (64-bit Linux boot protocol at `e_entry`)
//! and ELF images carrying a Xen `XEN_ELFNOTE_PHYS32_ENTRY` note (PVH entry,
//! see xen/include/public/elfnote.h and docs/misc/pvh.pandoc).
//!
//! Segments are loaded at their physical addresses (`p_paddr`). A vmlinux's
//! `e_entry` is virtual (0xffffffff81xxxxxx); it is translated to physical
//! through the segment whose `p_vaddr` range contains it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::mem::size_of;

use linux_loader::elf::{
    Elf64_Ehdr, Elf64_Phdr, EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_DYN, ET_EXEC,
    PT_LOAD, PT_NOTE,
};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

use super::{check_placement, copy_to_guest, KernelFormat, LoadError, LoadedKernel};
use crate::guestio;
use crate::layout::{CMDLINE_MAX, HIGH_RAM_START, MMIO_HOLE_START};

/// Note type of the PVH 32-bit physical entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Largest note segment flint reads.
const MAX_NOTE_SEGMENT: u64 = 1 << 20;
/// Size of an ELF note header (namesz, descsz, type).
const NOTE_HEADER_LEN: usize = 12;

/// Load an ELF64 kernel of `file_len` bytes.
pub(super) fn load(
    mem: &GuestMemoryMmap,
    file: &mut File,
    file_len: u64,
    ram: super::GuestRam,
) -> Result<LoadedKernel, LoadError> {
    let ehdr = read_ehdr(file, file_len)?;
    let phdrs = read_phdrs(file, &ehdr, file_len)?;
    validate_segments(mem, &phdrs, file_len)?;
    let pvh_entry = find_pvh_entry(file, &phdrs, file_len)?;
    let (format, entry) = match pvh_entry {
        Some(entry) => {
            check_entry_is_loaded("PVH entry point", entry, &phdrs)?;
            (KernelFormat::PvhElf, entry)
        }
        None => (KernelFormat::Elf64, physical_entry(ehdr.e_entry, &phdrs)?),
    };
    let end = load_segments(mem, file, &phdrs, ram)?;
    Ok(LoadedKernel {
        format,
        entry: GuestAddress(entry),
        end: GuestAddress(end),
        initrd_addr_max: MMIO_HOLE_START,
        cmdline_max: CMDLINE_MAX,
        setup_header: None,
    })
}

/// Read and check the ELF header.
fn read_ehdr(file: &mut File, file_len: u64) -> Result<Elf64_Ehdr, LoadError> {
    let len = size_of::<Elf64_Ehdr>() as u64;
    if file_len < len {
        return Err(LoadError::Truncated {
            what: "the ELF header".into(),
            end: len,
            file_len,
        });
    }
    let mut ehdr = Elf64_Ehdr::default();
    file.rewind().map_err(LoadError::Read)?;
    file.read_exact(ehdr.as_mut_slice())
        .map_err(LoadError::Read)?;
    let invalid = |msg: String| Err(LoadError::Invalid(msg));
    if ehdr.e_ident[EI_CLASS] != ELFCLASS64 {
        return invalid("a 32-bit ELF image; flint needs an x86-64 ELF64 kernel".into());
    }
    if ehdr.e_ident[EI_DATA] != ELFDATA2LSB {
        return invalid("a big-endian ELF image; flint needs a little-endian x86-64 kernel".into());
    }
    if ehdr.e_machine != EM_X86_64 {
        let machine = ehdr.e_machine;
        return invalid(format!("ELF machine {machine} is not x86-64 ({EM_X86_64})"));
    }
    if ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN {
        let kind = ehdr.e_type;
        return invalid(format!("ELF type {kind} is not an executable"));
    }
    if usize::from(ehdr.e_phentsize) != size_of::<Elf64_Phdr>() {
        let size = ehdr.e_phentsize;
        return invalid(format!("ELF program header size {size} is not 56"));
    }
    if ehdr.e_phnum == 0 {
        return invalid("the ELF image has no program headers".into());
    }
    Ok(ehdr)
}

/// Read the program header table.
fn read_phdrs(
    file: &mut File,
    ehdr: &Elf64_Ehdr,
    file_len: u64,
) -> Result<Vec<Elf64_Phdr>, LoadError> {
    let table_len = u64::from(ehdr.e_phnum) * size_of::<Elf64_Phdr>() as u64;
    let end = ehdr.e_phoff.saturating_add(table_len);
    if end > file_len {
        return Err(LoadError::Truncated {
            what: "the program header table".into(),
            end,
            file_len,
        });
    }
    file.seek(SeekFrom::Start(ehdr.e_phoff))
        .map_err(LoadError::Read)?;
    let mut phdrs = vec![Elf64_Phdr::default(); usize::from(ehdr.e_phnum)];
    for phdr in &mut phdrs {
        file.read_exact(phdr.as_mut_slice())
            .map_err(LoadError::Read)?;
    }
    Ok(phdrs)
}

/// The `PT_LOAD` segments with something to load, with their table index.
fn loadable(phdrs: &[Elf64_Phdr]) -> impl Iterator<Item = (usize, &Elf64_Phdr)> {
    phdrs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p_type == PT_LOAD && p.p_memsz > 0)
}

/// Check every loadable segment against the file and guest RAM.
fn validate_segments(
    mem: &GuestMemoryMmap,
    phdrs: &[Elf64_Phdr],
    file_len: u64,
) -> Result<(), LoadError> {
    if loadable(phdrs).next().is_none() {
        return Err(LoadError::Invalid(
            "the ELF image has no loadable segments".into(),
        ));
    }
    for (i, p) in loadable(phdrs) {
        let what = format!("segment {i}");
        if p.p_filesz > p.p_memsz {
            let (filesz, memsz) = (p.p_filesz, p.p_memsz);
            return Err(LoadError::Invalid(format!(
                "{what} has a file size of {filesz} bytes, more than its memory size of {memsz}"
            )));
        }
        let end = p.p_offset.saturating_add(p.p_filesz);
        if p.p_filesz > 0 && end > file_len {
            return Err(LoadError::Truncated {
                what,
                end,
                file_len,
            });
        }
        check_placement(mem, &what, p.p_paddr, p.p_memsz)?;
    }
    Ok(())
}

/// The PVH entry point from the first `XEN_ELFNOTE_PHYS32_ENTRY` note, if any.
fn find_pvh_entry(
    file: &mut File,
    phdrs: &[Elf64_Phdr],
    file_len: u64,
) -> Result<Option<u64>, LoadError> {
    for (i, p) in phdrs.iter().enumerate() {
        if p.p_type != PT_NOTE || p.p_filesz == 0 {
            continue;
        }
        let end = p.p_offset.saturating_add(p.p_filesz);
        if end > file_len {
            return Err(LoadError::Truncated {
                what: format!("note segment {i}"),
                end,
                file_len,
            });
        }
        if p.p_filesz > MAX_NOTE_SEGMENT {
            let size = p.p_filesz;
            return Err(LoadError::Invalid(format!(
                "note segment {i} is {size} bytes; flint reads at most {MAX_NOTE_SEGMENT}"
            )));
        }
        let mut notes = vec![0u8; p.p_filesz as usize];
        file.seek(SeekFrom::Start(p.p_offset))
            .map_err(LoadError::Read)?;
        file.read_exact(&mut notes).map_err(LoadError::Read)?;
        if let Some(entry) = parse_notes(&notes, i)? {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Walk the notes of one note segment, looking for the PVH entry note.
fn parse_notes(notes: &[u8], segment: usize) -> Result<Option<u64>, LoadError> {
    let word =
        |at: usize| u32::from_le_bytes([notes[at], notes[at + 1], notes[at + 2], notes[at + 3]]);
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    let malformed = || {
        LoadError::Invalid(format!(
            "malformed ELF note in segment {segment}: a note runs past the end of the segment"
        ))
    };
    let mut off = 0usize;
    while off + NOTE_HEADER_LEN <= notes.len() {
        let (namesz, descsz, kind) = (word(off) as usize, word(off + 4) as usize, word(off + 8));
        let name_start = off + NOTE_HEADER_LEN;
        let name_end = name_start.checked_add(namesz).ok_or_else(malformed)?;
        let desc_start = align4(name_end).ok_or_else(malformed)?;
        let desc_end = desc_start.checked_add(descsz).ok_or_else(malformed)?;
        if desc_end > notes.len() {
            return Err(malformed());
        }
        let name = &notes[name_start..name_end];
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && (name == b"Xen\0" || name == b"Xen") {
            let desc = &notes[desc_start..desc_end];
            return match descsz {
                4 => Ok(Some(u64::from(word(desc_start)))),
                8 => Ok(Some(u64::from_le_bytes(
                    desc.try_into().map_err(|_| malformed())?,
                ))),
                n => Err(LoadError::Invalid(format!(
                    "the PVH entry note in segment {segment} holds {n} bytes; expected 4 or 8"
                ))),
            };
        }
        off = align4(desc_end).ok_or_else(malformed)?;
    }
    Ok(None)
}

/// Fail unless `addr` lies inside a loaded segment's physical range.
fn check_entry_is_loaded(what: &str, addr: u64, phdrs: &[Elf64_Phdr]) -> Result<(), LoadError> {
    if addr >= HIGH_RAM_START {
        return Err(LoadError::Invalid(format!(
            "{what} {addr:#x} is above 4 GiB; it must be a 32-bit physical address"
        )));
    }
    if loadable(phdrs).any(|(_, p)| in_range(addr, p.p_paddr, p.p_memsz)) {
        Ok(())
    } else {
        Err(LoadError::Invalid(format!(
            "{what} {addr:#x} is outside every loadable segment"
        )))
    }
}

/// `e_entry` as a physical address: as is when a segment's physical range
/// holds it, else translated through the segment whose virtual range does.
fn physical_entry(e_entry: u64, phdrs: &[Elf64_Phdr]) -> Result<u64, LoadError> {
    if loadable(phdrs).any(|(_, p)| in_range(e_entry, p.p_paddr, p.p_memsz)) {
        return Ok(e_entry);
    }
    loadable(phdrs)
        .find(|(_, p)| in_range(e_entry, p.p_vaddr, p.p_memsz))
        .map(|(_, p)| p.p_paddr + (e_entry - p.p_vaddr))
        .ok_or_else(|| {
            LoadError::Invalid(format!(
                "entry point {e_entry:#x} is outside every loadable segment"
            ))
        })
}

/// Whether `addr` is in `[start, start + len)`.
fn in_range(addr: u64, start: u64, len: u64) -> bool {
    addr >= start && addr - start < len
}

/// Copy every loadable segment and zero its tail unless `ram` is already zero; returns the
/// end of the highest one.
fn load_segments(
    mem: &GuestMemoryMmap,
    file: &mut File,
    phdrs: &[Elf64_Phdr],
    ram: super::GuestRam,
) -> Result<u64, LoadError> {
    let mut end = 0;
    for (i, p) in loadable(phdrs) {
        let what = format!("segment {i}");
        if p.p_filesz > 0 {
            copy_to_guest(mem, file, &what, (p.p_offset, p.p_filesz), p.p_paddr)?;
        }
        if ram == super::GuestRam::Dirty {
            let bss = GuestAddress(p.p_paddr + p.p_filesz);
            guestio::zero_fill(mem, bss, p.p_memsz - p.p_filesz).map_err(|e| LoadError::Copy {
                what: what.clone(),
                source: Box::new(e),
            })?;
        }
        end = end.max(p.p_paddr + p.p_memsz);
    }
    Ok(end)
}
