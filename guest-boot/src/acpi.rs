//! ACPI tables for the flat bus: RSDP, XSDT, FADT (HW-reduced), MADT, DSDT.

/// What the ACPI tables describe.
#[derive(Clone, Debug)]
pub struct AcpiConfig<'a> {
    /// Number of vCPUs (one MADT local APIC each, APIC IDs 0..n).
    pub vcpus: u8,
    /// The virtio-mmio devices, in bus order.
    pub devices: &'a [crate::layout::VirtioMmioSlot],
}
