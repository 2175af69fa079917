//! `struct gen_pool` with page granularity (`gen_pool_create(PAGE_SHIFT, …)`) and the
//! `gen_pool_first_fit_order_align` algorithm, as the atomic DMA pools use it (`lib/genalloc.c`,
//! Linux 6.1 and 6.12).

use crate::bitmap::{find_next_zero_area_off, Bitmap, LongWidth};

/// One chunk (`struct gen_pool_chunk`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// First pfn, if known: `None` for pages from the buddy allocator, whose place the model
    /// cannot predict.
    pub(crate) base_pfn: Option<u64>,
    bits: Bitmap,
    avail: u64,
}

impl Chunk {
    /// Pages in the chunk.
    pub(crate) fn pages(&self) -> u64 {
        self.bits.len()
    }
}

/// Where an allocation sits: chunk index (in `gen_pool_add` order) and first page in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolAddr {
    pub(crate) chunk: usize,
    pub(crate) page: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GenPool {
    /// In `gen_pool_add` order; `gen_pool_add_virt()` uses `list_add_rcu`, so searches run from
    /// the last one back (`lib/genalloc.c:203`).
    chunks: Vec<Chunk>,
}

impl GenPool {
    /// `gen_pool_add_virt(pool, virt, phys, pages << PAGE_SHIFT, nid)`.
    pub(crate) fn add(&mut self, base_pfn: Option<u64>, pages: u64) {
        self.chunks.push(Chunk { base_pfn, bits: Bitmap::zeroed(pages), avail: pages });
    }

    pub(crate) fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// `gen_pool_size()` in pages.
    pub(crate) fn size(&self) -> u64 {
        self.chunks.iter().map(|c| c.bits.len()).sum()
    }

    /// `gen_pool_avail()` in pages.
    pub(crate) fn avail(&self) -> u64 {
        self.chunks.iter().map(|c| c.avail).sum()
    }

    /// `gen_pool_alloc(pool, pages << PAGE_SHIFT)` with `gen_pool_first_fit_order_align`
    /// (Linux 6.1 `lib/genalloc.c:729-737`): newest chunk first, a chunk with `avail < size` is
    /// skipped, then first fit aligned to `roundup_pow_of_two(pages)` relative to the chunk start.
    /// `pages == 0` fails (`gen_pool_alloc` returns 0 for size 0).
    pub(crate) fn alloc(&mut self, pages: u64) -> Option<PoolAddr> {
        if pages == 0 {
            return None;
        }
        let align_mask = pages.checked_next_power_of_two()? - 1;
        for (index, chunk) in self.chunks.iter_mut().enumerate().rev() {
            if pages > chunk.avail {
                continue;
            }
            let end_bit = chunk.bits.len();
            let page = find_next_zero_area_off(&chunk.bits, end_bit, 0, pages, align_mask, 0, LongWidth::W64);
            if page >= end_bit {
                continue;
            }
            chunk.bits.set(page, pages);
            chunk.avail -= pages;
            return Some(PoolAddr { chunk: index, page });
        }
        None
    }

    /// `gen_pool_free(pool, addr, pages << PAGE_SHIFT)`.
    pub(crate) fn free(&mut self, addr: PoolAddr, pages: u64) {
        if let Some(chunk) = self.chunks.get_mut(addr.chunk) {
            chunk.bits.clear(addr.page, pages);
            chunk.avail = chunk.avail.saturating_add(pages).min(chunk.bits.len());
        }
    }

    /// `gen_pool_virt_to_phys()` as a pfn, if the chunk's place is known.
    pub(crate) fn pfn(&self, addr: PoolAddr) -> Option<u64> {
        self.chunks.get(addr.chunk).and_then(|c| c.base_pfn).map(|b| b + addr.page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_pool_first_fit_order_align_aligns_to_the_rounded_up_size() {
        // spec §9.1 arm32: 2 pages at offset 0, then 3 pages at offset 4.
        let mut p = GenPool::default();
        p.add(Some(0x7e000), 64);
        assert_eq!(p.alloc(2).map(|a| a.page), Some(0));
        assert_eq!(p.alloc(3).map(|a| a.page), Some(4));
        assert_eq!(p.avail(), 59);
    }

    #[test]
    fn gen_pool_alloc_searches_newest_chunk_first_and_skips_chunks_short_of_avail() {
        let mut p = GenPool::default();
        p.add(Some(0x1000), 4);
        p.add(Some(0x2000), 4);
        assert_eq!(p.alloc(1).and_then(|a| p.pfn(a)), Some(0x2000));
        assert_eq!(p.alloc(4).and_then(|a| p.pfn(a)), Some(0x1000));
        assert_eq!(p.alloc(4), None);
        assert_eq!(p.alloc(0), None);
    }

    #[test]
    fn gen_pool_free_makes_the_range_reusable() {
        let mut p = GenPool::default();
        p.add(None, 8);
        let a = p.alloc(8);
        assert!(a.is_some());
        assert_eq!(p.alloc(1), None);
        if let Some(a) = a {
            p.free(a, 8);
        }
        assert_eq!(p.avail(), 8);
        assert_eq!(p.alloc(2).map(|a| a.page), Some(0));
    }
}
