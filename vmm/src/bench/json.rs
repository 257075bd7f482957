//! A small JSON value for `flint bench`: written for `--json`, read back
//! for `--compare` and from flint's boot report. Enough of RFC 8259 for
//! files flint and people write; numbers are f64 (exact to 2^53).

use std::fmt::{self, Write as _};

/// A JSON value; objects keep their key order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null` (also what NaN and infinities are written as).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, in order.
    Obj(Vec<(String, Json)>),
}

/// Why a text is not JSON.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonError {
    /// Something other than what the grammar allows at this byte offset.
    #[error("not JSON at byte {0}")]
    Syntax(usize),
    /// Text after the value.
    #[error("trailing text at byte {0}")]
    Trailing(usize),
    /// Arrays or objects nested too deep.
    #[error("nested too deep at byte {0}")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 64;

impl Json {
    /// Parse one JSON value (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Json, JsonError> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.at != p.s.len() {
            return Err(JsonError::Trailing(p.at));
        }
        Ok(v)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(x) => Some(*x),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The members of an object (empty for anything else).
    pub fn members(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(m) => m,
            _ => &[],
        }
    }

    /// The numbers of an array of numbers (non-numbers skipped).
    pub fn numbers(&self) -> Vec<f64> {
        match self {
            Json::Arr(v) => v.iter().filter_map(Json::as_f64).collect(),
            _ => Vec::new(),
        }
    }

    /// An object from `(key, value)` pairs.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// An array of numbers.
    pub fn nums(v: &[f64]) -> Json {
        Json::Arr(v.iter().map(|&x| Json::Num(x)).collect())
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// Indented text: one member per line, arrays of scalars on one line.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        write_pretty(&mut out, self, 0);
        out.push('\n');
        out
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Num(x) => write_num(f, *x),
            Json::Str(s) => write_str(f, s),
            Json::Arr(v) => {
                f.write_char('[')?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_char(']')
            }
            Json::Obj(m) => {
                f.write_char('{')?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_str(f, k)?;
                    write!(f, ":{v}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_pretty(out: &mut String, v: &Json, depth: usize) {
    let pad = |n: usize| "  ".repeat(n);
    let nested = |x: &Json| matches!(x, Json::Arr(_) | Json::Obj(_));
    match v {
        Json::Obj(m) if !m.is_empty() => {
            out.push_str("{\n");
            for (i, (k, x)) in m.iter().enumerate() {
                let _ = write!(out, "{}{}: ", pad(depth + 1), Json::str(k.as_str()));
                write_pretty(out, x, depth + 1);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{}}}", pad(depth));
        }
        Json::Arr(a) if a.iter().any(nested) => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write_pretty(out, x, depth + 1);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{}]", pad(depth));
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Numbers with at most 3 decimals (µs to the nanosecond); NaN and
/// infinities as `null`.
fn write_num(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if !x.is_finite() {
        return f.write_str("null");
    }
    let r = (x * 1000.0).round() / 1000.0;
    if r == r.trunc() && r.abs() < 1e15 {
        write!(f, "{}", r as i64)
    } else {
        write!(f, "{r}")
    }
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        let hit = self.s[self.at..].starts_with(lit.as_bytes());
        if hit {
            self.at += lit.len();
        }
        hit
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep(self.at));
        }
        self.ws();
        match self.s.get(self.at) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("null") => Ok(Json::Null),
            _ if self.eat("true") => Ok(Json::Bool(true)),
            _ if self.eat("false") => Ok(Json::Bool(false)),
            _ => Err(JsonError::Syntax(self.at)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.at += 1;
        let mut members = Vec::new();
        self.ws();
        if self.eat("}") {
            return Ok(Json::Obj(members));
        }
        loop {
            self.ws();
            if self.s.get(self.at) != Some(&b'"') {
                return Err(JsonError::Syntax(self.at));
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(":") {
                return Err(JsonError::Syntax(self.at));
            }
            members.push((key, self.value(depth + 1)?));
            self.ws();
            if self.eat("}") {
                return Ok(Json::Obj(members));
            }
            if !self.eat(",") {
                return Err(JsonError::Syntax(self.at));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.at += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat("]") {
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat("]") {
                return Ok(Json::Arr(items));
            }
            if !self.eat(",") {
                return Err(JsonError::Syntax(self.at));
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
        {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at])
            .ok()
            .and_then(|t| t.parse().ok())
            .map(Json::Num)
            .ok_or(JsonError::Syntax(start))
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.at).ok_or(JsonError::Syntax(self.at))?;
            self.at += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| JsonError::Syntax(self.at)),
                b'\\' => self.escape(&mut out)?,
                c if c < 0x20 => return Err(JsonError::Syntax(self.at - 1)),
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        let c = *self.s.get(self.at).ok_or(JsonError::Syntax(self.at))?;
        self.at += 1;
        let plain = match c {
            b'"' | b'\\' | b'/' => c,
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'b' => 8,
            b'f' => 12,
            b'u' => {
                let hex = self
                    .s
                    .get(self.at..self.at + 4)
                    .ok_or(JsonError::Syntax(self.at))?;
                let code = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or(JsonError::Syntax(self.at))?;
                self.at += 4;
                // Lone surrogates (and pairs, which flint never writes) become U+FFFD.
                let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(JsonError::Syntax(self.at - 1)),
        };
        out.push(plain);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_values_in_order() {
        let v = Json::parse(
            r#" {"a": [1, 2.5, -3e2], "b": {"c": null, "d": true}, "e": "x\"\u00e9\n"} "#,
        )
        .unwrap();
        assert_eq!(v.get("a").unwrap().numbers(), vec![1.0, 2.5, -300.0]);
        assert_eq!(v.get("b").unwrap().get("c"), Some(&Json::Null));
        assert_eq!(v.get("b").unwrap().get("d"), Some(&Json::Bool(true)));
        assert_eq!(v.get("e").unwrap().as_str(), Some("x\"é\n"));
        let keys: Vec<&str> = v.members().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "e"]);
    }

    #[test]
    fn refuses_broken_text_with_its_offset() {
        assert_eq!(Json::parse("{\"a\" 1}"), Err(JsonError::Syntax(5)));
        assert_eq!(Json::parse("[1,]"), Err(JsonError::Syntax(3)));
        assert_eq!(Json::parse("1 2"), Err(JsonError::Trailing(2)));
        assert!(Json::parse("\"open").is_err());
        assert!(Json::parse(&"[".repeat(100)).is_err());
    }

    #[test]
    fn writes_what_it_reads_back() {
        let v = Json::obj([
            ("n", Json::nums(&[1.0, 2.25, f64::NAN, 1e12 + 0.5])),
            ("s", Json::str("a\\b\"c\u{1}")),
            (
                "o",
                Json::obj([("x", Json::Bool(false)), ("y", Json::Obj(vec![]))]),
            ),
        ]);
        let compact = v.to_string();
        assert_eq!(
            compact,
            r#"{"n":[1,2.25,null,1000000000000.5],"s":"a\\b\"c\u0001","o":{"x":false,"y":{}}}"#
        );
        let back = Json::parse(&v.pretty()).unwrap();
        assert_eq!(back.to_string(), compact);
        assert!(v
            .pretty()
            .contains("\n  \"n\": [1,2.25,null,1000000000000.5],\n"));
    }

    #[test]
    fn reads_a_boot_report() {
        let report = r#"{"flint_version":"0.1.0","timestamps_ns":{"main_entered":10756689009873,"guest_exit":10756697002119},"vm_exits":{"io_out":7}}"#;
        let v = Json::parse(report).unwrap();
        let t = v.get("timestamps_ns").unwrap();
        assert_eq!(
            t.get("main_entered").unwrap().as_f64(),
            Some(10_756_689_009_873.0)
        );
        assert_eq!(t.members().len(), 2);
    }
}
