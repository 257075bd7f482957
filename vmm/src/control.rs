//! The one-way "this VM is over" signal shared by devices, vCPUs and the
//! event loop: the first outcome reported wins, everyone else sees `stopping`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::exit::VmOutcome;
use crate::report::{BootTimeline, Phase};

/// Shared stop state of one VM.
pub struct VmControl {
    outcome: Mutex<Option<VmOutcome>>,
    stopping: AtomicBool,
    stop_evt: EventFd,
    /// The VM's boot timeline.
    pub timeline: Arc<BootTimeline>,
}

impl VmControl {
    /// A control for a VM that is running.
    pub fn new(timeline: Arc<BootTimeline>) -> std::io::Result<Self> {
        Ok(VmControl {
            outcome: Mutex::new(None),
            stopping: AtomicBool::new(false),
            stop_evt: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            timeline,
        })
    }

    /// Ask for the VM to stop with `outcome`; only the first request counts.
    pub fn request_stop(&self, outcome: VmOutcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            self.timeline.mark(Phase::GuestExit);
            *slot = Some(outcome);
            self.stopping.store(true, Ordering::Release);
            // A full eventfd counter still wakes the reader, so an error here loses nothing.
            let _ = self.stop_evt.write(1);
        }
    }

    /// Whether a stop was requested.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The outcome, once a stop was requested.
    pub fn outcome(&self) -> Option<VmOutcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The eventfd that becomes readable on the first stop request.
    pub fn stop_event(&self) -> &EventFd {
        &self.stop_evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_outcome_wins_and_later_ones_are_ignored() {
        let c = VmControl::new(Arc::default()).unwrap();
        assert!(!c.stopping());
        c.request_stop(VmOutcome::GuestStatus(3));
        c.request_stop(VmOutcome::Reset);
        assert!(c.stopping());
        assert_eq!(c.outcome(), Some(VmOutcome::GuestStatus(3)));
        assert_eq!(c.stop_event().read().unwrap(), 1);
        assert!(c.timeline.get(Phase::GuestExit).is_some());
    }
}
