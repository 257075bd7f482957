//! Interrupt plumbing for the split irqchip: the LAPIC stays in KVM, the
//! IOAPIC model (`devices::ioapic`) lives in flint, and this module keeps
//! KVM's GSI routing table in step with it, so device irqfds on GSI = pin
//! reach the guest as MSIs without leaving the kernel.

use std::sync::Arc;

use kvm_bindings::{
    kvm_enable_cap, kvm_irq_routing_entry, KvmIrqRouting, KVM_CAP_SPLIT_IRQCHIP,
    KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;

use super::vm::VmError;
use crate::devices::ioapic::{MsiMessage, MsiRouter, IOAPIC_PINS};

/// KVM's real-mode TSS, placed in the MMIO hole (needed on Intel hosts).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Put the LAPIC in the kernel and leave PIC/IOAPIC to userspace, reserving
/// the first [`IOAPIC_PINS`] GSIs for the IOAPIC.
pub fn enable_split_irqchip(vm: &VmFd) -> Result<(), VmError> {
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(|source| VmError::Ioctl {
            what: "KVM_SET_TSS_ADDR",
            source,
        })?;
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    cap.args[0] = IOAPIC_PINS as u64;
    vm.enable_cap(&cap).map_err(|source| VmError::Ioctl {
        what: "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)",
        source,
    })
}

/// The IOAPIC's routes, installed into KVM as one GSI routing table.
pub struct KvmMsiRouter {
    vm: Arc<VmFd>,
    routes: [Option<MsiMessage>; IOAPIC_PINS],
}

impl KvmMsiRouter {
    /// A router with no routes.
    pub fn new(vm: Arc<VmFd>) -> Self {
        KvmMsiRouter {
            vm,
            routes: [None; IOAPIC_PINS],
        }
    }

    fn install(&self) -> Result<(), String> {
        let entries: Vec<kvm_irq_routing_entry> = self
            .routes
            .iter()
            .enumerate()
            .filter_map(|(gsi, msi)| msi.map(|m| msi_entry(gsi as u32, m)))
            .collect();
        let table = KvmIrqRouting::from_entries(&entries).map_err(|e| format!("{e:?}"))?;
        self.vm.set_gsi_routing(&table).map_err(|e| e.to_string())
    }
}

fn msi_entry(gsi: u32, msi: MsiMessage) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = msi.address_lo;
    entry.u.msi.address_hi = msi.address_hi;
    entry.u.msi.data = msi.data;
    entry
}

impl MsiRouter for KvmMsiRouter {
    fn set_route(&mut self, gsi: u32, msi: Option<MsiMessage>) {
        let Some(slot) = self.routes.get_mut(gsi as usize) else {
            return;
        };
        *slot = msi;
        if let Err(e) = self.install() {
            log::error!("KVM_SET_GSI_ROUTING for GSI {gsi} failed: {e}");
        }
    }
}
