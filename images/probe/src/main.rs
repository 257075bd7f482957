//! flint's probe: the default and test guest. A freestanding ELF loaded at
//! 1 MiB, entered through PVH (32-bit, `hvm_start_info`) or the Linux 64-bit
//! boot protocol (zero page). A few dozen instructions at CPL0 (kernel.rs)
//! set up paging, GDT/TSS/IDT and drop to user mode, where this file reports
//! what the monitor provided, one `probe: ...` line each on COM1 (the
//! contract with flint's tests is in images/probe/README.md), then exits
//! through port 0xf4.

#![no_std]
#![no_main]

mod acpi;
mod aml;
mod bench;
mod blk;
mod blkbench;
mod blkpt;
mod bootinfo;
mod clockdrift;
mod cmdline;
mod echo;
mod faults;
mod hostile;
mod irq;
mod kernel;
mod kvmclock;
mod mem;
mod mmio;
mod net;
mod out;
mod power;
mod svc;
mod vcon;
mod virtio;
mod virtq;
mod workload;

use bootinfo::{BootInfo, Entry};
use out::{say, Line};

/// Port the guest writes to when it has booted (Firecracker's boot timer).
const BOOT_COMPLETE_PORT: u16 = 0x3f0;
/// Value written there.
const BOOT_COMPLETE_VALUE: u8 = 123;
/// Exit-status port (QEMU isa-debug-exit, flint's exit device).
const EXIT_PORT: u16 = 0xf4;
/// i8042 command port: 0xfe pulses the reset line.
const I8042_PORT: u16 = 0x64;
/// Exit status after a fault or panic.
pub const FAULT_STATUS: u8 = 120;

extern "C" {
    /// TSC at the first instruction of either entry (written at CPL0).
    static probe_boot_tsc: u64;
}

/// The user-mode program; `probe_user_start` calls it with the entry kind
/// (0 PVH, 1 Linux 64-bit), the boot-information address and the TSC at
/// the first user-mode instruction.
#[no_mangle]
extern "C" fn probe_main(entry: u64, info_addr: u64, user_tsc: u64) -> ! {
    let entry = if entry == 0 {
        Entry::Pvh
    } else {
        Entry::Linux64
    };
    say(match entry {
        Entry::Pvh => "flint probe v1 entry=pvh",
        Entry::Linux64 => "flint probe v1 entry=linux64",
    });
    svc::outb(BOOT_COMPLETE_PORT, BOOT_COMPLETE_VALUE);
    say("boot-complete");

    let info = BootInfo::read(entry, info_addr);
    if !info.valid {
        Line::new().s("bootinfo invalid addr=").hex(info_addr).end();
    }
    let cmdline = info.cmdline;
    Line::new().s("cmdline=").bytes(cmdline).end();
    report_memory(&info);
    let tables = acpi::report(info.rsdp);
    for dev in cmdline::devices(cmdline) {
        Line::new()
            .s("cmdline-device addr=")
            .hex(dev.addr)
            .s(" size=")
            .hex(dev.size)
            .s(" irq=")
            .dec(dev.irq)
            .end();
    }
    for dev in cmdline::devices(cmdline) {
        let mut line = Line::new();
        line.s("cmdline-device-regs addr=").hex(dev.addr);
        mmio::finish_line(&mut line, dev.addr, dev.size);
    }
    let clock = report_kvmclock();
    report_initrds(&info);
    if cmdline::param(cmdline, "probe.cpuid") == Some(b"1") {
        report_cpuid();
    }
    if cmdline::param(cmdline, "probe.virtio") == Some(b"1") {
        virtio::run(cmdline, &tables, clock.as_ref());
    }
    if let Some(n) = cmdline::param_u64(cmdline, "probe.workload") {
        run_workload(n);
    }
    if let Some(seconds) = cmdline::param_u64(cmdline, "probe.clock-drift") {
        clockdrift::run(seconds);
    }
    if cmdline::param(cmdline, "probe.bench") == Some(b"1") {
        // SAFETY: written once at CPL0 before user mode started.
        let boot_tsc = unsafe { core::ptr::read_volatile(&raw const probe_boot_tsc) };
        bench::run(boot_tsc, user_tsc, clock.as_ref());
    }
    if let Some(kind) = cmdline::param(cmdline, "probe.fault") {
        bench::fault(kind);
    }
    if cmdline::param(cmdline, "probe.echo") == Some(b"1") {
        echo::run(clock.as_ref());
    }
    finish(cmdline, &tables)
}

fn report_memory(info: &BootInfo) {
    let mut total = 0u64;
    for e in info.memory_map() {
        Line::new()
            .s("mem start=")
            .hex16(e.start)
            .s(" size=")
            .hex16(e.size)
            .s(" type=")
            .dec(u64::from(e.kind))
            .end();
        if e.kind == 1 {
            total = total.wrapping_add(e.size);
        }
    }
    Line::new().s("mem total_ram=").dec(total).end();
}

/// The CPUID leaves `--cpuid-mask` edits, as executed in user mode and, via
/// the service, in (emulated) kernel mode.
fn report_cpuid() {
    const LEAVES: [(u32, u32); 3] = [(1, 0), (7, 0), (0x4000_0001, 0)];
    for (leaf, subleaf) in LEAVES {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        cpuid_line("user", leaf, [r.eax, r.ebx, r.ecx, r.edx]);
    }
    for (leaf, subleaf) in LEAVES {
        cpuid_line("kernel", leaf, svc::cpuid_kernel(leaf, subleaf));
    }
}

fn cpuid_line(mode: &str, leaf: u32, [eax, ebx, ecx, edx]: [u32; 4]) {
    Line::new()
        .s("cpuid ")
        .s(mode)
        .s(" leaf=")
        .hex8(leaf)
        .s(" eax=")
        .hex8(eax)
        .s(" ebx=")
        .hex8(ebx)
        .s(" ecx=")
        .hex8(ecx)
        .s(" edx=")
        .hex8(edx)
        .end();
}

fn report_kvmclock() -> Option<kvmclock::Clock> {
    let clock = kvmclock::enable();
    match &clock {
        Some(c) => {
            let tsc = svc::rdtsc();
            Line::new()
                .s("kvmclock ns=")
                .dec(c.ns_at(tsc))
                .s(" tsc=")
                .dec(tsc)
                .s(" flags=")
                .hex(u64::from(c.flags))
                .end();
        }
        None => say("kvmclock none"),
    }
    clock
}

fn report_initrds(info: &BootInfo) {
    let mut any = false;
    for (addr, size) in info.initrds() {
        any = true;
        let mut line = Line::new();
        line.s("initrd addr=").hex(addr).s(" size=").dec(size);
        match mem::phys(addr, size) {
            Some(bytes) => line.s(" fnv1a64=").hex16(fnv1a64(bytes)),
            None => line.s(" fnv1a64=unreadable"),
        };
        line.end();
    }
    if !any {
        say("initrd none");
    }
}

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The workload's memory; static so the probe's stack stays small.
static mut WORKSPACE: workload::Workspace = workload::Workspace::new();

fn run_workload(iterations: u64) {
    // SAFETY: the only reference to WORKSPACE, taken once.
    let ws = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
    let start = svc::rdtsc();
    let result = workload::run(ws, iterations);
    let cycles = svc::rdtsc().wrapping_sub(start);
    Line::new()
        .s("workload iterations=")
        .dec(iterations)
        .s(" cycles=")
        .dec(cycles)
        .s(" result=")
        .hex(result)
        .end();
}

/// Exit, halt, crash, reset or power off as the command line asks.
fn finish(cmdline: &[u8], tables: &acpi::Tables) -> ! {
    if cmdline::param(cmdline, "probe.crash") == Some(b"1") {
        say("crash");
        svc::crash();
    }
    if cmdline::param(cmdline, "probe.halt") == Some(b"1") {
        say("halt");
        svc::halt();
    }
    if cmdline::param(cmdline, "probe.reset") == Some(b"1") {
        say("reset");
        svc::outb(I8042_PORT, 0xfe);
        svc::halt();
    }
    if cmdline::param(cmdline, "probe.poweroff") == Some(b"1") {
        power::poweroff(tables);
    }
    let status = cmdline::param_u64(cmdline, "probe.exit")
        .filter(|&s| s <= 255)
        .unwrap_or(0) as u8;
    exit(status)
}

/// Prints the exit line, writes `status` to the exit port; if the monitor
/// does not stop the VM, pulses the i8042 reset, then halts.
pub fn exit(status: u8) -> ! {
    Line::new().s("exit status=").dec(u64::from(status)).end();
    svc::outb(EXIT_PORT, status);
    svc::outb(I8042_PORT, 0xfe);
    svc::halt()
}

/// Entered (at CPL3, on its own stack) when an exception reached the IDT.
#[no_mangle]
extern "C" fn probe_fault(vector: u64, error: u64, rip: u64, cr2: u64) -> ! {
    Line::new()
        .s("FAULT vector=")
        .dec(vector)
        .s(" error=")
        .hex(error)
        .s(" rip=")
        .hex(rip)
        .end();
    if vector == 14 {
        Line::new().s("fault cr2=").hex(cr2).end();
    }
    exit(FAULT_STATUS)
}

/// Never called (panics abort), but `core`'s unwind tables name it.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = Line::new();
    line.s("panic");
    if let Some(message) = info.message().as_str() {
        line.s(": ").s(message);
    }
    if let Some(at) = info.location() {
        line.s(" at ").s(at.file()).s(":").dec(u64::from(at.line()));
    }
    line.end();
    exit(FAULT_STATUS)
}
