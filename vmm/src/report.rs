//! The boot report: CLOCK_MONOTONIC timestamps of each boot phase and VM
//! exit counts, recorded lock-free from any thread and written as JSON.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::exit::VmOutcome;

/// A point in the VM's life that the report timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `main` entered.
    MainEntered,
    /// KVM VM created.
    VmCreated,
    /// Guest RAM mapped and registered.
    MemoryReady,
    /// Kernel, initrd, boot info and ACPI written.
    KernelLoaded,
    /// The event loop's system-call filter installed (with `--seccomp
    /// off`, the point where it would be); the boot vCPU may start.
    SeccompInstalled,
    /// First `KVM_RUN` issued.
    FirstKvmRun,
    /// First byte the guest wrote to the UART.
    FirstSerialByte,
    /// The guest wrote 123 to port 0x3f0.
    BootComplete,
    /// The VM stopped.
    GuestExit,
}

const PHASES: [(Phase, &str); 9] = [
    (Phase::MainEntered, "main_entered"),
    (Phase::VmCreated, "vm_created"),
    (Phase::MemoryReady, "memory_ready"),
    (Phase::KernelLoaded, "kernel_loaded"),
    (Phase::SeccompInstalled, "seccomp_installed"),
    (Phase::FirstKvmRun, "first_kvm_run"),
    (Phase::FirstSerialByte, "first_serial_byte"),
    (Phase::BootComplete, "boot_complete"),
    (Phase::GuestExit, "guest_exit"),
];

/// A kind of VM exit the report counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Port write.
    IoOut,
    /// Port read.
    IoIn,
    /// MMIO read.
    MmioRead,
    /// MMIO write.
    MmioWrite,
    /// `KVM_RUN` interrupted by a signal.
    Interrupted,
    /// Anything else.
    Other,
}

const EXIT_KINDS: [(ExitKind, &str); 6] = [
    (ExitKind::IoOut, "io_out"),
    (ExitKind::IoIn, "io_in"),
    (ExitKind::MmioRead, "mmio_read"),
    (ExitKind::MmioWrite, "mmio_write"),
    (ExitKind::Interrupted, "interrupted"),
    (ExitKind::Other, "other"),
];

/// Most clock samples a guest can leave in the report.
pub const MAX_CLOCK_SAMPLES: usize = 64;

/// Timestamps and counters shared by every thread of one VM.
#[derive(Debug, Default)]
pub struct BootTimeline {
    stamps: [AtomicU64; PHASES.len()],
    exits: [AtomicU64; EXIT_KINDS.len()],
    /// (guest clock, host CLOCK_MONOTONIC) pairs from the clock-sample window.
    clock_samples: Mutex<Vec<(u64, u64)>>,
}

impl BootTimeline {
    /// Record `phase` at `ns` unless it was already recorded (first wins).
    pub fn mark_at(&self, phase: Phase, ns: u64) {
        let slot = &self.stamps[phase as usize];
        let _ = slot.compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Record `phase` now unless it was already recorded.
    pub fn mark(&self, phase: Phase) {
        if self.get(phase).is_none() {
            self.mark_at(phase, crate::time::monotonic_ns());
        }
    }

    /// When `phase` happened, if it did.
    pub fn get(&self, phase: Phase) -> Option<u64> {
        match self.stamps[phase as usize].load(Ordering::Relaxed) {
            0 => None,
            ns => Some(ns),
        }
    }

    /// Count one VM exit of `kind`.
    pub fn count_exit(&self, kind: ExitKind) {
        self.exits[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Record a guest clock reading taken at host time `host_ns` (the
    /// first [`MAX_CLOCK_SAMPLES`] are kept).
    pub fn add_clock_sample(&self, guest_ns: u64, host_ns: u64) {
        let mut samples = self.clock_samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < MAX_CLOCK_SAMPLES {
            samples.push((guest_ns, host_ns));
        }
    }

    /// The clock samples so far.
    pub fn clock_samples(&self) -> Vec<(u64, u64)> {
        self.clock_samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many exits of `kind` were counted.
    pub fn exits(&self, kind: ExitKind) -> u64 {
        self.exits[kind as usize].load(Ordering::Relaxed)
    }

    /// The report as one line of JSON.
    pub fn to_json(&self, info: &ReportInfo<'_>) -> String {
        let mut out = String::with_capacity(1024);
        let _ = write!(
            out,
            "{{\"flint_version\":\"{}\",\"kernel\":{},\"kernel_format\":\"{}\",\"outcome\":\"{}\",\"exit_code\":{},\"clock\":\"CLOCK_MONOTONIC\",\"timestamps_ns\":{{",
            env!("CARGO_PKG_VERSION"),
            json_string(info.kernel),
            info.kernel_format,
            info.outcome.name(),
            info.outcome.exit_code()
        );
        let mut first = true;
        for (phase, name) in PHASES {
            if let Some(ns) = self.get(phase) {
                let sep = if first { "" } else { "," };
                let _ = write!(out, "{sep}\"{name}\":{ns}");
                first = false;
            }
        }
        out.push_str("},\"since_main_us\":{");
        let start = self.get(Phase::MainEntered).unwrap_or(0);
        let mut first = true;
        for (phase, name) in PHASES {
            if let Some(ns) = self.get(phase) {
                let sep = if first { "" } else { "," };
                let us = ns.saturating_sub(start) as f64 / 1000.0;
                let _ = write!(out, "{sep}\"{name}\":{us:.1}");
                first = false;
            }
        }
        out.push_str("},\"vm_exits\":{");
        for (i, (kind, name)) in EXIT_KINDS.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{}", self.exits(*kind));
        }
        out.push_str("},\"clock_samples\":[");
        for (i, (guest, host)) in self.clock_samples().iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{{\"guest_ns\":{guest},\"host_ns\":{host}}}");
        }
        out.push_str("],\"disks\":[");
        for (i, d) in info.disks.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                out,
                "{sep}{{\"path\":{},\"bounced\":{},\"merged\":{},\"io_errors\":{}}}",
                json_string(&d.path),
                d.bounced,
                d.merged,
                d.io_errors
            );
        }
        let _ = write!(out, "],\"peak_rss_kib\":{}}}", peak_rss_kib());
        out
    }
}

/// What the report says besides the timeline.
pub struct ReportInfo<'a> {
    /// Kernel path, or "embedded probe".
    pub kernel: &'a str,
    /// How it was entered.
    pub kernel_format: &'a str,
    /// How the VM ended.
    pub outcome: &'a VmOutcome,
    /// Per-disk counters, in bus order.
    pub disks: &'a [DiskStats],
}

/// What a virtio-blk disk counted during the run.
#[derive(Clone, Debug, Default)]
pub struct DiskStats {
    /// The `--disk` path.
    pub path: String,
    /// Requests staged through the bounce buffer (misaligned for O_DIRECT).
    pub bounced: u64,
    /// Host I/O failures answered with IOERR.
    pub io_errors: u64,
    /// Requests merged into the transfer of the one before them.
    pub merged: u64,
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Peak resident set size of this process (getrusage's ru_maxrss).
pub fn peak_rss_kib() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_SELF always exists.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_mark_wins() {
        let t = BootTimeline::default();
        t.mark_at(Phase::BootComplete, 10);
        t.mark_at(Phase::BootComplete, 20);
        assert_eq!(t.get(Phase::BootComplete), Some(10));
        assert_eq!(t.get(Phase::GuestExit), None);
    }

    #[test]
    fn json_lists_recorded_phases_and_exit_counts() {
        let t = BootTimeline::default();
        t.mark_at(Phase::MainEntered, 1_000);
        t.mark_at(Phase::GuestExit, 3_000);
        t.count_exit(ExitKind::IoOut);
        t.count_exit(ExitKind::IoOut);
        let outcome = VmOutcome::GuestStatus(7);
        let json = t.to_json(&ReportInfo {
            kernel: "a\"b",
            kernel_format: "pvh-elf",
            outcome: &outcome,
            disks: &[DiskStats {
                path: "/dev/loop9".into(),
                bounced: 3,
                io_errors: 0,
                merged: 5,
            }],
        });
        assert!(
            json.contains(
                "\"disks\":[{\"path\":\"/dev/loop9\",\"bounced\":3,\"merged\":5,\"io_errors\":0}]"
            ),
            "{json}"
        );
        assert!(json.contains("\"main_entered\":1000"), "{json}");
        assert!(json.contains("\"guest_exit\":2.0"), "{json}");
        assert!(!json.contains("boot_complete"), "{json}");
        assert!(json.contains("\"io_out\":2"), "{json}");
        assert!(json.contains("\"exit_code\":7"), "{json}");
        assert!(json.contains("\"kernel\":\"a\\\"b\""), "{json}");
    }
}
