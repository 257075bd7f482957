//! seccomp: per-thread syscall filters for flint, one allow-list per thread
//! role (main/event loop, vCPU, I/O workers), built with seccompiler and
//! installed by `vmm` at thread start.
//!
//! Nothing is filtered yet: the filters come with the hardening work (see
//! SECURITY notes in the README). This crate must not depend on `vmm`,
//! KVM or the devices; it only describes filters.
