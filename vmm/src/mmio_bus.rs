//! The MMIO bus of one VM: the IOAPIC, the clock-sample window, then the
//! virtio-mmio devices in bus order — the virtio console, `--disk`s,
//! `--net`s, placeholders — each at the next slot, wired to KVM the same way.
//! A one-shot guest gets two consoles: its command's stdout and stderr.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use guest_boot::layout::{self, VirtioMmioSlot};
use kvm_ioctls::VmFd;
use log::info;
use virtio_devices::block::{Serial, SERIAL_LEN};
use virtio_devices::{
    Block, BlockOptions, Console, FileBackend, IrqfdInterrupt, MacAddr, MmioTransport, Net,
    NetOptions, Tap, VirtioDevice,
};
use vm_memory::GuestMemoryMmap;

use crate::builder::BuildError;
use crate::config::devices::{ConsoleMode, DiskConfig, DiskMode, NetConfig};
use crate::config::RunConfig;
use crate::devices::clock_probe::ClockProbe;
use crate::devices::ioapic::Ioapic;
use crate::devices::placeholder::Placeholder;
use crate::devices::virtio::{self, HostSink, VirtioConsole};
use crate::devices::Bus;
use crate::disks;
use crate::event_loop::EventSource;
use crate::kvm::irq::KvmMsiRouter;
use crate::passthrough::{self, DevNum};
use crate::report::BootTimeline;

/// Size of the IOAPIC's register window.
const IOAPIC_WINDOW: u64 = 0x1000;

/// The assembled bus and what the rest of the VM needs from it.
pub struct MmioDevices {
    /// The bus the vCPUs dispatch MMIO exits to.
    pub bus: Bus,
    /// The virtio slots, for the ACPI DSDT and the kernel command line.
    pub slots: Vec<VirtioMmioSlot>,
    /// The virtio console, for host input.
    pub console: Option<VirtioConsole>,
    /// Queue notifications and backend fds for the event loop.
    pub sources: Vec<EventSource>,
    /// The disks, with their `--disk` paths, for the report's counters.
    pub disks: Vec<(String, BlockTransport)>,
}

/// A virtio-blk device behind its transport.
pub type BlockTransport = Arc<Mutex<MmioTransport<Block<FileBackend>>>>;

/// Build the bus for `cfg`.
pub fn build(
    cfg: &RunConfig,
    vm: &Arc<VmFd>,
    mem: &GuestMemoryMmap,
    timeline: Arc<BootTimeline>,
) -> Result<MmioDevices, BuildError> {
    let mut bus = Bus::default();
    let ioapic = Ioapic::new(KvmMsiRouter::new(vm.clone()));
    bus.insert(
        Arc::new(Mutex::new(ioapic)),
        layout::IOAPIC_START,
        IOAPIC_WINDOW,
    )?;
    let clock = ClockProbe(timeline);
    bus.insert(
        Arc::new(Mutex::new(clock)),
        layout::CLOCK_PROBE_START,
        layout::CLOCK_PROBE_SIZE,
    )?;
    let mut a = Assembly {
        vm,
        mem,
        out: MmioDevices {
            bus,
            slots: Vec::new(),
            console: None,
            sources: Vec::new(),
            disks: Vec::new(),
        },
    };
    if cfg.oneshot.is_some() {
        // hvc0: the command's stdout (and stdin); hvc1: its stderr.
        let (_, console) = a.add(Console::new(HostSink::Stdout))?;
        a.out.console = Some(console);
        a.add(Console::new(HostSink::Stderr))?;
    } else if matches!(cfg.console, ConsoleMode::Virtio | ConsoleMode::Both) {
        let (_, console) = a.add(Console::new(HostSink::Stdout))?;
        a.out.console = Some(console);
    }
    for disk in &cfg.disks {
        let (slot, transport) = a.add(block_device(disk)?)?;
        let path = disk.path.display().to_string();
        a.out.disks.push((path, transport.clone()));
        a.out
            .sources
            .extend(virtio::completion_source(transport, slot));
    }
    for net in &cfg.nets {
        let (device, tap_fd) = net_device(net)?;
        let (slot, transport) = a.add(device)?;
        a.out
            .sources
            .push(virtio::tap_source(tap_fd, transport, slot));
    }
    for _ in 0..cfg.placeholder_devices {
        let slot = a.next_slot()?;
        a.out
            .bus
            .insert(Arc::new(Mutex::new(Placeholder)), slot.addr, slot.size)?;
        a.out.slots.push(slot);
    }
    Ok(a.out)
}

/// A device behind its transport, as the bus and the event loop share it.
type Shared<D> = Arc<Mutex<MmioTransport<D>>>;

struct Assembly<'a> {
    vm: &'a VmFd,
    mem: &'a GuestMemoryMmap,
    out: MmioDevices,
}

impl Assembly<'_> {
    fn next_slot(&self) -> Result<VirtioMmioSlot, BuildError> {
        let index = self.out.slots.len();
        layout::virtio_mmio_slot(index).ok_or(BuildError::BusFull(index))
    }

    /// Put `device` behind a transport at the next slot: irqfd, ioeventfds,
    /// event sources, bus entry.
    fn add<D: VirtioDevice + 'static>(
        &mut self,
        device: D,
    ) -> Result<(VirtioMmioSlot, Shared<D>), BuildError> {
        let slot = self.next_slot()?;
        let irq = Arc::new(IrqfdInterrupt::new().map_err(BuildError::EventFd)?);
        let transport = MmioTransport::new(device, self.mem.clone(), irq.clone())
            .map_err(|e| BuildError::Virtio(e.to_string()))?;
        let transport = Arc::new(Mutex::new(transport));
        let sources = virtio::wire(self.vm, slot, &irq, transport.clone())
            .map_err(|e| BuildError::Virtio(e.to_string()))?;
        self.out
            .bus
            .insert(transport.clone(), slot.addr, slot.size)?;
        self.out.sources.extend(sources);
        self.out.slots.push(slot);
        Ok((slot, transport))
    }
}

/// A virtio-blk device over the backing `disk` names; a passthrough disk
/// shows the host device's block sizes, hints and serial (an `id=` given
/// by the user wins).
fn block_device(disk: &DiskConfig) -> Result<Block<FileBackend>, BuildError> {
    let backend = disks::open_disk(disk)?;
    let named = |e: &dyn std::fmt::Display| {
        BuildError::Virtio(format!("--disk {}: {e}", disk.path.display()))
    };
    let mut options = BlockOptions::default();
    let mut serial = disk.id.clone().unwrap_or_default();
    if let (DiskMode::Passthrough(_), Some(dev)) = (disk.mode, DevNum::of_node(&disk.path)) {
        let host = passthrough::identity(backend.file(), dev);
        options.geometry = host.geometry;
        options.limits = host.limits;
        let found = host.serial.as_ref();
        if disk.id.is_none() {
            serial = found.map_or_else(String::new, |(s, _)| truncate(s, SERIAL_LEN));
        }
        info!(
            "passthrough {} ({}:{}): {}-byte logical / {}-byte physical blocks, \
             segments of at most {} bytes, at most {} per request, write cache {}, \
             serial {} -> GET_ID {serial:?}",
            disk.path.display(),
            dev.major,
            dev.minor,
            host.geometry.logical_block_size,
            host.geometry.logical_block_size << host.geometry.physical_block_exponent,
            host.limits.size_max,
            host.limits.seg_max,
            host.write_cache.as_deref().unwrap_or("unknown"),
            found.map_or_else(
                || "none found".to_string(),
                |(s, src)| format!("{s:?} (from {src})")
            ),
        );
    }
    options.serial = Serial::new(&serial).map_err(|e| named(&e))?;
    Block::new(backend, options).map_err(|e| named(&e))
}

/// The first `max` bytes of `s`, cut at a character boundary (GET_ID holds
/// 20 bytes, virtio 1.2 §5.2.6).
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A virtio-net device on the tap `net` names, and the tap's fd.
fn net_device(net: &NetConfig) -> Result<(Net<Tap>, std::os::fd::RawFd), BuildError> {
    let tap = Tap::open(&net.tap)
        .map_err(|e| BuildError::Virtio(format!("--net tap={}: {e}", net.tap)))?;
    let fd = tap.as_raw_fd();
    Ok((
        Net::new(
            tap,
            NetOptions {
                mac: net.mac.map(MacAddr),
            },
        ),
        fd,
    ))
}
