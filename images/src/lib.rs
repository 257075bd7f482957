//! flint guest-image tools: pulling the ELF vmlinux out of a distribution bzImage (used by
//! images/linux/fetch-debian-kernel.sh) and the host side of the probe's workload.

pub mod vmlinux;
