//! Seeded random programs for `model-check` and `difftest`: one u64 seed gives one program,
//! always the same one (a splitmix64 stream, no outside randomness), so a seed is a reproducer.
//!
//! Every area of the target (as the kernel reports it, [`GenArea::of`]) is named equally often,
//! so none starves, and values are relative to the area an op names: counts 0 and 1, one bitmap
//! bit (`1 << order_per_bit` pages) and its multiples ± 1, a pageblock (1024) ± 1, the area ± 1;
//! alignments up to order 12 and rarely beyond, and around the alignment of the area's base
//! (orders past it are where the kernel's offset matters) and its `order_per_bit`; raw releases
//! and pins at and around live allocations, bit boundaries, the area's ends and each range's end;
//! DMA sizes around page multiples with every attr/gfp mix, and handles that are mostly live but
//! sometimes freed, failed or not yet defined.

use reference_impl::observation::AreaObservation;
use reference_impl::program::{AreaRef, DmaAttrs, DmaDir, Gfp, Handle, Op, Program};
use reference_impl::units::{Bytes, Order, Pages};

/// Pages in the `reserved` area of the single-area targets (32 MiB of 4 KiB pages).
const AREA_PAGES: i64 = 8192;

/// An area programs may name: its size in pages and what values are relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenArea {
    pub name: String,
    pub pages: i64,
    /// `cma->order_per_bit`: one bitmap bit is `1 << order_per_bit` pages.
    pub order_per_bit: u32,
    /// The first range's base pfn (6.x: the area's base).
    pub base_pfn: u64,
    /// Where each range ends, as a driver offset (pages counted over the ranges in order).
    pub range_ends: Vec<i64>,
}

impl GenArea {
    /// The areas of a layout, the default area (`reserved`) first; disabled areas are left out.
    pub fn of(areas: &[AreaObservation]) -> Vec<GenArea> {
        let mut v: Vec<GenArea> = areas
            .iter()
            .filter(|a| a.count.0 > 0)
            .map(|a| {
                let mut end = 0i64;
                let range_ends = a
                    .ranges
                    .iter()
                    .map(|r| {
                        end = end.saturating_add(i64::try_from(r.count.0).unwrap_or(i64::MAX));
                        end
                    })
                    .collect();
                GenArea {
                    name: a.name.clone(),
                    pages: i64::try_from(a.count.0).unwrap_or(i64::MAX),
                    order_per_bit: a.order_per_bit,
                    base_pfn: a.ranges.first().map_or(0, |r| r.base_pfn.0),
                    range_ends,
                }
            })
            .collect();
        v.sort_by_key(|a| a.name != "reserved");
        v
    }

    /// The default area of the single-area targets: `reserved`, 8192 pages, one page a bit.
    pub fn reserved() -> GenArea {
        GenArea {
            name: "reserved".into(),
            pages: AREA_PAGES,
            order_per_bit: 0,
            base_pfn: 0x7e000,
            range_ends: vec![AREA_PAGES],
        }
    }

    /// Pages of one bitmap bit.
    pub fn bit_pages(&self) -> u64 {
        1u64 << self.order_per_bit.min(30)
    }

    /// The order the base pfn is aligned to (capped at 20: a base of 0 is aligned to all).
    pub fn base_order(&self) -> u32 {
        self.base_pfn.trailing_zeros().min(20)
    }

    /// Page counts around this area's own sizes: one bit and its multiples ± 1, the area ± 1
    /// and a bit short of it.
    pub fn interesting_counts(&self) -> Vec<u64> {
        let (bit, pages) = (self.bit_pages(), self.pages.max(0) as u64);
        let mut v = Vec::new();
        for m in [1, 2, 3, 4] {
            v.extend([m * bit - 1, m * bit, m * bit + 1]);
        }
        v.extend([pages.saturating_sub(1), pages, pages + 1, pages.saturating_sub(bit), pages.saturating_sub(bit) + 1]);
        v.retain(|c| *c > 0);
        v
    }

    /// Alignment orders around the base's alignment and `order_per_bit`.
    pub fn interesting_aligns(&self) -> Vec<u32> {
        let (b, o) = (self.base_order(), self.order_per_bit);
        let mut v = vec![b.saturating_sub(1), b, b + 1, b + 2, o.saturating_sub(1), o, o + 1];
        v.retain(|a| *a <= 20);
        v
    }

    /// Driver offsets around this area's ends, each range's end and the bit boundaries there.
    pub fn interesting_offsets(&self) -> Vec<i64> {
        let bit = self.bit_pages() as i64;
        let mut v = vec![-1, 0, 1, bit - 1, bit, bit + 1];
        for e in self.range_ends.iter().chain(std::iter::once(&self.pages)) {
            v.extend([e - bit - 1, e - bit, e - 1, *e, e + 1]);
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}
/// The area an op names, if it names one.
pub fn op_area(op: &Op) -> Option<&AreaRef> {
    match op {
        Op::CmaAlloc { area, .. }
        | Op::CmaReleaseRaw { area, .. }
        | Op::Pin { area, .. }
        | Op::Unpin { area, .. }
        | Op::Kmap { area, .. } => Some(area),
        _ => None,
    }
}

/// The area an op names, to change it.
pub fn op_area_mut(op: &mut Op) -> Option<&mut AreaRef> {
    match op {
        Op::CmaAlloc { area, .. }
        | Op::CmaReleaseRaw { area, .. }
        | Op::Pin { area, .. }
        | Op::Unpin { area, .. }
        | Op::Kmap { area, .. } => Some(area),
        _ => None,
    }
}

/// Pages in a pageblock (order 10).
const PAGEBLOCK: u64 = 1024;
const PAGE: u64 = 4096;

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to pick ops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// What the generator remembers of the program so far, to aim handles and raw releases.
#[derive(Default)]
struct Plan {
    /// Every handle defined so far, with its kind and, for `cma_alloc`, its count.
    handles: Vec<(bool, u64)>,
    /// Handles already released (they may still be named again, on purpose).
    freed: Vec<u32>,
    pins: Vec<i64>,
}

/// The area of the next op: every area equally often (a campaign that names one area 30 times
/// more than another starves it). With a single area no random number is drawn.
fn pick_area<'a>(r: &mut Rng, areas: &'a [GenArea]) -> &'a GenArea {
    if areas.len() > 1 {
        &areas[r.below(areas.len() as u64) as usize]
    } else {
        &areas[0]
    }
}

fn cma_count(r: &mut Rng, a: &GenArea) -> u64 {
    let (bit, pages) = (a.bit_pages(), a.pages.max(1) as u64);
    match r.below(26) {
        0 => 0,
        1..=3 => 1,
        4..=8 => r.range(2, 64),
        9..=10 => r.range(65, 900),
        11 => PAGEBLOCK + r.below(3) - 1,
        12 => 2 * PAGEBLOCK + r.below(3) - 1,
        13 => r.range(1025, 4096),
        14 => pages + r.below(3) - 1,
        15 => r.range(4097, 8000),
        // One bit and its multiples, ± 1 (for order_per_bit 0: a few pages).
        16..=19 => (r.range(1, 4) * bit + r.below(3)).saturating_sub(1).max(1),
        20 => r.range(1, pages),
        21 => pages.saturating_sub(bit * r.range(1, 2)) + r.below(3),
        22 => pages / 2 + r.below(3) - 1,
        23 => r.range(1, 64) * bit,
        _ => r.pick(&[1u64 << 20, 0xffff_ffff, 100_000]),
    }
}

fn cma_align(r: &mut Rng, a: &GenArea) -> u32 {
    match r.below(12) {
        0..=6 => r.range(0, 12) as u32,
        // Around the base's alignment: past it the kernel's offset (cma_bitmap_aligned_offset)
        // is what places the allocation.
        7..=8 => (a.base_order() + r.below(4) as u32).saturating_sub(1),
        9 => (a.order_per_bit + r.below(3) as u32).saturating_sub(1),
        10 => r.range(0, u64::from(a.base_order()) + 2) as u32,
        _ if r.chance(1, 3) => r.range(13, 20) as u32,
        _ => r.range(0, 12) as u32,
    }
}

fn dma_size(r: &mut Rng) -> u64 {
    match r.below(16) {
        0 => 0,
        1 => 1,
        2..=4 => r.range(1, PAGE * 2),
        5..=9 => r.range(1, 16) * PAGE + r.below(3) - 1,
        10..=12 => r.range(17, 256) * PAGE + r.below(3) - 1,
        13 => (1 << 20) + r.below(3) - 1,
        14 => r.range(1, 1024) * PAGE,
        _ => r.pick(&[2 << 20, (4 << 20) - 1, 4 << 20]),
    }
}

fn offset(r: &mut Rng, p: &Plan, a: &GenArea) -> i64 {
    let area_pages = a.pages;
    match r.below(12) {
        0..=3 => r.range(0, 2048) as i64,
        4 => area_pages + r.range(0, 4) as i64 - 2,
        5 => -(r.range(1, 3) as i64),
        6 if !p.pins.is_empty() => p.pins[r.below(p.pins.len() as u64) as usize],
        // Around a range's end (the last one is the area's).
        7 if !a.range_ends.is_empty() => {
            a.range_ends[r.below(a.range_ends.len() as u64) as usize] + r.range(0, 4) as i64 - 2
        }
        // Around a bit boundary.
        8 => {
            let bit = a.bit_pages() as i64;
            let bits = (area_pages / bit.max(1)).max(1) as u64;
            r.below(bits) as i64 * bit + r.range(0, 2) as i64 - 1
        }
        _ => r.range(0, area_pages.max(1) as u64 - 1) as i64,
    }
}

/// A streaming DMA direction from a random number, each equally often.
pub fn dir_of(n: u64) -> DmaDir {
    match n % 3 {
        0 => DmaDir::Bidirectional,
        1 => DmaDir::ToDevice,
        _ => DmaDir::FromDevice,
    }
}

/// A handle of the wanted kind: mostly a live one, sometimes a freed one, one of the other kind,
/// or one not yet defined.
fn handle(r: &mut Rng, p: &Plan, cma: bool) -> Handle {
    let n = p.handles.len() as u64;
    if n == 0 || r.chance(1, 12) {
        return Handle((n + r.below(3)) as u32);
    }
    if !p.freed.is_empty() && r.chance(1, 10) {
        return Handle(p.freed[r.below(p.freed.len() as u64) as usize]);
    }
    let live: Vec<u32> = (0..n as u32).filter(|h| p.handles[*h as usize].0 == cma && !p.freed.contains(h)).collect();
    if live.is_empty() || r.chance(1, 15) {
        return Handle(r.below(n) as u32);
    }
    Handle(live[r.below(live.len() as u64) as usize])
}

/// The program of `seed`: 5..=60 ops over the area `reserved` (8192 pages), every op kind
/// represented.
pub fn program(seed: u64) -> Program {
    program_for(seed, &[GenArea::reserved()])
}

/// `p` without its ops of the `refused` kinds (a kernel's [`crate::backend::Backend::refused_kinds`]:
/// ops it would refuse to run), for generators on that kernel. Refused kinds define no handle
/// (a kernel that cannot `cma_alloc` or `dma_alloc` has no self-check passing at all), so the
/// handles of the rest still name what they named.
pub fn without_kinds(mut p: Program, refused: &[&str]) -> Program {
    if !refused.is_empty() {
        p.ops.retain(|op| !refused.contains(&op.kind()));
    }
    p
}

/// The program of `seed` over `areas` (default area first). Without any area (`cma=0`) the
/// ops that name an area become `dma_alloc`s.
pub fn program_for(seed: u64, areas: &[GenArea]) -> Program {
    let mut r = Rng(seed ^ 0x636d_6166_757a_7a00);
    let len = r.range(5, 60);
    let mut p = Plan::default();
    let mut ops = Vec::with_capacity(len as usize);
    // Big nokmap buffers WARN in the kernel; allow one now and then.
    let mut big_nokmap = r.chance(1, 20);
    for _ in 0..len {
        let mut kind = r.below(106);
        if areas.is_empty() && !(50..=79).contains(&kind) && kind < 94 {
            kind = 50 + kind % 20;
        }
        let op = match kind {
            0..=29 => {
                let a = pick_area(&mut r, areas);
                let count = cma_count(&mut r, a);
                p.handles.push((true, count));
                Op::CmaAlloc {
                    area: AreaRef::Name(a.name.clone()),
                    count: Pages(count),
                    align: Order(cma_align(&mut r, a)),
                }
            }
            30..=41 => {
                let h = handle(&mut r, &p, true);
                p.freed.push(h.0);
                Op::CmaRelease { h }
            }
            42..=49 => {
                let a = pick_area(&mut r, areas);
                let off = offset(&mut r, &p, a);
                let count = match r.below(7) {
                    0 => 0,
                    1..=3 => r.range(1, 8),
                    4 => r.range(9, 1100),
                    5 => (r.range(1, 2) * a.bit_pages() + r.below(3)).saturating_sub(1),
                    _ => cma_count(&mut r, a),
                };
                Op::CmaReleaseRaw { area: AreaRef::Name(a.name.clone()), off, count: Pages(count) }
            }
            50..=69 => {
                let mut size = dma_size(&mut r);
                let attrs = DmaAttrs { wc: r.chance(1, 2), nokmap: r.chance(1, 3) };
                if attrs.nokmap && size > 4 << 20 {
                    size = 4 << 20;
                }
                if attrs.nokmap && size == 4 << 20 {
                    if big_nokmap {
                        big_nokmap = false;
                    } else {
                        size = 1 << 20;
                    }
                }
                let gfp = if r.chance(1, 3) { Gfp::Atomic } else { Gfp::Kernel };
                // An atomic buffer no pool can hold WARNs in dma_alloc_from_pool() (arm64) or
                // __alloc_from_pool() (arm32); keep most of them within a 256 KiB pool.
                if gfp == Gfp::Atomic && !attrs.nokmap && size > 256 << 10 && !r.chance(1, 8) {
                    size = size % (256 << 10) + 1;
                }
                p.handles.push((false, 0));
                Op::DmaAlloc { size: Bytes(size), attrs, gfp }
            }
            70..=79 => {
                let h = handle(&mut r, &p, false);
                p.freed.push(h.0);
                Op::DmaFree { h }
            }
            80..=85 => {
                let a = pick_area(&mut r, areas);
                let off = offset(&mut r, &p, a);
                p.pins.push(off);
                Op::Pin { area: AreaRef::Name(a.name.clone()), off }
            }
            86..=90 => {
                let a = pick_area(&mut r, areas);
                // Mostly a page pinned earlier (whether or not the pin succeeded).
                let off = if !p.pins.is_empty() && r.chance(2, 3) {
                    p.pins[r.below(p.pins.len() as u64) as usize]
                } else {
                    offset(&mut r, &p, a)
                };
                Op::Unpin { area: AreaRef::Name(a.name.clone()), off }
            }
            91..=93 => {
                let a = pick_area(&mut r, areas);
                // Mostly just past the boot pools, where the next dma_alloc lands (spec §5.6).
                let off = if r.chance(1, 2) { r.range(60, 200) as i64 } else { offset(&mut r, &p, a) };
                Op::Kmap { area: AreaRef::Name(a.name.clone()), off }
            }
            100..=105 => {
                let cma = r.chance(1, 2);
                Op::DmaMap { h: handle(&mut r, &p, cma), dir: dir_of(r.next()) }
            }
            _ => Op::Observe,
        };
        ops.push(op);
    }
    Program { ops }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_same_seed_gives_the_same_program() {
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(program(seed), program(seed));
        }
        assert_ne!(program(1), program(2));
    }

    #[test]
    fn programs_round_trip_through_text_and_have_5_to_60_ops() {
        for seed in 0..200 {
            let p = program(seed);
            assert!((5..=60).contains(&p.ops.len()), "seed {seed}: {} ops", p.ops.len());
            assert_eq!(Program::parse(&p.to_text()).as_ref(), Ok(&p), "seed {seed}");
        }
    }

    fn hugetlb() -> Vec<GenArea> {
        vec![
            GenArea::reserved(),
            GenArea {
                name: "hugetlb0".into(),
                pages: 262144,
                order_per_bit: 9,
                base_pfn: 0xbfe00,
                range_ends: vec![262144],
            },
        ]
    }

    #[test]
    fn every_area_is_named_about_equally_often() {
        let areas = hugetlb();
        let mut per = std::collections::BTreeMap::<String, u64>::new();
        for seed in 0..400 {
            for op in program_for(seed, &areas).ops {
                if let Some(AreaRef::Name(n)) = op_area(&op) {
                    *per.entry(n.clone()).or_default() += 1;
                }
            }
        }
        let (r, h) = (per["reserved"], per["hugetlb0"]);
        assert!(r > 0 && h > 0, "{per:?}");
        assert!(h * 10 > r * 7 && r * 10 > h * 7, "areas are not named evenly: {per:?}");
    }

    #[test]
    fn counts_alignments_and_offsets_are_relative_to_the_area() {
        let areas = hugetlb();
        let (mut counts, mut aligns, mut offs) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for seed in 0..3000 {
            for op in program_for(seed, &areas).ops {
                match op {
                    Op::CmaAlloc { area: AreaRef::Name(n), count, align } if n == "hugetlb0" => {
                        counts.insert(count.0);
                        aligns.insert(align.0);
                    }
                    Op::CmaReleaseRaw { area: AreaRef::Name(n), off, .. } | Op::Pin { area: AreaRef::Name(n), off }
                        if n == "hugetlb0" =>
                    {
                        offs.insert(off);
                    }
                    _ => {}
                }
            }
        }
        for c in [511, 512, 513, 1024, 1025, 262143, 262144, 262145] {
            assert!(counts.contains(&c), "count {c} of a 512-page bit never drawn");
        }
        // hugetlb0's base 0xbfe00 is aligned to order 9: orders 8..=11 and order_per_bit ± 1.
        for a in [8, 9, 10, 11] {
            assert!(aligns.contains(&a), "align {a} never drawn: {aligns:?}");
        }
        for o in [262143, 262144, 262145] {
            assert!(offs.contains(&o), "offset {o} never drawn");
        }
        for m in [511, 0, 1] {
            assert!(offs.iter().any(|o| *o > 512 && *o < 262000 && o % 512 == m), "no offset at a bit boundary + {m}");
        }
    }

    #[test]
    fn every_op_kind_appears_over_200_seeds() {
        let kinds: BTreeSet<&str> = (0..200).flat_map(|s| program(s).ops).map(|op| op.kind()).collect();
        assert_eq!(kinds.len(), 10, "{kinds:?}");
    }
}
