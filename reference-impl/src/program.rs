//! Programs: the ops both backends run, their text and JSON forms, and name resolution.
//!
//! Handles are symbolic: every `cma_alloc` / `dma_alloc` defines the next handle `h=0,1,2…` in
//! program order whether or not it succeeds, so a program means the same thing to the model and
//! to the in-kernel driver (`qemu/include/cmafuzz_wire.h`, `struct cf_op.handle`).

mod text;

use crate::observation::AreaObservation;
use crate::units::{Bytes, Order, Pages};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most ops in one program: `CF_MAX_OPS`.
pub const MAX_OPS: usize = 4096;
/// Handle slots in the driver: `CF_MAX_HANDLES`; handles are `0..MAX_HANDLES`.
pub const MAX_HANDLES: u32 = 4096;
/// Pages the driver holds pinned at once: `CF_MAX_PINS`; one more `pin` is refused.
pub const MAX_PINS: usize = 64;
/// Largest `count` of `cma_alloc` / `cma_release_raw`: the `unsigned long` of arm32.
pub const MAX_COUNT: u64 = 0xffff_ffff;
/// Largest `align` of `cma_alloc` (`CF_MAX_CMA_ALIGN`): larger shifts are undefined behaviour in
/// `cma_bitmap_aligned_mask()` on arm32 (spec §2.1).
pub const MAX_ALIGN: u32 = 31;
/// Largest `size` of `dma_alloc` (1 GiB, `CF_MAX_DMA_SIZE`).
pub const MAX_DMA_SIZE: u64 = 1 << 30;

/// Which CMA area an op names: `area=<name>` in text, or `area=<digits>` for an index into the
/// kernel's `cma_areas[]` (Linux 6.1 `mm/cma.c:38`). Prefer names: indices differ between 6.1 and
/// 6.12 when DT regions exist (spec §1.8).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AreaRef {
    /// `cma->name`, e.g. `reserved` or `linux,cma`. Never all digits, no whitespace, no `#`.
    Name(String),
    /// Index into `cma_areas[]`.
    Index(u32),
}

pub use crate::units::Handle;

/// DMA attributes passed to `dma_alloc_attrs()` / `dma_free_attrs()`
/// (`include/linux/dma-mapping.h`, Linux 6.1 and 6.12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DmaAttrs {
    /// `DMA_ATTR_WRITE_COMBINE` (`CF_ATTR_WC`).
    pub wc: bool,
    /// `DMA_ATTR_NO_KERNEL_MAPPING` (`CF_ATTR_NOKMAP`).
    pub nokmap: bool,
}

/// The gfp mask of a coherent allocation: `GFP_KERNEL` (may block: CMA allowed) or `GFP_ATOMIC`
/// (`gfpflags_allow_blocking()` false: atomic pools).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gfp {
    /// `GFP_KERNEL`.
    #[default]
    Kernel,
    /// `GFP_ATOMIC` (`CF_GFP_ATOMIC`).
    Atomic,
}

/// The direction of a streaming DMA mapping (`enum dma_data_direction`,
/// `include/linux/dma-direction.h`, the same values in Linux 6.1 .. 7.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmaDir {
    /// `DMA_BIDIRECTIONAL` (`CF_DIR_BIDIRECTIONAL`).
    #[default]
    Bidirectional,
    /// `DMA_TO_DEVICE` (`CF_DIR_TO_DEVICE`).
    ToDevice,
    /// `DMA_FROM_DEVICE` (`CF_DIR_FROM_DEVICE`).
    FromDevice,
}

/// One op of a program, before area names are resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// `cma_alloc(area, count, align, false)` (Linux 6.1 `mm/cma.c:420-520`; 6.12 `__cma_alloc`).
    /// Defines the next handle.
    CmaAlloc {
        /// The area.
        area: AreaRef,
        /// Pages.
        count: Pages,
        /// Alignment order (physical pfn alignment).
        #[serde(default)]
        align: Order,
    },
    /// Release every page handle `h` still holds, one `cma_release()` per maximal run (Linux 6.1
    /// `mm/cma.c:551-570`).
    CmaRelease {
        /// A `cma_alloc` handle.
        h: Handle,
    },
    /// `cma_release(area, pfn_to_page(base_pfn + off), count)` on raw numbers — refused by the
    /// driver unless every page is held by a live `cma_alloc` handle of that area.
    CmaReleaseRaw {
        /// The area.
        area: AreaRef,
        /// Page offset from `base_pfn`; may be negative or past the end.
        off: i64,
        /// Pages.
        count: Pages,
    },
    /// `dma_alloc_attrs(dev, size, &dma, gfp, attrs)` on the driver's non-coherent platform
    /// device (Linux 6.1 `kernel/dma/mapping.c:493-516`). Defines the next handle.
    DmaAlloc {
        /// Bytes requested.
        size: Bytes,
        /// Attributes.
        #[serde(default)]
        attrs: DmaAttrs,
        /// gfp mask.
        #[serde(default)]
        gfp: Gfp,
    },
    /// `dma_free_attrs()` of a `dma_alloc` handle with the same size and attrs.
    DmaFree {
        /// A `dma_alloc` handle.
        h: Handle,
    },
    /// Make the page at `base_pfn + off` busy: the driver takes it with
    /// `alloc_contig_range(pfn, pfn + 1, MIGRATE_CMA, GFP_KERNEL)` (Linux 6.1
    /// `mm/page_alloc.c:9273-9397`; 6.12 `alloc_contig_range_noprof`) and holds it, leaving the
    /// CMA bitmap alone, so a `cma_alloc` whose window covers it meets -EBUSY and retries
    /// (spec §2.3, §2.5). Refused without calling the kernel if the page is outside the area,
    /// its bitmap bit is set, it is already pinned, or `MAX_PINS` pages are pinned.
    Pin {
        /// The area.
        area: AreaRef,
        /// Page offset from `base_pfn`; may be negative or past the end (then refused).
        off: i64,
    },
    /// Give back a page `pin` took: `free_contig_range(pfn, 1)` (Linux 6.1
    /// `mm/page_alloc.c:9498-9509`). A no-op unless the driver holds that page pinned.
    Unpin {
        /// The area.
        area: AreaRef,
        /// Page offset from `base_pfn`.
        off: i64,
    },
    /// arm32 highmem only (a no-op elsewhere): the driver takes the free page at `base_pfn + off`
    /// like `pin` does, `kmap()`s it (Linux 6.1 `mm/highmem.c:295-311` `kmap_high`), writes it,
    /// `kunmap()`s it and gives it back: what any earlier owner of the page may have done. The
    /// page keeps its PKMAP slot until a pkmap flush (spec §5.6). Refused like `pin`.
    Kmap {
        /// The area.
        area: AreaRef,
        /// Page offset from `base_pfn`.
        off: i64,
    },
    /// Streaming DMA on the pages handle `h` holds (`CF_OP_DMA_MAP`): `dma_map_page()` of its
    /// first run and `dma_map_sgtable()` of all its runs on the driver's device, each synced for
    /// the cpu and for the device and unmapped again (Linux 6.1 `kernel/dma/mapping.c`,
    /// `kernel/dma/direct.c` `dma_direct_map_sg`, `arch_sync_dma_for_{device,cpu}` in
    /// `arch/arm{,64}/mm/dma-mapping.c`; 6.12 and 7.x the same). Changes nothing the tool
    /// observes; a dead handle or one holding no page is a no-op; pages above the device's
    /// 32-bit DMA mask (a bounce buffer would be mapped instead) are refused.
    DmaMap {
        /// A `cma_alloc` or `dma_alloc` handle.
        h: Handle,
        /// The direction.
        #[serde(default)]
        dir: DmaDir,
    },
    /// Emit one observation block (`CF_OP_OBSERVE`).
    Observe,
}

impl Op {
    /// Whether this op defines a handle (`cma_alloc`, `dma_alloc`).
    pub fn allocates(&self) -> bool {
        matches!(self, Op::CmaAlloc { .. } | Op::DmaAlloc { .. })
    }

    /// The op's name as the text format spells it (`cma_alloc`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CmaAlloc { .. } => "cma_alloc",
            Op::CmaRelease { .. } => "cma_release",
            Op::CmaReleaseRaw { .. } => "cma_release_raw",
            Op::DmaAlloc { .. } => "dma_alloc",
            Op::DmaFree { .. } => "dma_free",
            Op::Pin { .. } => "pin",
            Op::Unpin { .. } => "unpin",
            Op::Kmap { .. } => "kmap",
            Op::DmaMap { .. } => "dma_map",
            Op::Observe => "observe",
        }
    }
}

impl ResolvedOp {
    /// The op's name as the text format spells it: the same as [`Op::kind`] of the op it was
    /// resolved from.
    pub fn kind(&self) -> &'static str {
        match self {
            ResolvedOp::CmaAlloc { .. } => "cma_alloc",
            ResolvedOp::CmaRelease { .. } => "cma_release",
            ResolvedOp::CmaReleaseRaw { .. } => "cma_release_raw",
            ResolvedOp::DmaAlloc { .. } => "dma_alloc",
            ResolvedOp::DmaFree { .. } => "dma_free",
            ResolvedOp::Pin { .. } => "pin",
            ResolvedOp::Unpin { .. } => "unpin",
            ResolvedOp::Kmap { .. } => "kmap",
            ResolvedOp::DmaMap { .. } => "dma_map",
            ResolvedOp::Observe => "observe",
        }
    }
}

/// A program: ops in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// The ops.
    pub ops: Vec<Op>,
}

/// A text or JSON program that could not be read. `line`/`col` are 1-based positions of the
/// offending token in the text form; for JSON, serde_json's position, or `0, 0` for a value that
/// parsed but is out of range (then `msg` names the op).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[error("line {line}, column {col}: {msg}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong and what is expected.
    pub msg: String,
}

/// A program that cannot be mapped onto the kernel's area table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[error("op {op_index}: {msg}")]
pub struct ResolveError {
    /// 0-based index of the offending op.
    pub op_index: usize,
    /// What is wrong.
    pub msg: String,
}

/// An index into the kernel's `cma_areas[]` (`struct cf_op.area`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AreaId(pub u32);

/// An op with its area resolved to an index and its handle made explicit: exactly what goes into
/// one `struct cf_op`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResolvedOp {
    /// `CF_OP_CMA_ALLOC`: `cma_alloc(cma_areas[area], count, align, false)` into slot `h`.
    CmaAlloc {
        /// Area index.
        area: AreaId,
        /// Slot defined.
        h: Handle,
        /// Pages.
        count: Pages,
        /// Alignment order.
        align: Order,
    },
    /// `CF_OP_CMA_RELEASE`: release what slot `h` still holds.
    CmaRelease {
        /// Slot used.
        h: Handle,
    },
    /// `CF_OP_CMA_RELEASE_RAW`: `cma_release(cma_areas[area], base_pfn + off, count)` if safe.
    CmaReleaseRaw {
        /// Area index.
        area: AreaId,
        /// Page offset from `base_pfn`.
        off: i64,
        /// Pages.
        count: Pages,
    },
    /// `CF_OP_DMA_ALLOC`: `dma_alloc_attrs()` into slot `h`.
    DmaAlloc {
        /// Slot defined.
        h: Handle,
        /// Bytes.
        size: Bytes,
        /// Attributes.
        attrs: DmaAttrs,
        /// gfp mask.
        gfp: Gfp,
    },
    /// `CF_OP_DMA_FREE`: `dma_free_attrs()` of slot `h`.
    DmaFree {
        /// Slot used.
        h: Handle,
    },
    /// `CF_OP_PIN`: pin the page at `cma_areas[area].base_pfn + off`.
    Pin {
        /// Area index.
        area: AreaId,
        /// Page offset from `base_pfn`.
        off: i64,
    },
    /// `CF_OP_UNPIN`: unpin the page at `cma_areas[area].base_pfn + off`.
    Unpin {
        /// Area index.
        area: AreaId,
        /// Page offset from `base_pfn`.
        off: i64,
    },
    /// `CF_OP_KMAP`: kmap+kunmap the free page at `cma_areas[area].base_pfn + off`.
    Kmap {
        /// Area index.
        area: AreaId,
        /// Page offset from `base_pfn`.
        off: i64,
    },
    /// `CF_OP_DMA_MAP`: streaming map, sync and unmap of what slot `h` holds.
    DmaMap {
        /// Slot used.
        h: Handle,
        /// The direction.
        dir: DmaDir,
    },
    /// `CF_OP_OBSERVE`.
    Observe,
}

/// A resolved program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedProgram {
    /// The ops.
    pub ops: Vec<ResolvedOp>,
}

impl Program {
    /// Parse the text form: one op per line, `#` comments, `key=value` arguments in any order
    /// (see the [crate] documentation). Errors carry the 1-based line and column of the offending
    /// token (of the value, for a bad value; of the op, for a missing key).
    pub fn parse(text: &str) -> Result<Program, ParseError> {
        text::parse(text)
    }

    /// The canonical text form: every argument spelled out, numbers in decimal, one op per line.
    /// `Program::parse(&p.to_text()) == Ok(p)` for every program `parse` or `from_json` accepts.
    pub fn to_text(&self) -> String {
        text::print(self)
    }

    /// Read the JSON form (`{"ops":[{"op":"cma_alloc","area":"reserved","count":16,"align":4},
    /// …]}`), then apply the same bounds as [`Program::parse`], so that the result has a text form.
    pub fn from_json(s: &str) -> Result<Program, ParseError> {
        let prog: Program =
            serde_json::from_str(s).map_err(|e| ParseError { line: e.line(), col: e.column(), msg: e.to_string() })?;
        text::check_bounds(&prog).map_err(|(op_index, msg)| ParseError {
            line: 0,
            col: 0,
            msg: format!("op {op_index}: {msg}"),
        })?;
        Ok(prog)
    }

    /// The JSON form read by [`Program::from_json`].
    pub fn to_json(&self) -> String {
        // Only strings, integers, booleans and unit enums: serde_json cannot fail on these.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("serialising a Program to JSON cannot fail: {e}"))
    }

    /// Map area names/indices onto `areas` (the kernel's `cma_areas[]`, from its boot
    /// observation) and number the handles: the k-th allocating op defines `Handle(k)`. A name
    /// resolves to the first area of that name.
    pub fn resolve(&self, areas: &[AreaObservation]) -> Result<ResolvedProgram, ResolveError> {
        if self.ops.len() > MAX_OPS {
            return Err(ResolveError {
                op_index: MAX_OPS,
                msg: format!("program has {} ops; the driver runs at most {MAX_OPS}", self.ops.len()),
            });
        }
        let area_id = |op_index: usize, area: &AreaRef| -> Result<AreaId, ResolveError> {
            match area {
                AreaRef::Name(name) => areas
                    .iter()
                    .position(|a| &a.name == name)
                    .and_then(|i| u32::try_from(i).ok())
                    .map(AreaId)
                    .ok_or_else(|| ResolveError {
                        op_index,
                        msg: format!("no CMA area named `{name}` (the kernel has: {})", area_names(areas)),
                    }),
                AreaRef::Index(i) => {
                    if usize::try_from(*i).is_ok_and(|i| i < areas.len()) {
                        Ok(AreaId(*i))
                    } else {
                        Err(ResolveError {
                            op_index,
                            msg: format!(
                                "area index {i} out of range: the kernel has {} areas ({})",
                                areas.len(),
                                area_names(areas)
                            ),
                        })
                    }
                }
            }
        };
        let mut next_handle = 0u32;
        let mut ops = Vec::with_capacity(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            let resolved = match op {
                Op::CmaAlloc { area, count, align } => {
                    let h = Handle(next_handle);
                    next_handle += 1;
                    ResolvedOp::CmaAlloc { area: area_id(i, area)?, h, count: *count, align: *align }
                }
                Op::CmaRelease { h } => ResolvedOp::CmaRelease { h: *h },
                Op::CmaReleaseRaw { area, off, count } => {
                    ResolvedOp::CmaReleaseRaw { area: area_id(i, area)?, off: *off, count: *count }
                }
                Op::DmaAlloc { size, attrs, gfp } => {
                    let h = Handle(next_handle);
                    next_handle += 1;
                    ResolvedOp::DmaAlloc { h, size: *size, attrs: *attrs, gfp: *gfp }
                }
                Op::DmaFree { h } => ResolvedOp::DmaFree { h: *h },
                Op::Pin { area, off } => ResolvedOp::Pin { area: area_id(i, area)?, off: *off },
                Op::Unpin { area, off } => ResolvedOp::Unpin { area: area_id(i, area)?, off: *off },
                Op::Kmap { area, off } => ResolvedOp::Kmap { area: area_id(i, area)?, off: *off },
                Op::DmaMap { h, dir } => ResolvedOp::DmaMap { h: *h, dir: *dir },
                Op::Observe => ResolvedOp::Observe,
            };
            ops.push(resolved);
        }
        Ok(ResolvedProgram { ops })
    }
}

fn area_names(areas: &[AreaObservation]) -> String {
    if areas.is_empty() {
        return "no areas".to_string();
    }
    areas.iter().enumerate().map(|(i, a)| format!("{i}=`{}`", a.name)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
