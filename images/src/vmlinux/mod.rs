//! Extracting the ELF `vmlinux` from an x86 bzImage without the kernel's
//! scripts/extract-vmlinux: read the setup header for the payload, detect its compression by
//! magic, decompress it through the Debian tool, and check the result is ELF64 x86-64.

mod compression;
mod elf;
mod setup_header;

#[cfg(test)]
mod tests;

pub use compression::{pipe_through, Compression, DecompressError, ToolError};
pub use elf::{
    check_x86_64, ElfError, ElfSummary, LoadSegment, PT_LOAD, PT_NOTE, XEN_ELFNOTE_PHYS32_ENTRY,
};
pub use setup_header::{HeaderError, Protocol, SetupHeader, MIN_PAYLOAD_PROTOCOL};

use thiserror::Error;

/// Why a vmlinux could not be extracted.
#[derive(Debug, Error)]
pub enum ExtractError {
    /// The setup header is missing, too old, or points outside the file.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The payload's first bytes match no known compression.
    #[error("unknown payload compression (first bytes {0})")]
    UnknownCompression(String),
    /// Decompression failed.
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    /// The decompressed payload is not an ELF64 x86-64 image.
    #[error(transparent)]
    Elf(#[from] ElfError),
}

/// A decompressed kernel and how it was found.
#[derive(Debug)]
pub struct Extracted {
    /// The bzImage's setup header.
    pub header: SetupHeader,
    /// The payload's compression.
    pub compression: Compression,
    /// The ELF vmlinux.
    pub vmlinux: Vec<u8>,
}

/// Extracts the ELF vmlinux from the bytes of a bzImage.
pub fn extract(bzimage: &[u8]) -> Result<Extracted, ExtractError> {
    let header = SetupHeader::parse(bzimage)?;
    let payload = &bzimage[header.payload.clone()];
    let compression = Compression::detect(payload).ok_or_else(|| {
        let shown = &payload[..payload.len().min(8)];
        let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
        ExtractError::UnknownCompression(hex.join(" "))
    })?;
    let vmlinux = compression.decompress(payload)?;
    elf::check_x86_64(&vmlinux)?;
    Ok(Extracted {
        header,
        compression,
        vmlinux,
    })
}
