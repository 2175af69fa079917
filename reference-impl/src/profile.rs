//! The kernel build and machine the model imitates.

use crate::units::Pfn;
use serde::{Deserialize, Serialize};

/// Where qemu `virt` puts RAM (`hw/arm/virt.c` `VIRT_MEM`), on arm and arm64.
const QEMU_VIRT_RAM_START: u64 = 0x4000_0000;
/// arm32 `PAGE_OFFSET` with `CONFIG_VMSPLIT_3G`.
const ARM32_PAGE_OFFSET: u64 = 0xc000_0000;
/// arm64 `PAGE_OFFSET` with 39-bit virtual addresses: `-(1 << VA_BITS)`.
const ARM64_39_PAGE_OFFSET: u64 = 0xffff_ff80_0000_0000;
/// arm64 `PAGE_OFFSET` of a 52-bit-VA kernel on a 48-bit CPU (`_PAGE_OFFSET(vabits_actual)`).
const ARM64_48_PAGE_OFFSET: u64 = 0xffff_0000_0000_0000;
/// arm32 `PMD_SIZE` (2 MiB: a Linux PMD covers two 1 MiB hardware entries without LPAE).
const ARM32_PMD_SIZE: u64 = 2 << 20;
/// arm32 `LAST_PKMAP` = `PTRS_PER_PTE`.
const ARM32_LAST_PKMAP: u32 = 512;

/// Kernel version family. 6.1 and 6.12 behave the same in every op the model covers (spec §8:
/// the differences are accounting, log text, trace events and area order, none of which the
/// model reports); 7.2 and 7.3 differ from them in the ways [`Version::behaviour`] names
/// (`cma-spec-7x.md` §0) and not from each other in anything the model covers (§12: every arm64
/// 1 GiB result was identical).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// Debian `linux-source-6.1` (6.1.192).
    V6_1,
    /// Debian `linux-source-6.12` (6.12.117).
    V6_12,
    /// Debian `linux-source-7.2` (7.2.13, sid).
    V7_2,
    /// Debian `linux-source-7.3` (7.3-rc7, experimental).
    V7_3,
}

/// The version differences the model has, each named once: the model asks these, never the
/// version itself, so a tree between known versions can get a behaviour from what its sources
/// show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Behaviour {
    /// 7.x `struct cma` (Linux 7.2 `mm/cma.h:39-65`): `ranges[]` searched one after the other by
    /// `cma_range_alloc()`, `available_count` kept and reported, `cma_range_alloc()`'s early stop
    /// when `count > available_count` (`mm/cma.c:807`), and a failed search ending in -EBUSY
    /// (`:790`). 6.x: one bitmap, no `available_count`.
    pub cma_ranges: bool,
    /// 7.x `find_cma_memrange()` (Linux 7.2 `mm/cma.c:960-992`): `cma_release()` refuses
    /// `count > cma->count` and a `[pfn, pfn + count)` not inside one range; a disabled area's
    /// ranges are kept, so `count == 0` inside one is accepted. 6.x `cma_pages_valid()` (6.1
    /// `mm/cma.c:522-539`) checks the first pfn only, against `count` (0 when disabled).
    pub cma_release_checks_extent: bool,
    /// 7.x `cma_release()` (Linux 7.2 `mm/cma.c:1017-1037`): `put_page_testzero()` per page, a
    /// WARN, then `free_contig_frozen_range()` frees every page whatever its refcount. 6.x
    /// `free_contig_range()` → `__free_page()` per page: a page someone else holds a reference
    /// to stays allocated (6.1 `mm/page_alloc.c:9498-9509`).
    pub cma_release_ignores_refcount: bool,
    /// 7.x `dma_atomic_pool_init()` (Linux 7.2 `kernel/dma/pool.c:193-230`): a pool only for a
    /// zone with managed pages, and `dma_guess_pool()` (`:233-247`) falling back through the pools
    /// that exist. 6.x (6.1 `kernel/dma/pool.c:187-238`): kernel, dma and dma32 always.
    pub arm64_pools_per_managed_zone: bool,
    /// 7.x arm64 `rodata_full` defaults to true (Linux 7.2 `arch/arm64/mm/pageattr.c:88`) and
    /// `map_mem()` maps the whole linear map with 4 KiB PTEs, no contiguous hint, on CPUs without
    /// BBML2/BBML3 (`arch/arm64/mm/mmu.c:779-788`, `:1141-1199`; cortex-a57 has neither). 6.x
    /// `allnoconfig` has `RODATA_FULL_DEFAULT_ENABLED=n`: blocks, which the model does not predict.
    pub arm64_linear_map_ptes: bool,
}

impl Version {
    /// What this version does differently, by name.
    pub fn behaviour(self) -> Behaviour {
        let seven = matches!(self, Version::V7_2 | Version::V7_3);
        Behaviour {
            cma_ranges: seven,
            cma_release_checks_extent: seven,
            cma_release_ignores_refcount: seven,
            arm64_pools_per_managed_zone: seven,
            arm64_linear_map_ptes: seven,
        }
    }

    /// The version as targets and `cmafuzz targets` write it (`6.1`, `6.12`, `7.2`, `7.3`).
    pub fn name(self) -> &'static str {
        match self {
            Version::V6_1 => "6.1",
            Version::V6_12 => "6.12",
            Version::V7_2 => "7.2",
            Version::V7_3 => "7.3",
        }
    }

    /// The inverse of [`Version::name`].
    pub fn from_name(name: &str) -> Option<Version> {
        [Version::V6_1, Version::V6_12, Version::V7_2, Version::V7_3].into_iter().find(|v| v.name() == name)
    }
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
    /// Kernel version family (the nearest known one at or below the kernel's own version).
    pub version: Version,
    /// What the kernel does differently: `version.behaviour()` for the known versions; for a
    /// tree between them, what its sources show (`cmafuzz`'s `build::tree_profile`).
    pub behaviour: Behaviour,
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
            behaviour: version.behaviour(),
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

    /// `PAGE_OFFSET`: the virtual address of the first page of the linear map. arm32
    /// `CONFIG_VMSPLIT_3G` (`arch/arm/Kconfig`, 6.1 and 6.12): `0xc0000000`; arm64 6.1 with the
    /// default `CONFIG_ARM64_VA_BITS_39` for 4 KiB pages: `-(1 << 39)` =
    /// `0xffffff8000000000` (`arch/arm64/include/asm/memory.h:45`, spec §6.2 **[observed]**).
    /// `None` for arm64 6.12, whose default VA size the model does not pin down. arm64 7.2/7.3
    /// on qemu's cortex-a57 (48-bit VA): `0xffff000000000000` (`cma-spec-7x.md` §7 **[observed
    /// 7.2 and 7.3 ptdump: the linear map of RAM at 0x40000000 ends at 0xffff000040000000]**).
    pub fn page_offset(&self) -> Option<u64> {
        match (self.arch, self.version) {
            (Arch::Arm32 | Arch::Arm32Lpae, _) => Some(ARM32_PAGE_OFFSET),
            (Arch::Arm64, Version::V6_1) => Some(ARM64_39_PAGE_OFFSET),
            (Arch::Arm64, Version::V6_12) => None,
            (Arch::Arm64, Version::V7_2 | Version::V7_3) => Some(ARM64_48_PAGE_OFFSET),
        }
    }

    /// What this kernel does differently ([`Version::behaviour`] unless set from a tree's sources).
    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// `PHYS_PFN_OFFSET`: the first pfn of RAM, which the linear map starts with. qemu `virt`
    /// puts RAM at `0x40000000` (arm32 `__pv_phys_pfn_offset`, arm64 `memstart_addr`, which is
    /// that address rounded down to `ARM64_MEMSTART_ALIGN` = 1 GiB).
    pub fn phys_pfn_offset(&self) -> Pfn {
        Pfn(QEMU_VIRT_RAM_START >> self.page_shift)
    }

    /// Whether `pfn` is a highmem page (`PageHighMem()`): arm32 only, `pfn >= max_low_pfn`
    /// (`arm_lowmem_limit`, `arch/arm/mm/mmu.c`).
    pub fn is_highmem(&self, pfn: Pfn) -> bool {
        self.arch.is_arm32() && pfn >= self.max_low_pfn
    }

    /// `page_address()` of a lowmem page: `__va(PFN_PHYS(pfn))` = `PAGE_OFFSET + ((pfn -
    /// PHYS_PFN_OFFSET) << PAGE_SHIFT)` (`arch/arm/include/asm/memory.h` `__phys_to_virt`,
    /// arm64 `__phys_to_virt` with `PHYS_OFFSET`). `None` for a page outside the linear map or
    /// when `PAGE_OFFSET` is unknown.
    pub fn lin_va(&self, pfn: Pfn) -> Option<u64> {
        if pfn >= self.max_low_pfn {
            return None;
        }
        let off = pfn.checked_pages_since(self.phys_pfn_offset())?;
        let bytes = off.checked_to_bytes(self.page_shift)?;
        self.page_offset()?.checked_add(bytes.0)
    }

    /// `LAST_PKMAP` (`PTRS_PER_PTE` = 512, `arch/arm/include/asm/highmem.h:8-12`) on arm32,
    /// whose harness kernels all have `CONFIG_HIGHMEM=y`; 0 (no PKMAP) on arm64.
    pub fn last_pkmap(&self) -> u32 {
        if self.arch.is_arm32() {
            ARM32_LAST_PKMAP
        } else {
            0
        }
    }

    /// `PKMAP_ADDR(slot)` = `PKMAP_BASE + (slot << PAGE_SHIFT)` with `PKMAP_BASE = PAGE_OFFSET -
    /// PMD_SIZE` = `0xbfe00000` (`arch/arm/include/asm/highmem.h:8`, classic and LPAE: `PMD_SIZE`
    /// is 2 MiB in both). `None` without PKMAP or for a slot past `LAST_PKMAP`.
    pub fn pkmap_va(&self, slot: u32) -> Option<u64> {
        if slot >= self.last_pkmap() {
            return None;
        }
        let base = self.page_offset()?.checked_sub(ARM32_PMD_SIZE)?;
        base.checked_add(u64::from(slot).checked_shl(self.page_shift)?)
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

    #[test]
    fn linear_and_pkmap_addresses_follow_page_offset_and_pkmap_base() {
        let a32 = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
        assert_eq!(a32.lin_va(Pfn(0x40000)), Some(0xc000_0000));
        assert_eq!(a32.lin_va(Pfn(0x68000)), Some(0xe800_0000));
        assert_eq!(a32.lin_va(Pfn(0x70000)), None, "highmem has no linear address");
        assert_eq!(a32.lin_va(Pfn(0x3ffff)), None, "below RAM");
        assert_eq!(a32.pkmap_va(0), Some(0xbfe0_0000));
        assert_eq!(a32.pkmap_va(511), Some(0xbfff_f000));
        assert_eq!(a32.pkmap_va(512), None);
        assert!(a32.is_highmem(Pfn(0x7e000)) && !a32.is_highmem(Pfn(0x6ffff)));
        let a64 = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm64);
        assert_eq!(a64.lin_va(Pfn(0x7cc00)), Some(0xffff_ff80_3cc0_0000));
        assert_eq!(a64.pkmap_va(0), None);
        assert!(!a64.is_highmem(Pfn(0x7cc00)));
        assert_eq!(KernelProfile::qemu_virt_1g(Version::V6_12, Arch::Arm64).lin_va(Pfn(0x7cc00)), None);
        // 7.2/7.3 ptdump: RAM's last page before 0x80000 maps just below 0xffff000040000000.
        let a64_7 = KernelProfile::qemu_virt_1g(Version::V7_2, Arch::Arm64);
        assert_eq!(a64_7.lin_va(Pfn(0x7ffff)), Some(0xffff_0000_3fff_f000));
        assert_eq!(a64_7.lin_va(Pfn(0x7dc00)), Some(0xffff_0000_3dc0_0000));
    }

    #[test]
    fn only_7x_has_the_7x_behaviour_and_names_round_trip() {
        for v in [Version::V6_1, Version::V6_12, Version::V7_2, Version::V7_3] {
            assert_eq!(Version::from_name(v.name()), Some(v));
            let b = v.behaviour();
            let seven = v >= Version::V7_2;
            assert_eq!(
                [
                    b.cma_ranges,
                    b.cma_release_checks_extent,
                    b.cma_release_ignores_refcount,
                    b.arm64_pools_per_managed_zone,
                    b.arm64_linear_map_ptes
                ],
                [seven; 5]
            );
        }
        assert_eq!(Version::from_name("6.6"), None);
    }
}
