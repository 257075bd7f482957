//! ACPI tables for the flat bus: RSDP, XSDT, FADT (HW-reduced), MADT, DSDT.
//!
//! Follows ACPI 6.5: the RSDP (5.2.5, revision 2) points at the XSDT
//! (5.2.8), which lists the FADT (5.2.9) and the MADT (5.2.12); the FADT's
//! `X_DSDT` points at the DSDT. The FADT declares a hardware-reduced
//! platform (4.1) whose only fixed hardware is the sleep control/status
//! register pair (4.8.3.7) at [`ACPI_SLEEP_CONTROL_PORT`] /
//! [`ACPI_SLEEP_STATUS_PORT`]. The DSDT describes each virtio-mmio window
//! as a `LNRO0005` device (the ID Linux's virtio_mmio driver matches) and
//! carries `\_S5_` so the guest can power off.
//!
//! Everything lives between [`ACPI_START`] and [`HIMEM_START`], inside the
//! e820-reserved legacy hole.

use acpi_tables::aml::{
    Device, Interrupt, Memory32Fixed, Name, Package, Path, ResourceTemplate, Scope,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{
    VirtioMmioSlot, ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT, ACPI_START, HIMEM_START,
    IOAPIC_START, LAPIC_START, VIRTIO_MAX_DEVICES,
};

/// What the ACPI tables describe.
#[derive(Clone, Debug)]
pub struct AcpiConfig<'a> {
    /// Number of vCPUs (one MADT local APIC each, APIC IDs 0..n).
    pub vcpus: u8,
    /// The virtio-mmio devices, in bus order.
    pub devices: &'a [crate::layout::VirtioMmioSlot],
}

/// Why the ACPI tables could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// A VM without vCPUs has nothing to describe.
    #[error("at least one vCPU is needed")]
    NoVcpus,
    /// More devices than the DSDT names.
    #[error("{count} virtio-mmio devices; the DSDT describes at most {max}")]
    TooManyDevices {
        /// Devices given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A window `Memory32Fixed` cannot describe.
    #[error("the virtio-mmio window at {addr:#x} (+{size:#x}) is not below 4 GiB")]
    DeviceAbove4GiB {
        /// Window base.
        addr: u64,
        /// Window size.
        size: u64,
    },
    /// The tables do not fit below 1 MiB.
    #[error("the ACPI tables end at {end:#x}, past the {limit:#x} limit")]
    TooLarge {
        /// Where they would end.
        end: u64,
        /// [`HIMEM_START`].
        limit: u64,
    },
    /// Writing a table into guest memory failed.
    #[error("cannot write the {table} into guest memory")]
    Memory {
        /// The table's signature.
        table: &'static str,
        /// What went wrong.
        #[source]
        source: GuestMemoryError,
    },
}

/// OEM ID in every table header.
pub const OEM_ID: [u8; 6] = *b"FLINT ";
/// OEM table ID in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"FLINTVMM";
/// The FADT's hypervisor vendor identity.
pub const HYPERVISOR_VENDOR: [u8; 8] = *b"FLINTVMM";
/// `_HID` of a virtio-mmio device.
pub const VIRTIO_MMIO_HID: &str = "LNRO0005";
/// DSDT revision (2 or more: 64-bit integers).
const DSDT_REVISION: u8 = 6;
/// Tables start on 16-byte boundaries.
const TABLE_ALIGN: u64 = 16;
/// `\_S5_` sleep type value the guest writes with SLP_EN to power off.
const S5_SLEEP_TYPE: u8 = 5;

/// One table, serialised, with its guest address.
struct Table {
    name: &'static str,
    addr: u64,
    bytes: Vec<u8>,
}

/// The DSDT name of the `index`-th virtio-mmio device: `V000`, `V001`, ...
pub fn device_name(index: usize) -> String {
    format!("V{index:03}")
}

/// Build the tables for `cfg`, write them at [`ACPI_START`], and return the
/// RSDP address.
pub fn write_acpi_tables(
    mem: &GuestMemoryMmap,
    cfg: &AcpiConfig<'_>,
) -> Result<GuestAddress, AcpiError> {
    validate(cfg)?;
    let align = |a: u64| a.next_multiple_of(TABLE_ALIGN);
    let rsdp_len = Rsdp::len() as u64;
    let xsdt_addr = align(ACPI_START + rsdp_len);
    let xsdt_len = 36 + 2 * 8;
    let fadt_addr = align(xsdt_addr + xsdt_len);
    let madt_addr = align(fadt_addr + acpi_tables::fadt::FADT::len() as u64);
    let madt = madt_bytes(cfg.vcpus);
    let dsdt_addr = align(madt_addr + madt.len() as u64);
    let dsdt = dsdt_bytes(cfg.devices);
    let end = dsdt_addr + dsdt.len() as u64;
    if end > HIMEM_START {
        return Err(AcpiError::TooLarge {
            end,
            limit: HIMEM_START,
        });
    }
    let fadt = fadt_bytes(dsdt_addr);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let tables = [
        table("RSDP", ACPI_START, &Rsdp::new(OEM_ID, xsdt_addr)),
        table("XSDT", xsdt_addr, &xsdt),
        Table {
            name: "FADT",
            addr: fadt_addr,
            bytes: fadt,
        },
        Table {
            name: "MADT",
            addr: madt_addr,
            bytes: madt,
        },
        Table {
            name: "DSDT",
            addr: dsdt_addr,
            bytes: dsdt,
        },
    ];
    for t in &tables {
        mem.write_slice(&t.bytes, GuestAddress(t.addr))
            .map_err(|source| AcpiError::Memory {
                table: t.name,
                source,
            })?;
    }
    Ok(GuestAddress(ACPI_START))
}

fn table(name: &'static str, addr: u64, aml: &dyn Aml) -> Table {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    Table { name, addr, bytes }
}

/// Reject configurations the tables cannot describe.
fn validate(cfg: &AcpiConfig<'_>) -> Result<(), AcpiError> {
    if cfg.vcpus == 0 {
        return Err(AcpiError::NoVcpus);
    }
    if cfg.devices.len() > VIRTIO_MAX_DEVICES {
        return Err(AcpiError::TooManyDevices {
            count: cfg.devices.len(),
            max: VIRTIO_MAX_DEVICES,
        });
    }
    for d in cfg.devices {
        let fits = d.addr.checked_add(d.size).is_some_and(|end| end <= 1 << 32);
        if !fits {
            return Err(AcpiError::DeviceAbove4GiB {
                addr: d.addr,
                size: d.size,
            });
        }
    }
    Ok(())
}

/// A one-byte System I/O register at `port`.
fn io_byte_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// The FADT: hardware-reduced, sleep registers, DSDT at `dsdt_addr`.
fn fadt_bytes(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi);
    fadt.sleep_control_reg = io_byte_register(ACPI_SLEEP_CONTROL_PORT);
    fadt.sleep_status_reg = io_byte_register(ACPI_SLEEP_STATUS_PORT);
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_VENDOR).into();
    let mut bytes = Vec::new();
    fadt.finalize().to_aml_bytes(&mut bytes);
    bytes
}

/// The MADT: one enabled local APIC per vCPU (APIC ID = index), one IOAPIC.
fn madt_bytes(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        1,
        LocalInterruptController::Address(LAPIC_START as u32),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, IOAPIC_START as u32, 0));
    let mut bytes = Vec::new();
    madt.to_aml_bytes(&mut bytes);
    bytes
}

/// AML for one virtio-mmio device named `name`.
fn device_aml(name: &str, index: usize, slot: &VirtioMmioSlot, out: &mut Vec<u8>) {
    let window = Memory32Fixed::new(true, slot.addr as u32, slot.size as u32);
    let irq = Interrupt::new(true, true, false, false, slot.irq);
    let crs = ResourceTemplate::new(vec![&window, &irq]);
    let hid = Name::new("_HID".into(), &VIRTIO_MMIO_HID);
    let uid = Name::new("_UID".into(), &(index as u32));
    let crs = Name::new("_CRS".into(), &crs);
    Device::new(Path::new(name), vec![&hid, &uid, &crs]).to_aml_bytes(out);
}

/// The DSDT: `\_SB_` with one device per virtio-mmio slot, and `\_S5_`.
fn dsdt_bytes(devices: &[VirtioMmioSlot]) -> Vec<u8> {
    let mut children = Vec::new();
    for (i, slot) in devices.iter().enumerate() {
        device_aml(&device_name(i), i, slot, &mut children);
    }
    let mut aml = if devices.is_empty() {
        Vec::new()
    } else {
        Scope::raw("\\_SB_".into(), children)
    };
    let s5 = Package::new(vec![&S5_SLEEP_TYPE, &0u8, &0u8, &0u8]);
    Name::new("_S5_".into(), &s5).to_aml_bytes(&mut aml);
    let mut dsdt = Sdt::new(*b"DSDT", 36, DSDT_REVISION, OEM_ID, OEM_TABLE_ID, 1);
    dsdt.append_slice(&aml);
    dsdt.as_slice().to_vec()
}

#[cfg(test)]
mod tests;
