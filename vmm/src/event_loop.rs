//! The event-loop thread (flint's main thread once the vCPUs run): waits
//! with epoll on the VM's stop event, stdin and any device event sources
//! (queue notifications, backend completions), feeds stdin to the UART,
//! runs the periodic tick and enforces `--timeout`.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::control::VmControl;
use crate::devices::virtio::{InputRouter, StdinFraming};
use crate::exit::VmOutcome;
use crate::report::Phase;

const TOKEN_STOP: u64 = 0;
const TOKEN_STDIN: u64 = 1;
/// Tokens from here on index [`EventLoop::sources`].
const TOKEN_FIRST_SOURCE: u64 = 2;
/// Longest wait between two ticks.
pub const TICK_MS: i32 = 20;
/// How long to wait before offering more input to a full UART FIFO.
const RX_RETRY_MS: i32 = 5;

/// Why the event loop could not run.
#[derive(Debug, thiserror::Error)]
#[error("event loop: {0}")]
pub struct EventLoopError(#[source] std::io::Error);

/// A file descriptor to wait on and what to do when it is readable
/// (a device's queue-notification eventfd, a backend's completion fd).
pub struct EventSource {
    /// The descriptor, polled for input.
    pub fd: RawFd,
    /// Edge-triggered: for a backend that may leave data unread (a tap
    /// whose guest has no receive buffers), so it does not wake the loop
    /// until new data arrives.
    pub edge_triggered: bool,
    /// Runs on the event-loop thread each time `fd` is readable; it must
    /// consume what made it readable.
    pub on_ready: Box<dyn FnMut()>,
}

/// Host input waiting for the UART, and whether stdin is still polled.
struct Stdin {
    /// stdin can still deliver bytes (not at EOF; pollable, or framed).
    open: bool,
    /// stdin is in the epoll set; it leaves while input is pending, so a
    /// level-triggered stdin cannot spin the loop while the FIFO is full.
    polling: bool,
    /// Whether epoll accepted stdin (regular files and /dev/null are refused).
    pollable: bool,
    pending: Vec<u8>,
    framing: StdinFraming,
}

/// The loop's state.
pub struct EventLoop<'a> {
    epoll: Epoll,
    control: &'a VmControl,
    input: &'a InputRouter,
    tick: Option<&'a dyn Fn()>,
    sources: Vec<EventSource>,
    stdin: Stdin,
}

impl<'a> EventLoop<'a> {
    /// A loop for `control`'s VM feeding stdin to `input`; `tick`, when
    /// given, runs on every wake-up before the events are served, and at
    /// least every [`TICK_MS`] (it replays coalesced UART writes, bounding
    /// their latency and keeping them ahead of the queue output they
    /// preceded).
    pub fn new(
        control: &'a VmControl,
        input: &'a InputRouter,
        tick: Option<&'a dyn Fn()>,
        sources: Vec<EventSource>,
    ) -> Result<Self, EventLoopError> {
        let epoll = Epoll::new().map_err(EventLoopError)?;
        let add = |fd: RawFd, token: u64| {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )
        };
        add(control.stop_event().as_raw_fd(), TOKEN_STOP).map_err(EventLoopError)?;
        for (i, source) in sources.iter().enumerate() {
            let mut events = EventSet::IN;
            if source.edge_triggered {
                events |= EventSet::EDGE_TRIGGERED;
            }
            let event = EpollEvent::new(events, TOKEN_FIRST_SOURCE + i as u64);
            epoll
                .ctl(ControlOperation::Add, source.fd, event)
                .map_err(EventLoopError)?;
        }
        // Regular files and /dev/null cannot be polled (EPERM): then the guest gets no
        // input, except a one-shot command, whose stdin is read whenever its frames are out.
        let pollable = add(libc::STDIN_FILENO, TOKEN_STDIN).is_ok();
        let framing = input.framing;
        let stdin = Stdin {
            open: pollable || framing == StdinFraming::Frames,
            polling: pollable,
            pollable,
            pending: Vec::new(),
            framing,
        };
        Ok(EventLoop {
            epoll,
            control,
            input,
            tick,
            sources,
            stdin,
        })
    }

    /// Run until the VM stops or `deadline` passes; returns the outcome.
    pub fn run(&mut self, deadline: Option<Instant>) -> Result<VmOutcome, EventLoopError> {
        let mut events = [EpollEvent::default(); 16];
        loop {
            if let Some(outcome) = self.control.outcome() {
                return Ok(outcome);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.control.request_stop(VmOutcome::Timeout);
                continue;
            }
            let n = match self.epoll.wait(self.wait_ms(deadline), &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(EventLoopError(e)),
            };
            // Before the events: UART bytes the guest wrote (coalesced) before it notified a
            // queue must reach stdout before what the queue carries.
            if let Some(tick) = self.tick {
                tick();
            }
            for ev in &events[..n] {
                self.dispatch(ev.data());
            }
            self.feed_input();
        }
    }

    /// How long epoll may sleep: until the deadline, a tick, or a retry of
    /// pending input, whichever comes first (-1: no limit).
    fn wait_ms(&self, deadline: Option<Instant>) -> i32 {
        let mut wait = deadline.map_or(-1, ms_until);
        if !self.stdin.pending.is_empty() {
            wait = cap_wait(wait, RX_RETRY_MS);
        }
        if self.tick.is_some() {
            wait = cap_wait(wait, TICK_MS);
        }
        wait
    }

    fn dispatch(&mut self, token: u64) {
        match token {
            TOKEN_STOP => {}
            TOKEN_STDIN if self.stdin.open => self.stdin.read(),
            TOKEN_STDIN => {}
            t => {
                if let Some(source) = usize::try_from(t - TOKEN_FIRST_SOURCE)
                    .ok()
                    .and_then(|i| self.sources.get_mut(i))
                {
                    (source.on_ready)();
                }
            }
        }
    }

    /// Offer pending input to the guest's console, and poll stdin only
    /// while the console has taken everything read so far.
    fn feed_input(&mut self) {
        let stdin = &mut self.stdin;
        if stdin.open && !stdin.pollable && stdin.pending.is_empty() {
            // A file: reading never blocks.
            stdin.read();
        }
        // A one-shot command's init opens its consoles in raw mode, then marks boot-complete;
        // bytes that came earlier would meet the tty's default line discipline (echo, ^C, ^S).
        let gated = stdin.framing == StdinFraming::Frames
            && self.control.timeline.get(Phase::BootComplete).is_none();
        if !stdin.pending.is_empty() && !gated {
            let taken = self.input.feed(&stdin.pending);
            stdin.pending.drain(..taken);
        }
        let want = stdin.open && stdin.pollable && stdin.pending.is_empty();
        if want != stdin.polling {
            let op = if want {
                ControlOperation::Add
            } else {
                ControlOperation::Delete
            };
            let event = EpollEvent::new(EventSet::IN, TOKEN_STDIN);
            if self.epoll.ctl(op, libc::STDIN_FILENO, event).is_ok() {
                stdin.polling = want;
            }
        }
    }
}

impl Stdin {
    /// Read what stdin has into `pending` (framed if so configured); at end of file or on
    /// an error, stop reading it (a framed stream then ends with its end-of-file frame).
    fn read(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        // SAFETY: `buf` is a valid writable buffer of the given length.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        let interrupted =
            || std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        let data = match usize::try_from(n) {
            Ok(n) if n > 0 => &buf[..n],
            Err(_) if interrupted() => return,
            _ => {
                self.open = false;
                &[][..]
            }
        };
        match self.framing {
            StdinFraming::Raw => self.pending.extend_from_slice(data),
            StdinFraming::Frames => crate::oneshot::frame(data, &mut self.pending),
        }
    }
}

/// `wait` (-1: forever) shortened to at most `cap` milliseconds.
fn cap_wait(wait: i32, cap: i32) -> i32 {
    if wait < 0 {
        cap
    } else {
        wait.min(cap)
    }
}

fn ms_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    // Round up so the loop does not spin on a sub-millisecond remainder.
    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use super::*;

    #[test]
    fn the_tick_runs_before_the_events_that_woke_the_loop() {
        let control = Arc::new(VmControl::new(Arc::default()).unwrap());
        let input = InputRouter {
            serial: None,
            console: None,
            framing: StdinFraming::Raw,
        };
        let order = Rc::new(RefCell::new(Vec::new()));
        let evt = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        evt.write(1).unwrap();
        let source = {
            let (order, evt, control) = (order.clone(), evt.clone(), control.clone());
            EventSource {
                fd: evt.as_raw_fd(),
                edge_triggered: false,
                on_ready: Box::new(move || {
                    let _ = evt.read();
                    order.borrow_mut().push("event");
                    control.request_stop(VmOutcome::PowerOff);
                }),
            }
        };
        let tick_order = order.clone();
        let tick = move || tick_order.borrow_mut().push("tick");
        let mut event_loop = EventLoop::new(&control, &input, Some(&tick), vec![source]).unwrap();
        let outcome = event_loop.run(None).unwrap();
        assert_eq!(outcome, VmOutcome::PowerOff);
        let order = order.borrow();
        let first_event = order.iter().position(|&o| o == "event").unwrap();
        assert!(
            first_event > 0 && order[first_event - 1] == "tick",
            "{order:?}"
        );
    }
}
