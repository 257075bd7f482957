//! The event-loop thread (flint's main thread once the vCPUs run): waits on
//! the VM's stop event and stdin with epoll, feeds stdin to the UART, and
//! enforces `--timeout`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::control::VmControl;
use crate::devices::serial::SerialDevice;
use crate::exit::VmOutcome;

const TOKEN_STOP: u64 = 1;
const TOKEN_STDIN: u64 = 2;
/// Longest wait between two ticks.
pub const TICK_MS: i32 = 20;
/// How long to wait before offering more input to a full UART FIFO.
const RX_RETRY_MS: i32 = 5;

/// Why the event loop could not run.
#[derive(Debug, thiserror::Error)]
#[error("event loop: {0}")]
pub struct EventLoopError(#[source] std::io::Error);

/// Run until the VM stops or `deadline` passes; returns the outcome.
///
/// `tick`, when given, runs after every wake-up and at least every
/// [`TICK_MS`]: it replays coalesced UART writes, bounding their latency.
pub fn run(
    control: &VmControl,
    serial: &Arc<Mutex<SerialDevice>>,
    deadline: Option<Instant>,
    tick: Option<&dyn Fn()>,
) -> Result<VmOutcome, EventLoopError> {
    let epoll = Epoll::new().map_err(EventLoopError)?;
    let add = |fd: RawFd, token: u64| {
        epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(EventSet::IN, token),
        )
    };
    add(control.stop_event().as_raw_fd(), TOKEN_STOP).map_err(EventLoopError)?;
    // Regular files and /dev/null cannot be polled (EPERM): then the guest gets no input.
    let mut stdin_open = add(libc::STDIN_FILENO, TOKEN_STDIN).is_ok();
    // Whether stdin is in the epoll set: it leaves while the UART's FIFO is
    // full, so a level-triggered stdin cannot spin the loop.
    let mut polling_stdin = stdin_open;
    let mut pending = Vec::new();
    let mut events = [EpollEvent::default(); 4];
    loop {
        if let Some(outcome) = control.outcome() {
            return Ok(outcome);
        }
        let mut wait_ms = deadline.map_or(-1, ms_until);
        if !pending.is_empty() {
            wait_ms = cap_wait(wait_ms, RX_RETRY_MS);
        }
        if tick.is_some() {
            wait_ms = cap_wait(wait_ms, TICK_MS);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            control.request_stop(VmOutcome::Timeout);
            continue;
        }
        let n = match epoll.wait(wait_ms, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(EventLoopError(e)),
        };
        for ev in &events[..n] {
            if ev.data() == TOKEN_STDIN && stdin_open {
                stdin_open = read_stdin(&mut pending);
            }
        }
        if let Some(tick) = tick {
            tick();
        }
        if !pending.is_empty() {
            let taken = serial
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .enqueue_input(&pending);
            pending.drain(..taken);
        }
        let want_stdin = stdin_open && pending.is_empty();
        if want_stdin != polling_stdin {
            let op = if want_stdin {
                ControlOperation::Add
            } else {
                ControlOperation::Delete
            };
            let event = EpollEvent::new(EventSet::IN, TOKEN_STDIN);
            if epoll.ctl(op, libc::STDIN_FILENO, event).is_ok() {
                polling_stdin = want_stdin;
            }
        }
    }
}

/// Read what stdin has; false on EOF or error.
fn read_stdin(pending: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is a valid writable buffer of the given length.
    let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        n if n > 0 => {
            pending.extend_from_slice(&buf[..n as usize]);
            true
        }
        _ => false,
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
