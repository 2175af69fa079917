//! Compares what the model and the kernel did with one program: per-op
//! outcomes, then the CMA areas and bitmaps at every `observe` and at the
//! end. It judges outputs only and knows nothing of how they were produced.

use crate::backend::ProgramRun;
use reference_impl::observation::{AreaObservation, MapKind, MapLevel, MemType, Observation, PageAddr};
use reference_impl::outcome::Outcome;
use reference_impl::program::{Handle, ResolvedOp, ResolvedProgram};
use reference_impl::units::Pfn;
use serde::Serialize;
use std::collections::BTreeMap;

/// Where a bitmap comparison happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    /// At the `observe` op with this index.
    Observe(usize),
    /// After the last op.
    End,
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Observe(i) => write!(f, "observe #{i}"),
            Point::End => write!(f, "end"),
        }
    }
}

/// One disagreement between the reference (the model) and the subject (a kernel), typed: the
/// oracle builds signatures from these fields, never from their display. The JSON form keeps the
/// names `model` / `kernel` for the two sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Divergence {
    /// An op returned different things.
    Outcome {
        op_index: usize,
        #[serde(rename = "model", serialize_with = "outcome_text")]
        reference: Outcome,
        #[serde(rename = "kernel", serialize_with = "outcome_text")]
        subject: Outcome,
    },
    /// The area lists differ (names, bases, sizes, order_per_bit).
    Areas { at: Point, model: String, kernel: String },
    /// An area's bitmap differs (in any of its ranges; the bit lists name the range when the
    /// area has several).
    Bitmap { at: Point, area: String, model_used: u64, kernel_used: u64, only_model: String, only_kernel: String },
    /// An area's 7.x `available_count` differs while its bitmaps agree or not (both sides report
    /// one; 6.x kernels have none).
    Available { at: Point, area: String, model: u64, kernel: u64 },
    /// An observation exists on one side only.
    MissingObservation { at: Point },
    /// Pages whose mappings (kind and memory type, from the kernel's page tables) differ
    /// between the sides: `pages` in all, in `groups` of consecutive pfns with one disagreement
    /// each (the first [`MAX_GROUPS`] of `group_count`).
    Mapping {
        at: Point,
        pages: u64,
        #[serde(rename = "detail", serialize_with = "groups_text")]
        groups: Vec<MapGroup>,
        #[serde(skip)]
        group_count: usize,
    },
    /// A release op left a different number of its pages still referenced (refcount not 0
    /// right after `cma_release()` returned true, `cf_result.stale_refs`). The model predicts 0:
    /// a released page is free.
    Refcount { op_index: usize, model: u64, kernel: u64 },
    /// The PKMAP slot the kernel assigned last differs from the model's.
    Pkmap { at: Point, model: u32, kernel: u32 },
    /// Pages the model predicts mapped at one descriptor level (7.x arm64: the linear map as
    /// 4 KiB PTEs) that the kernel maps, with the same kind, at another: `pages` in all, the
    /// first at `first_pfn`.
    Level {
        at: Point,
        #[serde(rename = "map_kind")]
        kind: MapKind,
        model: MapLevel,
        kernel: MapLevel,
        pages: u64,
        first_pfn: u64,
    },
}

/// Pfns `[lo, hi)` that the reference maps as `reference` and the subject as `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapGroup {
    pub lo: u64,
    pub hi: u64,
    pub reference: PageMaps,
    pub subject: PageMaps,
}

/// Mapping groups kept (and shown) per divergence.
pub const MAX_GROUPS: usize = 8;

fn outcome_text<S: serde::Serializer>(o: &Outcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&show_outcome(o))
}

fn groups_text<S: serde::Serializer>(g: &[MapGroup], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&show_groups(g, g.len(), ("model", "kernel")))
}

/// `pfns 0x40010-0x40012: model lin:wb, kernel lin:wb+vmap:nc; …`.
fn show_groups(groups: &[MapGroup], count: usize, sides: (&str, &str)) -> String {
    let mut parts: Vec<String> = groups
        .iter()
        .map(|g| {
            let range =
                if g.hi - g.lo == 1 { format!("pfn {:#x}", g.lo) } else { format!("pfns {:#x}-{:#x}", g.lo, g.hi - 1) };
            format!("{range}: {} {}, {} {}", sides.0, show_page_maps(&g.reference), sides.1, show_page_maps(&g.subject))
        })
        .collect();
    if count > groups.len() {
        parts.push(format!("… ({count} groups)"));
    }
    parts.join("; ")
}

impl Divergence {
    /// The divergence in words, naming the two sides `sides` (`("model", "kernel")`, or two
    /// kernels).
    pub fn describe(&self, sides: (&str, &str)) -> String {
        let (a, b) = sides;
        match self {
            Divergence::Outcome { op_index, reference, subject } => {
                format!("op #{op_index}: {a} {}, {b} {}", show_outcome(reference), show_outcome(subject))
            }
            Divergence::Areas { at, model, kernel } => format!("{at}: areas differ: {a} [{model}], {b} [{kernel}]"),
            Divergence::Bitmap { at, area, model_used, kernel_used, only_model, only_kernel } => format!(
                "{at}: area {area} bitmap differs: {a} {model_used} bits used, {b} {kernel_used}; set only in {a}: {only_model}; set only in {b}: {only_kernel}"
            ),
            Divergence::Available { at, area, model, kernel } => {
                format!("{at}: area {area} available_count differs: {a} {model} pages, {b} {kernel}")
            }
            Divergence::MissingObservation { at } => format!("{at}: observation missing on one side"),
            Divergence::Mapping { at, pages, groups, group_count } => {
                format!("{at}: mappings differ on {pages} page(s): {}", show_groups(groups, *group_count, sides))
            }
            Divergence::Refcount { op_index, model, kernel } => format!(
                "op #{op_index}: released pages still referenced after cma_release(): {a} {model}, {b} {kernel}"
            ),
            Divergence::Pkmap { at, model, kernel } => format!("{at}: last PKMAP slot: {a} {model}, {b} {kernel}"),
            Divergence::Level { at, kind, model, kernel, pages, first_pfn } => format!(
                "{at}: {} mapping level differs on {pages} page(s) from pfn {first_pfn:#x}: {a} {}, {b} {}",
                kind.name(),
                model.name(),
                kernel.name()
            ),
        }
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(("model", "kernel")))
    }
}

/// A short human form of an outcome, pfns in hex.
pub fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Allocated { pfn, pages } => format!("pfn {:#x} ({} pages)", pfn.0, pages.0),
        Outcome::AllocatedOutsideCma { pages } => format!("outside CMA ({} pages)", pages.0),
        Outcome::AllocFailed => "failed".into(),
        Outcome::Released => "released".into(),
        Outcome::ReleaseRejected => "rejected".into(),
        Outcome::Noop => "no-op (dead handle)".into(),
        Outcome::Refused => "refused (unsafe)".into(),
        Outcome::Pinned { pfn } => format!("pinned pfn {:#x}", pfn.0),
        Outcome::PinFailed { pfn } => format!("pin of pfn {:#x} failed", pfn.0),
        Outcome::Unpinned { pfn } => format!("unpinned pfn {:#x}", pfn.0),
        Outcome::Kmapped { pfn } => format!("kmapped pfn {:#x}", pfn.0),
        Outcome::Mapped { pages } => format!("mapped for streaming DMA ({} pages)", pages.0),
        Outcome::MapFailed => "streaming map failed".into(),
        Outcome::Observed => "observed".into(),
        Outcome::BadOp => "bad op".into(),
    }
}

fn area_header(a: &AreaObservation) -> String {
    format!("{} {} opb {}", a.name, a.extent_text(), a.order_per_bit)
}

/// [`bits_only_in`] over every range of two areas with the same ranges; `range r:` in front of
/// each range's list when there are several.
fn area_bits_only_in(a: &AreaObservation, b: &AreaObservation) -> String {
    if let ([ra], [rb]) = (a.ranges.as_slice(), b.ranges.as_slice()) {
        return bits_only_in(&ra.bitmap, &rb.bitmap);
    }
    let parts: Vec<String> = a
        .ranges
        .iter()
        .zip(&b.ranges)
        .enumerate()
        .filter(|(_, (ra, rb))| ra.bitmap != rb.bitmap)
        .map(|(r, (ra, rb))| format!("range {r}: {}", bits_only_in(&ra.bitmap, &rb.bitmap)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}

/// Set bits of `a` not set in `b`, as compact ranges `lo-hi` (at most 8).
fn bits_only_in(a: &[u32], b: &[u32]) -> String {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (wi, &w) in a.iter().enumerate() {
        let diff = w & !b.get(wi).copied().unwrap_or(0);
        if diff == 0 {
            continue;
        }
        for bit in 0..32u64 {
            if diff & (1 << bit) != 0 {
                let i = wi as u64 * 32 + bit;
                match ranges.last_mut() {
                    Some((_, hi)) if *hi + 1 == i => *hi = i,
                    _ => ranges.push((i, i)),
                }
            }
        }
    }
    if ranges.is_empty() {
        return "none".into();
    }
    let mut s: Vec<String> =
        ranges.iter().take(8).map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
    if ranges.len() > 8 {
        s.push(format!("… ({} ranges)", ranges.len()));
    }
    format!("bits {}", s.join(","))
}

/// The mappings of one page: (kind, memory type) pairs, sorted, with repeats.
pub type PageMaps = Vec<(MapKind, MemType)>;

/// Start/end events of a mapping table's runs, in pfns: `(pfn, +1 | -1, mapping)`. Model-side
/// `Buffer` addresses become pfns through `handles` (the kernel's first pfn for each handle); a
/// buffer the kernel has no pfn for is left out (its outcome already diverged).
fn events(obs: &Observation, handles: &BTreeMap<Handle, Pfn>) -> Vec<(u64, i32, (MapKind, MemType))> {
    let mut ev = Vec::with_capacity(obs.maps.len() * 2);
    for run in &obs.maps {
        let first = match run.first {
            PageAddr::Pfn(p) => p.0,
            PageAddr::Buffer { handle, index } => match handles.get(&handle) {
                Some(p) => p.0.saturating_add(index),
                None => continue,
            },
        };
        if run.pages == 0 {
            continue;
        }
        ev.push((first, 1, (run.kind, run.mem)));
        ev.push((first.saturating_add(run.pages), -1, (run.kind, run.mem)));
    }
    ev.sort();
    ev
}

/// The multiset as a sorted list with repeats.
fn flatten(m: &BTreeMap<(MapKind, MemType), i64>) -> PageMaps {
    let mut v = PageMaps::new();
    for (k, n) in m {
        for _ in 0..*n {
            v.push(*k);
        }
    }
    v
}

/// Segments `[lo, hi)` of pfns over which the two tables map differently, with each side's
/// mapping set: a sweep over run boundaries, so a 1 GiB area costs as much as one page.
pub fn map_differences(
    model: &Observation,
    kernel: &Observation,
    handles: &BTreeMap<Handle, Pfn>,
) -> Vec<(u64, u64, PageMaps, PageMaps)> {
    let me = events(model, handles);
    let ke = events(kernel, &BTreeMap::new());
    let mut all: Vec<(u64, i32, (MapKind, MemType), bool)> = me.iter().map(|&(p, d, k)| (p, d, k, true)).collect();
    all.extend(ke.iter().map(|&(p, d, k)| (p, d, k, false)));
    all.sort();
    let mut mset: BTreeMap<(MapKind, MemType), i64> = BTreeMap::new();
    let mut kset: BTreeMap<(MapKind, MemType), i64> = BTreeMap::new();
    let mut out: Vec<(u64, u64, PageMaps, PageMaps)> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let pos = all[i].0;
        while i < all.len() && all[i].0 == pos {
            let (_, d, k, is_model) = all[i];
            let set = if is_model { &mut mset } else { &mut kset };
            let n = set.entry(k).or_default();
            *n += i64::from(d);
            if *n == 0 {
                set.remove(&k);
            }
            i += 1;
        }
        let Some(next) = all.get(i).map(|e| e.0) else { break };
        if mset != kset {
            let (ms, ks) = (flatten(&mset), flatten(&kset));
            match out.last_mut() {
                Some((_, hi, lm, lk)) if *hi == pos && *lm == ms && *lk == ks => *hi = next,
                _ => out.push((pos, next, ms, ks)),
            }
        }
    }
    out
}

/// `lin:wb+vmap:nc`, or `none`.
pub fn show_page_maps(m: &[(MapKind, MemType)]) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, t)| format!("{}:{}", k.name(), t.name())).collect::<Vec<_>>().join("+")
}

/// The kernel's first pfn for every handle the program defines.
pub fn kernel_handles(prog: &ResolvedProgram, kernel: &ProgramRun) -> BTreeMap<Handle, Pfn> {
    handle_pfns(prog, &kernel.outcomes)
}

/// Handle -> first pfn, from one side's outcomes of the program's allocations.
pub fn handle_pfns(prog: &ResolvedProgram, outcomes: &[Outcome]) -> BTreeMap<Handle, Pfn> {
    let mut out = BTreeMap::new();
    for (op, o) in prog.ops.iter().zip(outcomes) {
        let h = match op {
            ResolvedOp::CmaAlloc { h, .. } | ResolvedOp::DmaAlloc { h, .. } => *h,
            _ => continue,
        };
        if let Outcome::Allocated { pfn, .. } = o {
            out.insert(h, *pfn);
        }
    }
    out
}

/// Compares the mapping tables page by page: every page either side maps must carry the same
/// (kind, memory type) set on both. Differences are grouped into runs of consecutive pfns with
/// the same disagreement (at most 8 shown).
pub fn compare_maps(
    at: Point,
    model: &Observation,
    kernel: &Observation,
    handles: &BTreeMap<Handle, Pfn>,
    out: &mut Vec<Divergence>,
) {
    if kernel.maps_truncated {
        // Cannot judge half a table; the kernel said so.
        return;
    }
    let diffs = map_differences(model, kernel, handles);
    let total: u64 = diffs.iter().map(|(lo, hi, _, _)| hi - lo).sum();
    if total > 0 {
        let group_count = diffs.len();
        let groups = diffs
            .into_iter()
            .take(MAX_GROUPS)
            .map(|(lo, hi, reference, subject)| MapGroup { lo, hi, reference, subject })
            .collect();
        out.push(Divergence::Mapping { at, pages: total, groups, group_count });
    }
    compare_levels(at, model, kernel, handles, out);
    if let (Some(mp), Some(kp)) = (model.pkmap_last, kernel.pkmap_last) {
        if mp != kp {
            out.push(Divergence::Pkmap { at, model: mp, kernel: kp });
        }
    }
}

/// Where the model predicts a level (`MapRun::level`), the kernel's runs of the same kind over
/// those pages must have it; one divergence per (kind, model level, kernel level).
fn compare_levels(
    at: Point,
    model: &Observation,
    kernel: &Observation,
    handles: &BTreeMap<Handle, Pfn>,
    out: &mut Vec<Divergence>,
) {
    let kernel_runs: Vec<(MapKind, u64, u64, MapLevel)> = kernel
        .maps
        .iter()
        .filter_map(|r| match (r.first, r.level) {
            (PageAddr::Pfn(p), Some(l)) => Some((r.kind, p.0, p.0.saturating_add(r.pages), l)),
            _ => None,
        })
        .collect();
    let mut found: BTreeMap<(MapKind, MapLevel, MapLevel), (u64, u64)> = BTreeMap::new();
    for run in &model.maps {
        let Some(want) = run.level else { continue };
        let first = match run.first {
            PageAddr::Pfn(p) => p.0,
            PageAddr::Buffer { handle, index } => match handles.get(&handle) {
                Some(p) => p.0.saturating_add(index),
                None => continue,
            },
        };
        let end = first.saturating_add(run.pages);
        for &(kind, ks, ke, got) in &kernel_runs {
            let (lo, hi) = (ks.max(first), ke.min(end));
            if kind != run.kind || got == want || lo >= hi {
                continue;
            }
            let e = found.entry((kind, want, got)).or_insert((0, lo));
            e.0 += hi - lo;
            e.1 = e.1.min(lo);
        }
    }
    for ((kind, model, kernel), (pages, first_pfn)) in found {
        out.push(Divergence::Level { at, kind, model, kernel, pages, first_pfn });
    }
}

/// Compares two observations.
pub fn compare_observations(at: Point, model: &Observation, kernel: &Observation, out: &mut Vec<Divergence>) {
    let mh: Vec<String> = model.areas.iter().map(area_header).collect();
    let kh: Vec<String> = kernel.areas.iter().map(area_header).collect();
    if mh != kh {
        out.push(Divergence::Areas { at, model: mh.join("; "), kernel: kh.join("; ") });
        return;
    }
    for (m, k) in model.areas.iter().zip(&kernel.areas) {
        if m.ranges.iter().zip(&k.ranges).any(|(rm, rk)| rm.bitmap != rk.bitmap) {
            out.push(Divergence::Bitmap {
                at,
                area: m.name.clone(),
                model_used: m.used_bits(),
                kernel_used: k.used_bits(),
                only_model: area_bits_only_in(m, k),
                only_kernel: area_bits_only_in(k, m),
            });
        }
        if let (Some(ma), Some(ka)) = (m.available, k.available) {
            if ma != ka {
                out.push(Divergence::Available { at, area: m.name.clone(), model: ma.0, kernel: ka.0 });
            }
        }
    }
}

/// Every divergence between a model run and a kernel run of one program.
/// `areas` is the kernel's area list, against which "outside CMA" is judged.
pub fn compare(
    prog: &ResolvedProgram,
    model: &ProgramRun,
    kernel: &ProgramRun,
    areas: &[AreaObservation],
) -> Vec<Divergence> {
    let mut out = Vec::new();
    let handles = kernel_handles(prog, kernel);
    for (i, (m, k)) in model.outcomes.iter().zip(&kernel.outcomes).enumerate() {
        if !m.agrees_with(k, areas) {
            out.push(Divergence::Outcome { op_index: i, reference: m.clone(), subject: k.clone() });
        }
    }
    // Stale references after a release: a side without driver replies (the model) has none.
    let stale = |run: &ProgramRun, i: usize| run.raw.get(i).copied().flatten().map_or(0, |r| r.stale_refs);
    for i in 0..model.raw.len().max(kernel.raw.len()) {
        let (m, k) = (stale(model, i), stale(kernel, i));
        if m != k {
            out.push(Divergence::Refcount { op_index: i, model: m, kernel: k });
        }
    }
    let mut k_obs = kernel.observations.iter();
    for (mi, mo) in &model.observations {
        match k_obs.next() {
            Some((ki, ko)) if ki == mi => {
                compare_observations(Point::Observe(*mi), mo, ko, &mut out);
                compare_maps(Point::Observe(*mi), mo, ko, &handles, &mut out);
            }
            _ => out.push(Divergence::MissingObservation { at: Point::Observe(*mi) }),
        }
    }
    if k_obs.next().is_some() {
        out.push(Divergence::MissingObservation { at: Point::End });
    }
    compare_observations(Point::End, &model.end, &kernel.end, &mut out);
    compare_maps(Point::End, &model.end, &kernel.end, &handles, &mut out);
    out
}

/// Same areas, ranges, bitmaps and `available_count` (CmaFree is not part of the layout).
pub fn same_layout(a: &Observation, b: &Observation) -> bool {
    a.areas == b.areas
}

/// How the kernel's state after a reset differs from the expected one: the areas' bitmaps, and
/// the mapping of every page the tables cover (a page a buggy free left uncached stays so
/// through the driver's reset, and every later program would diverge on it). `None`: the same.
pub fn state_difference(want: &Observation, now: &Observation) -> Option<String> {
    for (x, y) in want.areas.iter().zip(&now.areas) {
        if x != y {
            return Some(format!("area {}: {} bits used expected, {} now", x.name, x.used_bits(), y.used_bits()));
        }
    }
    if want.areas.len() != now.areas.len() {
        return Some(format!("{} areas expected, {} now", want.areas.len(), now.areas.len()));
    }
    if now.maps_truncated {
        return None;
    }
    let diffs = map_differences(want, now, &std::collections::BTreeMap::new());
    diffs.first().map(|(lo, hi, w, n)| {
        format!("pfns {lo:#x}-{:#x}: {} expected, {} now", hi - 1, show_page_maps(w), show_page_maps(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::units::{Pages, Pfn};

    fn area(words: Vec<u32>) -> AreaObservation {
        AreaObservation::single("reserved", Pfn(0x7e000), Pages(words.len() as u64 * 32), 0, words)
    }

    fn run(outcomes: Vec<Outcome>, end: Vec<u32>) -> ProgramRun {
        ProgramRun {
            raw: vec![None; outcomes.len()],
            outcomes,
            observations: vec![],
            end: Observation { areas: vec![area(end)], cma_free: None, ..Default::default() },
            coverage: vec![],
        }
    }

    #[test]
    fn identical_runs_have_no_divergence() {
        let a = run(vec![Outcome::Allocated { pfn: Pfn(0x7e040), pages: Pages(3) }], vec![u32::MAX, 7]);
        let areas = a.end.areas.clone();
        assert!(compare(&ResolvedProgram::default(), &a, &a.clone(), &areas).is_empty());
    }

    #[test]
    fn a_different_pfn_is_an_outcome_divergence_naming_the_op() {
        let m = run(vec![Outcome::Released, Outcome::Allocated { pfn: Pfn(0x7e040), pages: Pages(1) }], vec![0, 1]);
        let k = run(vec![Outcome::Released, Outcome::Allocated { pfn: Pfn(0x7e041), pages: Pages(1) }], vec![0, 1]);
        let d = compare(&ResolvedProgram::default(), &m, &k, &m.end.areas);
        assert_eq!(d.len(), 1);
        assert!(matches!(d[0], Divergence::Outcome { op_index: 1, .. }));
    }

    #[test]
    fn released_pages_left_referenced_are_a_refcount_divergence_at_the_release() {
        use crate::backend::DriverReply;
        let reply = |stale_refs| DriverReply { status: 0, kind: 2, pfn: 0x7e040, pages: 3, aux: 0, stale_refs };
        let m = run(vec![Outcome::Allocated { pfn: Pfn(0x7e040), pages: Pages(3) }, Outcome::Released], vec![0]);
        let mut k = m.clone();
        k.raw = vec![None, Some(reply(0))];
        assert!(compare(&ResolvedProgram::default(), &m, &k, &m.end.areas).is_empty(), "0 stale refs agree");
        k.raw = vec![None, Some(reply(3))];
        let d = compare(&ResolvedProgram::default(), &m, &k, &m.end.areas);
        assert_eq!(d, vec![Divergence::Refcount { op_index: 1, model: 0, kernel: 3 }]);
        assert!(d[0].to_string().contains("model 0, kernel 3"), "{}", d[0]);
    }

    fn two_ranges(r1: Vec<u32>, available: u64) -> AreaObservation {
        use reference_impl::observation::RangeObservation;
        AreaObservation {
            name: "hugetlb0".into(),
            order_per_bit: 0,
            count: Pages(64),
            available: Some(Pages(available)),
            activated: true,
            ranges: vec![
                RangeObservation { base_pfn: Pfn(0x1000), count: Pages(32), bitmap: vec![1] },
                RangeObservation { base_pfn: Pfn(0x2000), count: Pages(32), bitmap: r1 },
            ],
        }
    }

    #[test]
    fn bitmap_divergence_in_a_second_range_names_the_range() {
        let (m, k) = (two_ranges(vec![0b10], 62), two_ranges(vec![0b100], 62));
        let mut out = Vec::new();
        let obs = |a| Observation { areas: vec![a], ..Default::default() };
        compare_observations(Point::End, &obs(m), &obs(k), &mut out);
        assert_eq!(out.len(), 1);
        let text = out[0].to_string();
        assert!(
            text.contains("set only in model: range 1: bits 1") && text.contains("in kernel: range 1: bits 2"),
            "{text}"
        );
    }

    #[test]
    fn available_count_is_compared_when_both_sides_report_it() {
        let mut out = Vec::new();
        let obs = |a| Observation { areas: vec![a], ..Default::default() };
        compare_observations(Point::End, &obs(two_ranges(vec![0], 63)), &obs(two_ranges(vec![0], 62)), &mut out);
        assert_eq!(out, vec![Divergence::Available { at: Point::End, area: "hugetlb0".into(), model: 63, kernel: 62 }]);
        let mut none = two_ranges(vec![0], 62);
        none.available = None;
        out.clear();
        compare_observations(Point::End, &obs(none), &obs(two_ranges(vec![0], 63)), &mut out);
        assert!(out.is_empty(), "a side without available_count (6.x) is not judged on it");
    }

    #[test]
    fn bitmap_divergence_reports_the_bits_on_each_side() {
        let m = run(vec![], vec![0b0111, 0]);
        let k = run(vec![], vec![0b1110, 0]);
        let d = compare(&ResolvedProgram::default(), &m, &k, &m.end.areas);
        let text = d[0].to_string();
        assert!(text.contains("set only in model: bits 0") && text.contains("set only in kernel: bits 3"), "{text}");
    }

    fn maps(runs: &[(u64, u64, MapKind, MemType)]) -> Observation {
        Observation {
            maps: runs
                .iter()
                .map(|&(pfn, pages, kind, mem)| reference_impl::observation::MapRun {
                    kind,
                    first: PageAddr::Pfn(Pfn(pfn)),
                    pages,
                    mem,
                    va: None,
                    level: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn mapping_differences_are_found_page_exactly_whatever_the_run_split() {
        use MapKind::*;
        use MemType::*;
        // The same 1 GiB of LIN Wb, split differently, plus a vmap on 3 pages in the kernel only.
        let m = maps(&[(0x40000, 1 << 18, Lin, Wb)]);
        let k = maps(&[(0x40000, 512, Lin, Wb), (0x40200, (1 << 18) - 512, Lin, Wb), (0x40010, 3, Vmap, Nc)]);
        let d = map_differences(&m, &k, &BTreeMap::new());
        assert_eq!(d, vec![(0x40010, 0x40013, vec![(Lin, Wb)], vec![(Lin, Wb), (Vmap, Nc)])]);
        assert!(map_differences(&m, &m.clone(), &BTreeMap::new()).is_empty());
        let mut out = Vec::new();
        compare_maps(Point::End, &m, &k, &BTreeMap::new(), &mut out);
        assert_eq!(out.len(), 1);
        let text = out[0].to_string();
        assert!(
            text.contains("3 page(s)") && text.contains("pfns 0x40010-0x40012: model lin:wb, kernel lin:wb+vmap:nc"),
            "{text}"
        );
    }

    #[test]
    fn a_predicted_pte_level_diverges_from_kernel_blocks_and_not_without_a_prediction() {
        use reference_impl::observation::MapRun;
        let run = |pfn, pages, level| MapRun {
            kind: MapKind::Lin,
            first: PageAddr::Pfn(Pfn(pfn)),
            pages,
            mem: MemType::Wb,
            va: None,
            level,
        };
        let m = Observation { maps: vec![run(0x7dc00, 8192, Some(MapLevel::Pte))], ..Default::default() };
        let k = Observation {
            maps: vec![run(0x7dc00, 512, Some(MapLevel::Pte)), run(0x7de00, 7680, Some(MapLevel::Pmd))],
            ..Default::default()
        };
        let mut out = Vec::new();
        compare_maps(Point::End, &m, &k, &BTreeMap::new(), &mut out);
        assert_eq!(
            out,
            vec![Divergence::Level {
                at: Point::End,
                kind: MapKind::Lin,
                model: MapLevel::Pte,
                kernel: MapLevel::Pmd,
                pages: 7680,
                first_pfn: 0x7de00
            }]
        );
        let m6 = Observation { maps: vec![run(0x7dc00, 8192, None)], ..Default::default() };
        out.clear();
        compare_maps(Point::End, &m6, &k, &BTreeMap::new(), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn model_buffer_addresses_resolve_through_the_kernels_pfn_for_the_handle() {
        use reference_impl::observation::MapRun;
        let mut m = maps(&[]);
        m.maps.push(MapRun {
            kind: MapKind::Vmap,
            first: PageAddr::Buffer { handle: Handle(2), index: 0 },
            pages: 2,
            mem: MemType::Nc,
            va: None,
            level: None,
        });
        let k = maps(&[(0x50000, 2, MapKind::Vmap, MemType::Nc)]);
        let handles: BTreeMap<Handle, Pfn> = [(Handle(2), Pfn(0x50000))].into_iter().collect();
        assert!(map_differences(&m, &k, &handles).is_empty());
        // At another pfn it is a difference on both places.
        let handles: BTreeMap<Handle, Pfn> = [(Handle(2), Pfn(0x50001))].into_iter().collect();
        assert_eq!(map_differences(&m, &k, &handles).len(), 2);
    }

    #[test]
    fn outside_cma_prediction_rejects_a_pfn_inside_an_area() {
        let m = run(vec![Outcome::AllocatedOutsideCma { pages: Pages(1) }], vec![0, 0]);
        let inside = run(vec![Outcome::Allocated { pfn: Pfn(0x7e010), pages: Pages(1) }], vec![0, 0]);
        let outside = run(vec![Outcome::Allocated { pfn: Pfn(0x40100), pages: Pages(1) }], vec![0, 0]);
        assert_eq!(compare(&ResolvedProgram::default(), &m, &inside, &m.end.areas).len(), 1);
        assert!(compare(&ResolvedProgram::default(), &m, &outside, &m.end.areas).is_empty());
    }
}
