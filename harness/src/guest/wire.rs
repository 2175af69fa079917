//! The host side of the guest wire format. The C definition is
//! `qemu/include/cmafuzz_wire.h`; `tests/wire_header.rs` compiles a C probe
//! against that header and checks every constant and layout here agrees.
//!
//! Everything that arrives from the guest is untrusted: every count is
//! bounded before it is used to size anything, and decoding never panics.

use thiserror::Error;

pub const MAGIC: u32 = 0x5a46_4d43;
pub const VERSION: u16 = 4;
pub const MAX_FRAME: u32 = 4 << 20;
pub const MAX_OPS: u32 = 4096;
pub const MAX_HANDLES: u32 = 4096;
pub const MAX_PINS: u32 = 64;
pub const MAX_AREAS: u32 = 16;
pub const NAME_LEN: usize = 64;
pub const MAX_BITMAP_WORDS: u32 = 32768;
pub const MAX_MAPS: u32 = 16384;
pub const MAX_KCOV: u32 = 65536;

pub const FRAME_HELLO: u16 = 1;
pub const FRAME_RUN: u16 = 2;
pub const FRAME_RESULT: u16 = 3;
pub const FRAME_ERROR: u16 = 4;

pub const ARCH_ARM32: u32 = 1;
pub const ARCH_ARM32_LPAE: u32 = 2;
pub const ARCH_ARM64: u32 = 3;

pub const OP_CMA_ALLOC: u32 = 1;
pub const OP_CMA_RELEASE: u32 = 2;
pub const OP_CMA_RELEASE_RAW: u32 = 3;
pub const OP_DMA_ALLOC: u32 = 4;
pub const OP_DMA_FREE: u32 = 5;
pub const OP_OBSERVE: u32 = 6;
pub const OP_RESET: u32 = 7;
pub const OP_PIN: u32 = 8;
pub const OP_UNPIN: u32 = 9;
pub const OP_KMAP: u32 = 10;

pub const RUN_OBSERVE_EACH: u32 = 1 << 0;
/// What the driver accepts in `cf_run.flags`; [`RUN_KCOV`] is the agent's and never reaches it.
pub const RUN_FLAGS_MASK: u32 = RUN_OBSERVE_EACH;
pub const RUN_KCOV: u32 = 1 << 31;
pub const AGENT_KCOV: u32 = 1 << 0;
pub const KCOV_MAGIC: u32 = 0x564f_434b;
pub const KCOV_TRUNCATED: u32 = 1 << 0;
pub const OBS_MAPS_TRUNCATED: u32 = 1 << 0;
pub const PKMAP_UNKNOWN: u32 = u32::MAX;

pub const MAP_LIN: u8 = 1;
pub const MAP_VMAP: u8 = 2;
pub const MAP_PKMAP: u8 = 3;
pub const MAP_FIXMAP: u8 = 4;
pub const LVL_PTE: u8 = 1;
pub const LVL_SECTION: u8 = 2;
pub const LVL_PMD: u8 = 3;
pub const LVL_PUD: u8 = 4;

pub const ATTR_WC: u32 = 1 << 0;
pub const ATTR_NOKMAP: u32 = 1 << 1;
pub const GFP_ATOMIC: u32 = 1 << 8;

pub const ST_OK: u32 = 0;
pub const ST_FAILED: u32 = 1;
pub const ST_NOOP: u32 = 2;
pub const ST_REFUSED: u32 = 3;
pub const ST_BADOP: u32 = 4;

pub const CPU_LINEAR: u64 = 1;
pub const CPU_VMALLOC: u64 = 2;
pub const CPU_COOKIE: u64 = 3;
pub const CPU_OTHER: u64 = 4;

/// Sizes of the C structs, checked against the header by a test.
pub const FRAME_HDR_SIZE: usize = 16;
pub const HELLO_SIZE: usize = 128;
pub const OP_SIZE: usize = 32;
pub const RUN_SIZE: usize = 8;
pub const RESULT_SIZE: usize = 32;
pub const RESULT_HDR_SIZE: usize = 8;
pub const OBS_HDR_SIZE: usize = 32;
pub const AREA_SIZE: usize = 88;
pub const MAP_SIZE: usize = 24;
pub const AGENT_HELLO_SIZE: usize = 8;
pub const KCOV_SIZE: usize = 16;

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
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.kind.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; FRAME_HDR_SIZE]) -> Result<FrameHdr, WireError> {
        let mut r = Reader::new(b);
        let magic = r.u32("frame magic")?;
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let version = r.u16("frame version")?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let kind = r.u16("frame kind")?;
        let len = r.u32("frame len")?;
        let seq = r.u32("frame seq")?;
        if !(FRAME_HELLO..=FRAME_ERROR).contains(&kind) {
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
}

impl Hello {
    pub fn decode(p: &[u8]) -> Result<Hello, WireError> {
        let mut r = Reader::new(p);
        let h = Hello {
            version: r.u32("hello.version")?,
            max_frame: r.u32("hello.max_frame")?,
            max_ops: r.u32("hello.max_ops")?,
            max_handles: r.u32("hello.max_handles")?,
            arch: r.u32("hello.arch")?,
            page_shift: r.u32("hello.page_shift")?,
            cma_alignment: r.u32("hello.cma_alignment")?,
            pageblock_order: r.u32("hello.pageblock_order")?,
            max_low_pfn: r.u64("hello.max_low_pfn")?,
            max_pfn: r.u64("hello.max_pfn")?,
            release: r.name("hello.release")?,
            attr_regs: r.u64("hello.attr_regs")?,
            pkmap_slots: r.u32("hello.pkmap_slots")?,
            agent_flags: {
                r.u32("hello.reserved")?;
                r.u32("agent_hello.flags")?
            },
            max_kcov: r.u32("agent_hello.max_kcov")?,
        };
        r.finish()?;
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
    let mut b = Vec::with_capacity(RUN_SIZE + ops.len() * OP_SIZE);
    b.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    for op in ops {
        b.extend_from_slice(&op.kind.to_le_bytes());
        b.extend_from_slice(&op.area.to_le_bytes());
        b.extend_from_slice(&op.handle.to_le_bytes());
        b.extend_from_slice(&op.flags.to_le_bytes());
        b.extend_from_slice(&op.a.to_le_bytes());
        b.extend_from_slice(&op.b.to_le_bytes());
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
}

/// One area of an observation block (`struct cf_area` + bitmap words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireArea {
    pub name: String,
    pub base_pfn: u64,
    pub count: u64,
    pub order_per_bit: u32,
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
    let nres = r.u32("result_hdr.nresults")?;
    let nobs = r.u32("result_hdr.nobs")?;
    if nres as usize != nops {
        return Err(WireError::BadValue { what: "result_hdr.nresults (must equal ops sent)", got: nres.into() });
    }
    if nobs as usize > nops {
        return Err(WireError::TooBig { what: "observation blocks", got: nobs.into(), limit: nops as u64 });
    }
    let mut results = Vec::with_capacity(nops);
    for _ in 0..nres {
        let res = WireResult {
            status: r.u32("result.status")?,
            kind: r.u32("result.kind")?,
            pfn: r.u64("result.pfn")?,
            pages: r.u64("result.pages")?,
            aux: r.u64("result.aux")?,
        };
        if res.status > ST_BADOP {
            return Err(WireError::BadValue { what: "result.status", got: res.status.into() });
        }
        results.push(res);
    }
    let mut observations = Vec::with_capacity(nobs as usize);
    for _ in 0..nobs {
        let op_index = r.u32("obs.op_index")?;
        let nareas = r.u32("obs.nareas")?;
        let cma_free_pages = r.u64("obs.cma_free_pages")?;
        let nmaps = r.u32("obs.nmaps")?;
        let flags = r.u32("obs.flags")?;
        let pkmap_last = r.u32("obs.pkmap_last")?;
        r.u32("obs.reserved")?;
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
            let name = r.name("area.name")?;
            let base_pfn = r.u64("area.base_pfn")?;
            let count = r.u64("area.count")?;
            let order_per_bit = r.u32("area.order_per_bit")?;
            let nwords = r.u32("area.nwords")?;
            if nwords > MAX_BITMAP_WORDS {
                return Err(WireError::TooBig {
                    what: "area.nwords",
                    got: nwords.into(),
                    limit: MAX_BITMAP_WORDS.into(),
                });
            }
            if order_per_bit >= 32 {
                return Err(WireError::BadValue { what: "area.order_per_bit", got: order_per_bit.into() });
            }
            let bits = count >> order_per_bit;
            if u64::from(nwords) != bits.div_ceil(32) {
                return Err(WireError::BadValue {
                    what: "area.nwords (must be ceil((count >> opb) / 32))",
                    got: nwords.into(),
                });
            }
            let mut words = Vec::with_capacity(nwords as usize);
            for _ in 0..nwords {
                words.push(r.u32("area.words")?);
            }
            areas.push(WireArea { name, base_pfn, count, order_per_bit, words });
        }
        let mut maps = Vec::with_capacity(nmaps as usize);
        for _ in 0..nmaps {
            let m = WireMap {
                va: r.u64("map.va")?,
                pfn: r.u64("map.pfn")?,
                pages: r.u32("map.pages")?,
                kind: r.u8("map.kind")?,
                level: r.u8("map.level")?,
                attr: r.u8("map.attr")?,
            };
            r.u8("map.reserved")?;
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
    let kcov = if rest.is_empty() {
        None
    } else if rest.len() >= 4 && rest[..4] == KCOV_MAGIC.to_le_bytes() {
        Some(decode_kcov(&mut r)?)
    } else {
        return Err(WireError::Trailing(rest.len()));
    };
    r.finish()?;
    Ok(RunResult { results, observations, kcov })
}

/// The optional `struct cf_kcov` trailer at the end of a RESULT.
fn decode_kcov(r: &mut Reader<'_>) -> Result<Kcov, WireError> {
    r.u32("kcov.magic")?;
    let npcs = r.u32("kcov.npcs")?;
    let flags = r.u32("kcov.flags")?;
    let reserved = r.u32("kcov.reserved")?;
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

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(what, 1)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let s = self.take(what, 2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
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

    /// A NUL-padded fixed-size name; non-UTF-8 bytes are replaced, not trusted.
    fn name(&mut self, what: &'static str) -> Result<String, WireError> {
        let s = self.take(what, NAME_LEN)?;
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        Ok(String::from_utf8_lossy(&s[..end]).into_owned())
    }

    fn finish(&self) -> Result<(), WireError> {
        match self.b.len() - self.at {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn result_with_area_bitmap_decodes() {
        let mut body = Vec::new();
        // one result: OBSERVE ok
        for v in [ST_OK, OP_OBSERVE] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&[0u8; 24]);
        // obs header: op 0, 1 area, CmaFree 123, 1 map, no flags, pkmap slot 7
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&123u64.to_le_bytes());
        for v in [1u32, 0, 7, 0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let mut name = [0u8; NAME_LEN];
        name[..8].copy_from_slice(b"reserved");
        body.extend_from_slice(&name);
        body.extend_from_slice(&0x7e000u64.to_le_bytes());
        body.extend_from_slice(&64u64.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        // one map: vmap of 3 pages at pfn 0x7e040, PTE, attr 1
        body.extend_from_slice(&0xf088_b000u64.to_le_bytes());
        body.extend_from_slice(&0x7e040u64.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&[MAP_VMAP, LVL_PTE, 1, 0]);
        let r = decode_result(&result_payload(1, 1, &body), 1).expect("valid");
        assert_eq!(r.observations[0].areas[0].name, "reserved");
        assert_eq!(r.observations[0].areas[0].words, vec![0xffff_ffff, 1]);
        assert_eq!(r.observations[0].cma_free_pages, 123);
        assert_eq!(r.observations[0].pkmap_last, 7);
        assert_eq!(
            r.observations[0].maps,
            vec![WireMap { va: 0xf088_b000, pfn: 0x7e040, pages: 3, kind: MAP_VMAP, level: LVL_PTE, attr: 1 }]
        );
        // A map of an unknown kind, zero pages or attr > 7 is garbage.
        for (at, bad) in [(body.len() - 4, 9u8), (body.len() - 2, 8u8)] {
            let mut b = body.clone();
            b[at] = bad;
            assert!(matches!(decode_result(&result_payload(1, 1, &b), 1), Err(WireError::BadValue { .. })), "{at}");
        }
        let mut b = body.clone();
        let n = b.len();
        b[n - 8..n - 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(decode_result(&result_payload(1, 1, &b), 1), Err(WireError::BadValue { .. })));
    }

    #[test]
    fn a_huge_map_count_is_refused_before_allocating() {
        let mut body = Vec::new();
        body.extend_from_slice(&ST_OK.to_le_bytes());
        body.extend_from_slice(&OP_OBSERVE.to_le_bytes());
        body.extend_from_slice(&[0u8; 24]);
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
            b.extend_from_slice(&[0u8; 24]);
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
        b.extend_from_slice(&[0u8; 24]);
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
            ("a pc cut short", kcov_trailer(3, 0, &pcs)[..KCOV_SIZE + 20].to_vec()),
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
        for at in 0..KCOV_SIZE {
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
        for v in [1024u32, 0, agent_flags, max_kcov] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(b.len(), HELLO_SIZE + AGENT_HELLO_SIZE);
        b
    }

    #[test]
    fn hello_says_whether_the_agent_collects_kcov() {
        let h = Hello::decode(&hello_payload(AGENT_KCOV, MAX_KCOV)).expect("valid");
        assert!(h.kcov());
        assert_eq!((h.release.as_str(), h.pkmap_slots, h.max_kcov), ("6.1.0", 1024, MAX_KCOV));
        assert!(!Hello::decode(&hello_payload(0, 0)).expect("valid").kcov());
        // The driver's hello alone (a version 3 agent) is refused, as are inconsistent agent fields.
        assert!(Hello::decode(&hello_payload(0, 0)[..HELLO_SIZE]).is_err());
        for (flags, max) in [(AGENT_KCOV, 0), (0, 5), (2, 0), (AGENT_KCOV, MAX_KCOV + 1)] {
            assert!(Hello::decode(&hello_payload(flags, max)).is_err(), "{flags} {max}");
        }
    }

    #[test]
    fn area_with_inconsistent_word_count_is_refused() {
        let mut body = Vec::new();
        body.extend_from_slice(&ST_OK.to_le_bytes());
        body.extend_from_slice(&OP_OBSERVE.to_le_bytes());
        body.extend_from_slice(&[0u8; 24]);
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&[0u8; 16]);
        body.extend_from_slice(&[0u8; NAME_LEN]);
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&64u64.to_le_bytes()); // 64 bits -> 2 words
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes()); // claims 1
        body.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(decode_result(&result_payload(1, 1, &body), 1), Err(WireError::BadValue { .. })));
    }
}
