//! Unit tests for the ACPI tables: parsed back from guest memory, and
//! disassembled by ACPICA's `iasl -d` (Debian package acpica-tools).

use std::process::Command;

use vm_memory::GuestMemoryMmap;

use super::*;
use crate::layout::virtio_mmio_slot;
use crate::testutil::{guest_mem, read_mem, temp_path};

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
}

/// A whole table (header length) at `addr`.
fn sdt_at(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let header = read_mem(mem, addr, 36);
    read_mem(mem, addr, u32_at(&header, 4) as usize)
}

/// The tables of a VM, followed from the RSDP.
struct Tables {
    rsdp: Vec<u8>,
    xsdt: Vec<u8>,
    fadt: Vec<u8>,
    madt: Vec<u8>,
    dsdt: Vec<u8>,
    dsdt_addr: u64,
}

fn slots(n: usize) -> Vec<VirtioMmioSlot> {
    (0..n).map(|i| virtio_mmio_slot(i).unwrap()).collect()
}

fn write(vcpus: u8, devices: usize) -> Tables {
    let mem = guest_mem(16);
    let devices = slots(devices);
    let rsdp_addr = write_acpi_tables(
        &mem,
        &AcpiConfig {
            vcpus,
            devices: &devices,
        },
    )
    .unwrap();
    assert_eq!(rsdp_addr, GuestAddress(ACPI_START));
    let rsdp = read_mem(&mem, rsdp_addr.0, 36);
    let xsdt = sdt_at(&mem, u64_at(&rsdp, 24));
    let fadt = sdt_at(&mem, u64_at(&xsdt, 36));
    let madt = sdt_at(&mem, u64_at(&xsdt, 44));
    let dsdt_addr = u64_at(&fadt, 140);
    let dsdt = sdt_at(&mem, dsdt_addr);
    Tables {
        rsdp,
        xsdt,
        fadt,
        madt,
        dsdt,
        dsdt_addr,
    }
}

#[test]
fn rsdp_is_revision_2_with_both_checksums() {
    let t = write(1, 0);
    assert_eq!(&t.rsdp[..8], b"RSD PTR ");
    assert_eq!(t.rsdp[15], 2);
    assert_eq!(u32_at(&t.rsdp, 20), 36);
    assert_eq!(sum(&t.rsdp[..20]), 0);
    assert_eq!(sum(&t.rsdp), 0);
}

#[test]
fn xsdt_lists_fadt_then_madt() {
    let t = write(2, 3);
    assert_eq!(&t.xsdt[..4], b"XSDT");
    assert_eq!(t.xsdt.len(), 36 + 16);
    assert_eq!(&t.fadt[..4], b"FACP");
    assert_eq!(&t.madt[..4], b"APIC");
    assert_eq!(&t.dsdt[..4], b"DSDT");
}

#[test]
fn every_table_checksums_to_zero() {
    let t = write(4, VIRTIO_MAX_DEVICES);
    for table in [&t.xsdt, &t.fadt, &t.madt, &t.dsdt] {
        assert_eq!(sum(table), 0, "{}", String::from_utf8_lossy(&table[..4]));
    }
}

#[test]
fn tables_stay_below_1_mib() {
    let t = write(255, VIRTIO_MAX_DEVICES);
    assert!(t.dsdt_addr + t.dsdt.len() as u64 <= HIMEM_START);
}

#[test]
fn fadt_is_hardware_reduced_with_io_sleep_registers() {
    let t = write(1, 0);
    assert_eq!(t.fadt.len(), 276);
    assert_eq!((t.fadt[8], t.fadt[131]), (6, 5));
    assert_ne!(u32_at(&t.fadt, 112) & (1 << 20), 0);
    // GAS: System I/O, 8 bits, offset 0, byte access, port.
    assert_eq!(&t.fadt[244..248], &[1, 8, 0, 1]);
    assert_eq!(u64_at(&t.fadt, 248), u64::from(ACPI_SLEEP_CONTROL_PORT));
    assert_eq!(&t.fadt[256..260], &[1, 8, 0, 1]);
    assert_eq!(u64_at(&t.fadt, 260), u64::from(ACPI_SLEEP_STATUS_PORT));
    assert_eq!(&t.fadt[268..276], b"FLINTVMM");
    assert_eq!(u32_at(&t.fadt, 40), 0, "only X_DSDT is set");
}

#[test]
fn madt_has_one_local_apic_per_vcpu_and_one_ioapic() {
    let t = write(3, 0);
    assert_eq!(u32_at(&t.madt, 36), LAPIC_START as u32);
    let mut at = 44;
    let mut lapics = Vec::new();
    let mut ioapics = Vec::new();
    while at < t.madt.len() {
        let (kind, len) = (t.madt[at], usize::from(t.madt[at + 1]));
        match kind {
            0 => lapics.push((t.madt[at + 2], t.madt[at + 3], u32_at(&t.madt, at + 4))),
            1 => ioapics.push((
                t.madt[at + 2],
                u32_at(&t.madt, at + 4),
                u32_at(&t.madt, at + 8),
            )),
            other => panic!("unexpected MADT entry type {other}"),
        }
        at += len;
    }
    assert_eq!(lapics, vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
    assert_eq!(ioapics, vec![(0, IOAPIC_START as u32, 0)]);
}

#[test]
fn dsdt_names_each_device_and_s5() {
    let t = write(1, 5);
    let count = t.dsdt.windows(8).filter(|w| w == b"LNRO0005").count();
    assert_eq!(count, 5);
    assert!(t.dsdt.windows(4).any(|w| w == b"_S5_"));
    assert!(t.dsdt.windows(4).any(|w| w == b"V004"));
}

#[test]
fn zero_vcpus_are_rejected() {
    let e = write_acpi_tables(
        &guest_mem(16),
        &AcpiConfig {
            vcpus: 0,
            devices: &[],
        },
    );
    assert!(matches!(e, Err(AcpiError::NoVcpus)));
}

#[test]
fn too_many_devices_are_rejected() {
    let devices = vec![virtio_mmio_slot(0).unwrap(); VIRTIO_MAX_DEVICES + 1];
    let e = write_acpi_tables(
        &guest_mem(16),
        &AcpiConfig {
            vcpus: 1,
            devices: &devices,
        },
    );
    assert!(matches!(
        e,
        Err(AcpiError::TooManyDevices { count: 20, max: 19 })
    ));
}

#[test]
fn device_window_above_4_gib_is_rejected() {
    let devices = [VirtioMmioSlot {
        addr: 1 << 32,
        size: 0x1000,
        irq: 5,
    }];
    let e = write_acpi_tables(
        &guest_mem(16),
        &AcpiConfig {
            vcpus: 1,
            devices: &devices,
        },
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "the virtio-mmio window at 0x100000000 (+0x1000) is not below 4 GiB"
    );
}

/// Run `iasl -d` on `table` saved as `<dir>/<name>.dat`; returns iasl's
/// output and the disassembly.
fn disassemble(dir: &std::path::Path, name: &str, table: &[u8]) -> (String, String) {
    let dat = dir.join(format!("{name}.dat"));
    std::fs::write(&dat, table).unwrap();
    let out = match Command::new("iasl").arg("-d").arg(&dat).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run iasl ({e}); install ACPICA's iasl (Debian: apt-get install acpica-tools)"
        ),
    };
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl -d {name} failed:\n{log}");
    let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl")))
        .unwrap_or_else(|e| panic!("iasl wrote no {name}.dsl ({e}):\n{log}"));
    (log, dsl)
}

#[test]
fn iasl_disassembles_every_table_cleanly() {
    const DEVICES: usize = 4;
    let t = write(3, DEVICES);
    let dir = temp_path("iasl");
    std::fs::create_dir(&dir).unwrap();
    let mut dsls = Vec::new();
    // (iasl cannot disassemble a lone RSDP; its checksums are tested above.)
    let all = [
        ("xsdt", &t.xsdt),
        ("facp", &t.fadt),
        ("apic", &t.madt),
        ("dsdt", &t.dsdt),
    ];
    for (name, table) in all {
        let (log, dsl) = disassemble(&dir, name, table);
        let lower = log.to_lowercase();
        assert!(
            !lower.contains("checksum"),
            "iasl complains about {name}:\n{log}"
        );
        assert!(
            !lower.contains("error"),
            "iasl reports errors for {name}:\n{log}"
        );
        // iasl -d notes bad checksums in the disassembly, not on stdout.
        assert!(
            !dsl.contains("Incorrect checksum"),
            "bad {name} checksum:\n{dsl}"
        );
        dsls.push(dsl);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let (fadt, madt, dsdt) = (&dsls[1], &dsls[2], &dsls[3]);
    let hw_reduced = fadt.lines().find(|l| l.contains("Hardware Reduced"));
    assert!(
        hw_reduced.is_some_and(|l| l.trim_end().ends_with(": 1")),
        "{fadt}"
    );
    assert_eq!(madt.matches("[Processor Local APIC]").count(), 3, "{madt}");
    assert_eq!(madt.matches("[I/O APIC]").count(), 1, "{madt}");
    check_dsdt_devices(dsdt, DEVICES);
}

/// Each `Device (Vnnn)` block of the disassembled DSDT names LNRO0005,
/// its window and its interrupt.
fn check_dsdt_devices(dsdt: &str, devices: usize) {
    assert_eq!(dsdt.matches("\"LNRO0005\"").count(), devices, "{dsdt}");
    assert!(dsdt.contains("Name (_S5, Package"), "{dsdt}");
    for i in 0..devices {
        let slot = virtio_mmio_slot(i).unwrap();
        let start = dsdt
            .find(&format!("Device ({})", device_name(i)))
            .unwrap_or_else(|| panic!("no device {i}:\n{dsdt}"));
        let block = &dsdt[start..];
        let block = &block[..block[1..].find("Device (").map_or(block.len(), |e| e + 1)];
        let window = format!("Memory32Fixed (ReadWrite,\n{:>20}0x{:08X},", "", slot.addr);
        assert!(block.contains(&window), "device {i} window:\n{block}");
        assert!(
            block.contains("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"),
            "device {i} interrupt kind:\n{block}"
        );
        let irq = format!("0x{:08X},", slot.irq);
        assert!(block.contains(&irq), "device {i} irq:\n{block}");
    }
}
