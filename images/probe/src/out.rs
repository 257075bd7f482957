//! Output lines: `probe: ...\n`, built in a buffer and written to COM1 with
//! one service call per line (one `rep outsb`), without `core::fmt`.

use crate::svc;

const CAPACITY: usize = 512;

/// One output line under construction; starts with `probe: `.
pub struct Line {
    buf: [u8; CAPACITY],
    len: usize,
}

impl Line {
    /// A new line holding `probe: `.
    pub fn new() -> Line {
        let mut line = Line {
            buf: [0; CAPACITY],
            len: 0,
        };
        line.s("probe: ");
        line
    }

    /// Appends raw bytes (flushing early if the buffer fills).
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Line {
        for chunk in bytes.chunks(CAPACITY) {
            if self.len + chunk.len() > CAPACITY {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        self
    }

    /// Appends a string.
    pub fn s(&mut self, text: &str) -> &mut Line {
        self.bytes(text.as_bytes())
    }

    /// Appends `value` in decimal.
    pub fn dec(&mut self, value: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.bytes(&digits[at..])
    }

    /// Appends `0x` and `value` in lower-case hex, no leading zeros.
    pub fn hex(&mut self, value: u64) -> &mut Line {
        let width = if value == 0 {
            1
        } else {
            (67 - value.leading_zeros() as usize) / 4
        };
        self.s("0x").hex_digits(value, width)
    }

    /// Appends `0x` and exactly 8 hex digits (of the low 32 bits).
    pub fn hex8(&mut self, value: u32) -> &mut Line {
        self.s("0x").hex_digits(u64::from(value), 8)
    }

    /// Appends `0x` and exactly 16 hex digits.
    pub fn hex16(&mut self, value: u64) -> &mut Line {
        self.s("0x").hex_digits(value, 16)
    }

    fn hex_digits(&mut self, value: u64, width: usize) -> &mut Line {
        let mut digits = [0u8; 16];
        for (i, digit) in digits[..width].iter_mut().enumerate() {
            let nibble = (value >> (4 * (width - 1 - i))) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        self.bytes(&digits[..width])
    }

    /// Ends the line with `\n` and writes it out.
    pub fn end(&mut self) {
        self.bytes(b"\n");
        self.flush();
    }

    fn flush(&mut self) {
        svc::write(&self.buf[..self.len]);
        self.len = 0;
    }
}

/// Writes `probe: <text>\n`.
pub fn say(text: &str) {
    Line::new().s(text).end();
}
