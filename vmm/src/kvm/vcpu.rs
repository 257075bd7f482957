//! The vCPU thread: run the guest, dispatch its port and MMIO exits to the
//! buses, turn crashes into an outcome with a register dump.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};

use guest_boot::cpuid::Feature;
use guest_boot::entry::EntryState;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::coalesced::{self, CoalescedRing, SharedRing};
use super::{cpuid, regs};

use crate::control::VmControl;
use crate::devices::Bus;
use crate::exit::VmOutcome;
use crate::report::{ExitKind, Phase};

/// What every vCPU thread of one VM shares.
pub struct VcpuShared {
    /// The KVM system fd.
    pub kvm: Arc<Kvm>,
    /// The VM.
    pub vm: Arc<VmFd>,
    /// Coalesced writes, mapped by the boot vCPU.
    pub ring: SharedRing,
    /// KVM's supported CPUID, being fetched since before the VM existed.
    pub cpuid: cpuid::SupportedCpuid,
    /// Features hidden from the guest.
    pub mask: Vec<Feature>,
    /// vCPU count.
    pub vcpus: u8,
    /// Port I/O bus.
    pub pio: Arc<Bus>,
    /// MMIO bus.
    pub mmio: Arc<Bus>,
    /// Stop signal and timeline.
    pub control: Arc<VmControl>,
    /// Guest RAM.
    pub mem: GuestMemoryMmap,
    /// What the vCPU threads' system-call filter does off its list.
    pub seccomp: seccomp::Mode,
    /// That filter, compiled by the first vCPU thread that needs it.
    pub filter: OnceLock<Result<seccomp::Filter, String>>,
}

/// Why a vCPU could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// KVM_CREATE_VCPU failed.
    #[error("KVM_CREATE_VCPU {id} failed: {source}")]
    Create {
        /// vCPU index.
        id: u8,
        /// The cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The supported CPUID could not be read.
    #[error("{0}")]
    SupportedCpuid(String),
    /// CPUID could not be set.
    #[error(transparent)]
    Cpuid(#[from] cpuid::CpuidSetupError),
    /// Registers could not be set.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// The system-call filter could not be compiled or installed.
    #[error("{0}")]
    Seccomp(String),
}

/// Start the thread of vCPU `id`: it creates and configures its vCPU, waits
/// for the entry state on `entry` (the boot vCPU) and runs the guest. A
/// set-up failure stops the VM with a host error naming it.
pub fn spawn_vcpu(
    shared: Arc<VcpuShared>,
    id: u8,
    entry: Option<Receiver<EntryState>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            let fd = match create(&shared, id) {
                Ok(fd) => fd,
                Err(e) => {
                    return shared
                        .control
                        .request_stop(VmOutcome::HostError(format!("vCPU {id}: {e}")))
                }
            };
            if id == 0 {
                if let Some(ring) = CoalescedRing::map(&shared.kvm, &fd) {
                    *shared.ring.lock().unwrap_or_else(|p| p.into_inner()) = Some(ring);
                }
            }
            // Before the boot vCPU waits for its entry state, so that the
            // install overlaps the kernel load (its list has the two
            // register setters that follow).
            if let Err(e) = install_filter(&shared) {
                return shared
                    .control
                    .request_stop(VmOutcome::HostError(format!("vCPU {id}: {e}")));
            }
            if let Some(rx) = entry {
                // A closed channel means the kernel never loaded; flint is exiting with that error.
                let Ok(state) = rx.recv() else { return };
                if let Err(e) = regs::set_entry_state(&fd, &state) {
                    return shared
                        .control
                        .request_stop(VmOutcome::HostError(format!("vCPU {id}: {e}")));
                }
            }
            let vcpu = Vcpu {
                id,
                fd,
                pio: shared.pio.clone(),
                mmio: shared.mmio.clone(),
                ring: shared.ring.clone(),
                control: shared.control.clone(),
                mem: shared.mem.clone(),
            };
            vcpu.run();
        })?;
    Ok(())
}

fn create(shared: &VcpuShared, id: u8) -> Result<VcpuFd, VcpuError> {
    let fd = shared
        .vm
        .create_vcpu(u64::from(id))
        .map_err(|source| VcpuError::Create { id, source })?;
    let base = shared.cpuid.get().map_err(VcpuError::SupportedCpuid)?;
    cpuid::configure(&fd, base, id, shared.vcpus, &shared.mask)?;
    regs::set_common_state(&fd)?;
    Ok(fd)
}

/// Install the vCPU threads' system-call filter on this thread, compiling
/// it first if no other vCPU thread has.
fn install_filter(shared: &VcpuShared) -> Result<(), VcpuError> {
    let filter = shared.filter.get_or_init(|| {
        seccomp::Filter::new(seccomp::ThreadKind::Vcpu, shared.seccomp)
            .map_err(|e| crate::exit::error_chain(&e))
    });
    let filter = filter.as_ref().map_err(|e| VcpuError::Seccomp(e.clone()))?;
    filter
        .install()
        .map_err(|e| VcpuError::Seccomp(crate::exit::error_chain(&e)))
}

/// Everything a vCPU thread needs while it runs the guest.
pub struct Vcpu {
    /// Index (= APIC ID).
    pub id: u8,
    /// The KVM vCPU.
    pub fd: VcpuFd,
    /// Port I/O bus.
    pub pio: Arc<Bus>,
    /// MMIO bus.
    pub mmio: Arc<Bus>,
    /// Coalesced port writes waiting to be replayed.
    pub ring: SharedRing,
    /// Stop signal and timeline.
    pub control: Arc<VmControl>,
    /// Guest RAM, for the crash dump.
    pub mem: GuestMemoryMmap,
}

/// What one exit asks of the run loop.
enum Next {
    Continue,
    Stop(VmOutcome),
}

impl Vcpu {
    /// Run until the guest stops or another thread stops the VM.
    pub fn run(mut self) {
        let timeline = self.control.timeline.clone();
        if self.id == 0 {
            timeline.mark(Phase::FirstKvmRun);
        }
        while !self.control.stopping() {
            match self.run_once() {
                Next::Continue => {}
                Next::Stop(outcome) => {
                    self.control.request_stop(outcome);
                    break;
                }
            }
        }
    }

    fn run_once(&mut self) -> Next {
        let timeline = &self.control.timeline;
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                timeline.count_exit(ExitKind::Interrupted);
                return Next::Continue;
            }
            Err(e) => {
                return Next::Stop(VmOutcome::HostError(format!(
                    "vCPU {}: KVM_RUN failed: {e}",
                    self.id
                )))
            }
        };
        // Writes KVM queued before this exit happened first: replay them first.
        coalesced::replay(&self.ring, &self.pio);
        match exit {
            VcpuExit::IoOut(port, data) => {
                timeline.count_exit(ExitKind::IoOut);
                // KVM reports a `rep outs` as one exit: count * size bytes.
                let size = io_size(data.len());
                if !self.pio.write_repeated(u64::from(port), size, data) {
                    log::trace!("unhandled port write {port:#x}");
                }
                Next::Continue
            }
            VcpuExit::IoIn(port, data) => {
                timeline.count_exit(ExitKind::IoIn);
                let size = io_size(data.len());
                if !self.pio.read_repeated(u64::from(port), size, data) {
                    data.fill(0xff);
                }
                Next::Continue
            }
            VcpuExit::MmioRead(addr, data) => {
                timeline.count_exit(ExitKind::MmioRead);
                if !self.mmio.read(addr, data) {
                    data.fill(0);
                }
                Next::Continue
            }
            VcpuExit::MmioWrite(addr, data) => {
                timeline.count_exit(ExitKind::MmioWrite);
                self.mmio.write(addr, data);
                Next::Continue
            }
            VcpuExit::Shutdown => self.crash("triple fault (KVM_EXIT_SHUTDOWN)".into()),
            VcpuExit::InternalError => {
                self.crash("KVM internal error (instruction emulation failed)".into())
            }
            VcpuExit::FailEntry(reason, cpu) => self.crash(format!(
                "VM entry failed: hardware reason {reason:#x} on host CPU {cpu}"
            )),
            VcpuExit::SystemEvent(kind, _) => {
                timeline.count_exit(ExitKind::Other);
                system_event(kind)
            }
            VcpuExit::IoapicEoi(_) => {
                // Every pin is delivered edge-triggered: no Remote IRR to clear.
                timeline.count_exit(ExitKind::Other);
                Next::Continue
            }
            VcpuExit::Hlt => {
                timeline.count_exit(ExitKind::Other);
                Next::Continue
            }
            other => {
                timeline.count_exit(ExitKind::Other);
                let what = format!("unexpected VM exit {other:?}");
                self.crash(what)
            }
        }
    }

    fn crash(&self, what: String) -> Next {
        let dump = crate::kvm::regs::crash_dump(&self.fd, &self.mem);
        Next::Stop(VmOutcome::Crash(format!(
            "vCPU {}: {what}\n{dump}",
            self.id
        )))
    }
}

/// Access size of a port exit: data is `count * size` bytes, size 1, 2 or 4.
/// A string exit longer than 4 bytes is made of byte accesses unless its
/// length says otherwise; flint's devices are all byte-wide.
fn io_size(len: usize) -> usize {
    if len <= 4 {
        len
    } else {
        1
    }
}

fn system_event(kind: u32) -> Next {
    match kind {
        kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Next::Stop(VmOutcome::PowerOff),
        kvm_bindings::KVM_SYSTEM_EVENT_RESET => Next::Stop(VmOutcome::Reset),
        kvm_bindings::KVM_SYSTEM_EVENT_CRASH => Next::Stop(VmOutcome::Crash(
            "guest reported a crash (KVM_SYSTEM_EVENT_CRASH)".into(),
        )),
        other => {
            log::warn!("ignoring KVM system event {other}");
            Next::Continue
        }
    }
}
