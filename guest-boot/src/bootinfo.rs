//! Boot information written for the kernel: `hvm_start_info` (PVH) and the
//! zero page (`boot_params`, Linux 64-bit boot protocol), both carrying the
//! same memory map.
