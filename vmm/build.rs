//! Builds the probe guest (images/probe) and hands its path to the crate as
//! `FLINT_PROBE_ELF`, for `include_bytes!(env!("FLINT_PROBE_ELF"))`.
//!
//! The probe is a freestanding `#![no_std]` ELF for the host target, linked
//! at 1 MiB by images/probe/link.ld. It is compiled by invoking `rustc`
//! directly (the `RUSTC` cargo gives build scripts) with the same flags as
//! images/probe/build.sh: stable toolchain, no build-std, no extra targets.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// rustc flags for the probe (images/probe/build.sh uses the same).
const PROBE_FLAGS: &[&str] = &[
    "--edition=2021",
    "--crate-type=bin",
    "--crate-name=probe",
    "--target=x86_64-unknown-linux-gnu",
    "-Copt-level=3",
    "-Cpanic=abort",
    "-Crelocation-model=static",
    "-Ctarget-cpu=x86-64",
    "-Cdebuginfo=0",
    "-Ccodegen-units=1",
    "-Cforce-unwind-tables=no",
    "-Cstrip=debuginfo",
    "-Clink-arg=-nostdlib",
    "-Clink-arg=-static",
    "-Clink-arg=-no-pie",
    "-Clink-arg=-Wl,--build-id=none",
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let probe = manifest.join("../images/probe");
    let probe = probe.canonicalize().unwrap_or(probe);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("probe.elf");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", probe.join("src").display());
    println!("cargo:rerun-if-changed={}", probe.join("link.ld").display());
    println!("cargo:rerun-if-env-changed=RUSTC");

    build_probe(&probe, &out);
    println!("cargo:rustc-env=FLINT_PROBE_ELF={}", out.display());
}

fn build_probe(probe: &Path, out: &Path) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(&rustc)
        .args(PROBE_FLAGS)
        .arg(format!("-Clink-arg=-T{}", probe.join("link.ld").display()))
        // Panic locations read `probe/src/...` whoever builds it, wherever.
        .arg(format!("--remap-path-prefix={}=probe", probe.display()))
        .arg("-o")
        .arg(out)
        .arg(probe.join("src/main.rs"))
        // The probe is not this crate's target or profile: keep cargo's
        // per-crate flags away from it.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.to_string_lossy()));
    assert!(
        status.success(),
        "building the probe failed ({status}): see rustc's errors above"
    );
}
