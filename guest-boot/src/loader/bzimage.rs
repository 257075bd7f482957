//! bzImage kernels (Linux boot protocol 2.06+, `Documentation/arch/x86/boot.rst`):
//! setup-header checks, the protected-mode part loaded at 1 MiB, entered at
//! its 64-bit entry point (`+0x200`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::mem::size_of;

use linux_loader::bootparam::{setup_header, LOADED_HIGH, XLF_KERNEL_64};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

use super::{check_placement, copy_to_guest, KernelFormat, LoadError, LoadedKernel};
use crate::layout::{CMDLINE_START, EBDA_START, HIMEM_START};

/// Offset of the setup header in the image (and in the zero page).
pub(crate) const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// End of the room for the setup header in the zero page (`_pad7` ends here).
pub(crate) const SETUP_HEADER_MAX_END: usize = 0x290;
/// Offset of the byte giving the header's length (`0x202 + byte`).
const HEADER_LEN_BYTE: usize = 0x201;
/// End of `cmdline_size`, the last field flint reads from a 2.06 header.
const MIN_HEADER_END: usize = 0x23c;
/// Oldest boot protocol flint supports (`cmdline_size` appeared in 2.06).
const MIN_VERSION: u16 = 0x0206;
/// Protocol that added `pref_address` and `init_size`.
const VERSION_2_10: u16 = 0x020a;
/// Offset of the 64-bit entry point from the load address.
const ENTRY_64_OFFSET: u64 = 0x200;

/// Load a bzImage of `file_len` bytes at [`HIMEM_START`].
pub(super) fn load(
    mem: &GuestMemoryMmap,
    file: &mut File,
    file_len: u64,
) -> Result<LoadedKernel, LoadError> {
    let (hdr, raw) = read_header(file, file_len)?;
    validate(&hdr)?;
    let setup_sects = if hdr.setup_sects == 0 {
        4
    } else {
        hdr.setup_sects
    };
    let setup_len = (u64::from(setup_sects) + 1) * 512;
    if setup_len >= file_len {
        return Err(LoadError::Truncated {
            what: "the setup code (no protected-mode kernel follows it)".into(),
            end: setup_len + 1,
            file_len,
        });
    }
    let sys_end = setup_len + u64::from(hdr.syssize) * 16;
    if sys_end > file_len {
        return Err(LoadError::Truncated {
            what: "the protected-mode kernel (syssize)".into(),
            end: sys_end,
            file_len,
        });
    }
    let kernel_len = file_len - setup_len;
    let end = reserved_end(&hdr, kernel_len);
    check_placement(
        mem,
        "the kernel (with room to decompress)",
        HIMEM_START,
        end - HIMEM_START,
    )?;
    copy_to_guest(
        mem,
        file,
        "the protected-mode kernel",
        (setup_len, kernel_len),
        HIMEM_START,
    )?;
    let cmdline_room = (EBDA_START - CMDLINE_START) as usize;
    Ok(LoadedKernel {
        format: KernelFormat::BzImage,
        entry: GuestAddress(HIMEM_START + ENTRY_64_OFFSET),
        end: GuestAddress(end),
        initrd_addr_max: u64::from(hdr.initrd_addr_max) + 1,
        cmdline_max: (hdr.cmdline_size as usize)
            .saturating_add(1)
            .min(cmdline_room),
        setup_header: Some(raw),
    })
}

/// Read the setup header; returns it parsed and as the raw bytes
/// `0x1f1..0x202 + image[0x201]` that go into the zero page.
fn read_header(file: &mut File, file_len: u64) -> Result<(setup_header, Vec<u8>), LoadError> {
    let avail = (file_len as usize).min(SETUP_HEADER_MAX_END);
    let mut image = vec![0u8; SETUP_HEADER_MAX_END];
    file.seek(SeekFrom::Start(0)).map_err(LoadError::Read)?;
    file.read_exact(&mut image[..avail])
        .map_err(LoadError::Read)?;
    let declared_end = 0x202 + usize::from(image[HEADER_LEN_BYTE]);
    if declared_end < MIN_HEADER_END {
        return Err(LoadError::Invalid(format!(
            "the setup header is {} bytes long; boot protocol 2.06 needs at least {}",
            declared_end - SETUP_HEADER_OFFSET,
            MIN_HEADER_END - SETUP_HEADER_OFFSET
        )));
    }
    let end = declared_end.min(SETUP_HEADER_MAX_END);
    if end > avail {
        return Err(LoadError::Truncated {
            what: "the setup header".into(),
            end: end as u64,
            file_len,
        });
    }
    let mut hdr = setup_header::default();
    let fixed = SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size_of::<setup_header>();
    hdr.as_mut_slice().copy_from_slice(&image[fixed]);
    // Fields past the declared end are not part of this kernel's header.
    let declared_in_struct = end - SETUP_HEADER_OFFSET;
    if declared_in_struct < size_of::<setup_header>() {
        hdr.as_mut_slice()[declared_in_struct..].fill(0);
    }
    Ok((hdr, image[SETUP_HEADER_OFFSET..end].to_vec()))
}

/// Check the protocol version and the flags flint's 64-bit entry needs.
fn validate(hdr: &setup_header) -> Result<(), LoadError> {
    let version = hdr.version;
    if version < MIN_VERSION {
        return Err(LoadError::Invalid(format!(
            "boot protocol {}.{:02} is too old; flint needs 2.06 or newer",
            version >> 8,
            version & 0xff
        )));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(LoadError::Invalid(
            "the kernel is not a bzImage (LOADED_HIGH is clear in loadflags)".into(),
        ));
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LoadError::Invalid(
            "the kernel has no 64-bit entry point (XLF_KERNEL_64 is clear in xloadflags)".into(),
        ));
    }
    Ok(())
}

/// End of the memory the kernel uses while starting: its image, or the
/// decompression buffer of `init_size` bytes at the address the 64-bit entry
/// code picks (the load address aligned to `kernel_alignment` when
/// relocatable, but never below `pref_address`), whichever ends higher.
fn reserved_end(hdr: &setup_header, kernel_len: u64) -> u64 {
    let load_end = HIMEM_START + kernel_len;
    if hdr.version < VERSION_2_10 {
        return load_end;
    }
    let align = u64::from(hdr.kernel_alignment);
    let mut base = HIMEM_START;
    if hdr.relocatable_kernel != 0 && align.is_power_of_two() {
        base = base.next_multiple_of(align);
    }
    let base = base.max(hdr.pref_address);
    load_end.max(base.saturating_add(u64::from(hdr.init_size)))
}
