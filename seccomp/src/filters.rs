//! flint's allow-lists, one per thread kind. Each entry says who needs it.
//!
//! A list covers what its thread does *after* its filter is installed:
//! opening files, mapping guest RAM, creating the VM and its vCPUs happen
//! before and are not here. Anything else kills the process
//! (`--seccomp kill`) or is logged to the kernel log (`--seccomp log`).
//!
//! Found by running the integration suite under `strace -f` with
//! `--seccomp log` (every device: console, block with io_uring, net on a
//! tap; the crash dump; the bench modes) and reading each thread's calls
//! after its `seccomp(2)`; then by running it with `--seccomp kill`.
//! Entries no run reached but a code path needs (synchronous block I/O,
//! the fatal-signal and abort paths) say so.

// Named explicitly: they shadow libc's constants of the same names.
use crate::ioctls::{
    BLKDISCARD, BLKZEROOUT, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_SUPPORTED_CPUID,
    KVM_REGISTER_COALESCED_MMIO, KVM_RUN, KVM_SET_GSI_ROUTING, KVM_SET_REGS, KVM_SET_SREGS,
    KVM_TRANSLATE, KVM_UNREGISTER_COALESCED_MMIO, TCGETS, TCSETS, TUNSETOFFLOAD,
};
use crate::rules::Allow::{self, *};
use libc::*;

/// The reaper's clone flags (vmm/src/teardown.rs), the only clone allowed.
const REAPER_CLONE: u32 = (CLONE_VM | CLONE_FILES | CLONE_FS | SIGCHLD) as u32;

/// The main thread once it is the event loop (installed after the VM is
/// built and the loop's epoll set exists, before the boot vCPU is let into
/// the guest), and the teardown reaper, cloned from it, which inherits it.
pub const EVENT_LOOP: &[Allow] = &[
    // epoll: the loop's set (created once the boot vCPU is let go, off
    // the boot's critical path), its wait, stdin leaving and rejoining it.
    Call(SYS_epoll_create1),
    Call(SYS_epoll_ctl),
    Call(SYS_epoll_wait),
    // read: stdin, queue-notification and io_uring eventfds, tap rx.
    Call(SYS_read),
    // write: console output (stdout), eventfds (irqfds, kicks), tap tx
    // copies, log lines (stderr), the boot report.
    Call(SYS_write),
    // writev: tap tx straight from guest memory.
    Call(SYS_writev),
    // io_uring_enter: virtio-blk submissions and completions.
    Call(SYS_io_uring_enter),
    // virtio-blk without io_uring (synchronous) and its write-zeroes
    // fallback: pread64, pwrite64, fdatasync for FLUSH.
    Call(SYS_pread64),
    Call(SYS_pwrite64),
    Call(SYS_fdatasync),
    // virtio-blk DISCARD / WRITE_ZEROES: fallocate on a file, ioctls on a block device.
    Call(SYS_fallocate),
    Ioctl(BLKDISCARD),
    Ioctl(BLKZEROOUT),
    // futex: device, bus and ring mutexes shared with the vCPU threads.
    Call(SYS_futex),
    // The allocator (mmap never executable).
    Call(SYS_brk),
    ArgMasked(SYS_mmap, 2, PROT_EXEC as u32, 0),
    Call(SYS_mremap),
    Call(SYS_munmap),
    Call(SYS_madvise),
    // clock_gettime: Instant::now where the vDSO cannot answer.
    Call(SYS_clock_gettime),
    // getrusage: the boot report's peak RSS.
    Call(SYS_getrusage),
    // close: the epoll fd, the boot report file, stdio before the reaper starts.
    Call(SYS_close),
    // fcntl(F_GETFD): Rust's debug builds check a descriptor is open before closing it.
    ArgEq(SYS_fcntl, 1, F_GETFD as u32),
    // Restoring stdin's terminal mode (terminal.rs): glibc's tcsetattr
    // reads the mode back after setting it.
    IoctlOn(STDIN_FILENO, TCSETS),
    IoctlOn(STDIN_FILENO, TCGETS),
    // The exit (teardown.rs): the reaper's stack is mmap above; getpid
    // names the parent; clone with the reaper's flags only; exit_group.
    Call(SYS_getpid),
    ArgEq(SYS_clone, 0, REAPER_CLONE),
    Call(SYS_exit_group),
    // The reaper: arm its death signal, check its parent, sleep, exit.
    ArgEq(SYS_prctl, 0, PR_SET_PDEATHSIG as u32),
    Call(SYS_getppid),
    Call(SYS_pause),
    Call(SYS_exit),
    // Fatal paths: terminal.rs's handler for SIGINT/SIGTERM/SIGHUP/SIGQUIT
    // resets the signal and re-raises it; abort() (a panic in a release
    // build) raises SIGABRT; Rust's stack-overflow handler returns.
    Call(SYS_rt_sigaction),
    Call(SYS_rt_sigprocmask),
    Call(SYS_rt_sigreturn),
    Call(SYS_gettid),
    Call(SYS_tgkill),
];

/// A vCPU thread once its vCPU is created and configured, before its first
/// KVM_RUN (the boot vCPU: before it waits for its entry registers).
pub const VCPU: &[Allow] = &[
    // Run the guest.
    Ioctl(KVM_RUN),
    // The boot vCPU loads its entry registers after its filter is on, so
    // that the install overlaps the kernel load instead of delaying the
    // first instruction; KVM_GET_SREGS is also the crash dump's.
    Ioctl(KVM_GET_SREGS),
    Ioctl(KVM_SET_SREGS),
    Ioctl(KVM_SET_REGS),
    // The crash dump: registers and the code bytes at RIP.
    Ioctl(KVM_GET_REGS),
    Ioctl(KVM_TRANSLATE),
    // The IOAPIC model keeps KVM's GSI routes equal to its redirection table.
    Ioctl(KVM_SET_GSI_ROUTING),
    // The UART coalesces data-register writes while its THR-empty interrupt is off.
    Ioctl(KVM_REGISTER_COALESCED_MMIO),
    Ioctl(KVM_UNREGISTER_COALESCED_MMIO),
    // virtio-net: the offloads the driver acked, set on the tap at DRIVER_OK.
    Ioctl(TUNSETOFFLOAD),
    // write: UART output (stdout), eventfds (irqfds, the stop event,
    // activation kicks), log lines and crash reports (stderr).
    Call(SYS_write),
    // A virtio-blk reset waits for in-flight requests: io_uring_enter,
    // then read of its completion eventfd.
    Call(SYS_io_uring_enter),
    Call(SYS_read),
    // futex: device, bus and ring mutexes.
    Call(SYS_futex),
    // The allocator (crash messages, the UART's buffer; mmap never executable).
    Call(SYS_brk),
    ArgMasked(SYS_mmap, 2, PROT_EXEC as u32, 0),
    Call(SYS_mremap),
    Call(SYS_munmap),
    Call(SYS_madvise),
    // clock_gettime: boot-report stamps and clock samples where the vDSO cannot answer.
    Call(SYS_clock_gettime),
    // The thread's end (its vCPU fd closes, unmapping the kvm_run area) and its fatal
    // paths: THREAD_END and FATAL, added by ThreadKind::allow_list.
];

/// The end of a vCPU or cpuid thread: a file descriptor may close (the vCPU's; for the cpuid
/// thread, when the VM build failed meanwhile, the last reference to /dev/kvm; fcntl in debug
/// builds), Rust removes its sigaltstack, glibc blocks signals, frees the stack (madvise,
/// munmap, which the lists have for the allocator) and exits.
pub const THREAD_END: &[Allow] = &[
    Call(SYS_close),
    ArgEq(SYS_fcntl, 1, F_GETFD as u32),
    Call(SYS_sigaltstack),
    Call(SYS_exit),
];

/// Fatal paths of a vCPU or cpuid thread, when a signal lands on it or it aborts (see
/// EVENT_LOOP), and the panic hook: restoring the terminal mode.
pub const FATAL: &[Allow] = &[
    IoctlOn(STDIN_FILENO, TCSETS),
    IoctlOn(STDIN_FILENO, TCGETS),
    Call(SYS_rt_sigaction),
    Call(SYS_rt_sigprocmask),
    Call(SYS_rt_sigreturn),
    Call(SYS_getpid),
    Call(SYS_gettid),
    Call(SYS_tgkill),
];

/// The `cpuid` thread, from its start: one KVM_GET_SUPPORTED_CPUID, then it exits.
pub const CPUID: &[Allow] = &[
    // The one thing it does.
    Ioctl(KVM_GET_SUPPORTED_CPUID),
    // The allocator (the entries; mmap never executable) and its lock.
    Call(SYS_brk),
    ArgMasked(SYS_mmap, 2, PROT_EXEC as u32, 0),
    Call(SYS_munmap),
    Call(SYS_madvise),
    Call(SYS_futex),
    // Then THREAD_END and FATAL, as for a vCPU thread.
];
