//! KVM plumbing: the VM file descriptor with its memory and interrupt
//! controller ([`vm`]), vCPU set-up from plain entry state ([`regs`],
//! [`cpuid`]), and the vCPU run loop ([`vcpu`]).

pub mod coalesced;
pub mod cpuid;
pub mod irq;
pub mod regs;
pub mod vcpu;
pub mod vm;

#[cfg(test)]
mod seccomp_ioctls;
