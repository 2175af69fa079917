//! What the feedback maps see of one execution.
//!
//! - **Model state** ([`model_features`]): the CMA states a program reached, as seen by the
//!   model (or the kernel when the model did not run): every (op kind, outcome class) pair and
//!   every consecutive pair of them, allocation size and alignment buckets per outcome, the
//!   same pairs in the context of live pins and stale kmaps, the fragmentation shape of every
//!   observed bitmap (used bits, free runs, largest free run, a coarse occupancy picture), the
//!   set of (mapping kind, memory type) pairs of each observation, and the signatures of
//!   suppressed verdicts. Every op that names an area also counts per (area, its
//!   `order_per_bit`), and an allocation per (area, range it landed in, whether its start and
//!   its count are whole bits): a program that reaches a new area's state, or a new range of
//!   one, is kept. A program that reaches a new CMA state is kept even when the kernel's edges
//!   are the same.
//! - **Kernel coverage** ([`kcov_features`]): KCOV PCs of the run (`Execution::coverage`),
//!   hashed into the map. Empty until the agent collects KCOV; nothing else changes then.
//!
//! Both produce map indices with a hit count; [`fill`] writes them as AFL-style count buckets.

use crate::diff::Execution;
use reference_impl::observation::{AreaObservation, Observation};
use reference_impl::outcome::Outcome;
use reference_impl::program::{AreaId, ResolvedOp};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

/// Entries of the model-state map.
pub const MODEL_MAP_SIZE: usize = 1 << 14;
/// Entries of the kernel-coverage map.
pub const KCOV_MAP_SIZE: usize = 1 << 16;

fn h<T: Hash>(x: T) -> u64 {
    let mut s = std::collections::hash_map::DefaultHasher::new();
    x.hash(&mut s);
    s.finish()
}

/// The outcome's class, without pfns (the oracle's classifier, [`Outcome::class`]).
pub fn outcome_class(o: &Outcome) -> &'static str {
    o.class()
}

/// log2 bucket: 0, 1, 2-3, 4-7, …
fn log2_bucket(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Alignment orders in four classes: none, below a pageblock, around one, beyond.
fn align_class(order: u32) -> u32 {
    match order {
        0 => 0,
        1..=8 => 1,
        9..=10 => 2,
        _ => 3,
    }
}

/// (op kind, argument bucket) of an op, for the size/alignment features.
fn arg_bucket(op: &ResolvedOp) -> (u32, u32) {
    match op {
        ResolvedOp::CmaAlloc { count, align, .. } => (log2_bucket(count.0), align_class(align.0)),
        ResolvedOp::CmaReleaseRaw { count, off, .. } => (log2_bucket(count.0), u32::from(*off < 0)),
        ResolvedOp::DmaAlloc { size, attrs, gfp, .. } => (
            log2_bucket(size.0.div_ceil(4096)),
            u32::from(attrs.wc) | u32::from(attrs.nokmap) << 1 | (*gfp as u32) << 2,
        ),
        // The direction picks the cache maintenance (clean, invalidate or both).
        ResolvedOp::DmaMap { dir, .. } => (*dir as u32, 0),
        _ => (0, 0),
    }
}

/// Free runs of an area's bitmap: (number of runs, longest run).
fn free_runs(a: &AreaObservation) -> (u64, u64) {
    let bits = a.bitmap_bits().min(1 << 20);
    let (mut runs, mut longest, mut cur) = (0u64, 0u64, 0u64);
    for i in 0..bits {
        if a.bit(i) {
            cur = 0;
        } else {
            if cur == 0 {
                runs += 1;
            }
            cur += 1;
            longest = longest.max(cur);
        }
    }
    (runs, longest)
}

/// Slices of [`occupancy`]: 3^4 = 81 pictures per area. (16 slices gave 3^16 and made almost
/// every execution "new": a campaign kept three inputs in four.)
const SLICES: u64 = 4;

/// The area cut into [`SLICES`] slices, each empty, partly used or full: a coarse picture of
/// where allocations sit (front, back, scattered).
fn occupancy(a: &AreaObservation) -> u64 {
    let bits = a.bitmap_bits().min(1 << 20);
    if bits == 0 {
        return 0;
    }
    let mut pic = 0u64;
    for s in 0..SLICES {
        let (lo, hi) = (bits * s / SLICES, bits * (s + 1) / SLICES);
        let used = (lo..hi).filter(|i| a.bit(*i)).count() as u64;
        let state = if used == 0 {
            0
        } else if used == hi - lo {
            2
        } else {
            1
        };
        pic = pic * 3 + state;
    }
    pic
}

/// How full an area is: empty, under a quarter, under half, under three quarters, not full, full.
fn occupancy_class(a: &AreaObservation) -> u32 {
    let (used, bits) = (a.used_bits(), a.bitmap_bits().max(1));
    match used {
        0 => 0,
        u if u == bits => 5,
        u => 1 + u32::try_from(u * 4 / bits).unwrap_or(3).min(3),
    }
}

fn observation_features(tag: &str, o: &Observation, out: &mut Vec<u64>) {
    for (i, a) in o.areas.iter().enumerate() {
        let (runs, longest) = free_runs(a);
        let area = (i, a.order_per_bit);
        out.push(h(("used", tag, area, occupancy_class(a))));
        out.push(h(("frag", tag, area, log2_bucket(runs), log2_bucket(longest))));
        out.push(h(("shape", area, occupancy(a))));
        if a.ranges.len() > 1 {
            for (r, range) in a.ranges.iter().enumerate() {
                let used = range.bitmap.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
                out.push(h(("range-used", tag, area, r, log2_bucket(used))));
            }
        }
    }
    let pairs: BTreeSet<(&str, &str)> = o.maps.iter().map(|m| (m.kind.name(), m.mem.name())).collect();
    for p in &pairs {
        out.push(h(("map", p)));
    }
    out.push(h(("mapset", &pairs)));
    if o.maps_truncated {
        out.push(h("maps-truncated"));
    }
}

/// The area an op names.
pub fn op_area(op: &ResolvedOp) -> Option<AreaId> {
    match op {
        ResolvedOp::CmaAlloc { area, .. }
        | ResolvedOp::CmaReleaseRaw { area, .. }
        | ResolvedOp::Pin { area, .. }
        | ResolvedOp::Unpin { area, .. }
        | ResolvedOp::Kmap { area, .. } => Some(*area),
        _ => None,
    }
}

/// Where an allocation of `pages` at `pfn` landed in `a`: (range index, start on a bit
/// boundary, count a whole number of bits).
fn placement(a: &AreaObservation, pfn: u64, pages: u64) -> Option<(usize, bool, bool)> {
    let bit = 1u64 << a.order_per_bit.min(30);
    a.ranges.iter().enumerate().find_map(|(i, r)| {
        let off = pfn.checked_sub(r.base_pfn.0)?;
        (off < r.count.0).then_some((i, off % bit == 0, pages % bit == 0))
    })
}

/// Model-state feature hashes of one execution (one entry per occurrence).
pub fn model_features(e: &Execution) -> Vec<u64> {
    let mut out = Vec::new();
    let Some(run) = e.reference.as_ref().or(e.subject.as_ref()) else { return out };
    let mut prev = ("start", "start");
    let mut pins = 0u32;
    let mut kmaps = 0u32;
    for (op, o) in e.resolved.ops.iter().zip(&run.outcomes) {
        let kind = op.kind();
        let class = outcome_class(o);
        out.push(h(("oc", kind, class)));
        out.push(h(("bi", prev, kind, class)));
        let (a, b) = arg_bucket(op);
        out.push(h(("arg", kind, class, a, b)));
        if let Some(AreaId(id)) = op_area(op) {
            let obs = run.end.areas.get(id as usize);
            let opb = obs.map_or(0, |x| x.order_per_bit);
            out.push(h(("area", kind, class, id, opb)));
            out.push(h(("area-arg", kind, class, id, a, b)));
            if let (Some(x), Outcome::Allocated { pfn, pages }) = (obs, o) {
                out.push(h(("place", id, placement(x, pfn.0, pages.0))));
            }
        }
        if pins > 0 || kmaps > 0 {
            out.push(h(("ctx", kind, class, log2_bucket(u64::from(pins)), kmaps.min(3))));
        }
        match o {
            Outcome::Pinned { .. } => pins += 1,
            Outcome::Unpinned { .. } => pins = pins.saturating_sub(1),
            Outcome::Kmapped { .. } => kmaps += 1,
            // How much a streaming map covered: one page, a run, several runs of a punched
            // allocation all walk other cache-maintenance loops.
            Outcome::Mapped { pages } => out.push(h(("mapped", log2_bucket(pages.0), arg_bucket(op).0))),
            _ => {}
        }
        prev = (kind, class);
    }
    for (_, obs) in &run.observations {
        observation_features("obs", obs, &mut out);
    }
    observation_features("end", &run.end, &mut out);
    for v in &e.verdicts {
        if v.suppressed.is_some() {
            out.push(h(("suppressed", &v.signature)));
        }
    }
    out
}

/// Kernel coverage: one entry per KCOV PC.
pub fn kcov_features(e: &Execution) -> Vec<u64> {
    e.coverage.iter().map(|pc| h(("pc", pc))).collect()
}

/// Steering towards a focus (`fuzz --focus`, the functions a series changes): every focus site
/// the run reached also counts once per set of op kinds the program holds, so a program that
/// reaches the changed code with a new mix of ops is kept, and the minimizing scheduler, which
/// favours the shortest program of each entry, holds more favoured programs in the focus and
/// mutates them more often. Empty when the run reached no focus site.
pub fn focus_features(e: &Execution, focus: &crate::coverage::Focus) -> Vec<u64> {
    let hit: Vec<u64> = e.coverage.iter().copied().filter(|&pc| focus.contains(pc)).collect();
    if hit.is_empty() {
        return Vec::new();
    }
    let kinds: BTreeSet<&'static str> = e.resolved.ops.iter().map(|op| op.kind()).collect();
    hit.into_iter().map(|pc| h(("focus", pc, &kinds))).collect()
}

/// Writes model-state `features` into `map` as three hit-count classes (1, 2-3, 4+): doing a
/// thing again is news once or twice, not at every power of two (a program that only grew
/// longer is not a new CMA state). Returns the entries it set.
pub fn fill_model(map: &mut [u8], features: &[u64]) -> Vec<usize> {
    let set = fill(map, features);
    for &i in &set {
        map[i] = match map[i] {
            1 => 1,
            2 | 3 => 2,
            _ => 3,
        };
    }
    set
}

/// Writes `features` into `map` (cleared by the observer before the run) as hit-count buckets:
/// 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+ become 1..=8, so a feature seen more often than
/// before is news, like AFL's edge counts. Returns the entries it set.
pub fn fill(map: &mut [u8], features: &[u64]) -> Vec<usize> {
    if map.is_empty() {
        return Vec::new();
    }
    let mut counts = std::collections::HashMap::<usize, u32>::new();
    for f in features {
        *counts.entry((*f % map.len() as u64) as usize).or_default() += 1;
    }
    let mut set = Vec::with_capacity(counts.len());
    for (i, c) in counts {
        map[i] = match c {
            0 => 0,
            1 => 1,
            2 => 2,
            3 => 3,
            4..=7 => 4,
            8..=15 => 5,
            16..=31 => 6,
            32..=127 => 7,
            _ => 8,
        };
        set.push(i);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::units::{Pages, Pfn};

    fn area(bitmap: Vec<u32>) -> AreaObservation {
        AreaObservation::single("reserved", Pfn(0x7e000), Pages(64), 0, bitmap)
    }

    #[test]
    fn free_runs_counts_holes_and_the_longest_one() {
        // Bits 0-3 used, 4-7 free, 8 used, 9-63 free.
        let a = area(vec![0b1_0000_1111, 0]);
        assert_eq!(free_runs(&a), (2, 55));
        assert_eq!(free_runs(&area(vec![u32::MAX, u32::MAX])), (0, 0));
    }

    #[test]
    fn occupancy_tells_front_from_back() {
        let front = area(vec![0xf, 0]);
        let back = area(vec![0, 0xf000_0000]);
        assert_ne!(occupancy(&front), occupancy(&back));
        assert_eq!(occupancy(&area(vec![0, 0])), 0);
    }

    #[test]
    fn placement_tells_ranges_and_whole_bits() {
        let mut a = AreaObservation::single("hugetlb0", Pfn(0x1000), Pages(4096), 9, vec![0; 8]);
        assert_eq!(placement(&a, 0x1000, 512), Some((0, true, true)));
        assert_eq!(placement(&a, 0x1001, 513), Some((0, false, false)));
        assert_eq!(placement(&a, 0x3000, 1), None);
        a.ranges.push(reference_impl::observation::RangeObservation {
            base_pfn: Pfn(0x8000),
            count: Pages(1024),
            bitmap: vec![0; 2],
        });
        assert_eq!(placement(&a, 0x8200, 512), Some((1, true, true)));
    }

    #[test]
    fn the_model_map_has_three_count_classes() {
        let mut map = vec![0u8; 8];
        let mut set = fill_model(&mut map, &[1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
        assert_eq!(&map[1..4], &[1, 2, 3]);
        set.sort_unstable();
        assert_eq!(set, vec![1, 2, 3], "the entries set are returned");
    }

    #[test]
    fn fill_buckets_counts_and_stays_in_the_map() {
        let mut map = vec![0u8; 8];
        fill(&mut map, &[1, 9, 9, 3, 3, 3, 3, 3]);
        assert_eq!(map[1], 3, "1, 9 and 9 are three hits on entry 1");
        assert_eq!(map[3], 4, "five hits are the 4-7 bucket");
        assert_eq!(map.iter().filter(|x| **x != 0).count(), 2);
    }
}
