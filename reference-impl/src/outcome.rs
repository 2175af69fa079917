//! The result of one op, on either side.

use crate::observation::AreaObservation;
use crate::units::{Pages, Pfn};
use serde::{Deserialize, Serialize};

/// What one op did. The kernel side builds it from `struct cf_result` (`CF_ST_*`); the model
/// predicts it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// An allocation at an exact, predictable place: `cma_alloc()` (Linux 6.1 `mm/cma.c:420-520`)
    /// or a coherent allocation served by CMA or by an atomic pool whose pages are known.
    Allocated {
        /// First pfn.
        pfn: Pfn,
        /// Pages (`count` for `cma_alloc`, `PAGE_ALIGN(size) >> PAGE_SHIFT` for DMA).
        pages: Pages,
    },
    /// Model-only prediction: the buddy allocator serves the request (`alloc_pages_node()` in
    /// `__dma_direct_alloc_pages()`, Linux 6.1 `kernel/dma/direct.c:118-160`, or the arm32 remap
    /// allocator). The pfn is not predictable, but the pages must lie outside every CMA area.
    AllocatedOutsideCma {
        /// Pages (`PAGE_ALIGN(size) >> PAGE_SHIFT`).
        pages: Pages,
    },
    /// The allocation returned NULL.
    AllocFailed,
    /// `cma_release()` returned true (or, for `dma_free`, the buffer was freed).
    Released,
    /// `cma_release()` returned false: `cma_pages_valid()` rejected the pfn (Linux 6.1
    /// `mm/cma.c:522-539`).
    ReleaseRejected,
    /// Dead, unknown or wrong-kind handle, or `unpin` of a page the driver does not hold pinned:
    /// the driver did not call the kernel.
    Noop,
    /// An unsafe raw release (past the area end, or over pages no live `cma_alloc` handle holds),
    /// or a `pin` of a page outside the area, allocated, already pinned or beyond `MAX_PINS`,
    /// that the driver refused: the kernel was not called.
    Refused,
    /// `pin`: `alloc_contig_range(pfn, pfn + 1, MIGRATE_CMA, GFP_KERNEL)` returned 0 (Linux 6.1
    /// `mm/page_alloc.c:9273-9397`) and the driver holds the page.
    Pinned {
        /// The pinned page.
        pfn: Pfn,
    },
    /// `pin`: `alloc_contig_range()` returned an error; nothing is held. The model predicts this
    /// only for a page that is out of the buddy allocator under a clear bitmap bit (an area with
    /// `order_per_bit > 0` after a partial release), so a kernel `PinFailed` for a page the model
    /// calls free is a divergence: the page was not as free as the model thought.
    PinFailed {
        /// The page that could not be taken.
        pfn: Pfn,
    },
    /// `kmap`: the driver took the page, `kmap()`ed and `kunmap()`ed it and gave it back; it
    /// keeps a PKMAP slot (spec §5.6).
    Kmapped {
        /// The page.
        pfn: Pfn,
    },
    /// `unpin`: the driver gave the page back with `free_contig_range(pfn, 1)` (Linux 6.1
    /// `mm/page_alloc.c:9498-9509`).
    Unpinned {
        /// The page given back.
        pfn: Pfn,
    },
    /// `dma_map`: the driver mapped `pages` pages of the handle for streaming DMA, synced them
    /// both ways and unmapped them; nothing changed.
    Mapped {
        /// Pages mapped: every page of a `dma_alloc` buffer, every still-held page of a
        /// `cma_alloc`.
        pages: Pages,
    },
    /// `dma_map`: the mapping failed (`dma_mapping_error()`, a failed `dma_map_sgtable()`) or
    /// mapped other pages than the buffer's own. The model never predicts it: every mapping it
    /// does not refuse succeeds at the pages' own address.
    MapFailed,
    /// An observation was taken.
    Observed,
    /// The op was out of range (for example `align > 31`, spec §2.1): the driver rejected it.
    BadOp,
}

impl Outcome {
    /// The outcome's class, without pfns: what signatures and the fuzzer's features name it by.
    /// One classifier for both (cmafuzz's oracle and campaign features); the answers to `observe`
    /// and to a malformed op share `other`.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Allocated { .. } => "allocated",
            Outcome::AllocatedOutsideCma { .. } => "outside-cma",
            Outcome::AllocFailed => "failed",
            Outcome::Released => "released",
            Outcome::ReleaseRejected => "rejected",
            Outcome::Noop => "noop",
            Outcome::Refused => "refused",
            Outcome::Pinned { .. } => "pinned",
            Outcome::PinFailed { .. } => "pin-failed",
            Outcome::Kmapped { .. } => "kmapped",
            Outcome::Unpinned { .. } => "unpinned",
            Outcome::Mapped { .. } => "mapped",
            Outcome::MapFailed => "map-failed",
            Outcome::Observed | Outcome::BadOp => "other",
        }
    }

    /// Whether this model prediction agrees with the kernel's `kernel` outcome. Everything must
    /// be equal, except that [`Outcome::AllocatedOutsideCma`] agrees with a kernel
    /// `Allocated { pfn, pages }` of the same size whose pages `[pfn, pfn + pages)` lie outside
    /// every area in `areas` (the buddy allocator never serves these requests from CMA
    /// pageblocks: they are not movable).
    pub fn agrees_with(&self, kernel: &Outcome, areas: &[AreaObservation]) -> bool {
        match (self, kernel) {
            (Outcome::AllocatedOutsideCma { pages }, Outcome::Allocated { pfn, pages: kernel_pages }) => {
                pages == kernel_pages
                    && pfn.checked_add(*pages).is_some()
                    && !areas.iter().any(|a| a.overlaps(*pfn, *pages))
            }
            _ => self == kernel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn areas() -> Vec<AreaObservation> {
        vec![AreaObservation::single("reserved", Pfn(0x7e000), Pages(8192), 0, vec![0; 256])]
    }

    #[test]
    fn outside_cma_agrees_with_a_buddy_allocation_of_the_same_size() {
        let model = Outcome::AllocatedOutsideCma { pages: Pages(1) };
        let kernel = Outcome::Allocated { pfn: Pfn(0x41234), pages: Pages(1) };
        assert!(model.agrees_with(&kernel, &areas()));
    }

    #[test]
    fn outside_cma_disagrees_with_an_allocation_inside_an_area() {
        let model = Outcome::AllocatedOutsideCma { pages: Pages(2) };
        let straddling = Outcome::Allocated { pfn: Pfn(0x7dfff), pages: Pages(2) };
        let inside = Outcome::Allocated { pfn: Pfn(0x7e040), pages: Pages(2) };
        assert!(!model.agrees_with(&straddling, &areas()));
        assert!(!model.agrees_with(&inside, &areas()));
    }

    #[test]
    fn outside_cma_disagrees_with_a_different_size_or_a_failure() {
        let model = Outcome::AllocatedOutsideCma { pages: Pages(2) };
        let other_size = Outcome::Allocated { pfn: Pfn(0x41000), pages: Pages(1) };
        assert!(!model.agrees_with(&other_size, &areas()));
        assert!(!model.agrees_with(&Outcome::AllocFailed, &areas()));
    }

    #[test]
    fn exact_outcomes_must_be_equal() {
        let a = Outcome::Allocated { pfn: Pfn(0x7e040), pages: Pages(3) };
        let b = Outcome::Allocated { pfn: Pfn(0x7e043), pages: Pages(3) };
        assert!(a.agrees_with(&a.clone(), &areas()));
        assert!(!a.agrees_with(&b, &areas()));
        assert!(Outcome::Noop.agrees_with(&Outcome::Noop, &areas()));
        assert!(!Outcome::Released.agrees_with(&Outcome::ReleaseRejected, &areas()));
    }
}
