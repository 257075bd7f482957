//! The vocabulary of the allow-lists, and its translation into
//! seccompiler's rule map: a system call allowed whatever its arguments,
//! or only when some arguments have given values (the ioctl request
//! numbers, the reaper's clone flags).

use std::collections::BTreeMap;

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

/// One entry of an allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    /// The system call, any arguments.
    Call(i64),
    /// `ioctl` with this request number, on any descriptor.
    Ioctl(u32),
    /// `ioctl` with this request number on this descriptor.
    IoctlOn(i32, u32),
    /// The system call when argument `index` (0-5) equals `value`.
    ArgEq(i64, u8, u32),
    /// The system call when argument `index`, masked with `mask`, equals
    /// `value` (e.g. no PROT_EXEC bit).
    ArgMasked(i64, u8, u32, u32),
}

impl Allow {
    /// The system call number the entry is about.
    pub fn sysno(self) -> i64 {
        match self {
            Allow::Call(n) | Allow::ArgEq(n, _, _) | Allow::ArgMasked(n, _, _, _) => n,
            Allow::Ioctl(_) | Allow::IoctlOn(_, _) => libc::SYS_ioctl,
        }
    }

    /// The argument conditions, all of which must hold (none: always).
    fn conditions(self) -> Vec<SeccompCondition> {
        // Only the low 32 bits are compared: every argument checked is one
        // the kernel reads as 32 bits (ioctl's `unsigned int` request, a
        // descriptor, prctl's option, the legacy clone's flags) or a bit
        // mask whose bits all lie there. Callers passing an `int` through
        // a variadic function may leave the upper half undefined.
        let dword = |index: u8, op: SeccompCmpOp, value: u32| {
            SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value.into())
        };
        let eq = |index: u8, value: u32| dword(index, SeccompCmpOp::Eq, value);
        let conditions = match self {
            Allow::Call(_) => vec![],
            Allow::Ioctl(request) => vec![eq(1, request)],
            Allow::IoctlOn(fd, request) => vec![eq(0, fd as u32), eq(1, request)],
            Allow::ArgEq(_, index, value) => vec![eq(index, value)],
            Allow::ArgMasked(_, index, mask, value) => {
                vec![dword(index, SeccompCmpOp::MaskedEq(mask.into()), value)]
            }
        };
        conditions
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("argument indices in the lists are below 6")
    }
}

/// seccompiler's form of `list`: for each system call, the rules of which
/// one must match (an empty chain matches any arguments).
pub fn rule_map(list: &[Allow]) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let unconditional: Vec<i64> = list
        .iter()
        .filter(|a| matches!(a, Allow::Call(_)))
        .map(|a| a.sysno())
        .collect();
    for allow in list {
        let chain = map.entry(allow.sysno()).or_default();
        // A call allowed outright needs no argument rules (an empty chain).
        if unconditional.contains(&allow.sysno()) {
            continue;
        }
        let rule = SeccompRule::new(allow.conditions()).expect("every entry has a condition");
        chain.push(rule);
    }
    map
}
