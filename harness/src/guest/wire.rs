//! The host side of the guest wire format: encoding and decoding. The constants and the struct
//! layouts are defined once, in `wire_def.rs`, which also renders the C header
//! `qemu/include/cmafuzz_wire.h`; every offset and size here comes from that table.
//!
//! Everything that arrives from the guest is untrusted: every count is
//! bounded before it is used to size anything, and decoding never panics.

use super::wire_def::{
    At, NameBytes, Struct, AGENT_HELLO, AREA, FRAME_HDR, HELLO, KCOV, MAP, MEMRANGE, OBS_HDR, OP, PROGRESS, RESULT,
    RESULT_HDR, RUN,
};
use thiserror::Error;

pub use super::wire_def::{
    AGENT_KCOV, ARCH_ARM32, ARCH_ARM32_LPAE, ARCH_ARM64, AREA_ACTIVATED, AREA_AVAILABLE, ATTR_NOKMAP, ATTR_WC,
    DIR_BIDIRECTIONAL, DIR_FROM_DEVICE, DIR_TO_DEVICE, FRAME_ERROR, FRAME_HDR_SIZE, FRAME_HELLO, FRAME_PROGRESS,
    FRAME_RESULT, FRAME_RUN, GFP_ATOMIC, HELLO_SIZE, KCOV_MAGIC, KCOV_TRUNCATED, LVL_PMD, LVL_PTE, LVL_PUD,
    LVL_SECTION, MAGIC, MAP_FIXMAP, MAP_LIN, MAP_PKMAP, MAP_VMAP, MAX_AREAS, MAX_AREA_RANGES, MAX_BITMAP_WORDS,
    MAX_CMA_ALIGN, MAX_DMA_SIZE, MAX_FRAME, MAX_HANDLES, MAX_KCOV, MAX_MAPS, MAX_OPS, MAX_PINS, NAME_LEN,
    OBS_MAPS_TRUNCATED, OP_CMA_ALLOC, OP_CMA_RELEASE, OP_CMA_RELEASE_RAW, OP_DMA_ALLOC, OP_DMA_FREE, OP_DMA_MAP,
    OP_KMAP, OP_OBSERVE, OP_PIN, OP_RESET, OP_SIZE, OP_UNPIN, PKMAP_UNKNOWN, PROGRESS_MS, RESULT_SIZE, RUN_KCOV,
    RUN_OBSERVE_EACH, RUN_SIZE, ST_BADOP, ST_FAILED, ST_NOOP, ST_OK, ST_REFUSED, VERSION,
};

/// A malformed frame or payload from the guest.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The frame header does not start with the magic number.
    #[error("bad frame magic {0:#010x} (expected {MAGIC:#010x}): the guest sent garbage")]
    BadMagic(u32),
    /// The guest speaks another wire version.
    #[error("guest speaks wire version {0}, host speaks {VERSION}: rebuild the guest (cmafuzz kernel build)")]
    BadVersion(u16),
    /// A length or count is above the bound of the wire format.
    #[error("{what} is {got}, above the limit {limit}")]
    TooBig { what: &'static str, got: u64, limit: u64 },
    /// The payload ended before the structure it announced.
    #[error("payload truncated: {what} needs {need} bytes at offset {at}, payload has {len}")]
    Truncated { what: &'static str, need: usize, at: usize, len: usize },
    /// Bytes left over after the last structure.
    #[error("payload has {0} trailing bytes")]
    Trailing(usize),
    /// A field holds a value the format does not define.
    #[error("{what} has undefined value {got}")]
    BadValue { what: &'static str, got: u64 },
}

/// `struct cf_frame_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHdr {
    pub kind: u16,
    pub len: u32,
    pub seq: u32,
}

impl FrameHdr {
    pub fn encode(&self) -> [u8; FRAME_HDR_SIZE] {
        let mut b = [0u8; FRAME_HDR_SIZE];
        let mut w = RecMut::new(&FRAME_HDR, &mut b);
        w.u32(const { FRAME_HDR.u32("magic") }, MAGIC);
        w.u16(const { FRAME_HDR.u16("version") }, VERSION);
        w.u16(const { FRAME_HDR.u16("kind") }, self.kind);
        w.u32(const { FRAME_HDR.u32("len") }, self.len);
        w.u32(const { FRAME_HDR.u32("seq") }, self.seq);
        b
    }

    pub fn decode(b: &[u8; FRAME_HDR_SIZE]) -> Result<FrameHdr, WireError> {
        let h = Reader::new(b).record(&FRAME_HDR)?;
        let magic = h.u32(const { FRAME_HDR.u32("magic") });
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let version = h.u16(const { FRAME_HDR.u16("version") });
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let kind = h.u16(const { FRAME_HDR.u16("kind") });
        let len = h.u32(const { FRAME_HDR.u32("len") });
        let seq = h.u32(const { FRAME_HDR.u32("seq") });
        if !(FRAME_HELLO..=FRAME_PROGRESS).contains(&kind) {
            return Err(WireError::BadValue { what: "frame kind", got: kind.into() });
        }
        if len > MAX_FRAME {
            return Err(WireError::TooBig { what: "frame length", got: len.into(), limit: MAX_FRAME.into() });
        }
        Ok(FrameHdr { kind, len, seq })
    }
}

/// `struct cf_hello`: what the guest says about itself at boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hello {
    pub version: u32,
    pub max_frame: u32,
    pub max_ops: u32,
    pub max_handles: u32,
    pub arch: u32,
    pub page_shift: u32,
    pub cma_alignment: u32,
    pub pageblock_order: u32,
    pub max_low_pfn: u64,
    pub max_pfn: u64,
    pub release: String,
    /// PRRR | NMRR << 32 (arm32), MAIR0 | MAIR1 << 32 (LPAE), MAIR_EL1 (arm64).
    pub attr_regs: u64,
    /// `LAST_PKMAP` on arm32 highmem kernels, else 0.
    pub pkmap_slots: u32,
    /// `struct cf_agent_hello.flags`: what the agent itself can do (`AGENT_*`).
    pub agent_flags: u32,
    /// Most distinct PCs one KCOV trailer holds; 0 without KCOV.
    pub max_kcov: u32,
    /// `1 << OP_*` for every op kind the driver's boot self-check found doing what it means.
    pub ops_ok: u32,
}

/// `struct cf_progress`: the ops of the current RUN the driver has completed.
pub fn decode_progress(p: &[u8]) -> Result<u64, WireError> {
    let mut r = Reader::new(p);
    let d = r.record(&PROGRESS)?;
    r.finish()?;
    Ok(d.u64(const { PROGRESS.u64("ops_done") }))
}

impl Hello {
    pub fn decode(p: &[u8]) -> Result<Hello, WireError> {
        let mut r = Reader::new(p);
        let d = r.record(&HELLO)?;
        let a = r.record(&AGENT_HELLO)?;
        r.finish()?;
        let h = Hello {
            version: d.u32(const { HELLO.u32("version") }),
            max_frame: d.u32(const { HELLO.u32("max_frame") }),
            max_ops: d.u32(const { HELLO.u32("max_ops") }),
            max_handles: d.u32(const { HELLO.u32("max_handles") }),
            arch: d.u32(const { HELLO.u32("arch") }),
            page_shift: d.u32(const { HELLO.u32("page_shift") }),
            cma_alignment: d.u32(const { HELLO.u32("cma_alignment") }),
            pageblock_order: d.u32(const { HELLO.u32("pb_order") }),
            max_low_pfn: d.u64(const { HELLO.u64("max_low_pfn") }),
            max_pfn: d.u64(const { HELLO.u64("max_pfn") }),
            release: d.name(const { HELLO.name("release") }),
            attr_regs: d.u64(const { HELLO.u64("attr_regs") }),
            pkmap_slots: d.u32(const { HELLO.u32("pkmap_slots") }),
            ops_ok: d.u32(const { HELLO.u32("ops_ok") }),
            agent_flags: a.u32(const { AGENT_HELLO.u32("flags") }),
            max_kcov: a.u32(const { AGENT_HELLO.u32("max_kcov") }),
        };
        if h.agent_flags & !AGENT_KCOV != 0 {
            return Err(WireError::BadValue { what: "agent_hello.flags", got: h.agent_flags.into() });
        }
        if h.max_kcov > MAX_KCOV || (h.agent_flags & AGENT_KCOV != 0) != (h.max_kcov > 0) {
            return Err(WireError::BadValue { what: "agent_hello.max_kcov", got: h.max_kcov.into() });
        }
        if h.version != u32::from(VERSION) {
            return Err(WireError::BadVersion(h.version.min(u16::MAX.into()) as u16));
        }
        if !(ARCH_ARM32..=ARCH_ARM64).contains(&h.arch) {
            return Err(WireError::BadValue { what: "hello.arch", got: h.arch.into() });
        }
        if h.page_shift != 12 {
            return Err(WireError::BadValue { what: "hello.page_shift", got: h.page_shift.into() });
        }
        Ok(h)
    }

    /// Did the driver's boot self-check find op kind `kind` (`OP_*`) doing what it means?
    pub fn op_works(&self, kind: u32) -> bool {
        kind < 32 && self.ops_ok & (1 << kind) != 0
    }

    /// The agent collects KCOV coverage when a RUN asks for it ([`RUN_KCOV`]).
    pub fn kcov(&self) -> bool {
        self.agent_flags & AGENT_KCOV != 0
    }
}

/// `struct cf_op`, as the host sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireOp {
    pub kind: u32,
    pub area: u32,
    pub handle: u32,
    pub flags: u32,
    pub a: u64,
    pub b: u64,
}

/// Encodes a RUN payload: `struct cf_run` (flags 0) then the ops.
pub fn encode_run(ops: &[WireOp]) -> Result<Vec<u8>, WireError> {
    encode_run_flags(ops, 0)
}

/// Encodes a RUN payload with `CF_RUN_*` flags.
pub fn encode_run_flags(ops: &[WireOp], flags: u32) -> Result<Vec<u8>, WireError> {
    let n = ops.len() as u64;
    if n > u64::from(MAX_OPS) {
        return Err(WireError::TooBig { what: "ops in one run", got: n, limit: MAX_OPS.into() });
    }
    let mut b = vec![0u8; RUN_SIZE + ops.len() * OP_SIZE];
    let (run, rest) = b.split_at_mut(RUN_SIZE);
    let mut w = RecMut::new(&RUN, run);
    w.u32(const { RUN.u32("nops") }, ops.len() as u32);
    w.u32(const { RUN.u32("flags") }, flags);
    for (op, chunk) in ops.iter().zip(rest.chunks_exact_mut(OP_SIZE)) {
        let mut w = RecMut::new(&OP, chunk);
        w.u32(const { OP.u32("kind") }, op.kind);
        w.u32(const { OP.u32("area") }, op.area);
        w.u32(const { OP.u32("handle") }, op.handle);
        w.u32(const { OP.u32("flags") }, op.flags);
        w.u64(const { OP.u64("a") }, op.a);
        w.u64(const { OP.u64("b") }, op.b);
    }
    Ok(b)
}

/// `struct cf_result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WireResult {
    pub status: u32,
    pub kind: u32,
    pub pfn: u64,
    pub pages: u64,
    pub aux: u64,
    pub stale_refs: u64,
}

/// One area of an observation block (`struct cf_area` + its ranges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireArea {
    pub name: String,
    /// Pages of all ranges; 0 for a disabled area.
    pub count: u64,
    /// The kernel's `available_count`, where it keeps one (7.x).
    pub available: Option<u64>,
    pub order_per_bit: u32,
    /// The bitmaps exist (`CMA_ACTIVATED` on 7.x).
    pub activated: bool,
    pub ranges: Vec<WireRange>,
}

/// One range of an area (`struct cf_memrange` + bitmap words; no words unless activated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRange {
    pub base_pfn: u64,
    pub count: u64,
    pub words: Vec<u32>,
}

/// One run of the mapping table (`struct cf_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireMap {
    pub va: u64,
    pub pfn: u64,
    pub pages: u32,
    pub kind: u8,
    pub level: u8,
    pub attr: u8,
}

/// One observation block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireObs {
    pub op_index: u32,
    pub cma_free_pages: u64,
    pub areas: Vec<WireArea>,
    pub maps: Vec<WireMap>,
    pub flags: u32,
    pub pkmap_last: u32,
}

/// The `struct cf_kcov` trailer: the distinct kernel PCs of one run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kcov {
    /// In the order the kernel first ran them.
    pub pcs: Vec<u64>,
    /// The agent dropped some (trace buffer full, above `MAX_KCOV`, frame full).
    pub truncated: bool,
}

/// A decoded RESULT payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    pub results: Vec<WireResult>,
    pub observations: Vec<WireObs>,
    /// Present when the run asked for KCOV and the agent has it.
    pub kcov: Option<Kcov>,
}

/// Decodes a RESULT payload for a RUN of `nops` ops.
pub fn decode_result(p: &[u8], nops: usize) -> Result<RunResult, WireError> {
    let mut r = Reader::new(p);
    let hdr = r.record(&RESULT_HDR)?;
    let nres = hdr.u32(const { RESULT_HDR.u32("nresults") });
    let nobs = hdr.u32(const { RESULT_HDR.u32("nobs") });
    if nres as usize != nops {
        return Err(WireError::BadValue { what: "result_hdr.nresults (must equal ops sent)", got: nres.into() });
    }
    if nobs as usize > nops {
        return Err(WireError::TooBig { what: "observation blocks", got: nobs.into(), limit: nops as u64 });
    }
    let mut results = Vec::with_capacity(nops);
    for _ in 0..nres {
        let rec = r.record(&RESULT)?;
        let res = WireResult {
            status: rec.u32(const { RESULT.u32("status") }),
            kind: rec.u32(const { RESULT.u32("kind") }),
            pfn: rec.u64(const { RESULT.u64("pfn") }),
            pages: rec.u64(const { RESULT.u64("pages") }),
            aux: rec.u64(const { RESULT.u64("aux") }),
            stale_refs: rec.u64(const { RESULT.u64("stale_refs") }),
        };
        if res.status > ST_BADOP {
            return Err(WireError::BadValue { what: "result.status", got: res.status.into() });
        }
        results.push(res);
    }
    let mut observations = Vec::with_capacity(nobs as usize);
    for _ in 0..nobs {
        let o = r.record(&OBS_HDR)?;
        let op_index = o.u32(const { OBS_HDR.u32("op_index") });
        let nareas = o.u32(const { OBS_HDR.u32("nareas") });
        let cma_free_pages = o.u64(const { OBS_HDR.u64("cma_free_pages") });
        let nmaps = o.u32(const { OBS_HDR.u32("nmaps") });
        let flags = o.u32(const { OBS_HDR.u32("flags") });
        let pkmap_last = o.u32(const { OBS_HDR.u32("pkmap_last") });
        if nmaps > MAX_MAPS {
            return Err(WireError::TooBig { what: "obs.nmaps", got: nmaps.into(), limit: MAX_MAPS.into() });
        }
        if flags & !OBS_MAPS_TRUNCATED != 0 {
            return Err(WireError::BadValue { what: "obs.flags", got: flags.into() });
        }
        if op_index as usize >= nops {
            return Err(WireError::BadValue { what: "obs.op_index", got: op_index.into() });
        }
        if nareas > MAX_AREAS {
            return Err(WireError::TooBig { what: "obs.nareas", got: nareas.into(), limit: MAX_AREAS.into() });
        }
        let mut areas = Vec::with_capacity(nareas as usize);
        for _ in 0..nareas {
            areas.push(decode_area(&mut r)?);
        }
        let mut maps = Vec::with_capacity(nmaps as usize);
        for _ in 0..nmaps {
            let rec = r.record(&MAP)?;
            let m = WireMap {
                va: rec.u64(const { MAP.u64("va") }),
                pfn: rec.u64(const { MAP.u64("pfn") }),
                pages: rec.u32(const { MAP.u32("pages") }),
                kind: rec.u8(const { MAP.u8("kind") }),
                level: rec.u8(const { MAP.u8("level") }),
                attr: rec.u8(const { MAP.u8("attr") }),
            };
            if !(MAP_LIN..=MAP_FIXMAP).contains(&m.kind) {
                return Err(WireError::BadValue { what: "map.kind", got: m.kind.into() });
            }
            if !(LVL_PTE..=LVL_PUD).contains(&m.level) {
                return Err(WireError::BadValue { what: "map.level", got: m.level.into() });
            }
            if m.pages == 0 || m.attr > 7 {
                return Err(WireError::BadValue { what: "map.pages/attr", got: m.pages.into() });
            }
            maps.push(m);
        }
        observations.push(WireObs { op_index, cma_free_pages, areas, maps, flags, pkmap_last });
    }
    // Bytes after the last observation are a KCOV trailer if they say so, else garbage.
    let rest = &p[r.at..];
    let magic = const { KCOV.u32("magic") }.off;
    let kcov = if rest.is_empty() {
        None
    } else if rest.get(magic..magic + 4) == Some(&KCOV_MAGIC.to_le_bytes()[..]) {
        Some(decode_kcov(&mut r)?)
    } else {
        return Err(WireError::Trailing(rest.len()));
    };
    r.finish()?;
    Ok(RunResult { results, observations, kcov })
}

/// One `struct cf_area` and its ranges.
fn decode_area(r: &mut Reader<'_>) -> Result<WireArea, WireError> {
    let a = r.record(&AREA)?;
    let name = a.name(const { AREA.name("name") });
    let count = a.u64(const { AREA.u64("count") });
    let available = a.u64(const { AREA.u64("available") });
    let order_per_bit = a.u32(const { AREA.u32("order_per_bit") });
    let nranges = a.u32(const { AREA.u32("nranges") });
    let flags = a.u32(const { AREA.u32("flags") });
    if flags & !(AREA_ACTIVATED | AREA_AVAILABLE) != 0 || a.u32(const { AREA.u32("reserved") }) != 0 {
        return Err(WireError::BadValue { what: "area.flags/reserved", got: flags.into() });
    }
    if nranges > MAX_AREA_RANGES {
        return Err(WireError::TooBig { what: "area.nranges", got: nranges.into(), limit: MAX_AREA_RANGES.into() });
    }
    if order_per_bit >= 32 {
        return Err(WireError::BadValue { what: "area.order_per_bit", got: order_per_bit.into() });
    }
    let activated = flags & AREA_ACTIVATED != 0;
    let mut ranges = Vec::with_capacity(nranges as usize);
    let mut total = 0u64;
    for _ in 0..nranges {
        let m = r.record(&MEMRANGE)?;
        let base_pfn = m.u64(const { MEMRANGE.u64("base_pfn") });
        let rcount = m.u64(const { MEMRANGE.u64("count") });
        let nwords = m.u32(const { MEMRANGE.u32("nwords") });
        if nwords > MAX_BITMAP_WORDS {
            return Err(WireError::TooBig { what: "range.nwords", got: nwords.into(), limit: MAX_BITMAP_WORDS.into() });
        }
        let want = if activated { (rcount >> order_per_bit).div_ceil(32) } else { 0 };
        if u64::from(nwords) != want || m.u32(const { MEMRANGE.u32("reserved") }) != 0 {
            return Err(WireError::BadValue {
                what: "range.nwords (must be ceil((count >> opb) / 32) if activated, else 0)",
                got: nwords.into(),
            });
        }
        total = total.saturating_add(rcount);
        let mut words = Vec::with_capacity(nwords as usize);
        for _ in 0..nwords {
            words.push(r.u32("range.words")?);
        }
        ranges.push(WireRange { base_pfn, count: rcount, words });
    }
    // A live area's count is the sum of its ranges (a disabled one keeps its ranges, count 0).
    if activated && total != count {
        return Err(WireError::BadValue { what: "area.count (must be the sum of its ranges)", got: count });
    }
    let available = (flags & AREA_AVAILABLE != 0).then_some(available);
    Ok(WireArea { name, count, available, order_per_bit, activated, ranges })
}

/// The optional `struct cf_kcov` trailer at the end of a RESULT.
fn decode_kcov(r: &mut Reader<'_>) -> Result<Kcov, WireError> {
    let k = r.record(&KCOV)?;
    let npcs = k.u32(const { KCOV.u32("npcs") });
    let flags = k.u32(const { KCOV.u32("flags") });
    let reserved = k.u32(const { KCOV.u32("reserved") });
    if npcs > MAX_KCOV {
        return Err(WireError::TooBig { what: "kcov.npcs", got: npcs.into(), limit: MAX_KCOV.into() });
    }
    if flags & !KCOV_TRUNCATED != 0 || reserved != 0 {
        return Err(WireError::BadValue { what: "kcov.flags/reserved", got: flags.into() });
    }
    // Checked before allocating: the count must match the bytes that are there.
    let need = npcs as usize * 8;
    if r.b.len() - r.at != need {
        return Err(WireError::BadValue { what: "kcov.npcs (must match the trailer's length)", got: npcs.into() });
    }
    let mut pcs = Vec::with_capacity(npcs as usize);
    for _ in 0..npcs {
        pcs.push(r.u64("kcov.pcs")?);
    }
    Ok(Kcov { pcs, truncated: flags & KCOV_TRUNCATED != 0 })
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(WireError::Truncated { what, need: n, at: self.at, len: self.b.len() }),
        }
    }

    /// The next `struct <s.name>`, whole.
    fn record(&mut self, s: &Struct) -> Result<Rec<'a>, WireError> {
        Ok(Rec { b: self.take(s.name, s.size())?, strukt: s.name })
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let s = self.take(what, 4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let s = self.take(what, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    fn finish(&self) -> Result<(), WireError> {
        match self.b.len() - self.at {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// One whole struct read off the wire; its fields are read at the offsets the table computes.
struct Rec<'a> {
    b: &'a [u8],
    strukt: &'static str,
}

impl Rec<'_> {
    /// The `N` bytes at `f`; `f` is a field of this struct (so in range by construction).
    fn bytes<const N: usize, T>(&self, f: At<T>) -> [u8; N] {
        debug_assert_eq!(f.strukt, self.strukt, "a field of another struct");
        let mut a = [0u8; N];
        let s = self.b.get(f.off..f.off + N);
        debug_assert!(s.is_some(), "{}: field at {} beyond the struct", self.strukt, f.off);
        if let Some(s) = s {
            a.copy_from_slice(s);
        }
        a
    }

    fn u8(&self, f: At<u8>) -> u8 {
        u8::from_le_bytes(self.bytes(f))
    }

    fn u16(&self, f: At<u16>) -> u16 {
        u16::from_le_bytes(self.bytes(f))
    }

    fn u32(&self, f: At<u32>) -> u32 {
        u32::from_le_bytes(self.bytes(f))
    }

    fn u64(&self, f: At<u64>) -> u64 {
        u64::from_le_bytes(self.bytes(f))
    }

    /// A NUL-padded fixed-size name; non-UTF-8 bytes are replaced, not trusted.
    fn name(&self, f: At<NameBytes>) -> String {
        let s: [u8; NAME_LEN] = self.bytes(f);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        String::from_utf8_lossy(&s[..end]).into_owned()
    }
}

/// One whole struct being written; fields go to the offsets the table computes.
struct RecMut<'a> {
    b: &'a mut [u8],
    strukt: &'static str,
}

impl<'a> RecMut<'a> {
    /// `b` is exactly one `struct <s.name>`.
    fn new(s: &Struct, b: &'a mut [u8]) -> Self {
        debug_assert_eq!(b.len(), s.size(), "{}", s.name);
        RecMut { b, strukt: s.name }
    }

    fn put<T>(&mut self, f: At<T>, v: &[u8]) {
        debug_assert_eq!(f.strukt, self.strukt, "a field of another struct");
        let d = self.b.get_mut(f.off..f.off + v.len());
        debug_assert!(d.is_some(), "{}: field at {} beyond the struct", self.strukt, f.off);
        if let Some(d) = d {
            d.copy_from_slice(v);
        }
    }

    fn u16(&mut self, f: At<u16>, v: u16) {
        self.put(f, &v.to_le_bytes());
    }

    fn u32(&mut self, f: At<u32>, v: u32) {
        self.put(f, &v.to_le_bytes());
    }

    fn u64(&mut self, f: At<u64>, v: u64) {
        self.put(f, &v.to_le_bytes());
    }

    fn u8(&mut self, f: At<u8>, v: u8) {
        self.put(f, &[v]);
    }

    /// A NUL-padded name; longer names are cut to leave the NUL.
    fn name(&mut self, f: At<NameBytes>, v: &str) {
        let mut b = [0u8; NAME_LEN];
        let n = v.len().min(NAME_LEN - 1);
        b[..n].copy_from_slice(&v.as_bytes()[..n]);
        self.put(f, &b);
    }
}

// ------------------------------------------------------------------------------------------------
// The guest's side of the format, for fake guests in host-side fault-injection tests (and
// round trips of the host's decoders). The real guest is C (agent and driver).

/// A `struct record` appended to `b`, filled by `fill`.
fn push_record(b: &mut Vec<u8>, s: &'static Struct, fill: impl FnOnce(&mut RecMut<'_>)) {
    let at = b.len();
    b.resize(at + s.size(), 0);
    let mut w = RecMut::new(s, &mut b[at..]);
    fill(&mut w);
}

impl Hello {
    /// The HELLO payload (`struct cf_hello` + `struct cf_agent_hello`).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        push_record(&mut b, &HELLO, |w| {
            w.u32(const { HELLO.u32("version") }, self.version);
            w.u32(const { HELLO.u32("max_frame") }, self.max_frame);
            w.u32(const { HELLO.u32("max_ops") }, self.max_ops);
            w.u32(const { HELLO.u32("max_handles") }, self.max_handles);
            w.u32(const { HELLO.u32("arch") }, self.arch);
            w.u32(const { HELLO.u32("page_shift") }, self.page_shift);
            w.u32(const { HELLO.u32("cma_alignment") }, self.cma_alignment);
            w.u32(const { HELLO.u32("pb_order") }, self.pageblock_order);
            w.u64(const { HELLO.u64("max_low_pfn") }, self.max_low_pfn);
            w.u64(const { HELLO.u64("max_pfn") }, self.max_pfn);
            w.name(const { HELLO.name("release") }, &self.release);
            w.u64(const { HELLO.u64("attr_regs") }, self.attr_regs);
            w.u32(const { HELLO.u32("pkmap_slots") }, self.pkmap_slots);
            w.u32(const { HELLO.u32("ops_ok") }, self.ops_ok);
        });
        push_record(&mut b, &AGENT_HELLO, |w| {
            w.u32(const { AGENT_HELLO.u32("flags") }, self.agent_flags);
            w.u32(const { AGENT_HELLO.u32("max_kcov") }, self.max_kcov);
        });
        b
    }
}

/// A RUN payload as the driver reads it: its flags and ops.
pub fn decode_run(p: &[u8]) -> Result<(u32, Vec<WireOp>), WireError> {
    let mut r = Reader::new(p);
    let h = r.record(&RUN)?;
    let nops = h.u32(const { RUN.u32("nops") });
    let flags = h.u32(const { RUN.u32("flags") });
    if nops > MAX_OPS {
        return Err(WireError::TooBig { what: "run.nops", got: nops.into(), limit: MAX_OPS.into() });
    }
    let mut ops = Vec::with_capacity(nops as usize);
    for _ in 0..nops {
        let o = r.record(&OP)?;
        ops.push(WireOp {
            kind: o.u32(const { OP.u32("kind") }),
            area: o.u32(const { OP.u32("area") }),
            handle: o.u32(const { OP.u32("handle") }),
            flags: o.u32(const { OP.u32("flags") }),
            a: o.u64(const { OP.u64("a") }),
            b: o.u64(const { OP.u64("b") }),
        });
    }
    r.finish()?;
    Ok((flags, ops))
}

/// A RESULT payload (without a KCOV trailer).
pub fn encode_result(r: &RunResult) -> Vec<u8> {
    let mut b = Vec::new();
    push_record(&mut b, &RESULT_HDR, |w| {
        w.u32(const { RESULT_HDR.u32("nresults") }, r.results.len() as u32);
        w.u32(const { RESULT_HDR.u32("nobs") }, r.observations.len() as u32);
    });
    for res in &r.results {
        push_record(&mut b, &RESULT, |w| {
            w.u32(const { RESULT.u32("status") }, res.status);
            w.u32(const { RESULT.u32("kind") }, res.kind);
            w.u64(const { RESULT.u64("pfn") }, res.pfn);
            w.u64(const { RESULT.u64("pages") }, res.pages);
            w.u64(const { RESULT.u64("aux") }, res.aux);
            w.u64(const { RESULT.u64("stale_refs") }, res.stale_refs);
        });
    }
    for o in &r.observations {
        push_record(&mut b, &OBS_HDR, |w| {
            w.u32(const { OBS_HDR.u32("op_index") }, o.op_index);
            w.u32(const { OBS_HDR.u32("nareas") }, o.areas.len() as u32);
            w.u64(const { OBS_HDR.u64("cma_free_pages") }, o.cma_free_pages);
            w.u32(const { OBS_HDR.u32("nmaps") }, o.maps.len() as u32);
            w.u32(const { OBS_HDR.u32("flags") }, o.flags);
            w.u32(const { OBS_HDR.u32("pkmap_last") }, o.pkmap_last);
        });
        for a in &o.areas {
            push_record(&mut b, &AREA, |w| {
                w.name(const { AREA.name("name") }, &a.name);
                w.u64(const { AREA.u64("count") }, a.count);
                w.u64(const { AREA.u64("available") }, a.available.unwrap_or(0));
                w.u32(const { AREA.u32("order_per_bit") }, a.order_per_bit);
                w.u32(const { AREA.u32("nranges") }, a.ranges.len() as u32);
                let mut flags = 0;
                if a.activated {
                    flags |= AREA_ACTIVATED;
                }
                if a.available.is_some() {
                    flags |= AREA_AVAILABLE;
                }
                w.u32(const { AREA.u32("flags") }, flags);
            });
            for m in &a.ranges {
                push_record(&mut b, &MEMRANGE, |w| {
                    w.u64(const { MEMRANGE.u64("base_pfn") }, m.base_pfn);
                    w.u64(const { MEMRANGE.u64("count") }, m.count);
                    w.u32(const { MEMRANGE.u32("nwords") }, m.words.len() as u32);
                });
                for word in &m.words {
                    b.extend_from_slice(&word.to_le_bytes());
                }
            }
        }
        for m in &o.maps {
            push_record(&mut b, &MAP, |w| {
                w.u64(const { MAP.u64("va") }, m.va);
                w.u64(const { MAP.u64("pfn") }, m.pfn);
                w.u32(const { MAP.u32("pages") }, m.pages);
                w.u8(const { MAP.u8("kind") }, m.kind);
                w.u8(const { MAP.u8("level") }, m.level);
                w.u8(const { MAP.u8("attr") }, m.attr);
            });
        }
    }
    b
}

/// A PROGRESS payload.
pub fn encode_progress(ops_done: u64) -> Vec<u8> {
    let mut b = Vec::new();
    push_record(&mut b, &PROGRESS, |w| w.u64(const { PROGRESS.u64("ops_done") }, ops_done));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_side_encoders_round_trip_through_the_host_decoders() {
        let obs = WireObs {
            op_index: 1,
            cma_free_pages: 8000,
            areas: vec![
                WireArea {
                    name: "reserved".into(),
                    count: 64,
                    available: Some(61),
                    order_per_bit: 0,
                    activated: true,
                    ranges: vec![WireRange { base_pfn: 0x7e000, count: 64, words: vec![0b1011, 0] }],
                },
                WireArea {
                    name: "hugetlb0".into(),
                    count: 2048,
                    available: None,
                    order_per_bit: 9,
                    activated: true,
                    ranges: vec![
                        WireRange { base_pfn: 0x10_0000, count: 1024, words: vec![1] },
                        WireRange { base_pfn: 0x14_0000, count: 1024, words: vec![0] },
                    ],
                },
                WireArea {
                    name: "broken".into(),
                    count: 0,
                    available: Some(0),
                    order_per_bit: 0,
                    activated: false,
                    ranges: vec![WireRange { base_pfn: 0x6fc00, count: 2048, words: vec![] }],
                },
            ],
            maps: vec![WireMap { va: 0xc000_0000, pfn: 0x7e000, pages: 3, kind: MAP_LIN, level: LVL_PTE, attr: 1 }],
            flags: OBS_MAPS_TRUNCATED,
            pkmap_last: PKMAP_UNKNOWN,
        };
        let r = RunResult {
            results: vec![
                WireResult { status: ST_OK, kind: OP_CMA_ALLOC, pfn: 0x7e000, pages: 3, aux: 0, stale_refs: 0 },
                WireResult { status: ST_OK, kind: OP_OBSERVE, pfn: 0, pages: 0, aux: 0, stale_refs: 0 },
            ],
            observations: vec![obs],
            kcov: None,
        };
        assert_eq!(decode_result(&encode_result(&r), 2), Ok(r));
        let ops = [WireOp { kind: OP_CMA_ALLOC, area: 1, handle: 2, flags: 0, a: 16, b: 4 }];
        assert_eq!(decode_run(&encode_run_flags(&ops, RUN_KCOV).expect("encodes")), Ok((RUN_KCOV, ops.to_vec())));
        assert_eq!(decode_progress(&encode_progress(17)), Ok(17));
    }

    fn result_payload(nres: u32, nobs: u32, body: &[u8]) -> Vec<u8> {
        let mut p = nres.to_le_bytes().to_vec();
        p.extend_from_slice(&nobs.to_le_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn frame_header_round_trips() {
        let h = FrameHdr { kind: FRAME_RUN, len: 40, seq: 7 };
        assert_eq!(FrameHdr::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn frame_header_rejects_garbage_magic_version_kind_and_length() {
        let mut b = FrameHdr { kind: FRAME_RESULT, len: 8, seq: 1 }.encode();
        b[0] ^= 1;
        assert!(matches!(FrameHdr::decode(&b), Err(WireError::BadMagic(_))));
        let mut b = FrameHdr { kind: FRAME_RESULT, len: 8, seq: 1 }.encode();
        b[4] = 9;
        assert_eq!(FrameHdr::decode(&b), Err(WireError::BadVersion(9)));
        let b = FrameHdr { kind: 99, len: 8, seq: 1 }.encode();
        assert!(matches!(FrameHdr::decode(&b), Err(WireError::BadValue { .. })));
        let b = FrameHdr { kind: FRAME_RESULT, len: MAX_FRAME + 1, seq: 1 }.encode();
        assert!(matches!(FrameHdr::decode(&b), Err(WireError::TooBig { .. })));
    }

    #[test]
    fn run_payload_has_header_then_fixed_size_ops() {
        let ops = [WireOp { kind: OP_CMA_ALLOC, area: 0, handle: 3, flags: 0, a: 16, b: 4 }];
        let p = encode_run(&ops).expect("one op fits");
        assert_eq!(p.len(), RUN_SIZE + OP_SIZE);
        assert_eq!(&p[0..4], &1u32.to_le_bytes());
        assert_eq!(&p[RUN_SIZE + 8..RUN_SIZE + 12], &3u32.to_le_bytes());
        assert_eq!(&p[RUN_SIZE + 16..RUN_SIZE + 24], &16u64.to_le_bytes());
    }

    #[test]
    fn run_with_too_many_ops_is_refused() {
        let ops = vec![WireOp::default(); MAX_OPS as usize + 1];
        assert!(matches!(encode_run(&ops), Err(WireError::TooBig { .. })));
    }

    /// A RESULT of one OBSERVE whose block holds `areas` and no maps.
    fn observe_result(areas: Vec<WireArea>) -> Vec<u8> {
        encode_result(&RunResult {
            results: vec![WireResult { status: ST_OK, kind: OP_OBSERVE, pfn: 0, pages: 0, aux: 0, stale_refs: 0 }],
            observations: vec![WireObs {
                op_index: 0,
                cma_free_pages: 0,
                areas,
                maps: vec![],
                flags: 0,
                pkmap_last: PKMAP_UNKNOWN,
            }],
            kcov: None,
        })
    }

    fn one_range_area(count: u64, words: Vec<u32>) -> WireArea {
        WireArea {
            name: "reserved".into(),
            count,
            available: None,
            order_per_bit: 0,
            activated: true,
            ranges: vec![WireRange { base_pfn: 0x7e000, count, words }],
        }
    }

    #[test]
    fn an_area_whose_ranges_disagree_with_it_is_refused() {
        assert!(decode_result(&observe_result(vec![one_range_area(64, vec![1, 2])]), 1).is_ok());
        // 64 bits need 2 words, not 1.
        let e = decode_result(&observe_result(vec![one_range_area(64, vec![1])]), 1).expect_err("1 word");
        assert!(matches!(e, WireError::BadValue { what, .. } if what.starts_with("range.nwords")), "{e}");
        // The area's count is not the sum of its ranges.
        let mut a = one_range_area(64, vec![1, 2]);
        a.count = 65;
        assert!(decode_result(&observe_result(vec![a]), 1).is_err());
        // A disabled area carries no bitmap words.
        let mut a = one_range_area(64, vec![1, 2]);
        a.activated = false;
        assert!(decode_result(&observe_result(vec![a]), 1).is_err());
        // More ranges than CMA_MAX_RANGES, refused before reading them.
        let mut a = one_range_area(0, vec![]);
        a.ranges = vec![WireRange { base_pfn: 0, count: 0, words: vec![] }; MAX_AREA_RANGES as usize + 1];
        let e = decode_result(&observe_result(vec![a]), 1).expect_err("9 ranges");
        assert!(matches!(e, WireError::TooBig { what: "area.nranges", .. }), "{e}");
    }

    #[test]
    fn an_area_with_undefined_flags_is_refused() {
        let mut p = observe_result(vec![one_range_area(32, vec![0])]);
        let flags_at = RESULT_HDR.size() + RESULT.size() + OBS_HDR.size() + const { AREA.u32("flags") }.off;
        p[flags_at] |= 4;
        assert!(matches!(decode_result(&p, 1), Err(WireError::BadValue { what: "area.flags/reserved", .. })));
    }

    #[test]
    fn a_map_of_unknown_kind_zero_pages_or_attr_above_7_is_garbage() {
        let map = WireMap { va: 0xf088_b000, pfn: 0x7e040, pages: 3, kind: MAP_VMAP, level: LVL_PTE, attr: 1 };
        let with = |m: WireMap| {
            let mut r = decode_result(&observe_result(vec![]), 1).expect("valid");
            r.observations[0].maps = vec![m];
            encode_result(&r)
        };
        assert_eq!(decode_result(&with(map), 1).expect("valid").observations[0].maps, vec![map]);
        for bad in [WireMap { kind: 9, ..map }, WireMap { pages: 0, ..map }, WireMap { attr: 8, ..map }] {
            assert!(matches!(decode_result(&with(bad), 1), Err(WireError::BadValue { .. })), "{bad:?}");
        }
    }

    #[test]
    fn a_huge_map_count_is_refused_before_allocating() {
        let mut body = Vec::new();
        body.extend_from_slice(&ST_OK.to_le_bytes());
        body.extend_from_slice(&OP_OBSERVE.to_le_bytes());
        body.extend_from_slice(&[0u8; 32]); // pfn, pages, aux, stale_refs
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        for v in [u32::MAX, 0, 0, 0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        assert!(matches!(decode_result(&result_payload(1, 1, &body), 1), Err(WireError::TooBig { .. })));
    }

    #[test]
    fn result_with_wrong_count_or_truncation_or_trailing_bytes_is_an_error() {
        let one = {
            let mut b = Vec::new();
            b.extend_from_slice(&ST_OK.to_le_bytes());
            b.extend_from_slice(&OP_OBSERVE.to_le_bytes());
            b.extend_from_slice(&[0u8; 32]); // pfn, pages, aux, stale_refs
            b
        };
        assert!(decode_result(&result_payload(2, 0, &one), 1).is_err());
        assert!(matches!(decode_result(&result_payload(1, 0, &one[..20]), 1), Err(WireError::Truncated { .. })));
        let mut extra = one.clone();
        extra.push(0);
        assert_eq!(decode_result(&result_payload(1, 0, &extra), 1), Err(WireError::Trailing(1)));
        // a huge observation count is refused before anything is allocated
        assert!(matches!(decode_result(&result_payload(1, u32::MAX, &one), 1), Err(WireError::TooBig { .. })));
    }

    /// One OBSERVE result with no observation block: the smallest RESULT for one op.
    fn one_result() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ST_OK.to_le_bytes());
        b.extend_from_slice(&OP_OBSERVE.to_le_bytes());
        b.extend_from_slice(&[0u8; 32]); // pfn, pages, aux, stale_refs
        result_payload(1, 0, &b)
    }

    fn kcov_trailer(npcs: u32, flags: u32, pcs: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [KCOV_MAGIC, npcs, flags, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for pc in pcs {
            b.extend_from_slice(&pc.to_le_bytes());
        }
        b
    }

    #[test]
    fn kcov_trailer_decodes_after_the_observations_and_is_optional() {
        let plain = decode_result(&one_result(), 1).expect("no trailer");
        assert_eq!(plain.kcov, None);
        let mut p = one_result();
        p.extend_from_slice(&kcov_trailer(3, KCOV_TRUNCATED, &[0xc012_3456, 0xffff_8000_0810_0000, 7]));
        let r = decode_result(&p, 1).expect("valid trailer");
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.kcov, Some(Kcov { pcs: vec![0xc012_3456, 0xffff_8000_0810_0000, 7], truncated: true }));
        let mut p = one_result();
        p.extend_from_slice(&kcov_trailer(0, 0, &[]));
        assert_eq!(decode_result(&p, 1).expect("empty trailer").kcov, Some(Kcov::default()));
    }

    #[test]
    fn a_garbled_kcov_trailer_is_an_error_not_a_panic() {
        let pcs = [1u64, 2, 3];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bad magic", {
                let mut t = kcov_trailer(3, 0, &pcs);
                t[0] ^= 0xff;
                t
            }),
            ("count above the bound", kcov_trailer(MAX_KCOV + 1, 0, &pcs)),
            ("count u32::MAX", kcov_trailer(u32::MAX, 0, &pcs)),
            ("count above the bytes", kcov_trailer(4, 0, &pcs)),
            ("count below the bytes", kcov_trailer(2, 0, &pcs)),
            ("undefined flag", kcov_trailer(3, 2, &pcs)),
            ("header cut short", kcov_trailer(3, 0, &pcs)[..10].to_vec()),
            ("a pc cut short", kcov_trailer(3, 0, &pcs)[..KCOV.size() + 20].to_vec()),
            ("one stray byte", vec![0x4b]),
        ];
        for (what, trailer) in cases {
            let mut p = one_result();
            p.extend_from_slice(&trailer);
            assert!(decode_result(&p, 1).is_err(), "{what} was accepted");
        }
        // Every truncation of a valid trailer and every single-byte flip of its header is
        // either refused or decodes to at most MAX_KCOV pcs; none panics.
        let full = kcov_trailer(3, 0, &pcs);
        for cut in 0..full.len() {
            let mut p = one_result();
            p.extend_from_slice(&full[..cut]);
            let r = decode_result(&p, 1);
            assert_eq!(r.is_ok(), cut == 0, "cut at {cut}");
        }
        for at in 0..KCOV.size() {
            let mut t = full.clone();
            t[at] = t[at].wrapping_add(0x41);
            let mut p = one_result();
            p.extend_from_slice(&t);
            assert!(decode_result(&p, 1).is_err(), "flip at {at} accepted");
        }
    }

    fn hello_payload(agent_flags: u32, max_kcov: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [u32::from(VERSION), MAX_FRAME, MAX_OPS, MAX_HANDLES, ARCH_ARM32, 12, 8, 10] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&0x7_0000u64.to_le_bytes());
        b.extend_from_slice(&0x8_0000u64.to_le_bytes());
        let mut rel = [0u8; NAME_LEN];
        rel[..5].copy_from_slice(b"6.1.0");
        b.extend_from_slice(&rel);
        b.extend_from_slice(&0u64.to_le_bytes());
        for v in [1024u32, 1 << OP_PIN, agent_flags, max_kcov] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(b.len(), HELLO_SIZE + AGENT_HELLO.size());
        b
    }

    #[test]
    fn hello_says_whether_the_agent_collects_kcov() {
        let h = Hello::decode(&hello_payload(AGENT_KCOV, MAX_KCOV)).expect("valid");
        assert!(h.kcov());
        assert_eq!((h.release.as_str(), h.pkmap_slots, h.max_kcov), ("6.1.0", 1024, MAX_KCOV));
        assert!(h.op_works(OP_PIN) && !h.op_works(OP_KMAP) && !h.op_works(99));
        assert!(!Hello::decode(&hello_payload(0, 0)).expect("valid").kcov());
        // The driver's hello alone (a version 3 agent) is refused, as are inconsistent agent fields.
        assert!(Hello::decode(&hello_payload(0, 0)[..HELLO_SIZE]).is_err());
        for (flags, max) in [(AGENT_KCOV, 0), (0, 5), (2, 0), (AGENT_KCOV, MAX_KCOV + 1)] {
            assert!(Hello::decode(&hello_payload(flags, max)).is_err(), "{flags} {max}");
        }
    }
}
