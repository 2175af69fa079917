//! Seeded random programs for `model-check` and `difftest`: one u64 seed gives one program,
//! always the same one (a splitmix64 stream, no outside randomness), so a seed is a reproducer.
//!
//! Values lean on the corners CMA gets wrong: counts 0 and 1, a pageblock (1024) ± 1, the area
//! (8192) ± 1, alignments up to order 12 and rarely beyond, raw releases at and around live
//! allocations and the area's ends, DMA sizes around page multiples with every attr/gfp mix,
//! and handles that are mostly live but sometimes freed, failed or not yet defined.

use reference_impl::observation::AreaObservation;
use reference_impl::program::{AreaRef, DmaAttrs, Gfp, Handle, Op, Program};
use reference_impl::units::{Bytes, Order, Pages};

/// Pages in the `reserved` area of the single-area targets (32 MiB of 4 KiB pages).
const AREA_PAGES: i64 = 8192;

/// An area programs may name, and its size in pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenArea {
    pub name: String,
    pub pages: i64,
}

impl GenArea {
    /// The areas of a layout, the default area (`reserved`) first; disabled areas are left out.
    pub fn of(areas: &[AreaObservation]) -> Vec<GenArea> {
        let mut v: Vec<GenArea> = areas
            .iter()
            .filter(|a| a.count.0 > 0)
            .map(|a| GenArea { name: a.name.clone(), pages: i64::try_from(a.count.0).unwrap_or(i64::MAX) })
            .collect();
        v.sort_by_key(|a| a.name != "reserved");
        v
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

/// The area of the next op: the default one mostly, another one a third of the time. With a
/// single area no random number is drawn, so single-area programs do not depend on the list.
fn pick_area<'a>(r: &mut Rng, areas: &'a [GenArea]) -> &'a GenArea {
    if areas.len() > 1 && r.chance(1, 3) {
        &areas[1 + r.below(areas.len() as u64 - 1) as usize]
    } else {
        &areas[0]
    }
}

fn cma_count(r: &mut Rng, area_pages: i64) -> u64 {
    match r.below(20) {
        0 => 0,
        1..=3 => 1,
        4..=10 => r.range(2, 64),
        11..=13 => r.range(65, 900),
        14 => PAGEBLOCK + r.below(3) - 1,
        15 => 2 * PAGEBLOCK + r.below(3) - 1,
        16 => r.range(1025, 4096),
        17 => area_pages as u64 + r.below(3) - 1,
        18 => r.range(4097, 8000),
        _ => r.pick(&[1u64 << 20, 0xffff_ffff, 100_000]),
    }
}

fn cma_align(r: &mut Rng) -> u32 {
    if r.chance(1, 30) {
        r.range(13, 20) as u32
    } else {
        r.range(0, 12) as u32
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

fn offset(r: &mut Rng, p: &Plan, area_pages: i64) -> i64 {
    match r.below(10) {
        0..=4 => r.range(0, 2048) as i64,
        5 => area_pages + r.range(0, 4) as i64 - 2,
        6 => -(r.range(1, 3) as i64),
        7 if !p.pins.is_empty() => p.pins[r.below(p.pins.len() as u64) as usize],
        _ => r.range(0, area_pages.max(1) as u64 - 1) as i64,
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
    program_for(seed, &[GenArea { name: "reserved".into(), pages: AREA_PAGES }])
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
        let mut kind = r.below(100);
        if areas.is_empty() && !(50..=79).contains(&kind) && kind < 94 {
            kind = 50 + kind % 20;
        }
        let op = match kind {
            0..=29 => {
                let a = pick_area(&mut r, areas);
                let count = cma_count(&mut r, a.pages);
                p.handles.push((true, count));
                Op::CmaAlloc {
                    area: AreaRef::Name(a.name.clone()),
                    count: Pages(count),
                    align: Order(cma_align(&mut r)),
                }
            }
            30..=41 => {
                let h = handle(&mut r, &p, true);
                p.freed.push(h.0);
                Op::CmaRelease { h }
            }
            42..=49 => {
                let a = pick_area(&mut r, areas);
                let off = offset(&mut r, &p, a.pages);
                let count = match r.below(6) {
                    0 => 0,
                    1..=3 => r.range(1, 8),
                    4 => r.range(9, 1100),
                    _ => cma_count(&mut r, a.pages),
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
                let off = offset(&mut r, &p, a.pages);
                p.pins.push(off);
                Op::Pin { area: AreaRef::Name(a.name.clone()), off }
            }
            86..=90 => {
                let a = pick_area(&mut r, areas);
                // Mostly a page pinned earlier (whether or not the pin succeeded).
                let off = if !p.pins.is_empty() && r.chance(2, 3) {
                    p.pins[r.below(p.pins.len() as u64) as usize]
                } else {
                    offset(&mut r, &p, a.pages)
                };
                Op::Unpin { area: AreaRef::Name(a.name.clone()), off }
            }
            91..=93 => {
                let a = pick_area(&mut r, areas);
                // Mostly just past the boot pools, where the next dma_alloc lands (spec §5.6).
                let off = if r.chance(1, 2) { r.range(60, 200) as i64 } else { offset(&mut r, &p, a.pages) };
                Op::Kmap { area: AreaRef::Name(a.name.clone()), off }
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

    #[test]
    fn every_op_kind_appears_over_200_seeds() {
        let kinds: BTreeSet<&str> = (0..200).flat_map(|s| program(s).ops).map(|op| op.kind()).collect();
        assert_eq!(kinds.len(), 9, "{kinds:?}");
    }
}
