//! The embedded default guest: the probe from `images/probe`, built by
//! `build.rs` and linked into the binary so `flint run` boots with no files.

/// The probe's ELF image (PVH note + 64-bit Linux-boot entry).
pub static PROBE_ELF: &[u8] = include_bytes!(env!("FLINT_PROBE_ELF"));
