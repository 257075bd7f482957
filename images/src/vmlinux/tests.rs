//! End-to-end extraction tests on synthetic bzImages whose payload is compressed with the same
//! command-line tools (and options) the kernel build uses. A missing tool fails the test with
//! the Debian package to install; it never skips.

use super::elf::synthetic_elf;
use super::setup_header::synthetic_bzimage;
use super::*;

/// The compressor command line for each format, as in the kernel's scripts/Makefile.lib.
fn compress_args(c: Compression) -> &'static [&'static str] {
    match c {
        Compression::Gzip => &["-c", "-n", "-9"],
        Compression::Xz => &["-c", "--check=crc32", "--x86", "--lzma2=preset=6"],
        Compression::Zstd => &["-c", "-q", "-19"],
        Compression::Lz4 => &["-c", "-l", "-9"],
        Compression::Lzma => &["-c", "-9"],
        Compression::Bzip2 => &["-c", "-9"],
        Compression::Lzo => &["-c", "-9"],
    }
}

/// Compresses `data` the way the kernel build does, size trailer included.
fn kernel_payload(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut payload = match pipe_through(c.tool(), compress_args(c), data) {
        Ok(out) => out,
        Err(ToolError::Missing { tool }) => panic!(
            "`{tool}` is not installed; this test needs it: apt-get install {}",
            c.debian_package()
        ),
        Err(e) => panic!("compressing with {c} failed: {e}"),
    };
    if c != Compression::Gzip {
        payload.extend_from_slice(&(data.len() as u32).to_le_bytes());
    }
    payload
}

fn unwrap_extract(image: &[u8], c: Compression) -> Extracted {
    match extract(image) {
        Ok(extracted) => extracted,
        Err(ExtractError::Decompress(e @ DecompressError::ToolMissing { .. })) => {
            panic!("{e}; this test needs it installed")
        }
        Err(e) => panic!("extracting a {c} bzImage failed: {e}"),
    }
}

fn round_trip(c: Compression) {
    let elf = synthetic_elf(Some(0x0100_0850));
    let payload = kernel_payload(c, &elf);
    assert!(
        payload.starts_with(c.magic()),
        "{c} output has unexpected magic"
    );
    let image = synthetic_bzimage(3, 0x020f, &payload);
    let extracted = unwrap_extract(&image, c);
    assert_eq!(extracted.compression, c);
    assert_eq!(extracted.vmlinux, elf, "{c} round trip changed the ELF");
    let summary = ElfSummary::parse(&extracted.vmlinux).unwrap();
    assert_eq!(summary.pvh_entry, Some(0x0100_0850));
}

#[test]
fn gzip_payload_extracts_to_the_elf() {
    round_trip(Compression::Gzip);
}

#[test]
fn xz_payload_extracts_to_the_elf() {
    round_trip(Compression::Xz);
}

#[test]
fn zstd_payload_extracts_to_the_elf() {
    round_trip(Compression::Zstd);
}

#[test]
fn lz4_legacy_payload_extracts_to_the_elf() {
    round_trip(Compression::Lz4);
}

#[test]
fn lzma_payload_extracts_to_the_elf() {
    round_trip(Compression::Lzma);
}

#[test]
fn bzip2_payload_extracts_to_the_elf() {
    round_trip(Compression::Bzip2);
}

#[test]
fn lzo_payload_extracts_to_the_elf() {
    round_trip(Compression::Lzo);
}

#[test]
fn wrong_size_trailer_is_rejected() {
    let elf = synthetic_elf(None);
    let mut payload = kernel_payload(Compression::Zstd, &elf);
    let n = payload.len();
    payload[n - 4..].copy_from_slice(&7u32.to_le_bytes());
    let image = synthetic_bzimage(1, 0x020f, &payload);
    let err = extract(&image).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Decompress(DecompressError::SizeMismatch { expected: 7, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn corrupt_payload_reports_the_tool_failure() {
    let elf = synthetic_elf(None);
    let mut payload = kernel_payload(Compression::Xz, &elf);
    let mid = payload.len() / 2;
    payload[mid..mid + 8].copy_from_slice(&[0xff; 8]);
    let image = synthetic_bzimage(1, 0x020f, &payload);
    let err = extract(&image).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Decompress(DecompressError::Tool(ToolError::Failed { tool: "xz", .. }))
        ),
        "{err:?}"
    );
}

#[test]
fn non_elf_payload_is_rejected() {
    let payload = kernel_payload(Compression::Gzip, b"just some text, no ELF here");
    let image = synthetic_bzimage(1, 0x020f, &payload);
    let err = extract(&image).unwrap_err();
    assert_eq!(err.to_string(), "decompressed payload is not an ELF image");
}

#[test]
fn unknown_compression_is_rejected_with_its_bytes() {
    let image = synthetic_bzimage(1, 0x020f, b"\x7fELF-uncompressed");
    let err = extract(&image).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown payload compression (first bytes 7f 45 4c 46 2d 75 6e 63)"
    );
}

#[test]
fn truncated_bzimage_is_rejected() {
    let payload = kernel_payload(Compression::Gzip, &synthetic_elf(None));
    let image = synthetic_bzimage(1, 0x020f, &payload);
    let cut = 1024 + 0x40 + payload.len() / 2;
    let err = extract(&image[..cut]).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(&format!("runs past the end of the file ({cut} bytes)")),
        "{err}"
    );
}

#[test]
fn old_protocol_is_rejected() {
    let payload = kernel_payload(Compression::Gzip, &synthetic_elf(None));
    let image = synthetic_bzimage(1, 0x0206, &payload);
    let err = extract(&image).unwrap_err();
    assert_eq!(
        err.to_string(),
        "boot protocol 2.06 is too old to carry a payload (needs 2.08)"
    );
}

#[test]
fn missing_decompressor_names_the_debian_package() {
    let err = DecompressError::ToolMissing {
        tool: "lzop",
        package: "lzop",
        format: Compression::Lzo,
    };
    assert_eq!(
        err.to_string(),
        "lzo kernel needs `lzop`, which is not installed (Debian package: lzop)"
    );
}
