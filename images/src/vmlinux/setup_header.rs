//! The x86 boot setup header of a bzImage: just enough of it to find the compressed kernel.
//!
//! Implements the field layout of the Linux x86 boot protocol
//! (Documentation/arch/x86/boot.rst, "The real-mode kernel header"): the boot sector
//! signature, the `HdrS` magic, the protocol version, `setup_sects`, and the 2.08+
//! `payload_offset` / `payload_length` fields.

use std::ops::Range;

use thiserror::Error;

/// Offset of `setup_sects` (u8): number of 512-byte setup sectors; 0 means 4.
const SETUP_SECTS: usize = 0x1f1;
/// Offset of `boot_flag` (u16), which must be 0xAA55.
const BOOT_FLAG: usize = 0x1fe;
/// Offset of `header` (u32), which must read "HdrS".
const HEADER_MAGIC: usize = 0x202;
/// Offset of `version` (u16): the boot protocol version, major in the high byte.
const VERSION: usize = 0x206;
/// Offset of `payload_offset` (u32), relative to the protected-mode code.
const PAYLOAD_OFFSET: usize = 0x248;
/// Offset of `payload_length` (u32).
const PAYLOAD_LENGTH: usize = 0x24c;
/// The header must reach past `payload_length`.
const HEADER_END: usize = PAYLOAD_LENGTH + 4;

/// The oldest boot protocol that has `payload_offset` and `payload_length`.
pub const MIN_PAYLOAD_PROTOCOL: u16 = 0x0208;

/// A boot protocol version, shown as the boot documentation writes it ("2.08").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol(pub u16);

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 >> 8, self.0 & 0xff)
    }
}

/// Why a file is not a bzImage we can take the payload from.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The file ends before the setup header does.
    #[error("not a bzImage: {0} bytes is too short to hold a boot setup header")]
    TooShort(usize),
    /// The boot sector signature is missing.
    #[error("not a bzImage: no boot sector signature 0xAA55 at 0x1fe")]
    NoBootFlag,
    /// The `HdrS` magic is missing.
    #[error("not a bzImage: no HdrS signature at 0x202")]
    NoHdrS,
    /// The protocol predates the payload fields.
    #[error("boot protocol {0} is too old to carry a payload (needs 2.08)")]
    OldProtocol(Protocol),
    /// `payload_offset` / `payload_length` point outside the file.
    #[error(
        "payload at offset {offset} of length {length} runs past the end of the file ({file_len} bytes)"
    )]
    PayloadOutOfBounds {
        /// File offset of the payload.
        offset: u64,
        /// Declared payload length.
        length: u64,
        /// Size of the file.
        file_len: usize,
    },
    /// The payload is declared empty.
    #[error("payload length is 0")]
    EmptyPayload,
}

/// What the setup header says about the compressed kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version.
    pub protocol: Protocol,
    /// Number of setup sectors after the boot sector (0 already turned into 4).
    pub setup_sects: u8,
    /// File range of the compressed payload.
    pub payload: Range<usize>,
}

fn u16_at(image: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([image[offset], image[offset + 1]])
}

fn u32_at(image: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&image[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

impl SetupHeader {
    /// Parses the setup header of `image` and checks that the payload lies inside it.
    pub fn parse(image: &[u8]) -> Result<Self, HeaderError> {
        if image.len() < HEADER_END {
            return Err(HeaderError::TooShort(image.len()));
        }
        if u16_at(image, BOOT_FLAG) != 0xaa55 {
            return Err(HeaderError::NoBootFlag);
        }
        if &image[HEADER_MAGIC..HEADER_MAGIC + 4] != b"HdrS" {
            return Err(HeaderError::NoHdrS);
        }
        let protocol = Protocol(u16_at(image, VERSION));
        if protocol.0 < MIN_PAYLOAD_PROTOCOL {
            return Err(HeaderError::OldProtocol(protocol));
        }
        let setup_sects = match image[SETUP_SECTS] {
            0 => 4,
            n => n,
        };
        let pm_start = (u64::from(setup_sects) + 1) * 512;
        let offset = pm_start + u64::from(u32_at(image, PAYLOAD_OFFSET));
        let length = u64::from(u32_at(image, PAYLOAD_LENGTH));
        if length == 0 {
            return Err(HeaderError::EmptyPayload);
        }
        let out_of_bounds = HeaderError::PayloadOutOfBounds {
            offset,
            length,
            file_len: image.len(),
        };
        let start = usize::try_from(offset).map_err(|_| out_of_bounds.clone())?;
        let end = usize::try_from(offset + length).map_err(|_| out_of_bounds.clone())?;
        if end > image.len() {
            return Err(out_of_bounds);
        }
        Ok(Self {
            protocol,
            setup_sects,
            payload: start..end,
        })
    }
}

/// Builds a synthetic bzImage around `payload`, for tests in this crate.
#[cfg(test)]
pub(crate) fn synthetic_bzimage(setup_sects: u8, protocol: u16, payload: &[u8]) -> Vec<u8> {
    let effective = if setup_sects == 0 { 4 } else { setup_sects };
    let pm_start = (usize::from(effective) + 1) * 512;
    // Some "decompressor code" before the payload, as in a real image.
    let payload_offset = 0x40usize;
    let mut image = vec![0u8; pm_start + payload_offset];
    image[SETUP_SECTS] = setup_sects;
    image[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
    image[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
    image[VERSION..VERSION + 2].copy_from_slice(&protocol.to_le_bytes());
    let offset = u32::try_from(payload_offset).unwrap();
    image[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&offset.to_le_bytes());
    let length = u32::try_from(payload.len()).unwrap();
    image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&length.to_le_bytes());
    image.extend_from_slice(payload);
    // Trailing bytes after the payload, as in a real image.
    image.extend_from_slice(&[0xcc; 32]);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_finds_payload_after_setup_sectors() {
        let image = synthetic_bzimage(3, 0x020f, b"PAYLOAD");
        let header = SetupHeader::parse(&image).unwrap();
        assert_eq!(header.protocol, Protocol(0x020f));
        assert_eq!(header.setup_sects, 3);
        assert_eq!(&image[header.payload], b"PAYLOAD");
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let image = synthetic_bzimage(0, 0x0208, b"XY");
        let header = SetupHeader::parse(&image).unwrap();
        assert_eq!(header.setup_sects, 4);
        assert_eq!(header.payload.start, 5 * 512 + 0x40);
        assert_eq!(&image[header.payload], b"XY");
    }

    #[test]
    fn short_file_is_rejected() {
        let err = SetupHeader::parse(&[0u8; 0x200]).unwrap_err();
        assert_eq!(err, HeaderError::TooShort(0x200));
    }

    #[test]
    fn missing_boot_flag_is_rejected() {
        let mut image = synthetic_bzimage(1, 0x020f, b"P");
        image[BOOT_FLAG] = 0;
        let err = SetupHeader::parse(&image).unwrap_err();
        assert_eq!(err, HeaderError::NoBootFlag);
    }

    #[test]
    fn missing_hdrs_is_rejected_with_its_offset() {
        let mut image = synthetic_bzimage(1, 0x020f, b"P");
        image[HEADER_MAGIC] = b'X';
        let err = SetupHeader::parse(&image).unwrap_err();
        assert_eq!(err, HeaderError::NoHdrS);
        assert_eq!(err.to_string(), "not a bzImage: no HdrS signature at 0x202");
    }

    #[test]
    fn protocol_before_2_08_is_rejected() {
        let image = synthetic_bzimage(1, 0x0204, b"P");
        let err = SetupHeader::parse(&image).unwrap_err();
        assert_eq!(err, HeaderError::OldProtocol(Protocol(0x0204)));
        assert_eq!(
            err.to_string(),
            "boot protocol 2.04 is too old to carry a payload (needs 2.08)"
        );
    }

    #[test]
    fn truncated_payload_is_rejected() {
        let mut image = synthetic_bzimage(1, 0x020f, &[7u8; 100]);
        let pm_start = 2 * 512;
        image.truncate(pm_start + 0x40 + 50);
        let err = SetupHeader::parse(&image).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "payload at offset {} of length 100 runs past the end of the file ({} bytes)",
                pm_start + 0x40,
                image.len()
            )
        );
    }

    #[test]
    fn huge_payload_length_does_not_overflow() {
        let mut image = synthetic_bzimage(1, 0x020f, b"P");
        image[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = SetupHeader::parse(&image).unwrap_err();
        assert!(matches!(err, HeaderError::PayloadOutOfBounds { .. }));
    }

    #[test]
    fn empty_payload_is_rejected() {
        let image = synthetic_bzimage(1, 0x020f, b"");
        let err = SetupHeader::parse(&image).unwrap_err();
        assert_eq!(err, HeaderError::EmptyPayload);
    }
}
