//! One CMA area and the two kernel entry points on it: `cma_alloc()` and `cma_release()`.
//!
//! Linux 6.1 `mm/cma.c` (6.12 identical in every respect the model observes, spec §8): one
//! bitmap per area. Linux 7.2/7.3 (`cma-spec-7x.md` §1-§3): up to `CMA_MAX_RANGES` ranges, each
//! with its own base and bitmap, searched in order by `cma_range_alloc()`, plus
//! `available_count`. The version differences are the three `cma_*` flags of
//! [`Behaviour`]; everything else is shared code.

use crate::bitmap::{find_next_zero_area_off, Bitmap, LongWidth};
use crate::error::ModelError;
use crate::observation::{AreaObservation, RangeObservation};
use crate::profile::Behaviour;
use crate::units::{Pages, Pfn};
use std::collections::BTreeSet;

/// Largest `order_per_bit` the model accepts (real areas use 0, or `HUGETLB_PAGE_ORDER`).
const MAX_ORDER_PER_BIT: u32 = 31;

/// `CMA_MAX_RANGES` (Linux 7.2 `mm/cma.h:37`).
const CMA_MAX_RANGES: usize = 8;

/// An error `alloc_contig_range()` returns, as far as `cma_alloc()` tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Errno {
    /// -EBUSY: a page of the window could not be isolated or migrated; the search goes on.
    Busy,
    /// -ENOMEM, -EINTR, -EINVAL: the search stops (Linux 7.2 `mm/cma.c:853-856`), and on 7.x
    /// the range loop too (`:883-890`). No op of the driver makes the model produce one (it
    /// assumes migration has memory and no signal arrives); tests inject it.
    #[cfg_attr(not(test), allow(dead_code))]
    Other,
}

/// One `struct cma_memrange` (Linux 7.2 `mm/cma.h:26-36`), or the 6.x area's single range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CmaRange {
    pub(crate) base_pfn: u64,
    /// Pages of the range (kept by 7.x when activation fails).
    pub(crate) count: u64,
    /// `cmr->bitmap`, `count >> order_per_bit` bits (none when the area is not activated).
    pub(crate) bitmap: Bitmap,
    /// One bit per page: taken out of the buddy allocator (by `alloc_contig_range()` or at boot).
    /// With `order_per_bit == 0` it equals `bitmap`; with larger orders a partial release can make
    /// them differ, and then a window over taken pages fails `test_pages_isolated()` with -EBUSY
    /// (Linux 6.1 `mm/page_alloc.c:9273-9397`, spec §2.5).
    pub(crate) taken: Bitmap,
}

impl CmaRange {
    fn end(&self) -> u64 {
        self.base_pfn.saturating_add(self.count)
    }

    fn contains(&self, pfn: u64) -> bool {
        self.base_pfn <= pfn && pfn < self.end()
    }
}

/// `struct cma` (Linux 6.1 `mm/cma.h:13-34`, 7.2 `:39-65`) plus what `alloc_contig_range()` needs
/// to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CmaArea {
    pub(crate) name: String,
    /// Pages, the sum over the ranges; 0 for a disabled area.
    pub(crate) count: u64,
    pub(crate) order_per_bit: u32,
    /// `CMA_ACTIVATED` (7.x); `count != 0` on 6.x.
    pub(crate) activated: bool,
    /// `cma->available_count` (Linux 7.2 `mm/cma.c:94`, `:835`). 6.x has none; the model keeps
    /// the same count there but never reports it.
    pub(crate) available: u64,
    /// Ascending, at least one.
    pub(crate) ranges: Vec<CmaRange>,
    behaviour: Behaviour,
}

impl CmaArea {
    /// Seed an area from the kernel's report; boot bits mark every page they cover as taken.
    /// 6.x areas must have one range; `available` is taken from the report when it has one,
    /// else it is `count` minus the boot bits' pages (all a booted kernel has handed out).
    pub(crate) fn from_observation(a: &AreaObservation, behaviour: Behaviour) -> Result<CmaArea, ModelError> {
        let area = || a.name.clone();
        if a.order_per_bit > MAX_ORDER_PER_BIT {
            return Err(ModelError::OrderPerBit { area: area(), order_per_bit: a.order_per_bit });
        }
        let max_ranges = if behaviour.cma_ranges { CMA_MAX_RANGES } else { 1 };
        if a.ranges.is_empty() || a.ranges.len() > max_ranges {
            return Err(ModelError::Ranges { area: area(), nranges: a.ranges.len(), max: max_ranges });
        }
        if a.ranges.iter().any(|r| r.base_pfn.checked_add(r.count).is_none()) {
            return Err(ModelError::AreaOverflows { area: area() });
        }
        if a.ranges.windows(2).any(|w| w[0].base_pfn.0 + w[0].count.0 > w[1].base_pfn.0) {
            return Err(ModelError::RangesOverlap { area: area() });
        }
        let sum = a.ranges.iter().try_fold(0u64, |s, r| s.checked_add(r.count.0));
        if a.activated && sum != Some(a.count.0) {
            return Err(ModelError::RangeCounts { area: area(), count: a.count.0, sum: sum.unwrap_or(u64::MAX) });
        }
        let opb = a.order_per_bit;
        let mut ranges = Vec::with_capacity(a.ranges.len());
        for (r, range) in a.ranges.iter().enumerate() {
            ranges.push(Self::seed_range(a, r, range)?);
        }
        let boot_pages: u64 = ranges.iter().map(|r| r.bitmap.weight() << opb).sum();
        let available = match a.available {
            Some(p) => p.0,
            None => a.count.0.saturating_sub(boot_pages),
        };
        Ok(CmaArea {
            name: a.name.clone(),
            count: a.count.0,
            order_per_bit: opb,
            activated: a.activated,
            available,
            ranges,
            behaviour,
        })
    }

    fn seed_range(a: &AreaObservation, r: usize, range: &RangeObservation) -> Result<CmaRange, ModelError> {
        let maxno = a.range_bits(r);
        let Some(bitmap) = Bitmap::from_words(&range.bitmap, maxno) else {
            return Err(ModelError::BitmapLength {
                area: a.name.clone(),
                expected: a.expected_words(r),
                got: range.bitmap.len() as u64,
            });
        };
        if Bitmap::has_stray_bits(&range.bitmap, maxno) {
            return Err(ModelError::StrayBits { area: a.name.clone() });
        }
        let opb = a.order_per_bit;
        let mut taken = Bitmap::zeroed(if a.activated { range.count.0 } else { 0 });
        let mut bit = bitmap.find_next_bit(maxno, 0);
        while bit < maxno {
            taken.set(bit << opb, 1u64 << opb);
            bit = bitmap.find_next_bit(maxno, bit + 1);
        }
        Ok(CmaRange { base_pfn: range.base_pfn.0, count: range.count.0, bitmap, taken })
    }

    /// The same geometry with nothing allocated (the state right after `cma_activate_area()`).
    pub(crate) fn empty_like(&self) -> CmaArea {
        let ranges = self
            .ranges
            .iter()
            .map(|r| CmaRange {
                bitmap: Bitmap::zeroed(r.bitmap.len()),
                taken: Bitmap::zeroed(r.taken.len()),
                ..r.clone()
            })
            .collect();
        CmaArea { ranges, available: self.count, ..self.clone() }
    }

    pub(crate) fn observe(&self) -> AreaObservation {
        AreaObservation {
            name: self.name.clone(),
            order_per_bit: self.order_per_bit,
            count: Pages(self.count),
            available: self.behaviour.cma_ranges.then_some(Pages(self.available)),
            activated: self.activated,
            ranges: self
                .ranges
                .iter()
                .map(|r| RangeObservation {
                    base_pfn: Pfn(r.base_pfn),
                    count: Pages(r.count),
                    bitmap: r.bitmap.words(),
                })
                .collect(),
        }
    }

    /// `cma_get_base()` (Linux 7.2 `mm/cma.c:40-44`): range 0's base, from which the model's
    /// handles count their page offsets.
    pub(crate) fn base_pfn(&self) -> u64 {
        self.ranges.first().map_or(0, |r| r.base_pfn)
    }

    /// The driver's `cf_area_pfn()` (`qemu/driver/cmafuzz.c`): page `off` of the area with its
    /// ranges' pages counted in order; an offset below 0 counts back from range 0's base, one at
    /// or past `count` on from the last range's base. Returns the pfn (`None` if it would be
    /// negative or overflow) and, for an offset inside the area, the pages from there to the end
    /// of its range. One range: `base_pfn + off`, as on 6.x.
    pub(crate) fn driver_pfn(&self, off: i64) -> (Option<u64>, Option<u64>) {
        let mut r = 0usize;
        let mut rel = i128::from(off);
        let count_of = |r: usize| self.ranges.get(r).map_or(0, |c| c.count);
        while self.count != 0 && rel >= 0 && rel >= i128::from(count_of(r)) && r + 1 < self.ranges.len() {
            rel -= i128::from(count_of(r));
            r += 1;
        }
        let base = self.ranges.get(r).map_or(0, |c| c.base_pfn);
        let pfn = u64::try_from(i128::from(base) + rel).ok();
        let inside = self.count != 0 && rel >= 0 && rel < i128::from(count_of(r)) && pfn.is_some();
        let left = inside.then(|| count_of(r) - u64::try_from(rel).unwrap_or(0));
        (pfn, left)
    }

    /// The range holding `pfn` in an area with pages.
    pub(crate) fn range_of(&self, pfn: u64) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        self.ranges.iter().position(|r| r.contains(pfn))
    }

    /// Whether `pfn` (a page of the area) is under a set bitmap bit.
    pub(crate) fn bit_of_page(&self, pfn: u64) -> bool {
        self.range_of(pfn)
            .and_then(|r| self.ranges.get(r))
            .is_some_and(|r| r.bitmap.test((pfn - r.base_pfn) >> self.order_per_bit))
    }

    /// Whether `pfn` (a page of the area) is out of the buddy allocator.
    pub(crate) fn page_taken(&self, pfn: u64) -> bool {
        self.range_of(pfn).and_then(|r| self.ranges.get(r)).is_some_and(|r| r.taken.test(pfn - r.base_pfn))
    }

    /// `cma_bitmap_aligned_mask()` (Linux 6.1 `mm/cma.c:57-63`, same in 7.2 `:57-67`).
    fn aligned_mask(&self, align: u32) -> u64 {
        if align <= self.order_per_bit {
            0
        } else {
            (1u64 << (align - self.order_per_bit)) - 1
        }
    }

    /// `cma_bitmap_aligned_offset()` (Linux 6.1 `mm/cma.c:69-74`; 7.2 `:69-75` per range):
    /// alignment is relative to the physical pfn of the range's base, not to the area start.
    fn aligned_offset(&self, range: &CmaRange, align: u32) -> u64 {
        (range.base_pfn & ((1u64 << align) - 1)) >> self.order_per_bit
    }

    /// `cma_bitmap_pages_to_bits()` (Linux 6.1 `mm/cma.c:76-80`): `ALIGN(pages, 1 << opb) >> opb`
    /// in an `unsigned long`.
    fn pages_to_bits(&self, pages: u64, w: LongWidth) -> u64 {
        let unit = 1u64 << self.order_per_bit;
        (w.wrap(pages.wrapping_add(unit - 1)) & !(unit - 1)) >> self.order_per_bit
    }

    /// What `alloc_contig_range(pfn, pfn + count)` returns: -EBUSY when it meets a page it
    /// cannot isolate, one still taken or one in `pinned` (pages the driver's `pin` holds, spec
    /// §2.5).
    ///
    /// With `order_per_bit == 0`, `taken` equals `bitmap` before the window's bits are set (every
    /// change to one is made to the other with the same range), and the window was clear in
    /// `bitmap`, so only the pins can make it busy.
    fn contig_range(&self, r: usize, pfn: u64, count: u64, pinned: &BTreeSet<Pfn>) -> Result<(), Errno> {
        let Some(range) = self.ranges.get(r) else {
            return Err(Errno::Busy);
        };
        let off = pfn - range.base_pfn;
        let busy = (self.order_per_bit != 0 && range.taken.any_set(off, count))
            || (!pinned.is_empty() && pinned.range(Pfn(pfn)..Pfn(pfn.saturating_add(count))).next().is_some());
        if busy {
            Err(Errno::Busy)
        } else {
            Ok(())
        }
    }

    /// `cma_alloc(cma, count, align, no_warn)`: Linux 6.1 `mm/cma.c:420-520` (6.12 `__cma_alloc`
    /// `:406-503`) on the one bitmap; 7.2 `__cma_alloc_frozen()` (`mm/cma.c:864-920`) calling
    /// `cma_range_alloc()` on each range in turn while it returns -EBUSY without a page. First
    /// fit by `bitmap_find_next_zero_area_off()`, bits set before `alloc_contig_range()`; on
    /// -EBUSY clear the window and retry at `bitmap_no + mask + 1`. No retry limit. Returns the
    /// first pfn. `align` must be `<= 31` (checked by the caller).
    pub(crate) fn alloc(&mut self, count: u64, align: u32, w: LongWidth, pinned: &BTreeSet<Pfn>) -> Option<u64> {
        self.alloc_with(count, align, w, pinned, &mut |_, _| None)
    }

    /// [`CmaArea::alloc`] with `inject(pfn, count)` consulted before each `alloc_contig_range()`:
    /// `Some(errno)` makes that call fail so (a kernel condition the driver's ops cannot create,
    /// such as -ENOMEM from migration); `None` lets the model decide.
    pub(crate) fn alloc_with(
        &mut self,
        count: u64,
        align: u32,
        w: LongWidth,
        pinned: &BTreeSet<Pfn>,
        inject: &mut dyn FnMut(u64, u64) -> Option<Errno>,
    ) -> Option<u64> {
        if self.count == 0 || count == 0 {
            return None;
        }
        for r in 0..self.ranges.len() {
            match self.range_alloc(r, count, align, w, pinned, inject) {
                Ok(pfn) => return Some(pfn),
                // 6.x has one range; 7.x goes on to the next range only after -EBUSY.
                Err(Errno::Busy) if self.behaviour.cma_ranges => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// `cma_range_alloc()` (Linux 7.2 `mm/cma.c:784-862`; 6.x the body of `cma_alloc()`): the
    /// search of one range. `Err(Busy)` also when no window is found (7.x `ret` starts at
    /// -EBUSY, `:790`) and for a request larger than the range (`:798`).
    fn range_alloc(
        &mut self,
        r: usize,
        count: u64,
        align: u32,
        w: LongWidth,
        pinned: &BTreeSet<Pfn>,
        inject: &mut dyn FnMut(u64, u64) -> Option<Errno>,
    ) -> Result<u64, Errno> {
        let Some(range) = self.ranges.get(r) else {
            return Err(Errno::Busy);
        };
        let mask = self.aligned_mask(align);
        let offset = self.aligned_offset(range, align);
        let maxno = range.bitmap.len();
        let nbits = self.pages_to_bits(count, w);
        // nbits == 0 with count != 0 needs an `unsigned long` overflow in ALIGN (count within
        // 2^opb of ULONG_MAX); the driver rejects such counts before calling the kernel.
        if nbits > maxno || nbits == 0 {
            return Err(Errno::Busy);
        }
        let mut start = 0u64;
        // Each round moves `start` past the previous window, so at most maxno + 1 rounds.
        for _ in 0..=maxno {
            // 7.x: "If the request is larger than the available number of pages, stop right
            // away" (`mm/cma.c:803-810`).
            if self.behaviour.cma_ranges && count > self.available {
                return Err(Errno::Busy);
            }
            let range = self.ranges.get_mut(r).ok_or(Errno::Busy)?;
            let bitmap_no = find_next_zero_area_off(&range.bitmap, maxno, start, nbits, mask, offset, w);
            if bitmap_no >= maxno {
                return Err(Errno::Busy);
            }
            range.bitmap.set(bitmap_no, nbits);
            let pfn = range.base_pfn + (bitmap_no << self.order_per_bit);
            self.available = self.available.wrapping_sub(count);
            let ret = match inject(pfn, count) {
                Some(e) => Err(e),
                None => self.contig_range(r, pfn, count, pinned),
            };
            match ret {
                Ok(()) => {
                    if let Some(range) = self.ranges.get_mut(r) {
                        range.taken.set(pfn - range.base_pfn, count);
                    }
                    return Ok(pfn);
                }
                Err(e) => {
                    // cma_clear_bitmap(cma, cmr, pfn, count) clears exactly the window just set.
                    self.clear_bitmap(r, pfn, count, w);
                    if e != Errno::Busy {
                        return Err(e);
                    }
                }
            }
            start = w.wrap(bitmap_no.wrapping_add(mask).wrapping_add(1));
        }
        Err(Errno::Busy)
    }

    /// The range `cma_release(pfn, count)` works on, or `None` when the kernel returns false:
    /// 6.x `cma_pages_valid()` (Linux 6.1 `mm/cma.c:522-539`): the first pfn inside the area
    /// (`count` is not checked); 7.x `find_cma_memrange()` (Linux 7.2 `mm/cma.c:960-992`):
    /// `count <= cma->count` and `[pfn, pfn + count)` inside one range — which a disabled area's
    /// kept ranges still pass with `count == 0`.
    pub(crate) fn release_range(&self, pfn: u64, count: u64) -> Option<usize> {
        if !self.behaviour.cma_release_checks_extent {
            return self.range_of(pfn);
        }
        if count > self.count {
            return None;
        }
        let r = self.ranges.iter().position(|r| r.contains(pfn))?;
        let end = self.ranges.get(r)?.end();
        (pfn.checked_add(count)? <= end).then_some(r)
    }

    /// `cma_clear_bitmap()` (Linux 6.1 `mm/cma.c:82-94`, 7.2 `:83-96`): bit `floor((pfn - base) /
    /// 2^opb)`, `ceil(count / 2^opb)` bits of range `r`; 7.x `available_count += count`.
    fn clear_bitmap(&mut self, r: usize, pfn: u64, count: u64, w: LongWidth) {
        let nbits = self.pages_to_bits(count, w);
        let opb = self.order_per_bit;
        if let Some(range) = self.ranges.get_mut(r) {
            range.bitmap.clear((pfn - range.base_pfn) >> opb, nbits);
        }
        self.available = self.available.wrapping_add(count);
    }

    /// `cma_release(cma, pfn_to_page(pfn), count)`: Linux 6.1 `mm/cma.c:551-570`
    /// (`free_contig_range()` then `cma_clear_bitmap()`), 7.2 `:1017-1037`. The caller (the
    /// driver) guarantees every page is allocated by the caller alone; see
    /// [`CmaArea::release_with_refs`] for pages someone else holds too.
    pub(crate) fn release(&mut self, pfn: u64, count: u64, w: LongWidth) -> bool {
        self.release_with_refs(pfn, count, w, &BTreeSet::new())
    }

    /// [`CmaArea::release`] of a range in which the pages `extra` have a second reference (the
    /// caller's refcount plus another holder's). 6.x `free_contig_range()` → `__free_page()`
    /// drops one reference per page, so those pages stay out of the buddy allocator (taken), and
    /// their bits are cleared anyway. 7.x `cma_release()` drops one (`put_page_testzero()`, WARN
    /// "pages are still in use"), then `free_contig_frozen_range()` frees every page: they go back
    /// to the buddy allocator while the other holder still has them
    /// ([`Behaviour::cma_release_ignores_refcount`]).
    pub(crate) fn release_with_refs(&mut self, pfn: u64, count: u64, w: LongWidth, extra: &BTreeSet<Pfn>) -> bool {
        let Some(r) = self.release_range(pfn, count) else {
            return false;
        };
        let keep_extra = !self.behaviour.cma_release_ignores_refcount;
        if let Some(range) = self.ranges.get_mut(r) {
            let off = pfn - range.base_pfn;
            range.taken.clear(off, count);
            if keep_extra {
                for p in extra.range(Pfn(pfn)..Pfn(pfn.saturating_add(count))) {
                    range.taken.set(p.0 - range.base_pfn, 1);
                }
            }
        }
        self.clear_bitmap(r, pfn, count, w);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Version;

    fn area(base: u64, count: u64, opb: u32, boot: &[(u64, u64)]) -> CmaArea {
        let mut bitmap = Bitmap::zeroed(count >> opb);
        for &(s, l) in boot {
            bitmap.set(s, l);
        }
        let obs = AreaObservation::single("reserved", Pfn(base), Pages(count), opb, bitmap.words());
        match CmaArea::from_observation(&obs, Version::V6_1.behaviour()) {
            Ok(a) => a,
            Err(e) => panic!("test area rejected: {e}"),
        }
    }

    const W: LongWidth = LongWidth::W32;

    /// Allocate and return the bitmap index of the result.
    fn alloc_bit(a: &mut CmaArea, count: u64, align: u32, w: LongWidth, busy: &BTreeSet<Pfn>) -> Option<u64> {
        a.alloc(count, align, w, busy).map(|p| (p - a.base_pfn()) >> a.order_per_bit)
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
        assert!(!a.ranges[0].bitmap.test(80) && !a.ranges[0].bitmap.test(83), "busy window was cleared");
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
        assert_eq!(a.ranges[0].bitmap.weight(), 8);
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
        assert_eq!(a.ranges[0].bitmap.weight(), 0);
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
        assert_eq!(a.ranges[0].bitmap.weight(), 2, "ceil(5 / 4) bits");
        assert_eq!(a.ranges[0].taken.weight(), 5, "alloc_contig_range takes exactly count pages");
        assert_eq!(a.alloc(1, 0, W, &BTreeSet::new()), Some(0x1008));
    }

    #[test]
    fn cma_clear_bitmap_floors_the_start_and_ceils_the_count() {
        // opb 1: release of pages 3..5 clears bits floor(3/2)=1 .. +ceil(2/2)=1 -> only bit 1,
        // although page 4 lives under bit 2.
        let mut a = area(0x1000, 16, 1, &[]);
        assert_eq!(a.alloc(8, 0, W, &BTreeSet::new()), Some(0x1000));
        assert!(a.release(0x1003, 2, W));
        assert!(
            a.ranges[0].bitmap.test(0)
                && !a.ranges[0].bitmap.test(1)
                && a.ranges[0].bitmap.test(2)
                && a.ranges[0].bitmap.test(3)
        );
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
        assert_eq!(a.ranges[0].bitmap.weight(), 64);
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
            CmaArea::from_observation(&obs, Version::V6_1.behaviour()),
            Err(ModelError::BitmapLength { expected: 256, got: 255, .. })
        ));
    }

    /// One test range: base, count, boot bit runs (start, len).
    type TestRange<'a> = (u64, u64, &'a [(u64, u64)]);

    /// A 7.x area from its ranges, opb `opb`.
    fn area7(opb: u32, ranges: &[TestRange]) -> CmaArea {
        let ranges: Vec<RangeObservation> = ranges
            .iter()
            .map(|&(base, count, boot)| {
                let mut bitmap = Bitmap::zeroed(count >> opb);
                for &(s, l) in boot {
                    bitmap.set(s, l);
                }
                RangeObservation { base_pfn: Pfn(base), count: Pages(count), bitmap: bitmap.words() }
            })
            .collect();
        let count = ranges.iter().map(|r| r.count.0).sum();
        let obs = AreaObservation {
            name: "hugetlb0".into(),
            order_per_bit: opb,
            count: Pages(count),
            available: None,
            activated: true,
            ranges,
        };
        match CmaArea::from_observation(&obs, Version::V7_2.behaviour()) {
            Ok(a) => a,
            Err(e) => panic!("test area rejected: {e}"),
        }
    }

    const W64: LongWidth = LongWidth::W64;

    #[test]
    fn v7_alignment_offset_is_per_range() {
        // cma-spec-7x §2.2 [observed 7.2 arm64]: base 0x7dc00, cma_alloc(1, 12) -> bit 1024
        // (pfn 0x7e000); base 0xfd800 -> bit 2048 (pfn 0xfe000).
        let none = BTreeSet::new();
        let mut a = area7(0, &[(0x7dc00, 8192, &[(0, 32)])]);
        assert_eq!(a.alloc(1, 12, W64, &none), Some(0x7e000));
        let mut b = area7(0, &[(0xfd800, 8192, &[(0, 128)])]);
        assert_eq!(b.alloc(1, 12, W64, &none), Some(0xfe000));
        // The same two as ranges of one area: range 0 has one 4096-aligned window (bit 1024) and
        // then none, so the next search falls through to range 1 and its own offset: bit 2048.
        let mut two = area7(0, &[(0x7dc00, 2048, &[(0, 32)]), (0xfd800, 8192, &[])]);
        assert_eq!(two.alloc(1, 12, W64, &none), Some(0x7e000));
        assert_eq!(two.alloc(1, 12, W64, &none), Some(0xfe000));
        assert_eq!(two.ranges[1].bitmap.weight(), 1);
        assert_eq!(two.available, 2048 + 8192 - 32 - 2);
    }

    #[test]
    fn v7_ebusy_in_the_first_range_falls_through_and_enomem_does_not() {
        let none = BTreeSet::new();
        // Range 0 has one window for 4 pages; a pin makes it -EBUSY -> range 1 serves.
        let mut a = area7(0, &[(0x1000, 8, &[(0, 4)]), (0x2000, 64, &[])]);
        let pinned = BTreeSet::from([Pfn(0x1005)]);
        assert_eq!(a.alloc(4, 0, W64, &pinned), Some(0x2000));
        assert!(!a.ranges[0].bitmap.test(4), "the busy window's bits were cleared");
        // -ENOMEM from alloc_contig_range() in range 0 stops the call: range 1 is not tried.
        let mut b = area7(0, &[(0x1000, 8, &[(0, 4)]), (0x2000, 64, &[])]);
        let before = b.clone();
        assert_eq!(b.alloc_with(4, 0, W64, &none, &mut |pfn, _| (pfn < 0x2000).then_some(Errno::Other)), None);
        assert_eq!(b, before, "bits cleared again and available_count restored");
        // The same -ENOMEM on 6.x (one range) fails too, and only -EBUSY retries in the range.
        let mut c = area(0x1000, 64, 0, &[]);
        let mut calls = 0;
        let got = c.alloc_with(4, 0, W, &none, &mut |_, _| {
            calls += 1;
            (calls == 1).then_some(Errno::Busy)
        });
        assert_eq!((got, calls), (Some(0x1001), 2), "-EBUSY at bit 0 retries at bit 1");
    }

    #[test]
    fn v7_search_stops_when_count_exceeds_available_count() {
        // cma-spec-7x §2.2: `count > available_count` stops the range loop before any window is
        // tried, even one the bitmap shows free (here available_count was seeded lower).
        let mut a = area7(0, &[(0x1000, 64, &[])]);
        a.available = 3;
        let before = a.clone();
        assert_eq!(a.alloc(4, 0, W64, &BTreeSet::new()), None);
        assert_eq!(a, before);
        assert_eq!(a.alloc(3, 0, W64, &BTreeSet::new()), Some(0x1000));
        assert_eq!(a.available, 0);
        assert!(a.release(0x1000, 3, W64));
        assert_eq!(a.available, 3, "cma_clear_bitmap() gives the pages back");
    }

    #[test]
    fn v7_available_count_counts_pages_not_bits() {
        // cma-spec-7x §11.9: opb 9, cma_alloc(1024) then a release of 1 page: the bit covering
        // it is cleared (512 pages by the bitmap) but available_count grows by 1.
        let mut a = area7(9, &[(0x80000, 262144, &[])]);
        assert_eq!(a.alloc(1024, 0, W64, &BTreeSet::new()), Some(0x80000));
        assert!(a.release(0x80001, 1, W64));
        let obs = a.observe();
        assert_eq!(obs.used_pages(), 1023, "7.x debugfs used = count - available_count");
        assert_eq!(obs.used_bits() << 9, 512, "6.x's bitmap_weight << opb would say 512");
    }

    #[test]
    fn v7_release_refuses_past_the_end_too_big_and_spanning_ranges() {
        // cma-spec-7x §3 [observed 7.2]: (base + count - 2, 4) -> false, (base, count + 1) ->
        // false, nothing changes. 6.x accepted both.
        let mut a = area7(0, &[(0x7dc00, 8192, &[(0, 32)])]);
        assert_eq!(a.alloc(8, 0, W64, &BTreeSet::new()), Some(0x7dc20));
        let before = a.clone();
        assert!(!a.release(0x7dc00 + 8190, 4, W64));
        assert!(!a.release(0x7dc00, 8193, W64));
        assert_eq!(a, before);
        let mut six = area(0x7dc00, 8192, 0, &[(0, 40)]);
        assert!(six.release(0x7dc00 + 8190, 4, W64), "6.x cma_pages_valid() checks the first pfn only");
        // A release from range 0 into range 1 fits no range.
        let mut two = area7(0, &[(0x1000, 16, &[(0, 16)]), (0x1010, 16, &[(0, 16)])]);
        let before = two.clone();
        assert!(!two.release(0x100e, 4, W64));
        assert_eq!(two, before);
        assert!(two.release(0x1010, 4, W64));
    }

    #[test]
    fn v7_disabled_area_accepts_a_zero_page_release_inside_its_kept_range() {
        // cma-spec-7x §1.4: count = 0, ranges kept; cma_release(page inside, 0) -> true, count 1
        // -> false. 6.x: false for both.
        let obs = AreaObservation {
            name: "broken".into(),
            order_per_bit: 0,
            count: Pages(0),
            available: Some(Pages(0)),
            activated: false,
            ranges: vec![RangeObservation { base_pfn: Pfn(0x6fc00), count: Pages(2048), bitmap: vec![] }],
        };
        let mut a = match CmaArea::from_observation(&obs, Version::V7_2.behaviour()) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let before = a.clone();
        assert!(a.release(0x6fc10, 0, W64));
        assert!(!a.release(0x6fc10, 1, W64));
        assert_eq!(a.alloc(1, 0, W64, &BTreeSet::new()), None);
        assert_eq!(a, before);
        let six = AreaObservation::single("broken", Pfn(0x6fc00), Pages(0), 0, vec![]);
        let mut b = match CmaArea::from_observation(&six, Version::V6_12.behaviour()) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        assert!(!b.release(0x6fc00, 0, W64));
    }

    #[test]
    fn v7_release_frees_a_page_with_an_extra_reference_and_6x_keeps_it() {
        // cma-spec-7x §3: 7.x put_page_testzero() + WARN, then free_contig_frozen_range() frees
        // every page; 6.x __free_page() only drops the reference.
        let extra = BTreeSet::from([Pfn(0x1002)]);
        let mut seven = area7(0, &[(0x1000, 64, &[])]);
        assert_eq!(seven.alloc(4, 0, W64, &BTreeSet::new()), Some(0x1000));
        assert!(seven.release_with_refs(0x1000, 4, W64, &extra));
        assert!(!seven.page_taken(0x1002), "7.x: back in the buddy allocator while still held");
        let mut six = area(0x1000, 64, 0, &[]);
        assert_eq!(six.alloc(4, 0, W, &BTreeSet::new()), Some(0x1000));
        assert!(six.release_with_refs(0x1000, 4, W, &extra));
        assert!(six.page_taken(0x1002), "6.x: the other holder keeps it");
        assert!(!six.page_taken(0x1001) && !six.ranges[0].bitmap.test(2), "bits are cleared either way");
    }

    #[test]
    fn v6_refuses_more_than_one_range_and_v7_more_than_eight() {
        let r = |i: u64| RangeObservation { base_pfn: Pfn(0x1000 * (i + 1)), count: Pages(32), bitmap: vec![0] };
        let mut obs = AreaObservation {
            name: "x".into(),
            order_per_bit: 0,
            count: Pages(64),
            available: None,
            activated: true,
            ranges: vec![r(0), r(1)],
        };
        assert!(matches!(
            CmaArea::from_observation(&obs, Version::V6_12.behaviour()),
            Err(ModelError::Ranges { nranges: 2, max: 1, .. })
        ));
        assert!(CmaArea::from_observation(&obs, Version::V7_3.behaviour()).is_ok());
        obs.ranges = (0..9).map(r).collect();
        obs.count = Pages(9 * 32);
        assert!(matches!(
            CmaArea::from_observation(&obs, Version::V7_3.behaviour()),
            Err(ModelError::Ranges { nranges: 9, max: 8, .. })
        ));
        obs.ranges = vec![r(1), r(0)];
        obs.count = Pages(64);
        assert!(matches!(
            CmaArea::from_observation(&obs, Version::V7_3.behaviour()),
            Err(ModelError::RangesOverlap { .. })
        ));
    }

    #[test]
    fn v7_a_request_too_big_for_the_first_range_is_served_by_the_second() {
        // cma_range_alloc(): bitmap_count > bitmap_maxno is -EBUSY (Linux 7.2 mm/cma.c:798), so
        // the range loop goes on; larger than every range (or than available_count) fails.
        let none = BTreeSet::new();
        let mut a = area7(0, &[(0x1000, 16, &[]), (0x2000, 64, &[])]);
        assert_eq!(a.alloc(32, 0, W64, &none), Some(0x2000));
        assert_eq!(a.alloc(33, 0, W64, &none), None, "no range has 33 free pages");
        assert_eq!(a.alloc(16, 0, W64, &none), Some(0x1000));
        assert_eq!(a.alloc(81, 0, W64, &none), None);
        assert_eq!(a.available, 80 - 48);
    }
}
