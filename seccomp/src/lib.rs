//! seccomp: flint's per-thread system-call filters, one allow-list per
//! thread kind (the event loop, the vCPUs, the transient `cpuid` thread),
//! compiled to classic BPF with seccompiler and installed by `vmm` on each
//! thread once its setup is done and before the guest runs.
//!
//! The lists are data, in [`filters`]; ioctl request numbers are constants
//! in [`ioctls`]. This crate must not depend on `vmm`, KVM or the devices:
//! it only describes filters and installs them on the calling thread.

#![deny(missing_docs)]

pub mod filters;
pub mod ioctls;
pub mod rules;

use std::fmt;
use std::str::FromStr;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use rules::Allow;

/// What a filter does with a system call that is not on its list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Kill the whole process (SECCOMP_RET_KILL_PROCESS): it dies of SIGSYS.
    #[default]
    Kill,
    /// Allow the call and log it to the kernel log (SECCOMP_RET_LOG), to
    /// find a missing entry.
    Log,
    /// Install no filter.
    Off,
}

/// `--seccomp` named no mode.
#[derive(Debug, thiserror::Error)]
#[error("unknown seccomp mode {0:?} (kill, log, off)")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        match s {
            "kill" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            other => Err(UnknownMode(other.to_string())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Kill => "kill",
            Mode::Log => "log",
            Mode::Off => "off",
        })
    }
}

/// The kinds of thread flint runs, each with its own allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread once it is the event loop (and the teardown reaper,
    /// which inherits its filter).
    EventLoop,
    /// A vCPU thread.
    Vcpu,
    /// The thread that fetches KVM's supported CPUID.
    Cpuid,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 3] = [ThreadKind::EventLoop, ThreadKind::Vcpu, ThreadKind::Cpuid];

    /// The kind's allow-list.
    pub fn allow_list(self) -> Vec<Allow> {
        match self {
            ThreadKind::EventLoop => filters::EVENT_LOOP.to_vec(),
            ThreadKind::Vcpu => [filters::VCPU, filters::THREAD_END, filters::FATAL].concat(),
            ThreadKind::Cpuid => [filters::CPUID, filters::THREAD_END, filters::FATAL].concat(),
        }
    }

    /// The kind's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::EventLoop => "event-loop",
            ThreadKind::Vcpu => "vCPU",
            ThreadKind::Cpuid => "cpuid",
        }
    }
}

/// Why a filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// seccompiler refused the list.
    #[error("cannot compile the {kind} seccomp filter")]
    Compile {
        /// The thread kind.
        kind: &'static str,
        /// The cause.
        #[source]
        source: seccompiler::BackendError,
    },
    /// prctl(PR_SET_NO_NEW_PRIVS) or seccomp(2) failed.
    #[error("cannot install the {kind} seccomp filter")]
    Install {
        /// The thread kind.
        kind: &'static str,
        /// The cause.
        #[source]
        source: seccompiler::Error,
    },
}

/// A compiled filter for one thread kind, ready to install on any number
/// of threads of that kind.
#[derive(Clone, Debug)]
pub struct Filter {
    kind: ThreadKind,
    /// None with [`Mode::Off`].
    program: Option<BpfProgram>,
}

impl Filter {
    /// Compile `kind`'s list for `mode`.
    pub fn new(kind: ThreadKind, mode: Mode) -> Result<Self, Error> {
        let mismatch = match mode {
            Mode::Kill => SeccompAction::KillProcess,
            Mode::Log => SeccompAction::Log,
            Mode::Off => {
                return Ok(Filter {
                    kind,
                    program: None,
                })
            }
        };
        let compile = || -> Result<BpfProgram, seccompiler::BackendError> {
            let rules = rules::rule_map(&kind.allow_list());
            let filter =
                SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)?;
            filter.try_into()
        };
        let program = compile().map_err(|source| Error::Compile {
            kind: kind.name(),
            source,
        })?;
        Ok(Filter {
            kind,
            program: Some(program),
        })
    }

    /// The BPF instructions (none with [`Mode::Off`]).
    pub fn len(&self) -> usize {
        self.program.as_ref().map_or(0, Vec::len)
    }

    /// Whether the filter is empty ([`Mode::Off`]).
    pub fn is_empty(&self) -> bool {
        self.program.is_none()
    }

    /// Install the filter on the calling thread (and on the threads and
    /// processes it starts afterwards, which inherit it). A no-op with
    /// [`Mode::Off`]. It cannot be removed.
    pub fn install(&self) -> Result<(), Error> {
        let Some(program) = &self.program else {
            return Ok(());
        };
        seccompiler::apply_filter(program).map_err(|source| Error::Install {
            kind: self.kind.name(),
            source,
        })
    }
}

#[cfg(test)]
mod tests;
