//! The kernel command line: defaults, user additions, the virtio-mmio device
//! list for kernels without ACPI, and the length check against the kernel's limit.
//!
//! The device list uses the syntax of Linux's `virtio_mmio.device=` module
//! parameter (`drivers/virtio/virtio_mmio.c`): `<size>@<base>:<irq>`.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{VirtioMmioSlot, CMDLINE_START, EBDA_START};

/// Why a command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    /// Longer than the kernel accepts.
    #[error(
        "{len} bytes is longer than the kernel accepts ({max} bytes including the terminating NUL)"
    )]
    TooLong {
        /// Length with NUL.
        len: usize,
        /// The kernel's limit.
        max: usize,
    },
    /// Contains a NUL byte.
    #[error("contains a NUL byte")]
    Nul,
    /// Writing it into guest memory failed.
    #[error("cannot write it into guest memory")]
    Memory(#[source] GuestMemoryError),
}

/// flint's default command line, before the user's `--cmdline` is appended.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

/// Room for the command line at [`CMDLINE_START`], NUL included.
pub const CMDLINE_AREA: usize = (EBDA_START - CMDLINE_START) as usize;

/// The `virtio_mmio.device=4K@0x<addr>:<irq>` parameter for one device.
pub fn virtio_mmio_param(slot: &VirtioMmioSlot) -> String {
    let size = match slot.size {
        s if s % (1 << 20) == 0 => format!("{}M", s >> 20),
        s if s % (1 << 10) == 0 => format!("{}K", s >> 10),
        s => s.to_string(),
    };
    format!("virtio_mmio.device={size}@{:#x}:{}", slot.addr, slot.irq)
}

/// Build the final command line: [`DEFAULT_CMDLINE`], then `user` (trimmed;
/// left out when empty), then one [`virtio_mmio_param`] per entry of
/// `devices` (pass an empty slice when the devices are described by ACPI).
///
/// Fails when the result plus its terminating NUL is longer than `max`, or
/// when `user` holds a NUL byte.
pub fn build_cmdline(
    user: &str,
    devices: &[VirtioMmioSlot],
    max: usize,
) -> Result<String, CmdlineError> {
    if user.contains('\0') {
        return Err(CmdlineError::Nul);
    }
    let mut line = String::from(DEFAULT_CMDLINE);
    let user = user.trim();
    if !user.is_empty() {
        line.push(' ');
        line.push_str(user);
    }
    for slot in devices {
        line.push(' ');
        line.push_str(&virtio_mmio_param(slot));
    }
    check_len(&line, max)?;
    Ok(line)
}

/// Fail when `line` and its NUL do not fit in `max` bytes.
pub fn check_len(line: &str, max: usize) -> Result<(), CmdlineError> {
    let len = line.len() + 1;
    if len > max {
        return Err(CmdlineError::TooLong { len, max });
    }
    Ok(())
}

/// Write `line` NUL-terminated at [`CMDLINE_START`]; returns that address.
pub fn write_cmdline(mem: &GuestMemoryMmap, line: &str) -> Result<GuestAddress, CmdlineError> {
    if line.contains('\0') {
        return Err(CmdlineError::Nul);
    }
    check_len(line, CMDLINE_AREA)?;
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(0);
    let addr = GuestAddress(CMDLINE_START);
    mem.write_slice(&bytes, addr)
        .map_err(CmdlineError::Memory)?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{virtio_mmio_slot, CMDLINE_MAX};
    use crate::testutil::{guest_mem, read_mem};

    #[test]
    fn default_alone_when_user_part_is_blank() {
        assert_eq!(
            build_cmdline("  ", &[], CMDLINE_MAX).unwrap(),
            DEFAULT_CMDLINE
        );
    }

    #[test]
    fn user_part_follows_the_defaults() {
        assert_eq!(
            build_cmdline(" root=/dev/vda quiet ", &[], CMDLINE_MAX).unwrap(),
            "console=ttyS0 reboot=k panic=-1 root=/dev/vda quiet"
        );
    }

    #[test]
    fn devices_are_appended_in_lowercase_hex() {
        let slots = [virtio_mmio_slot(0).unwrap(), virtio_mmio_slot(11).unwrap()];
        assert_eq!(
            build_cmdline("quiet", &slots, CMDLINE_MAX).unwrap(),
            "console=ttyS0 reboot=k panic=-1 quiet \
             virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd000b000:16"
        );
    }

    #[test]
    fn line_that_exactly_fits_with_its_nul_is_accepted() {
        let max = DEFAULT_CMDLINE.len() + 1;
        assert!(build_cmdline("", &[], max).is_ok());
        let e = build_cmdline("", &[], max - 1).unwrap_err();
        assert!(matches!(e, CmdlineError::TooLong { len, max: m } if len == max && m == max - 1));
    }

    #[test]
    fn too_long_line_reports_length_and_limit() {
        let e = build_cmdline(&"x".repeat(3000), &[], CMDLINE_MAX).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} bytes is longer than the kernel accepts (2048 bytes including the terminating NUL)",
                DEFAULT_CMDLINE.len() + 1 + 3000 + 1
            )
        );
    }

    #[test]
    fn nul_in_user_part_is_rejected() {
        assert!(matches!(
            build_cmdline("a\0b", &[], CMDLINE_MAX),
            Err(CmdlineError::Nul)
        ));
    }

    #[test]
    fn written_line_is_nul_terminated_at_cmdline_start() {
        let mem = guest_mem(16);
        let addr = write_cmdline(&mem, "console=ttyS0 quiet").unwrap();
        assert_eq!(addr, GuestAddress(CMDLINE_START));
        assert_eq!(read_mem(&mem, CMDLINE_START, 20), b"console=ttyS0 quiet\0");
    }

    #[test]
    fn line_larger_than_the_cmdline_area_is_not_written() {
        let mem = guest_mem(16);
        let line = "x".repeat(CMDLINE_AREA);
        assert!(matches!(
            write_cmdline(&mem, &line),
            Err(CmdlineError::TooLong { .. })
        ));
    }
}
