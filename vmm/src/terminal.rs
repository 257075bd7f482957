//! Terminal mode for an interactive guest console: stdin goes raw-ish
//! (no line buffering, no echo: the guest echoes) while the VM runs, and the
//! saved mode is put back on every exit path — normal return, error, panic,
//! and the signals that end flint (SIGINT, SIGTERM, SIGHUP, SIGQUIT).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static SAVED: OnceLock<libc::termios> = OnceLock::new();
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Restores the terminal when dropped.
pub struct TerminalGuard(());

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Put stdin in non-canonical, no-echo mode if it is a terminal.
/// Returns a guard that restores it; `None` when stdin is not a terminal.
pub fn enter_raw_mode() -> Option<TerminalGuard> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return None;
    }
    // SAFETY: an all-zero termios is a valid value to be overwritten by tcgetattr.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `tio` is a valid, writable termios.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut tio) } != 0 {
        return None;
    }
    let _ = SAVED.set(tio);
    install_signal_restore();
    let mut raw = tio;
    // ISIG stays on so ^C still ends flint (and the handler restores the mode).
    raw.c_lflag &= !(libc::ICANON | libc::ECHO);
    raw.c_iflag &= !(libc::ICRNL | libc::IXON);
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    // SAFETY: `raw` is a valid termios derived from the current one.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
        return None;
    }
    ACTIVE.store(true, Ordering::SeqCst);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    Some(TerminalGuard(()))
}

/// Put the saved mode back (idempotent, async-signal-safe).
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        if let Some(tio) = SAVED.get() {
            // SAFETY: `tio` is the mode read by tcgetattr; tcsetattr is async-signal-safe.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, tio) };
        }
    }
}

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    restore();
    // SAFETY: resetting to the default action and re-raising are async-signal-safe;
    // the process then dies of `sig` as it would have without us.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_signal_restore() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: `on_fatal_signal` only calls async-signal-safe functions.
        unsafe { libc::signal(sig, on_fatal_signal as *const () as libc::sighandler_t) };
    }
}
