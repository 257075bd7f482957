//! `extract-vmlinux BZIMAGE OUT`: writes the ELF vmlinux inside an x86 bzImage to OUT and
//! prints what it found (compression, sizes, entry point, load segments, PVH entry note).
//!
//! The work is done by `images::vmlinux`; this file only handles arguments, files and output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use images::vmlinux::{self, ElfSummary, Extracted};

const USAGE: &str = "usage: extract-vmlinux BZIMAGE OUT";

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [bzimage, out] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(bzimage, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("extract-vmlinux: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Renders an error and its chain of sources on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn run(bzimage: &Path, out: &Path) -> Result<(), String> {
    let image = std::fs::read(bzimage)
        .map_err(|e| format!("reading {}: {}", bzimage.display(), chain(&e)))?;
    let extracted =
        vmlinux::extract(&image).map_err(|e| format!("{}: {}", bzimage.display(), chain(&e)))?;
    let summary = ElfSummary::parse(&extracted.vmlinux)
        .map_err(|e| format!("{}: {}", bzimage.display(), chain(&e)))?;
    write_atomically(out, &extracted.vmlinux)
        .map_err(|e| format!("writing {}: {}", out.display(), chain(&e)))?;
    report(bzimage, out, &image, &extracted, &summary);
    Ok(())
}

/// Writes `data` beside `path` and renames it into place, so OUT is never half-written.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

fn report(bzimage: &Path, out: &Path, image: &[u8], extracted: &Extracted, summary: &ElfSummary) {
    let header = &extracted.header;
    println!(
        "{}: {} bytes, boot protocol {}, setup_sects {}",
        bzimage.display(),
        image.len(),
        header.protocol,
        header.setup_sects
    );
    println!(
        "payload: {} at offset {:#x}, {} bytes",
        extracted.compression,
        header.payload.start,
        header.payload.len()
    );
    println!(
        "{}: ELF64 x86-64, {} bytes, entry {:#x}",
        out.display(),
        extracted.vmlinux.len(),
        summary.entry
    );
    for load in &summary.loads {
        println!(
            "  PT_LOAD paddr {:#010x} vaddr {:#018x} filesz {:#x} memsz {:#x} flags {}",
            load.paddr,
            load.vaddr,
            load.filesz,
            load.memsz,
            flags(load.flags)
        );
    }
    match summary.pvh_entry {
        Some(entry) => println!("  PVH entry (Xen note PHYS32_ENTRY) {entry:#x}"),
        None => println!("  no PVH entry note"),
    }
}

fn flags(bits: u32) -> String {
    [(4, 'R'), (2, 'W'), (1, 'X')]
        .iter()
        .map(|&(bit, c)| if bits & bit != 0 { c } else { '-' })
        .collect()
}
