//! One CMA area and the two kernel entry points on it: `cma_alloc()` and `cma_release()`
//! (Linux 6.1 `mm/cma.c`; 6.12 identical in every respect the model observes, spec §8).

use crate::bitmap::{find_next_zero_area_off, Bitmap, LongWidth};
use crate::error::ModelError;
use crate::observation::AreaObservation;
use crate::units::{Pages, Pfn};
use std::collections::BTreeSet;

/// Largest `order_per_bit` the model accepts (real areas use 0, or `HUGETLB_PAGE_ORDER`).
const MAX_ORDER_PER_BIT: u32 = 31;

/// `struct cma` (Linux 6.1 `mm/cma.h:13-34`) plus what `alloc_contig_range()` needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CmaArea {
    pub(crate) name: String,
    pub(crate) base_pfn: u64,
    /// Pages; 0 for a disabled area.
    pub(crate) count: u64,
    pub(crate) order_per_bit: u32,
    /// `cma->bitmap`, `count >> order_per_bit` bits.
    pub(crate) bitmap: Bitmap,
    /// One bit per page: taken out of the buddy allocator (by `alloc_contig_range()` or at boot).
    /// With `order_per_bit == 0` it equals `bitmap`; with larger orders a partial release can make
    /// them differ, and then a window over taken pages fails `test_pages_isolated()` with -EBUSY
    /// (Linux 6.1 `mm/page_alloc.c:9273-9397`, spec §2.5).
    pub(crate) taken: Bitmap,
}

impl CmaArea {
    /// Seed an area from the kernel's report; boot bits mark every page they cover as taken.
    pub(crate) fn from_observation(a: &AreaObservation) -> Result<CmaArea, ModelError> {
        let area = || a.name.clone();
        if a.order_per_bit > MAX_ORDER_PER_BIT {
            return Err(ModelError::OrderPerBit { area: area(), order_per_bit: a.order_per_bit });
        }
        if a.ranges.iter().any(|r| r.base_pfn.checked_add(r.count).is_none()) {
            return Err(ModelError::AreaOverflows { area: area() });
        }
        let sum = a.ranges.iter().try_fold(0u64, |s, r| s.checked_add(r.count.0));
        if a.activated && sum != Some(a.count.0) {
            return Err(ModelError::RangeCounts { area: area(), count: a.count.0, sum: sum.unwrap_or(u64::MAX) });
        }
        let [range] = a.ranges.as_slice() else {
            return Err(ModelError::Ranges { area: area(), nranges: a.ranges.len() });
        };
        let maxno = a.bitmap_bits();
        let Some(bitmap) = Bitmap::from_words(&range.bitmap, maxno) else {
            return Err(ModelError::BitmapLength {
                area: area(),
                expected: a.expected_words(0),
                got: range.bitmap.len() as u64,
            });
        };
        if Bitmap::has_stray_bits(&range.bitmap, maxno) {
            return Err(ModelError::StrayBits { area: area() });
        }
        let mut taken = Bitmap::zeroed(a.count.0);
        let opb = a.order_per_bit;
        let mut bit = bitmap.find_next_bit(maxno, 0);
        while bit < maxno {
            taken.set(bit << opb, 1u64 << opb);
            bit = bitmap.find_next_bit(maxno, bit + 1);
        }
        Ok(CmaArea {
            name: a.name.clone(),
            base_pfn: range.base_pfn.0,
            count: a.count.0,
            order_per_bit: opb,
            bitmap,
            taken,
        })
    }

    /// The same geometry with nothing allocated (the state right after `cma_activate_area()`).
    pub(crate) fn empty_like(&self) -> CmaArea {
        CmaArea { bitmap: Bitmap::zeroed(self.bitmap.len()), taken: Bitmap::zeroed(self.taken.len()), ..self.clone() }
    }

    pub(crate) fn observe(&self) -> AreaObservation {
        AreaObservation::single(
            self.name.clone(),
            Pfn(self.base_pfn),
            Pages(self.count),
            self.order_per_bit,
            self.bitmap.words(),
        )
    }

    /// `cma_bitmap_maxno()` (Linux 6.1 `mm/cma.h:39-42`).
    pub(crate) fn maxno(&self) -> u64 {
        self.count >> self.order_per_bit
    }

    /// `cma_bitmap_aligned_mask()` (Linux 6.1 `mm/cma.c:57-63`).
    fn aligned_mask(&self, align: u32) -> u64 {
        if align <= self.order_per_bit {
            0
        } else {
            (1u64 << (align - self.order_per_bit)) - 1
        }
    }

    /// `cma_bitmap_aligned_offset()` (Linux 6.1 `mm/cma.c:69-74`): alignment is relative to the
    /// physical pfn, not to the area start.
    fn aligned_offset(&self, align: u32) -> u64 {
        (self.base_pfn & ((1u64 << align) - 1)) >> self.order_per_bit
    }

    /// `cma_bitmap_pages_to_bits()` (Linux 6.1 `mm/cma.c:76-80`): `ALIGN(pages, 1 << opb) >> opb`
    /// in an `unsigned long`.
    fn pages_to_bits(&self, pages: u64, w: LongWidth) -> u64 {
        let unit = 1u64 << self.order_per_bit;
        (w.wrap(pages.wrapping_add(unit - 1)) & !(unit - 1)) >> self.order_per_bit
    }

    /// Whether `alloc_contig_range(pfn, pfn + count)` would meet a page it cannot isolate:
    /// one still taken, or one in `pinned` (pages the driver's `pin` holds, spec §2.5).
    ///
    /// With `order_per_bit == 0`, `taken` equals `bitmap` before the window's bits are set (every
    /// change to one is made to the other with the same range), and the window was clear in
    /// `bitmap`, so only the pins can make it busy.
    fn contig_range_busy(&self, pfn: u64, count: u64, pinned: &BTreeSet<Pfn>) -> bool {
        let off = pfn - self.base_pfn;
        (self.order_per_bit != 0 && self.taken.any_set(off, count))
            || (!pinned.is_empty() && pinned.range(Pfn(pfn)..Pfn(pfn.saturating_add(count))).next().is_some())
    }

    /// `cma_alloc(cma, count, align, no_warn)` (Linux 6.1 `mm/cma.c:420-520`, 6.12
    /// `__cma_alloc` `:406-503`): first fit by `bitmap_find_next_zero_area_off()`, bits set before
    /// `alloc_contig_range()`; on -EBUSY clear the window and retry at `bitmap_no + mask + 1`. No
    /// retry limit. Returns the first pfn. `align` must be `<= 31` (checked by the caller).
    pub(crate) fn alloc(&mut self, count: u64, align: u32, w: LongWidth, pinned: &BTreeSet<Pfn>) -> Option<u64> {
        if self.count == 0 || count == 0 {
            return None;
        }
        let mask = self.aligned_mask(align);
        let offset = self.aligned_offset(align);
        let maxno = self.maxno();
        let nbits = self.pages_to_bits(count, w);
        // nbits == 0 with count != 0 needs an `unsigned long` overflow in ALIGN (count within
        // 2^opb of ULONG_MAX); the driver rejects such counts before calling the kernel.
        if nbits > maxno || nbits == 0 {
            return None;
        }
        let mut start = 0u64;
        // Each round moves `start` past the previous window, so at most maxno + 1 rounds.
        for _ in 0..=maxno {
            let bitmap_no = find_next_zero_area_off(&self.bitmap, maxno, start, nbits, mask, offset, w);
            if bitmap_no >= maxno {
                return None;
            }
            self.bitmap.set(bitmap_no, nbits);
            let pfn = self.base_pfn + (bitmap_no << self.order_per_bit);
            if !self.contig_range_busy(pfn, count, pinned) {
                self.taken.set(pfn - self.base_pfn, count);
                return Some(pfn);
            }
            // -EBUSY: cma_clear_bitmap(cma, pfn, count) clears exactly the window just set.
            self.clear_bitmap(pfn, count, w);
            start = w.wrap(bitmap_no.wrapping_add(mask).wrapping_add(1));
        }
        None
    }

    /// `cma_pages_valid()` (Linux 6.1 `mm/cma.c:522-539`): only the first pfn is checked.
    pub(crate) fn pages_valid(&self, pfn: u64) -> bool {
        pfn >= self.base_pfn && pfn - self.base_pfn < self.count
    }

    /// `cma_clear_bitmap()` (Linux 6.1 `mm/cma.c:82-94`): bit `floor((pfn - base) / 2^opb)`,
    /// `ceil(count / 2^opb)` bits.
    fn clear_bitmap(&mut self, pfn: u64, count: u64, w: LongWidth) {
        let bitmap_no = (pfn - self.base_pfn) >> self.order_per_bit;
        let nbits = self.pages_to_bits(count, w);
        self.bitmap.clear(bitmap_no, nbits);
    }

    /// `cma_release(cma, pfn_to_page(pfn), count)` (Linux 6.1 `mm/cma.c:551-570`):
    /// `free_contig_range()` then `cma_clear_bitmap()`. The caller (the driver) guarantees the
    /// range lies in the area and every page is allocated; `count` is not checked by the kernel.
    pub(crate) fn release(&mut self, pfn: u64, count: u64, w: LongWidth) -> bool {
        if !self.pages_valid(pfn) {
            return false;
        }
        self.taken.clear(pfn - self.base_pfn, count);
        self.clear_bitmap(pfn, count, w);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(base: u64, count: u64, opb: u32, boot: &[(u64, u64)]) -> CmaArea {
        let mut bitmap = Bitmap::zeroed(count >> opb);
        for &(s, l) in boot {
            bitmap.set(s, l);
        }
        let obs = AreaObservation::single("reserved", Pfn(base), Pages(count), opb, bitmap.words());
        match CmaArea::from_observation(&obs) {
            Ok(a) => a,
            Err(e) => panic!("test area rejected: {e}"),
        }
    }

    const W: LongWidth = LongWidth::W32;

    /// Allocate and return the bitmap index of the result.
    fn alloc_bit(a: &mut CmaArea, count: u64, align: u32, w: LongWidth, busy: &BTreeSet<Pfn>) -> Option<u64> {
        a.alloc(count, align, w, busy).map(|p| (p - a.base_pfn) >> a.order_per_bit)
    }

    #[test]
    fn cma_alloc_reproduces_the_spec_worked_example() {
        // spec §2.4: base 0x7e000, count 8192, opb 0, boot bits 0-63.
        let mut a = area(0x7e000, 8192, 0, &[(0, 64)]);
        let none = BTreeSet::new();
        let r1 = a.alloc(3, 0, W, &none);
        assert_eq!(r1, Some(0x7e040));
        assert_eq!(alloc_bit(&mut a, 5, 0, W, &none), Some(67));
        assert_eq!(alloc_bit(&mut a, 5, 3, W, &none), Some(72));
        assert_eq!(a.alloc(1, 12, W, &none), Some(0x7f000));
        let busy = BTreeSet::from([Pfn(0x7e000 + 81)]);
        assert_eq!(alloc_bit(&mut a, 4, 2, W, &busy), Some(84));
        assert!(!a.bitmap.test(80) && !a.bitmap.test(83), "busy window was cleared");
    }

    #[test]
    fn cma_alloc_aligns_to_the_physical_pfn_not_the_area_start() {
        // spec §9.1 arm64: base 0x7cc00, boot bits 0-95; align 12 -> bit 1024 (pfn 0x7d000).
        let mut a = area(0x7cc00, 8192, 0, &[(0, 96)]);
        let none = BTreeSet::new();
        assert_eq!(alloc_bit(&mut a, 5, 3, LongWidth::W64, &none), Some(96));
        assert_eq!(a.alloc(1, 12, LongWidth::W64, &none), Some(0x7d000));
    }

    #[test]
    fn cma_alloc_retries_at_bitmap_no_plus_mask_plus_one() {
        // spec §2.3: count 8, align 2, busy page at bit 5: tries 0, then 4, then 8.
        let mut a = area(0x1000, 64, 0, &[]);
        let busy = BTreeSet::from([Pfn(0x1005)]);
        assert_eq!(alloc_bit(&mut a, 8, 2, W, &busy), Some(8));
        assert_eq!(a.bitmap.weight(), 8);
    }

    #[test]
    fn cma_alloc_after_pinned_bit_65_retries_from_68() {
        // spec §9.1: pin bit 65, cma_alloc(4, 2) -> 68 (retry from 64 + 3 + 1).
        let mut a = area(0x7e000, 8192, 0, &[(0, 64)]);
        let busy = BTreeSet::from([Pfn(0x7e000 + 65)]);
        assert_eq!(alloc_bit(&mut a, 4, 2, W, &busy), Some(68));
    }

    #[test]
    fn cma_alloc_of_zero_pages_fails() {
        let mut a = area(0x7e000, 8192, 0, &[(0, 64)]);
        assert_eq!(a.alloc(0, 0, W, &BTreeSet::new()), None);
    }

    #[test]
    fn cma_alloc_of_more_than_the_area_fails_at_once() {
        let mut a = area(0x7e000, 8192, 0, &[]);
        assert_eq!(a.alloc(8193, 0, W, &BTreeSet::new()), None);
        assert_eq!(a.bitmap.weight(), 0);
        assert_eq!(a.alloc(8192, 0, W, &BTreeSet::new()), Some(0x7e000));
    }

    #[test]
    fn cma_alloc_on_a_disabled_area_fails() {
        let mut a = area(0x7e000, 0, 0, &[]);
        assert_eq!(a.alloc(1, 0, W, &BTreeSet::new()), None);
        assert!(!a.release(0x7e000, 1, W));
    }

    #[test]
    fn cma_alloc_with_order_per_bit_rounds_the_window_up_to_whole_bits() {
        let mut a = area(0x1000, 64, 2, &[]);
        assert_eq!(a.alloc(5, 0, W, &BTreeSet::new()), Some(0x1000));
        assert_eq!(a.bitmap.weight(), 2, "ceil(5 / 4) bits");
        assert_eq!(a.taken.weight(), 5, "alloc_contig_range takes exactly count pages");
        assert_eq!(a.alloc(1, 0, W, &BTreeSet::new()), Some(0x1008));
    }

    #[test]
    fn cma_clear_bitmap_floors_the_start_and_ceils_the_count() {
        // opb 1: release of pages 3..5 clears bits floor(3/2)=1 .. +ceil(2/2)=1 -> only bit 1,
        // although page 4 lives under bit 2.
        let mut a = area(0x1000, 16, 1, &[]);
        assert_eq!(a.alloc(8, 0, W, &BTreeSet::new()), Some(0x1000));
        assert!(a.release(0x1003, 2, W));
        assert!(a.bitmap.test(0) && !a.bitmap.test(1) && a.bitmap.test(2) && a.bitmap.test(3));
    }

    #[test]
    fn cma_alloc_meets_ebusy_on_taken_pages_under_a_cleared_bit() {
        // After the partial release above, bit 1 is clear but page 2 is still taken, so a
        // window at bit 1 fails isolation and the search moves on (spec §3, opb > 0 case).
        let mut a = area(0x1000, 16, 1, &[]);
        assert_eq!(a.alloc(8, 0, W, &BTreeSet::new()), Some(0x1000));
        assert!(a.release(0x1003, 2, W));
        assert_eq!(a.alloc(2, 0, W, &BTreeSet::new()), Some(0x1008));
    }

    #[test]
    fn cma_release_outside_the_area_is_rejected() {
        let mut a = area(0x7e000, 8192, 0, &[(0, 64)]);
        assert!(!a.release(0x7e000 + 8192, 1, W));
        assert!(!a.release(0x7dfff, 1, W));
        assert_eq!(a.bitmap.weight(), 64);
    }

    #[test]
    fn cma_release_of_zero_pages_inside_is_true_and_changes_nothing() {
        let mut a = area(0x7e000, 8192, 0, &[(0, 64)]);
        let before = a.clone();
        assert!(a.release(0x7e000 + 10, 0, W));
        assert_eq!(a, before);
    }

    #[test]
    fn area_with_wrong_bitmap_length_is_refused() {
        let obs = AreaObservation::single("reserved", Pfn(0x7e000), Pages(8192), 0, vec![0; 255]);
        assert!(matches!(
            CmaArea::from_observation(&obs),
            Err(ModelError::BitmapLength { expected: 256, got: 255, .. })
        ));
    }
}
