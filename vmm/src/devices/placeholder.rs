//! An empty virtio-mmio slot: the register window answers with the virtio
//! magic, version 2 and device ID 0, which the virtio spec (4.2.3.1.1) tells
//! drivers to ignore. Used by `--placeholder-devices` to exercise the flat
//! bus (ACPI DSDT list, command-line list, MMIO exits) without a device.

use super::BusDevice;

/// "virt" in little-endian: the MagicValue register.
const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;
/// Vendor ID flint reports: "FLNT".
pub const FLINT_VENDOR_ID: u32 = 0x544e_4c46;

/// A virtio-mmio window with no device behind it.
pub struct Placeholder;

impl BusDevice for Placeholder {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value: u32 = match offset {
            0x000 => VIRTIO_MMIO_MAGIC,
            0x004 => 2,
            0x008 => 0,
            0x00c => FLINT_VENDOR_ID,
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read32(offset: u64) -> u32 {
        let mut b = [0u8; 4];
        Placeholder.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identifies_as_virtio_mmio_v2_with_device_id_zero() {
        assert_eq!(read32(0), 0x7472_6976);
        assert_eq!(read32(4), 2);
        assert_eq!(read32(8), 0);
        assert_eq!(read32(0xc), FLINT_VENDOR_ID);
        assert_eq!(read32(0x70), 0);
    }

    #[test]
    fn odd_sized_reads_do_not_panic() {
        let mut b = [0xffu8; 8];
        Placeholder.read(0, &mut b);
        assert_eq!(&b[..4], &0x7472_6976u32.to_le_bytes());
        assert_eq!(&b[4..], &[0; 4]);
        let mut one = [0u8; 1];
        Placeholder.read(0, &mut one);
        assert_eq!(one[0], b'v');
    }
}
