//! The kernel mappings of the pages of interest (every page of every CMA area, every page of every
//! live buffer) between ops, as a walk of `init_mm`'s page tables would find them (spec §5.5-§5.7,
//! §6.3).
//!
//! A CMA page's linear-map and vmalloc state is kept as overrides of its free-page default (`LIN
//! WB` in lowmem, nothing in arm32 highmem); PKMAP slots are kept per pfn with the kernel's
//! `last_pkmap_nr`. Buffer pages whose pfn the model cannot predict (buddy allocator) get their
//! mappings from the path that allocated them.

use crate::observation::{MapKind, MapLevel, MapRun, MemType, PageAddr};
use crate::profile::{Arch, KernelProfile};
use crate::program::Handle;
use crate::units::Pfn;
use std::collections::BTreeMap;

/// The linear-map and vmalloc mappings of one page (spec §5.7 `LIN`, `VMAP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageMap {
    pub(crate) lin: Option<MemType>,
    pub(crate) vmap: Option<MemType>,
}

/// Which kernel mapping `dma_alloc_attrs()` gave a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DmaMap {
    /// `DMA_ATTR_NO_KERNEL_MAPPING`: `dma_direct_alloc_no_mapping()` (Linux 6.1
    /// `kernel/dma/direct.c:188-204`) leaves every mapping as it was (paths G, G64).
    Unchanged,
    /// arm32 path C on a lowmem page: `__dma_remap(page, size, pgprot_dmacoherent)` rewrites the
    /// linear map to NC (Linux 6.1 `arch/arm/mm/dma-mapping.c:317-324`, `:389-422`).
    Lin,
    /// A `vmap(…, VM_DMA_COHERENT, pgprot_dmacoherent)` of the buffer's own pages: arm32 path C
    /// on highmem (`dma_common_contiguous_remap()`, `kernel/dma/remap.c:38-55`), arm32 path R
    /// (`__alloc_remap_buffer()`, `arch/arm/mm/dma-mapping.c:326-351`), arm64 V64
    /// (`dma_direct_alloc()`, `kernel/dma/direct.c:264-308`).
    Vmap,
    /// A slice of an atomic pool: the pool chunk's own mapping, set up once (spec §5.5 P, §6.3).
    Pool,
}

/// A page's PKMAP slot: known, or assigned while the model did not know `last_pkmap_nr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PkmapSlot {
    Known(u32),
    Unknown,
}

/// The persistent-kmap area (`mm/highmem.c`, Linux 6.1 and 6.12): which pages hold a slot with
/// `pkmap_count == 1` (mapped, unused: the driver kunmaps at once) and `last_pkmap_nr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pkmap {
    /// `LAST_PKMAP`; 0 without PKMAP.
    nr: u32,
    pub(crate) slots: BTreeMap<Pfn, PkmapSlot>,
    /// `last_pkmap_nr`, when the model knows it.
    pub(crate) last: Option<u32>,
}

impl Pkmap {
    fn occupied(&self, slot: u32) -> bool {
        self.slots.values().any(|s| *s == PkmapSlot::Known(slot))
    }

    /// `flush_all_zero_pkmaps()` (Linux 6.1 `mm/highmem.c:186-224`): every slot with
    /// `pkmap_count == 1` is cleared (`pte_clear`) and becomes free. Every slot the model tracks
    /// has count 1. `last_pkmap_nr` is not touched.
    pub(crate) fn flush_all_zero_pkmaps(&mut self) {
        self.slots.clear();
    }

    /// `kmap_high(page)` + `kunmap_high(page)` (Linux 6.1 `mm/highmem.c:295-311`, `:347-388`): a
    /// page with a slot keeps it (`page_address()` is non-NULL); otherwise
    /// `map_new_virtual()` (`:233-285`) takes the first free slot after `last_pkmap_nr`,
    /// running `flush_all_zero_pkmaps()` when it wraps to slot 0. `kunmap_high()` drops the count
    /// back to 1 and leaves the PTE ("lazy unmapping", spec §5.6).
    pub(crate) fn kmap_high(&mut self, pfn: Pfn) {
        if self.nr == 0 || self.slots.contains_key(&pfn) {
            return;
        }
        let slot = self.map_new_virtual();
        self.slots.insert(pfn, slot);
    }

    /// `map_new_virtual()`'s search (Linux 6.1 `mm/highmem.c:233-285`): `last_pkmap_nr =
    /// (last_pkmap_nr + 1) & LAST_PKMAP_MASK`; at 0 `flush_all_zero_pkmaps()`; the first slot with
    /// `pkmap_count == 0` wins. Without a known `last_pkmap_nr` the slot is unknown.
    fn map_new_virtual(&mut self) -> PkmapSlot {
        let Some(mut last) = self.last else {
            return PkmapSlot::Unknown;
        };
        // After at most LAST_PKMAP steps the search passes slot 0, whose flush frees everything.
        for _ in 0..=self.nr {
            last = (last + 1) % self.nr;
            if last == 0 {
                self.flush_all_zero_pkmaps();
            }
            if !self.occupied(last) {
                self.last = Some(last);
                return PkmapSlot::Known(last);
            }
        }
        self.last = None;
        PkmapSlot::Unknown
    }

    /// `kmap_flush_unused()` (`__kmap_flush_unused()` → `flush_all_zero_pkmaps()`), run by the
    /// driver's RESET, which then probes `last_pkmap_nr` with a kmap the model does not see: the
    /// model forgets `last` until the harness passes on the kernel's value.
    pub(crate) fn reset(&mut self) {
        self.flush_all_zero_pkmaps();
        self.last = None;
    }

    /// Set `last_pkmap_nr` to what the kernel reported; a value past `LAST_PKMAP` means unknown.
    pub(crate) fn set_last(&mut self, last: Option<u32>) {
        self.last = last.filter(|&l| l < self.nr);
    }

    /// Bookkeeping checks: known slots in range and held by one page each, `last` in range.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.nr == 0 && (!self.slots.is_empty() || self.last.is_some()) {
            return Err("PKMAP state on a kernel without PKMAP".to_string());
        }
        if let Some(l) = self.last {
            if l >= self.nr {
                return Err(format!("last_pkmap_nr {l} >= LAST_PKMAP {}", self.nr));
            }
        }
        let mut seen = BTreeMap::new();
        for (pfn, slot) in &self.slots {
            if let PkmapSlot::Known(s) = slot {
                if *s >= self.nr {
                    return Err(format!("pfn {:#x} holds PKMAP slot {s} >= LAST_PKMAP {}", pfn.0, self.nr));
                }
                if let Some(other) = seen.insert(*s, *pfn) {
                    return Err(format!("PKMAP slot {s} held by pfns {:#x} and {:#x}", other.0, pfn.0));
                }
            }
        }
        if self.slots.len() > self.nr as usize {
            return Err(format!("{} pages hold PKMAP slots, more than LAST_PKMAP {}", self.slots.len(), self.nr));
        }
        Ok(())
    }
}

/// The mapping state of the CMA pages plus the PKMAP area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Maps {
    /// `max_low_pfn`: pages below have a linear mapping.
    lowmem_end: u64,
    /// Disjoint `[start, end) -> state` ranges whose state differs from the free-page default.
    overrides: BTreeMap<u64, (u64, PageMap)>,
    pub(crate) pkmap: Pkmap,
}

impl Maps {
    /// The boot state before any coherent allocation: `map_lowmem()` + `dma_contiguous_remap()`
    /// (Linux 6.1 `arch/arm/mm/mmu.c:1764-1800`, `arch/arm/mm/dma-mapping.c:268-305`: the
    /// lowmem part of a CMA area stays `LIN WB`, as 4 KiB PTEs) or arm64 `map_mem()`
    /// (`arch/arm64/mm/mmu.c:580-668`: all RAM `LIN WB`); no PKMAP slot in use.
    pub(crate) fn new(profile: &KernelProfile) -> Maps {
        Maps {
            lowmem_end: profile.max_low_pfn.0,
            overrides: BTreeMap::new(),
            pkmap: Pkmap { nr: profile.last_pkmap(), slots: BTreeMap::new(), last: None },
        }
    }

    /// A free page's state (spec §5.7 first two rows, §6.2).
    fn default_at(&self, pfn: u64) -> PageMap {
        PageMap { lin: (pfn < self.lowmem_end).then_some(MemType::Wb), vmap: None }
    }

    /// The first key whose range may reach `start`.
    fn scan_from(&self, start: u64) -> u64 {
        self.overrides.range(..=start).next_back().map_or(start, |(k, _)| *k)
    }

    /// `[start, end)` cut into ranges of uniform state, ascending.
    fn pieces(&self, start: u64, end: u64) -> Vec<(u64, u64, PageMap)> {
        let mut out = Vec::new();
        let mut cur = start;
        for (&s, &(e, v)) in self.overrides.range(self.scan_from(start)..end) {
            let (s, e) = (s.max(start), e.min(end));
            if s >= e {
                continue;
            }
            self.push_default(&mut out, cur, s);
            out.push((s, e, v));
            cur = e;
        }
        self.push_default(&mut out, cur, end);
        out
    }

    fn push_default(&self, out: &mut Vec<(u64, u64, PageMap)>, s: u64, e: u64) {
        if s >= e {
            return;
        }
        let lo = self.lowmem_end;
        if s < lo && lo < e {
            out.push((s, lo, self.default_at(s)));
            out.push((lo, e, self.default_at(lo)));
        } else {
            out.push((s, e, self.default_at(s)));
        }
    }

    /// `[start, end)` as maximal ranges of uniform state.
    pub(crate) fn runs(&self, start: u64, end: u64) -> Vec<(u64, u64, PageMap)> {
        let mut out: Vec<(u64, u64, PageMap)> = Vec::new();
        for (s, e, v) in self.pieces(start, end) {
            match out.last_mut() {
                Some((_, le, lv)) if *le == s && *lv == v => *le = e,
                _ => out.push((s, e, v)),
            }
        }
        out
    }

    /// Apply `f` to the state of every page of `[start, end)`.
    fn update(&mut self, start: u64, end: u64, f: impl Fn(u64, PageMap) -> PageMap) {
        if start >= end {
            return;
        }
        let pieces = self.pieces(start, end);
        let hit: Vec<u64> = self
            .overrides
            .range(self.scan_from(start)..end)
            .filter(|(_, (e, _))| *e > start)
            .map(|(k, _)| *k)
            .collect();
        for k in hit {
            if let Some((e, v)) = self.overrides.remove(&k) {
                if k < start {
                    self.overrides.insert(k, (start, v));
                }
                if e > end {
                    self.overrides.insert(end, (e, v));
                }
            }
        }
        for (s, e, v) in pieces {
            let new = f(s, v);
            if new != self.default_at(s) {
                self.overrides.insert(s, (e, new));
            }
        }
    }

    /// Whether any page outside `ranges` (sorted, disjoint) has an override.
    pub(crate) fn overrides_outside(&self, ranges: &[(u64, u64)]) -> Option<(u64, u64)> {
        self.overrides.iter().map(|(s, (e, _))| (*s, *e)).find(|&(s, e)| {
            // Every page of [s, e) must lie in one of the ranges.
            let mut cur = s;
            for &(rs, re) in ranges {
                if rs <= cur && cur < re {
                    cur = re;
                }
            }
            cur < e
        })
    }

    /// `__dma_remap(page, size, prot)` (Linux 6.1 `arch/arm/mm/dma-mapping.c:317-324`): every
    /// linear-map PTE of the range gets `prot`. Only lowmem pages have one.
    pub(crate) fn dma_remap(&mut self, pfn: u64, pages: u64, mem: MemType) {
        let end = pfn.saturating_add(pages).min(self.lowmem_end);
        self.update(pfn, end, |_, v| PageMap { lin: Some(mem), ..v });
    }

    /// `vmap(pages, n, VM_DMA_COHERENT, pgprot_dmacoherent(PAGE_KERNEL))` as
    /// `dma_common_contiguous_remap()` does it (Linux 6.1 `kernel/dma/remap.c:38-55`): a second,
    /// NC mapping in the vmalloc area.
    pub(crate) fn vmap(&mut self, pfn: u64, pages: u64) {
        self.update(pfn, pfn.saturating_add(pages), |_, v| PageMap { vmap: Some(MemType::Nc), ..v });
    }

    /// `vunmap()` from `dma_common_free_remap()` (Linux 6.1 `kernel/dma/remap.c:60-70`) or
    /// `dma_direct_free()`: the PTEs are cleared at once (the TLB flush is lazy, spec §6.4).
    pub(crate) fn vunmap(&mut self, pfn: u64, pages: u64) {
        self.update(pfn, pfn.saturating_add(pages), |_, v| PageMap { vmap: None, ..v });
    }

    /// Map a coherent buffer served by CMA as its path does (`DmaMap::Lin`: NC linear map,
    /// `DmaMap::Vmap`: NC vmap; anything else changes nothing).
    pub(crate) fn map_buffer(&mut self, map: DmaMap, pfn: u64, pages: u64) {
        match map {
            DmaMap::Lin => self.dma_remap(pfn, pages, MemType::Nc),
            DmaMap::Vmap => self.vmap(pfn, pages),
            DmaMap::Unchanged | DmaMap::Pool => {}
        }
    }

    /// Undo [`Maps::map_buffer`]: `__free_from_contiguous()` (Linux 6.1
    /// `arch/arm/mm/dma-mapping.c:424-434`: `__dma_remap(page, size, PAGE_KERNEL)` back to WB, or
    /// `dma_common_free_remap()` for highmem), `dma_direct_free()` (`kernel/dma/direct.c:320-363`:
    /// `vunmap()`).
    pub(crate) fn unmap_buffer(&mut self, map: DmaMap, pfn: u64, pages: u64) {
        match map {
            DmaMap::Lin => self.dma_remap(pfn, pages, MemType::Wb),
            DmaMap::Vmap => self.vunmap(pfn, pages),
            DmaMap::Unchanged | DmaMap::Pool => {}
        }
    }

    /// The mapping table for `ranges` (the CMA areas, sorted and disjoint) and the `buffers`
    /// whose pfn is unknown (`handle`, pages, whether they have a vmap), as the driver's walk
    /// reports it: `LIN`, `VMAP`, `PKMAP` runs; `FIXMAP` is always empty between ops (every
    /// `kmap_atomic()` slot is cleared by its `kunmap_atomic()`, spec §5.4).
    pub(crate) fn table(
        &self,
        profile: &KernelProfile,
        ranges: &[(u64, u64)],
        buffers: &[(Handle, u64, bool)],
    ) -> Vec<MapRun> {
        let mut runs = Vec::new();
        // 7.x arm64 maps the linear map with 4 KiB PTEs (rodata_full, no BBML2/3 on the harness
        // CPU, `cma-spec-7x.md` §7 **[observed: `PTE ... MEM/NORMAL-TAGGED`]**) and vmap() always
        // uses PTEs, so every run's level is known; elsewhere the model leaves it to the kernel.
        let level = (profile.arch == Arch::Arm64 && profile.behaviour().arm64_linear_map_ptes).then_some(MapLevel::Pte);
        let run = |kind, first, pages, mem, va| MapRun { kind, first, pages, mem, va, level };
        for &(start, end) in ranges {
            for (s, e, v) in self.runs(start, end) {
                if let Some(mem) = v.lin {
                    runs.push(run(MapKind::Lin, PageAddr::Pfn(Pfn(s)), e - s, mem, profile.lin_va(Pfn(s))));
                }
                if let Some(mem) = v.vmap {
                    runs.push(run(MapKind::Vmap, PageAddr::Pfn(Pfn(s)), e - s, mem, None));
                }
            }
        }
        for (pfn, slot) in &self.pkmap.slots {
            let va = match slot {
                PkmapSlot::Known(s) => profile.pkmap_va(*s),
                PkmapSlot::Unknown => None,
            };
            runs.push(run(MapKind::Pkmap, PageAddr::Pfn(*pfn), 1, MemType::Wb, va));
        }
        for &(handle, pages, vmapped) in buffers {
            if pages == 0 {
                continue;
            }
            let first = PageAddr::Buffer { handle, index: 0 };
            // Buddy pages are lowmem (`__GFP_HIGHMEM` is stripped by `dma_alloc_attrs()`).
            runs.push(run(MapKind::Lin, first, pages, MemType::Wb, None));
            if vmapped {
                runs.push(run(MapKind::Vmap, first, pages, MemType::Nc, None));
            }
        }
        merge_runs(runs, profile.page_shift)
    }
}

/// Sort by (kind, first page) and merge runs that continue each other in pages and addresses.
fn merge_runs(mut runs: Vec<MapRun>, page_shift: u32) -> Vec<MapRun> {
    runs.sort_by_key(|r| (r.kind, r.first));
    let mut out: Vec<MapRun> = Vec::with_capacity(runs.len());
    for r in runs {
        if let Some(last) = out.last_mut() {
            if continues(last, &r, page_shift) {
                last.pages += r.pages;
                continue;
            }
        }
        out.push(r);
    }
    out
}

fn continues(a: &MapRun, b: &MapRun, page_shift: u32) -> bool {
    if a.kind != b.kind || a.mem != b.mem || a.level != b.level {
        return false;
    }
    let pages_follow = match (a.first, b.first) {
        (PageAddr::Pfn(x), PageAddr::Pfn(y)) => x.0.checked_add(a.pages) == Some(y.0),
        (PageAddr::Buffer { handle: h1, index: i1 }, PageAddr::Buffer { handle: h2, index: i2 }) => {
            h1 == h2 && i1.checked_add(a.pages) == Some(i2)
        }
        _ => false,
    };
    let va_follows = match (a.va, b.va) {
        (None, None) => true,
        (Some(x), Some(y)) => a.pages.checked_shl(page_shift).and_then(|n| x.checked_add(n)) == Some(y),
        _ => false,
    };
    pages_follow && va_follows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Version;

    fn a32() -> KernelProfile {
        KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32)
    }

    #[test]
    fn dma_remap_touches_only_lowmem_pages_and_restores_to_the_default() {
        let mut m = Maps::new(&a32());
        m.dma_remap(0x6fffe, 4, MemType::Nc);
        let wb = PageMap { lin: Some(MemType::Wb), vmap: None };
        let nc = PageMap { lin: Some(MemType::Nc), vmap: None };
        let none = PageMap { lin: None, vmap: None };
        assert_eq!(
            m.runs(0x6fffc, 0x70004),
            vec![(0x6fffc, 0x6fffe, wb), (0x6fffe, 0x70000, nc), (0x70000, 0x70004, none)]
        );
        m.dma_remap(0x6fffe, 4, MemType::Wb);
        assert!(m.overrides.is_empty(), "__dma_remap(PAGE_KERNEL) gives back the boot PTEs");
    }

    #[test]
    fn overlapping_updates_split_and_rejoin_ranges() {
        let mut m = Maps::new(&a32());
        m.vmap(0x7e000, 64);
        m.vunmap(0x7e010, 8);
        let nc = PageMap { lin: None, vmap: Some(MemType::Nc) };
        let none = PageMap { lin: None, vmap: None };
        assert_eq!(
            m.runs(0x7e000, 0x7e040),
            vec![(0x7e000, 0x7e010, nc), (0x7e010, 0x7e018, none), (0x7e018, 0x7e040, nc)]
        );
        m.vmap(0x7e00c, 16);
        assert_eq!(m.runs(0x7e000, 0x7e040), vec![(0x7e000, 0x7e040, nc)]);
        assert_eq!(m.overrides_outside(&[(0x7e000, 0x80000)]), None);
        assert_eq!(m.overrides_outside(&[(0x7e001, 0x80000)]), Some((0x7e000, 0x7e00c)));
    }

    #[test]
    fn map_new_virtual_flushes_all_zero_pkmaps_when_it_wraps_to_slot_0() {
        let mut p = Pkmap { nr: 4, slots: BTreeMap::new(), last: Some(2) };
        p.kmap_high(Pfn(10));
        assert_eq!(p.slots.get(&Pfn(10)), Some(&PkmapSlot::Known(3)));
        p.kmap_high(Pfn(10));
        assert_eq!(p.last, Some(3), "kmap_high reuses the page's slot");
        p.kmap_high(Pfn(11));
        assert_eq!(p.slots.len(), 1, "the wrap flushed pfn 10's unused slot");
        assert_eq!(p.slots.get(&Pfn(11)), Some(&PkmapSlot::Known(0)));
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn map_new_virtual_skips_slots_still_in_use() {
        let mut p = Pkmap { nr: 8, slots: BTreeMap::from([(Pfn(1), PkmapSlot::Known(3))]), last: Some(2) };
        p.kmap_high(Pfn(2));
        assert_eq!(p.slots.get(&Pfn(2)), Some(&PkmapSlot::Known(4)));
        assert_eq!(p.last, Some(4));
    }

    #[test]
    fn kmap_without_a_known_cursor_takes_an_unknown_slot() {
        let mut p = Pkmap { nr: 512, slots: BTreeMap::new(), last: None };
        p.kmap_high(Pfn(5));
        assert_eq!(p.slots.get(&Pfn(5)), Some(&PkmapSlot::Unknown));
        assert_eq!(p.last, None);
        p.set_last(Some(512));
        assert_eq!(p.last, None, "out of range means unknown");
        p.set_last(Some(7));
        p.kmap_high(Pfn(6));
        assert_eq!(p.slots.get(&Pfn(6)), Some(&PkmapSlot::Known(8)));
    }

    #[test]
    fn table_merges_runs_whose_pages_and_addresses_continue() {
        let mut m = Maps::new(&a32());
        m.pkmap.set_last(Some(0));
        m.pkmap.kmap_high(Pfn(0x7e100));
        m.pkmap.kmap_high(Pfn(0x7e101));
        m.pkmap.kmap_high(Pfn(0x7e103));
        m.vmap(0x7e000, 64);
        let t = m.table(&a32(), &[(0x6f000, 0x6f010), (0x7e000, 0x80000)], &[(Handle(3), 2, true)]);
        let summary: Vec<_> = t.iter().map(|r| (r.kind, r.first, r.pages, r.mem, r.va)).collect();
        assert_eq!(
            summary,
            vec![
                (MapKind::Lin, PageAddr::Pfn(Pfn(0x6f000)), 16, MemType::Wb, Some(0xef00_0000)),
                (MapKind::Lin, PageAddr::Buffer { handle: Handle(3), index: 0 }, 2, MemType::Wb, None),
                (MapKind::Vmap, PageAddr::Pfn(Pfn(0x7e000)), 64, MemType::Nc, None),
                (MapKind::Vmap, PageAddr::Buffer { handle: Handle(3), index: 0 }, 2, MemType::Nc, None),
                (MapKind::Pkmap, PageAddr::Pfn(Pfn(0x7e100)), 2, MemType::Wb, Some(0xbfe0_1000)),
                (MapKind::Pkmap, PageAddr::Pfn(Pfn(0x7e103)), 1, MemType::Wb, Some(0xbfe0_3000)),
            ]
        );
    }

    #[test]
    fn v7_arm64_runs_are_ptes_and_6x_leave_the_level_to_the_kernel() {
        // cma-spec-7x §11.5: 7.x arm64 LIN runs are `level=PTE attr=MT_NORMAL_TAGGED` (wb).
        let p7 = KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64);
        let mut m = Maps::new(&p7);
        m.vmap(0x7dc00, 32);
        let t = m.table(&p7, &[(0x7dc00, 0x7fc00)], &[]);
        assert!(t.iter().all(|r| r.level == Some(MapLevel::Pte)), "{t:?}");
        assert_eq!(t[0].kind, MapKind::Lin);
        assert_eq!((t[0].mem, t[0].pages, t[0].va), (MemType::Wb, 8192, Some(0xffff_0000_3dc0_0000)));
        let p6 = KernelProfile::qemu_virt_1g(Version::V6_12, Arch::Arm64);
        assert!(Maps::new(&p6).table(&p6, &[(0x7cc00, 0x7ec00)], &[]).iter().all(|r| r.level.is_none()));
        assert!(Maps::new(&a32()).table(&a32(), &[(0x7e000, 0x80000)], &[]).iter().all(|r| r.level.is_none()));
    }
}
