//! The kernel loaders (ELF with and without a PVH note, bzImage), initrd
//! placement, the command line, boot information and ACPI tables: the
//! input becomes a kernel file, an initrd file and the boot options of
//! guest_boot::prepare_boot; see guest_boot::fuzzing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| guest_boot::fuzzing::prepare_boot(data));
