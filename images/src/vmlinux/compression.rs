//! The compressed kernel inside a bzImage: which format it is, and decompressing it through
//! the Debian command-line tool for that format.
//!
//! The formats are the kernel's `CONFIG_KERNEL_*` choices (arch/x86/boot/compressed/Makefile).
//! Every format except gzip is written as the compressed stream followed by a 4-byte
//! little-endian decompressed size (`size_append` in scripts/Makefile.lib); gzip's own
//! trailer already ends with that size (ISIZE). The tools reject those 4 bytes as trailing
//! garbage, so they are cut off before decompressing and checked against the output.

use std::io::{self, Read, Write};
use std::process::{Command, ExitStatus, Stdio};

use thiserror::Error;

/// A kernel payload compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`CONFIG_KERNEL_GZIP`).
    Gzip,
    /// xz (`CONFIG_KERNEL_XZ`).
    Xz,
    /// zstd (`CONFIG_KERNEL_ZSTD`).
    Zstd,
    /// lz4 legacy frame format (`CONFIG_KERNEL_LZ4`).
    Lz4,
    /// lzma "alone" format (`CONFIG_KERNEL_LZMA`).
    Lzma,
    /// bzip2 (`CONFIG_KERNEL_BZIP2`).
    Bzip2,
    /// lzop (`CONFIG_KERNEL_LZO`).
    Lzo,
}

impl Compression {
    /// Every format, in the order they are tried.
    pub const ALL: [Compression; 7] = [
        Self::Gzip,
        Self::Xz,
        Self::Zstd,
        Self::Lz4,
        Self::Lzma,
        Self::Bzip2,
        Self::Lzo,
    ];

    /// The leading bytes that identify the format.
    pub fn magic(self) -> &'static [u8] {
        match self {
            Self::Gzip => &[0x1f, 0x8b],
            Self::Xz => &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
            Self::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
            Self::Lz4 => &[0x02, 0x21, 0x4c, 0x18],
            Self::Lzma => &[0x5d, 0x00, 0x00],
            Self::Bzip2 => &[0x42, 0x5a, 0x68],
            Self::Lzo => &[0x89, 0x4c, 0x5a, 0x4f],
        }
    }

    /// The command that decompresses the format (`TOOL -dc`).
    pub fn tool(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
            Self::Lzma => "lzma",
            Self::Bzip2 => "bzip2",
            Self::Lzo => "lzop",
        }
    }

    /// The Debian package that ships [`Self::tool`].
    pub fn debian_package(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz | Self::Lzma => "xz-utils",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
            Self::Bzip2 => "bzip2",
            Self::Lzo => "lzop",
        }
    }

    /// Whether the kernel appends a 4-byte size after the compressed stream.
    fn has_size_trailer(self) -> bool {
        self != Self::Gzip
    }

    /// Identifies the format of `payload` by its magic bytes.
    pub fn detect(payload: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| payload.starts_with(c.magic()))
    }

    /// Decompresses a kernel payload (stream plus size trailer) through [`Self::tool`] and
    /// checks the output length against the trailer.
    pub fn decompress(self, payload: &[u8]) -> Result<Vec<u8>, DecompressError> {
        if payload.len() < 4 {
            return Err(DecompressError::NoSizeTrailer(payload.len()));
        }
        let (stream, trailer) = payload.split_at(payload.len() - 4);
        let stream = if self.has_size_trailer() {
            stream
        } else {
            payload
        };
        let expected = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let output = pipe_through(self.tool(), &["-dc"], stream).map_err(|e| match e {
            ToolError::Missing { tool } => DecompressError::ToolMissing {
                tool,
                package: self.debian_package(),
                format: self,
            },
            other => DecompressError::Tool(other),
        })?;
        // The trailer holds the size modulo 2^32, as gzip's ISIZE does.
        let actual = output.len() as u64;
        if actual & u64::from(u32::MAX) != u64::from(expected) {
            return Err(DecompressError::SizeMismatch { actual, expected });
        }
        Ok(output)
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Lzo => "lzo",
            other => other.tool(),
        })
    }
}

/// Why decompressing a payload failed.
#[derive(Debug, Error)]
pub enum DecompressError {
    /// The payload cannot even hold the size trailer.
    #[error("payload of {0} bytes is too short to end in a 4-byte size")]
    NoSizeTrailer(usize),
    /// The decompressor is not installed.
    #[error("{format} kernel needs `{tool}`, which is not installed (Debian package: {package})")]
    ToolMissing {
        /// The missing command.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
        /// The payload's format.
        format: Compression,
    },
    /// The decompressor could not be run or rejected the data.
    #[error(transparent)]
    Tool(ToolError),
    /// The output length disagrees with the size trailer.
    #[error("decompressed payload is {actual} bytes but its size trailer says {expected}")]
    SizeMismatch {
        /// Bytes the tool produced.
        actual: u64,
        /// The trailer's value.
        expected: u32,
    },
}

/// Why running a filter command failed.
#[derive(Debug, Error)]
pub enum ToolError {
    /// The command is not on `PATH`.
    #[error("`{tool}` is not installed")]
    Missing {
        /// The command.
        tool: &'static str,
    },
    /// Spawning or talking to the command failed.
    #[error("running `{tool}` failed")]
    Io {
        /// The command.
        tool: &'static str,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The command exited successfully but left part of its input unread.
    #[error("`{tool}` exited before reading all of its input")]
    InputUnread {
        /// The command.
        tool: &'static str,
    },
    /// The command exited unsuccessfully.
    #[error("`{tool}` failed ({status}): {stderr}")]
    Failed {
        /// The command.
        tool: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// Runs `tool args…` with `input` on its standard input and returns its standard output.
pub fn pipe_through(tool: &'static str, args: &[&str], input: &[u8]) -> Result<Vec<u8>, ToolError> {
    let io_err = |source| ToolError::Io { tool, source };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ToolError::Missing { tool },
            _ => io_err(e),
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io_err(io::ErrorKind::BrokenPipe.into()))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io_err(io::ErrorKind::BrokenPipe.into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| io_err(io::ErrorKind::BrokenPipe.into()))?;
    let (written, stderr_text, output) = std::thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(input));
        let err_reader = s.spawn(move || {
            let mut text = Vec::new();
            stderr.read_to_end(&mut text).map(|_| text)
        });
        let mut output = Vec::new();
        let read = stdout.read_to_end(&mut output).map(|_| output);
        let written = writer.join().unwrap_or(Ok(()));
        let stderr_text = err_reader.join().unwrap_or_else(|_| Ok(Vec::new()));
        (written, stderr_text, read)
    });
    let status = child.wait().map_err(io_err)?;
    let stderr_text = String::from_utf8_lossy(&stderr_text.map_err(io_err)?)
        .trim()
        .to_string();
    if !status.success() {
        return Err(ToolError::Failed {
            tool,
            status,
            stderr: stderr_text,
        });
    }
    // A tool that exits successfully without reading all input has ignored some of it.
    written.map_err(|_| ToolError::InputUnread { tool })?;
    output.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_recognises_every_magic() {
        for c in Compression::ALL {
            let mut payload = c.magic().to_vec();
            payload.extend_from_slice(b"rest");
            assert_eq!(Compression::detect(&payload), Some(c), "{c}");
        }
    }

    #[test]
    fn detect_rejects_unknown_bytes() {
        assert_eq!(Compression::detect(b"\x7fELF"), None);
        assert_eq!(Compression::detect(b""), None);
        assert_eq!(Compression::detect(&[0x1f]), None);
    }

    #[test]
    fn missing_tool_is_reported_as_missing() {
        let err = pipe_through("flint-no-such-tool", &[], b"").unwrap_err();
        assert!(matches!(err, ToolError::Missing { .. }), "{err:?}");
    }

    #[test]
    fn failing_tool_reports_its_stderr() {
        let err = pipe_through("sh", &["-c", "echo broken >&2; exit 3"], b"x").unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }

    #[test]
    fn pipe_through_streams_large_input_without_deadlock() {
        let input = vec![0x5au8; 8 << 20];
        let output = pipe_through("cat", &[], &input).unwrap();
        assert_eq!(output, input);
    }

    #[test]
    fn too_short_payload_has_no_size_trailer() {
        let err = Compression::Gzip.decompress(&[0x1f, 0x8b]).unwrap_err();
        assert!(matches!(err, DecompressError::NoSizeTrailer(2)), "{err:?}");
    }

    #[test]
    fn display_names_the_format() {
        assert_eq!(Compression::Lzo.to_string(), "lzo");
        assert_eq!(Compression::Xz.to_string(), "xz");
    }
}
