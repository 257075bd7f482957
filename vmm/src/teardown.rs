//! Leaving without waiting for KVM to tear the VM down.
//!
//! Closing a VM's last file descriptor destroys it synchronously, and on this
//! project's nested (PVM) hosts that takes ~13 ms whenever a device sits on
//! a KVM I/O bus (a coalesced-I/O zone, an ioeventfd, the in-kernel PIC):
//! measured with a raw-KVM C program, close(vm_fd) took 13.8 ms with one
//! coalesced zone and 0.3 ms without. For a guest that lives 2 ms that would
//! be most of flint's run, and the process exit would wait for it.
//!
//! So, once everything the user sees is written, flint hands the VM to a
//! *reaper*: a process created with `CLONE_VM | CLONE_FILES`, sharing
//! flint's memory and descriptor table, that sleeps until flint has exited
//! (`PR_SET_PDEATHSIG`) and then exits itself. The last reference to the VM,
//! its vCPUs and guest RAM then goes with the reaper, so the teardown runs
//! after flint's parent has already seen flint's exit status. Standard
//! input, output and error are closed first, so a parent reading flint's
//! output sees end-of-file when flint exits, not when the reaper does.

use std::io::Write;

/// The reaper's stack: it makes three system calls.
const REAPER_STACK: usize = 16 * 1024;

/// Flush and close stdio, start the reaper, and exit with `code`.
pub fn exit_detached(code: u8) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: nothing in this process reads or writes stdio after this point.
    unsafe {
        libc::close(libc::STDIN_FILENO);
        libc::close(libc::STDOUT_FILENO);
        libc::close(libc::STDERR_FILENO);
    }
    start_reaper();
    // SAFETY: _exit ends the process at once; nothing needs to run on the way.
    unsafe { libc::_exit(i32::from(code)) }
}

fn start_reaper() {
    // SAFETY: a fresh anonymous private mapping, checked before use.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REAPER_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return;
    }
    // SAFETY: getpid has no memory effects.
    let parent = unsafe { libc::getpid() } as usize;
    // SAFETY: `stack` is ours, 16-byte-aligned at the top; `reaper` makes only raw
    // system calls (it shares our memory). If clone fails, flint pays the teardown.
    unsafe {
        let top = stack.cast::<u8>().add(REAPER_STACK).cast::<libc::c_void>();
        libc::clone(
            reaper,
            top,
            libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_FS | libc::SIGCHLD,
            parent as *mut libc::c_void,
        );
    }
}

/// Sleep until the parent is gone, then exit, dropping the last reference
/// to the VM. Raw system calls only.
extern "C" fn reaper(parent: *mut libc::c_void) -> libc::c_int {
    // SAFETY: plain system calls with scalar arguments; the process exits
    // with SYS_exit without returning into the shared address space's code.
    unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The parent may have exited before the death signal was armed.
        if libc::syscall(libc::SYS_getppid) as usize == parent as usize {
            libc::syscall(libc::SYS_pause);
        }
        libc::syscall(libc::SYS_exit, 0);
    }
    0
}
