//! An address-ordered bus of devices, one type for port I/O and MMIO.
//!
//! Lookups are a binary search over sorted, non-overlapping ranges; no
//! allocation happens on the access path.

use std::sync::{Arc, Mutex};

/// A device reachable through guest port I/O or MMIO accesses.
pub trait BusDevice: Send {
    /// Guest reads `data.len()` bytes at `offset` into the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest writes `data` at `offset` into the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
    /// End of a batch of accesses (e.g. a `rep outsb`): push buffered output.
    fn flush(&mut self) {}
}

/// A shared device handle, as stored on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why a device could not be placed on a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The new range intersects one already taken.
    #[error("range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap {
        /// Base of the rejected range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// Zero-length or wrapping range.
    #[error("invalid range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Base of the rejected range.
        base: u64,
        /// Its length.
        len: u64,
    },
}

struct Entry {
    base: u64,
    len: u64,
    device: SharedDevice,
}

/// Devices keyed by address range.
#[derive(Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl Bus {
    /// Place `device` at `base..base+len`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        if self
            .entries
            .iter()
            .any(|e| base < e.base + e.len && e.base < end)
        {
            return Err(BusError::Overlap { base, len });
        }
        let at = self.entries.partition_point(|e| e.base < base);
        self.entries.insert(at, Entry { base, len, device });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(&Entry, u64)> {
        let i = self
            .entries
            .partition_point(|e| e.base <= addr)
            .checked_sub(1)?;
        let e = &self.entries[i];
        (addr - e.base < e.len).then_some((e, addr - e.base))
    }

    /// Dispatch a read; returns false (data untouched) when nothing is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((entry, offset)) = self.find(addr) else {
            return false;
        };
        let mut dev = lock(&entry.device);
        dev.read(offset, data);
        true
    }

    /// Dispatch a write; returns false when nothing is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        self.write_repeated(addr, data.len(), data)
    }

    /// Dispatch a string write (`rep outs`): `data` holds consecutive
    /// accesses of `size` bytes each, all to `addr`. The device is locked
    /// once and flushed once for the whole batch.
    pub fn write_repeated(&self, addr: u64, size: usize, data: &[u8]) -> bool {
        let Some((entry, offset)) = self.find(addr) else {
            return false;
        };
        let mut dev = lock(&entry.device);
        for chunk in data.chunks(size.max(1)) {
            dev.write(offset, chunk);
        }
        dev.flush();
        true
    }

    /// Dispatch a write without ending the batch: [`Bus::flush`] follows
    /// a run of these (coalesced writes replayed from KVM's ring).
    pub fn write_unflushed(&self, addr: u64, data: &[u8]) -> bool {
        let Some((entry, offset)) = self.find(addr) else {
            return false;
        };
        lock(&entry.device).write(offset, data);
        true
    }

    /// End a batch of [`Bus::write_unflushed`] calls to the device at `addr`.
    pub fn flush(&self, addr: u64) {
        if let Some((entry, _)) = self.find(addr) {
            lock(&entry.device).flush();
        }
    }

    /// Dispatch a string read (`rep ins`) of `size`-byte accesses.
    pub fn read_repeated(&self, addr: u64, size: usize, data: &mut [u8]) -> bool {
        let Some((entry, offset)) = self.find(addr) else {
            return false;
        };
        let mut dev = lock(&entry.device);
        for chunk in data.chunks_mut(size.max(1)) {
            dev.read(offset, chunk);
        }
        true
    }
}

/// Lock a device, recovering from a poisoned lock: a device that panicked
/// mid-access is in whatever state it left, which is no worse than the guest
/// seeing a failed access.
fn lock(device: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
        flushes: usize,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
        fn flush(&mut self) {
            self.flushes += 1;
        }
    }

    fn bus_with(base: u64, len: u64) -> (Bus, Arc<Mutex<Recorder>>) {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::default();
        bus.insert(dev.clone(), base, len).unwrap();
        (bus, dev)
    }

    #[test]
    fn accesses_reach_the_device_with_the_offset_inside_its_range() {
        let (bus, dev) = bus_with(0x3f8, 8);
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(dev.lock().unwrap().writes, vec![(0, vec![b'x'])]);
    }

    #[test]
    fn addresses_outside_every_range_are_not_claimed() {
        let (bus, _) = bus_with(0x3f8, 8);
        let mut b = [0u8; 1];
        assert!(!bus.read(0x3f7, &mut b));
        assert!(!bus.read(0x400, &mut b));
        assert!(!bus.write(0, &[1]));
    }

    #[test]
    fn overlapping_and_empty_ranges_are_refused() {
        let (mut bus, dev) = bus_with(0x100, 0x10);
        assert!(matches!(
            bus.insert(dev.clone(), 0x10f, 1),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), 0xf0, 0x11),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), 0x200, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(bus.insert(dev, 0x110, 1).is_ok());
    }

    #[test]
    fn a_string_write_is_split_into_accesses_and_flushed_once() {
        let (bus, dev) = bus_with(0x3f8, 8);
        assert!(bus.write_repeated(0x3f8, 1, b"abc"));
        let d = dev.lock().unwrap();
        assert_eq!(d.writes.len(), 3);
        assert_eq!(d.writes[2], (0, vec![b'c']));
        assert_eq!(d.flushes, 1);
    }
}
