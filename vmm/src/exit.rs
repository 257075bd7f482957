//! How a VM ended, and the process exit code that says so.
//!
//! | code  | meaning |
//! |-------|---------|
//! | 0-122 | the guest's status byte from port 0xf4 (values above 122 are clamped to 122) |
//! | 0     | the guest powered off or reset without writing a status |
//! | 123   | the guest crashed: triple fault, KVM internal or emulation error |
//! | 124   | `--timeout` expired |
//! | 125   | flint could not run the VM |

/// Exit code for a guest crash.
pub const EXIT_CRASH: u8 = 123;
/// Exit code for `--timeout`.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when flint itself cannot run.
pub const EXIT_FLINT_ERROR: u8 = 125;
/// Largest guest status passed through unchanged.
pub const MAX_GUEST_STATUS: u8 = 122;

/// `e`'s message followed by its causes, each once (a message that
/// already quotes its cause does not repeat it).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmOutcome {
    /// The guest wrote this byte to the exit port.
    GuestStatus(u8),
    /// ACPI power-off.
    PowerOff,
    /// i8042 or KVM system reset.
    Reset,
    /// The guest crashed; the text describes how.
    Crash(String),
    /// `--timeout` expired.
    Timeout,
    /// A host-side failure while running (e.g. KVM_RUN failed).
    HostError(String),
}

impl VmOutcome {
    /// The process exit code for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            VmOutcome::GuestStatus(s) => (*s).min(MAX_GUEST_STATUS),
            VmOutcome::PowerOff | VmOutcome::Reset => 0,
            VmOutcome::Crash(_) => EXIT_CRASH,
            VmOutcome::Timeout => EXIT_TIMEOUT,
            VmOutcome::HostError(_) => EXIT_FLINT_ERROR,
        }
    }

    /// A short name for the boot report.
    pub fn name(&self) -> &'static str {
        match self {
            VmOutcome::GuestStatus(_) => "guest-status",
            VmOutcome::PowerOff => "power-off",
            VmOutcome::Reset => "reset",
            VmOutcome::Crash(_) => "crash",
            VmOutcome::Timeout => "timeout",
            VmOutcome::HostError(_) => "host-error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_status_passes_through_up_to_122() {
        for s in [0u8, 7, 122] {
            assert_eq!(VmOutcome::GuestStatus(s).exit_code(), s);
        }
    }

    #[test]
    fn guest_status_above_122_is_clamped_not_confused_with_flint_codes() {
        assert_eq!(VmOutcome::GuestStatus(123).exit_code(), 122);
        assert_eq!(VmOutcome::GuestStatus(255).exit_code(), 122);
    }

    #[test]
    fn power_off_and_reset_are_success() {
        assert_eq!(VmOutcome::PowerOff.exit_code(), 0);
        assert_eq!(VmOutcome::Reset.exit_code(), 0);
    }

    #[test]
    fn crash_timeout_and_host_error_have_reserved_codes() {
        assert_eq!(VmOutcome::Crash("x".into()).exit_code(), 123);
        assert_eq!(VmOutcome::Timeout.exit_code(), 124);
        assert_eq!(VmOutcome::HostError("x".into()).exit_code(), 125);
    }
}
