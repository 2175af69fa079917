//! Coherent DMA for the driver's device: non-coherent, `coherent_dma_mask` of
//! `profile.coherent_dma_mask_bits`, no `dev->cma_area`, `dev->dma_ops == NULL` (spec §5.2, §6.3).
//!
//! Routing (Linux 6.1 = 6.12):
//!
//! | arch  | nokmap | gfp      | path | mirrors |
//! |-------|--------|----------|------|---------|
//! | any   | yes    | any      | G    | `dma_direct_alloc_no_mapping()` → `__dma_direct_alloc_pages()` |
//! | arm32 | no     | kernel   | C    | `__alloc_from_contiguous()` (R `__alloc_remap_buffer()` without a default area) |
//! | arm32 | no     | atomic   | P    | `__alloc_from_pool()` |
//! | arm64 | no     | kernel   | V64  | `__dma_direct_alloc_pages()` + remap |
//! | arm64 | no     | atomic   | P64  | `dma_direct_alloc_from_pool()` + pool expansion worker |

use super::{DmaBacking, Env, Holding, ModelError, PoolId, State};
use crate::cma::CmaArea;
use crate::genpool::GenPool;
use crate::maps::{DmaMap, Maps};
use crate::outcome::Outcome;
use crate::program::{DmaAttrs, Gfp, Handle, MAX_DMA_SIZE, MAX_HANDLES};
use crate::units::{Bytes, Pages, Pfn};
use std::collections::BTreeMap;

/// arm64 `zone_dma_bits` (6.1) / `zone_dma_limit` (6.12) on qemu `virt` without `dma-ranges`:
/// 32 (spec §1.6). Any coherent mask of at most 32 bits therefore means `GFP_DMA`.
const ARM64_ZONE_DMA_BITS: u32 = 32;

/// The zone modifier `dma_direct_optimal_gfp_mask()` adds (Linux 6.1 `kernel/dma/direct.c:47-67`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zone {
    Dma,
    Dma32,
    Normal,
}

fn dma_bit_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl PoolId {
    fn name(self) -> &'static str {
        match self {
            PoolId::Arm32 => "atomic_pool",
            PoolId::Kernel => "atomic_pool_kernel",
            PoolId::Dma => "atomic_pool_dma",
            PoolId::Dma32 => "atomic_pool_dma32",
        }
    }
}

impl Env {
    fn page_shift(&self) -> u32 {
        self.profile.page_shift
    }

    fn bits_per_long(&self) -> u32 {
        self.profile.arch.bits_per_long()
    }

    fn get_order(&self, bytes: u64) -> u32 {
        Bytes(bytes).get_order(self.page_shift(), self.bits_per_long()).0
    }

    fn pages_to_bytes(&self, pages: u64) -> u64 {
        Pages(pages).checked_to_bytes(self.page_shift()).map_or(u64::MAX, |b| b.0)
    }

    /// `dma_coherent_ok(dev, phys, size)` (Linux 6.1 `kernel/dma/direct.c:69-80`):
    /// `phys + size - 1 <= coherent mask`.
    fn dma_coherent_ok(&self, pfn: u64, pages: u64) -> bool {
        let end = pfn.checked_add(pages).map(|e| self.pages_to_bytes(e)).unwrap_or(u64::MAX);
        end.saturating_sub(1) <= self.profile.coherent_dma_mask()
    }

    /// How a pool chunk of CMA pages at `base` is mapped, for good: arm32 `atomic_pool_init()`
    /// → `__alloc_from_contiguous()` (Linux 6.1 `arch/arm/mm/dma-mapping.c:200-249`, `:389-422`:
    /// NC linear map in lowmem, NC vmap in highmem); arm64 `atomic_pool_expand()`
    /// (`kernel/dma/pool.c:79-143`: `dma_common_contiguous_remap()`, NC vmap).
    pub(super) fn pool_map(&self, id: PoolId, base: u64) -> DmaMap {
        match id {
            PoolId::Arm32 => self.contiguous_map(base),
            PoolId::Kernel | PoolId::Dma | PoolId::Dma32 => DmaMap::Vmap,
        }
    }

    /// `__alloc_from_contiguous()`'s choice (Linux 6.1 `arch/arm/mm/dma-mapping.c:407-416`): the
    /// first page decides; `PageHighMem` → `dma_common_contiguous_remap()`, else `__dma_remap()`.
    fn contiguous_map(&self, pfn: u64) -> DmaMap {
        if self.profile.is_highmem(Pfn(pfn)) {
            DmaMap::Vmap
        } else {
            DmaMap::Lin
        }
    }

    /// The allocation for the `alloc_pages*()` fallback: the model assumes the buddy allocator
    /// has memory, so only `order >= MAX_ORDER` fails (`__alloc_pages()` returns NULL).
    fn buddy(&self, bytes: u64) -> Option<DmaBacking> {
        (self.get_order(bytes) < self.profile.max_order).then_some(DmaBacking::Buddy)
    }

    /// Whether `zone` has managed pages on qemu `virt` (RAM from 1 GiB, no `dma-ranges`):
    /// `zone_dma_limit` is `U32_MAX` (Linux 7.2 `arch/arm64/mm/init.c:135-162`), so ZONE_DMA holds
    /// all RAM below 4 GiB, ZONE_DMA32 is empty and ZONE_NORMAL holds RAM above 4 GiB.
    fn managed_zone(&self, zone: Zone) -> bool {
        let four_gib = (1u64 << 32) >> self.page_shift();
        match zone {
            Zone::Dma => self.profile.phys_pfn_offset().0 < four_gib,
            Zone::Dma32 => false,
            Zone::Normal => self.profile.max_pfn.0 > four_gib,
        }
    }

    /// `dma_direct_optimal_gfp_mask()` for the driver's device (Linux 6.1
    /// `kernel/dma/direct.c:47-67`).
    fn optimal_zone(&self) -> Zone {
        let limit = self.profile.coherent_dma_mask();
        if limit <= dma_bit_mask(ARM64_ZONE_DMA_BITS) {
            Zone::Dma
        } else if limit <= dma_bit_mask(32) {
            Zone::Dma32
        } else {
            Zone::Normal
        }
    }
}

/// Rebuild the atomic pools by replaying their boot-time allocations on empty areas (first fit
/// from an empty bitmap, as `atomic_pool_init()` / `dma_atomic_pool_init()` ran right after
/// `cma_init_reserved_areas()`), then check that the booted kernel's bitmap shows them.
/// Returns the pools and the boot mappings with the pools' CMA chunks mapped.
pub(super) fn boot_pools(env: &Env, areas: &[CmaArea]) -> Result<(BTreeMap<PoolId, GenPool>, Maps), ModelError> {
    let mut scratch = State {
        areas: areas.iter().map(CmaArea::empty_like).collect(),
        handles: crate::slots::Slots::new(),
        pinned: Default::default(),
        pools: BTreeMap::new(),
        maps: Maps::new(&env.profile),
    };
    if env.profile.arch.is_arm32() {
        scratch.arm32_atomic_pool_init(env);
    } else {
        scratch.arm64_dma_atomic_pool_init(env);
    }
    if let Some(area) = env.default_area.and_then(|d| areas.get(d)) {
        for (id, pool) in &scratch.pools {
            for chunk in pool.chunks() {
                let Some(base) = chunk.base_pfn else {
                    continue;
                };
                let opb = area.order_per_bit;
                let Some(range) = area.range_of(base).and_then(|r| area.ranges.get(r)) else {
                    return Err(ModelError::PoolNotInBootBitmap {
                        pool: id.name(),
                        area: area.name.clone(),
                        first_bit: 0,
                        end_bit: 0,
                    });
                };
                let first_bit = (base - range.base_pfn) >> opb;
                let end_bit = (base - range.base_pfn + chunk.pages()).div_ceil(1u64 << opb);
                if range.bitmap.find_next_zero_bit(end_bit, first_bit) < end_bit {
                    return Err(ModelError::PoolNotInBootBitmap {
                        pool: id.name(),
                        area: area.name.clone(),
                        first_bit,
                        end_bit,
                    });
                }
            }
        }
    }
    Ok((scratch.pools, scratch.maps))
}

impl State {
    fn default_area_mut(&mut self, env: &Env) -> Option<&mut CmaArea> {
        env.default_area.and_then(|d| self.areas.get_mut(d))
    }

    /// `atomic_pool_init()` (Linux 6.1 `arch/arm/mm/dma-mapping.c:200-249`, same in 6.12): with a
    /// default area, `__alloc_from_contiguous(NULL, atomic_pool_size, …)` →
    /// `dma_alloc_from_contiguous(NULL, size >> PAGE_SHIFT, get_order(size))`; without one,
    /// `__alloc_remap_buffer()` from the buddy allocator. On failure `atomic_pool` stays NULL.
    fn arm32_atomic_pool_init(&mut self, env: &Env) {
        let bytes = env.profile.atomic_pool_bytes;
        let pages = Bytes(bytes).pages_floor(env.page_shift()).0;
        let order = env.get_order(bytes);
        let base = if env.default_area.is_some() {
            let align = order.min(env.profile.cma_alignment);
            let w = env.width;
            let pinned = self.pinned.clone();
            match self.default_area_mut(env).and_then(|a| a.alloc(pages, align, w, &pinned)) {
                Some(pfn) => Some(pfn),
                None => return,
            }
        } else {
            if pages == 0 || env.buddy(bytes).is_none() {
                return;
            }
            None
        };
        if let Some(pfn) = base {
            self.maps.map_buffer(env.pool_map(PoolId::Arm32, pfn), pfn, pages);
        }
        let mut pool = GenPool::default();
        pool.add(base, pages);
        self.pools.insert(PoolId::Arm32, pool);
    }

    /// `dma_atomic_pool_init()` (Linux 6.1 `kernel/dma/pool.c:187-222`): pools kernel, dma, dma32
    /// in that order, each `__dma_atomic_pool_init(atomic_pool_size, gfp)` = an empty pool plus
    /// `atomic_pool_expand()`. The model assumes `has_managed_dma()` and `CONFIG_ZONE_DMA32`, as on
    /// the harness kernels (three pools, boot bits 0-95, spec §1.8).
    ///
    /// 7.x (Linux 7.2 `kernel/dma/pool.c:193-230`, [`Behaviour::arm64_pools_per_managed_zone`]):
    /// a pool only for a zone with managed pages (`has_managed_zone(ZONE_NORMAL)`,
    /// `has_managed_dma()`, `has_managed_zone(ZONE_DMA32)`), see [`Env::managed_zone`]: 1 GiB
    /// and 3 GiB `virt` get the dma pool alone, 6 GiB kernel and dma (`cma-spec-7x.md` §5.2
    /// **[observed 7.2]**).
    ///
    /// [`Behaviour::arm64_pools_per_managed_zone`]: crate::profile::Behaviour::arm64_pools_per_managed_zone
    fn arm64_dma_atomic_pool_init(&mut self, env: &Env) {
        let gated = env.profile.behaviour().arm64_pools_per_managed_zone;
        for (id, zone) in [(PoolId::Kernel, Zone::Normal), (PoolId::Dma, Zone::Dma), (PoolId::Dma32, Zone::Dma32)] {
            if gated && !env.managed_zone(zone) {
                continue;
            }
            self.pools.insert(id, GenPool::default());
            self.atomic_pool_expand(env, id, env.profile.atomic_pool_bytes);
        }
    }

    /// `cma_in_zone(gfp)` (Linux 6.1 `kernel/dma/pool.c:56-77`): a default area with pages whose
    /// last byte is inside the pool's zone.
    fn cma_in_zone(&self, env: &Env, id: PoolId) -> bool {
        let Some(area) = env.default_area.and_then(|d| self.areas.get(d)) else {
            return false;
        };
        if area.count == 0 {
            return false;
        }
        // cma_get_base() + cma_get_size(): range 0's base plus the total (Linux 7.2
        // `kernel/dma/pool.c:56-77`), as 6.x's base + count.
        let end = area
            .base_pfn()
            .checked_add(area.count)
            .map(|e| env.pages_to_bytes(e))
            .unwrap_or(u64::MAX)
            .saturating_sub(1);
        match id {
            PoolId::Arm32 | PoolId::Kernel => true,
            PoolId::Dma => end <= dma_bit_mask(ARM64_ZONE_DMA_BITS),
            PoolId::Dma32 => end <= dma_bit_mask(32),
        }
    }

    /// `atomic_pool_expand(pool, pool_size, gfp)` (Linux 6.1 `kernel/dma/pool.c:79-143`):
    /// `order = min(get_order(pool_size), MAX_ORDER - 1)`; `dma_alloc_from_contiguous(NULL,
    /// 1 << order, order)` (align capped at `CONFIG_CMA_ALIGNMENT`) when `cma_in_zone()`, else
    /// `alloc_pages()`; the pages become a new chunk (searched first from now on). The model treats
    /// the buddy fallback as succeeding at the first order tried.
    fn atomic_pool_expand(&mut self, env: &Env, id: PoolId, pool_size: u64) {
        let order = env.get_order(pool_size).min(env.profile.max_order.saturating_sub(1));
        let pages = 1u64 << order;
        let mut base = None;
        if self.cma_in_zone(env, id) {
            let align = order.min(env.profile.cma_alignment);
            let w = env.width;
            let pinned = self.pinned.clone();
            base = self.default_area_mut(env).and_then(|a| a.alloc(pages, align, w, &pinned));
        }
        if let Some(pool) = self.pools.get_mut(&id) {
            pool.add(base, pages);
            if let Some(pfn) = base {
                self.maps.map_buffer(env.pool_map(id, pfn), pfn, pages);
            }
        }
    }

    /// `atomic_pool_work_fn()` (Linux 6.1 `kernel/dma/pool.c:151-160`), run when the driver
    /// flushes the workqueue after an atomic allocation scheduled it: pools dma, dma32, kernel,
    /// each expanded by its current size if `gen_pool_avail() < atomic_pool_size`.
    fn atomic_pool_work_fn(&mut self, env: &Env) {
        for id in [PoolId::Dma, PoolId::Dma32, PoolId::Kernel] {
            let Some(pool) = self.pools.get(&id) else {
                continue;
            };
            if env.pages_to_bytes(pool.avail()) < env.profile.atomic_pool_bytes {
                let size = env.pages_to_bytes(pool.size());
                self.atomic_pool_expand(env, id, size);
            }
        }
    }

    /// `dma_guess_pool(prev, gfp)` (Linux 6.1 `kernel/dma/pool.c:224-238`). `None` is NULL.
    /// 7.x (Linux 7.2 `kernel/dma/pool.c:233-247`) falls back through the pools that exist on
    /// the first call: `GFP_DMA` → dma ?: dma32 ?: kernel, `GFP_DMA32` → dma32 ?: dma ?: kernel,
    /// else kernel ?: dma32 ?: dma; after a pool: kernel → dma32 ?: dma, dma32 → dma, dma → none.
    fn dma_guess_pool(&self, env: &Env, prev: Option<PoolId>, zone: Zone) -> Option<PoolId> {
        let exists = |id| self.pools.contains_key(&id).then_some(id);
        if env.profile.behaviour().arm64_pools_per_managed_zone {
            return match prev {
                None => match zone {
                    Zone::Dma => {
                        exists(PoolId::Dma).or_else(|| exists(PoolId::Dma32)).or_else(|| exists(PoolId::Kernel))
                    }
                    Zone::Dma32 => {
                        exists(PoolId::Dma32).or_else(|| exists(PoolId::Dma)).or_else(|| exists(PoolId::Kernel))
                    }
                    Zone::Normal => {
                        exists(PoolId::Kernel).or_else(|| exists(PoolId::Dma32)).or_else(|| exists(PoolId::Dma))
                    }
                },
                Some(PoolId::Kernel) => exists(PoolId::Dma32).or_else(|| exists(PoolId::Dma)),
                Some(PoolId::Dma32) => exists(PoolId::Dma),
                Some(_) => None,
            };
        }
        match prev {
            None => match zone {
                Zone::Dma32 => exists(PoolId::Dma32),
                Zone::Dma if self.pools.contains_key(&PoolId::Dma) => Some(PoolId::Dma),
                _ => exists(PoolId::Kernel),
            },
            Some(PoolId::Kernel) => exists(PoolId::Dma32).or_else(|| exists(PoolId::Dma)),
            Some(PoolId::Dma32) => exists(PoolId::Dma),
            Some(_) => None,
        }
    }

    /// `dma_direct_alloc_from_pool()` → `dma_alloc_from_pool()` → `__dma_alloc_from_pool()`
    /// (Linux 6.1 `kernel/dma/direct.c:151-167`, `kernel/dma/pool.c:240-283`): try the pools in
    /// `dma_guess_pool()` order; a pool allocation failing `dma_coherent_ok()` is given back. A
    /// successful one schedules the expansion worker if that pool's avail dropped below
    /// `atomic_pool_size`; the driver flushes the workqueue, so the worker runs before the next op.
    fn arm64_alloc_from_pool(&mut self, env: &Env, pages: u64) -> Option<DmaBacking> {
        let zone = env.optimal_zone();
        let mut prev = None;
        while let Some(id) = self.dma_guess_pool(env, prev, zone) {
            prev = Some(id);
            let Some(pool) = self.pools.get_mut(&id) else {
                break;
            };
            let Some(addr) = pool.alloc(pages) else {
                continue;
            };
            if let Some(pfn) = pool.pfn(addr) {
                if !env.dma_coherent_ok(pfn, pages) {
                    pool.free(addr, pages);
                    continue;
                }
            }
            let schedule = env.pages_to_bytes(pool.avail()) < env.profile.atomic_pool_bytes;
            if schedule {
                self.atomic_pool_work_fn(env);
            }
            return Some(DmaBacking::Pool { pool: id, addr });
        }
        // WARN "DMA pool exhausted" (no __GFP_NOWARN); the worker is not scheduled.
        None
    }

    /// `__alloc_from_pool()` (Linux 6.1 `arch/arm/mm/dma-mapping.c:353-372`): `gen_pool_alloc()`
    /// on the boot pool; NULL (with a WARN) if the pool was never created.
    fn arm32_alloc_from_pool(&mut self, pages: u64) -> Option<DmaBacking> {
        let pool = self.pools.get_mut(&PoolId::Arm32)?;
        let addr = pool.alloc(pages)?;
        Some(DmaBacking::Pool { pool: PoolId::Arm32, addr })
    }

    /// `__dma_direct_alloc_pages(dev, size, gfp, allow_highmem = true)` (Linux 6.1
    /// `kernel/dma/direct.c:118-160`): `dma_alloc_contiguous()` (Linux 6.1
    /// `kernel/dma/contiguous.c:303-333`: only for blocking gfp, and without `dev->cma_area` only
    /// for `size > PAGE_SIZE`, as `cma_alloc(default, size >> PAGE_SHIFT,
    /// min(get_order(size), CONFIG_CMA_ALIGNMENT))`); a CMA page failing `dma_coherent_ok()` is
    /// released; then `alloc_pages_node(node, gfp, get_order(size))`.
    fn dma_direct_alloc_pages(&mut self, env: &Env, bytes: u64, blocking: bool) -> Option<DmaBacking> {
        let page_size = 1u64 << env.page_shift();
        let pages = bytes >> env.page_shift();
        if blocking && bytes > page_size {
            if let Some(d) = env.default_area {
                let align = env.get_order(bytes).min(env.profile.cma_alignment);
                let w = env.width;
                if let Some(area) = self.areas.get_mut(d) {
                    if let Some(pfn) = area.alloc(pages, align, w, &self.pinned) {
                        if env.dma_coherent_ok(pfn, pages) {
                            return Some(DmaBacking::Cma { area: d, pfn });
                        }
                        // dma_free_contiguous() -> cma_release()
                        area.release(pfn, pages, w);
                    }
                }
            }
        }
        env.buddy(bytes)
    }

    /// `__alloc_from_contiguous()` (Linux 6.1 `arch/arm/mm/dma-mapping.c:389-422`): `cma_alloc(
    /// default, size >> PAGE_SHIFT, min(get_order(size), CONFIG_CMA_ALIGNMENT))` even for one page;
    /// no fallback on failure.
    fn arm32_alloc_from_contiguous(&mut self, env: &Env, bytes: u64) -> Option<DmaBacking> {
        let d = env.default_area?;
        let pages = bytes >> env.page_shift();
        let align = env.get_order(bytes).min(env.profile.cma_alignment);
        let w = env.width;
        let area = self.areas.get_mut(d)?;
        let pfn = area.alloc(pages, align, w, &self.pinned)?;
        Some(DmaBacking::Cma { area: d, pfn })
    }

    /// `CF_OP_DMA_ALLOC`: `dma_alloc_attrs(dev, size, &dma, gfp, attrs)` (Linux 6.1
    /// `kernel/dma/mapping.c:493-516` → `dma_direct_alloc()`, `kernel/dma/direct.c:206-318`,
    /// → `arch_dma_alloc()` = `__dma_alloc()` on arm32, `arch/arm/mm/dma-mapping.c:531-606`).
    pub(super) fn dma_alloc(&mut self, env: &Env, h: Handle, size: Bytes, attrs: DmaAttrs, gfp: Gfp) -> Outcome {
        if !self.free_slot(h) || size.0 > MAX_DMA_SIZE {
            return Outcome::BadOp;
        }
        let Some(bytes) = size.checked_page_align(env.page_shift()).map(|b| b.0) else {
            return Outcome::BadOp;
        };
        let pages = bytes >> env.page_shift();
        let blocking = gfp == Gfp::Kernel;
        let (backing, map) = if attrs.nokmap {
            // DMA_ATTR_NO_KERNEL_MAPPING is handled before the coherency test (direct.c:217-219).
            (self.dma_direct_alloc_pages(env, bytes, blocking), DmaMap::Unchanged)
        } else if env.profile.arch.is_arm32() {
            match (blocking, env.default_area.is_some()) {
                (true, true) => {
                    let b = self.arm32_alloc_from_contiguous(env, bytes);
                    let map = match &b {
                        Some(DmaBacking::Cma { pfn, .. }) => env.contiguous_map(*pfn),
                        _ => DmaMap::Unchanged,
                    };
                    (b, map)
                }
                // __alloc_remap_buffer() -> alloc_pages(gfp, get_order(size)), then vmap NC.
                (true, false) => (env.buddy(bytes), DmaMap::Vmap),
                (false, _) => (self.arm32_alloc_from_pool(pages), DmaMap::Pool),
            }
        } else if blocking {
            (self.dma_direct_alloc_pages(env, bytes, true), DmaMap::Vmap)
        } else {
            (self.arm64_alloc_from_pool(env, pages), DmaMap::Pool)
        };
        let Some(backing) = backing else {
            return Outcome::AllocFailed;
        };
        if let DmaBacking::Cma { pfn, .. } = backing {
            self.maps.map_buffer(map, pfn, pages);
        }
        let outcome = match &backing {
            DmaBacking::Cma { pfn, .. } => Outcome::Allocated { pfn: Pfn(*pfn), pages: Pages(pages) },
            DmaBacking::Buddy => Outcome::AllocatedOutsideCma { pages: Pages(pages) },
            DmaBacking::Pool { pool, addr } => match self.pools.get(pool).and_then(|p| p.pfn(*addr)) {
                Some(pfn) => Outcome::Allocated { pfn: Pfn(pfn), pages: Pages(pages) },
                None => Outcome::AllocatedOutsideCma { pages: Pages(pages) },
            },
        };
        self.handles.insert(h.0, Holding::Dma { pages, backing, map });
        outcome
    }

    /// `CF_OP_DMA_FREE`: `dma_free_attrs()` with the size and attrs of the allocation:
    /// `cma_release()` for CMA pages (`__free_from_contiguous()` / `dma_free_contiguous()`),
    /// `gen_pool_free()` for pool buffers (the worker is never scheduled by a free), nothing the
    /// model tracks for buddy pages. A CMA buffer's mapping is undone first, as
    /// `__free_from_contiguous()` (Linux 6.1 `arch/arm/mm/dma-mapping.c:424-434`) and
    /// `dma_direct_free()` (`kernel/dma/direct.c:320-363`) do; pool mappings stay.
    pub(super) fn dma_free(&mut self, env: &Env, h: Handle) -> Outcome {
        if h.0 >= MAX_HANDLES {
            return Outcome::BadOp;
        }
        if !matches!(self.handles.get(&h.0), Some(Holding::Dma { .. })) {
            return Outcome::Noop;
        }
        let Some(Holding::Dma { pages, backing, map }) = self.handles.remove(&h.0) else {
            return Outcome::Noop;
        };
        match backing {
            DmaBacking::Cma { area, pfn } => {
                self.maps.unmap_buffer(map, pfn, pages);
                if let Some(a) = self.areas.get_mut(area) {
                    a.release(pfn, pages, env.width);
                }
            }
            DmaBacking::Buddy => {}
            DmaBacking::Pool { pool, addr } => {
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.free(addr, pages);
                }
            }
        }
        Outcome::Released
    }
}
