//! The text form of a program: parser, canonical printer and the bounds both forms share.
//!
//! ```text
//! cma_alloc area=reserved count=16 align=4      # align defaults to 0
//! cma_release h=0
//! cma_release_raw area=reserved off=100 count=4
//! dma_alloc size=64K attrs=wc,nokmap gfp=atomic # attrs default none, gfp default kernel
//! dma_free h=1
//! pin area=reserved off=65                      # busy page: cma_alloc windows over it retry
//! unpin area=reserved off=65
//! dma_map h=1 dir=to_device                     # streaming map+sync+unmap; dir default bidirectional
//! observe
//! ```

use super::{
    AreaRef, DmaAttrs, DmaDir, Gfp, Handle, Op, ParseError, Program, MAX_ALIGN, MAX_COUNT, MAX_DMA_SIZE, MAX_HANDLES,
    MAX_OPS,
};
use crate::units::{Bytes, Order, Pages};
use std::fmt;

/// One whitespace-separated token and its 1-based column (in characters).
#[derive(Clone, Copy)]
struct Token<'a> {
    col: usize,
    text: &'a str,
}

/// One `key=value` argument.
struct Arg<'a> {
    key: &'a str,
    value: &'a str,
    value_col: usize,
}

/// The arguments of one op, checked for unknown and duplicate keys.
struct Args<'a> {
    line: usize,
    op: Token<'a>,
    args: Vec<Arg<'a>>,
}

fn err(line: usize, col: usize, msg: impl Into<String>) -> ParseError {
    ParseError { line, col, msg: msg.into() }
}

fn tokens(content: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for (col0, (byte, ch)) in content.char_indices().enumerate() {
        if ch.is_whitespace() {
            if let Some((b, col)) = start.take() {
                out.push(Token { col, text: &content[b..byte] });
            }
        } else if start.is_none() {
            start = Some((byte, col0 + 1));
        }
    }
    if let Some((b, col)) = start {
        out.push(Token { col, text: &content[b..] });
    }
    out
}

impl<'a> Args<'a> {
    fn new(line: usize, op: Token<'a>, known: &[&str], raw: &[Token<'a>]) -> Result<Self, ParseError> {
        let mut args: Vec<Arg<'a>> = Vec::with_capacity(raw.len());
        for tok in raw {
            let Some((key, value)) = tok.text.split_once('=') else {
                return Err(err(line, tok.col, format!("expected key=value, found `{}`", tok.text)));
            };
            if key.is_empty() {
                return Err(err(line, tok.col, format!("missing key before `=` in `{}`", tok.text)));
            }
            if !known.contains(&key) {
                let expected = if known.is_empty() { "no arguments".to_string() } else { known.join(", ") };
                return Err(err(line, tok.col, format!("unknown key `{key}` for {} (expected {expected})", op.text)));
            }
            if args.iter().any(|a| a.key == key) {
                return Err(err(line, tok.col, format!("duplicate key `{key}`")));
            }
            let value_col = tok.col + key.chars().count() + 1;
            if value.is_empty() {
                return Err(err(line, value_col, format!("empty value for `{key}`")));
            }
            args.push(Arg { key, value, value_col });
        }
        Ok(Args { line, op, args })
    }

    fn optional<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, ParseError> {
        match self.args.iter().find(|a| a.key == key) {
            None => Ok(None),
            Some(a) => parse(a.value).map(Some).map_err(|msg| err(self.line, a.value_col, format!("{key}: {msg}"))),
        }
    }

    fn required<T>(&self, key: &str, what: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ParseError> {
        self.optional(key, parse)?
            .ok_or_else(|| err(self.line, self.op.col, format!("{} needs {key}=<{what}>", self.op.text)))
    }
}

/// Parse a decimal or `0x` hexadecimal unsigned number (no sign, no separators).
fn number(s: &str) -> Result<u64, String> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("`{s}` is not a number (decimal or 0x hex)"));
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("`{s}` does not fit in 64 bits"))
}

pub(super) fn check_count(v: u64) -> Result<(), String> {
    if v > MAX_COUNT {
        return Err(format!("{v} out of range 0..={MAX_COUNT}"));
    }
    Ok(())
}

pub(super) fn check_align(v: u32) -> Result<(), String> {
    if v > MAX_ALIGN {
        return Err(format!("{v} out of range 0..={MAX_ALIGN} (larger shifts are undefined in the kernel)"));
    }
    Ok(())
}

pub(super) fn check_size(v: u64) -> Result<(), String> {
    if v > MAX_DMA_SIZE {
        return Err(format!("{v} out of range 0..={MAX_DMA_SIZE} (1 GiB)"));
    }
    Ok(())
}

pub(super) fn check_handle(v: u32) -> Result<(), String> {
    if v >= MAX_HANDLES {
        return Err(format!("{v} out of range 0..={} (the driver has {MAX_HANDLES} slots)", MAX_HANDLES - 1));
    }
    Ok(())
}

/// A name the text form can carry: non-empty, no whitespace, no `#`, not all digits (that would
/// read back as an index).
pub(super) fn check_area_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty area name".to_string());
    }
    if name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(format!("area name `{name}` contains whitespace or `#`; the text form cannot carry it"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("area name `{name}` is all digits and would read back as an index; use AreaRef::Index"));
    }
    Ok(())
}

fn count(s: &str) -> Result<Pages, String> {
    let v = number(s)?;
    check_count(v)?;
    Ok(Pages(v))
}

fn align(s: &str) -> Result<Order, String> {
    let v = number(s)?;
    let v = u32::try_from(v).unwrap_or(u32::MAX);
    check_align(v)?;
    Ok(Order(v))
}

fn offset(s: &str) -> Result<i64, String> {
    let (negative, magnitude) = match s.strip_prefix('-') {
        Some(rest) => (true, number(rest)?),
        None => (false, number(s)?),
    };
    let signed = if negative { -i128::from(magnitude) } else { i128::from(magnitude) };
    i64::try_from(signed).map_err(|_| format!("`{s}` out of range of a signed 64-bit offset"))
}

fn size(s: &str) -> Result<Bytes, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1u64 << 20),
        _ => (s, 1),
    };
    let v = number(digits)?.checked_mul(unit).ok_or_else(|| format!("`{s}` does not fit in 64 bits"))?;
    check_size(v)?;
    Ok(Bytes(v))
}

fn handle(s: &str) -> Result<Handle, String> {
    let v = number(s)?;
    let v = u32::try_from(v).unwrap_or(u32::MAX);
    check_handle(v)?;
    Ok(Handle(v))
}

fn area(s: &str) -> Result<AreaRef, String> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u32>().map(AreaRef::Index).map_err(|_| format!("area index `{s}` does not fit in 32 bits"));
    }
    check_area_name(s)?;
    Ok(AreaRef::Name(s.to_string()))
}

fn attrs(s: &str) -> Result<DmaAttrs, String> {
    let mut attrs = DmaAttrs::default();
    if s == "none" {
        return Ok(attrs);
    }
    for word in s.split(',') {
        let flag = match word {
            "wc" => &mut attrs.wc,
            "nokmap" => &mut attrs.nokmap,
            "" => return Err(format!("empty attribute in `{s}`")),
            other => return Err(format!("unknown attribute `{other}` (expected none, or a comma list of wc, nokmap)")),
        };
        if *flag {
            return Err(format!("attribute `{word}` given twice"));
        }
        *flag = true;
    }
    Ok(attrs)
}

fn gfp(s: &str) -> Result<Gfp, String> {
    match s {
        "kernel" => Ok(Gfp::Kernel),
        "atomic" => Ok(Gfp::Atomic),
        other => Err(format!("unknown gfp `{other}` (expected kernel or atomic)")),
    }
}

fn dir(s: &str) -> Result<DmaDir, String> {
    match s {
        "bidirectional" => Ok(DmaDir::Bidirectional),
        "to_device" => Ok(DmaDir::ToDevice),
        "from_device" => Ok(DmaDir::FromDevice),
        other => Err(format!("unknown direction `{other}` (expected bidirectional, to_device or from_device)")),
    }
}

const OPS: &str = "cma_alloc, cma_release, cma_release_raw, dma_alloc, dma_free, pin, unpin, kmap, dma_map or observe";

fn parse_op(line: usize, op: Token<'_>, raw: &[Token<'_>]) -> Result<Op, ParseError> {
    let known: &[&str] = match op.text {
        "cma_alloc" => &["area", "count", "align"],
        "cma_release" | "dma_free" => &["h"],
        "cma_release_raw" => &["area", "off", "count"],
        "dma_alloc" => &["size", "attrs", "gfp"],
        "pin" | "unpin" | "kmap" => &["area", "off"],
        "dma_map" => &["h", "dir"],
        "observe" => &[],
        other => return Err(err(line, op.col, format!("unknown op `{other}` (expected {OPS})"))),
    };
    let args = Args::new(line, op, known, raw)?;
    Ok(match op.text {
        "cma_alloc" => Op::CmaAlloc {
            area: args.required("area", "name or index", area)?,
            count: args.required("count", "pages", count)?,
            align: args.optional("align", align)?.unwrap_or_default(),
        },
        "cma_release" => Op::CmaRelease { h: args.required("h", "handle", handle)? },
        "cma_release_raw" => Op::CmaReleaseRaw {
            area: args.required("area", "name or index", area)?,
            off: args.required("off", "page offset", offset)?,
            count: args.required("count", "pages", count)?,
        },
        "dma_alloc" => Op::DmaAlloc {
            size: args.required("size", "bytes", size)?,
            attrs: args.optional("attrs", attrs)?.unwrap_or_default(),
            gfp: args.optional("gfp", gfp)?.unwrap_or_default(),
        },
        "dma_free" => Op::DmaFree { h: args.required("h", "handle", handle)? },
        "pin" => Op::Pin {
            area: args.required("area", "name or index", area)?,
            off: args.required("off", "page offset", offset)?,
        },
        "unpin" => Op::Unpin {
            area: args.required("area", "name or index", area)?,
            off: args.required("off", "page offset", offset)?,
        },
        "kmap" => Op::Kmap {
            area: args.required("area", "name or index", area)?,
            off: args.required("off", "page offset", offset)?,
        },
        "dma_map" => {
            Op::DmaMap { h: args.required("h", "handle", handle)?, dir: args.optional("dir", dir)?.unwrap_or_default() }
        }
        _ => Op::Observe,
    })
}

/// [`Program::parse`].
pub(super) fn parse(text: &str) -> Result<Program, ParseError> {
    let mut ops = Vec::new();
    let mut allocating = 0usize;
    for (index, raw_line) in text.split('\n').enumerate() {
        let line = index + 1;
        let content = raw_line.split_once('#').map_or(raw_line, |(code, _)| code);
        let toks = tokens(content);
        let Some((&op, rest)) = toks.split_first() else {
            continue;
        };
        if ops.len() >= MAX_OPS {
            return Err(err(line, op.col, format!("more than {MAX_OPS} ops (the driver runs at most {MAX_OPS})")));
        }
        let parsed = parse_op(line, op, rest)?;
        if parsed.allocates() {
            if allocating >= MAX_HANDLES as usize {
                return Err(err(
                    line,
                    op.col,
                    format!("more than {MAX_HANDLES} allocating ops (the driver has {MAX_HANDLES} handle slots)"),
                ));
            }
            allocating += 1;
        }
        ops.push(parsed);
    }
    Ok(Program { ops })
}

/// The bounds [`parse`] enforces, for programs built another way: `(op index, message)`.
pub(super) fn check_bounds(prog: &Program) -> Result<(), (usize, String)> {
    if prog.ops.len() > MAX_OPS {
        return Err((MAX_OPS, format!("more than {MAX_OPS} ops")));
    }
    for (i, op) in prog.ops.iter().enumerate() {
        let at = |what: &str, r: Result<(), String>| r.map_err(|m| (i, format!("{what}: {m}")));
        let check_ref = |r: &AreaRef| match r {
            AreaRef::Name(n) => check_area_name(n),
            AreaRef::Index(_) => Ok(()),
        };
        match op {
            Op::CmaAlloc { area, count, align } => {
                at("area", check_ref(area))?;
                at("count", check_count(count.0))?;
                at("align", check_align(align.0))?;
            }
            Op::CmaRelease { h } | Op::DmaFree { h } | Op::DmaMap { h, .. } => at("h", check_handle(h.0))?,
            Op::CmaReleaseRaw { area, count, .. } => {
                at("area", check_ref(area))?;
                at("count", check_count(count.0))?;
            }
            Op::DmaAlloc { size, .. } => at("size", check_size(size.0))?,
            Op::Pin { area, .. } | Op::Unpin { area, .. } | Op::Kmap { area, .. } => at("area", check_ref(area))?,
            Op::Observe => {}
        }
    }
    // Allocating ops cannot exceed MAX_HANDLES once ops <= MAX_OPS == MAX_HANDLES.
    Ok(())
}

impl fmt::Display for AreaRef {
    /// The text form: the name, or the index in decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AreaRef::Name(n) => f.write_str(n),
            AreaRef::Index(i) => write!(f, "{i}"),
        }
    }
}

impl fmt::Display for DmaAttrs {
    /// The text form: `none`, `wc`, `nokmap` or `wc,nokmap`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.wc, self.nokmap) {
            (false, false) => "none",
            (true, false) => "wc",
            (false, true) => "nokmap",
            (true, true) => "wc,nokmap",
        })
    }
}

impl fmt::Display for Gfp {
    /// The text form: `kernel` or `atomic`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gfp::Kernel => "kernel",
            Gfp::Atomic => "atomic",
        })
    }
}

impl fmt::Display for DmaDir {
    /// The text form: `bidirectional`, `to_device` or `from_device`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DmaDir::Bidirectional => "bidirectional",
            DmaDir::ToDevice => "to_device",
            DmaDir::FromDevice => "from_device",
        })
    }
}

impl fmt::Display for Op {
    /// One canonical text line (no newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CmaAlloc { area, count, align } => {
                write!(f, "cma_alloc area={area} count={} align={}", count.0, align.0)
            }
            Op::CmaRelease { h } => write!(f, "cma_release h={}", h.0),
            Op::CmaReleaseRaw { area, off, count } => {
                write!(f, "cma_release_raw area={area} off={off} count={}", count.0)
            }
            Op::DmaAlloc { size, attrs, gfp } => {
                write!(f, "dma_alloc size={} attrs={attrs} gfp={gfp}", size.0)
            }
            Op::DmaFree { h } => write!(f, "dma_free h={}", h.0),
            Op::Pin { area, off } => write!(f, "pin area={area} off={off}"),
            Op::Unpin { area, off } => write!(f, "unpin area={area} off={off}"),
            Op::Kmap { area, off } => write!(f, "kmap area={area} off={off}"),
            Op::DmaMap { h, dir } => write!(f, "dma_map h={} dir={dir}", h.0),
            Op::Observe => f.write_str("observe"),
        }
    }
}

/// [`Program::to_text`].
pub(super) fn print(prog: &Program) -> String {
    let mut out = String::new();
    for op in &prog.ops {
        out.push_str(&op.to_string());
        out.push('\n');
    }
    out
}
