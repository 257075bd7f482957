//! A userspace IOAPIC for KVM's split irqchip (LAPIC in the kernel, IOAPIC
//! here), at 0xFEC0_0000 with 24 pins.
//!
//! Why not KVM's in-kernel PIC + IOAPIC: on this project's nested (PVM)
//! hosts tearing those down costs ~14 ms at process exit, which would be
//! most of a short-lived VM's life; with the split irqchip teardown is free.
//!
//! Devices never call into this model to raise an interrupt: each device
//! line is an irqfd on GSI = pin, and this model only keeps KVM's GSI
//! routing table in step with the redirection table, turning every unmasked
//! pin into an MSI to the LAPIC it names. Pins are edge-triggered, as the
//! DSDT declares them; a guest that programs a level-triggered pin gets edge
//! delivery (there is no Remote IRR to clear), which flint's devices, which
//! pulse their lines, tolerate.

use super::BusDevice;

/// Number of redirection entries (pins); also the GSIs reserved for them.
pub const IOAPIC_PINS: usize = 24;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDIRECTION_BASE: u8 = 0x10;
/// Version 0x11 (82093AA), highest redirection entry index in bits 16-23.
const VERSION: u32 = 0x11 | ((IOAPIC_PINS as u32 - 1) << 16);
const ENTRY_MASKED: u64 = 1 << 16;
/// Bits the guest may write in a redirection entry (delivery status and
/// Remote IRR, bits 12 and 14, are read-only).
const ENTRY_WRITABLE: u64 = !((1 << 12) | (1 << 14));

/// An MSI as KVM's routing table takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Low 32 bits of the address (0xFEE0_0000 | destination).
    pub address_lo: u32,
    /// High 32 bits (0 for xAPIC destinations).
    pub address_hi: u32,
    /// Data: vector, delivery mode, trigger mode.
    pub data: u32,
}

/// Where the IOAPIC installs its routes (KVM's GSI routing table in flint).
pub trait MsiRouter: Send {
    /// Route `gsi` to `msi`, or remove its route when `None`.
    fn set_route(&mut self, gsi: u32, msi: Option<MsiMessage>);
}

/// The MSI a redirection entry asks for, or `None` while it is masked.
pub fn entry_to_msi(entry: u64) -> Option<MsiMessage> {
    if entry & ENTRY_MASKED != 0 {
        return None;
    }
    let vector = (entry & 0xff) as u32;
    let delivery_mode = ((entry >> 8) & 0x7) as u32;
    let logical = ((entry >> 11) & 1) as u32;
    let level = ((entry >> 15) & 1) as u32;
    let dest = ((entry >> 56) & 0xff) as u32;
    Some(MsiMessage {
        address_lo: 0xfee0_0000 | (dest << 12) | (logical << 2),
        address_hi: 0,
        // A level-triggered message carries the assert bit (14) as well.
        data: vector | (delivery_mode << 8) | (level << 15) | (level << 14),
    })
}

/// The IOAPIC register file.
pub struct Ioapic<R: MsiRouter> {
    id: u32,
    select: u8,
    entries: [u64; IOAPIC_PINS],
    router: R,
}

impl<R: MsiRouter> Ioapic<R> {
    /// An IOAPIC after reset: every pin masked, no routes.
    pub fn new(router: R) -> Self {
        Ioapic {
            id: 0,
            select: 0,
            entries: [ENTRY_MASKED; IOAPIC_PINS],
            router,
        }
    }

    fn read_register(&self) -> u32 {
        match self.select {
            REG_ID => self.id,
            REG_VERSION => VERSION,
            REG_ARBITRATION => self.id,
            r if r >= REG_REDIRECTION_BASE => match self
                .entries
                .get(usize::from((r - REG_REDIRECTION_BASE) / 2))
            {
                Some(entry) if r % 2 == 0 => *entry as u32,
                Some(entry) => (*entry >> 32) as u32,
                None => 0,
            },
            _ => 0,
        }
    }

    fn write_register(&mut self, value: u32) {
        match self.select {
            REG_ID => self.id = value & 0x0f00_0000,
            r if r >= REG_REDIRECTION_BASE => {
                let pin = usize::from((r - REG_REDIRECTION_BASE) / 2);
                let Some(entry) = self.entries.get(pin).copied() else {
                    return;
                };
                let updated = if r % 2 == 0 {
                    (entry & !0xffff_ffff) | u64::from(value)
                } else {
                    (entry & 0xffff_ffff) | (u64::from(value) << 32)
                };
                let updated = (updated & ENTRY_WRITABLE) | (entry & !ENTRY_WRITABLE);
                self.entries[pin] = updated;
                if entry_to_msi(entry) != entry_to_msi(updated) {
                    self.router.set_route(pin as u32, entry_to_msi(updated));
                }
            }
            _ => {}
        }
    }
}

impl<R: MsiRouter> BusDevice for Ioapic<R> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            IOREGSEL => u32::from(self.select),
            IOWIN => self.read_register(),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(bytes);
        match offset {
            IOREGSEL => self.select = value as u8,
            IOWIN => self.write_register(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Routes(Vec<(u32, Option<MsiMessage>)>);

    impl MsiRouter for Routes {
        fn set_route(&mut self, gsi: u32, msi: Option<MsiMessage>) {
            self.0.push((gsi, msi));
        }
    }

    fn write_reg(io: &mut Ioapic<Routes>, reg: u8, value: u32) {
        io.write(IOREGSEL, &[reg]);
        io.write(IOWIN, &value.to_le_bytes());
    }

    fn read_reg(io: &mut Ioapic<Routes>, reg: u8) -> u32 {
        io.write(IOREGSEL, &[reg]);
        let mut b = [0u8; 4];
        io.read(IOWIN, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn version_reports_24_pins() {
        let mut io = Ioapic::new(Routes::default());
        assert_eq!(read_reg(&mut io, REG_VERSION), 0x0017_0011);
    }

    #[test]
    fn pins_start_masked_with_no_routes() {
        let mut io = Ioapic::new(Routes::default());
        assert_eq!(read_reg(&mut io, 0x10) & (1 << 16), 1 << 16);
        assert!(io.router.0.is_empty());
    }

    #[test]
    fn unmasking_a_pin_routes_its_gsi_to_the_destination_lapic() {
        let mut io = Ioapic::new(Routes::default());
        write_reg(&mut io, 0x10 + 2 * 4 + 1, 3 << 24); // pin 4, destination APIC 3
        write_reg(&mut io, 0x10 + 2 * 4, 0x31); // vector 0x31, fixed, physical, edge, unmasked
        let (gsi, msi) = *io.router.0.last().unwrap();
        assert_eq!(gsi, 4);
        assert_eq!(
            msi,
            Some(MsiMessage {
                address_lo: 0xfee0_3000,
                address_hi: 0,
                data: 0x31
            })
        );
        assert_eq!(read_reg(&mut io, 0x18), 0x31);
        assert_eq!(read_reg(&mut io, 0x19), 3 << 24);
    }

    #[test]
    fn masking_a_pin_removes_its_route_and_rewrites_are_not_repeated() {
        let mut io = Ioapic::new(Routes::default());
        write_reg(&mut io, 0x10, 0x40);
        write_reg(&mut io, 0x10, 0x40);
        write_reg(&mut io, 0x10, 0x40 | (1 << 16));
        assert_eq!(io.router.0, vec![(0, entry_to_msi(0x40)), (0, None)]);
    }

    #[test]
    fn level_triggered_entries_carry_trigger_and_assert_bits() {
        let msi = entry_to_msi(0x41 | (1 << 15) | (1 << 11)).unwrap();
        assert_eq!(msi.data, 0x41 | (1 << 15) | (1 << 14));
        assert_eq!(msi.address_lo, 0xfee0_0004);
    }

    #[test]
    fn read_only_bits_and_out_of_range_registers_are_ignored() {
        let mut io = Ioapic::new(Routes::default());
        write_reg(&mut io, 0x10, 0x30 | (1 << 12) | (1 << 14));
        assert_eq!(read_reg(&mut io, 0x10), 0x30);
        write_reg(&mut io, 0x10 + 2 * 24, 0x55); // pin 24 does not exist
        assert_eq!(read_reg(&mut io, 0x10 + 2 * 24), 0);
        write_reg(&mut io, 0xff, 1);
        let mut odd = [0u8; 8];
        io.read(0x10, &mut odd);
        io.write(0x33, &[1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
