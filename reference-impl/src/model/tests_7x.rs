//! The 7.2/7.3 rules, each pinned by a program from `cma-spec-7x.md` §11 with the values the spec
//! measured on booted 7.2/7.3 kernels (not values this model produced).

use super::*;
use crate::observation::{AreaObservation, RangeObservation};
use crate::profile::{Arch, Version};
use crate::program::Program;

/// arm64 7.x default-area base on 1 GiB `virt` (§1.5 **[observed 7.2 and 7.3]**).
const B7: u64 = 0x7dc00;

/// A 7.x area: one range, bits `[0, used)` set, `available_count = count - used`.
fn area7(name: &str, base: u64, count: u64, opb: u32, used: u64) -> AreaObservation {
    let mut map = Bitmap::zeroed(count >> opb);
    map.set(0, used);
    AreaObservation {
        name: name.into(),
        order_per_bit: opb,
        count: Pages(count),
        available: Some(Pages(count - (used << opb))),
        activated: true,
        ranges: vec![RangeObservation { base_pfn: Pfn(base), count: Pages(count), bitmap: map.words() }],
    }
}

fn boot(areas: Vec<AreaObservation>) -> Observation {
    Observation { areas, ..Default::default() }
}

fn new(p: KernelProfile, b: &Observation) -> Model {
    match Model::new(p, b) {
        Ok(m) => m,
        Err(e) => panic!("boot rejected: {e}"),
    }
}

/// arm64 7.2 on 1 GiB: `reserved` at 0x7dc00, the dma pool alone at bits 0-31 (§9 targets).
fn arm64_7(v: Version) -> Model {
    new(KernelProfile::qemu_virt_1g(v, Arch::Arm64), &boot(vec![area7("reserved", B7, 8192, 0, 32)]))
}

fn go(m: &mut Model, text: &str) -> (Vec<Outcome>, Vec<(usize, Observation)>) {
    let prog = match Program::parse(text).map(|p| p.resolve(&m.observe().areas)) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("{e}"),
    };
    run(m, &prog)
}

fn at(base: u64, bit: u64, pages: u64) -> Outcome {
    Outcome::Allocated { pfn: Pfn(base + bit), pages: Pages(pages) }
}

fn set_runs(a: &AreaObservation) -> Vec<(u64, u64)> {
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
fn v7_arm64_boot_has_only_the_dma_pool_at_bits_0_to_31() {
    // §11.1: observe -> bits 0-31 (used 32); a 6.12-exact model would want 0-95 and refuse
    // this bitmap.
    for v in [Version::V7_2, Version::V7_3] {
        let m = arm64_7(v);
        let a = &m.observe().areas[0];
        assert_eq!(set_runs(a), vec![(0, 32)]);
        assert_eq!(a.available, Some(Pages(8160)));
        assert_eq!(m.state.pools.keys().copied().collect::<Vec<_>>(), vec![PoolId::Dma]);
    }
    let six = Model::new(
        KernelProfile::qemu_virt_1g(Version::V6_12, Arch::Arm64),
        &boot(vec![AreaObservation::single(
            "reserved",
            Pfn(B7),
            Pages(8192),
            0,
            area7("r", B7, 8192, 0, 32).ranges[0].bitmap.clone(),
        )]),
    );
    assert!(matches!(six, Err(ModelError::PoolNotInBootBitmap { .. })), "6.12 wants three pools");
}

#[test]
fn v7_arm64_first_coherent_and_cma_allocations_follow_the_single_pool() {
    // §11.1 [observed]: dma_alloc 12288 -> bit 32 (pfn 0x7dc20); cma_alloc(1, 0) -> bit 35.
    let mut m = arm64_7(Version::V7_2);
    let (o, _) = go(&mut m, "dma_alloc size=12288 gfp=kernel\ncma_alloc area=reserved count=1 align=0");
    assert_eq!(o, vec![at(B7, 32, 3), at(B7, 35, 1)]);
    assert_eq!(m.observe().areas[0].available, Some(Pages(8192 - 32 - 3 - 1)));
}

#[test]
fn v7_arm64_atomic_allocation_comes_from_the_dma_pool_and_the_worker_takes_bits_64_to_95() {
    // §11.2 [observed 7.2+7.3]: h1 12 KiB -> 32-34, h2 8 KiB wc -> 36-37, h3 8 KiB atomic ->
    // pool offset 0 (pfn 0x7dc00), the worker's chunk at 64-95; the next atomic 12 KiB comes
    // from that chunk, bit 64 (§5.2).
    let mut m = arm64_7(Version::V7_3);
    let (o, obs) = go(
        &mut m,
        "dma_alloc size=12288 gfp=kernel\ndma_alloc size=8192 attrs=wc gfp=kernel\n\
         dma_alloc size=8192 gfp=atomic\nobserve\ndma_alloc size=12288 gfp=atomic",
    );
    assert_eq!(o, vec![at(B7, 32, 3), at(B7, 36, 2), at(B7, 0, 2), Outcome::Observed, at(B7, 64, 3)]);
    assert_eq!(m.check_invariants(), Ok(()));
    assert_eq!(set_runs(&obs[0].1.areas[0]), vec![(0, 35), (36, 38), (64, 96)]);
}

#[test]
fn v7_arm64_pin_at_bit_33_moves_cma_alloc_4_2_to_36_and_unpin_restores_32() {
    // §2.2 notes / §11.4 [observed 7.2 arm64, 7.3 arm64]: pin off=33, cma_alloc(4, 2) -> 36;
    // after unpin -> 32.
    let mut m = arm64_7(Version::V7_2);
    let (o, _) = go(
        &mut m,
        "pin area=reserved off=33\ncma_alloc area=reserved count=4 align=2\n\
         unpin area=reserved off=33\ncma_alloc area=reserved count=4 align=2",
    );
    assert_eq!(
        o,
        vec![
            Outcome::Pinned { pfn: Pfn(B7 + 33) },
            at(B7, 36, 4),
            Outcome::Unpinned { pfn: Pfn(B7 + 33) },
            at(B7, 32, 4)
        ]
    );
}

#[test]
fn v7_arm64_order_12_allocation_lands_on_bit_1024_with_base_0x7dc00() {
    // §11.3 [observed]: cma_alloc(1, 12) -> bit 1024 (pfn 0x7e000).
    let mut m = arm64_7(Version::V7_2);
    let (o, _) = go(&mut m, "cma_alloc area=reserved count=1 align=12");
    assert_eq!(o, vec![Outcome::Allocated { pfn: Pfn(0x7e000), pages: Pages(1) }]);
}

#[test]
fn v7_arm64_3g_has_one_512k_dma_pool_and_6g_a_kernel_and_a_dma_pool() {
    // §5.2 [observed 7.2 arm64]: 3 GiB -> dma pool 512 KiB, bits 0-127; 6 GiB -> kernel 0-255,
    // dma 256-511 (1 MiB each).
    let mut p3 = KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64);
    p3.max_pfn = Pfn(0x40000 + 3 * 0x40000);
    p3.max_low_pfn = p3.max_pfn;
    p3.atomic_pool_bytes = 512 << 10;
    let m3 = new(p3, &boot(vec![area7("reserved", 0xfd800, 8192, 0, 128)]));
    assert_eq!(m3.state.pools.keys().copied().collect::<Vec<_>>(), vec![PoolId::Dma]);
    let mut p6 = KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64);
    p6.max_pfn = Pfn(0x40000 + 6 * 0x40000);
    p6.max_low_pfn = p6.max_pfn;
    p6.atomic_pool_bytes = 1 << 20;
    let m6 = new(p6, &boot(vec![area7("reserved", 0xfe000, 8192, 0, 512)]));
    let chunk = |id| m6.state.pools.get(&id).and_then(|p| p.chunks().first().and_then(|c| c.base_pfn));
    assert_eq!((chunk(PoolId::Kernel), chunk(PoolId::Dma)), (Some(0xfe000), Some(0xfe000 + 256)));
    assert!(!m6.state.pools.contains_key(&PoolId::Dma32));
}

#[test]
fn v7_hugetlb_area_after_reserved_allocates_512_pages_at_its_base() {
    // §11.8 [observed 7.2 arm64 3 GiB hugetlb_cma=1G]: areas [reserved 0xfd800, hugetlb0 0x80000
    // opb 9 count 262144]; cma_alloc area=hugetlb0 count=512 align=9 -> bit 0 (pfn 0x80000).
    let mut p = KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64);
    p.max_pfn = Pfn(0x40000 + 3 * 0x40000);
    p.max_low_pfn = p.max_pfn;
    p.atomic_pool_bytes = 512 << 10;
    let mut m = new(p, &boot(vec![area7("reserved", 0xfd800, 8192, 0, 128), area7("hugetlb0", 0x80000, 262144, 9, 0)]));
    let (o, _) = go(&mut m, "cma_alloc area=hugetlb0 count=512 align=9\ncma_alloc area=1 count=1024");
    assert_eq!(o, vec![at(0x80000, 0, 512), at(0x80000, 512, 1024)]);
}

#[test]
fn v7_release_raw_past_the_end_is_refused_with_no_change() {
    // §11.6: cma_alloc h0 8; release_raw off=count-2 count=4 and off=0 count=count+1: the
    // kernel says false on 7.x, and the driver refuses both before asking it (no page changes).
    let mut m = arm64_7(Version::V7_2);
    let (o, _) = go(&mut m, "cma_alloc area=reserved count=8\nobserve");
    let before = m.observe();
    let (o2, _) =
        go(&mut m, "cma_release_raw area=reserved off=8190 count=4\ncma_release_raw area=reserved off=0 count=8193");
    assert_eq!(o[0], at(B7, 32, 8));
    assert_eq!(o2, vec![Outcome::Refused, Outcome::Refused]);
    assert_eq!(m.observe(), before);
}

#[test]
fn v7_disabled_area_accepts_a_zero_page_raw_release_inside_its_old_range() {
    // §11.7: an area whose activation failed keeps its range; release_raw off=0 count=0 -> 7.x
    // true (6.12 false); count 1 -> false on both.
    let broken = AreaObservation {
        name: "broken".into(),
        order_per_bit: 0,
        count: Pages(0),
        available: Some(Pages(0)),
        activated: false,
        ranges: vec![RangeObservation { base_pfn: Pfn(0x6fc00), count: Pages(2048), bitmap: vec![] }],
    };
    let mut m = new(
        KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64),
        &boot(vec![area7("reserved", B7, 8192, 0, 32), broken]),
    );
    let (o, _) = go(
        &mut m,
        "cma_release_raw area=broken off=0 count=0\ncma_release_raw area=broken off=0 count=1\n\
         cma_alloc area=broken count=1\npin area=broken off=0",
    );
    assert_eq!(o, vec![Outcome::Released, Outcome::ReleaseRejected, Outcome::AllocFailed, Outcome::Refused]);
}

#[test]
fn v7_two_range_area_serves_the_second_range_when_the_first_is_busy() {
    // §1.7: a hugetlb-style area with two ranges; pin the only free page window of range 0 and
    // the 4-page request finds no other window there (-EBUSY) and falls through to range 1.
    let two = AreaObservation {
        name: "hugetlb0".into(),
        order_per_bit: 0,
        count: Pages(64 + 4096),
        available: Some(Pages(4096 + 4)),
        activated: true,
        ranges: vec![
            RangeObservation { base_pfn: Pfn(0x7dc00), count: Pages(64), bitmap: vec![u32::MAX, 0x0fff_ffff] },
            RangeObservation { base_pfn: Pfn(0xfd800), count: Pages(4096), bitmap: vec![0; 128] },
        ],
    };
    let mut m = new(
        KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64),
        &boot(vec![area7("reserved", B7 + 8192, 8192, 0, 32), two]),
    );
    let (o, obs) = go(&mut m, "pin area=hugetlb0 off=61\ncma_alloc area=hugetlb0 count=4\nobserve");
    assert_eq!(o[..2], [Outcome::Pinned { pfn: Pfn(0x7dc00 + 61) }, at(0xfd800, 0, 4)]);
    let a = &obs[0].1.areas[1];
    assert_eq!(set_runs(a), vec![(0, 60), (64, 68)], "range 0's busy window was cleared");
    assert_eq!(a.available, Some(Pages(4096 + 4 - 4)));
    // The driver's offsets count the ranges' pages in order (cf_area_pfn()): page 64 is range
    // 1's first page, so off=68 pins pfn 0xfd804 and off=64 count=4 releases the allocation;
    // a release crossing from range 0 into range 1 runs past its range's end: refused.
    let (o, obs) = go(
        &mut m,
        "pin area=hugetlb0 off=68\ncma_release_raw area=hugetlb0 off=62 count=4\n\
         cma_release_raw area=hugetlb0 off=64 count=4\nobserve",
    );
    assert_eq!(o[..3], [Outcome::Pinned { pfn: Pfn(0xfd804) }, Outcome::Refused, Outcome::Released]);
    assert_eq!(set_runs(&obs[0].1.areas[1]), vec![(0, 60)]);
    assert_eq!(obs[0].1.areas[1].available, Some(Pages(4096 + 4)));
}
