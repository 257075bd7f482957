//! Each thread kind's filter, installed in a forked child: a call off its
//! list kills the child with SIGSYS, and a call on it goes through (an
//! ioctl on the list reaches the kernel, which refuses it on a descriptor
//! that is not KVM's with ENOTTY, instead of the filter killing the caller).
//!
//! The child only makes raw system calls between fork and its end (the
//! filter is compiled in the parent), and it ends with `exit(2)`, which
//! every list allows, not `exit_group`, which only the event loop's does.

use seccomp::ioctls::{KVM_GET_SUPPORTED_CPUID, KVM_RUN, TCSETS};
use seccomp::{Filter, Mode, ThreadKind};

/// How the child ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Exited(i32),
    Signaled(i32),
}

/// The child's verdict when its allowed calls behaved.
const OK: i32 = 0;
/// The child's verdict when an allowed call failed the wrong way.
const WRONG: i32 = 1;

/// Fork; in the child install `filter`, run `body` and exit with its
/// result; in the parent, wait for the child.
fn in_child(filter: &Filter, body: impl FnOnce() -> i32) -> End {
    in_child_after(|| {}, filter, body)
}

/// [`in_child`], with `setup` run in the child before the filter.
fn in_child_after(setup: impl FnOnce(), filter: &Filter, body: impl FnOnce() -> i32) -> End {
    // SAFETY: the child only calls async-signal-safe functions (seccomp
    // install, raw system calls) and leaves with exit(2).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        setup();
        let code = match filter.install() {
            Ok(()) => body(),
            Err(_) => 100,
        };
        // SAFETY: ends this (single-threaded) child; nothing runs after.
        unsafe { libc::syscall(libc::SYS_exit, code) };
        unreachable!("exit returned");
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFSIGNALED(status) {
        End::Signaled(libc::WTERMSIG(status))
    } else {
        End::Exited(libc::WEXITSTATUS(status))
    }
}

fn kill_filter(kind: ThreadKind) -> Filter {
    Filter::new(kind, Mode::Kill).expect("the list compiles")
}

/// An ioctl on /dev/null, opened before the filter: ENOTTY means the
/// filter let it through to the kernel.
fn ioctl_reaches_kernel(fd: i32, request: u32) -> bool {
    // SAFETY: a request number with a null argument on /dev/null; the
    // kernel rejects it without touching memory.
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTTY)
}

fn dev_null() -> i32 {
    // SAFETY: a NUL-terminated path; the descriptor is the child's to use.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0);
    fd
}

fn execve_true() -> i32 {
    let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: valid NUL-terminated argv and envp arrays.
    unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
    WRONG
}

fn socket() -> i32 {
    // SAFETY: plain scalar arguments.
    unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }
}

#[test]
fn every_kind_kills_execve_and_socket_with_sigsys() {
    for kind in ThreadKind::ALL {
        let filter = kill_filter(kind);
        assert_eq!(
            in_child(&filter, execve_true),
            End::Signaled(libc::SIGSYS),
            "{kind:?}: execve"
        );
        assert_eq!(
            in_child(&filter, || {
                socket();
                WRONG
            }),
            End::Signaled(libc::SIGSYS),
            "{kind:?}: socket"
        );
    }
}

#[test]
fn vcpu_filter_lets_kvm_run_through_and_kills_other_kvm_ioctls() {
    let filter = kill_filter(ThreadKind::Vcpu);
    let null = dev_null();
    let run = || {
        if ioctl_reaches_kernel(null, KVM_RUN) {
            OK
        } else {
            WRONG
        }
    };
    assert_eq!(in_child(&filter, run), End::Exited(OK));
    // KVM_CREATE_VM = _IO(0xAE, 0x01): a system-fd ioctl no vCPU needs.
    let create_vm = || ioctl_reaches_kernel(null, 0xAE01) as i32;
    assert_eq!(in_child(&filter, create_vm), End::Signaled(libc::SIGSYS));
    let supported = || ioctl_reaches_kernel(null, KVM_GET_SUPPORTED_CPUID) as i32;
    assert_eq!(in_child(&filter, supported), End::Signaled(libc::SIGSYS));
}

#[test]
fn event_loop_filter_writes_but_kills_kvm_run() {
    let filter = kill_filter(ThreadKind::EventLoop);
    let null = dev_null();
    let write = || {
        // SAFETY: one byte from a valid buffer.
        let n = unsafe { libc::write(null, b"x".as_ptr().cast(), 1) };
        if n == 1 {
            OK
        } else {
            WRONG
        }
    };
    assert_eq!(in_child(&filter, write), End::Exited(OK));
    let run = || ioctl_reaches_kernel(null, KVM_RUN) as i32;
    assert_eq!(in_child(&filter, run), End::Signaled(libc::SIGSYS));
}

#[test]
fn cpuid_filter_allows_only_its_one_ioctl() {
    let filter = kill_filter(ThreadKind::Cpuid);
    let null = dev_null();
    let supported = || {
        if ioctl_reaches_kernel(null, KVM_GET_SUPPORTED_CPUID) {
            OK
        } else {
            WRONG
        }
    };
    assert_eq!(in_child(&filter, supported), End::Exited(OK));
    let run = || ioctl_reaches_kernel(null, KVM_RUN) as i32;
    assert_eq!(in_child(&filter, run), End::Signaled(libc::SIGSYS));
    let write = || {
        // SAFETY: one byte from a valid buffer.
        unsafe { libc::write(null, b"x".as_ptr().cast(), 1) as i32 }
    };
    assert_eq!(in_child(&filter, write), End::Signaled(libc::SIGSYS));
}

#[test]
fn terminal_restore_is_allowed_on_stdin_only() {
    let filter = kill_filter(ThreadKind::Vcpu);
    let null = dev_null();
    // The child's stdin becomes /dev/null first: the harness's may be a terminal.
    let stdin_null = || {
        // SAFETY: both descriptors are open; dup2 replaces the child's fd 0.
        unsafe { libc::dup2(null, 0) };
    };
    let on_stdin = || {
        if ioctl_reaches_kernel(0, TCSETS) {
            OK
        } else {
            WRONG
        }
    };
    assert_eq!(
        in_child_after(stdin_null, &filter, on_stdin),
        End::Exited(OK)
    );
    let elsewhere = || ioctl_reaches_kernel(null, TCSETS) as i32;
    assert_eq!(in_child(&filter, elsewhere), End::Signaled(libc::SIGSYS));
}

#[test]
fn event_loop_filter_clones_only_with_the_reapers_flags() {
    let filter = kill_filter(ThreadKind::EventLoop);
    // A fork-like clone (no CLONE_VM) is off the list.
    let fork_like = || {
        // SAFETY: a fork-like clone; if it were allowed, the child copy exits at once.
        let r = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
        if r == 0 {
            // SAFETY: ends the copy.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        }
        WRONG
    };
    assert_eq!(in_child(&filter, fork_like), End::Signaled(libc::SIGSYS));
}

#[test]
fn no_filter_maps_executable_memory() {
    for kind in ThreadKind::ALL {
        let filter = kill_filter(kind);
        let map = |prot: i32| {
            move || {
                // SAFETY: a fresh anonymous mapping, never used.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        prot,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    WRONG
                } else {
                    OK
                }
            }
        };
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        assert_eq!(in_child(&filter, map(rw)), End::Exited(OK), "{kind:?}");
        assert_eq!(
            in_child(&filter, map(rw | libc::PROT_EXEC)),
            End::Signaled(libc::SIGSYS),
            "{kind:?}"
        );
    }
}

#[test]
fn an_abort_still_ends_in_sigabrt_not_sigsys() {
    // A panic in a release build (panic = "abort") takes this path.
    for kind in ThreadKind::ALL {
        let filter = kill_filter(kind);
        let no_core = || {
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: a valid rlimit; the child leaves no core file behind.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
        };
        // SAFETY: ends the child.
        let abort = || unsafe { libc::abort() };
        assert_eq!(
            in_child_after(no_core, &filter, abort),
            End::Signaled(libc::SIGABRT),
            "{kind:?}"
        );
    }
}

#[test]
fn log_mode_lets_a_call_off_the_list_through() {
    let filter = Filter::new(ThreadKind::Vcpu, Mode::Log).unwrap();
    let body = || if socket() >= 0 { OK } else { WRONG };
    assert_eq!(in_child(&filter, body), End::Exited(OK));
}

#[test]
fn off_mode_installs_nothing() {
    let filter = Filter::new(ThreadKind::Cpuid, Mode::Off).unwrap();
    assert!(filter.is_empty());
    let body = || if socket() >= 0 { OK } else { WRONG };
    assert_eq!(in_child(&filter, body), End::Exited(OK));
}
