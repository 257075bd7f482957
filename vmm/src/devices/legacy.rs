//! The small port-I/O devices that end or time a VM: the exit port (0xf4),
//! the boot-complete marker (0x3f0), the i8042 reset line (0x64) and the
//! HW-reduced ACPI sleep control/status registers (0x3c0/0x3c1).

use std::sync::Arc;

use guest_boot::layout::BOOT_COMPLETE_VALUE;

use super::BusDevice;
use crate::control::VmControl;
use crate::exit::VmOutcome;
use crate::report::Phase;

/// i8042 command that pulses the CPU reset line.
const I8042_RESET: u8 = 0xfe;
/// SLP_EN in the HW-reduced ACPI sleep control register.
const ACPI_SLEEP_ENABLE: u8 = 1 << 5;

/// Port 0xf4: the guest writes its exit status byte here.
pub struct ExitPort(pub Arc<VmControl>);

impl BusDevice for ExitPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&status) = data.first() {
            self.0.request_stop(VmOutcome::GuestStatus(status));
        }
    }
}

/// Port 0x3f0: the guest writes 123 here when it has booted.
pub struct BootMarker(pub Arc<VmControl>);

impl BusDevice for BootMarker {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        if data.first() == Some(&BOOT_COMPLETE_VALUE) {
            self.0.timeline.mark(Phase::BootComplete);
        }
    }
}

/// Ports 0x60 and 0x64: just enough i8042 for a guest to reset the machine.
/// Reads report an empty controller (status 0: no data, input buffer empty).
pub struct I8042(pub Arc<VmControl>);

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        // The bus maps 0x60..=0x64; offset 4 is the command port.
        if offset == 4 && data.first() == Some(&I8042_RESET) {
            self.0.request_stop(VmOutcome::Reset);
        }
    }
}

/// Ports 0x3c0 (sleep control) and 0x3c1 (sleep status) of the FADT.
/// flint offers only S5, so any write with SLP_EN set powers off.
pub struct AcpiSleep(pub Arc<VmControl>);

impl BusDevice for AcpiSleep {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first().is_some_and(|v| v & ACPI_SLEEP_ENABLE != 0) {
            self.0.request_stop(VmOutcome::PowerOff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> Arc<VmControl> {
        Arc::new(VmControl::new(Arc::default()).unwrap())
    }

    #[test]
    fn exit_port_stops_with_the_written_status() {
        let c = control();
        ExitPort(c.clone()).write(0, &[7]);
        assert_eq!(c.outcome(), Some(VmOutcome::GuestStatus(7)));
    }

    #[test]
    fn boot_marker_records_only_the_magic_value() {
        let c = control();
        let mut m = BootMarker(c.clone());
        m.write(0, &[1]);
        assert!(c.timeline.get(Phase::BootComplete).is_none());
        m.write(0, &[123]);
        assert!(c.timeline.get(Phase::BootComplete).is_some());
        assert!(!c.stopping());
    }

    #[test]
    fn i8042_resets_only_on_0xfe_to_the_command_port() {
        let c = control();
        let mut k = I8042(c.clone());
        k.write(0, &[0xfe]);
        k.write(4, &[0xd1]);
        assert!(!c.stopping());
        k.write(4, &[0xfe]);
        assert_eq!(c.outcome(), Some(VmOutcome::Reset));
    }

    #[test]
    fn acpi_sleep_powers_off_on_slp_en() {
        let c = control();
        let mut s = AcpiSleep(c.clone());
        s.write(0, &[5 << 2]);
        assert!(!c.stopping());
        s.write(0, &[(5 << 2) | 0x20]);
        assert_eq!(c.outcome(), Some(VmOutcome::PowerOff));
    }
}
