//! Compares what the model and the kernel did with one program: per-op
//! outcomes, then the CMA areas and bitmaps at every `observe` and at the
//! end. It judges outputs only and knows nothing of how they were produced.

use crate::backend::ProgramRun;
use reference_impl::observation::{AreaObservation, MapKind, MemType, Observation, PageAddr};
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

/// One disagreement between the model and the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Divergence {
    /// An op returned different things.
    Outcome { op_index: usize, model: String, kernel: String },
    /// The area lists differ (names, bases, sizes, order_per_bit).
    Areas { at: Point, model: String, kernel: String },
    /// An area's bitmap differs.
    Bitmap { at: Point, area: String, model_used: u64, kernel_used: u64, only_model: String, only_kernel: String },
    /// An observation exists on one side only.
    MissingObservation { at: Point },
    /// Pages whose kernel mappings (kind and memory type, from the kernel's page tables) differ
    /// from the model's.
    Mapping { at: Point, pages: u64, detail: String },
    /// The PKMAP slot the kernel assigned last differs from the model's.
    Pkmap { at: Point, model: u32, kernel: u32 },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::Outcome { op_index, model, kernel } => {
                write!(f, "op #{op_index}: model {model}, kernel {kernel}")
            }
            Divergence::Areas { at, model, kernel } => write!(f, "{at}: areas differ: model [{model}], kernel [{kernel}]"),
            Divergence::Bitmap { at, area, model_used, kernel_used, only_model, only_kernel } => write!(
                f,
                "{at}: area {area} bitmap differs: model {model_used} bits used, kernel {kernel_used}; set only in model: {only_model}; set only in kernel: {only_kernel}"
            ),
            Divergence::MissingObservation { at } => write!(f, "{at}: observation missing on one side"),
            Divergence::Mapping { at, pages, detail } => {
                write!(f, "{at}: mappings differ on {pages} page(s): {detail}")
            }
            Divergence::Pkmap { at, model, kernel } => {
                write!(f, "{at}: last PKMAP slot: model {model}, kernel {kernel}")
            }
        }
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
        Outcome::Observed => "observed".into(),
        Outcome::BadOp => "bad op".into(),
    }
}

fn area_header(a: &AreaObservation) -> String {
    format!("{} base {:#x} count {} opb {}", a.name, a.base_pfn.0, a.count.0, a.order_per_bit)
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

/// Expands a mapping table into per-page mapping sets. Model-side `Buffer` addresses become pfns
/// through `handles` (the kernel's first pfn for each handle); a buffer the kernel has no pfn for
/// is left out (its outcome already diverged).
pub fn per_page(obs: &Observation, handles: &BTreeMap<Handle, Pfn>) -> BTreeMap<Pfn, PageMaps> {
    let mut pages: BTreeMap<Pfn, PageMaps> = BTreeMap::new();
    for run in &obs.maps {
        let first = match run.first {
            PageAddr::Pfn(p) => p,
            PageAddr::Buffer { handle, index } => match handles.get(&handle) {
                Some(p) => Pfn(p.0.saturating_add(index)),
                None => continue,
            },
        };
        for i in 0..run.pages {
            pages.entry(Pfn(first.0.saturating_add(i))).or_default().push((run.kind, run.mem));
        }
    }
    for v in pages.values_mut() {
        v.sort();
    }
    pages
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
    let mut out = BTreeMap::new();
    for (op, o) in prog.ops.iter().zip(&kernel.outcomes) {
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
    let m = per_page(model, handles);
    let k = per_page(kernel, &BTreeMap::new());
    let empty = PageMaps::new();
    let mut groups: Vec<(u64, u64, String, String)> = Vec::new();
    let mut total = 0u64;
    let pfns: std::collections::BTreeSet<Pfn> = m.keys().chain(k.keys()).copied().collect();
    for p in pfns {
        let mm = m.get(&p).unwrap_or(&empty);
        let km = k.get(&p).unwrap_or(&empty);
        if mm == km {
            continue;
        }
        total += 1;
        let (ms, ks) = (show_page_maps(mm), show_page_maps(km));
        match groups.last_mut() {
            Some((_, hi, gm, gk)) if *hi + 1 == p.0 && *gm == ms && *gk == ks => *hi = p.0,
            _ => groups.push((p.0, p.0, ms, ks)),
        }
    }
    if total > 0 {
        let mut parts: Vec<String> = groups
            .iter()
            .take(8)
            .map(|(lo, hi, ms, ks)| {
                let range = if lo == hi { format!("pfn {lo:#x}") } else { format!("pfns {lo:#x}-{hi:#x}") };
                format!("{range}: model {ms}, kernel {ks}")
            })
            .collect();
        if groups.len() > 8 {
            parts.push(format!("… ({} groups)", groups.len()));
        }
        out.push(Divergence::Mapping { at, pages: total, detail: parts.join("; ") });
    }
    if let (Some(mp), Some(kp)) = (model.pkmap_last, kernel.pkmap_last) {
        if mp != kp {
            out.push(Divergence::Pkmap { at, model: mp, kernel: kp });
        }
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
        if m.bitmap != k.bitmap {
            out.push(Divergence::Bitmap {
                at,
                area: m.name.clone(),
                model_used: m.used_bits(),
                kernel_used: k.used_bits(),
                only_model: bits_only_in(&m.bitmap, &k.bitmap),
                only_kernel: bits_only_in(&k.bitmap, &m.bitmap),
            });
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
            out.push(Divergence::Outcome { op_index: i, model: show_outcome(m), kernel: show_outcome(k) });
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

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::units::{Pages, Pfn};

    fn area(words: Vec<u32>) -> AreaObservation {
        AreaObservation {
            name: "reserved".into(),
            base_pfn: Pfn(0x7e000),
            count: Pages(words.len() as u64 * 32),
            order_per_bit: 0,
            bitmap: words,
        }
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
    fn bitmap_divergence_reports_the_bits_on_each_side() {
        let m = run(vec![], vec![0b0111, 0]);
        let k = run(vec![], vec![0b1110, 0]);
        let d = compare(&ResolvedProgram::default(), &m, &k, &m.end.areas);
        let text = d[0].to_string();
        assert!(text.contains("set only in model: bits 0") && text.contains("set only in kernel: bits 3"), "{text}");
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
