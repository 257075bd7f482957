//! The clock-sample window at `CLOCK_PROBE_START`: a guest writes its own
//! clock reading (kvmclock nanoseconds) as one 8-byte MMIO write, and flint
//! records it with the host's CLOCK_MONOTONIC at that exit, for the boot
//! report's `clock_samples`. Comparing the two over an interval measures
//! how far the guest's clock drifts from the host's.

use std::sync::Arc;

use super::BusDevice;
use crate::report::BootTimeline;

/// The clock-sample window.
pub struct ClockProbe(pub Arc<BootTimeline>);

impl BusDevice for ClockProbe {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Only a whole 8-byte write at the start counts; anything else is ignored.
        if let (0, Ok(bytes)) = (offset, <[u8; 8]>::try_from(data)) {
            self.0
                .add_clock_sample(u64::from_le_bytes(bytes), crate::time::monotonic_ns());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_8_byte_writes_at_offset_0_are_recorded_with_the_host_time() {
        let timeline = Arc::new(BootTimeline::default());
        let mut probe = ClockProbe(timeline.clone());
        probe.write(0, &42u64.to_le_bytes());
        probe.write(8, &1u64.to_le_bytes());
        probe.write(0, &[1, 2, 3, 4]);
        let samples = timeline.clock_samples();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].0, 42);
        assert!(samples[0].1 > 0);
    }
}
