//! Distinct newtypes for the quantities CMA code mixes up.
//!
//! CMA's real bugs are unit confusions (pages vs bitmap bits, order vs count), so a page frame
//! number, a page count, a page order and a byte size are four types with no arithmetic operators
//! between them. Every operation that can overflow is a `checked_*` method returning `Option`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A page frame number, as returned by `page_to_pfn()` (`include/asm-generic/memory_model.h`,
/// Linux 6.1 and 6.12): physical address `>> PAGE_SHIFT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pfn(pub u64);

/// A number of pages, as in the `count` argument of `cma_alloc()` / `cma_release()`
/// (`mm/cma.c`, Linux 6.1 and 6.12). Never a number of bitmap bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pages(pub u64);

/// A page order (`2^order` pages), as in the `align` argument of `cma_alloc()` and the result
/// of `get_order()` (Linux 6.1 and 6.12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Order(pub u32);

/// A size in bytes, as in the `size` argument of `dma_alloc_attrs()`
/// (`kernel/dma/mapping.c`, Linux 6.1 and 6.12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Pfn {
    /// `pfn + n`, as the kernel computes the end of a range (`pfn + count`); `None` on overflow.
    pub fn checked_add(self, n: Pages) -> Option<Pfn> {
        self.0.checked_add(n.0).map(Pfn)
    }

    /// `pfn - n`; `None` on underflow.
    pub fn checked_sub(self, n: Pages) -> Option<Pfn> {
        self.0.checked_sub(n.0).map(Pfn)
    }

    /// The distance `self - base` in pages, as `cma_clear_bitmap()` computes
    /// `pfn - cma->base_pfn` (Linux 6.1 `mm/cma.c:82-94`); `None` if `self < base`.
    pub fn checked_pages_since(self, base: Pfn) -> Option<Pages> {
        self.0.checked_sub(base.0).map(Pages)
    }
}

impl Pages {
    /// `self + other`; `None` on overflow.
    pub fn checked_add(self, other: Pages) -> Option<Pages> {
        self.0.checked_add(other.0).map(Pages)
    }

    /// `self - other`; `None` on underflow.
    pub fn checked_sub(self, other: Pages) -> Option<Pages> {
        self.0.checked_sub(other.0).map(Pages)
    }

    /// `self << page_shift` bytes; `None` on overflow.
    pub fn checked_to_bytes(self, page_shift: u32) -> Option<Bytes> {
        let bytes = self.0.checked_shl(page_shift)?;
        // checked_shl only rejects shift >= 64; the bits shifted out must be zero too.
        (bytes.checked_shr(page_shift) == Some(self.0)).then_some(Bytes(bytes))
    }
}

impl Order {
    /// `1 << order` pages (the kernel's `1 << order` / `MAX_ORDER_NR_PAGES` idiom); `None` if
    /// the order does not fit a `u64` shift.
    pub fn checked_pages(self) -> Option<Pages> {
        1u64.checked_shl(self.0).map(Pages)
    }
}

impl Bytes {
    /// `PAGE_ALIGN(size)` (`include/linux/mm.h`, Linux 6.1 and 6.12): round up to a multiple of
    /// `1 << page_shift`; `None` on overflow.
    pub fn checked_page_align(self, page_shift: u32) -> Option<Bytes> {
        let page = 1u64.checked_shl(page_shift)?;
        let mask = page - 1;
        self.0.checked_add(mask).map(|v| Bytes(v & !mask))
    }

    /// `size >> PAGE_SHIFT` (whole pages, rounded down), as `__alloc_from_contiguous()` computes
    /// `count` (Linux 6.1 `arch/arm/mm/dma-mapping.c:393`).
    pub fn pages_floor(self, page_shift: u32) -> Pages {
        Pages(self.0.checked_shr(page_shift).unwrap_or(0))
    }

    /// `get_order(size)` (`include/asm-generic/getorder.h`, Linux 6.1 and 6.12), non-constant
    /// path: `fls_long((size - 1) >> PAGE_SHIFT)` with `size - 1` wrapping in an
    /// `unsigned long` of `bits_per_long` bits. So `get_order(0)` is `bits_per_long -
    /// page_shift` (20 on arm32, 52 on arm64 with 4 KiB pages), never a small order.
    pub fn get_order(self, page_shift: u32, bits_per_long: u32) -> Order {
        let long_mask = if bits_per_long >= 64 { u64::MAX } else { (1u64 << bits_per_long) - 1 };
        let minus_one = self.0.wrapping_sub(1) & long_mask;
        let shifted = minus_one.checked_shr(page_shift).unwrap_or(0);
        Order(u64::BITS - shifted.leading_zeros())
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

impl fmt::Display for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pages", self.0)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {}", self.0)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_order_of_zero_is_bits_per_long_minus_page_shift() {
        assert_eq!(Bytes(0).get_order(12, 32), Order(20));
        assert_eq!(Bytes(0).get_order(12, 64), Order(52));
    }

    #[test]
    fn get_order_is_smallest_order_covering_the_size() {
        assert_eq!(Bytes(1).get_order(12, 32), Order(0));
        assert_eq!(Bytes(4096).get_order(12, 32), Order(0));
        assert_eq!(Bytes(4097).get_order(12, 32), Order(1));
        assert_eq!(Bytes(12 * 1024).get_order(12, 64), Order(2));
        assert_eq!(Bytes(256 * 1024).get_order(12, 32), Order(6));
        assert_eq!(Bytes(1 << 30).get_order(12, 32), Order(18));
    }

    #[test]
    fn page_align_rounds_up_to_whole_pages() {
        assert_eq!(Bytes(0).checked_page_align(12), Some(Bytes(0)));
        assert_eq!(Bytes(1).checked_page_align(12), Some(Bytes(4096)));
        assert_eq!(Bytes(4096).checked_page_align(12), Some(Bytes(4096)));
        assert_eq!(Bytes(u64::MAX).checked_page_align(12), None);
    }

    #[test]
    fn checked_helpers_refuse_overflow() {
        assert_eq!(Pfn(u64::MAX).checked_add(Pages(1)), None);
        assert_eq!(Pfn(5).checked_pages_since(Pfn(6)), None);
        assert_eq!(Pfn(7).checked_pages_since(Pfn(5)), Some(Pages(2)));
        assert_eq!(Pages(u64::MAX).checked_to_bytes(12), None);
        assert_eq!(Pages(2).checked_to_bytes(12), Some(Bytes(8192)));
        assert_eq!(Order(64).checked_pages(), None);
        assert_eq!(Order(5).checked_pages(), Some(Pages(32)));
    }

    #[test]
    fn units_serialise_as_bare_numbers() {
        assert_eq!(serde_json::to_string(&Pfn(7)).ok().as_deref(), Some("7"));
        assert_eq!(serde_json::to_string(&Order(3)).ok().as_deref(), Some("3"));
    }
}

/// A symbolic handle: the index of the allocating op among the program's allocating ops, and
/// the driver's slot number (`struct cf_op.handle`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Handle(pub u32);
