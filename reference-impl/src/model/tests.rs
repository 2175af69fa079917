use super::*;
use crate::bitmap::Bitmap;
use crate::observation::AreaObservation;
use crate::observation::{MapKind, PageAddr};
use crate::profile::{Arch, Version};
use crate::program::{DmaAttrs, Gfp, Program};
use crate::units::Bytes;
use proptest::prelude::*;

mod maps;

const A32_BASE: u64 = 0x7e000;
const A64_BASE: u64 = 0x7cc00;

fn area_obs(name: &str, base: u64, count: u64, opb: u32, used: u64) -> AreaObservation {
    let mut map = Bitmap::zeroed(count >> opb);
    map.set(0, used);
    AreaObservation::single(name, Pfn(base), Pages(count), opb, map.words())
}

/// spec §9.1: arm32 highmem area, boot bits 0-63 (the atomic pool).
fn arm32_boot() -> Observation {
    Observation { areas: vec![area_obs("reserved", A32_BASE, 8192, 0, 64)], cma_free: None, ..Default::default() }
}

/// spec §9.1: arm64 area, boot bits 0-95 (pools kernel, dma, dma32).
fn arm64_boot() -> Observation {
    Observation { areas: vec![area_obs("reserved", A64_BASE, 8192, 0, 96)], cma_free: None, ..Default::default() }
}

/// spec §9.1 / target arm32-lowmem-6.1: 512 MiB, no highmem, the area at pfn 0x5e000 in lowmem.
const A32L_BASE: u64 = 0x5e000;

fn lowmem_profile() -> KernelProfile {
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    p.max_pfn = Pfn(0x60000);
    p.max_low_pfn = Pfn(0x60000);
    p
}

fn lowmem_model() -> Model {
    let boot = Observation { areas: vec![area_obs("reserved", A32L_BASE, 8192, 0, 64)], ..Default::default() };
    match Model::new(lowmem_profile(), &boot) {
        Ok(m) => m,
        Err(e) => panic!("boot rejected: {e}"),
    }
}

fn model(arch: Arch) -> Model {
    let boot = if arch == Arch::Arm64 { arm64_boot() } else { arm32_boot() };
    match Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, arch), &boot) {
        Ok(m) => m,
        Err(e) => panic!("boot rejected: {e}"),
    }
}

/// arm64 7.2 on 1 GiB: base 0x7dc00, the dma pool alone at bits 0-31 (cma-spec-7x §9).
fn arm64_7x_model() -> Model {
    let mut a = area_obs("reserved", 0x7dc00, 8192, 0, 32);
    a.available = Some(Pages(8192 - 32));
    let boot = Observation { areas: vec![a], ..Default::default() };
    match Model::new(KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64), &boot) {
        Ok(m) => m,
        Err(e) => panic!("boot rejected: {e}"),
    }
}

/// Parse, resolve against the model's current areas, run.
fn go(m: &mut Model, text: &str) -> (Vec<Outcome>, Vec<(usize, Observation)>) {
    let prog = match Program::parse(text).map(|p| p.resolve(&m.observe().areas)) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("{e}"),
    };
    run(m, &prog)
}

fn outcomes(m: &mut Model, text: &str) -> Vec<Outcome> {
    go(m, text).0
}

fn at(base: u64, bit: u64, pages: u64) -> Outcome {
    Outcome::Allocated { pfn: Pfn(base + bit), pages: Pages(pages) }
}

fn outside(pages: u64) -> Outcome {
    Outcome::AllocatedOutsideCma { pages: Pages(pages) }
}

/// Set bits of area 0, as half-open runs.
fn runs(m: &Model) -> Vec<(u64, u64)> {
    runs_of(&m.observe())
}

#[test]
fn cma_alloc_reproduces_the_spec_worked_example() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "cma_alloc area=reserved count=3\ncma_alloc area=reserved count=5\n\
         cma_alloc area=reserved count=5 align=3\ncma_alloc area=reserved count=1 align=12",
    );
    assert_eq!(o, vec![at(A32_BASE, 64, 3), at(A32_BASE, 67, 5), at(A32_BASE, 72, 5), at(A32_BASE, 4096, 1)]);
}

#[test]
fn cma_alloc_order_12_on_arm64_lands_on_a_physically_aligned_pfn() {
    // spec §9.1: cma_alloc(5,3) -> 96, cma_alloc(1,12) -> 1024 (pfn 0x7d000) because of offset 0xc00.
    let mut m = model(Arch::Arm64);
    let o = outcomes(&mut m, "cma_alloc area=reserved count=5 align=3\ncma_alloc area=0 count=1 align=12");
    assert_eq!(o, vec![at(A64_BASE, 96, 5), Outcome::Allocated { pfn: Pfn(0x7d000), pages: Pages(1) }]);
}

#[test]
fn cma_alloc_on_arm32_highmem_probe_gives_64_then_4096() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(&mut m, "cma_alloc area=reserved count=5 align=3\ncma_alloc area=reserved count=1 align=12");
    assert_eq!(o, vec![at(A32_BASE, 64, 5), at(A32_BASE, 4096, 1)]);
}

#[test]
fn cma_alloc_of_zero_pages_or_more_than_the_area_fails() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(&mut m, "cma_alloc area=reserved count=0\ncma_alloc area=reserved count=8193");
    assert_eq!(o, vec![Outcome::AllocFailed, Outcome::AllocFailed]);
    assert_eq!(runs(&m), vec![(0, 64)]);
}

#[test]
fn partial_release_of_pages_3_and_4_leaves_bits_64_to_66() {
    let mut m = model(Arch::Arm32);
    let (o, obs) = go(
        &mut m,
        "cma_alloc area=reserved count=5\ncma_release_raw area=reserved off=67 count=2\nobserve\n\
         cma_alloc area=reserved count=2\ncma_release h=0",
    );
    assert_eq!(
        o,
        vec![at(A32_BASE, 64, 5), Outcome::Released, Outcome::Observed, at(A32_BASE, 67, 2), Outcome::Released]
    );
    assert_eq!(runs_of(&obs[0].1), vec![(0, 67)]);
    // The hole was reusable, and the rest could still be released by handle.
    assert_eq!(runs(&m), vec![(0, 64), (67, 69)]);
}

#[test]
fn cma_release_by_handle_frees_only_the_runs_still_held() {
    let mut m = model(Arch::Arm32);
    // h0 = bits 64..72; punch 66..68 out; h1 takes the hole; releasing h0 must not touch h1.
    let o = outcomes(
        &mut m,
        "cma_alloc area=reserved count=8\ncma_release_raw area=reserved off=66 count=2\n\
         cma_alloc area=reserved count=2\ncma_release h=0",
    );
    assert_eq!(o, vec![at(A32_BASE, 64, 8), Outcome::Released, at(A32_BASE, 66, 2), Outcome::Released]);
    assert_eq!(runs(&m), vec![(0, 64), (66, 68)]);
}

#[test]
fn cma_release_raw_at_base_plus_count_is_rejected_by_cma_pages_valid() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "cma_release_raw area=reserved off=8192 count=1\ncma_release_raw area=reserved off=-1 count=1\n\
         cma_release_raw area=reserved off=-9223372036854775808 count=0",
    );
    assert_eq!(o, vec![Outcome::ReleaseRejected; 3]);
}

#[test]
fn cma_release_raw_of_zero_pages_inside_is_released_without_change() {
    let mut m = model(Arch::Arm32);
    let before = m.observe();
    assert_eq!(outcomes(&mut m, "cma_release_raw area=reserved off=5 count=0"), vec![Outcome::Released]);
    assert_eq!(m.observe(), before);
}

#[test]
fn cma_release_raw_of_pages_no_cma_handle_holds_is_refused() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "cma_release_raw area=reserved off=0 count=1\n\
         cma_release_raw area=reserved off=100 count=1\n\
         dma_alloc size=12K\n\
         cma_release_raw area=reserved off=64 count=1\n\
         cma_alloc area=reserved count=2\n\
         cma_release_raw area=reserved off=67 count=3\n\
         cma_release_raw area=reserved off=8191 count=2",
    );
    assert_eq!(
        o,
        vec![
            Outcome::Refused, // atomic pool pages, held since boot
            Outcome::Refused, // free pages: a double free
            at(A32_BASE, 64, 3),
            Outcome::Refused, // a dma_alloc buffer
            at(A32_BASE, 67, 2),
            Outcome::Refused, // runs one page past the handle
            Outcome::Refused, // runs past the end of the area
        ]
    );
    assert_eq!(runs(&m), vec![(0, 69)]);
}

#[test]
fn cma_release_raw_spanning_two_handles_releases_both_and_kills_emptied_handles() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "cma_alloc area=reserved count=2\ncma_alloc area=reserved count=3\n\
         cma_release_raw area=reserved off=64 count=4\ncma_release h=0\ncma_release h=1",
    );
    assert_eq!(o, vec![at(A32_BASE, 64, 2), at(A32_BASE, 66, 3), Outcome::Released, Outcome::Noop, Outcome::Released]);
    assert_eq!(runs(&m), vec![(0, 64)]);
}

#[test]
fn dead_unknown_failed_and_wrong_kind_handles_are_noops() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "cma_release h=0\n\
         cma_alloc area=reserved count=0\n\
         cma_release h=0\n\
         cma_alloc area=reserved count=1\n\
         dma_free h=1\n\
         cma_release h=1\n\
         cma_release h=1\n\
         dma_alloc size=4096\n\
         cma_release h=2\n\
         dma_free h=2\n\
         dma_free h=2\n\
         dma_free h=7",
    );
    assert_eq!(
        o,
        vec![
            Outcome::Noop,
            Outcome::AllocFailed,
            Outcome::Noop,
            at(A32_BASE, 64, 1),
            Outcome::Noop,
            Outcome::Released,
            Outcome::Noop,
            at(A32_BASE, 64, 1),
            Outcome::Noop,
            Outcome::Released,
            Outcome::Noop,
            Outcome::Noop,
        ]
    );
}

#[test]
fn out_of_range_ops_are_bad_ops_like_the_driver_rejects_them() {
    let mut m = model(Arch::Arm32);
    let ops = [
        ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(0), count: Pages(1), align: Order(32) },
        ResolvedOp::CmaAlloc { area: AreaId(1), h: Handle(0), count: Pages(1), align: Order(0) },
        ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(MAX_HANDLES), count: Pages(1), align: Order(0) },
        ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(0), count: Pages(1 << 32), align: Order(0) },
        ResolvedOp::CmaReleaseRaw { area: AreaId(0), off: 64, count: Pages(1 << 32) },
        ResolvedOp::CmaReleaseRaw { area: AreaId(3), off: 64, count: Pages(1) },
        ResolvedOp::DmaAlloc { h: Handle(0), size: Bytes((1 << 30) + 1), attrs: DmaAttrs::default(), gfp: Gfp::Kernel },
        ResolvedOp::CmaRelease { h: Handle(MAX_HANDLES) },
        ResolvedOp::DmaFree { h: Handle(u32::MAX) },
    ];
    for op in &ops {
        assert_eq!(m.step(op), Outcome::BadOp, "{op:?}");
    }
    assert_eq!(runs(&m), vec![(0, 64)]);
}

#[test]
fn huge_counts_are_bad_ops_on_arm32_but_reach_the_kernel_on_arm64() {
    let mut m = model(Arch::Arm64);
    let alloc = ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(0), count: Pages(1 << 32), align: Order(0) };
    assert_eq!(m.step(&alloc), Outcome::AllocFailed);
    let raw = ResolvedOp::CmaReleaseRaw { area: AreaId(0), off: 64, count: Pages(1 << 32) };
    assert_eq!(m.step(&raw), Outcome::Refused);
}

#[test]
fn allocating_into_a_live_slot_is_a_bad_op() {
    let mut m = model(Arch::Arm32);
    let a = ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(0), count: Pages(1), align: Order(0) };
    let d = ResolvedOp::DmaAlloc { h: Handle(0), size: Bytes(1), attrs: DmaAttrs::default(), gfp: Gfp::Kernel };
    assert_eq!(m.step(&a), at(A32_BASE, 64, 1));
    assert_eq!(m.step(&a), Outcome::BadOp);
    assert_eq!(m.step(&d), Outcome::BadOp);
    assert_eq!(m.step(&ResolvedOp::CmaRelease { h: Handle(0) }), Outcome::Released);
    assert_eq!(m.step(&d), at(A32_BASE, 64, 1));
}

#[test]
fn arm32_dma_reproduces_the_highmem_probe_rows() {
    let mut m = model(Arch::Arm32);
    let (o, obs) = go(
        &mut m,
        "dma_alloc size=12K\n\
         dma_alloc size=4K\n\
         dma_alloc size=8K attrs=wc\n\
         dma_alloc size=4K attrs=nokmap\n\
         dma_alloc size=32K attrs=nokmap\n\
         dma_alloc size=32K attrs=nokmap gfp=atomic\n\
         observe\n\
         dma_alloc size=8K gfp=atomic\n\
         dma_alloc size=12K gfp=atomic attrs=wc\n\
         observe\n\
         dma_free h=0\ndma_free h=1\ndma_free h=2\ndma_free h=3\ndma_free h=4\ndma_free h=5\n\
         dma_free h=6\ndma_free h=7\n\
         observe\n\
         dma_alloc size=0\n\
         dma_alloc size=0 attrs=nokmap\n\
         dma_alloc size=0 gfp=atomic",
    );
    assert_eq!(
        o[..9],
        [
            at(A32_BASE, 64, 3), // path C, even for 12 KiB
            at(A32_BASE, 67, 1), // path C also for one page
            at(A32_BASE, 68, 2), // wc: same allocator
            outside(1),          // nokmap, one page: buddy
            at(A32_BASE, 72, 8), // nokmap GFP_KERNEL: CMA, 8-aligned
            outside(8),          // nokmap GFP_ATOMIC: buddy
            Outcome::Observed,
            at(A32_BASE, 0, 2), // atomic pool offset 0
            at(A32_BASE, 4, 3), // pool, order-aligned
        ]
    );
    assert_eq!(obs[0].1, obs[1].1, "pool allocations do not touch the CMA bitmap");
    assert_eq!(obs[2].1, model(Arch::Arm32).observe(), "frees restore the boot bitmap and mappings");
    assert_eq!(o[o.len() - 3..], [Outcome::AllocFailed, Outcome::AllocFailed, Outcome::AllocFailed]);
}

#[test]
fn arm32_path_c_has_no_fallback_when_cma_fails() {
    let mut m = model(Arch::Arm32);
    // 32 MiB area minus the pool: a 32 MiB kernel allocation cannot fit.
    let o = outcomes(&mut m, "dma_alloc size=32M\ndma_alloc size=32M attrs=nokmap\ndma_alloc size=2M attrs=nokmap");
    assert_eq!(o, vec![Outcome::AllocFailed, Outcome::AllocFailed, at(A32_BASE, 256, 512)]);
}

#[test]
fn arm32_atomic_pool_exhaustion_fails_and_frees_make_room() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "dma_alloc size=128K gfp=atomic\ndma_alloc size=128K gfp=atomic\ndma_alloc size=4K gfp=atomic\n\
         dma_free h=0\ndma_alloc size=4K gfp=atomic",
    );
    assert_eq!(
        o,
        vec![at(A32_BASE, 0, 32), at(A32_BASE, 32, 32), Outcome::AllocFailed, Outcome::Released, at(A32_BASE, 0, 1)]
    );
    assert_eq!(runs(&m), vec![(0, 64)]);
}

#[test]
fn arm32_without_a_default_area_uses_the_buddy_allocator_everywhere() {
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    p.default_area = None;
    let boot =
        Observation { areas: vec![area_obs("linux,cma", 0x60000, 4096, 0, 0)], cma_free: None, ..Default::default() };
    let mut m = match Model::new(p, &boot) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let o = outcomes(
        &mut m,
        "dma_alloc size=12K\ndma_alloc size=8K gfp=atomic\ndma_alloc size=64K attrs=nokmap\n\
         dma_alloc size=8M\ndma_alloc size=300K gfp=atomic",
    );
    assert_eq!(o, vec![outside(3), outside(2), outside(16), Outcome::AllocFailed, Outcome::AllocFailed]);
    assert_eq!(runs(&m), vec![]);
}

#[test]
fn arm64_dma_reproduces_the_probe_rows_including_the_pool_expansion() {
    let mut m = model(Arch::Arm64);
    let (o, obs) = go(
        &mut m,
        "dma_alloc size=12K\n\
         dma_alloc size=4K\n\
         dma_alloc size=8K attrs=wc\n\
         dma_alloc size=4K attrs=nokmap\n\
         dma_alloc size=32K attrs=nokmap\n\
         dma_alloc size=32K attrs=nokmap gfp=atomic\n\
         dma_alloc size=8K gfp=atomic\n\
         observe\n\
         dma_alloc size=12K gfp=atomic attrs=wc\n\
         dma_free h=6\ndma_free h=7\n\
         observe",
    );
    assert_eq!(
        o[..9],
        [
            at(A64_BASE, 96, 3),  // V64: CMA, order-2 aligned after the pools
            outside(1),           // one page: buddy
            at(A64_BASE, 100, 2), // wc
            outside(1),
            at(A64_BASE, 104, 8), // G64: CMA, 8-aligned
            outside(8),
            at(A64_BASE, 32, 2), // dma pool, offset 32 of the area
            Outcome::Observed,
            at(A64_BASE, 128, 3), // from the new chunk the worker added
        ]
    );
    let expanded = vec![(0, 99), (100, 102), (104, 112), (128, 160)];
    assert_eq!(runs_of(&obs[0].1), expanded, "the worker took 32 pages at bit 128");
    assert_eq!(runs_of(&obs[1].1), expanded, "pool chunks stay after the frees");
}

fn runs_of(o: &Observation) -> Vec<(u64, u64)> {
    let a = &o.areas[0];
    let mut out: Vec<(u64, u64)> = Vec::new();
    for i in 0..a.bitmap_bits() {
        if a.bit(i) {
            match out.last_mut() {
                Some((_, e)) if *e == i => *e = i + 1,
                _ => out.push((i, i + 1)),
            }
        }
    }
    out
}

#[test]
fn arm64_pool_worker_runs_after_allocations_but_not_after_frees() {
    let mut m = model(Arch::Arm64);
    let o = outcomes(&mut m, "dma_alloc size=4K gfp=atomic\ndma_free h=0\ndma_alloc size=4K gfp=atomic");
    // First alloc: dma pool offset 32, avail 31 < 32 -> worker adds 32 pages at bit 96. The free
    // schedules nothing; the second alloc comes from the new chunk, whose pool avail stays >= 32.
    assert_eq!(o, vec![at(A64_BASE, 32, 1), Outcome::Released, at(A64_BASE, 96, 1)]);
    assert_eq!(runs(&m), vec![(0, 128)]);
}

#[test]
fn arm64_pool_worker_grows_a_pool_by_its_current_size() {
    let mut m = model(Arch::Arm64);
    let o = outcomes(&mut m, "dma_alloc size=128K gfp=atomic\ndma_alloc size=128K gfp=atomic");
    // 32 pages empty the boot chunk -> +32 pages (order 5) at 96; the next 32 empty that chunk ->
    // pool size 64 -> +64 pages (order 6, 64-aligned) at 128.
    assert_eq!(o, vec![at(A64_BASE, 32, 32), at(A64_BASE, 96, 32)]);
    assert_eq!(runs(&m), vec![(0, 192)]);
}

#[test]
fn arm64_atomic_allocation_larger_than_any_chunk_fails_without_expanding() {
    let mut m = model(Arch::Arm64);
    let o = outcomes(&mut m, "dma_alloc size=256K gfp=atomic\ndma_alloc size=0 gfp=atomic\ndma_alloc size=0");
    assert_eq!(o, vec![Outcome::AllocFailed; 3]);
    assert_eq!(runs(&m), vec![(0, 96)]);
}

#[test]
fn arm64_wide_mask_uses_the_kernel_pool_first() {
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_12, Arch::Arm64);
    p.coherent_dma_mask_bits = 64;
    let mut m = match Model::new(p, &arm64_boot()) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(outcomes(&mut m, "dma_alloc size=8K gfp=atomic"), vec![at(A64_BASE, 0, 2)]);
    assert_eq!(runs(&m), vec![(0, 128)], "the kernel pool expanded");
}

#[test]
fn model_new_refuses_a_boot_bitmap_without_the_atomic_pool() {
    let boot =
        Observation { areas: vec![area_obs("reserved", A32_BASE, 8192, 0, 32)], cma_free: None, ..Default::default() };
    let r = Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32), &boot);
    assert!(matches!(r, Err(ModelError::PoolNotInBootBitmap { first_bit: 0, end_bit: 64, .. })), "{r:?}");
    let r = Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm64), &arm32_boot());
    assert!(matches!(r, Err(ModelError::PoolNotInBootBitmap { first_bit: 64, end_bit: 96, .. })), "{r:?}");
}

#[test]
fn model_new_refuses_a_missing_default_area_and_bad_bitmaps() {
    let mut boot = arm32_boot();
    boot.areas[0].name = "linux,cma".into();
    let r = Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32), &boot);
    assert!(matches!(&r, Err(ModelError::DefaultAreaMissing { name, .. }) if name == "reserved"), "{r:?}");
    let mut boot = arm32_boot();
    boot.areas[0].ranges[0].bitmap.push(0);
    let r = Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32), &boot);
    assert!(matches!(r, Err(ModelError::BitmapLength { expected: 256, got: 257, .. })), "{r:?}");
    let mut boot = arm32_boot();
    boot.areas[0].count = Pages(8190);
    boot.areas[0].ranges[0].count = Pages(8190);
    boot.areas[0].ranges[0].bitmap[255] |= 1 << 31;
    let r = Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32), &boot);
    assert!(matches!(r, Err(ModelError::StrayBits { .. })), "{r:?}");
    let mut boot = arm32_boot();
    boot.areas[0].count = Pages(8190);
    let r = Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32), &boot);
    assert!(matches!(r, Err(ModelError::RangeCounts { count: 8190, sum: 8192, .. })), "{r:?}");
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    p.page_shift = 40;
    assert!(matches!(Model::new(p, &arm32_boot()), Err(ModelError::Profile { field: "page_shift", .. })));
}

#[test]
fn disabled_area_fails_every_alloc_and_rejects_every_release() {
    let boot = Observation {
        areas: vec![area_obs("reserved", A32_BASE, 8192, 0, 64), area_obs("broken", 0x50000, 0, 0, 0)],
        cma_free: None,
        ..Default::default()
    };
    let mut m = match Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32), &boot) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let o = outcomes(&mut m, "cma_alloc area=broken count=1\ncma_release_raw area=broken off=0 count=0");
    assert_eq!(o, vec![Outcome::AllocFailed, Outcome::ReleaseRejected]);
}

#[test]
fn reset_to_boot_restores_the_boot_state_and_drops_handles() {
    let mut m = model(Arch::Arm64);
    outcomes(&mut m, "cma_alloc area=reserved count=7\ndma_alloc size=8K gfp=atomic");
    assert_ne!(m.observe(), model(Arch::Arm64).observe());
    m.reset_to_boot();
    assert_eq!(m.observe(), model(Arch::Arm64).observe());
    assert_eq!(outcomes(&mut m, "cma_release h=0\ndma_free h=1"), vec![Outcome::Noop, Outcome::Noop]);
    assert_eq!(outcomes(&mut m, "dma_alloc size=4K gfp=atomic"), vec![at(A64_BASE, 32, 1)]);
}

#[test]
fn reset_frees_every_handle_but_keeps_the_pool_growth_of_atomic_pool_expand() {
    let mut m = model(Arch::Arm64);
    outcomes(&mut m, "cma_alloc area=reserved count=7\ndma_alloc size=8K gfp=atomic\ndma_alloc size=64K");
    let grown = m.observe().areas[0].used_bits();
    m.reset();
    let after = m.observe().areas[0].used_bits();
    assert!(after > 96, "atomic_pool_expand() chunks stay in CMA: {after} bits");
    assert!(after < grown, "handles were freed: {after} of {grown} bits");
    assert_eq!(m.check_invariants(), Ok(()));
    assert_eq!(outcomes(&mut m, "cma_release h=0\ndma_free h=1"), vec![Outcome::Noop, Outcome::Noop]);
    m.reset_to_boot();
    assert_eq!(m.observe(), model(Arch::Arm64).observe());
}

#[test]
fn check_invariants_holds_on_mixed_programs_and_catches_a_stray_bit() {
    let mut m = model(Arch::Arm64);
    outcomes(
        &mut m,
        "cma_alloc area=reserved count=100 align=3\ncma_release_raw area=reserved off=200 count=10\n\
         dma_alloc size=4K gfp=atomic\ndma_alloc size=1M\npin area=reserved off=5000\ncma_alloc area=reserved count=3",
    );
    assert_eq!(m.check_invariants(), Ok(()));
    m.state.areas[0].ranges[0].bitmap.set(8000, 1);
    assert!(m.check_invariants().is_err());
}

#[test]
fn run_reports_one_observation_per_observe_op_with_its_index() {
    let mut m = model(Arch::Arm32);
    let (o, obs) = go(&mut m, "observe\ncma_alloc area=reserved count=1\nobserve");
    assert_eq!(o, vec![Outcome::Observed, at(A32_BASE, 64, 1), Outcome::Observed]);
    assert_eq!(obs.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(obs[0].1.cma_free, None);
    assert_eq!(obs[1].1.areas[0].used_bits(), 65);
}

#[test]
fn order_per_bit_area_releases_clear_floor_and_ceil_bits() {
    // model-only: opb 2, 64 pages = 16 bits; alloc 5 pages -> 2 bits; raw release of pages 3..5
    // clears bit floor(3/4)=0 .. +ceil(2/4)=1 -> bit 0 only, although page 4 lives under bit 1.
    let boot = Observation { areas: vec![area_obs("big", 0x10000, 64, 2, 0)], cma_free: None, ..Default::default() };
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    p.default_area = None;
    let mut m = match Model::new(p, &boot) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let (o, obs) = go(
        &mut m,
        "cma_alloc area=big count=5\ncma_release_raw area=big off=3 count=2\nobserve\n\
         cma_alloc area=big count=1\ncma_release h=0",
    );
    // Bit 0 looked free but pages 0..3 were still allocated: the window there met -EBUSY and the
    // search moved on. Releasing the rest of h0 cleared bit 0 again; bit 1 stays set over free
    // pages (a leak, as in the kernel); bit 2 is the new allocation.
    assert_eq!(o, vec![at(0x10000, 0, 5), Outcome::Released, Outcome::Observed, at(0x10000, 8, 1), Outcome::Released]);
    assert_eq!(runs_of(&obs[0].1), vec![(1, 2)]);
    assert_eq!(runs(&m), vec![(1, 3)]);
}

// ---------------------------------------------------------------------------------------------
// Pins: pages taken by alloc_contig_range(pfn, pfn + 1) with the bitmap untouched (spec §2.5).

fn pinned(base: u64, bit: u64) -> Outcome {
    Outcome::Pinned { pfn: Pfn(base + bit) }
}

#[test]
fn cma_alloc_over_a_page_pinned_by_alloc_contig_range_retries_at_68_on_arm32() {
    // spec §9.1: pin bit 65, cma_alloc(4, 2) -> window 64-67 meets -EBUSY, retry at 64 + 3 + 1.
    let mut m = model(Arch::Arm32);
    let (o, obs) = go(
        &mut m,
        "pin area=reserved off=65
observe
cma_alloc area=reserved count=4 align=2",
    );
    assert_eq!(o, vec![pinned(A32_BASE, 65), Outcome::Observed, at(A32_BASE, 68, 4)]);
    assert_eq!(runs_of(&obs[0].1), vec![(0, 64)], "a pin leaves the CMA bitmap alone");
    assert_eq!(runs(&m), vec![(0, 64), (68, 72)], "the busy window's bits were cleared");
}

#[test]
fn cma_alloc_over_a_page_pinned_by_alloc_contig_range_retries_at_100_on_arm64() {
    // spec §9.1: pin bit 97, cma_alloc(4, 2) -> 100.
    let mut m = model(Arch::Arm64);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=97
cma_alloc area=reserved count=4 align=2",
    );
    assert_eq!(o, vec![pinned(A64_BASE, 97), at(A64_BASE, 100, 4)]);
    assert_eq!(runs(&m), vec![(0, 96), (100, 104)]);
}

#[test]
fn cma_alloc_align_0_slides_its_window_one_bit_per_ebusy_past_a_pin() {
    // spec §2.3 with mask 0: windows 64-66, 65-67, 66-68 all cover bit 66; 67-69 is the first
    // that does not.
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=66
cma_alloc area=reserved count=3",
    );
    assert_eq!(o, vec![pinned(A32_BASE, 66), at(A32_BASE, 67, 3)]);
    assert_eq!(runs(&m), vec![(0, 64), (67, 70)]);
    // With align 1 (mask 1) the retry starts at 64 + 1 + 1 = 66, which still covers the pin,
    // then at 68: two windows, not three.
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=66
cma_alloc area=reserved count=3 align=1",
    );
    assert_eq!(o, vec![pinned(A32_BASE, 66), at(A32_BASE, 68, 3)]);
}

#[test]
fn dma_alloc_cma_window_over_a_pin_retries_like_cma_alloc() {
    // arm32 __alloc_from_contiguous -> dma_alloc_from_contiguous(4 pages, order 2); arm64
    // dma_alloc_contiguous -> cma_alloc_aligned(order 2): the same retry as cma_alloc(4, 2).
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=65
dma_alloc size=16K",
    );
    assert_eq!(o, vec![pinned(A32_BASE, 65), at(A32_BASE, 68, 4)]);
    let mut m = model(Arch::Arm64);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=97
dma_alloc size=16K",
    );
    assert_eq!(o, vec![pinned(A64_BASE, 97), at(A64_BASE, 100, 4)]);
}

#[test]
fn pin_of_a_page_whose_cma_bitmap_bit_is_set_is_refused() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=0
         cma_alloc area=reserved count=2
         pin area=reserved off=65
         dma_alloc size=8K
         pin area=reserved off=67
         pin area=reserved off=68",
    );
    assert_eq!(
        o,
        vec![
            Outcome::Refused, // atomic pool, set since boot
            at(A32_BASE, 64, 2),
            Outcome::Refused, // held by h0
            at(A32_BASE, 66, 2),
            Outcome::Refused, // a dma_alloc buffer in CMA
            pinned(A32_BASE, 68),
        ]
    );
}

#[test]
fn pin_outside_the_area_is_refused_and_on_an_unknown_area_is_a_bad_op() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=8192
pin area=reserved off=-1
pin area=reserved off=-9223372036854775808",
    );
    assert_eq!(o, vec![Outcome::Refused; 3]);
    assert_eq!(m.step(&ResolvedOp::Pin { area: AreaId(1), off: 100 }), Outcome::BadOp);
    assert_eq!(m.step(&ResolvedOp::Unpin { area: AreaId(1), off: 100 }), Outcome::BadOp);
}

#[test]
fn double_pin_is_refused_and_unpin_of_an_unpinned_page_is_a_noop() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "unpin area=reserved off=100
         pin area=reserved off=100
         pin area=reserved off=100
         unpin area=reserved off=101
         unpin area=reserved off=-5
         unpin area=reserved off=100
         unpin area=reserved off=100",
    );
    assert_eq!(
        o,
        vec![
            Outcome::Noop,
            pinned(A32_BASE, 100),
            Outcome::Refused,
            Outcome::Noop,
            Outcome::Noop,
            Outcome::Unpinned { pfn: Pfn(A32_BASE + 100) },
            Outcome::Noop,
        ]
    );
}

#[test]
fn unpin_by_free_contig_range_makes_the_page_allocatable_again() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=64
cma_alloc area=reserved count=1
unpin area=reserved off=64
         cma_alloc area=reserved count=1",
    );
    assert_eq!(
        o,
        vec![
            pinned(A32_BASE, 64),
            at(A32_BASE, 65, 1),
            Outcome::Unpinned { pfn: Pfn(A32_BASE + 64) },
            at(A32_BASE, 64, 1)
        ]
    );
}

#[test]
fn cma_release_raw_covering_a_pinned_page_is_refused() {
    // No handle holds a pinned page: releasing it would be a free_contig_range of a page the
    // driver still holds, so the driver refuses, even when the rest of the range is held.
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "pin area=reserved off=66
         cma_alloc area=reserved count=2
         cma_release_raw area=reserved off=66 count=1
         cma_release_raw area=reserved off=64 count=3
         cma_release_raw area=reserved off=64 count=2",
    );
    assert_eq!(
        o,
        vec![pinned(A32_BASE, 66), at(A32_BASE, 64, 2), Outcome::Refused, Outcome::Refused, Outcome::Released]
    );
    assert_eq!(outcomes(&mut m, "cma_alloc area=reserved count=3"), vec![at(A32_BASE, 67, 3)], "still pinned");
}

#[test]
fn the_65th_pin_is_refused_until_one_is_unpinned() {
    let mut m = model(Arch::Arm32);
    let pins: String = (0..MAX_PINS as u64).map(|i| format!("pin area=reserved off={}\n", 1000 + i)).collect();
    let o = outcomes(&mut m, &pins);
    assert!(o.iter().all(|x| matches!(x, Outcome::Pinned { .. })), "{o:?}");
    let more = "pin area=reserved off=2000
unpin area=reserved off=1000
pin area=reserved off=2000";
    assert_eq!(
        outcomes(&mut m, more),
        vec![Outcome::Refused, Outcome::Unpinned { pfn: Pfn(A32_BASE + 1000) }, pinned(A32_BASE, 2000)]
    );
}

#[test]
fn reset_unpins_every_page() {
    let mut m = model(Arch::Arm32);
    outcomes(&mut m, "pin area=reserved off=65");
    m.reset();
    let o = outcomes(
        &mut m,
        "cma_alloc area=reserved count=4 align=2
unpin area=reserved off=65",
    );
    assert_eq!(o, vec![at(A32_BASE, 64, 4), Outcome::Noop]);
}

#[test]
fn pin_of_a_page_still_held_under_a_cleared_bit_fails_in_alloc_contig_range() {
    // model-only, order_per_bit 2: a partial release of pages 3..5 clears bit 0 while pages 0-2
    // stay allocated; pinning page 1 passes the driver's bitmap check but test_pages_isolated()
    // fails (-EBUSY), so the kernel returns an error and nothing is pinned.
    let boot = Observation { areas: vec![area_obs("big", 0x10000, 64, 2, 0)], cma_free: None, ..Default::default() };
    let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    p.default_area = None;
    let mut m = match Model::new(p, &boot) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let o = outcomes(
        &mut m,
        "cma_alloc area=big count=5
cma_release_raw area=big off=3 count=2
pin area=big off=1
         pin area=big off=3
unpin area=big off=1",
    );
    assert_eq!(
        o,
        vec![
            at(0x10000, 0, 5),
            Outcome::Released,
            Outcome::PinFailed { pfn: Pfn(0x10001) },
            Outcome::Pinned { pfn: Pfn(0x10003) },
            Outcome::Noop,
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests of the model's invariants.

/// One step of a random scenario; handle-relative steps are turned into concrete ops against the
/// model's live state so that most of them do something.
#[derive(Clone, Debug)]
enum Step {
    Alloc { count: u64, align: u32 },
    Release { pick: usize },
    RawOfHandle { pick: usize, start: u64, len: u64 },
    RawAnywhere { off: i64, count: u64 },
    Dma { kib: u64, attrs: DmaAttrs, gfp: Gfp },
    DmaFree { pick: usize },
    Pin { off: i64 },
    Unpin { pick: usize },
    Kmap { off: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    let attrs = (any::<bool>(), prop::bool::weighted(0.3)).prop_map(|(wc, nokmap)| DmaAttrs { wc, nokmap });
    let gfp = prop_oneof![Just(Gfp::Kernel), Just(Gfp::Atomic)];
    prop_oneof![
        4 => (0u64..300, 0u32..13).prop_map(|(count, align)| Step::Alloc { count, align }),
        2 => any::<usize>().prop_map(|pick| Step::Release { pick }),
        3 => (any::<usize>(), 0u64..64, 0u64..64).prop_map(|(pick, start, len)| Step::RawOfHandle { pick, start, len }),
        1 => (-4i64..8200, 0u64..40).prop_map(|(off, count)| Step::RawAnywhere { off, count }),
        3 => (0u64..200, attrs, gfp).prop_map(|(kib, attrs, gfp)| Step::Dma { kib, attrs, gfp }),
        2 => any::<usize>().prop_map(|pick| Step::DmaFree { pick }),
        2 => (-2i64..400).prop_map(|off| Step::Pin { off }),
        1 => any::<usize>().prop_map(|pick| Step::Unpin { pick }),
        2 => (-2i64..400).prop_map(|off| Step::Kmap { off }),
    ]
}

fn live(m: &Model, cma: bool) -> Vec<u32> {
    m.state.handles.iter().filter(|(_, h)| matches!(h, Holding::Cma { .. }) == cma).map(|(k, _)| *k).collect()
}

fn concrete(m: &Model, next_h: &mut u32, s: &Step) -> ResolvedOp {
    let area = AreaId(0);
    let mut new_h = || {
        let h = Handle(*next_h);
        *next_h += 1;
        h
    };
    let pick = |cma: bool, i: usize| {
        let l = live(m, cma);
        if l.is_empty() {
            Handle(MAX_HANDLES - 1)
        } else {
            Handle(l[i % l.len()])
        }
    };
    match *s {
        Step::Alloc { count, align } => {
            ResolvedOp::CmaAlloc { area, h: new_h(), count: Pages(count), align: Order(align) }
        }
        Step::Release { pick: i } => ResolvedOp::CmaRelease { h: pick(true, i) },
        Step::RawOfHandle { pick: i, start, len } => {
            let h = pick(true, i);
            match m.state.handles.get(&h.0) {
                Some(Holding::Cma { held, .. }) => {
                    let runs = held.runs();
                    let (s0, e0) = runs[(start as usize) % runs.len()];
                    let off = s0 + start % (e0 - s0);
                    let count = (len % (e0 - off + 1)).max(1);
                    ResolvedOp::CmaReleaseRaw { area, off: off as i64, count: Pages(count) }
                }
                _ => ResolvedOp::CmaReleaseRaw { area, off: 64, count: Pages(len) },
            }
        }
        Step::RawAnywhere { off, count } => ResolvedOp::CmaReleaseRaw { area, off, count: Pages(count) },
        Step::Dma { kib, attrs, gfp } => ResolvedOp::DmaAlloc { h: new_h(), size: Bytes(kib * 1024), attrs, gfp },
        Step::DmaFree { pick: i } => ResolvedOp::DmaFree { h: pick(false, i) },
        Step::Pin { off } => ResolvedOp::Pin { area, off },
        Step::Kmap { off } => ResolvedOp::Kmap { area, off },
        Step::Unpin { pick: i } => {
            let base = m.state.areas[0].base_pfn();
            let off = m.state.pinned.iter().nth(i % m.state.pinned.len().max(1)).map_or(300, |p| p.0 - base);
            ResolvedOp::Unpin { area, off: off as i64 }
        }
    }
}

/// Pages owned by live holdings and by pool chunks added after boot, per page of area 0.
fn ownership(m: &Model) -> Vec<u32> {
    let a = &m.state.areas[0];
    let mut own = vec![0u32; a.count as usize];
    let mut mark = |first: u64, n: u64| {
        for p in first..first + n {
            own[p as usize] += 1;
        }
    };
    for h in m.state.handles.values() {
        match h {
            Holding::Cma { area: 0, held } => {
                for &(s, e) in held.runs() {
                    mark(s, e - s);
                }
            }
            Holding::Dma { pages, backing: DmaBacking::Cma { area: 0, pfn }, .. } => mark(pfn - a.base_pfn(), *pages),
            _ => {}
        }
    }
    for (id, pool) in &m.state.pools {
        let boot_chunks = m.boot.pools.get(id).map_or(0, |p| p.chunks().len());
        for c in &pool.chunks()[boot_chunks..] {
            if let Some(base) = c.base_pfn {
                mark(base - a.base_pfn(), c.pages());
            }
        }
    }
    own
}

fn check_invariants(m: &Model) -> Result<(), TestCaseError> {
    let a = &m.state.areas[0];
    let boot = &m.boot.areas[0];
    prop_assert_eq!(
        &a.ranges[0].bitmap,
        &a.ranges[0].taken,
        "opb 0: bitmap bit set <=> page out of the buddy allocator"
    );
    let own = ownership(m);
    for (page, &n) in own.iter().enumerate() {
        let p = page as u64;
        prop_assert!(n <= 1, "page {} owned {} times", p, n);
        prop_assert!(!(n == 1 && boot.ranges[0].bitmap.test(p)), "page {} owned but set at boot", p);
        prop_assert_eq!(a.ranges[0].bitmap.test(p), n == 1 || boot.ranges[0].bitmap.test(p), "bit {}", p);
    }
    let held: u64 = m
        .state
        .handles
        .values()
        .map(|h| match h {
            Holding::Cma { held, .. } => held.len(),
            _ => 0,
        })
        .sum();
    prop_assert!(a.ranges[0].bitmap.weight() >= boot.ranges[0].bitmap.weight() + held);
    prop_assert!(m.state.pinned.len() <= MAX_PINS);
    for p in &m.state.pinned {
        let off = p.0 - a.base_pfn();
        prop_assert!(!a.ranges[0].bitmap.test(off) && own[off as usize] == 0, "pinned page {} is also allocated", off);
    }
    Ok(())
}

fn scenario(arch: Arch, steps: &[Step]) -> Result<(), TestCaseError> {
    scenario_on(model(arch), steps)
}

fn scenario_on(mut m: Model, steps: &[Step]) -> Result<(), TestCaseError> {
    let arch = m.profile().arch;
    let boot = m.clone();
    let rules = m.alias_rules();
    let mut kmapped = BTreeSet::new();
    let mut next_h = 0u32;
    for s in steps {
        let op = concrete(&m, &mut next_h, s);
        let before = m.clone();
        let outcome = m.step(&op);
        if let Outcome::Kmapped { pfn } = outcome {
            kmapped.insert(pfn);
        }
        if let (ResolvedOp::CmaAlloc { count, align, .. }, Outcome::Allocated { pfn, pages }) = (&op, &outcome) {
            prop_assert_eq!(pages, count);
            prop_assert_eq!(pfn.0 % (1u64 << align.0), 0, "physical alignment");
            prop_assert!(m.observe().areas[0].contains(*pfn));
        }
        if let (ResolvedOp::CmaAlloc { count, .. }, Outcome::Allocated { pfn, .. }) = (&op, &outcome) {
            let pins = m.state.pinned.range(*pfn..Pfn(pfn.0 + count.0)).count();
            prop_assert_eq!(pins, 0, "an allocation over a pinned page");
        }
        if matches!(outcome, Outcome::Noop | Outcome::Refused | Outcome::ReleaseRejected | Outcome::AllocFailed) {
            // Failed pool allocations schedule no worker, so nothing at all changes.
            prop_assert_eq!(&m, &before, "{:?} -> {:?} changed the state", op, outcome);
        }
        check_invariants(&m)?;
        prop_assert_eq!(m.check_invariants(), Ok(()), "after {:?} -> {:?}", op, outcome);
        check_no_violation_but_kmap_aliases(&m, &rules, &kmapped)?;
    }
    // Releasing every live handle restores the boot bitmap plus the pool chunks added since.
    for h in live(&m, true) {
        prop_assert_eq!(m.step(&ResolvedOp::CmaRelease { h: Handle(h) }), Outcome::Released);
    }
    for h in live(&m, false) {
        prop_assert_eq!(m.step(&ResolvedOp::DmaFree { h: Handle(h) }), Outcome::Released);
    }
    let base = m.state.areas[0].base_pfn();
    for p in m.state.pinned.clone() {
        let unpin = ResolvedOp::Unpin { area: AreaId(0), off: (p.0 - base) as i64 };
        prop_assert_eq!(m.step(&unpin), Outcome::Unpinned { pfn: p });
    }
    check_invariants(&m)?;
    prop_assert_eq!(m.check_invariants(), Ok(()));
    prop_assert!(ownership(&m).iter().all(|&n| n == 0 || arch == Arch::Arm64));
    check_release_restores_mappings(&m, &boot)?;
    m.reset();
    prop_assert_eq!(m.observe().pkmap_last, None);
    prop_assert!(m.observe().maps.iter().all(|r| r.kind != MapKind::Pkmap), "kmap_flush_unused at reset");
    Ok(())
}

/// The alias scan of a model observation finds violations only where a kmap left a PKMAP slot on
/// a page that a coherent allocation then vmapped NC (spec §5.6).
fn check_no_violation_but_kmap_aliases(
    m: &Model,
    rules: &AliasRules,
    kmapped: &BTreeSet<Pfn>,
) -> Result<(), TestCaseError> {
    for a in crate::alias::scan(&m.observe().maps, rules) {
        if a.class != crate::alias::AliasClass::Violation {
            continue;
        }
        prop_assert_eq!(&a.mappings, &vec![(MapKind::Vmap, MemType::Nc), (MapKind::Pkmap, MemType::Wb)], "{:?}", a);
        let PageAddr::Pfn(first) = a.first else {
            return Err(TestCaseError::fail(format!("violation on a buffer page: {a:?}")));
        };
        for p in first.0..first.0 + a.pages {
            prop_assert!(kmapped.contains(&Pfn(p)), "violation on pfn {:#x}, never kmapped: {:?}", p, a);
        }
    }
    Ok(())
}

/// With every handle freed and every page unpinned, the mappings are the boot ones (PKMAP slots
/// aside), plus on arm64 the NC vmap of every pool chunk added since.
fn check_release_restores_mappings(m: &Model, boot: &Model) -> Result<(), TestCaseError> {
    let no_pkmap = |o: Observation| o.maps.into_iter().filter(|r| r.kind != MapKind::Pkmap).collect::<Vec<_>>();
    let now = no_pkmap(m.observe());
    if m.profile().arch.is_arm32() {
        prop_assert_eq!(now, no_pkmap(boot.observe()));
        prop_assert_eq!(m.observe().areas, boot.observe().areas);
        return Ok(());
    }
    let a = &m.state.areas[0];
    let mut pool_pages = Bitmap::zeroed(a.count);
    for pool in m.state.pools.values() {
        for c in pool.chunks() {
            if let Some(base) = c.base_pfn {
                pool_pages.set(base - a.base_pfn(), c.pages());
            }
        }
    }
    for r in &now {
        let PageAddr::Pfn(first) = r.first else {
            return Err(TestCaseError::fail(format!("buffer page after release: {r:?}")));
        };
        match (r.kind, r.mem) {
            (MapKind::Lin, MemType::Wb) => prop_assert_eq!((first.0, r.pages), (a.base_pfn(), a.count)),
            (MapKind::Vmap, MemType::Nc) => {
                let off = first.0 - a.base_pfn();
                prop_assert_eq!(pool_pages.find_next_zero_bit(off + r.pages, off), off + r.pages, "{:?}", r);
                pool_pages.clear(off, r.pages);
            }
            _ => return Err(TestCaseError::fail(format!("unexpected mapping after release: {r:?}"))),
        }
    }
    prop_assert_eq!(pool_pages.weight(), 0, "pool chunk pages without their vmap");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arm32_bitmap_is_boot_plus_held_pages_and_live_handles_never_overlap(
        steps in proptest::collection::vec(step(), 0..60)
    ) {
        scenario(Arch::Arm32, &steps)?;
    }

    #[test]
    fn arm32_lowmem_bitmap_and_mappings_stay_consistent(
        steps in proptest::collection::vec(step(), 0..60)
    ) {
        scenario_on(lowmem_model(), &steps)?;
    }

    #[test]
    fn arm32_highmem_with_a_known_pkmap_cursor_stays_consistent(
        last in 0u32..512,
        steps in proptest::collection::vec(step(), 0..60)
    ) {
        let mut m = model(Arch::Arm32);
        m.set_pkmap_last(Some(last));
        scenario_on(m, &steps)?;
    }

    #[test]
    fn arm64_7x_bitmap_available_count_and_mappings_stay_consistent(
        steps in proptest::collection::vec(step(), 0..60)
    ) {
        scenario_on(arm64_7x_model(), &steps)?;
    }

    #[test]
    fn arm64_bitmap_is_boot_plus_held_pages_plus_pool_chunks(
        steps in proptest::collection::vec(step(), 0..60)
    ) {
        scenario(Arch::Arm64, &steps)?;
    }

    #[test]
    fn release_right_after_alloc_restores_the_bitmap(
        setup in proptest::collection::vec((1u64..200, 0u32..10), 0..20),
        count in 1u64..500,
        align in 0u32..13,
        kib in 1u64..600,
        nokmap in any::<bool>(),
    ) {
        let mut m = model(Arch::Arm32);
        for (i, (c, a)) in setup.iter().enumerate() {
            m.step(&ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(i as u32), count: Pages(*c), align: Order(*a) });
        }
        let before = m.observe();
        let h = Handle(1000);
        if m.step(&ResolvedOp::CmaAlloc { area: AreaId(0), h, count: Pages(count), align: Order(align) }) != Outcome::AllocFailed {
            prop_assert_eq!(m.step(&ResolvedOp::CmaRelease { h }), Outcome::Released);
        }
        prop_assert_eq!(m.observe(), before.clone());
        let attrs = DmaAttrs { wc: false, nokmap };
        if m.step(&ResolvedOp::DmaAlloc { h, size: Bytes(kib * 1024), attrs, gfp: Gfp::Kernel }) != Outcome::AllocFailed {
            prop_assert_eq!(m.step(&ResolvedOp::DmaFree { h }), Outcome::Released);
        }
        prop_assert_eq!(m.observe(), before);
    }

    #[test]
    fn order_per_bit_areas_never_panic_and_allocate_inside_the_area(
        opb in 0u32..4,
        ops in proptest::collection::vec((0u64..40, 0u32..8, -3i64..70, 0u64..20, any::<bool>()), 0..40),
    ) {
        let boot = Observation { areas: vec![area_obs("big", 0x10000, 64, opb, 1)], cma_free: None, ..Default::default() };
        let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
        p.default_area = None;
        let mut m = Model::new(p, &boot).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, (count, align, off, n, raw)) in ops.into_iter().enumerate() {
            let op = if raw {
                ResolvedOp::CmaReleaseRaw { area: AreaId(0), off, count: Pages(n) }
            } else {
                ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(i as u32), count: Pages(count), align: Order(align) }
            };
            if let Outcome::Allocated { pfn, pages } = m.step(&op) {
                prop_assert!(pfn.0 >= 0x10000 && pfn.0 + pages.0 <= 0x10000 + 64);
            }
        }
    }
}

#[test]
fn dma_map_maps_what_a_handle_holds_and_changes_nothing() {
    for (arch, first) in [(Arch::Arm32, 64), (Arch::Arm64, 96)] {
        let punch =
            format!("cma_alloc area=reserved count=8\ncma_release_raw area=reserved off={} count=2\n", first + 3);
        let mut m = model(arch);
        let (o, obs) = go(
            &mut m,
            &(punch.clone()
                + "observe\n\
             dma_map h=0 dir=to_device\n\
             dma_alloc size=12288 attrs=nokmap\n\
             dma_map h=1 dir=from_device\n\
             dma_alloc size=4096 gfp=atomic\n\
             dma_map h=2\n\
             observe"),
        );
        assert_eq!(o[3], Outcome::Mapped { pages: Pages(6) }, "{arch:?}: the punched handle maps its 6 held pages");
        assert_eq!(o[5], Outcome::Mapped { pages: Pages(3) }, "{arch:?}");
        assert_eq!(o[7], Outcome::Mapped { pages: Pages(1) }, "{arch:?}: an atomic-pool buffer");
        assert_eq!(o[1], Outcome::Released, "{arch:?}");
        let after = &obs[1].1;
        // Between the observes only the two dma_allocs changed anything: the same state after
        // replaying the program without its dma_maps.
        let mut plain = model(arch);
        let (_, plain_obs) = go(
            &mut plain,
            &(punch + "observe\ndma_alloc size=12288 attrs=nokmap\ndma_alloc size=4096 gfp=atomic\nobserve"),
        );
        assert_eq!(after, &plain_obs[1].1, "{arch:?}: dma_map changed the observed state");
        assert_eq!(m, plain, "{arch:?}: dma_map changed the model's state");
    }
}

#[test]
fn dma_map_of_a_dead_freed_or_emptied_handle_is_a_noop() {
    let mut m = model(Arch::Arm32);
    let o = outcomes(
        &mut m,
        "dma_map h=0\n\
         cma_alloc area=reserved count=2\n\
         cma_release_raw area=reserved off=64 count=2\n\
         dma_map h=0\n\
         cma_alloc area=reserved count=0\n\
         dma_map h=1 dir=to_device\n\
         dma_alloc size=4096\n\
         dma_free h=2\n\
         dma_map h=2\n\
         dma_map h=4095",
    );
    assert_eq!(o[0], Outcome::Noop);
    assert_eq!(o[2], Outcome::Released);
    assert_eq!(o[3], Outcome::Noop, "every page raw-released: nothing to map");
    assert_eq!(o[5], Outcome::Noop, "a failed allocation");
    assert_eq!(o[8], Outcome::Noop, "a freed buffer");
    assert_eq!(o[9], Outcome::Noop, "a handle nothing defined");
}

#[test]
fn dma_map_of_pages_above_the_dma_mask_is_refused() {
    // An area above 4 GiB (arm64-hugetlb-ranges-7.2's hugetlb0 at pfn 0x100000) and one ending
    // exactly at 4 GiB.
    let boot = Observation {
        areas: vec![area_obs("reserved", 0xfe000, 8192, 0, 96), area_obs("high", 0x100000, 8192, 0, 0)],
        cma_free: None,
        ..Default::default()
    };
    let mut m = match Model::new(KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm64), &boot) {
        Ok(m) => m,
        Err(e) => panic!("boot rejected: {e}"),
    };
    let o = outcomes(
        &mut m,
        "cma_alloc area=high count=1\n\
         dma_map h=0\n\
         cma_alloc area=reserved count=8096\n\
         dma_map h=1 dir=from_device",
    );
    assert_eq!(o[1], Outcome::Refused);
    assert_eq!(o[2], at(0xfe000, 96, 8096));
    assert_eq!(o[3], Outcome::Mapped { pages: Pages(8096) }, "the last page below 4 GiB is mappable");
}
