//! The probe's compute workload: deterministic integer and memory work in
//! the spirit of Dhrystone 2.1 (string copy and compare, record assignment,
//! integer arithmetic with division, one- and two-dimensional array
//! indexing) on a fixed workspace, no floats, no allocation, no `unsafe`.
//!
//! Shared verbatim by the probe (`#![no_std]`, user mode in the guest) and
//! the host program `images/src/bin/workload.rs`, so that both give the same
//! checksum for the same iteration count. One iteration takes about a
//! microsecond natively.

use core::hint::black_box;

const STR_LEN: usize = 32;
const ARR: usize = 50;
const RECORDS: usize = 4;
const BUF: usize = 1024;
/// Dhrystone-style passes per iteration.
const PASSES: u32 = 8;

const STRING_1: &[u8; STR_LEN] = b"DHRYSTONE PROGRAM, 1'ST STRING\0\0";
const STRING_2: &[u8; STR_LEN] = b"DHRYSTONE PROGRAM, 2'ND STRING\0\0";

/// A Dhrystone-like record.
#[derive(Clone, Copy)]
struct Record {
    next: usize,
    discr: u32,
    enum_comp: u32,
    int_comp: u32,
    str_comp: [u8; STR_LEN],
}

const RECORD: Record = Record {
    next: 0,
    discr: 0,
    enum_comp: 2,
    int_comp: 40,
    str_comp: *STRING_1,
};

/// All the memory the workload touches (about 12 KiB).
pub struct Workspace {
    records: [Record; RECORDS],
    arr1: [u32; ARR],
    arr2: [[u32; ARR]; ARR],
    str1: [u8; STR_LEN],
    str2: [u8; STR_LEN],
    buf: [u8; BUF],
}

impl Workspace {
    /// The initial state; [`run`] resets to it first.
    pub const fn new() -> Workspace {
        Workspace {
            records: [RECORD; RECORDS],
            arr1: [0; ARR],
            arr2: [[0; ARR]; ARR],
            str1: *STRING_1,
            str2: *STRING_2,
            buf: [0; BUF],
        }
    }
}

impl Default for Workspace {
    fn default() -> Workspace {
        Workspace::new()
    }
}

/// Runs `iterations` iterations from the initial state; returns the checksum.
pub fn run(ws: &mut Workspace, iterations: u64) -> u64 {
    *ws = Workspace::new();
    for (i, b) in ws.buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let mut sum = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..iterations {
        let ws = black_box(&mut *ws);
        for pass in 0..PASSES {
            sum = mix(
                sum,
                dhrystone_pass(ws, (i as u32).wrapping_mul(PASSES).wrapping_add(pass)),
            );
        }
        sum = mix(sum, scramble(ws, i as u32));
    }
    sum
}

fn mix(sum: u64, value: u64) -> u64 {
    (sum ^ value)
        .wrapping_mul(0x0000_0100_0000_01b3)
        .rotate_left(7)
}

/// One pass of Dhrystone's main loop body, on varying data.
fn dhrystone_pass(ws: &mut Workspace, n: u32) -> u64 {
    // Strings: vary one character, copy, compare.
    ws.str1 = *STRING_1;
    ws.str1[(n % 26) as usize] = b'A' + (n % 23) as u8;
    str_copy(&mut ws.str2, &ws.str1);
    ws.str2[(n % 29) as usize] = b'a' + (n % 19) as u8;
    let order = str_compare(&ws.str1, &ws.str2);

    // Integer arithmetic (Proc_7, Proc_2, and the main loop's expressions).
    let mut int_1 = 2 + (n & 7);
    let mut int_2 = 3 + (n >> 3 & 7);
    let int_3 = int_1.wrapping_mul(5).wrapping_sub(int_2) | 1;
    int_2 = int_2.wrapping_mul(int_1);
    int_1 = int_2 / int_3;
    int_2 = int_2
        .wrapping_sub(int_3)
        .wrapping_mul(7)
        .wrapping_sub(int_1);
    let int_loc = (int_1.wrapping_add(int_2).wrapping_add(n) % 40) as usize + 5;

    // Arrays (Proc_8).
    ws.arr1[int_loc] = int_2;
    ws.arr1[int_loc + 1] = ws.arr1[int_loc];
    let carried = ws.arr1[(int_loc + 30) % ARR];
    ws.arr1[(int_loc + 30) % ARR] = carried.rotate_left(3) ^ int_loc as u32;
    for index in int_loc..int_loc + 2 {
        ws.arr2[int_loc][index] = int_loc as u32;
    }
    ws.arr2[int_loc][int_loc - 1] = ws.arr2[int_loc][int_loc - 1].wrapping_add(1);
    ws.arr2[(int_loc + 20) % ARR][int_loc] = ws.arr1[int_loc];

    // Records (Proc_1, Proc_3, Proc_6).
    let a = (n as usize) % RECORDS;
    let b = (a + 1 + (order as usize & 1)) % RECORDS;
    ws.records[b] = ws.records[a];
    let rec = &mut ws.records[b];
    rec.next = a;
    rec.int_comp = rec.int_comp.wrapping_add(int_3) % 1000;
    rec.discr = (rec.discr + 1) % 3;
    rec.enum_comp = match rec.enum_comp {
        0 => 1 + (int_1 & 1),
        1 => 3,
        2 => 0,
        _ => rec.discr,
    };
    str_copy(&mut rec.str_comp, &ws.str2);
    let r = &ws.records[ws.records[b].next];

    u64::from(int_1)
        ^ u64::from(int_2) << 8
        ^ u64::from(ws.arr1[int_loc]) << 16
        ^ u64::from(r.int_comp) << 24
        ^ u64::from(carried) << 30
        ^ u64::from(r.enum_comp) << 40
        ^ (order as u64) << 48
        ^ u64::from(ws.arr2[int_loc][int_loc - 1]) << 52
}

/// Memory traffic: a pseudo-random walk over the buffer and the 2-D array.
fn scramble(ws: &mut Workspace, n: u32) -> u64 {
    let mut x = n.wrapping_mul(0x9e37_79b9) | 1;
    let mut acc = 0u64;
    for _ in 0..96 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let i = (x as usize) % BUF;
        let j = (x >> 10) as usize % ARR;
        let k = (x >> 20) as usize % ARR;
        ws.buf[i] = ws.buf[i].wrapping_add(ws.buf[(i + 17) % BUF]) ^ (x as u8);
        ws.arr2[j][k] = ws.arr2[j][k].wrapping_add(u32::from(ws.buf[i]));
        acc = acc.wrapping_mul(3).wrapping_add(u64::from(ws.arr2[k][j]));
    }
    acc
}

/// `strcpy`: bytes up to and including the first NUL (or the whole array).
fn str_copy(dst: &mut [u8; STR_LEN], src: &[u8; STR_LEN]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s;
        if s == 0 {
            break;
        }
    }
}

/// `strcmp`: <0, 0 or >0.
fn str_compare(a: &[u8; STR_LEN], b: &[u8; STR_LEN]) -> i32 {
    for (&x, &y) in a.iter().zip(b) {
        if x != y || x == 0 {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}
