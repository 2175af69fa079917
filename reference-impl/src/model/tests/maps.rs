//! The mapping model (spec §5.5-§5.7, §6.3) and the PKMAP slots (spec §5.6), one kernel function
//! per test.

use super::*;
use crate::alias::{scan, AliasClass, AliasRule};
use crate::observation::MapRun;

/// Every (kind, mem, va) mapping `addr`, from an observation's table.
fn maps_of(o: &Observation, addr: PageAddr) -> Vec<(MapKind, MemType, Option<u64>)> {
    let mut out = Vec::new();
    for r in &o.maps {
        let offset = match (r.first, addr) {
            (PageAddr::Pfn(f), PageAddr::Pfn(p)) if p >= f && p.0 - f.0 < r.pages => p.0 - f.0,
            (PageAddr::Buffer { handle: h1, index: i1 }, PageAddr::Buffer { handle: h2, index: i2 })
                if h1 == h2 && i2 >= i1 && i2 - i1 < r.pages =>
            {
                i2 - i1
            }
            _ => continue,
        };
        out.push((r.kind, r.mem, r.va.map(|v| v + (offset << 12))));
    }
    out.sort();
    out
}

fn pfn(base: u64, bit: u64) -> PageAddr {
    PageAddr::Pfn(Pfn(base + bit))
}

fn buffer(h: u32, index: u64) -> PageAddr {
    PageAddr::Buffer { handle: Handle(h), index }
}

fn kinds(v: &[(MapKind, MemType, Option<u64>)]) -> Vec<(MapKind, MemType)> {
    v.iter().map(|(k, m, _)| (*k, *m)).collect()
}

const LIN_WB: (MapKind, MemType) = (MapKind::Lin, MemType::Wb);
const LIN_NC: (MapKind, MemType) = (MapKind::Lin, MemType::Nc);
const VMAP_NC: (MapKind, MemType) = (MapKind::Vmap, MemType::Nc);
const PKMAP_WB: (MapKind, MemType) = (MapKind::Pkmap, MemType::Wb);

fn lin_va(pfn: u64) -> u64 {
    0xc000_0000 + ((pfn - 0x40000) << 12)
}

fn check(m: &Model) {
    if let Err(e) = m.check_invariants() {
        panic!("invariants broken: {e}");
    }
}

#[test]
fn atomic_pool_init_on_highmem_cma_vmaps_the_pool_nc_and_leaves_free_pages_unmapped() {
    // atomic_pool_init() -> __alloc_from_contiguous() -> dma_common_contiguous_remap(): bits 0..63.
    let o = model(Arch::Arm32).observe();
    assert_eq!(
        o.maps,
        vec![MapRun {
            kind: MapKind::Vmap,
            first: PageAddr::Pfn(Pfn(A32_BASE)),
            pages: 64,
            mem: MemType::Nc,
            va: None,
            level: None
        }]
    );
    assert_eq!(o.pkmap_last, None, "boot: the cursor is unknown");
}

#[test]
fn dma_contiguous_remap_keeps_a_lowmem_area_lin_wb_and_the_pool_lin_nc() {
    // dma_contiguous_remap(): 4 KiB WB PTEs over the area; atomic_pool_init() -> __dma_remap() NC.
    let m = lowmem_model();
    let o = m.observe();
    assert_eq!(maps_of(&o, pfn(A32L_BASE, 0)), vec![(MapKind::Lin, MemType::Nc, Some(0xde00_0000))]);
    assert_eq!(maps_of(&o, pfn(A32L_BASE, 63)), vec![(MapKind::Lin, MemType::Nc, Some(lin_va(A32L_BASE + 63)))]);
    assert_eq!(maps_of(&o, pfn(A32L_BASE, 64)), vec![(MapKind::Lin, MemType::Wb, Some(lin_va(A32L_BASE + 64)))]);
    assert_eq!(maps_of(&o, pfn(A32L_BASE, 8191)), vec![(MapKind::Lin, MemType::Wb, Some(0xdfff_f000))]);
    assert_eq!(o.maps.len(), 2, "one NC run, one WB run: {:?}", o.maps);
    check(&m);
}

#[test]
fn alloc_from_contiguous_on_lowmem_dma_remaps_the_linear_map_nc_and_free_restores_wb() {
    // __alloc_from_contiguous() -> __dma_remap(page, size, pgprot_dmacoherent): LIN NC only;
    // __free_from_contiguous() -> __dma_remap(page, size, PAGE_KERNEL): LIN WB again.
    let mut m = lowmem_model();
    let (o, obs) = go(&mut m, "dma_alloc size=12K\ndma_alloc size=8K attrs=wc\nobserve\ndma_free h=0\nobserve");
    assert_eq!(o[..2], [at(A32L_BASE, 64, 3), at(A32L_BASE, 68, 2)]);
    let live = &obs[0].1;
    for bit in [64, 65, 66, 68, 69] {
        assert_eq!(
            maps_of(live, pfn(A32L_BASE, bit)),
            vec![(MapKind::Lin, MemType::Nc, Some(lin_va(A32L_BASE + bit)))]
        );
    }
    assert_eq!(kinds(&maps_of(live, pfn(A32L_BASE, 67))), vec![LIN_WB]);
    let freed = &obs[1].1;
    assert_eq!(kinds(&maps_of(freed, pfn(A32L_BASE, 64))), vec![LIN_WB]);
    assert_eq!(kinds(&maps_of(freed, pfn(A32L_BASE, 68))), vec![LIN_NC]);
    assert!(scan(&live.maps, &m.alias_rules()).is_empty());
    check(&m);
}

#[test]
fn alloc_from_contiguous_on_highmem_uses_dma_common_contiguous_remap_and_free_unmaps() {
    // dma_common_contiguous_remap(): VMAP NC, no LIN; dma_common_free_remap(): vunmap.
    let mut m = model(Arch::Arm32);
    let (o, obs) = go(&mut m, "dma_alloc size=12K\nobserve\ndma_free h=0\nobserve");
    assert_eq!(o[0], at(A32_BASE, 64, 3));
    assert_eq!(kinds(&maps_of(&obs[0].1, pfn(A32_BASE, 66))), vec![VMAP_NC]);
    assert_eq!(kinds(&maps_of(&obs[0].1, pfn(A32_BASE, 67))), vec![]);
    assert_eq!(obs[0].1.maps.len(), 1, "pool and buffer vmaps merge into one run of 67 pages");
    assert_eq!(kinds(&maps_of(&obs[1].1, pfn(A32_BASE, 64))), vec![]);
    assert_eq!(obs[1].1, model(Arch::Arm32).observe());
}

#[test]
fn alloc_from_pool_changes_no_mapping() {
    // __alloc_from_pool() / __free_from_pool(): gen_pool only, the pool's NC mapping stays.
    for mut m in [model(Arch::Arm32), lowmem_model()] {
        let before = m.observe().maps;
        let (o, obs) = go(&mut m, "dma_alloc size=8K gfp=atomic\nobserve\ndma_free h=0\nobserve");
        assert!(matches!(o[0], Outcome::Allocated { .. }));
        assert_eq!(obs[0].1.maps, before);
        assert_eq!(obs[1].1.maps, before);
    }
}

#[test]
fn dma_direct_alloc_no_mapping_leaves_cma_and_buddy_pages_as_they_were() {
    // dma_direct_alloc_no_mapping() (path G): no remap; a buddy page keeps its LIN WB section.
    let mut m = lowmem_model();
    let before = m.observe();
    let (o, obs) = go(&mut m, "dma_alloc size=32K attrs=nokmap\ndma_alloc size=4K attrs=nokmap\nobserve");
    assert_eq!(o[..2], [at(A32L_BASE, 64, 8), outside(1)]);
    assert_eq!(maps_of(&obs[0].1, pfn(A32L_BASE, 64)), maps_of(&before, pfn(A32L_BASE, 64)));
    assert_eq!(kinds(&maps_of(&obs[0].1, buffer(1, 0))), vec![LIN_WB]);
    let mut hm = model(Arch::Arm32);
    let (_, obs) = go(&mut hm, "dma_alloc size=32K attrs=nokmap\nobserve");
    assert_eq!(kinds(&maps_of(&obs[0].1, pfn(A32_BASE, 64))), vec![], "highmem CMA page stays unmapped");
    check(&m);
    check(&hm);
}

#[test]
fn cma_alloc_and_pin_keep_the_free_page_mappings() {
    // cma_alloc() / alloc_contig_range() touch no page table.
    let mut m = lowmem_model();
    let before = m.observe().maps;
    let (_, obs) = go(&mut m, "cma_alloc area=reserved count=16\npin area=reserved off=200\nobserve");
    assert_eq!(obs[0].1.maps, before);
    check(&m);
}

#[test]
fn alloc_remap_buffer_without_cma_keeps_the_linear_alias_by_design() {
    // __alloc_remap_buffer() (path R) and the atomic pool without CMA: buddy pages LIN WB + VMAP
    // NC, reported by handle; the alias is the arm32 remap allocator's, by design.
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    p.default_area = None;
    let boot = Observation { areas: vec![area_obs("linux,cma", 0x60000, 4096, 0, 0)], ..Default::default() };
    let mut m = match Model::new(p, &boot) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let (_, obs) =
        go(&mut m, "dma_alloc size=12K\ndma_alloc size=8K gfp=atomic\ndma_alloc size=8K attrs=nokmap\nobserve");
    let o = &obs[0].1;
    assert_eq!(kinds(&maps_of(o, buffer(0, 2))), vec![LIN_WB, VMAP_NC]);
    assert_eq!(kinds(&maps_of(o, buffer(1, 1))), vec![LIN_WB, VMAP_NC]);
    assert_eq!(kinds(&maps_of(o, buffer(2, 0))), vec![LIN_WB]);
    assert_eq!(maps_of(o, buffer(0, 3)), vec![]);
    let aliases = scan(&o.maps, &m.alias_rules());
    assert_eq!(aliases.len(), 2);
    assert!(aliases.iter().all(|a| a.class == AliasClass::ByDesign(AliasRule::Arm32RemapLinearAlias)));
    assert_eq!((aliases[0].first, aliases[0].pages), (buffer(0, 0), 3));
    check(&m);
    m.reset();
    assert!(m.observe().maps.iter().all(|r| matches!(r.first, PageAddr::Pfn(_))), "freed buffers are gone");
}

#[test]
fn arm64_dma_direct_alloc_vmaps_nc_beside_the_linear_map() {
    // dma_direct_alloc() (V64): LIN WB (map_mem) + VMAP NC (dma_common_contiguous_remap); free
    // vunmaps. The boot pools (dma_atomic_pool_init) are VMAP NC for good.
    let mut m = model(Arch::Arm64);
    let boot = m.observe();
    assert_eq!(
        maps_of(&boot, pfn(A64_BASE, 0)),
        vec![(MapKind::Lin, MemType::Wb, Some(0xffff_ff80_3cc0_0000)), (MapKind::Vmap, MemType::Nc, None)]
    );
    assert_eq!(kinds(&maps_of(&boot, pfn(A64_BASE, 96))), vec![LIN_WB]);
    let (o, obs) = go(
        &mut m,
        "dma_alloc size=12K\ndma_alloc size=4K\ndma_alloc size=32K attrs=nokmap\nobserve\ndma_free h=0\nobserve",
    );
    assert_eq!(o[..3], [at(A64_BASE, 96, 3), outside(1), at(A64_BASE, 104, 8)]);
    let live = &obs[0].1;
    assert_eq!(kinds(&maps_of(live, pfn(A64_BASE, 98))), vec![LIN_WB, VMAP_NC]);
    assert_eq!(kinds(&maps_of(live, buffer(1, 0))), vec![LIN_WB, VMAP_NC]);
    assert_eq!(kinds(&maps_of(live, pfn(A64_BASE, 104))), vec![LIN_WB], "G64: no remap");
    let aliases = scan(&live.maps, &m.alias_rules());
    assert!(aliases.iter().all(|a| a.class == AliasClass::ByDesign(AliasRule::Arm64LinearAlias)), "{aliases:?}");
    assert_eq!(kinds(&maps_of(&obs[1].1, pfn(A64_BASE, 98))), vec![LIN_WB]);
    assert_eq!(live.pkmap_last, None);
    check(&m);
}

#[test]
fn arm64_atomic_pool_expand_vmaps_the_new_chunk_for_good() {
    // atomic_pool_expand(): the worker's 32 CMA pages at bit 96 are VMAP NC and stay so.
    let mut m = model(Arch::Arm64);
    let (_, obs) = go(&mut m, "dma_alloc size=8K gfp=atomic\ndma_free h=0\nobserve");
    assert_eq!(kinds(&maps_of(&obs[0].1, pfn(A64_BASE, 96))), vec![LIN_WB, VMAP_NC]);
    assert_eq!(kinds(&maps_of(&obs[0].1, pfn(A64_BASE, 127))), vec![LIN_WB, VMAP_NC]);
    assert_eq!(kinds(&maps_of(&obs[0].1, pfn(A64_BASE, 128))), vec![LIN_WB]);
    m.reset();
    assert_eq!(kinds(&maps_of(&m.observe(), pfn(A64_BASE, 96))), vec![LIN_WB, VMAP_NC]);
    check(&m);
}

#[test]
fn arm64_lin_va_is_unknown_on_6_12() {
    let m = match Model::new(KernelProfile::qemu_virt_1g(Version::V6_12, Arch::Arm64), &arm64_boot()) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    assert!(m.observe().maps.iter().all(|r| r.va.is_none()));
}

// ---------------------------------------------------------------------------------------------
// PKMAP (spec §5.6).

#[test]
fn kmap_then_dma_alloc_on_highmem_leaves_pkmap_wb_beside_vmap_nc_a_violation() {
    // spec §5.6 / §9.1 [observed]: kmap_high() + kunmap_high() on free bit 64, then a 4 KiB
    // __alloc_from_contiguous() receives that page: PKMAP WB + VMAP NC. dma_free keeps the slot.
    let mut m = model(Arch::Arm32);
    m.set_pkmap_last(Some(10));
    let (o, obs) = go(&mut m, "kmap area=reserved off=64\ndma_alloc size=4K\nobserve\ndma_free h=0\nobserve");
    assert_eq!(o[..2], [Outcome::Kmapped { pfn: Pfn(A32_BASE + 64) }, at(A32_BASE, 64, 1)]);
    let live = &obs[0].1;
    assert_eq!(
        maps_of(live, pfn(A32_BASE, 64)),
        vec![(MapKind::Vmap, MemType::Nc, None), (MapKind::Pkmap, MemType::Wb, Some(0xbfe0_b000))]
    );
    assert_eq!(live.pkmap_last, Some(11));
    let aliases = scan(&live.maps, &m.alias_rules());
    assert_eq!(aliases.len(), 1);
    assert_eq!((aliases[0].first, aliases[0].pages, aliases[0].class), (pfn(A32_BASE, 64), 1, AliasClass::Violation));
    let freed = &obs[1].1;
    assert_eq!(kinds(&maps_of(freed, pfn(A32_BASE, 64))), vec![PKMAP_WB], "the slot outlives the buffer");
    assert!(scan(&freed.maps, &m.alias_rules()).is_empty());
    check(&m);
}

#[test]
fn kmap_is_refused_like_pin_on_allocated_pinned_and_outside_pages() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "kmap area=reserved off=5\nkmap area=reserved off=-1\nkmap area=reserved off=8192\n\
         cma_alloc area=reserved count=1\nkmap area=reserved off=64\npin area=reserved off=70\n\
         kmap area=reserved off=70",
    );
    assert_eq!(
        o,
        vec![
            Outcome::Refused, // the atomic pool's bits
            Outcome::Refused,
            Outcome::Refused,
            at(A32_BASE, 64, 1),
            Outcome::Refused,
            Outcome::Pinned { pfn: Pfn(A32_BASE + 70) },
            Outcome::Refused,
        ]
    );
    assert!(m.observe().maps.iter().all(|r| r.kind != MapKind::Pkmap));
}

#[test]
fn kmap_of_a_free_lowmem_page_or_on_arm64_is_a_noop_after_the_refusal_checks() {
    // kmap() of a lowmem page is page_address(); arm64 has no CONFIG_HIGHMEM.
    let mut m = lowmem_model();
    let before = m.clone();
    assert_eq!(
        outcomes(&mut m, "kmap area=reserved off=100\nkmap area=reserved off=5"),
        vec![Outcome::Noop, Outcome::Refused]
    );
    assert_eq!(m, before);
    let mut m = model(Arch::Arm64);
    let before = m.clone();
    let o = outcomes(&mut m, "kmap area=reserved off=100\nkmap area=reserved off=5\nkmap area=reserved off=-1");
    assert_eq!(o, vec![Outcome::Noop, Outcome::Refused, Outcome::Refused]);
    assert_eq!(m, before);
}

#[test]
fn kmap_of_a_page_still_held_under_a_cleared_bit_fails_in_alloc_contig_range() {
    // opb 2 partial release (as for pin): the driver cannot take the page; nothing is mapped.
    let boot = Observation { areas: vec![area_obs("big", 0x78000, 64, 2, 0)], ..Default::default() };
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    p.default_area = None;
    let mut m = match Model::new(p, &boot) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let o = outcomes(&mut m, "cma_alloc area=big count=5\ncma_release_raw area=big off=3 count=2\nkmap area=big off=1");
    assert_eq!(o[2], Outcome::PinFailed { pfn: Pfn(0x78001) });
    assert!(m.observe().maps.iter().all(|r| r.kind != MapKind::Pkmap));
}

#[test]
fn kmap_high_reuses_a_slot_and_map_new_virtual_flushes_on_wrap() {
    // kmap_high(): page_address() non-NULL -> same slot; map_new_virtual() wraps to slot 0 and
    // runs flush_all_zero_pkmaps(), which drops every unused slot.
    let mut m = model(Arch::Arm32);
    m.set_pkmap_last(Some(510));
    let o = outcomes(&mut m, "kmap area=reserved off=100\nkmap area=reserved off=100");
    assert_eq!(o, vec![Outcome::Kmapped { pfn: Pfn(A32_BASE + 100) }; 2]);
    assert_eq!(maps_of(&m.observe(), pfn(A32_BASE, 100)), vec![(MapKind::Pkmap, MemType::Wb, Some(0xbfff_f000))]);
    assert_eq!(m.observe().pkmap_last, Some(511));
    outcomes(&mut m, "kmap area=reserved off=101\nkmap area=reserved off=102");
    let o = m.observe();
    assert_eq!(maps_of(&o, pfn(A32_BASE, 100)), vec![], "flushed at the wrap");
    assert_eq!(maps_of(&o, pfn(A32_BASE, 101)), vec![(MapKind::Pkmap, MemType::Wb, Some(0xbfe0_0000))]);
    assert_eq!(maps_of(&o, pfn(A32_BASE, 102)), vec![(MapKind::Pkmap, MemType::Wb, Some(0xbfe0_1000))]);
    assert_eq!(o.pkmap_last, Some(1));
    check(&m);
}

#[test]
fn reset_runs_kmap_flush_unused_and_forgets_the_cursor_until_told() {
    let mut m = model(Arch::Arm32);
    m.set_pkmap_last(Some(3));
    outcomes(&mut m, "kmap area=reserved off=100");
    m.reset();
    let o = m.observe();
    assert!(o.maps.iter().all(|r| r.kind != MapKind::Pkmap));
    assert_eq!(o.pkmap_last, None);
    // Without a cursor a new slot's address is unknown; the page is still PKMAP-mapped.
    outcomes(&mut m, "kmap area=reserved off=100");
    assert_eq!(maps_of(&m.observe(), pfn(A32_BASE, 100)), vec![(MapKind::Pkmap, MemType::Wb, None)]);
    assert_eq!(m.observe().pkmap_last, None);
    m.set_pkmap_last(Some(40));
    outcomes(&mut m, "kmap area=reserved off=101");
    assert_eq!(maps_of(&m.observe(), pfn(A32_BASE, 101)), vec![(MapKind::Pkmap, MemType::Wb, Some(0xbfe2_9000))]);
    check(&m);
    m.reset_to_boot();
    assert_eq!(m.observe(), model(Arch::Arm32).observe());
}

#[test]
fn check_invariants_catches_stray_mappings_and_shared_pkmap_slots() {
    let mut m = lowmem_model();
    outcomes(&mut m, "dma_alloc size=8K");
    check(&m);
    let mut bad = m.clone();
    bad.state.maps.dma_remap(A32L_BASE + 300, 1, MemType::Nc);
    assert!(bad.check_invariants().is_err_and(|e| e.contains("differ")), "NC LIN on a free page");
    let mut bad = m.clone();
    bad.state.maps.dma_remap(A32L_BASE + 64, 2, MemType::Wb);
    assert!(bad.check_invariants().is_err(), "live buffer lost its NC mapping");
    let mut bad = model(Arch::Arm32);
    bad.state.maps.vmap(A32_BASE + 100, 1);
    assert!(bad.check_invariants().is_err(), "VMAP on a free CMA page");
    let mut bad = model(Arch::Arm32);
    bad.state.maps.vmap(A32_BASE - 10, 1);
    assert!(bad.check_invariants().is_err_and(|e| e.contains("outside")), "state outside the areas");
    let mut bad = model(Arch::Arm32);
    bad.state.maps.pkmap.slots.insert(Pfn(A32_BASE + 100), crate::maps::PkmapSlot::Known(3));
    bad.state.maps.pkmap.slots.insert(Pfn(A32_BASE + 101), crate::maps::PkmapSlot::Known(3));
    assert!(bad.check_invariants().is_err_and(|e| e.contains("slot 3")));
    let mut bad = lowmem_model();
    bad.state.maps.pkmap.slots.insert(Pfn(A32L_BASE + 100), crate::maps::PkmapSlot::Unknown);
    assert!(bad.check_invariants().is_err_and(|e| e.contains("highmem")));
}
