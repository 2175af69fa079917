//! The alias invariant: a page must not be mapped cacheable and non-cacheable at the same time
//! (ARM ARM "mismatched memory attributes"; spec §5.1, §5.7, §6.3), except where the kernel keeps
//! the cacheable linear alias by design.
//!
//! [`scan`] is a pure function of a mapping table and the [`AliasRules`]: the harness runs it on
//! the kernel's table as well as on the model's, so it must not depend on anything else.

use crate::observation::{AreaObservation, MapKind, MapRun, MemType, PageAddr};
use crate::profile::{Arch, KernelProfile};
use crate::program::Handle;
use crate::units::{Pages, Pfn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A cacheable + non-cacheable combination the kernel creates on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AliasRule {
    /// arm64: `LIN WB` + `VMAP NC` on any page. `dma_direct_alloc()` (Linux 6.1
    /// `kernel/dma/direct.c:264-308`) and the atomic pools (`atomic_pool_expand()`,
    /// `kernel/dma/pool.c:79-143`) remap with `dma_common_contiguous_remap()` and leave the linear
    /// map `MT_NORMAL`; `arch_dma_prep_coherent()` only cleans the caches (spec §6.2, §6.3).
    #[serde(rename = "arm64-linear-alias")]
    Arm64LinearAlias,
    /// arm32: `LIN WB` + `VMAP NC` on a page outside every CMA area. `__alloc_remap_buffer()`
    /// (Linux 6.1 `arch/arm/mm/dma-mapping.c:326-351`, path R) and the atomic pool without CMA
    /// (`atomic_pool_init()`, `:200-249`) `vmap()` buddy pages NC and keep their linear section
    /// mapping (spec §5.5 R and P).
    #[serde(rename = "arm32-remap-linear-alias")]
    Arm32RemapLinearAlias,
}

impl AliasRule {
    /// Stable name, used in reports and finding signatures.
    pub fn name(self) -> &'static str {
        match self {
            AliasRule::Arm64LinearAlias => "arm64-linear-alias",
            AliasRule::Arm32RemapLinearAlias => "arm32-remap-linear-alias",
        }
    }

    /// One sentence saying why the kernel does this.
    pub fn description(self) -> &'static str {
        match self {
            AliasRule::Arm64LinearAlias => {
                "arm64 keeps the cacheable linear map of coherent buffers and atomic pools: \
                 dma_direct_alloc()/atomic_pool_expand() add an NC vmap and only clean the \
                 linear alias (arch_dma_prep_coherent)"
            }
            AliasRule::Arm32RemapLinearAlias => {
                "arm32 __alloc_remap_buffer() and the atomic pool without CMA vmap buddy pages NC \
                 and keep their cacheable linear section mapping"
            }
        }
    }
}

/// Whether an alias is a bug or accepted by design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasClass {
    /// Not explained by any rule: the page can be read stale or corrupted through one mapping.
    Violation,
    /// Explained by a rule.
    ByDesign(AliasRule),
}

/// Consecutive pages mapped both cacheable and non-cacheable, with the same set of mappings and
/// the same class.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Alias {
    /// First page.
    pub first: PageAddr,
    /// Pages (>= 1).
    pub pages: u64,
    /// Every distinct (kind, memory type) mapping these pages, sorted.
    pub mappings: Vec<(MapKind, MemType)>,
    /// Bug or by design.
    pub class: AliasClass,
}

/// What [`scan`] needs to know about the kernel: its architecture and where the CMA areas are.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AliasRules {
    /// The architecture.
    pub arch: Arch,
    /// `[base_pfn, base_pfn + count)` of every enabled area, sorted.
    pub cma: Vec<(Pfn, Pages)>,
}

impl AliasRules {
    /// Rules for `arch` with the CMA areas of an observation (`cma_areas[]`, spec §7.2).
    pub fn new(arch: Arch, areas: &[AreaObservation]) -> AliasRules {
        let mut cma: Vec<(Pfn, Pages)> = areas.iter().flat_map(AreaObservation::pfn_ranges).collect();
        cma.sort();
        AliasRules { arch, cma }
    }

    /// [`AliasRules::new`] with the profile's architecture.
    pub fn from_profile(profile: &KernelProfile, areas: &[AreaObservation]) -> AliasRules {
        AliasRules::new(profile.arch, areas)
    }

    fn in_cma(&self, pfn: u64) -> bool {
        self.cma.iter().any(|(b, n)| pfn >= b.0 && pfn - b.0 < n.0)
    }

    /// The class of a conflicting mapping set on pages that are (or are not) CMA pages.
    fn classify(&self, set: &[(MapKind, MemType)], cma: bool) -> AliasClass {
        let linear_alias = set == [(MapKind::Lin, MemType::Wb), (MapKind::Vmap, MemType::Nc)];
        match self.arch {
            Arch::Arm64 if linear_alias => AliasClass::ByDesign(AliasRule::Arm64LinearAlias),
            Arch::Arm32 | Arch::Arm32Lpae if linear_alias && !cma => {
                AliasClass::ByDesign(AliasRule::Arm32RemapLinearAlias)
            }
            _ => AliasClass::Violation,
        }
    }
}

/// A coordinate space of pages: physical pages, or the pages of one buffer of unknown pfn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Space {
    Phys,
    Buffer(Handle),
}

impl Space {
    fn addr(self, at: u64) -> PageAddr {
        match self {
            Space::Phys => PageAddr::Pfn(Pfn(at)),
            Space::Buffer(handle) => PageAddr::Buffer { handle, index: at },
        }
    }
}

/// A sweep event: at page `.0`, mapping `.2` starts (`.1 = 1`) or ends (`.1 = -1`).
type Event = (u64, i8, (MapKind, MemType));

/// Every range of pages with live mappings of conflicting cacheability (some mapping
/// [`MemType::cacheable`], some not), classified by `rules`, sorted by first page. Runs may
/// overlap and come in any order; the cost depends on the number of runs, not on their length.
pub fn scan(maps: &[MapRun], rules: &AliasRules) -> Vec<Alias> {
    // Sweep events per space: +1/-1 of a mapping at a page coordinate.
    let mut events: BTreeMap<Space, Vec<Event>> = BTreeMap::new();
    for r in maps {
        if r.pages == 0 {
            continue;
        }
        let (space, start) = match r.first {
            PageAddr::Pfn(p) => (Space::Phys, p.0),
            PageAddr::Buffer { handle, index } => (Space::Buffer(handle), index),
        };
        let end = start.saturating_add(r.pages);
        let ev = events.entry(space).or_default();
        ev.push((start, 1, (r.kind, r.mem)));
        ev.push((end, -1, (r.kind, r.mem)));
    }
    let mut out: Vec<Alias> = Vec::new();
    for (space, mut ev) in events {
        ev.sort_by_key(|e| e.0);
        // Area edges cut ranges too: the arm32 rule depends on CMA membership.
        let mut cuts: Vec<u64> = ev.iter().map(|e| e.0).collect();
        if space == Space::Phys {
            for (b, n) in &rules.cma {
                cuts.push(b.0);
                cuts.push(b.0.saturating_add(n.0));
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut live: BTreeMap<(MapKind, MemType), u64> = BTreeMap::new();
        let mut next = 0;
        for w in cuts.windows(2) {
            let (at, until) = (w[0], w[1]);
            while let Some(&(pos, delta, key)) = ev.get(next) {
                if pos > at {
                    break;
                }
                let n = live.entry(key).or_insert(0);
                if delta > 0 {
                    *n += 1;
                } else {
                    *n = n.saturating_sub(1);
                }
                if *n == 0 {
                    live.remove(&key);
                }
                next += 1;
            }
            let set: Vec<(MapKind, MemType)> = live.keys().copied().collect();
            let cacheable = set.iter().any(|(_, m)| m.cacheable());
            let uncached = set.iter().any(|(_, m)| !m.cacheable());
            if !(cacheable && uncached) {
                continue;
            }
            let cma = match space {
                Space::Phys => rules.in_cma(at),
                Space::Buffer(_) => false,
            };
            let class = rules.classify(&set, cma);
            let first = space.addr(at);
            if let Some(last) = out.last_mut() {
                if last.class == class && last.mappings == set && follows(last, first) {
                    last.pages += until - at;
                    continue;
                }
            }
            out.push(Alias { first, pages: until - at, mappings: set, class });
        }
    }
    out
}

fn follows(a: &Alias, next: PageAddr) -> bool {
    match (a.first, next) {
        (PageAddr::Pfn(x), PageAddr::Pfn(y)) => x.0.checked_add(a.pages) == Some(y.0),
        (PageAddr::Buffer { handle: h1, index: i1 }, PageAddr::Buffer { handle: h2, index: i2 }) => {
            h1 == h2 && i1.checked_add(a.pages) == Some(i2)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(arch: Arch) -> AliasRules {
        AliasRules { arch, cma: vec![(Pfn(0x7e000), Pages(8192))] }
    }

    fn run(kind: MapKind, pfn: u64, pages: u64, mem: MemType) -> MapRun {
        MapRun { kind, first: PageAddr::Pfn(Pfn(pfn)), pages, mem, va: None, level: None }
    }

    #[test]
    fn pkmap_wb_plus_vmap_nc_on_a_cma_page_is_a_violation() {
        // spec §5.6: kmap_high() left a slot, then __alloc_from_contiguous() vmapped the page NC.
        let t = [run(MapKind::Vmap, 0x7e040, 1, MemType::Nc), run(MapKind::Pkmap, 0x7e040, 1, MemType::Wb)];
        let a = scan(&t, &rules(Arch::Arm32));
        assert_eq!(
            a,
            vec![Alias {
                first: PageAddr::Pfn(Pfn(0x7e040)),
                pages: 1,
                mappings: vec![(MapKind::Vmap, MemType::Nc), (MapKind::Pkmap, MemType::Wb)],
                class: AliasClass::Violation,
            }]
        );
    }

    #[test]
    fn arm32_remap_allocator_linear_alias_is_by_design_outside_cma_only() {
        // __alloc_remap_buffer(): buddy pages keep LIN WB and get VMAP NC. The same pair on a CMA
        // page (a __dma_remap that failed on a section, spec §5.4) is a violation.
        let t = [run(MapKind::Lin, 0x7dffe, 4, MemType::Wb), run(MapKind::Vmap, 0x7dffe, 4, MemType::Nc)];
        let a = scan(&t, &rules(Arch::Arm32));
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].first, a[0].pages), (PageAddr::Pfn(Pfn(0x7dffe)), 2));
        assert_eq!(a[0].class, AliasClass::ByDesign(AliasRule::Arm32RemapLinearAlias));
        assert_eq!((a[1].first, a[1].pages), (PageAddr::Pfn(Pfn(0x7e000)), 2));
        assert_eq!(a[1].class, AliasClass::Violation);
    }

    #[test]
    fn arm32_buffer_pages_of_unknown_pfn_are_outside_cma() {
        let first = PageAddr::Buffer { handle: Handle(2), index: 0 };
        let t = [
            MapRun { kind: MapKind::Lin, first, pages: 3, mem: MemType::Wb, va: None, level: None },
            MapRun { kind: MapKind::Vmap, first, pages: 3, mem: MemType::Nc, va: None, level: None },
        ];
        let a = scan(&t, &rules(Arch::Arm32Lpae));
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].first, a[0].pages), (first, 3));
        assert_eq!(a[0].class, AliasClass::ByDesign(AliasRule::Arm32RemapLinearAlias));
    }

    #[test]
    fn arm64_linear_alias_is_by_design_even_on_cma_pages() {
        // dma_direct_alloc() + dma_common_contiguous_remap(): LIN WB block + VMAP NC.
        let t = [run(MapKind::Lin, 0x7c000, 0x4000, MemType::Wb), run(MapKind::Vmap, 0x7e060, 3, MemType::Nc)];
        let a = scan(&t, &rules(Arch::Arm64));
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].first, a[0].pages), (PageAddr::Pfn(Pfn(0x7e060)), 3));
        assert_eq!(a[0].class, AliasClass::ByDesign(AliasRule::Arm64LinearAlias));
        assert_eq!(AliasRule::Arm64LinearAlias.name(), "arm64-linear-alias");
        assert_eq!(serde_json::to_string(&a[0].class).ok().as_deref(), Some(r#"{"by_design":"arm64-linear-alias"}"#));
    }

    #[test]
    fn arm64_extra_mapping_on_top_of_the_linear_alias_is_a_violation() {
        let t = [
            run(MapKind::Lin, 0x7e000, 8, MemType::Wb),
            run(MapKind::Vmap, 0x7e000, 8, MemType::Nc),
            run(MapKind::Vmap, 0x7e004, 1, MemType::Wb),
        ];
        let a = scan(&t, &rules(Arch::Arm64));
        let classes: Vec<_> = a.iter().map(|x| (x.first, x.pages, x.class)).collect();
        assert_eq!(
            classes,
            vec![
                (PageAddr::Pfn(Pfn(0x7e000)), 4, AliasClass::ByDesign(AliasRule::Arm64LinearAlias)),
                (PageAddr::Pfn(Pfn(0x7e004)), 1, AliasClass::Violation),
                (PageAddr::Pfn(Pfn(0x7e005)), 3, AliasClass::ByDesign(AliasRule::Arm64LinearAlias)),
            ]
        );
    }

    #[test]
    fn same_type_or_all_uncached_mappings_are_no_alias() {
        // Path C on lowmem: only LIN NC; a pool page with LIN NC and a second NC vmap; two WB maps.
        let t = [
            run(MapKind::Lin, 0x68040, 3, MemType::Nc),
            run(MapKind::Lin, 0x68000, 64, MemType::Nc),
            run(MapKind::Vmap, 0x68000, 64, MemType::So),
            run(MapKind::Lin, 0x7e100, 1, MemType::Wb),
            run(MapKind::Pkmap, 0x7e100, 1, MemType::Wb),
        ];
        assert_eq!(scan(&t, &rules(Arch::Arm32)), vec![]);
    }

    #[test]
    fn huge_runs_cost_nothing_and_do_not_overflow() {
        let t = [run(MapKind::Lin, u64::MAX - 5, u64::MAX, MemType::Wb), run(MapKind::Vmap, 0, u64::MAX, MemType::Nc)];
        let a = scan(&t, &rules(Arch::Arm32));
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].first, a[0].pages), (PageAddr::Pfn(Pfn(u64::MAX - 5)), 5));
    }
}
