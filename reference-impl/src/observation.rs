//! What either side reports about the CMA areas: the same shape as the driver's
//! `struct cf_obs_hdr` + `struct cf_area` blocks and as debugfs `cma/<name>/bitmap`.

use crate::units::{Handle, Pages, Pfn};
use serde::{Deserialize, Serialize};

/// One entry of `cma_areas[]` (`struct cma`, Linux 6.1 `mm/cma.h:13-34`, 6.12 `:13-36`) as
/// read under `cma->lock`.
///
/// `bitmap` holds `ceil((count >> order_per_bit) / 32)` little-endian words: bit `i` of the area
/// is bit `i % 32` of `bitmap[i / 32]`, the layout debugfs prints (`mm/cma_debug.c:179-182`).
/// Bit `i` covers pages `[base_pfn + (i << opb), base_pfn + ((i + 1) << opb))`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AreaObservation {
    /// `cma->name`.
    pub name: String,
    /// `cma->base_pfn`.
    pub base_pfn: Pfn,
    /// `cma->count`; 0 for an area `cma_activate_area()` disabled.
    pub count: Pages,
    /// `cma->order_per_bit`.
    pub order_per_bit: u32,
    /// The allocation bitmap, 32-bit little-endian words.
    pub bitmap: Vec<u32>,
}

impl AreaObservation {
    /// `cma_bitmap_maxno()` (Linux 6.1 `mm/cma.h:39-42`, same in 6.12): `count >> opb`, the
    /// number of meaningful bits.
    pub fn bitmap_bits(&self) -> u64 {
        self.count.0.checked_shr(self.order_per_bit).unwrap_or(0)
    }

    /// Number of `u32` words the bitmap must have: `DIV_ROUND_UP(maxno, 32)`, as
    /// `debugfs_create_u32_array()` is sized in `cma_debugfs_add_one()` (Linux 6.1
    /// `mm/cma_debug.c:179-182`).
    pub fn expected_words(&self) -> u64 {
        self.bitmap_bits().div_ceil(32)
    }

    /// Whether bit `i` (`i < bitmap_bits()`) is set; bits outside the bitmap read as clear.
    pub fn bit(&self, i: u64) -> bool {
        if i >= self.bitmap_bits() {
            return false;
        }
        let word = usize::try_from(i / 32).ok().and_then(|w| self.bitmap.get(w)).copied().unwrap_or(0);
        word & (1u32 << (i % 32)) != 0
    }

    /// `bitmap_weight(cma->bitmap, maxno)`: set bits below `maxno`, as debugfs `used` counts them
    /// before shifting by `order_per_bit` (Linux 6.1 `mm/cma_debug.c:34-47`).
    pub fn used_bits(&self) -> u64 {
        let maxno = self.bitmap_bits();
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

    /// debugfs `cma/<name>/used` (`cma_used_get()`, Linux 6.1 `mm/cma_debug.c:34-47`, same in 6.12):
    /// `bitmap_weight(bitmap, maxno) << order_per_bit` pages.
    pub fn used_pages(&self) -> u64 {
        self.used_bits() << self.order_per_bit.min(63)
    }

    /// debugfs `cma/<name>/maxchunk` (`cma_maxchunk_get()`, Linux 6.1 `mm/cma_debug.c:49-69`, same
    /// in 6.12): the longest run of clear bits below `maxno`, shifted by `order_per_bit`, in pages.
    pub fn maxchunk_pages(&self) -> u64 {
        let maxno = self.bitmap_bits();
        let (mut best, mut run) = (0u64, 0u64);
        for i in 0..maxno {
            if self.bit(i) {
                run = 0;
            } else {
                run += 1;
                best = best.max(run);
            }
        }
        best << self.order_per_bit.min(63)
    }

    /// `cma_pages_valid()`'s range test (Linux 6.1 `mm/cma.c:522-539`):
    /// `base_pfn <= pfn < base_pfn + count`. A disabled area contains nothing.
    pub fn contains(&self, pfn: Pfn) -> bool {
        pfn >= self.base_pfn && pfn.checked_pages_since(self.base_pfn).is_some_and(|off| off < self.count)
    }

    /// Whether any page of `[first, first + pages)` lies in this area (`pages == 0` never does).
    pub fn overlaps(&self, first: Pfn, pages: Pages) -> bool {
        if pages.0 == 0 || self.count.0 == 0 {
            return false;
        }
        let Some(end) = first.checked_add(pages) else {
            return true;
        };
        let area_end = self.base_pfn.checked_add(self.count).unwrap_or(Pfn(u64::MAX));
        first < area_end && self.base_pfn < end
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
        AreaObservation {
            name: "reserved".into(),
            base_pfn: Pfn(0x7e000),
            count: Pages(count),
            order_per_bit: opb,
            bitmap,
        }
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
}
