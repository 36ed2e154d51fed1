//! Seeded mutations of a valid file: bit and byte flips, truncation, insertion, deletion and
//! duplication, plus "extreme field" mutations that overwrite the integers a reader trusts
//! (lengths, sizes, offsets, shapes) with 0, -1, 2³²-1, 2⁶⁴-1, a terabyte, and so on.
//!
//! Field positions come from format-aware scanners of the valid file (the `fields_*`
//! functions here and in the reader modules), so extreme values land where a length or a
//! shape is, which is where readers over-allocate; random byte noise alone rarely hits those
//! few bytes.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How an integer field is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    U16Le,
    U32Le,
    U64Le,
    U16Be,
    U32Be,
    /// A run of ASCII digits (possibly signed) in a text header: JSON, a Python dict literal,
    /// TOML.
    Text,
}

/// An integer field of the valid file: `len` bytes at `at`.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub at: usize,
    pub len: usize,
    pub kind: Kind,
}

impl Field {
    pub fn new(at: usize, kind: Kind) -> Self {
        let len = match kind {
            Kind::U16Le | Kind::U16Be => 2,
            Kind::U32Le | Kind::U32Be => 4,
            Kind::U64Le => 8,
            Kind::Text => panic!("text fields need a length: use Field::text"),
        };
        Field { at, len, kind }
    }

    pub fn text(at: usize, len: usize) -> Self {
        Field { at, len, kind: Kind::Text }
    }
}

/// Binary extremes: each is written truncated to the field's width.
const EXTREMES: [u64; 14] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40, // a terabyte
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
];

/// Text extremes for decimal fields.
const TEXT_EXTREMES: [&str; 14] = [
    "0",
    "-1",
    "1",
    "4294967295",
    "4294967296",
    "1099511627776",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "999999999999999999999999999999",
    "1e308",
    "",
    "0x10",
];

/// Tokens that confuse text parsers: delimiters, quotes, escapes, and deep nesting (a
/// recursive-descent parser without a depth limit overflows its stack on these).
const TEXT_TOKENS: [&str; 16] = ["\"", "'", "[", "]", "{", "}", ",", ":", "=", "\n", "\\", "\\u", "\0", "\u{feff}", "${", "[stages.x]\n"];

pub struct Mutator {
    pub rng: ChaCha8Rng,
    pub log: Vec<String>,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator { rng: ChaCha8Rng::seed_from_u64(seed), log: Vec::new() }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.rng.random_range(0..n)
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// One mutated copy of `valid`: extreme values in 0–2 of `fields` and/or 1–4 byte-level
    /// edits; `text` adds parser-confusing tokens to the edits.
    pub fn mutate(&mut self, valid: &[u8], fields: &[Field], text: bool) -> Vec<u8> {
        let mut out = valid.to_vec();
        let (use_fields, use_bytes) = match (fields.is_empty(), self.below(20)) {
            (true, _) => (false, true),
            (false, 0..=7) => (true, false),
            (false, 8..=15) => (false, true),
            _ => (true, true),
        };
        if use_fields {
            // Highest offset first: a text replacement changes the length, and earlier
            // fields keep their positions.
            let mut picked: Vec<Field> = (0..1 + self.below(2)).map(|_| fields[self.below(fields.len())]).collect();
            picked.sort_by_key(|f| std::cmp::Reverse(f.at));
            picked.dedup_by_key(|f| f.at);
            for f in picked {
                self.extreme(&mut out, f);
            }
        }
        if use_bytes {
            for _ in 0..1 + self.below(4) {
                self.edit(&mut out, text);
            }
        }
        out
    }

    fn extreme(&mut self, out: &mut Vec<u8>, f: Field) {
        if f.at + f.len > out.len() {
            return;
        }
        if f.kind == Kind::Text {
            let original = std::str::from_utf8(&out[f.at..f.at + f.len]).unwrap_or("0").parse::<i128>().unwrap_or(0);
            let v = match self.below(TEXT_EXTREMES.len() + 2) {
                i if i < TEXT_EXTREMES.len() => TEXT_EXTREMES[i].to_owned(),
                i if i == TEXT_EXTREMES.len() => (original + 1).to_string(),
                _ => (original * 1000 + 7).to_string(),
            };
            self.log.push(format!("text@{}={v:?}", f.at));
            out.splice(f.at..f.at + f.len, v.into_bytes());
            return;
        }
        let old = read_uint(&out[f.at..f.at + f.len], f.kind);
        let v = match self.below(EXTREMES.len() + 3) {
            i if i < EXTREMES.len() => EXTREMES[i],
            i if i == EXTREMES.len() => old.wrapping_add(1),
            i if i == EXTREMES.len() + 1 => old.wrapping_sub(1),
            _ => old.wrapping_mul(2).wrapping_add(self.below(1 << 16) as u64),
        };
        self.log.push(format!("{:?}@{}={v:#x}", f.kind, f.at));
        write_uint(&mut out[f.at..f.at + f.len], f.kind, v);
    }

    fn edit(&mut self, out: &mut Vec<u8>, text: bool) {
        let n = out.len();
        let at = self.below(n + 1);
        match self.below(if text { 9 } else { 8 }) {
            0 if n > 0 => {
                let at = self.below(n);
                let bit = self.below(8);
                out[at] ^= 1 << bit;
                self.log.push(format!("flip@{at}.{bit}"));
            }
            1 if n > 0 => {
                let at = self.below(n);
                out[at] = self.rng.random();
                self.log.push(format!("byte@{at}={:#x}", out[at]));
            }
            2 if n > 0 => {
                let at = self.below(n);
                out[at] = [0x00, 0xff, 0x7f, 0x80][self.below(4)];
                self.log.push(format!("byte@{at}={:#x}", out[at]));
            }
            3 => {
                out.truncate(at);
                self.log.push(format!("truncate@{at}"));
            }
            4 => {
                let mut ins = vec![0u8; 1 + self.below(8)];
                self.rng.fill_bytes(&mut ins);
                self.log.push(format!("insert@{at}+{}", ins.len()));
                out.splice(at..at, ins);
            }
            5 => {
                let len = (1 + self.below(32)).min(n - at);
                out.drain(at..at + len);
                self.log.push(format!("delete@{at}+{len}"));
            }
            6 if n > 0 => {
                let from = self.below(n);
                let len = (1 + self.below(64)).min(n - from);
                let copy = out[from..from + len].to_vec();
                out.splice(at..at, copy);
                self.log.push(format!("dup@{from}+{len}->{at}"));
            }
            7 if n > 0 => {
                // Swap two chunks' bytes: moves valid structure where the reader does not expect it.
                let a = self.below(n);
                let b = self.below(n);
                let len = (1 + self.below(16)).min(n - a.max(b));
                for i in 0..len {
                    out.swap(a + i, b + i);
                }
                self.log.push(format!("swap@{a},{b}+{len}"));
            }
            8 => {
                let token = if self.chance(0.1) {
                    // Deep nesting, in the shape of each text format's containers.
                    ["[", "{\"a\":", "a={", "x=["][self.below(4)].repeat(2000 + self.below(20000))
                } else {
                    TEXT_TOKENS[self.below(TEXT_TOKENS.len())].to_owned()
                };
                self.log.push(format!("token@{at}:{:?}", &token[..token.len().min(8)]));
                out.splice(at..at, token.into_bytes());
            }
            _ => {}
        }
    }

    /// The mutations applied so far, for the failure report.
    pub fn describe(&self) -> String {
        self.log.join(" ")
    }
}

pub fn read_uint(b: &[u8], kind: Kind) -> u64 {
    let mut v = 0u64;
    match kind {
        Kind::U16Le | Kind::U32Le | Kind::U64Le => {
            for (i, &x) in b.iter().enumerate() {
                v |= (x as u64) << (8 * i);
            }
        }
        Kind::U16Be | Kind::U32Be => {
            for &x in b {
                v = (v << 8) | x as u64;
            }
        }
        Kind::Text => {}
    }
    v
}

pub fn write_uint(b: &mut [u8], kind: Kind, v: u64) {
    let n = b.len();
    for i in 0..n {
        let byte = (v >> (8 * i)) as u8;
        match kind {
            Kind::U16Le | Kind::U32Le | Kind::U64Le => b[i] = byte,
            _ => b[n - 1 - i] = byte,
        }
    }
}

/// Every run of ASCII digits (with a leading `-`) in `text`, as text fields at `base + offset`.
pub fn fields_digits(text: &[u8], base: usize) -> Vec<Field> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() {
            let start = if i > 0 && text[i - 1] == b'-' { i - 1 } else { i };
            let mut j = i;
            while j < text.len() && text[j].is_ascii_digit() {
                j += 1;
            }
            out.push(Field::text(base + start, j - start));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The length, size and offset fields of a zip archive's local headers, central directory
/// and end record (what a zip reader sizes its buffers from).
pub fn fields_zip(zip: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    for i in 0..zip.len().saturating_sub(4) {
        match &zip[i..i + 4] {
            // local file header: crc, compressed size, uncompressed size, name length, extra length
            b"PK\x03\x04" if i + 30 <= zip.len() => {
                out.extend([14, 18, 22].map(|o| Field::new(i + o, Kind::U32Le)));
                out.extend([26, 28].map(|o| Field::new(i + o, Kind::U16Le)));
            }
            // central directory entry: sizes, name/extra/comment lengths, local header offset
            b"PK\x01\x02" if i + 46 <= zip.len() => {
                out.extend([20, 24, 42].map(|o| Field::new(i + o, Kind::U32Le)));
                out.extend([28, 30, 32].map(|o| Field::new(i + o, Kind::U16Le)));
            }
            // end of central directory: entry counts, directory size and offset
            b"PK\x05\x06" if i + 22 <= zip.len() => {
                out.extend([8, 10].map(|o| Field::new(i + o, Kind::U16Le)));
                out.extend([12, 16].map(|o| Field::new(i + o, Kind::U32Le)));
            }
            _ => {}
        }
    }
    out
}

/// The fields of a pickle: every opcode argument that is a length, an index or an integer.
/// Walks the opcodes of a valid pickle (protocols 2-5, the opcodes the writers here emit).
pub fn fields_pickle(p: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let op = p[i];
        i += 1;
        let arg = match op {
            b'X' | b'B' | b'T' => {
                let n = read_uint(&p[i..(i + 4).min(p.len())], Kind::U32Le) as usize;
                out.push(Field::new(i, Kind::U32Le));
                4 + n
            }
            0x8c | b'C' => {
                let n = *p.get(i).unwrap_or(&0) as usize;
                1 + n
            }
            0x8d | 0x8e => {
                let n = read_uint(&p[i..(i + 8).min(p.len())], Kind::U64Le) as usize;
                out.push(Field::new(i, Kind::U64Le));
                8 + n
            }
            0x95 => {
                out.push(Field::new(i, Kind::U64Le));
                8
            }
            b'J' | b'r' | b'j' => {
                out.push(Field::new(i, Kind::U32Le));
                4
            }
            b'M' => {
                out.push(Field::new(i, Kind::U16Le));
                2
            }
            b'K' | b'q' | b'h' | 0x80 => 1,
            0x8a => 1 + *p.get(i).unwrap_or(&0) as usize,
            b'G' => 8,
            b'c' => {
                let mut j = i;
                for _ in 0..2 {
                    while j < p.len() && p[j] != b'\n' {
                        j += 1;
                    }
                    j += 1;
                }
                j - i
            }
            _ => 0,
        };
        i += arg;
    }
    out.retain(|f| f.at + f.len <= p.len());
    out
}
