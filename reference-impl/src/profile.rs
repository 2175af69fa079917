//! The kernel build and machine the model imitates.

use crate::units::Pfn;
use serde::{Deserialize, Serialize};

/// Kernel version family. The ops the model covers behave the same in both (spec §8: the
/// differences are accounting, log text, trace events and area order, none of which the model
/// reports); the version is carried so that callers can label results and so that later ops
/// (folios, 6.12 §8 #5) can branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// Debian `linux-source-6.1` (6.1.192).
    V6_1,
    /// Debian `linux-source-6.12` (6.12.117).
    V6_12,
}

/// Architecture; decides `BITS_PER_LONG` and which coherent-DMA code runs
/// (`arch/arm/mm/dma-mapping.c` vs generic `kernel/dma/direct.c` + `kernel/dma/pool.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// ARMv7, 2-level page tables (`CF_ARCH_ARM32`).
    Arm32,
    /// ARMv7 with LPAE (`CF_ARCH_ARM32_LPAE`); same DMA code as `Arm32`.
    Arm32Lpae,
    /// AArch64 (`CF_ARCH_ARM64`).
    Arm64,
}

impl Arch {
    /// `BITS_PER_LONG`: 32 on arm32 (with or without LPAE), 64 on arm64.
    pub fn bits_per_long(self) -> u32 {
        match self {
            Arch::Arm32 | Arch::Arm32Lpae => 32,
            Arch::Arm64 => 64,
        }
    }

    /// True for the arm32 flavours, whose non-coherent DMA goes through `arch_dma_alloc()` →
    /// `__dma_alloc()` (Linux 6.1 `arch/arm/mm/dma-mapping.c:531-606`, same in 6.12).
    pub fn is_arm32(self) -> bool {
        matches!(self, Arch::Arm32 | Arch::Arm32Lpae)
    }
}

/// Build and boot parameters of the kernel under test (spec §9.2). Most come from the driver's
/// `struct cf_hello`; the rest from the target definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KernelProfile {
    /// Kernel version family.
    pub version: Version,
    /// Architecture.
    pub arch: Arch,
    /// `PAGE_SHIFT` (12 for 4 KiB pages).
    pub page_shift: u32,
    /// `CONFIG_CMA_ALIGNMENT` (2..=12, default 8): the cap `dma_alloc_from_contiguous()` and
    /// `cma_alloc_aligned()` put on the alignment order (Linux 6.1
    /// `kernel/dma/contiguous.c:256-286`).
    pub cma_alignment: u32,
    /// `pageblock_order` (10 for the harness configs); only used to describe areas.
    pub pageblock_order: u32,
    /// `max_low_pfn`: first pfn above lowmem (arm32 highmem starts here; `max_pfn` on arm64).
    pub max_low_pfn: Pfn,
    /// `max_pfn`: end of RAM.
    pub max_pfn: Pfn,
    /// Name of `dma_contiguous_default_area` (`"reserved"`), `None` if the kernel has none
    /// (`cma=0`, `CONFIG_CMA_SIZE_MBYTES=0`).
    pub default_area: Option<String>,
    /// Width of the test device's `coherent_dma_mask` (`DMA_BIT_MASK(32)` for the driver's
    /// platform device).
    pub coherent_dma_mask_bits: u32,
    /// `atomic_pool_size` in bytes: arm32 `arch/arm/mm/dma-mapping.c:185` (256 KiB default);
    /// arm64 `kernel/dma/pool.c:195-199`, per pool (128 KiB for a 1 GiB guest).
    pub atomic_pool_bytes: u64,
    /// The exclusive `MAX_ORDER` of 6.1 (11 on arm/arm64 with 4 KiB pages); for 6.12 this is
    /// `MAX_PAGE_ORDER + 1`. Buddy allocations of `get_order(size) >= max_order` fail.
    pub max_order: u32,
}

impl KernelProfile {
    /// The harness machine: qemu `virt`, 1 GiB at `0x40000000`, Debian minimal config
    /// (spec §1.6, §9.1 **[observed 6.1.192]**): 4 KiB pages, `CONFIG_CMA_ALIGNMENT=8`,
    /// `pageblock_order` 10, default area `"reserved"`, 32-bit coherent mask, `MAX_ORDER` 11;
    /// arm32 lowmem ends at pfn `0x70000` (highmem above), arm32 pool 256 KiB, arm64 pools
    /// 128 KiB each.
    pub fn qemu_virt_1g(version: Version, arch: Arch) -> KernelProfile {
        let max_pfn = Pfn(0x80000);
        KernelProfile {
            version,
            arch,
            page_shift: 12,
            cma_alignment: 8,
            pageblock_order: 10,
            max_low_pfn: if arch.is_arm32() { Pfn(0x70000) } else { max_pfn },
            max_pfn,
            default_area: Some("reserved".to_string()),
            coherent_dma_mask_bits: 32,
            atomic_pool_bytes: if arch.is_arm32() { 256 << 10 } else { 128 << 10 },
            max_order: 11,
        }
    }

    /// `min_not_zero(dev->coherent_dma_mask, dev->bus_dma_limit)` for the driver's device,
    /// i.e. `DMA_BIT_MASK(coherent_dma_mask_bits)` (`include/linux/dma-mapping.h`).
    pub fn coherent_dma_mask(&self) -> u64 {
        if self.coherent_dma_mask_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.coherent_dma_mask_bits) - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_virt_profile_has_highmem_only_on_arm32() {
        let a32 = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
        let a64 = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm64);
        assert!(a32.max_low_pfn < a32.max_pfn);
        assert_eq!(a64.max_low_pfn, a64.max_pfn);
        assert_eq!(a32.coherent_dma_mask(), 0xffff_ffff);
    }
}
