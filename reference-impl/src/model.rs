//! The reference model: state in, op in, outcome out.
//!
//! It mirrors the kernel functions the in-kernel driver (`qemu/include/cmafuzz_wire.h`) calls,
//! plus the driver's own rules: handle slots, refusing raw releases the kernel would turn into
//! memory corruption (spec §3), and the pinned pages it holds busy (spec §2.5). It also tracks the
//! kernel mappings of the pages of interest (spec §5.5-§5.7, §6.3) and the PKMAP slots
//! (spec §5.6), which [`Model::observe`] reports.

mod dma;

use crate::alias::AliasRules;
use crate::bitmap::{Bitmap, LongWidth};
use crate::cma::CmaArea;
use crate::genpool::{GenPool, PoolAddr};
use crate::maps::{DmaMap, Maps};
use crate::observation::{MemType, Observation};
use crate::outcome::Outcome;
use crate::profile::KernelProfile;
use crate::program::{AreaId, Handle, ResolvedOp, ResolvedProgram, MAX_ALIGN, MAX_HANDLES, MAX_PINS};
use crate::runs::RunSet;
use crate::slots::Slots;
use crate::units::{Order, Pages, Pfn};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::error::ModelError;

/// Facts fixed at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Env {
    profile: KernelProfile,
    /// Index of `dma_contiguous_default_area` in the area table.
    default_area: Option<usize>,
    width: LongWidth,
}

/// The atomic DMA pools: arm32's single `atomic_pool` (`arch/arm/mm/dma-mapping.c:200-249`) or
/// arm64's `atomic_pool_{kernel,dma,dma32}` (`kernel/dma/pool.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PoolId {
    Arm32,
    Kernel,
    Dma,
    Dma32,
}

/// What a live handle holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Holding {
    /// A `cma_alloc` allocation: the page offsets (from the area's `base_pfn`) not yet released.
    Cma { area: usize, held: RunSet },
    /// A `dma_alloc_attrs` buffer of `pages` pages, mapped by its path as `map` says.
    Dma { pages: u64, backing: DmaBacking, map: DmaMap },
}

/// Where a coherent buffer's pages came from, i.e. what `dma_free_attrs` gives back.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DmaBacking {
    /// `cma_alloc` on `area`; freed with `cma_release`.
    Cma { area: usize, pfn: u64 },
    /// The buddy allocator; pfn unknown to the model.
    Buddy,
    /// An atomic pool; freed with `gen_pool_free`.
    Pool { pool: PoolId, addr: PoolAddr },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    areas: Vec<CmaArea>,
    /// Live handles by slot; a slot whose allocation failed or was freed is absent.
    handles: Slots<Holding>,
    /// Pages the driver holds pinned (`pin`): taken out of the buddy allocator by
    /// `alloc_contig_range(pfn, pfn + 1)` with the CMA bitmap untouched, so
    /// `alloc_contig_range()` over them fails with -EBUSY (spec §2.5). At most `MAX_PINS`.
    pinned: BTreeSet<Pfn>,
    pools: BTreeMap<PoolId, GenPool>,
    /// Linear-map / vmalloc state of the CMA pages and the PKMAP slots.
    maps: Maps,
}

/// The model of one booted kernel plus the in-kernel test driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    env: Env,
    boot: State,
    state: State,
}

fn check_profile(p: &KernelProfile) -> Result<(), ModelError> {
    let bad = |field, value: u64, expected| Err(ModelError::Profile { field, value, expected });
    if !(10..=16).contains(&p.page_shift) {
        return bad("page_shift", p.page_shift.into(), "10..=16");
    }
    if p.cma_alignment > MAX_ALIGN {
        return bad("cma_alignment", p.cma_alignment.into(), "0..=31");
    }
    if !(1..=31).contains(&p.max_order) {
        return bad("max_order", p.max_order.into(), "1..=31");
    }
    if !(1..=64).contains(&p.coherent_dma_mask_bits) {
        return bad("coherent_dma_mask_bits", p.coherent_dma_mask_bits.into(), "1..=64");
    }
    if p.atomic_pool_bytes > 1 << 30 {
        return bad("atomic_pool_bytes", p.atomic_pool_bytes, "0..=1 GiB");
    }
    Ok(())
}

impl Model {
    /// Boot: seed the areas and bitmaps from the kernel's boot observation (spec §1.8: the model
    /// must start from the bitmap the kernel reports, which already holds the atomic pools taken
    /// by `atomic_pool_init()` (arm32) / `dma_atomic_pool_init()` (arm64), Linux 6.1 and 6.12),
    /// and rebuild the pools by replaying those boot allocations on empty areas. The mappings
    /// start as the boot code leaves them (free CMA pages `LIN WB` in lowmem, none in highmem;
    /// pool chunks mapped NC for good) with no PKMAP slot in use and `last_pkmap_nr` unknown.
    pub fn new(profile: KernelProfile, boot: &Observation) -> Result<Model, ModelError> {
        check_profile(&profile)?;
        let behaviour = profile.behaviour();
        let areas =
            boot.areas.iter().map(|a| CmaArea::from_observation(a, behaviour)).collect::<Result<Vec<_>, _>>()?;
        let default_area = match &profile.default_area {
            None => None,
            Some(name) => {
                Some(areas.iter().position(|a| &a.name == name).ok_or_else(|| ModelError::DefaultAreaMissing {
                    name: name.clone(),
                    present: areas.iter().map(|a| format!("`{}`", a.name)).collect::<Vec<_>>().join(", "),
                })?)
            }
        };
        let env = Env { width: LongWidth::from_bits(profile.arch.bits_per_long()), profile, default_area };
        let (pools, maps) = dma::boot_pools(&env, &areas)?;
        let state = State { areas, handles: Slots::new(), pinned: BTreeSet::new(), pools, maps };
        Ok(Model { env, boot: state.clone(), state })
    }

    /// The profile the model was built with.
    pub fn profile(&self) -> &KernelProfile {
        &self.env.profile
    }

    /// Run one op as the driver would, calling the model of the kernel function it calls:
    /// `cma_alloc()` / `cma_release()` (Linux 6.1 `mm/cma.c:420-570`), `dma_alloc_attrs()` /
    /// `dma_free_attrs()` (Linux 6.1 `kernel/dma/mapping.c`, with `arch/arm/mm/dma-mapping.c` on
    /// arm32 and `kernel/dma/direct.c` + `kernel/dma/pool.c` on arm64; 6.12 the same).
    pub fn step(&mut self, op: &ResolvedOp) -> Outcome {
        let env = &self.env;
        let st = &mut self.state;
        match op {
            ResolvedOp::CmaAlloc { area, h, count, align } => st.cma_alloc(env, *area, *h, *count, *align),
            ResolvedOp::CmaRelease { h } => st.cma_release(env, *h),
            ResolvedOp::CmaReleaseRaw { area, off, count } => st.cma_release_raw(env, *area, *off, *count),
            ResolvedOp::DmaAlloc { h, size, attrs, gfp } => st.dma_alloc(env, *h, *size, *attrs, *gfp),
            ResolvedOp::DmaFree { h } => st.dma_free(env, *h),
            ResolvedOp::Pin { area, off } => st.pin(*area, *off),
            ResolvedOp::Unpin { area, off } => st.unpin(*area, *off),
            ResolvedOp::Kmap { area, off } => st.kmap(env, *area, *off),
            ResolvedOp::DmaMap { h, .. } => st.dma_map(env, *h),
            ResolvedOp::Observe => Outcome::Observed,
        }
    }

    /// The areas and bitmaps now, as the driver reads them under `cma->lock` (spec §7.2), and
    /// the kernel mappings of the pages of interest as its page-table walk would report them
    /// (spec §7.3): `LIN`/`VMAP`/`PKMAP` runs, merged and sorted by (kind, first page), with `va`
    /// for the linear map (when [`KernelProfile::page_offset`] is known) and PKMAP slots, `level`
    /// `None`. Buffers whose pfn the model cannot predict appear as [`PageAddr::Buffer`] pages.
    /// `cma_free` is `None`: the model does not predict `NR_FREE_CMA_PAGES`. `pkmap_last` is
    /// `last_pkmap_nr` when known (see [`Model::set_pkmap_last`]).
    ///
    /// [`PageAddr::Buffer`]: crate::observation::PageAddr::Buffer
    pub fn observe(&self) -> Observation {
        let st = &self.state;
        Observation {
            areas: st.areas.iter().map(CmaArea::observe).collect(),
            cma_free: None,
            maps: st.maps.table(&self.env.profile, &st.area_ranges(), &st.unknown_buffers()),
            maps_truncated: false,
            pkmap_last: st.maps.pkmap.last,
        }
    }

    /// Tell the model the kernel's `last_pkmap_nr` (`Observation::pkmap_last` of the kernel's
    /// observation), which the driver learns by a probe kmap after `kmap_flush_unused()` at
    /// RESET (spec §5.6). The model starts (at boot and after [`Model::reset`]) not knowing it;
    /// while it does not, a kmap that needs a new slot gets one whose address is unknown. `None`
    /// or a value `>= LAST_PKMAP` means unknown; ignored on kernels without PKMAP.
    pub fn set_pkmap_last(&mut self, last: Option<u32>) {
        self.state.maps.pkmap.set_last(last);
    }

    /// The alias rules for this kernel: its architecture and the CMA areas (spec §5.7, §6.3).
    /// The harness applies [`crate::alias::scan`] with them to either side's mapping table.
    pub fn alias_rules(&self) -> AliasRules {
        AliasRules::new(self.env.profile.arch, &self.observe_areas())
    }

    fn observe_areas(&self) -> Vec<crate::observation::AreaObservation> {
        self.state.areas.iter().map(CmaArea::observe).collect()
    }

    /// The driver's `CF_OP_RESET`: free every live handle (`cma_release()` / `dma_free_attrs()`,
    /// as [`Model::step`] would) and unpin every pinned page (`free_contig_range()`). What the
    /// kernel does not undo stays: arm64 atomic-pool chunks added by `atomic_pool_expand()`
    /// (Linux 6.1 `kernel/dma/pool.c:79-143`) keep their CMA pages for good (spec §6.3). The driver
    /// then runs `kmap_flush_unused()`, clearing every PKMAP slot, and probes `last_pkmap_nr`,
    /// which the model does not know until [`Model::set_pkmap_last`].
    pub fn reset(&mut self) {
        let env = &self.env;
        let st = &mut self.state;
        let live: Vec<(u32, bool)> =
            st.handles.iter().map(|(h, hold)| (*h, matches!(hold, Holding::Cma { .. }))).collect();
        for (h, is_cma) in live {
            if is_cma {
                st.cma_release(env, Handle(h));
            } else {
                st.dma_free(env, Handle(h));
            }
        }
        st.pinned.clear();
        st.maps.pkmap.reset();
    }

    /// Back to the boot state: handles dropped, pins released, bitmaps and pools as at boot —
    /// what a freshly booted kernel has (the harness uses it after rebooting the VM).
    pub fn reset_to_boot(&mut self) {
        self.state = self.boot.clone();
    }

    /// Bookkeeping invariants, for `cmafuzz model-check`: in every area with
    /// `order_per_bit == 0`, the bitmap is exactly the disjoint union of the boot bits that are no
    /// pool's, the pool chunks taken from CMA, and the pages of live `cma_alloc` handles and
    /// CMA-backed DMA buffers; no two of those overlap, and no pinned page is under a set bit.
    /// Mappings are consistent: every CMA page has exactly the mappings its owner gives it (free
    /// pages and `cma_alloc` pages their boot state, pool chunks their permanent pool mapping,
    /// live coherent buffers their path's), nothing outside the areas is tracked, and PKMAP slots
    /// are unique, in range and held by arm32 highmem CMA pages only.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_bitmaps()?;
        self.check_maps()
    }

    /// The mapping state a replay of the current owners on boot mappings gives, against the one
    /// the ops built incrementally.
    fn check_maps(&self) -> Result<(), String> {
        let st = &self.state;
        let env = &self.env;
        let mut expect = Maps::new(&env.profile);
        for (id, pool) in &st.pools {
            for c in pool.chunks() {
                if let Some(base) = c.base_pfn {
                    expect.map_buffer(env.pool_map(*id, base), base, c.pages());
                }
            }
        }
        for (h, hold) in &st.handles {
            if let Holding::Dma { pages, backing, map } = hold {
                let ok = match (backing, map) {
                    (DmaBacking::Cma { pfn, .. }, DmaMap::Lin) => {
                        env.profile.arch.is_arm32() && !env.profile.is_highmem(Pfn(*pfn))
                    }
                    (DmaBacking::Cma { pfn, .. }, DmaMap::Vmap) => {
                        !env.profile.arch.is_arm32() || env.profile.is_highmem(Pfn(*pfn))
                    }
                    (DmaBacking::Cma { .. } | DmaBacking::Buddy, DmaMap::Unchanged) => true,
                    (DmaBacking::Buddy, DmaMap::Vmap) => true,
                    (DmaBacking::Pool { .. }, DmaMap::Pool) => true,
                    _ => false,
                };
                if !ok {
                    return Err(format!("dma handle {h}: {backing:?} cannot have mapping {map:?}"));
                }
                if let DmaBacking::Cma { pfn, .. } = backing {
                    expect.map_buffer(*map, *pfn, *pages);
                }
            }
        }
        let ranges = st.area_ranges();
        for &(s, e) in &ranges {
            let (got, want) = (st.maps.runs(s, e), expect.runs(s, e));
            if got != want {
                let diff = got.iter().zip(&want).find(|(g, w)| g != w).map_or_else(
                    || format!("{} ranges vs {} expected", got.len(), want.len()),
                    |(g, w)| {
                        format!("pfns {:#x}..{:#x} {:?}, expected {:#x}..{:#x} {:?}", g.0, g.1, g.2, w.0, w.1, w.2)
                    },
                );
                return Err(format!("mappings of pfns {s:#x}..{e:#x} differ from what their owners give: {diff}"));
            }
            for (a, b, v) in &got {
                if v.lin == Some(MemType::Nc) && v.vmap.is_some() {
                    return Err(format!("pfns {a:#x}..{b:#x}: NC linear map and a vmap at once"));
                }
            }
        }
        if let Some((s, e)) = st.maps.overrides_outside(&ranges) {
            return Err(format!("mapping state kept for pfns {s:#x}..{e:#x}, outside every CMA area"));
        }
        st.maps.pkmap.check()?;
        for (pfn, slot) in &st.maps.pkmap.slots {
            let in_area = ranges.iter().any(|&(s, e)| s <= pfn.0 && pfn.0 < e);
            if !env.profile.is_highmem(*pfn) || !in_area {
                return Err(format!("pfn {:#x} holds PKMAP slot {slot:?} but is no highmem CMA page", pfn.0));
            }
        }
        Ok(())
    }

    /// The bitmap bookkeeping part of [`Model::check_invariants`].
    fn check_bitmaps(&self) -> Result<(), String> {
        let st = &self.state;
        // (area, first page offset, pages, owner)
        let mut owned: Vec<(usize, u64, u64, String)> = Vec::new();
        let pool_chunks = |state: &State| -> Vec<(usize, u64, u64, String)> {
            let mut v = Vec::new();
            let Some(d) = self.env.default_area else { return v };
            let Some(a) = state.areas.get(d) else { return v };
            for (id, pool) in &state.pools {
                for (ci, c) in pool.chunks().iter().enumerate() {
                    if let Some(base) = c.base_pfn {
                        v.push((d, base - a.base_pfn(), c.pages(), format!("{id:?} pool chunk {ci}")));
                    }
                }
            }
            v
        };
        owned.extend(pool_chunks(st));
        for (h, hold) in &st.handles {
            match hold {
                Holding::Cma { area, held } => {
                    for &(s, e) in held.runs() {
                        owned.push((*area, s, e - s, format!("handle {h}")));
                    }
                }
                Holding::Dma { pages, backing: DmaBacking::Cma { area, pfn }, .. } => {
                    let base = st.areas.get(*area).map_or(0, |a| a.base_pfn());
                    owned.push((*area, pfn - base, *pages, format!("dma handle {h}")));
                }
                Holding::Dma { .. } => {}
            }
        }
        for (ai, a) in st.areas.iter().enumerate() {
            // Offsets count from range 0's base; the check covers single-range areas (every
            // harness target so far), whose offsets are the bitmap's indices.
            let [range] = a.ranges.as_slice() else {
                continue;
            };
            if a.order_per_bit != 0 {
                continue;
            }
            // Boot bits that no boot pool chunk explains stay reserved for good.
            let mut expect = match self.boot.areas.get(ai) {
                Some(b) => b.ranges.first().map_or_else(|| Bitmap::zeroed(a.count), |r| r.bitmap.clone()),
                None => Bitmap::zeroed(a.count),
            };
            for (pa, s, n, _) in pool_chunks(&self.boot) {
                if pa == ai {
                    expect.clear(s, n);
                }
            }
            let mut mine: Vec<&(usize, u64, u64, String)> = owned.iter().filter(|o| o.0 == ai).collect();
            mine.sort_by_key(|o| o.1);
            for (i, (_, s, n, who)) in mine.iter().enumerate() {
                if s + n > a.count {
                    return Err(format!("area {}: {who} pages {s}..{} past the end {}", a.name, s + n, a.count));
                }
                if let Some((_, s2, _, who2)) = mine.get(i + 1) {
                    if *s2 < s + n {
                        return Err(format!("area {}: {who} (pages {s}..{}) overlaps {who2}", a.name, s + n));
                    }
                }
                if expect.any_set(*s, *n) {
                    return Err(format!("area {}: {who} holds boot-reserved pages in {s}..{}", a.name, s + n));
                }
                expect.set(*s, *n);
            }
            // 7.x available_count: with opb 0 every page out of CMA is one set bit.
            if env_has_available(&self.env) && a.available != a.count - weight(&range.bitmap) {
                return Err(format!(
                    "area {}: available_count {} but count {} minus {} set bits",
                    a.name,
                    a.available,
                    a.count,
                    weight(&range.bitmap)
                ));
            }
            if expect != range.bitmap {
                return Err(format!(
                    "area {}: bitmap weight {} but boot bits + pools + live handles make {}",
                    a.name,
                    weight(&range.bitmap),
                    weight(&expect)
                ));
            }
            for p in &st.pinned {
                if a.bit_of_page(p.0) {
                    return Err(format!("area {}: pinned page {:#x} under a set bit", a.name, p.0));
                }
            }
        }
        Ok(())
    }
}

fn env_has_available(env: &Env) -> bool {
    env.profile.behaviour().cma_ranges
}

fn weight(b: &Bitmap) -> u64 {
    b.words().iter().map(|w| u64::from(w.count_ones())).sum()
}

impl Env {
    /// `ULONG_MAX` of the kernel: the driver rejects counts it cannot pass to the kernel.
    fn ulong_max(&self) -> u64 {
        self.width.wrap(u64::MAX)
    }
}

impl State {
    /// A slot an allocation may define: in range and not live.
    fn free_slot(&self, h: Handle) -> bool {
        h.0 < MAX_HANDLES && !self.handles.contains_key(&h.0)
    }

    fn area_index(&self, area: AreaId) -> Option<usize> {
        usize::try_from(area.0).ok().filter(|&i| i < self.areas.len())
    }

    /// `CF_OP_CMA_ALLOC`: `cma_alloc(cma_areas[area], count, align, true)`. The driver rejects
    /// (BadOp) a live slot, `align > 31`, and a count above `ULONG_MAX - (2^opb - 1)` (which
    /// would wrap `cma_bitmap_pages_to_bits()` to 0).
    fn cma_alloc(&mut self, env: &Env, area: AreaId, h: Handle, count: Pages, align: Order) -> Outcome {
        let Some(ai) = self.area_index(area) else {
            return Outcome::BadOp;
        };
        let opb = self.areas.get(ai).map_or(0, |a| a.order_per_bit);
        let count_limit = env.ulong_max() - ((1u64 << opb) - 1);
        if !self.free_slot(h) || align.0 > MAX_ALIGN || count.0 > count_limit {
            return Outcome::BadOp;
        }
        let Some(a) = self.areas.get_mut(ai) else {
            return Outcome::BadOp;
        };
        match a.alloc(count.0, align.0, env.width, &self.pinned) {
            Some(pfn) => {
                let off = pfn - a.base_pfn();
                self.handles.insert(h.0, Holding::Cma { area: ai, held: RunSet::range(off, off + count.0) });
                Outcome::Allocated { pfn: Pfn(pfn), pages: count }
            }
            None => Outcome::AllocFailed,
        }
    }

    /// `CF_OP_CMA_RELEASE`: one `cma_release()` per maximal run the handle still holds.
    fn cma_release(&mut self, env: &Env, h: Handle) -> Outcome {
        if h.0 >= MAX_HANDLES {
            return Outcome::BadOp;
        }
        if !matches!(self.handles.get(&h.0), Some(Holding::Cma { .. })) {
            return Outcome::Noop;
        }
        let Some(Holding::Cma { area, held }) = self.handles.remove(&h.0) else {
            return Outcome::Noop;
        };
        if let Some(a) = self.areas.get_mut(area) {
            let base = a.base_pfn();
            for &(start, end) in held.runs() {
                a.release(base + start, end - start, env.width);
            }
        }
        Outcome::Released
    }

    /// `CF_OP_CMA_RELEASE_RAW` of page `off` of the area ([`CmaArea::driver_pfn`]): for a first page
    /// outside every range of the area (or any page of a disabled area) and for `count == 0`
    /// the driver calls `cma_release()` and the kernel decides (6.x `cma_pages_valid()`, 7.x
    /// `find_cma_memrange()`, [`CmaArea::release_range`]: a disabled 7.x area accepts
    /// `count == 0` inside its kept ranges). The driver refuses anything else that is not wholly
    /// held by live `cma_alloc` handles of the area, or runs past the end of the first page's
    /// range (spec §3: past-the-end and double releases
    /// corrupt memory on 6.x; 7.x would refuse the first itself, `cma-spec-7x.md` §3, but the
    /// driver's refusal comes first on every version). A pinned page is held by no handle, so a
    /// release covering it is refused too — which is why 7.x's "frees every page whatever the
    /// refcount" ([`CmaArea::release_with_refs`]) never reaches a pinned page through the ops.
    fn cma_release_raw(&mut self, env: &Env, area: AreaId, off: i64, count: Pages) -> Outcome {
        let Some(ai) = self.area_index(area) else {
            return Outcome::BadOp;
        };
        if count.0 > env.ulong_max() {
            return Outcome::BadOp;
        }
        let Some(a) = self.areas.get(ai) else {
            return Outcome::BadOp;
        };
        let (pfn, left) = a.driver_pfn(off);
        let (Some(pfn), Some(left)) = (pfn, left) else {
            // Outside the area: the kernel must refuse it by itself (a negative pfn is a NULL
            // page, which it refuses too).
            let ok = pfn.is_some_and(|p| self.areas.get_mut(ai).is_some_and(|a| a.release(p, count.0, env.width)));
            return if ok { Outcome::Released } else { Outcome::ReleaseRejected };
        };
        if count.0 == 0 {
            // cma_release(): valid pfn, free_contig_range(pfn, 0), no bits cleared.
            return Outcome::Released;
        }
        // Past the end of its range: 6.x would free pages beyond the area.
        if count.0 > left {
            return Outcome::Refused;
        }
        // Handles hold offsets from range 0's base.
        let off = pfn - a.base_pfn();
        let end = off + count.0;
        let held: u64 = self
            .handles
            .values()
            .map(|hold| match hold {
                Holding::Cma { area, held } if *area == ai => held.overlap(off, end),
                _ => 0,
            })
            .sum();
        if held != count.0 {
            return Outcome::Refused;
        }
        if let Some(a) = self.areas.get_mut(ai) {
            a.release(pfn, count.0, env.width);
        }
        self.handles.retain(|_, hold| match hold {
            Holding::Cma { area, held } if *area == ai => {
                held.remove(off, end);
                !held.is_empty()
            }
            _ => true,
        });
        Outcome::Released
    }

    /// `CF_OP_PIN`: the driver refuses a page outside `[base_pfn, base_pfn + count)`, one whose
    /// bitmap bit is set (CMA, the boot pools or a DMA buffer own it), one already pinned, and a
    /// pin beyond `MAX_PINS`; otherwise it calls `alloc_contig_range(pfn, pfn + 1, MIGRATE_CMA,
    /// GFP_KERNEL)` (Linux 6.1 `mm/page_alloc.c:9273-9397`), which succeeds on a page in the
    /// buddy allocator and fails `test_pages_isolated()` with -EBUSY on a page that is not
    /// (spec §2.5). The bitmap does not change.
    fn pin(&mut self, area: AreaId, off: i64) -> Outcome {
        let (pfn, taken) = match self.free_page(area, off) {
            Ok(p) => p,
            Err(o) => return o,
        };
        if self.pinned.len() >= MAX_PINS {
            return Outcome::Refused;
        }
        if taken {
            return Outcome::PinFailed { pfn };
        }
        self.pinned.insert(pfn);
        Outcome::Pinned { pfn }
    }

    /// Page `off` of the area, if it is one (the driver's `cf_pin_pfn()`; offsets count the
    /// ranges' pages in order, [`CmaArea::driver_pfn`]).
    fn page_of(a: &CmaArea, off: i64) -> Option<Pfn> {
        match a.driver_pfn(off) {
            (Some(pfn), Some(_)) => Some(Pfn(pfn)),
            _ => None,
        }
    }

    /// The page a `pin` or `kmap` names, checked as the driver checks it before calling the
    /// kernel: `BadOp` for an unknown area; `Refused` outside `[base_pfn, base_pfn + count)`,
    /// under a set bitmap bit (CMA, the boot pools or a DMA buffer own it) or on a pinned page.
    /// With the pfn comes whether the page is out of the buddy allocator under a clear bit (only
    /// with `order_per_bit > 0`, after a partial release), where `alloc_contig_range()` fails.
    fn free_page(&self, area: AreaId, off: i64) -> Result<(Pfn, bool), Outcome> {
        let ai = self.area_index(area).ok_or(Outcome::BadOp)?;
        let a = self.areas.get(ai).ok_or(Outcome::BadOp)?;
        let pfn = Self::page_of(a, off).ok_or(Outcome::Refused)?;
        if a.bit_of_page(pfn.0) || self.pinned.contains(&pfn) {
            return Err(Outcome::Refused);
        }
        Ok((pfn, a.page_taken(pfn.0)))
    }

    /// `CF_OP_KMAP` (`cf_op_kmap()` in the driver): the driver refuses a page outside the area,
    /// under a set bitmap bit, or pinned (as for `pin`); a page below `max_low_pfn`, and any page
    /// on a kernel without `CONFIG_HIGHMEM` (arm64), is a no-op (`kmap()` is `page_address()`);
    /// else it takes the page with `alloc_contig_range()` (failing with -EBUSY on a page still
    /// out of the buddy allocator, spec §2.5), calls `kmap()` + `kunmap()` — `kmap_high()` /
    /// `kunmap_high()`, Linux 6.1 `mm/highmem.c:295-388`: the page keeps its PKMAP slot — and
    /// gives it back.
    fn kmap(&mut self, env: &Env, area: AreaId, off: i64) -> Outcome {
        let (pfn, taken) = match self.free_page(area, off) {
            Ok(p) => p,
            Err(o) => return o,
        };
        if !env.profile.is_highmem(pfn) {
            return Outcome::Noop;
        }
        if taken {
            return Outcome::PinFailed { pfn };
        }
        self.maps.pkmap.kmap_high(pfn);
        Outcome::Kmapped { pfn }
    }

    /// `[base_pfn, base_pfn + count)` of every area, sorted and merged: the CMA pages of
    /// interest.
    fn area_ranges(&self) -> Vec<(u64, u64)> {
        let mut r: Vec<(u64, u64)> = self
            .areas
            .iter()
            .filter(|a| a.count > 0)
            .flat_map(|a| a.ranges.iter().map(|r| (r.base_pfn, r.base_pfn.saturating_add(r.count))))
            .collect();
        r.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
        for (s, e) in r {
            match out.last_mut() {
                Some((_, le)) if s <= *le => *le = (*le).max(e),
                _ => out.push((s, e)),
            }
        }
        out
    }

    /// Live coherent buffers whose pfn the model cannot predict: (handle, pages, whether a
    /// `VMAP NC` maps them). Buddy pages of paths R and V64 are vmapped, of G/G64 not; pool
    /// slices of a chunk from the buddy allocator lie in that chunk's vmap.
    fn unknown_buffers(&self) -> Vec<(Handle, u64, bool)> {
        let mut out = Vec::new();
        for (h, hold) in &self.handles {
            let Holding::Dma { pages, backing, map } = hold else {
                continue;
            };
            let vmapped = match backing {
                DmaBacking::Cma { .. } => continue,
                DmaBacking::Buddy => *map == DmaMap::Vmap,
                DmaBacking::Pool { pool, addr } => {
                    if self.pools.get(pool).and_then(|p| p.pfn(*addr)).is_some() {
                        continue;
                    }
                    true
                }
            };
            out.push((Handle(*h), *pages, vmapped));
        }
        out
    }

    /// `CF_OP_DMA_MAP`: `dma_map_page()` / `dma_map_sgtable()` of what handle `h` holds, synced
    /// both ways and unmapped (Linux 6.1 `kernel/dma/mapping.c`, `kernel/dma/direct.c`; the same
    /// on 6.12 and 7.x). Nothing the model tracks changes, whatever the direction: dma-direct maps
    /// a page at its own address and the cache maintenance of `arch_sync_dma_for_*` leaves no
    /// mapping behind (arm32 highmem pages get a `kmap_atomic()` fixmap slot that is cleared
    /// again). A dead handle, or a `cma_alloc` one whose every page was raw-released, is a no-op;
    /// the driver refuses pages above the device's DMA mask, where a swiotlb bounce buffer
    /// would be mapped instead of the pages. A buffer from the buddy allocator lies below the
    /// coherent mask by construction (`dma_direct_alloc()`), and the streaming mask is the same.
    fn dma_map(&self, env: &Env, h: Handle) -> Outcome {
        if h.0 >= MAX_HANDLES {
            return Outcome::BadOp;
        }
        let (pages, end_pfn) = match self.handles.get(&h.0) {
            None => return Outcome::Noop,
            Some(Holding::Cma { area, held }) => {
                let Some(&(_, last)) = held.runs().last() else {
                    return Outcome::Noop;
                };
                let base = self.areas.get(*area).map_or(0, |a| a.base_pfn());
                let pages = held.runs().iter().map(|(s, e)| e - s).sum();
                (pages, Some(base + last))
            }
            Some(Holding::Dma { pages, backing, .. }) => {
                if *pages == 0 {
                    return Outcome::Noop;
                }
                let first = match backing {
                    DmaBacking::Cma { pfn, .. } => Some(*pfn),
                    DmaBacking::Pool { pool, addr } => self.pools.get(pool).and_then(|p| p.pfn(*addr)),
                    DmaBacking::Buddy => None,
                };
                (*pages, first.map(|p| p + pages))
            }
        };
        let limit = u128::from(env.profile.coherent_dma_mask()) + 1;
        if end_pfn.is_some_and(|end| u128::from(end) << env.profile.page_shift > limit) {
            return Outcome::Refused;
        }
        Outcome::Mapped { pages: Pages(pages) }
    }

    /// `CF_OP_UNPIN`: `free_contig_range(pfn, 1)` (Linux 6.1 `mm/page_alloc.c:9498-9509`) of a
    /// page the driver holds pinned; anything else is a no-op.
    fn unpin(&mut self, area: AreaId, off: i64) -> Outcome {
        let Some(ai) = self.area_index(area) else {
            return Outcome::BadOp;
        };
        let Some(a) = self.areas.get(ai) else {
            return Outcome::BadOp;
        };
        let Some(pfn) = Self::page_of(a, off) else {
            return Outcome::Noop;
        };
        if self.pinned.remove(&pfn) {
            Outcome::Unpinned { pfn }
        } else {
            Outcome::Noop
        }
    }
}

/// Run a whole program from the model's current state: the outcome of every op, and an
/// observation after every `Observe` op, keyed by its op index (the driver's
/// `struct cf_obs_hdr.op_index`).
pub fn run(model: &mut Model, prog: &ResolvedProgram) -> (Vec<Outcome>, Vec<(usize, Observation)>) {
    let mut outcomes = Vec::with_capacity(prog.ops.len());
    let mut observations = Vec::new();
    for (i, op) in prog.ops.iter().enumerate() {
        outcomes.push(model.step(op));
        if matches!(op, ResolvedOp::Observe) {
            observations.push((i, model.observe()));
        }
    }
    (outcomes, observations)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_7x;
