//! The one definition of the guest wire format: every constant and every struct (fields in
//! order, with their C types), as data. `wire.rs` takes every struct size and field offset from
//! here, and [`header`] renders `qemu/include/cmafuzz_wire.h` from it, the header the driver and
//! the agent include. `tests/wire_header.rs` fails when the checked-in header is not what
//! [`header`] renders; `CMAFUZZ_BLESS=1 cargo test -p cmafuzz --test wire_header` rewrites it.
//!
//! Layouts are computed as C lays out a struct whose fields are all naturally aligned, and a
//! compile-time check ([`check`]) refuses any table where that would need implicit padding, so
//! the layout is the same on arm32, arm64 and x86-64.

use std::fmt::Write as _;
use std::marker::PhantomData;

pub const MAGIC: u32 = 0x5a46_4d43;
pub const VERSION: u16 = 7;
pub const MAX_FRAME: u32 = 4 << 20;
pub const MAX_OPS: u32 = 4096;
pub const MAX_HANDLES: u32 = 4096;
pub const MAX_PINS: u32 = 64;
pub const MAX_AREAS: u32 = 16;
/// Ranges of one CMA area (the kernel's `CMA_MAX_RANGES`, 7.x).
pub const MAX_AREA_RANGES: u32 = 8;
pub const NAME_LEN: usize = 64;
pub const MAX_BITMAP_WORDS: u32 = 32768;
pub const MAX_MAPS: u32 = 16384;
pub const MAX_KCOV: u32 = 65536;
/// Largest `cf_op.a` (size) of `CF_OP_DMA_ALLOC`.
pub const MAX_DMA_SIZE: u64 = 1 << 30;
/// Largest `cf_op.b` (align order) of `CF_OP_CMA_ALLOC`.
pub const MAX_CMA_ALIGN: u32 = 31;

pub const FRAME_HELLO: u16 = 1;
pub const FRAME_RUN: u16 = 2;
pub const FRAME_RESULT: u16 = 3;
pub const FRAME_ERROR: u16 = 4;
pub const FRAME_PROGRESS: u16 = 5;

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
pub const OP_DMA_MAP: u32 = 11;

/// `cf_op.a` of `CF_OP_DMA_MAP`: the kernel's `enum dma_data_direction`.
pub const DIR_BIDIRECTIONAL: u64 = 0;
pub const DIR_TO_DEVICE: u64 = 1;
pub const DIR_FROM_DEVICE: u64 = 2;

pub const ATTR_WC: u32 = 1 << 0;
pub const ATTR_NOKMAP: u32 = 1 << 1;
pub const GFP_ATOMIC: u32 = 1 << 8;
const DMA_FLAGS_MASK: u32 = ATTR_WC | ATTR_NOKMAP | GFP_ATOMIC;

pub const RUN_OBSERVE_EACH: u32 = 1 << 0;
/// What the driver accepts in `cf_run.flags`; [`RUN_KCOV`] is the agent's and never reaches it.
const RUN_FLAGS_MASK: u32 = RUN_OBSERVE_EACH;
pub const RUN_KCOV: u32 = 1 << 31;
pub const AGENT_KCOV: u32 = 1 << 0;
pub const KCOV_MAGIC: u32 = 0x564f_434b;
pub const KCOV_TRUNCATED: u32 = 1 << 0;
pub const OBS_MAPS_TRUNCATED: u32 = 1 << 0;
pub const AREA_ACTIVATED: u32 = 1 << 0;
pub const AREA_AVAILABLE: u32 = 1 << 1;
pub const PKMAP_UNKNOWN: u32 = u32::MAX;

pub const MAP_LIN: u8 = 1;
pub const MAP_VMAP: u8 = 2;
pub const MAP_PKMAP: u8 = 3;
pub const MAP_FIXMAP: u8 = 4;
pub const LVL_PTE: u8 = 1;
pub const LVL_SECTION: u8 = 2;
pub const LVL_PMD: u8 = 3;
pub const LVL_PUD: u8 = 4;

pub const ST_OK: u32 = 0;
pub const ST_FAILED: u32 = 1;
pub const ST_NOOP: u32 = 2;
pub const ST_REFUSED: u32 = 3;
pub const ST_BADOP: u32 = 4;

const _: () = assert!(RUN_KCOV & RUN_FLAGS_MASK == 0, "the driver must never see the agent's bit");
const _: () = assert!(MAX_OPS <= MAX_HANDLES, "allocating ops are bounded by MAX_OPS alone");

/// The C type of one struct field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CType {
    U8,
    U16,
    U32,
    U64,
    /// `char [CF_NAME_LEN]`, NUL padded.
    Name,
    /// Another struct of this table, embedded.
    Struct(&'static Struct),
}

impl CType {
    pub const fn size(self) -> usize {
        match self {
            CType::U8 => 1,
            CType::U16 => 2,
            CType::U32 => 4,
            CType::U64 => 8,
            CType::Name => NAME_LEN,
            CType::Struct(s) => s.size(),
        }
    }

    /// The C alignment of the type (`__u64` is 8 on every ABI the guest and host use).
    pub const fn align(self) -> usize {
        match self {
            CType::Name => 1,
            CType::Struct(s) => s.align(),
            t => t.size(),
        }
    }

    /// The C declaration of a field `name` of this type, without the `;`.
    pub fn c_decl(self, name: &str) -> String {
        match self {
            CType::U8 => format!("__u8 {name}"),
            CType::U16 => format!("__u16 {name}"),
            CType::U32 => format!("__u32 {name}"),
            CType::U64 => format!("__u64 {name}"),
            CType::Name => format!("char {name}[CF_NAME_LEN]"),
            CType::Struct(s) => format!("struct {} {name}", s.name),
        }
    }
}

/// One field of a wire struct.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: CType,
    /// A block comment before the field, one line each.
    pub doc: &'static [&'static str],
    /// The comment after the field, on its line; empty for none.
    pub comment: &'static str,
}

const fn f(name: &'static str, ty: CType, comment: &'static str) -> Field {
    Field { name, ty, doc: &[], comment }
}

const fn fd(name: &'static str, ty: CType, doc: &'static [&'static str], comment: &'static str) -> Field {
    Field { name, ty, doc, comment }
}

/// One wire struct: `struct <name>` in C, its fields in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Struct {
    /// The C tag, `cf_…`.
    pub name: &'static str,
    pub fields: &'static [Field],
    /// Comment lines after the last field (what follows the struct in a payload).
    pub tail: &'static [&'static str],
}

/// A field of a known struct at its computed offset, typed by its C type; made in const context
/// by [`Struct::u32`] and friends, which refuse (at compile time) a missing or mistyped field.
pub struct At<T> {
    pub off: usize,
    /// The struct the offset belongs to.
    pub strukt: &'static str,
    ty: PhantomData<fn() -> T>,
}

impl<T> Clone for At<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for At<T> {}

/// The bytes of a `char [CF_NAME_LEN]` field.
pub struct NameBytes;

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn same_type(a: CType, b: CType) -> bool {
    match (a, b) {
        (CType::U8, CType::U8)
        | (CType::U16, CType::U16)
        | (CType::U32, CType::U32)
        | (CType::U64, CType::U64)
        | (CType::Name, CType::Name) => true,
        (CType::Struct(x), CType::Struct(y)) => str_eq(x.name, y.name),
        _ => false,
    }
}

impl Struct {
    /// `sizeof(struct <name>)`.
    pub const fn size(&self) -> usize {
        let mut end = 0;
        let mut i = 0;
        while i < self.fields.len() {
            end = self.offset(i) + self.fields[i].ty.size();
            i += 1;
        }
        end.next_multiple_of(self.align())
    }

    /// `_Alignof(struct <name>)`: the largest alignment of a field.
    pub const fn align(&self) -> usize {
        let mut a = 1;
        let mut i = 0;
        while i < self.fields.len() {
            let fa = self.fields[i].ty.align();
            if fa > a {
                a = fa;
            }
            i += 1;
        }
        a
    }

    /// `offsetof(struct <name>, fields[i])` as C lays it out.
    pub const fn offset(&self, i: usize) -> usize {
        let mut off: usize = 0;
        let mut k = 0;
        while k <= i {
            off = off.next_multiple_of(self.fields[k].ty.align());
            if k < i {
                off += self.fields[k].ty.size();
            }
            k += 1;
        }
        off
    }

    /// The offset of field `name` of type `ty`; a compile error in const context if there is none.
    const fn at<T>(&self, name: &str, ty: CType) -> At<T> {
        let mut i = 0;
        while i < self.fields.len() {
            if str_eq(self.fields[i].name, name) {
                assert!(same_type(self.fields[i].ty, ty), "wire field has another type");
                return At { off: self.offset(i), strukt: self.name, ty: PhantomData };
            }
            i += 1;
        }
        panic!("no such wire field");
    }

    pub const fn u8(&self, name: &str) -> At<u8> {
        self.at(name, CType::U8)
    }

    pub const fn u16(&self, name: &str) -> At<u16> {
        self.at(name, CType::U16)
    }

    pub const fn u32(&self, name: &str) -> At<u32> {
        self.at(name, CType::U32)
    }

    pub const fn u64(&self, name: &str) -> At<u64> {
        self.at(name, CType::U64)
    }

    pub const fn name(&self, name: &str) -> At<NameBytes> {
        self.at(name, CType::Name)
    }
}

/// How a constant's value is written in C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `4096u`
    Dec,
    /// `0x5a464d43u`
    Hex,
    /// `(1u << 8)`; the value must be a power of two.
    Bit,
    /// `(4u << 20)`
    Shl(u32),
    /// Another C expression with the same value (checked by the compiler probe).
    Expr(&'static str),
}

/// One `#define`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Const {
    pub name: &'static str,
    /// The value, or `None` for a definition that is not a number (`_IOWR(...)`).
    pub value: Option<u64>,
    pub style: Style,
    pub comment: &'static str,
}

impl Const {
    /// The C text of the value.
    pub fn c_value(&self) -> String {
        let v = self.value.unwrap_or(0);
        let suffix = if v > u64::from(u32::MAX) { "ull" } else { "u" };
        match self.style {
            Style::Dec => format!("{v}{suffix}"),
            Style::Hex => format!("{v:#x}{suffix}"),
            Style::Bit => format!("(1{suffix} << {})", v.trailing_zeros()),
            Style::Shl(s) => format!("({}{suffix} << {s})", v >> s),
            Style::Expr(e) => e.to_string(),
        }
    }
}

/// One piece of the header, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// An empty line.
    Gap,
    /// `/* text */` on one line.
    Note(&'static str),
    /// A block comment, one line each.
    Block(&'static [&'static str]),
    Const(Const),
    Struct(&'static Struct),
}

const fn num(name: &'static str, value: u64, style: Style, comment: &'static str) -> Item {
    Item::Const(Const { name, value: Some(value), style, comment })
}

const fn dec(name: &'static str, value: u64, comment: &'static str) -> Item {
    num(name, value, Style::Dec, comment)
}

const fn bit(name: &'static str, value: u64, comment: &'static str) -> Item {
    num(name, value, Style::Bit, comment)
}

const fn expr(name: &'static str, value: u64, c: &'static str, comment: &'static str) -> Item {
    num(name, value, Style::Expr(c), comment)
}

const fn text(name: &'static str, c: &'static str) -> Item {
    Item::Const(Const { name, value: None, style: Style::Expr(c), comment: "" })
}

use CType::{Name, U16, U32, U64, U8};

pub const FRAME_HDR: Struct = Struct {
    name: "cf_frame_hdr",
    fields: &[
        f("magic", U32, ""),
        f("version", U16, ""),
        f("kind", U16, ""),
        f("len", U32, ""),
        f("seq", U32, "RESULT/ERROR echo the seq of their RUN"),
    ],
    tail: &[],
};

pub const HELLO: Struct = Struct {
    name: "cf_hello",
    fields: &[
        f("version", U32, "CF_VERSION"),
        f("max_frame", U32, "CF_MAX_FRAME"),
        f("max_ops", U32, "CF_MAX_OPS"),
        f("max_handles", U32, "CF_MAX_HANDLES"),
        f("arch", U32, "CF_ARCH_*"),
        f("page_shift", U32, ""),
        f("cma_alignment", U32, "CONFIG_CMA_ALIGNMENT"),
        f("pb_order", U32, "pageblock_order (a macro in the kernel)"),
        f("max_low_pfn", U64, "first pfn above lowmem (arm32 highmem start)"),
        f("max_pfn", U64, "end of RAM"),
        f("release", Name, "utsname()->release, NUL padded"),
        fd(
            "attr_regs",
            U64,
            &[
                "The registers that give cf_map.attr its meaning, read from the CPU:",
                "arm32 classic (TEX remap): PRRR | (u64) NMRR << 32;",
                "arm32 LPAE: MAIR0 | (u64) MAIR1 << 32; arm64: MAIR_EL1.",
            ],
            "",
        ),
        f("pkmap_slots", U32, "LAST_PKMAP on arm32 highmem kernels, else 0"),
        fd(
            "ops_ok",
            U32,
            &[
                "1 << CF_OP_* for every op kind the driver's boot self-check found",
                "doing what it means on this kernel; the host refuses programs with",
                "any other kind (the console's \"cmafuzz: self-check:\" lines say why).",
            ],
            "",
        ),
    ],
    tail: &[],
};

pub const AGENT_HELLO: Struct = Struct {
    name: "cf_agent_hello",
    fields: &[f("flags", U32, "CF_AGENT_*"), f("max_kcov", U32, "CF_MAX_KCOV, or 0 without KCOV")],
    tail: &[],
};

pub const OP: Struct = Struct {
    name: "cf_op",
    fields: &[
        f("kind", U32, ""),
        f("area", U32, "index into the kernel's cma_areas[]"),
        f("handle", U32, "slot defined (alloc) or used (free)"),
        f("flags", U32, ""),
        f("a", U64, ""),
        f("b", U64, ""),
    ],
    tail: &[],
};

pub const RUN: Struct = Struct {
    name: "cf_run",
    fields: &[f("nops", U32, "<= CF_MAX_OPS"), f("flags", U32, "CF_RUN_*")],
    tail: &["/* struct cf_op ops[nops]; */"],
};

pub const RESULT: Struct = Struct {
    name: "cf_result",
    fields: &[
        f("status", U32, "CF_ST_*"),
        f("kind", U32, "echo of cf_op.kind"),
        f("pfn", U64, "first pfn of an allocation or pin, else 0"),
        f("pages", U64, "pages of an allocation or pin, else 0"),
        f("aux", U64, "CF_CPU_* for DMA allocations, else 0"),
        fd(
            "stale_refs",
            U64,
            &[
                "CF_OP_CMA_RELEASE / CF_OP_CMA_RELEASE_RAW that cma_release() accepted: pages of",
                "the released range whose refcount was not 0 right after it returned (a",
                "release must drop the reference cma_alloc() gave each page); else 0.",
            ],
            "",
        ),
    ],
    tail: &[],
};

pub const RESULT_HDR: Struct = Struct {
    name: "cf_result_hdr",
    fields: &[f("nresults", U32, "== nops of the RUN"), f("nobs", U32, "observation blocks that follow the results")],
    tail: &[
        "/* struct cf_result results[nresults]; */",
        "/* nobs x (struct cf_obs_hdr, nareas x (struct cf_area + ranges),",
        " *         nmaps x struct cf_map) */",
    ],
};

pub const OBS_HDR: Struct = Struct {
    name: "cf_obs_hdr",
    fields: &[
        fd("op_index", U32, &["index of the OBSERVE op (or, with CF_RUN_OBSERVE_EACH, of the", "op just run)"], ""),
        f("nareas", U32, "<= CF_MAX_AREAS"),
        f("cma_free_pages", U64, "NR_FREE_CMA_PAGES"),
        f("nmaps", U32, "<= CF_MAX_MAPS"),
        f("flags", U32, "CF_OBS_*"),
        fd(
            "pkmap_last",
            U32,
            &[
                "arm32 highmem: the PKMAP slot the kernel assigned last",
                "(mm/highmem.c last_pkmap_nr), as the driver knows it: learnt by a",
                "probe kmap at CF_OP_RESET and from the address every CF_OP_KMAP gets;",
                "CF_PKMAP_UNKNOWN before the first reset and without highmem.",
            ],
            "",
        ),
        f("reserved", U32, "0"),
    ],
    tail: &[],
};

pub const KCOV: Struct = Struct {
    name: "cf_kcov",
    fields: &[
        f("magic", U32, "CF_KCOV_MAGIC"),
        f("npcs", U32, "<= CF_MAX_KCOV"),
        f("flags", U32, "CF_KCOV_*"),
        f("reserved", U32, "0"),
    ],
    tail: &["/* __u64 pcs[npcs]; */"],
};

pub const AREA: Struct = Struct {
    name: "cf_area",
    fields: &[
        f("name", Name, "NUL padded, may lack the NUL if 64 long"),
        f("count", U64, "pages of all ranges; 0 = area disabled"),
        f("available", U64, "available_count if CF_AREA_AVAILABLE, else 0"),
        f("order_per_bit", U32, ""),
        f("nranges", U32, "<= CF_MAX_AREA_RANGES"),
        f("flags", U32, "CF_AREA_*"),
        f("reserved", U32, "0"),
    ],
    tail: &["/* nranges x (struct cf_memrange + words) */"],
};

pub const MEMRANGE: Struct = Struct {
    name: "cf_memrange",
    fields: &[
        f("base_pfn", U64, ""),
        f("count", U64, "pages of this range"),
        fd(
            "nwords",
            U32,
            &["u32 bitmap words that follow: ceil((count >> order_per_bit) / 32)", "if CF_AREA_ACTIVATED, else 0"],
            "",
        ),
        f("reserved", U32, "0"),
    ],
    tail: &["/* __u32 words[nwords]; bit i of the range = bit i%32 of words[i/32] */"],
};

pub const MAP: Struct = Struct {
    name: "cf_map",
    fields: &[
        f("va", U64, "virtual address of the first page"),
        f("pfn", U64, "first pfn"),
        f("pages", U32, "run length in pages, >= 1"),
        f("kind", U8, "CF_MAP_*"),
        f("level", U8, "CF_LVL_*"),
        fd(
            "attr",
            U8,
            &[
                "The memory-type index from the hardware descriptor: arm32 classic",
                "n = TEX[0]:C:B (decoded with PRRR/NMRR), LPAE and arm64 AttrIndx",
                "(decoded with MAIR).  cf_hello.attr_regs holds those registers.",
            ],
            "",
        ),
        f("reserved", U8, "0"),
    ],
    tail: &[],
};

pub const IOC_RUN: Struct = Struct {
    name: "cf_ioc_run",
    fields: &[
        f("in", U64, "user pointer: struct cf_run + ops"),
        f("in_len", U64, ""),
        f("out", U64, "user pointer: result payload buffer"),
        f("out_cap", U64, ""),
        f("out_len", U64, "written by the driver"),
    ],
    tail: &[],
};

/// What a RUN has done so far: the agent sends one every [`PROGRESS_MS`] while the driver runs
/// it (the host's watchdog measures progress, not total time).
pub const PROGRESS: Struct = Struct {
    name: "cf_progress",
    fields: &[f("ops_done", U64, "ops of this RUN completed so far (CF_IOC_PROGRESS)")],
    tail: &[],
};

/// How often the agent reports a RUN's progress.
pub const PROGRESS_MS: u32 = 1000;

pub const IOC_HELLO: Struct =
    Struct { name: "cf_ioc_hello", fields: &[f("hello", CType::Struct(&HELLO), "")], tail: &[] };

pub const FRAME_HDR_SIZE: usize = FRAME_HDR.size();
pub const HELLO_SIZE: usize = HELLO.size();
pub const OP_SIZE: usize = OP.size();
pub const RUN_SIZE: usize = RUN.size();
pub const RESULT_SIZE: usize = RESULT.size();

/// The header after its opening comment, in order.
pub const ITEMS: &[Item] = &[
    Item::Gap,
    num("CF_MAGIC", MAGIC as u64, Style::Hex, "\"CMFZ\""),
    dec("CF_VERSION", VERSION as u64, ""),
    Item::Gap,
    Item::Note("Bounds.  The host rejects any frame or count above these."),
    num("CF_MAX_FRAME", MAX_FRAME as u64, Style::Shl(20), "payload bytes of one frame"),
    dec("CF_MAX_OPS", MAX_OPS as u64, "ops in one RUN frame"),
    dec("CF_MAX_HANDLES", MAX_HANDLES as u64, "handle slots in the driver"),
    dec("CF_MAX_PINS", MAX_PINS as u64, "pages pinned at once"),
    dec("CF_MAX_AREAS", MAX_AREAS as u64, "CMA areas reported"),
    dec("CF_MAX_AREA_RANGES", MAX_AREA_RANGES as u64, "ranges of one area (CMA_MAX_RANGES)"),
    dec("CF_NAME_LEN", NAME_LEN as u64, "CMA_MAX_NAME"),
    dec("CF_MAX_BITMAP_WORDS", MAX_BITMAP_WORDS as u64, "u32 words of one area bitmap"),
    dec("CF_MAX_MAPS", MAX_MAPS as u64, "cf_map runs in one observation"),
    dec("CF_MAX_KCOV", MAX_KCOV as u64, "distinct PCs in a cf_kcov trailer"),
    Item::Gap,
    Item::Note("Frame kinds."),
    dec("CF_FRAME_HELLO", FRAME_HELLO as u64, "guest -> host, struct cf_hello"),
    dec("CF_FRAME_RUN", FRAME_RUN as u64, "host -> guest, struct cf_run + ops"),
    dec("CF_FRAME_RESULT", FRAME_RESULT as u64, "guest -> host, struct cf_result_hdr ..."),
    dec("CF_FRAME_ERROR", FRAME_ERROR as u64, "guest -> host, UTF-8 text, no NUL"),
    dec("CF_FRAME_PROGRESS", FRAME_PROGRESS as u64, "guest -> host, struct cf_progress, during a RUN"),
    Item::Gap,
    Item::Struct(&FRAME_HDR),
    Item::Gap,
    dec("CF_ARCH_ARM32", ARCH_ARM32 as u64, ""),
    dec("CF_ARCH_ARM32_LPAE", ARCH_ARM32_LPAE as u64, ""),
    dec("CF_ARCH_ARM64", ARCH_ARM64 as u64, ""),
    Item::Gap,
    Item::Struct(&HELLO),
    Item::Gap,
    Item::Block(&[
        "The HELLO payload is struct cf_hello (from the driver, CF_IOC_HELLO)",
        "followed by struct cf_agent_hello: what the agent itself can do.",
    ]),
    bit("CF_AGENT_KCOV", AGENT_KCOV as u64, "CF_RUN_KCOV is honoured"),
    Item::Gap,
    Item::Struct(&AGENT_HELLO),
    Item::Gap,
    Item::Note("Op kinds."),
    dec("CF_OP_CMA_ALLOC", OP_CMA_ALLOC as u64, "area, handle, a = count, b = align"),
    dec("CF_OP_CMA_RELEASE", OP_CMA_RELEASE as u64, "handle"),
    dec("CF_OP_CMA_RELEASE_RAW", OP_CMA_RELEASE_RAW as u64, "area, a = (s64) offset, b = count"),
    dec("CF_OP_DMA_ALLOC", OP_DMA_ALLOC as u64, "handle, flags = attrs | gfp, a = size"),
    dec("CF_OP_DMA_FREE", OP_DMA_FREE as u64, "handle"),
    dec("CF_OP_OBSERVE", OP_OBSERVE as u64, "emit one observation block"),
    dec("CF_OP_RESET", OP_RESET as u64, "free every handle, unpin every page"),
    dec("CF_OP_PIN", OP_PIN as u64, "area, a = (s64) offset: make a page busy"),
    dec("CF_OP_UNPIN", OP_UNPIN as u64, "area, a = (s64) offset"),
    dec("CF_OP_KMAP", OP_KMAP as u64, "area, a = (s64) offset: kmap+kunmap a free page"),
    dec("CF_OP_DMA_MAP", OP_DMA_MAP as u64, "handle, a = CF_DIR_*: streaming map+sync+unmap"),
    Item::Gap,
    Item::Note("cf_op.flags for CF_OP_DMA_ALLOC"),
    bit("CF_ATTR_WC", ATTR_WC as u64, "DMA_ATTR_WRITE_COMBINE"),
    bit("CF_ATTR_NOKMAP", ATTR_NOKMAP as u64, "DMA_ATTR_NO_KERNEL_MAPPING"),
    bit("CF_GFP_ATOMIC", GFP_ATOMIC as u64, "GFP_ATOMIC instead of GFP_KERNEL (either with __GFP_NOWARN)"),
    expr("CF_DMA_FLAGS_MASK", DMA_FLAGS_MASK as u64, "(CF_ATTR_WC | CF_ATTR_NOKMAP | CF_GFP_ATOMIC)", ""),
    Item::Gap,
    Item::Note("The largest op arguments the driver takes; an op above them is CF_ST_BADOP."),
    num("CF_MAX_DMA_SIZE", MAX_DMA_SIZE, Style::Shl(30), "CF_OP_DMA_ALLOC a (bytes)"),
    dec("CF_MAX_CMA_ALIGN", MAX_CMA_ALIGN as u64, "CF_OP_CMA_ALLOC b: cma_alloc() shifts by it"),
    Item::Gap,
    Item::Struct(&OP),
    Item::Gap,
    Item::Note("cf_run.flags"),
    bit("CF_RUN_OBSERVE_EACH", RUN_OBSERVE_EACH as u64, "an observation block after every op"),
    expr("CF_RUN_FLAGS_MASK", RUN_FLAGS_MASK as u64, "CF_RUN_OBSERVE_EACH", "what the driver accepts"),
    Item::Block(&[
        "For the agent, never seen by the driver (not in CF_RUN_FLAGS_MASK): collect",
        "KCOV_TRACE_PC coverage of the agent's task around CF_IOC_RUN and append a",
        "struct cf_kcov trailer to the RESULT.  An agent without CF_AGENT_KCOV in",
        "its hello drops the bit and appends nothing.",
    ]),
    bit("CF_RUN_KCOV", RUN_KCOV as u64, ""),
    Item::Gap,
    Item::Struct(&RUN),
    Item::Gap,
    Item::Block(&[
        "CF_OP_KMAP (arm32 kernels with highmem): the free highmem page at",
        "base_pfn + offset is taken like CF_OP_PIN takes it, kmap()ed, written,",
        "kunmap()ed and given back: what any earlier owner of the page may have",
        "done.  Its PKMAP slot stays until a pkmap flush.  Checked in this order:",
        "outside the area, a set bitmap bit or a pinned page is REFUSED (on every",
        "kernel, like CF_OP_PIN); then a page below the highmem start, or any page",
        "on a kernel without highmem, is a NOOP.  A page alloc_contig_range()",
        "cannot take is FAILED.  Answers pfn and pages = 1 like CF_OP_PIN.",
    ]),
    Item::Gap,
    Item::Block(&[
        "CF_OP_PIN takes the free page at base_pfn + offset out of the buddy",
        "allocator with alloc_contig_range(pfn, pfn + 1, MIGRATE_CMA, GFP_KERNEL)",
        "(ACR_FLAGS_CMA since v6.17)",
        "and holds it; the CMA bitmap does not change, so a cma_alloc() whose",
        "window covers the page meets -EBUSY and retries.  Refused (kernel not",
        "called) outside the area, on a page whose bitmap bit is set, on a pinned",
        "page and beyond CF_MAX_PINS.  CF_OP_UNPIN gives a pinned page back with",
        "free_contig_range(pfn, 1); any other page is a NOOP.  Both answer",
        "pfn = base_pfn + offset (0 if that is negative) and pages = 1.",
    ]),
    Item::Gap,
    Item::Block(&[
        "CF_OP_RESET also clears every unused PKMAP slot (kmap_flush_unused()), so",
        "stale slots never leak from one program into the next.",
    ]),
    Item::Gap,
    Item::Block(&[
        "CF_OP_DMA_MAP maps the pages a live handle holds (every page of a",
        "dma_alloc buffer, every still-held run of a cma_alloc) for streaming DMA",
        "on the driver's device: dma_map_page() of the first run, then",
        "dma_map_sgtable() of all runs, each synced for the cpu and for the",
        "device and unmapped again, in direction a.  Nothing stays changed.",
        "Answers pfn = the first mapped page and pages = pages mapped.  A dead",
        "handle or one holding no page is a NOOP; pages above the device's",
        "32-bit DMA mask (a bounce buffer would be mapped instead) are REFUSED;",
        "a mapping error is FAILED.",
    ]),
    dec("CF_DIR_BIDIRECTIONAL", DIR_BIDIRECTIONAL, "DMA_BIDIRECTIONAL"),
    dec("CF_DIR_TO_DEVICE", DIR_TO_DEVICE, "DMA_TO_DEVICE"),
    dec("CF_DIR_FROM_DEVICE", DIR_FROM_DEVICE, "DMA_FROM_DEVICE"),
    Item::Gap,
    Item::Note("cf_result.status"),
    dec("CF_ST_OK", ST_OK as u64, "the kernel call succeeded"),
    dec("CF_ST_FAILED", ST_FAILED as u64, "the kernel call returned NULL/false/error"),
    dec("CF_ST_NOOP", ST_NOOP as u64, "dead handle, unpinned page: not called"),
    dec("CF_ST_REFUSED", ST_REFUSED as u64, "unsafe release or pin: kernel not called"),
    dec("CF_ST_BADOP", ST_BADOP as u64, "malformed op (bad kind, area, handle)"),
    Item::Gap,
    Item::Note("cf_result.aux for a successful CF_OP_DMA_ALLOC: what cpu_addr is"),
    dec("CF_CPU_LINEAR", 1, "lowmem linear-map address"),
    dec("CF_CPU_VMALLOC", 2, "vmalloc/remap address"),
    dec("CF_CPU_COOKIE", 3, "DMA_ATTR_NO_KERNEL_MAPPING cookie"),
    dec("CF_CPU_OTHER", 4, ""),
    Item::Gap,
    Item::Struct(&RESULT),
    Item::Gap,
    Item::Struct(&RESULT_HDR),
    Item::Gap,
    dec("CF_PROGRESS_MS", PROGRESS_MS as u64, "the agent's progress period during a RUN"),
    Item::Struct(&PROGRESS),
    Item::Gap,
    Item::Note("cf_obs_hdr.flags"),
    bit("CF_OBS_MAPS_TRUNCATED", OBS_MAPS_TRUNCATED as u64, "more than CF_MAX_MAPS runs"),
    Item::Gap,
    Item::Struct(&OBS_HDR),
    Item::Gap,
    num("CF_PKMAP_UNKNOWN", PKMAP_UNKNOWN as u64, Style::Hex, ""),
    Item::Gap,
    Item::Block(&[
        "The optional last part of a RESULT payload, after the observation blocks,",
        "present when the RUN had CF_RUN_KCOV and the agent has CF_AGENT_KCOV: the",
        "distinct kernel PCs the agent's task executed during CF_IOC_RUN, in order",
        "of first appearance, each widened to 64 bits.  CF_KCOV_TRUNCATED: some",
        "were dropped (the kernel's trace buffer filled up, more than CF_MAX_KCOV",
        "distinct PCs, or the frame would exceed CF_MAX_FRAME).",
    ]),
    num("CF_KCOV_MAGIC", KCOV_MAGIC as u64, Style::Hex, "\"KCOV\""),
    bit("CF_KCOV_TRUNCATED", KCOV_TRUNCATED as u64, ""),
    Item::Gap,
    Item::Struct(&KCOV),
    Item::Gap,
    Item::Block(&[
        "An area is reported as its ranges (7.x struct cma_memrange; a 6.x area is",
        "one range).  Op offsets (CF_OP_CMA_RELEASE_RAW, PIN, UNPIN, KMAP) count the",
        "area's pages over its ranges in order: offset o is page o - (pages of the",
        "ranges before) of the range that holds it; below 0 counts back from the",
        "first range's base, at or past the count on from the last range's base.  A",
        "raw release that runs past the end of its range is REFUSED.",
    ]),
    Item::Note("cf_area.flags"),
    bit("CF_AREA_ACTIVATED", AREA_ACTIVATED as u64, "bitmaps exist (7.x CMA_ACTIVATED)"),
    bit("CF_AREA_AVAILABLE", AREA_AVAILABLE as u64, "the kernel keeps available_count (7.x)"),
    Item::Gap,
    Item::Struct(&AREA),
    Item::Gap,
    Item::Struct(&MEMRANGE),
    Item::Gap,
    Item::Block(&[
        "The mapping table: every present kernel page-table leaf (PTE, section,",
        "block) that maps a pfn of interest, found by walking init_mm's page",
        "tables (the hardware descriptors, not software shadows) over the linear",
        "map, the vmalloc area, the PKMAP area and the fixmap.  The pfns of interest",
        "are every page of every CMA area and every page of every live buffer the",
        "driver holds.  Consecutive pages with the same kind, level and attr whose",
        "va and pfn both advance by one page are merged into one run; runs are",
        "sorted by (kind, va).",
    ]),
    dec("CF_MAP_LIN", MAP_LIN as u64, "linear map of lowmem (page_address)"),
    dec("CF_MAP_VMAP", MAP_VMAP as u64, "[VMALLOC_START, VMALLOC_END)"),
    dec("CF_MAP_PKMAP", MAP_PKMAP as u64, "arm32 persistent kmap slots"),
    dec("CF_MAP_FIXMAP", MAP_FIXMAP as u64, "fixmap, incl. kmap_atomic slots"),
    Item::Gap,
    dec("CF_LVL_PTE", LVL_PTE as u64, "4 KiB page"),
    dec("CF_LVL_SECTION", LVL_SECTION as u64, "arm32 1 MiB section / LPAE 2 MiB block"),
    dec("CF_LVL_PMD", LVL_PMD as u64, "arm64 2 MiB block"),
    dec("CF_LVL_PUD", LVL_PUD as u64, "arm64 1 GiB block"),
    Item::Gap,
    Item::Struct(&MAP),
    Item::Gap,
    Item::Note("The driver's ioctl, on /dev/cmafuzz (misc device)."),
    Item::Struct(&IOC_RUN),
    Item::Gap,
    Item::Struct(&IOC_HELLO),
    Item::Gap,
    expr("CF_IOC_MAGIC", b'C' as u64, "'C'", ""),
    text("CF_IOC_RUN", "_IOWR(CF_IOC_MAGIC, 1, struct cf_ioc_run)"),
    text("CF_IOC_HELLO", "_IOR(CF_IOC_MAGIC, 2, struct cf_ioc_hello)"),
    text("CF_IOC_PROGRESS", "_IOR(CF_IOC_MAGIC, 3, __u64)"),
    Item::Gap,
];

/// Refuses, at compile time, a table C would lay out with implicit padding, a style that does
/// not render the value, or a name defined twice.
pub const fn check(items: &[Item]) {
    let mut i = 0;
    while i < items.len() {
        match items[i] {
            Item::Struct(s) => {
                let mut k = 0;
                let mut end = 0;
                while k < s.fields.len() {
                    assert!(s.offset(k) == end, "a wire struct needs implicit padding: add a reserved field");
                    end += s.fields[k].ty.size();
                    k += 1;
                }
                assert!(end == s.size(), "a wire struct needs tail padding: add a reserved field");
                assert!(!s.fields.is_empty(), "a wire struct has no fields");
            }
            Item::Const(c) => {
                if let Some(v) = c.value {
                    match c.style {
                        Style::Bit => assert!(v.is_power_of_two(), "a Bit constant is not a power of two"),
                        Style::Shl(s) => assert!((v >> s) << s == v, "a Shl constant loses bits"),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        let mut j = 0;
        while j < i {
            assert!(!same_name(&items[i], &items[j]), "a wire name is defined twice");
            j += 1;
        }
        i += 1;
    }
}

const fn same_name(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Struct(x), Item::Struct(y)) => str_eq(x.name, y.name),
        (Item::Const(x), Item::Const(y)) => str_eq(x.name, y.name),
        _ => false,
    }
}

const _: () = check(ITEMS);

/// Every struct of the table, in header order.
pub fn structs() -> impl Iterator<Item = &'static Struct> {
    ITEMS.iter().filter_map(|i| match i {
        Item::Struct(s) => Some(*s),
        _ => None,
    })
}

/// Every `#define` of the table, in header order.
pub fn consts() -> impl Iterator<Item = &'static Const> {
    ITEMS.iter().filter_map(|i| match i {
        Item::Const(c) => Some(c),
        _ => None,
    })
}

/// The display width of `s` with 8-column tabs.
fn width(s: &str) -> usize {
    s.chars().fold(0, |w, c| if c == '\t' { (w / 8 + 1) * 8 } else { w + 1 })
}

/// Appends tabs to `line` up to column `col`, at least one.
fn tab_to(line: &mut String, col: usize) {
    line.push('\t');
    while width(line) < col {
        line.push('\t');
    }
}

/// The first tab stop after `w` columns, at least `min`.
fn stop_after(w: usize, min: usize) -> usize {
    ((w / 8 + 1) * 8).max(min)
}

fn block(out: &mut String, indent: &str, lines: &[&str]) {
    let _ = writeln!(out, "{indent}/*");
    for l in lines {
        if l.is_empty() {
            let _ = writeln!(out, "{indent} *");
        } else {
            let _ = writeln!(out, "{indent} * {l}");
        }
    }
    let _ = writeln!(out, "{indent} */");
}

/// `#define` lines of one run of constants: values from column 32, comments aligned.
fn defines(out: &mut String, run: &[&Const]) {
    let heads: Vec<String> = run
        .iter()
        .map(|c| {
            let mut l = format!("#define {}", c.name);
            let col = stop_after(width(&l), 32);
            tab_to(&mut l, col);
            l.push_str(&c.c_value());
            l
        })
        .collect();
    // Comments line up at the first tab stop after the longest value, but not beyond column 48:
    // a longer value just gets one tab.
    let col = run
        .iter()
        .zip(&heads)
        .filter(|(c, _)| !c.comment.is_empty())
        .map(|(_, h)| stop_after(width(h), 0))
        .max()
        .unwrap_or(0)
        .min(48);
    for (c, mut l) in run.iter().zip(heads) {
        if !c.comment.is_empty() {
            tab_to(&mut l, col);
            let _ = write!(l, "/* {} */", c.comment);
        }
        let _ = writeln!(out, "{l}");
    }
}

fn render_struct(out: &mut String, s: &Struct) {
    let _ = writeln!(out, "struct {} {{", s.name);
    for fl in s.fields {
        if !fl.doc.is_empty() {
            block(out, "\t", fl.doc);
        }
        let mut l = format!("\t{};", fl.ty.c_decl(fl.name));
        if !fl.comment.is_empty() {
            let col = stop_after(width(&l), 32);
            tab_to(&mut l, col);
            let _ = write!(l, "/* {} */", fl.comment);
        }
        let _ = writeln!(out, "{l}");
    }
    for t in s.tail {
        let _ = writeln!(out, "\t{t}");
    }
    let _ = writeln!(out, "}};");
}

/// The complete text of `qemu/include/cmafuzz_wire.h`.
pub fn header() -> String {
    let mut out = String::from("/* SPDX-License-Identifier: GPL-2.0 */\n");
    block(
        &mut out,
        "",
        &[
            &format!("cmafuzz wire format, version {VERSION} (2 added CF_OP_PIN and CF_OP_UNPIN; 3 added"),
            "CF_OP_KMAP, the mapping table in every observation block, the memory-",
            "attribute registers in the hello and CF_RUN_OBSERVE_EACH; 4 added the",
            "agent's struct cf_agent_hello after the hello, CF_RUN_KCOV and the",
            "struct cf_kcov trailer of a RESULT; 5 added CF_FRAME_PROGRESS; 6 reports",
            "each area as its ranges with its activation state and available_count,",
            "and the boot self-check's cf_hello.ops_ok; 7 added CF_OP_DMA_MAP and",
            "cf_result.stale_refs).",
            "",
            "GENERATED from harness/src/guest/wire_def.rs, do not edit: change the",
            "table there and run",
            "  CMAFUZZ_BLESS=1 cargo test -p cmafuzz --test wire_header",
            "which rewrites this file (the same test fails while it is stale).",
            "",
            "One definition shared by the in-kernel driver (qemu/driver/cmafuzz.c),",
            "the guest agent (qemu/agent/agent.c) and the host (harness/src/guest/).",
            "Everything is little-endian, fixed width and explicitly padded, so the",
            "layout is the same on arm32, arm64 and x86-64.",
            "",
            "The host and the agent exchange frames over a virtio-serial port:",
            "",
            "  struct cf_frame_hdr, then hdr.len bytes of payload (hdr.len <= CF_MAX_FRAME)",
            "",
            "The agent sends CF_FRAME_HELLO once, then answers each CF_FRAME_RUN with",
            "exactly one CF_FRAME_RESULT (or CF_FRAME_ERROR).  The payload of a RUN",
            "frame is passed to the driver (ioctl CF_IOC_RUN), which writes the payload",
            "of the RESULT frame.  So the agent only moves bytes; the driver parses and",
            "bounds every field.  The one exception is KCOV coverage, which only the",
            "agent can collect (it is per task): the agent takes CF_RUN_KCOV out of",
            "cf_run.flags and appends a struct cf_kcov trailer to the RESULT.",
        ],
    );
    out.push_str("#ifndef CMAFUZZ_WIRE_H\n#define CMAFUZZ_WIRE_H\n\n");
    out.push_str("#include <linux/types.h>\n#include <linux/ioctl.h>\n");
    let mut run: Vec<&Const> = Vec::new();
    for item in ITEMS {
        if let Item::Const(c) = item {
            run.push(c);
            continue;
        }
        defines(&mut out, &run);
        run.clear();
        match item {
            Item::Gap => out.push('\n'),
            Item::Note(t) => {
                let _ = writeln!(out, "/* {t} */");
            }
            Item::Block(lines) => block(&mut out, "", lines),
            Item::Struct(s) => render_struct(&mut out, s),
            Item::Const(_) => {}
        }
    }
    defines(&mut out, &run);
    out.push_str("#endif /* CMAFUZZ_WIRE_H */\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_c_layout_and_sizes_add_up() {
        // cf_map: two u64, a u32 and four u8 pack into 24 bytes with no padding.
        let m = &MAP;
        let offs: Vec<usize> = (0..m.fields.len()).map(|i| m.offset(i)).collect();
        assert_eq!(offs, vec![0, 8, 16, 20, 21, 22, 23]);
        assert_eq!((m.size(), m.align()), (24, 8));
        assert_eq!(MAP.u8("attr").off, 22);
        assert_eq!(IOC_HELLO.size(), HELLO.size());
        assert_eq!(FRAME_HDR_SIZE, 16);
    }

    #[test]
    fn a_struct_needing_implicit_padding_is_refused() {
        const BAD: Struct = Struct { name: "cf_bad", fields: &[f("a", U32, ""), f("b", U64, "")], tail: &[] };
        assert_eq!(BAD.offset(1), 8, "C puts b at 8");
        let r = std::panic::catch_unwind(|| check(&[Item::Struct(&BAD)]));
        assert!(r.is_err());
        let twice = [dec("CF_X", 1, ""), dec("CF_X", 2, "")];
        assert!(std::panic::catch_unwind(|| check(&twice)).is_err());
    }

    #[test]
    fn constants_render_in_their_style() {
        let c = |value, style| Const { name: "CF_X", value: Some(value), style, comment: "" }.c_value();
        assert_eq!(c(4 << 20, Style::Shl(20)), "(4u << 20)");
        assert_eq!(c(1 << 31, Style::Bit), "(1u << 31)");
        assert_eq!(c(0x5a46_4d43, Style::Hex), "0x5a464d43u");
        assert_eq!(c(1 << 40, Style::Dec), "1099511627776ull");
    }

    #[test]
    fn the_header_defines_every_name_once_and_aligns_with_tabs() {
        let h = header();
        for c in consts() {
            let n = h.lines().filter(|l| l.split_whitespace().take(2).eq(["#define", c.name])).count();
            assert_eq!(n, 1, "{}", c.name);
        }
        for s in structs() {
            assert_eq!(h.matches(&format!("\nstruct {} {{\n", s.name)).count(), 1, "{}", s.name);
        }
        assert!(h.lines().all(|l| l == l.trim_end()), "trailing whitespace");
        assert!(h.contains("#define CF_MAX_OPS\t\t4096u\t\t/* ops in one RUN frame */\n"));
        assert!(h.contains("\t__u32 seq;\t\t/* RESULT/ERROR echo the seq of their RUN */\n"));
        assert!(h.ends_with("#endif /* CMAFUZZ_WIRE_H */\n"));
    }
}
