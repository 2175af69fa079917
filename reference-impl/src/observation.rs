//! What either side reports about the CMA areas: the same shape as the driver's
//! `struct cf_obs_hdr` + `struct cf_area` blocks and as debugfs `cma/<name>/bitmap`.

use crate::units::{Handle, Pages, Pfn};
use serde::{Deserialize, Serialize};

/// One range of a CMA area: 7.x `struct cma_memrange` (Linux 7.2 `mm/cma.h:26-36`), or the
/// single `base_pfn`/`count`/`bitmap` of a 6.1/6.12 `struct cma` (6.1 `mm/cma.h:13-34`).
///
/// `bitmap` holds `ceil((count >> order_per_bit) / 32)` little-endian words: bit `i` of the range
/// is bit `i % 32` of `bitmap[i / 32]`, the layout debugfs prints (`mm/cma_debug.c:179-182`; 7.2
/// `ranges/<r>/bitmap`, `:178-191`). Bit `i` covers pages `[base_pfn + (i << opb), base_pfn +
/// ((i + 1) << opb))`. An area that is not activated has no bitmap (empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RangeObservation {
    /// `cmr->base_pfn` (6.x `cma->base_pfn`).
    pub base_pfn: Pfn,
    /// `cmr->count` pages. 6.x has no per-range count: the area's `cma->count` (0 when disabled).
    /// 7.x keeps a disabled area's range counts (`mm/cma.c:185-203`).
    pub count: Pages,
    /// The allocation bitmap, 32-bit little-endian words; empty for an area not activated.
    pub bitmap: Vec<u32>,
}

impl RangeObservation {
    /// `cma_bitmap_maxno(cma, cmr)` (Linux 7.2 `mm/cma.h:77-81`; 6.1 `:39-42`): `count >> opb`.
    pub fn bitmap_bits(&self, order_per_bit: u32) -> u64 {
        self.count.0.checked_shr(order_per_bit).unwrap_or(0)
    }

    /// `DIV_ROUND_UP(maxno, 32)`: the words `debugfs_create_u32_array()` is sized with.
    pub fn expected_words(&self, order_per_bit: u32) -> u64 {
        self.bitmap_bits(order_per_bit).div_ceil(32)
    }

    /// Whether bit `i` of this range is set; bits outside the bitmap read as clear.
    pub fn bit(&self, order_per_bit: u32, i: u64) -> bool {
        if i >= self.bitmap_bits(order_per_bit) {
            return false;
        }
        let word = usize::try_from(i / 32).ok().and_then(|w| self.bitmap.get(w)).copied().unwrap_or(0);
        word & (1u32 << (i % 32)) != 0
    }

    /// `bitmap_weight(cmr->bitmap, maxno)`: set bits below `maxno`.
    pub fn used_bits(&self, order_per_bit: u32) -> u64 {
        let maxno = self.bitmap_bits(order_per_bit);
        let mut used = 0u64;
        for (w, word) in self.bitmap.iter().enumerate() {
            let first = (w as u64).saturating_mul(32);
            if first >= maxno {
                break;
            }
            let valid = maxno - first;
            let mask = if valid >= 32 { u32::MAX } else { (1u32 << valid) - 1 };
            used += u64::from((word & mask).count_ones());
        }
        used
    }

    /// The longest run of clear bits below `maxno`, in bits (`for_each_clear_bitrange`, Linux 7.2
    /// `mm/cma_debug.c:46-67`).
    pub fn maxchunk_bits(&self, order_per_bit: u32) -> u64 {
        let (mut best, mut run) = (0u64, 0u64);
        for i in 0..self.bitmap_bits(order_per_bit) {
            if self.bit(order_per_bit, i) {
                run = 0;
            } else {
                run += 1;
                best = best.max(run);
            }
        }
        best
    }

    /// `base_pfn <= pfn < base_pfn + count` (6.1 `cma_pages_valid()`, `mm/cma.c:522-539`; 7.2
    /// `find_cma_memrange()`, `:960-992`).
    pub fn contains(&self, pfn: Pfn) -> bool {
        pfn >= self.base_pfn && pfn.checked_pages_since(self.base_pfn).is_some_and(|off| off < self.count)
    }

    /// Whether any page of `[first, first + pages)` lies in this range (`pages == 0` never does).
    pub fn overlaps(&self, first: Pfn, pages: Pages) -> bool {
        if pages.0 == 0 || self.count.0 == 0 {
            return false;
        }
        let Some(end) = first.checked_add(pages) else {
            return true;
        };
        let range_end = self.base_pfn.checked_add(self.count).unwrap_or(Pfn(u64::MAX));
        first < range_end && self.base_pfn < end
    }
}

/// One entry of `cma_areas[]` as read under `cma->lock`: 7.x `struct cma` (Linux 7.2
/// `mm/cma.h:39-65`) with its `ranges[nranges]`, or a 6.1/6.12 `struct cma` (6.1
/// `mm/cma.h:13-34`, 6.12 `:13-36`) as one range.
///
/// The JSON form also reads the flat 6.x form of earlier cmafuzz versions (`base_pfn`, `count`,
/// `order_per_bit`, `bitmap` next to `name`) as one range; a record with both or neither of
/// `base_pfn` and `ranges` is refused with a message saying so.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "AreaRepr")]
pub struct AreaObservation {
    /// `cma->name`.
    pub name: String,
    /// `cma->order_per_bit`, one value for every range.
    pub order_per_bit: u32,
    /// `cma->count`: pages, the sum over the ranges; 0 for an area `cma_activate_area()` disabled.
    pub count: Pages,
    /// 7.x `cma->available_count` (Linux 7.2 `mm/cma.h:42`, §1.2 of the 7.x spec): pages not
    /// handed out, which with `order_per_bit > 0` can differ from the clear bits shifted by
    /// `order_per_bit`. `None` on 6.1/6.12, which have no such field (nothing derived is put here,
    /// so that a 6.x observation never claims a value the kernel does not hold).
    #[serde(default)]
    pub available: Option<Pages>,
    /// 7.x `test_bit(CMA_ACTIVATED, &cma->flags)` (`mm/cma.c:173-181`); on 6.x, which has no
    /// flag, `count != 0` (a failed activation sets `count = 0`, 6.1 `mm/cma.c:126-135`).
    pub activated: bool,
    /// The ranges in `ranges[]` order (ascending base); 6.x areas have exactly one.
    pub ranges: Vec<RangeObservation>,
}

/// The serde input of [`AreaObservation`]: the current form or the flat 6.x one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaRepr {
    name: String,
    order_per_bit: u32,
    count: Pages,
    #[serde(default)]
    available: Option<Pages>,
    #[serde(default)]
    activated: Option<bool>,
    #[serde(default)]
    ranges: Option<Vec<RangeObservation>>,
    /// Flat form: the one range's base.
    #[serde(default)]
    base_pfn: Option<Pfn>,
    /// Flat form: the one range's bitmap.
    #[serde(default)]
    bitmap: Option<Vec<u32>>,
}

impl TryFrom<AreaRepr> for AreaObservation {
    type Error = String;

    fn try_from(r: AreaRepr) -> Result<AreaObservation, String> {
        let ranges = match (r.ranges, r.base_pfn, r.bitmap) {
            (Some(ranges), None, None) => ranges,
            (None, Some(base_pfn), Some(bitmap)) => vec![RangeObservation { base_pfn, count: r.count, bitmap }],
            (None, _, _) => {
                return Err(format!(
                    "area `{}`: neither `ranges` nor the older flat `base_pfn` + `bitmap` fields are given",
                    r.name
                ))
            }
            (Some(_), _, _) => {
                return Err(format!(
                    "area `{}`: both `ranges` and the older flat `base_pfn`/`bitmap` fields are given; keep one",
                    r.name
                ))
            }
        };
        Ok(AreaObservation {
            activated: r.activated.unwrap_or(r.count.0 != 0),
            name: r.name,
            order_per_bit: r.order_per_bit,
            count: r.count,
            available: r.available,
            ranges,
        })
    }
}

impl AreaObservation {
    /// A 6.1/6.12 area: one range, no `available_count`, activated iff `count != 0`.
    pub fn single(name: impl Into<String>, base_pfn: Pfn, count: Pages, order_per_bit: u32, bitmap: Vec<u32>) -> Self {
        AreaObservation {
            name: name.into(),
            order_per_bit,
            count,
            available: None,
            activated: count.0 != 0,
            ranges: vec![RangeObservation { base_pfn, count, bitmap }],
        }
    }

    /// `cma_get_base()` (Linux 7.2 `mm/cma.c:40-44`: range 0's base; 6.x `cma->base_pfn`);
    /// `Pfn(0)` for an area without ranges.
    pub fn base_pfn(&self) -> Pfn {
        self.ranges.first().map_or(Pfn(0), |r| r.base_pfn)
    }

    /// Meaningful bits of range `r`: `cma_bitmap_maxno()`, 0 when the area is not activated
    /// (its bitmaps are gone, Linux 7.2 `mm/cma.c:185-203`) or `r` does not exist.
    pub fn range_bits(&self, r: usize) -> u64 {
        match self.ranges.get(r) {
            Some(range) if self.activated => range.bitmap_bits(self.order_per_bit),
            _ => 0,
        }
    }

    /// Meaningful bits of all ranges together: the index space of [`AreaObservation::bit`].
    pub fn bitmap_bits(&self) -> u64 {
        (0..self.ranges.len()).map(|r| self.range_bits(r)).sum()
    }

    /// Words range `r`'s bitmap must have (0 when the area is not activated).
    pub fn expected_words(&self, r: usize) -> u64 {
        self.range_bits(r).div_ceil(32)
    }

    /// Whether bit `i` of the ranges' bitmaps laid end to end (range 0's bits first) is set;
    /// bits past the end read as clear.
    pub fn bit(&self, mut i: u64) -> bool {
        for (r, range) in self.ranges.iter().enumerate() {
            let bits = self.range_bits(r);
            if i < bits {
                return range.bit(self.order_per_bit, i);
            }
            i -= bits;
        }
        false
    }

    /// `bitmap_weight()` summed over the ranges: set bits below each range's `maxno`.
    pub fn used_bits(&self) -> u64 {
        if !self.activated {
            return 0;
        }
        self.ranges.iter().map(|r| r.used_bits(self.order_per_bit)).sum()
    }

    /// debugfs `cma/<name>/used` in pages: 7.x `count - available_count` (`cma_used_get()`,
    /// Linux 7.2 `mm/cma_debug.c:34-44`) when the area reports `available`; 6.x
    /// `bitmap_weight(bitmap, maxno) << order_per_bit` (6.1 `mm/cma_debug.c:34-47`, same in 6.12).
    pub fn used_pages(&self) -> u64 {
        match self.available {
            Some(avail) => self.count.0.saturating_sub(avail.0),
            None => self.used_bits() << self.order_per_bit.min(63),
        }
    }

    /// debugfs `cma/<name>/maxchunk` (`cma_maxchunk_get()`, Linux 6.1 `mm/cma_debug.c:49-69`; 7.2
    /// `:46-67`, the longest run within any one range): clear bits shifted by `order_per_bit`.
    pub fn maxchunk_pages(&self) -> u64 {
        if !self.activated {
            return 0;
        }
        let best = self.ranges.iter().map(|r| r.maxchunk_bits(self.order_per_bit)).max().unwrap_or(0);
        best << self.order_per_bit.min(63)
    }

    /// The index of the range holding `pfn`, if the area is activated and one does.
    pub fn range_of(&self, pfn: Pfn) -> Option<usize> {
        if self.count.0 == 0 {
            return None;
        }
        self.ranges.iter().position(|r| r.contains(pfn))
    }

    /// Whether `pfn` is a page of the area (some range holds it). A disabled area contains nothing.
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.range_of(pfn).is_some()
    }

    /// Whether any page of `[first, first + pages)` lies in the area (`pages == 0` never does).
    pub fn overlaps(&self, first: Pfn, pages: Pages) -> bool {
        self.count.0 != 0 && self.ranges.iter().any(|r| r.overlaps(first, pages))
    }

    /// Where the area lies, for people: `base_pfn 0x7e000 count 8192` for one range,
    /// `ranges 0x1000+64,0x2000+32 count 96` for several; `, not activated` when it is not.
    pub fn extent_text(&self) -> String {
        let mut s = match self.ranges.as_slice() {
            [r] => format!("base_pfn {:#x} count {}", r.base_pfn.0, self.count.0),
            rs => {
                let parts: Vec<String> = rs.iter().map(|r| format!("{:#x}+{}", r.base_pfn.0, r.count.0)).collect();
                format!("ranges {} count {}", parts.join(","), self.count.0)
            }
        };
        if !self.activated {
            s.push_str(", not activated");
        }
        s
    }

    /// `[base_pfn, base_pfn + count)` of every range of an area with pages.
    pub fn pfn_ranges(&self) -> impl Iterator<Item = (Pfn, Pages)> + '_ {
        self.ranges.iter().filter(move |r| self.count.0 != 0 && r.count.0 != 0).map(|r| (r.base_pfn, r.count))
    }
}

/// The memory type a kernel mapping gives a page, decoded from the hardware descriptor with the
/// CPU's attribute registers (spec §5.1, §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemType {
    /// Normal memory, cacheable (write-back or write-through, any allocation hint): arm32
    /// `L_PTE_MT_WRITEALLOC`/`WRITEBACK`/`WRITETHROUGH`, arm64 `MT_NORMAL(_TAGGED)`.
    Wb,
    /// Normal memory, inner and outer non-cacheable: arm32 `L_PTE_MT_BUFFERABLE`
    /// (`pgprot_dmacoherent`, `pgprot_writecombine`), arm64 `MT_NORMAL_NC`.
    Nc,
    /// Strongly-ordered (arm32 `L_PTE_MT_UNCACHED`) or Device-nGnRnE.
    So,
    /// Device memory (arm32 `L_PTE_MT_DEV_SHARED`, arm64 `MT_DEVICE_nGnRE`).
    Dev,
}

impl MemType {
    /// Whether the CPU may cache the page through this mapping.
    pub fn cacheable(self) -> bool {
        matches!(self, MemType::Wb)
    }

    /// Short lower-case name, as printed in reports and signatures.
    pub fn name(self) -> &'static str {
        match self {
            MemType::Wb => "wb",
            MemType::Nc => "nc",
            MemType::So => "so",
            MemType::Dev => "dev",
        }
    }
}

/// Which part of the kernel's address space a mapping lives in (spec §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    /// The linear map of lowmem (`page_address()` of a lowmem page; all RAM on arm64).
    Lin,
    /// `[VMALLOC_START, VMALLOC_END)`: `vmap()` remaps, the atomic pools.
    Vmap,
    /// arm32 persistent kmap slots (`PKMAP_BASE`, `LAST_PKMAP` pages).
    Pkmap,
    /// The fixmap, including the per-CPU `kmap_atomic` slots.
    Fixmap,
}

impl MapKind {
    /// Short lower-case name, as printed in reports and signatures.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Lin => "lin",
            MapKind::Vmap => "vmap",
            MapKind::Pkmap => "pkmap",
            MapKind::Fixmap => "fixmap",
        }
    }
}

/// The page-table level of the leaf descriptor (`CF_LVL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapLevel {
    /// A 4 KiB page.
    Pte,
    /// arm32 1 MiB section, LPAE 2 MiB block.
    Section,
    /// arm64 2 MiB block.
    Pmd,
    /// arm64 1 GiB block.
    Pud,
}

impl MapLevel {
    /// Short lower-case name, as printed in reports and signatures.
    pub fn name(self) -> &'static str {
        match self {
            MapLevel::Pte => "pte",
            MapLevel::Section => "section",
            MapLevel::Pmd => "pmd",
            MapLevel::Pud => "pud",
        }
    }
}

/// Where a mapped page is: a pfn, or, on the model side, page `index` of the buffer `handle`
/// defined when the model cannot predict its pfn (buddy-allocator pages outside every CMA area).
/// The oracle turns a `Buffer` into a pfn with the kernel's outcome for that handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageAddr {
    /// A physical page.
    Pfn(Pfn),
    /// The first page of a run inside the buffer defined by `handle`.
    Buffer {
        /// The allocating op's handle.
        handle: Handle,
        /// Page index inside the buffer.
        index: u64,
    },
}

/// A run of `pages` consecutive pages mapped by consecutive virtual pages of one kind, one
/// memory type (and, kernel side, one level): one `struct cf_map`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MapRun {
    /// Where the mapping lives.
    pub kind: MapKind,
    /// First page.
    pub first: PageAddr,
    /// Pages in the run (>= 1).
    pub pages: u64,
    /// Memory type of every page of the run.
    pub mem: MemType,
    /// Virtual address of the first page: always known on the kernel side; the model knows it
    /// for the linear map and PKMAP slots, not for vmalloc addresses.
    pub va: Option<u64>,
    /// Descriptor level: kernel side only.
    pub level: Option<MapLevel>,
}

/// One observation: every CMA area (in `cma_areas[]` order), `NR_FREE_CMA_PAGES`, and every
/// kernel mapping of the pages of interest (every page of every CMA area and of every live
/// buffer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Observation {
    /// The areas, indexed like the kernel's `cma_areas[]`.
    pub areas: Vec<AreaObservation>,
    /// `global_zone_page_state(NR_FREE_CMA_PAGES)` from the kernel; the model does not predict
    /// buddy-allocator state and reports `None`.
    pub cma_free: Option<Pages>,
    /// The mapping table, sorted by (kind, va) on the kernel side.
    #[serde(default)]
    pub maps: Vec<MapRun>,
    /// The kernel had more runs than `CF_MAX_MAPS` and sent only the first ones.
    #[serde(default)]
    pub maps_truncated: bool,
    /// arm32 highmem: the PKMAP slot assigned last (`last_pkmap_nr`), when known.
    #[serde(default)]
    pub pkmap_last: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(count: u64, opb: u32, bitmap: Vec<u32>) -> AreaObservation {
        AreaObservation::single("reserved", Pfn(0x7e000), Pages(count), opb, bitmap)
    }

    #[test]
    fn used_bits_ignores_bits_beyond_maxno() {
        let a = area(40, 0, vec![u32::MAX, u32::MAX]);
        assert_eq!(a.used_bits(), 40);
        assert!(a.bit(39));
        assert!(!a.bit(40));
    }

    #[test]
    fn used_bits_counts_bitmap_bits_not_pages() {
        let a = area(64, 2, vec![0b1011]);
        assert_eq!(a.bitmap_bits(), 16);
        assert_eq!(a.used_bits(), 3);
    }

    #[test]
    fn used_and_maxchunk_follow_cma_debug_c() {
        // bits 0-63 set (the arm32 pool), 64-95 clear, 96 set, the rest clear
        let mut words = vec![0u32; 256];
        words[0] = u32::MAX;
        words[1] = u32::MAX;
        words[3] = 1;
        let a = area(8192, 0, words);
        assert_eq!(a.used_pages(), 65);
        assert_eq!(a.maxchunk_pages(), 8192 - 97);
        // order_per_bit 2: figures are bits << 2; a full bitmap has no chunk
        let b = area(64, 2, vec![0b1111_0000_0000_0011]);
        assert_eq!(b.used_pages(), 6 << 2);
        assert_eq!(b.maxchunk_pages(), 10 << 2);
        assert_eq!(area(64, 0, vec![u32::MAX, u32::MAX]).maxchunk_pages(), 0);
    }

    #[test]
    fn contains_is_half_open_like_cma_pages_valid() {
        let a = area(8192, 0, vec![0; 256]);
        assert!(a.contains(Pfn(0x7e000)));
        assert!(a.contains(Pfn(0x7e000 + 8191)));
        assert!(!a.contains(Pfn(0x7e000 + 8192)));
        assert!(!a.contains(Pfn(0x7dfff)));
        assert!(!area(0, 0, vec![]).contains(Pfn(0x7e000)));
    }

    #[test]
    fn overlaps_detects_ranges_straddling_the_area_edges() {
        let a = area(8192, 0, vec![0; 256]);
        assert!(a.overlaps(Pfn(0x7dfff), Pages(2)));
        assert!(!a.overlaps(Pfn(0x7dfff), Pages(1)));
        assert!(a.overlaps(Pfn(0x7e000 + 8191), Pages(5)));
        assert!(!a.overlaps(Pfn(0x7e000 + 8192), Pages(5)));
        assert!(!a.overlaps(Pfn(0x7e000), Pages(0)));
    }

    fn two_ranges() -> AreaObservation {
        // 7.x: range 0 at 0x1000 (64 pages, bits 0-3 set), range 1 at 0x2000 (32 pages, bit 31 set)
        AreaObservation {
            name: "hugetlb0".into(),
            order_per_bit: 0,
            count: Pages(96),
            available: Some(Pages(91)),
            activated: true,
            ranges: vec![
                RangeObservation { base_pfn: Pfn(0x1000), count: Pages(64), bitmap: vec![0b1111, 0] },
                RangeObservation { base_pfn: Pfn(0x2000), count: Pages(32), bitmap: vec![1 << 31] },
            ],
        }
    }

    #[test]
    fn helpers_walk_every_range() {
        let a = two_ranges();
        assert_eq!(a.bitmap_bits(), 96);
        assert!(a.bit(3) && !a.bit(4) && a.bit(64 + 31) && !a.bit(96));
        assert_eq!(a.used_bits(), 5);
        assert_eq!(a.used_pages(), 96 - 91, "7.x debugfs used = count - available_count");
        assert_eq!(a.maxchunk_pages(), 60, "a run never crosses into the next range");
        assert_eq!(a.range_of(Pfn(0x2000 + 31)), Some(1));
        assert!(!a.contains(Pfn(0x1040)), "the hole between the ranges is no page of the area");
        assert!(a.overlaps(Pfn(0x1fff), Pages(2)) && !a.overlaps(Pfn(0x1040), Pages(0xfc0)));
        assert_eq!(a.base_pfn(), Pfn(0x1000));
    }

    #[test]
    fn a_disabled_7x_area_keeps_its_ranges_but_has_no_bits_and_contains_nothing() {
        let mut a = two_ranges();
        a.activated = false;
        a.count = Pages(0);
        a.available = Some(Pages(0));
        for r in &mut a.ranges {
            r.bitmap.clear();
        }
        assert_eq!((a.bitmap_bits(), a.used_bits(), a.maxchunk_pages()), (0, 0, 0));
        assert!(!a.contains(Pfn(0x1000)));
        assert_eq!(a.ranges[0].count, Pages(64));
    }

    #[test]
    fn json_round_trips_and_reads_the_flat_6x_form() {
        let a = two_ranges();
        let text = serde_json::to_string(&a).expect("serialise");
        assert_eq!(serde_json::from_str::<AreaObservation>(&text).expect("parse"), a);
        let old = r#"{"name":"reserved","base_pfn":516096,"count":8192,"order_per_bit":0,"bitmap":[3]}"#;
        let parsed: AreaObservation = serde_json::from_str(old).expect("flat form");
        assert_eq!(parsed, AreaObservation::single("reserved", Pfn(516096), Pages(8192), 0, vec![3]));
        assert!(parsed.activated && parsed.available.is_none());
        let both = r#"{"name":"x","base_pfn":1,"count":0,"order_per_bit":0,"bitmap":[],"ranges":[]}"#;
        let e = serde_json::from_str::<AreaObservation>(both).expect_err("both forms");
        assert!(e.to_string().contains("keep one"), "{e}");
        let neither = r#"{"name":"x","count":0,"order_per_bit":0}"#;
        let e = serde_json::from_str::<AreaObservation>(neither).expect_err("neither form");
        assert!(e.to_string().contains("neither"), "{e}");
    }
}
