//! Test support: guest memory, unlinked temporary files, and tiny synthetic
//! kernels (ELF64 with or without a PVH note, a fake bzImage) built in code.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{ram_ranges, MIB};

/// Guest memory shaped like a VM of `mib` MiB.
pub(crate) fn guest_mem(mib: u64) -> GuestMemoryMmap {
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(mib * MIB)
        .into_iter()
        .map(|(a, l)| (a, l as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).expect("test guest memory")
}

/// Read `len` bytes of guest memory at `addr`.
pub(crate) fn read_mem(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr))
        .expect("read guest memory");
    buf
}

/// A unique path under the system temporary directory.
pub(crate) fn temp_path(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("guest-boot-{tag}-{}-{n}", std::process::id()))
}

/// An already-unlinked file holding `bytes`, positioned at its start.
pub(crate) fn file_with(bytes: &[u8]) -> File {
    let path = temp_path("file");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create temp file");
    fs::remove_file(&path).expect("unlink temp file");
    file.write_all(bytes).expect("write temp file");
    file.rewind().expect("rewind temp file");
    file
}

/// One loadable segment of a synthetic ELF.
pub(crate) struct Seg {
    /// Physical load address.
    pub paddr: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// File contents.
    pub data: Vec<u8>,
    /// Memory size (>= data.len()).
    pub memsz: u64,
}

impl Seg {
    /// A segment whose virtual and physical addresses are equal.
    pub fn identity(paddr: u64, data: Vec<u8>) -> Self {
        let memsz = data.len() as u64;
        Seg {
            paddr,
            vaddr: paddr,
            data,
            memsz,
        }
    }
}

/// One ELF note: name (NUL included), type, descriptor.
pub(crate) struct Note {
    pub name: Vec<u8>,
    pub kind: u32,
    pub desc: Vec<u8>,
}

impl Note {
    /// `XEN_ELFNOTE_PHYS32_ENTRY` with a 4-byte descriptor.
    pub fn pvh32(entry: u32) -> Self {
        Note {
            name: b"Xen\0".to_vec(),
            kind: 18,
            desc: entry.to_le_bytes().to_vec(),
        }
    }
}

fn pad4(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(4), 0);
}

/// Encode `notes` as the contents of one PT_NOTE segment.
pub(crate) fn encode_notes(notes: &[Note]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in notes {
        out.extend_from_slice(&(n.name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&n.kind.to_le_bytes());
        out.extend_from_slice(&n.name);
        pad4(&mut out);
        out.extend_from_slice(&n.desc);
        pad4(&mut out);
    }
    out
}

/// A minimal x86-64 ELF executable: program headers for `segs` (PT_LOAD)
/// and, when `notes` is not empty, one PT_NOTE segment.
pub(crate) fn build_elf(entry: u64, segs: &[Seg], notes: &[Note]) -> Vec<u8> {
    let note_bytes = encode_notes(notes);
    let phnum = segs.len() + usize::from(!notes.is_empty());
    let mut data_off = 64 + 56 * phnum as u64;
    let mut phdrs = Vec::new();
    let mut body = Vec::new();
    let mut push_phdr = |ptype: u32, off: u64, p: (u64, u64), filesz: u64, memsz: u64| {
        phdrs.extend_from_slice(&ptype.to_le_bytes());
        phdrs.extend_from_slice(&5u32.to_le_bytes()); // R+X
        for v in [off, p.1, p.0, filesz, memsz, 0x10] {
            phdrs.extend_from_slice(&v.to_le_bytes());
        }
    };
    if !notes.is_empty() {
        let n = note_bytes.len() as u64;
        push_phdr(4, data_off, (0, 0), n, n);
        body.extend_from_slice(&note_bytes);
        data_off += n;
    }
    for s in segs {
        push_phdr(
            1,
            data_off,
            (s.paddr, s.vaddr),
            s.data.len() as u64,
            s.memsz,
        );
        body.extend_from_slice(&s.data);
        data_off += s.data.len() as u64;
    }
    let mut out = elf_header(entry, phnum as u16);
    out.extend_from_slice(&phdrs);
    out.extend_from_slice(&body);
    out
}

/// The 64-byte ELF64 header.
fn elf_header(entry: u64, phnum: u16) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    h.resize(16, 0);
    h.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&entry.to_le_bytes());
    h.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&phnum.to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h
}

/// Knobs of a fake bzImage.
#[derive(Clone)]
pub(crate) struct BzOpts {
    pub version: u16,
    pub loadflags: u8,
    pub xloadflags: u16,
    pub setup_sects: u8,
    pub initrd_addr_max: u32,
    pub cmdline_size: u32,
    pub kernel_alignment: u32,
    pub relocatable: u8,
    pub pref_address: u64,
    pub init_size: u32,
    pub payload: Vec<u8>,
}

impl Default for BzOpts {
    fn default() -> Self {
        BzOpts {
            version: 0x020f,
            loadflags: 0x01,
            xloadflags: 0x03,
            setup_sects: 3,
            initrd_addr_max: 0x7fff_ffff,
            cmdline_size: 2047,
            kernel_alignment: 0x20_0000,
            relocatable: 1,
            pref_address: 0x100_0000,
            init_size: 0x80_0000,
            payload: (0..4096u32).map(|i| (i % 251) as u8).collect(),
        }
    }
}

/// A bzImage with a real-looking setup header and `payload` as its
/// protected-mode part.
pub(crate) fn build_bzimage(o: &BzOpts) -> Vec<u8> {
    let sects = if o.setup_sects == 0 { 4 } else { o.setup_sects };
    let mut img = vec![0u8; (usize::from(sects) + 1) * 512];
    let mut put = |off: usize, bytes: &[u8]| img[off..off + bytes.len()].copy_from_slice(bytes);
    put(0x1f1, &[o.setup_sects]);
    put(0x1f4, &(o.payload.len().div_ceil(16) as u32).to_le_bytes());
    put(0x1fe, &0xaa55u16.to_le_bytes());
    put(0x200, &[0xeb, 0x6a]); // jmp; header ends at 0x26c
    put(0x202, b"HdrS");
    put(0x206, &o.version.to_le_bytes());
    put(0x211, &[o.loadflags]);
    put(0x214, &0x10_0000u32.to_le_bytes());
    put(0x22c, &o.initrd_addr_max.to_le_bytes());
    put(0x230, &o.kernel_alignment.to_le_bytes());
    put(0x234, &[o.relocatable]);
    put(0x236, &o.xloadflags.to_le_bytes());
    put(0x238, &o.cmdline_size.to_le_bytes());
    put(0x258, &o.pref_address.to_le_bytes());
    put(0x260, &o.init_size.to_le_bytes());
    img.extend_from_slice(&o.payload);
    img.resize(img.len().next_multiple_of(16), 0);
    img
}
