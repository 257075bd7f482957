//! Unit tests of the lists and their compilation (the filters' effect on a
//! process is tested in `tests/sigsys.rs`, in child processes).

use super::*;
use rules::{rule_map, Allow};

#[test]
fn modes_parse_from_their_names_and_print_back() {
    for mode in [Mode::Kill, Mode::Log, Mode::Off] {
        assert_eq!(mode.to_string().parse::<Mode>().unwrap(), mode);
    }
    let err = "bogus".parse::<Mode>().unwrap_err().to_string();
    assert!(err.contains("\"bogus\""), "{err}");
}

#[test]
fn every_kind_compiles_in_kill_and_log_mode() {
    for kind in ThreadKind::ALL {
        for mode in [Mode::Kill, Mode::Log] {
            let filter = Filter::new(kind, mode).unwrap();
            assert!(filter.len() > 10, "{kind:?}: {} instructions", filter.len());
        }
        assert!(Filter::new(kind, Mode::Off).unwrap().is_empty());
    }
}

#[test]
fn no_list_names_an_entry_twice() {
    for kind in ThreadKind::ALL {
        let list = kind.allow_list();
        for (i, a) in list.iter().enumerate() {
            assert!(
                !list[i + 1..].contains(a),
                "{}: {a:?} listed twice",
                kind.name()
            );
        }
    }
}

#[test]
fn no_list_allows_a_call_outright_and_also_by_argument() {
    // The argument rule would be dead text: the outright entry wins.
    for kind in ThreadKind::ALL {
        let list = kind.allow_list();
        for a in list.iter().filter(|a| !matches!(a, Allow::Call(_))) {
            assert!(
                !list.contains(&Allow::Call(a.sysno())),
                "{}: {a:?} is also allowed outright",
                kind.name()
            );
        }
    }
}

#[test]
fn ioctl_entries_become_one_rule_each_under_one_syscall() {
    let map = rule_map(&[
        Allow::Ioctl(ioctls::KVM_RUN),
        Allow::Ioctl(ioctls::KVM_GET_REGS),
        Allow::Call(libc::SYS_read),
    ]);
    assert_eq!(map.len(), 2);
    assert_eq!(map[&libc::SYS_ioctl].len(), 2);
    assert!(map[&libc::SYS_read].is_empty());
}

#[test]
fn no_list_lets_a_thread_start_programs_or_open_sockets_or_files() {
    let forbidden = [
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_socket,
        libc::SYS_open,
        libc::SYS_openat,
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_clone3,
        libc::SYS_ptrace,
        libc::SYS_mprotect,
    ];
    for kind in ThreadKind::ALL {
        for a in kind.allow_list() {
            assert!(
                !forbidden.contains(&a.sysno()),
                "{} allows {a:?}",
                kind.name()
            );
        }
    }
}
