//! From a validated [`RunConfig`] to a running VM, as a flat list of named
//! steps, each with its own error variant; then run it to an outcome.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use guest_boot::entry::EntryState;
use guest_boot::layout::{self, VirtioMmioSlot};
use guest_boot::{BootPlan, BootSpec, InitrdImage, PreparedBoot};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::config::devices::ConsoleMode;
use crate::config::{KernelSource, RunConfig};
use crate::control::VmControl;
use crate::devices::legacy::{AcpiSleep, BootMarker, ExitPort, I8042};
use crate::devices::serial::{SerialDevice, SerialOut};
use crate::devices::virtio::{InputRouter, StdinFraming};
use crate::devices::{Bus, BusError};
use crate::disks;
use crate::event_loop::{EventLoop, EventSource};
use crate::exit::VmOutcome;
use crate::kvm::coalesced::{self, KvmTxCoalescing, SharedRing};
use crate::kvm::cpuid::SupportedCpuid;
use crate::kvm::irq;
use crate::kvm::vcpu::{spawn_vcpu, VcpuShared};
use crate::kvm::vm;
use crate::mmio_bus::{self, BlockTransport, MmioDevices};
use crate::report::{BootTimeline, DiskStats, Phase};

/// A step of building or running the VM failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The kernel file could not be opened.
    #[error("cannot open kernel {path}: {source}")]
    OpenKernel {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The initrd could not be opened or sized.
    #[error("cannot open initrd {path}: {source}")]
    OpenInitrd {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The embedded probe could not be staged.
    #[error("cannot stage the embedded probe guest: {0}")]
    EmbeddedProbe(#[source] std::io::Error),
    /// KVM or VM creation failed.
    #[error(transparent)]
    Vm(#[from] vm::VmError),
    /// Creating an eventfd failed.
    #[error("cannot create an eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    /// A device could not be placed on a bus.
    #[error("device layout: {0}")]
    Bus(#[from] BusError),
    /// More devices than the flat bus has slots for.
    #[error("device {0} does not fit on the virtio-mmio bus")]
    BusFull(usize),
    /// A `--disk` backing could not be used.
    #[error(transparent)]
    Disk(#[from] disks::DiskError),
    /// A virtio device could not be created or wired.
    #[error("virtio device: {0}")]
    Virtio(String),
    /// Registering an irqfd failed.
    #[error("KVM_IRQFD for IRQ {irq} failed: {source}")]
    Irqfd {
        /// The interrupt line.
        irq: u32,
        /// The cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Loading the kernel (the message names the file).
    #[error("{path}: {source}")]
    Boot {
        /// The kernel path.
        path: String,
        /// The cause.
        #[source]
        source: guest_boot::BootError,
    },
    /// A vCPU thread could not be started.
    #[error("cannot start a vCPU thread: {0}")]
    Thread(#[source] std::io::Error),
    /// /dev/null could not be opened (for a one-shot guest's hidden kernel log).
    #[error("cannot open /dev/null")]
    DevNull(#[source] std::io::Error),
    /// The event loop failed.
    #[error(transparent)]
    EventLoop(#[from] crate::event_loop::EventLoopError),
    /// The event loop's system-call filter could not be set up.
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
}

/// How a VM run ended.
pub struct Finished {
    /// Why the VM stopped.
    pub outcome: VmOutcome,
    /// Whether the guest's console output ended with a newline (or was empty).
    pub output_ends_line: bool,
    /// What each disk counted.
    pub disks: Vec<DiskStats>,
}

/// A VM ready to run.
pub struct Vm {
    _kvm: Arc<Kvm>,
    _vm: Arc<VmFd>,
    input: InputRouter,
    sources: Vec<EventSource>,
    serial: Arc<Mutex<SerialDevice>>,
    ring: SharedRing,
    pio: Arc<Bus>,
    control: Arc<VmControl>,
    disks: Vec<(String, BlockTransport)>,
    /// Releases the boot vCPU into the guest.
    entry_tx: SyncSender<EntryState>,
    /// Kept open until the guest runs: closing the embedded probe's memfd
    /// frees its pages, ~40 µs that need not delay the first instruction.
    inputs: Inputs,
    seccomp: seccomp::Mode,
    /// What the boot preparation did.
    pub boot: PreparedBoot,
}

struct Inputs {
    kernel: File,
    kernel_name: String,
    initrd: Option<(File, u64)>,
}

/// Build the VM described by `cfg`, recording phases in `timeline`, and
/// start its vCPUs.
///
/// The vCPU threads are started as soon as the VM has memory and an
/// irqchip: each creates and configures its own vCPU (KVM_CREATE_VCPU and
/// KVM_GET_SUPPORTED_CPUID are the slowest ioctls of a boot) and installs
/// its system-call filter while this thread loads the kernel; the boot
/// vCPU then waits for the entry state, which [`Vm::run`] sends.
pub fn build(cfg: &RunConfig, timeline: Arc<BootTimeline>) -> Result<Vm, BuildError> {
    let mut inputs = open_inputs(cfg)?;
    let kvm = Arc::new(vm::open_kvm(&cfg.kvm_device)?);
    let cpuid = SupportedCpuid::fetch(kvm.clone(), cfg.seccomp).map_err(BuildError::Thread)?;
    let vm_fd = Arc::new(vm::create_vm(&kvm)?);
    timeline.mark(Phase::VmCreated);
    // Guest RAM first: on nested PVM hosts a memory slot added after the
    // irqchip costs milliseconds (4-7 ms for 64 MiB, against 0.1 ms).
    let mem = vm::create_memory(&vm_fd, cfg.mem_mib)?;
    timeline.mark(Phase::MemoryReady);
    irq::enable_split_irqchip(&vm_fd)?;
    let control = Arc::new(VmControl::new(timeline.clone()).map_err(BuildError::EventFd)?);
    let (pio, serial) = legacy_bus(cfg, &kvm, &vm_fd, &control)?;
    let pio = Arc::new(pio);
    let ring = SharedRing::default();
    let MmioDevices {
        bus: mmio,
        slots,
        console,
        sources,
        disks,
    } = mmio_bus::build(cfg, &vm_fd, &mem, timeline.clone())?;
    let shared = Arc::new(VcpuShared {
        kvm: kvm.clone(),
        vm: vm_fd.clone(),
        ring: ring.clone(),
        cpuid,
        mask: cfg.cpuid_mask.clone(),
        vcpus: cfg.vcpus,
        pio: pio.clone(),
        mmio: Arc::new(mmio),
        control: control.clone(),
        mem: mem.clone(),
        seccomp: cfg.seccomp,
        filter: OnceLock::new(),
    });
    let (entry_tx, entry_rx) = std::sync::mpsc::sync_channel(1);
    let mut entry_rx = Some(entry_rx);
    for id in 0..cfg.vcpus {
        let entry = if id == 0 { entry_rx.take() } else { None };
        spawn_vcpu(shared.clone(), id, entry).map_err(BuildError::Thread)?;
    }
    let boot = load_guest(cfg, &mem, &mut inputs, &slots)?;
    timeline.mark(Phase::KernelLoaded);
    Ok(Vm {
        _kvm: kvm,
        _vm: vm_fd,
        input: InputRouter {
            // A one-shot command's stdin goes to its console, never to the kernel's UART.
            serial: (matches!(cfg.console, ConsoleMode::Serial | ConsoleMode::Both)
                && cfg.oneshot.is_none())
            .then(|| serial.clone()),
            console,
            framing: if cfg.oneshot.is_some() {
                StdinFraming::Frames
            } else {
                StdinFraming::Raw
            },
        },
        sources,
        serial,
        control,
        entry_tx,
        inputs,
        seccomp: cfg.seccomp,
        boot,
        ring,
        pio,
        disks,
    })
}

/// Open the user's files before touching KVM, so bad paths fail fast.
fn open_inputs(cfg: &RunConfig) -> Result<Inputs, BuildError> {
    let (kernel, kernel_name) = match &cfg.kernel {
        KernelSource::EmbeddedProbe => (
            embedded_probe().map_err(BuildError::EmbeddedProbe)?,
            "embedded probe".into(),
        ),
        KernelSource::File(path) => (
            File::open(path).map_err(|source| BuildError::OpenKernel {
                path: path.display().to_string(),
                source,
            })?,
            path.display().to_string(),
        ),
    };
    let initrd = match (&cfg.initrd, &cfg.oneshot) {
        (None, _) => None,
        (Some(path), oneshot) => Some(
            match oneshot {
                None => open_sized(path),
                Some(o) => crate::oneshot::initrd_with_command(path, o),
            }
            .map_err(|source| BuildError::OpenInitrd {
                path: path.display().to_string(),
                source,
            })?,
        ),
    };
    Ok(Inputs {
        kernel,
        kernel_name,
        initrd,
    })
}

fn open_sized(path: &Path) -> std::io::Result<(File, u64)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    Ok((file, meta.len()))
}

/// The embedded probe as a file (an anonymous memfd), so it loads like any kernel.
fn embedded_probe() -> std::io::Result<File> {
    let mut file = crate::memfd::create(c"flint-probe")?;
    file.write_all(crate::probe::PROBE_ELF)?;
    Ok(file)
}

/// The port-I/O devices: UART (with its irqfd), exit port, boot marker,
/// i8042 reset, ACPI sleep registers.
fn legacy_bus(
    cfg: &RunConfig,
    kvm: &Kvm,
    vm_fd: &Arc<VmFd>,
    control: &Arc<VmControl>,
) -> Result<(Bus, Arc<Mutex<SerialDevice>>), BuildError> {
    let with_uart = matches!(cfg.console, ConsoleMode::Serial | ConsoleMode::Both);
    let irq_evt = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(BuildError::EventFd)?;
    if with_uart {
        vm_fd
            .register_irqfd(&irq_evt, layout::SERIAL_IRQ)
            .map_err(|source| BuildError::Irqfd {
                irq: layout::SERIAL_IRQ,
                source,
            })?;
    }
    let out_fd = serial_output_fd(cfg)?;
    // SAFETY: `out_fd` (stdout, stderr or a leaked /dev/null) stays open for the life of the
    // process.
    let out = unsafe { SerialOut::new(out_fd, control.timeline.clone()) };
    let mut uart = SerialDevice::new(irq_evt, out);
    if let Some(switch) =
        KvmTxCoalescing::new(kvm, vm_fd.clone(), layout::SERIAL_PORT).filter(|_| with_uart)
    {
        uart = uart.with_coalescing(Box::new(switch));
    }
    let serial = Arc::new(Mutex::new(uart));
    let mut bus = Bus::default();
    // Without the UART (--console virtio|none) port 0x3f8 is simply empty.
    if with_uart {
        bus.insert(serial.clone(), u64::from(layout::SERIAL_PORT), 8)?;
    }
    bus.insert(
        Arc::new(Mutex::new(ExitPort(control.clone()))),
        u64::from(layout::EXIT_PORT),
        1,
    )?;
    bus.insert(
        Arc::new(Mutex::new(BootMarker(control.clone()))),
        u64::from(layout::BOOT_COMPLETE_PORT),
        1,
    )?;
    bus.insert(Arc::new(Mutex::new(I8042(control.clone()))), 0x60, 5)?;
    bus.insert(
        Arc::new(Mutex::new(AcpiSleep(control.clone()))),
        u64::from(layout::ACPI_SLEEP_CONTROL_PORT),
        2,
    )?;
    Ok((bus, serial))
}

/// Where the UART's output goes: stdout; for a one-shot guest stderr (`--verbose`) or nowhere.
fn serial_output_fd(cfg: &RunConfig) -> Result<std::os::fd::RawFd, BuildError> {
    use crate::oneshot::KernelLog;
    match cfg.oneshot.as_ref().map(|o| o.kernel_log) {
        None => Ok(libc::STDOUT_FILENO),
        Some(KernelLog::Stderr) => Ok(libc::STDERR_FILENO),
        Some(KernelLog::Hidden) => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map(std::os::fd::IntoRawFd::into_raw_fd)
            .map_err(BuildError::DevNull),
    }
}

fn load_guest(
    cfg: &RunConfig,
    mem: &GuestMemoryMmap,
    inputs: &mut Inputs,
    slots: &[VirtioMmioSlot],
) -> Result<PreparedBoot, BuildError> {
    let spec = BootSpec {
        kernel: &mut inputs.kernel,
        initrd: inputs
            .initrd
            .as_mut()
            .map(|(file, size)| InitrdImage { file, size: *size }),
        cmdline: &cfg.cmdline,
        mem_bytes: cfg.mem_mib << 20,
        vcpus: cfg.vcpus,
        devices: slots,
        plan: BootPlan {
            acpi: cfg.discovery.acpi,
            cmdline_devices: cfg.discovery.cmdline,
        },
        // vm::create_memory maps it fresh for this VM.
        ram: guest_boot::loader::GuestRam::Zeroed,
    };
    guest_boot::prepare_boot(mem, spec).map_err(|source| BuildError::Boot {
        path: inputs.kernel_name.clone(),
        source,
    })
}

impl Vm {
    /// Install this thread's system-call filter, let the boot vCPU enter
    /// the guest, and run the event loop until the VM ends. Whatever this
    /// thread does from here on (the loop, the boot report, the exit) is
    /// on the event loop's allow-list.
    pub fn run(self, deadline: Option<Instant>) -> Result<Finished, BuildError> {
        let Vm {
            _kvm,
            _vm,
            input,
            sources,
            serial,
            control,
            ring,
            pio,
            disks,
            entry_tx,
            inputs,
            seccomp,
            boot,
        } = self;
        // The VM and its memory live until the process exits; nothing is
        // gained by tearing them down one by one first.
        std::mem::forget((_kvm, _vm));
        seccomp::Filter::new(seccomp::ThreadKind::EventLoop, seccomp)?.install()?;
        control.timeline.mark(Phase::SeccompInstalled);
        // The boot vCPU may already have failed and said so through `control`.
        let _ = entry_tx.send(boot.entry);
        drop(inputs);
        let replay = || coalesced::replay(&ring, &pio);
        let mut event_loop = EventLoop::new(&control, &input, Some(&replay), sources)?;
        let outcome = event_loop.run(deadline)?;
        replay();
        let mut serial = serial.lock().unwrap_or_else(|p| p.into_inner());
        serial.flush_output();
        let disks = disks
            .into_iter()
            .map(|(path, transport)| {
                let t = transport.lock().unwrap_or_else(|p| p.into_inner());
                DiskStats {
                    path,
                    bounced: t.device().bounced(),
                    io_errors: t.device().io_errors(),
                    merged: t.device().merged(),
                }
            })
            .collect();
        Ok(Finished {
            outcome,
            output_ends_line: serial.at_line_start(),
            disks,
        })
    }
}
