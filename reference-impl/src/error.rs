//! Why a model cannot be made: a profile or a boot observation no supported kernel has.

use thiserror::Error;

/// Why a boot observation and a profile cannot seed a model.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A profile field is outside what any supported kernel has.
    #[error("profile field `{field}` = {value} is out of range (expected {expected})")]
    Profile {
        /// Field name in [`KernelProfile`].
        field: &'static str,
        /// The value given.
        value: u64,
        /// The accepted range.
        expected: &'static str,
    },
    /// The bitmap does not have `DIV_ROUND_UP(count >> order_per_bit, 32)` words.
    #[error(
        "CMA area `{area}`: bitmap has {got} words, expected {expected} \
         (ceil((count >> order_per_bit) / 32)); the observation is truncated or inconsistent"
    )]
    BitmapLength {
        /// Area name.
        area: String,
        /// Words expected.
        expected: u64,
        /// Words given.
        got: u64,
    },
    /// Bits at or above `count >> order_per_bit` are set, which the kernel never does.
    #[error("CMA area `{area}`: bitmap bits beyond count >> order_per_bit are set; the observation is corrupt")]
    StrayBits {
        /// Area name.
        area: String,
    },
    /// `order_per_bit` too large to model.
    #[error("CMA area `{area}`: order_per_bit {order_per_bit} is larger than 31")]
    OrderPerBit {
        /// Area name.
        area: String,
        /// The value given.
        order_per_bit: u32,
    },
    /// The area has no range, or more than the version allows (6.x: one, 7.x: `CMA_MAX_RANGES`).
    #[error("CMA area `{area}`: {nranges} ranges, but this kernel version has 1..={max}; check the profile's version")]
    Ranges {
        /// Area name.
        area: String,
        /// Ranges given.
        nranges: usize,
        /// Ranges the version allows.
        max: usize,
    },
    /// The ranges are not ascending and disjoint, as `cma_declare_contiguous_multi()` makes them.
    #[error("CMA area `{area}`: ranges overlap or are not in ascending order; the observation is corrupt")]
    RangesOverlap {
        /// Area name.
        area: String,
    },
    /// An activated area's `count` is not the sum of its ranges' counts, which the kernel keeps
    /// equal (Linux 7.2 `mm/cma.c:300-304`, `:639-703`).
    #[error("CMA area `{area}`: count {count} but its ranges add up to {sum}; the observation is inconsistent")]
    RangeCounts {
        /// Area name.
        area: String,
        /// The area's count.
        count: u64,
        /// The sum over its ranges.
        sum: u64,
    },
    /// `base_pfn + count` does not fit.
    #[error("CMA area `{area}`: base_pfn + count overflows")]
    AreaOverflows {
        /// Area name.
        area: String,
    },
    /// The profile names a default area the kernel does not have.
    #[error(
        "the profile's default CMA area `{name}` is not among the booted kernel's areas \
         ({present}); set KernelProfile::default_area to the kernel's `dma_contiguous_default_area`"
    )]
    DefaultAreaMissing {
        /// The name in the profile.
        name: String,
        /// The names the kernel reported.
        present: String,
    },
    /// The boot bitmap does not show the atomic pool where the boot code would have put it.
    #[error(
        "atomic pool `{pool}` should occupy bits {first_bit}..{end_bit} of CMA area `{area}` at \
         boot, but they are not all set; check KernelProfile::atomic_pool_bytes, cma_alignment \
         and arch"
    )]
    PoolNotInBootBitmap {
        /// Which pool.
        pool: &'static str,
        /// The default area's name.
        area: String,
        /// First bit expected set.
        first_bit: u64,
        /// One past the last bit expected set.
        end_bit: u64,
    },
}
