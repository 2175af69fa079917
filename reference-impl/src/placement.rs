//! Where the kernel puts the default CMA area at boot (spec §1.5-1.6), so that the kernel's own
//! report can confirm or contradict it: a placement divergence is a finding too.
//!
//! `dma_contiguous_reserve()` → `dma_contiguous_reserve_area(size, 0, limit, …, fixed = false)` →
//! `cma_declare_contiguous_nid()` (Linux 6.1 `mm/cma.c:228-355`): `alignment = max(0,
//! CMA_MIN_ALIGNMENT_BYTES)` (one pageblock), `size` rounded up to it; on arm32 with highmem the
//! area is first looked for in `[highmem_start, limit)` and then below `highmem_start`
//! (`memblock_alloc_range_nid(size, alignment, highmem_start, limit, nid, true)`, then
//! `(size, alignment, base, highmem_start, …)`), each time top-down (`memblock_find_in_range`
//! walks free ranges from the top and takes the highest aligned fit). On arm64 the memblock
//! users that run first (page tables, `sparse_init`'s memmap) take the top of RAM in amounts the
//! model does not know, so there is no prediction: the model takes the kernel's report.

use crate::profile::{Arch, KernelProfile};
use crate::units::{Pages, Pfn};

/// The base pfn the default area of `size` pages gets, avoiding `reserved` ranges (device-tree
/// reserved memory, already taken when the default area is placed), or `None` where the model
/// cannot predict it (arm64) or nothing fits.
pub fn predict_default_area(profile: &KernelProfile, size: Pages, reserved: &[(Pfn, Pages)]) -> Option<Pfn> {
    if profile.arch == Arch::Arm64 || size.0 == 0 {
        return None;
    }
    let align = 1u64.checked_shl(profile.pageblock_order)?;
    let size = size.0.checked_add(align - 1)? / align * align;
    let ram_start = profile.phys_pfn_offset().0;
    let low_end = profile.max_low_pfn.0;
    let end = profile.max_pfn.0;
    // Highmem first (when there is any), then lowmem: both top-down.
    let ranges = if low_end < end { vec![(low_end, end), (ram_start, low_end)] } else { vec![(ram_start, end)] };
    ranges.into_iter().find_map(|(lo, hi)| top_down(lo, hi, size, align, reserved)).map(Pfn)
}

/// The highest `align`-aligned start `s` with `[s, s + size)` inside `[lo, hi)` and clear of every
/// reserved range (`memblock_find_in_range_node()` top-down).
fn top_down(lo: u64, hi: u64, size: u64, align: u64, reserved: &[(Pfn, Pages)]) -> Option<u64> {
    let mut top = hi;
    loop {
        let start = top.checked_sub(size)? / align * align;
        if start < lo {
            return None;
        }
        let end = start + size;
        // The highest reserved range overlapping the candidate pushes the top below it.
        match reserved.iter().filter(|(b, n)| b.0 < end && start < b.0.saturating_add(n.0)).map(|(b, _)| b.0).min() {
            None => return Some(start),
            Some(b) => top = b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Version;

    fn arm32(mib: u64) -> KernelProfile {
        let mut p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
        p.max_pfn = Pfn(0x40000 + mib * 256);
        p.max_low_pfn = Pfn(p.max_pfn.0.min(0x70000));
        p
    }

    #[test]
    fn arm32_with_highmem_puts_32_mib_at_the_top_of_highmem() {
        // spec §1.6 [observed]: -m 1024 -> 0x7e000000.
        assert_eq!(predict_default_area(&arm32(1024), Pages(8192), &[]), Some(Pfn(0x7e000)));
    }

    #[test]
    fn arm32_without_highmem_puts_it_at_the_top_of_lowmem() {
        // spec §1.6 [observed]: -m 512 -> 0x5e000000.
        assert_eq!(predict_default_area(&arm32(512), Pages(8192), &[]), Some(Pfn(0x5e000)));
    }

    #[test]
    fn reserved_regions_push_the_area_below_them_and_highmem_too_small_falls_back_to_lowmem() {
        // A reserved region at the top of highmem: the area goes right below it, pageblock-aligned.
        let r = [(Pfn(0x7f000), Pages(1024))];
        assert_eq!(predict_default_area(&arm32(1024), Pages(8192), &r), Some(Pfn(0x7d000)));
        // 16 MiB of highmem (0x70000-0x71000) cannot hold 32 MiB: lowmem top-down instead.
        assert_eq!(predict_default_area(&arm32(784), Pages(8192), &[]), Some(Pfn(0x6e000)));
        // A size that is not a pageblock multiple is rounded up first.
        assert_eq!(predict_default_area(&arm32(1024), Pages(8000), &[]), Some(Pfn(0x7e000)));
    }

    #[test]
    fn arm64_has_no_prediction() {
        let p = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm64);
        assert_eq!(predict_default_area(&p, Pages(8192), &[]), None);
    }
}
