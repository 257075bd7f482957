//! The command line: space-separated tokens; `probe.*` parameters and
//! Linux's `virtio_mmio.device=<size>@<addr>:<irq>[:<id>]` entries
//! (drivers/virtio/virtio_mmio.c: size by memparse, the rest by `%lli:%u`).

/// Space-separated tokens (tabs and newlines count as spaces).
pub fn tokens(cmdline: &[u8]) -> impl Iterator<Item = &[u8]> {
    cmdline
        .split(|b| matches!(b, b' ' | b'\t' | b'\n'))
        .filter(|t| !t.is_empty())
}

/// The value of the last `key=value` token, if any.
pub fn param<'a>(cmdline: &'a [u8], key: &str) -> Option<&'a [u8]> {
    tokens(cmdline)
        .filter_map(|t| t.strip_prefix(key.as_bytes())?.strip_prefix(b"="))
        .last()
}

/// `key=<number>` as u64, if present and well-formed.
pub fn param_u64(cmdline: &[u8], key: &str) -> Option<u64> {
    let (value, rest) = number(param(cmdline, key)?)?;
    rest.is_empty().then_some(value)
}

/// A device from `virtio_mmio.device=`.
pub struct CmdlineDevice {
    /// Register window base.
    pub addr: u64,
    /// Window size.
    pub size: u64,
    /// Interrupt.
    pub irq: u64,
}

/// Every well-formed `virtio_mmio.device=` token, in order.
pub fn devices(cmdline: &[u8]) -> impl Iterator<Item = CmdlineDevice> + '_ {
    tokens(cmdline)
        .filter_map(|t| t.strip_prefix(b"virtio_mmio.device="))
        .filter_map(device)
}

fn device(spec: &[u8]) -> Option<CmdlineDevice> {
    let (size, rest) = memparse(spec)?;
    let (addr, rest) = number(rest.strip_prefix(b"@")?)?;
    let (irq, rest) = decimal(rest.strip_prefix(b":")?)?;
    if !(rest.is_empty() || rest.starts_with(b":")) || size == 0 {
        return None;
    }
    Some(CmdlineDevice { addr, size, irq })
}

/// A number with a K/M/G/T/P/E suffix (Linux `memparse`).
pub fn memparse(s: &[u8]) -> Option<(u64, &[u8])> {
    let (value, rest) = number(s)?;
    let shift = match rest.first() {
        Some(b'K' | b'k') => 10,
        Some(b'M' | b'm') => 20,
        Some(b'G' | b'g') => 30,
        Some(b'T' | b't') => 40,
        Some(b'P' | b'p') => 50,
        Some(b'E' | b'e') => 60,
        _ => return Some((value, rest)),
    };
    Some((
        value.checked_shl(shift).filter(|v| v >> shift == value)?,
        &rest[1..],
    ))
}

/// A C-style number: `0x` hex, leading `0` octal, else decimal.
pub fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    if let Some(hex) = s.strip_prefix(b"0x").or_else(|| s.strip_prefix(b"0X")) {
        digits(hex, 16)
    } else if s.len() > 1 && s[0] == b'0' && s[1].is_ascii_digit() {
        digits(&s[1..], 8)
    } else {
        digits(s, 10)
    }
}

fn decimal(s: &[u8]) -> Option<(u64, &[u8])> {
    digits(s, 10)
}

fn digits(s: &[u8], radix: u32) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    let mut used = 0;
    for &b in s {
        let Some(d) = (b as char).to_digit(radix) else {
            break;
        };
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(d))?;
        used += 1;
    }
    (used > 0).then(|| (value, &s[used..]))
}
