//! The C memory functions the compiler calls (no libc here), written with
//! string instructions so they cannot be compiled back into calls to
//! themselves, and bounds-checked views of guest-physical memory (which the
//! static page tables map 1:1, user-readable, up to [`PHYS_LIMIT`]).

use core::arch::asm;

/// End of the identity map built in `kernel.rs`: 8 GiB.
pub const PHYS_LIMIT: u64 = 8 << 30;

/// # Safety
/// `dst` and `src` must be valid for `n` bytes and not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; DF is clear per the ABI.
    unsafe {
        asm!("rep movsb",
            inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
            options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// `dst` and `src` must be valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst before src, or no overlap: copying forwards is safe.
        // SAFETY: as for memcpy; forward order never reads a byte already written.
        unsafe {
            asm!("rep movsb",
                inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                options(nostack, preserves_flags));
        }
    } else {
        // dst inside [src, src + n): copy backwards, last byte first.
        // SAFETY: n > 0 here (else the first branch ran); both ranges are valid
        // and DF is restored before returning.
        unsafe {
            asm!("std", "rep movsb", "cld",
                inout("rcx") n => _,
                inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack));
        }
    }
    dst
}

/// # Safety
/// `dst` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; DF is clear per the ABI.
    unsafe {
        asm!("rep stosb",
            inout("rcx") n => _, inout("rdi") dst => _, in("al") value as u8,
            options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let left: *const u8;
    let right: *const u8;
    let differ: u8;
    // SAFETY: `repe cmpsb` reads at most n bytes of each range.
    unsafe {
        asm!("repe cmpsb", "setne {d}",
            d = out(reg_byte) differ,
            inout("rcx") n => _, inout("rsi") a => left, inout("rdi") b => right,
            options(nostack, readonly));
    }
    if differ == 0 {
        return 0;
    }
    // SAFETY: cmpsb advanced both pointers one past the differing byte.
    let (x, y) = unsafe { (*left.sub(1), *right.sub(1)) };
    i32::from(x) - i32::from(y)
}

/// # Safety
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// `len` bytes of guest-physical memory at `addr`, if the range is inside the
/// identity map and does not start at 0 (a null pointer).
pub fn phys(addr: u64, len: u64) -> Option<&'static [u8]> {
    if addr == 0 || len > PHYS_LIMIT || addr > PHYS_LIMIT - len {
        return None;
    }
    // SAFETY: the range is inside the user-readable identity map, and memory
    // handed to the probe (tables, initrd) does not change while it runs.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) })
}

/// Little-endian u8/u16/u32/u64 at `off` of `b`, if in bounds.
pub fn le(b: &[u8], off: usize, width: usize) -> Option<u64> {
    let bytes = b.get(off..off.checked_add(width)?)?;
    Some(
        bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
    )
}

/// Little-endian u32 at `off`.
pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    le(b, off, 4).map(|v| v as u32)
}

/// Little-endian u64 at `off`.
pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    le(b, off, 8)
}
