//! The kernel command line: defaults, user additions, the virtio-mmio device
//! list for kernels without ACPI, and the length check against the kernel's limit.

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
}

/// flint's default command line, before the user's `--cmdline` is appended.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
