//! Named targets (architecture × kernel version × memory layout), read from
//! `kernel-configs/targets.toml`, which is embedded in the binary together
//! with the config fragments it names.

use reference_impl::observation::{AreaObservation, Observation, RangeObservation};
use reference_impl::profile::{Arch, KernelProfile, Version};
use reference_impl::units::{Pages, Pfn};
use serde::Deserialize;
use thiserror::Error;

const TARGETS_TOML: &str = include_str!("../../../kernel-configs/targets.toml");

/// The kernel debug options [`Target::debug_options`] reports.
pub const DEBUG_OPTIONS: [&str; 2] = ["DEBUG_VM", "DMA_API_DEBUG"];

/// Config fragments, by file name, as embedded at build time.
pub const FRAGMENTS: &[(&str, &str)] = &[
    ("base.config", include_str!("../../../kernel-configs/fragments/base.config")),
    ("arm32.config", include_str!("../../../kernel-configs/fragments/arm32.config")),
    ("arm32-lpae.config", include_str!("../../../kernel-configs/fragments/arm32-lpae.config")),
    ("arm64.config", include_str!("../../../kernel-configs/fragments/arm64.config")),
    ("hugetlb.config", include_str!("../../../kernel-configs/fragments/hugetlb.config")),
    ("kcov.config", include_str!("../../../kernel-configs/fragments/kcov.config")),
    ("debug.config", include_str!("../../../kernel-configs/fragments/debug.config")),
];

/// One reusable `shared-dma-pool` region.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Node name without the unit address; the CMA area is called `<name>@<base in hex>`.
    pub name: String,
    /// Physical base address (bytes).
    pub base: u64,
    /// Size (bytes).
    pub size: u64,
}

impl Pool {
    /// The CMA area name the kernel gives the region: the node's full name (`rmem->name`).
    pub fn area_name(&self) -> String {
        format!("{}@{:x}", self.name, self.base)
    }
}

/// A `no-map` region of `/reserved-memory`: RAM the kernel never maps or allocates, a hole in
/// memblock (how a target gets RAM in several pieces on qemu `virt`, whose RAM is one bank).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hole {
    /// Physical base address (bytes).
    pub base: u64,
    /// Size (bytes).
    pub size: u64,
}

#[derive(Debug, Error)]
pub enum TargetError {
    /// The embedded table is malformed: a build-time bug, caught by a unit test.
    #[error("kernel-configs/targets.toml: {0}")]
    Table(String),
    /// The user named a target that does not exist.
    #[error("unknown target `{name}`: choose one of {known} (see `cmafuzz targets`)")]
    Unknown { name: String, known: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootArea {
    pub name: String,
    /// The first (on 6.x the only) range: `ranges[0].base_pfn`.
    pub base_pfn: u64,
    /// Pages of the first range.
    pub count: u64,
    pub order_per_bit: u32,
    /// Half-open bit ranges of the first range set at boot.
    pub used: Vec<[u64; 2]>,
    /// 7.x areas with several `cma_memrange`s: the ranges after the first, ascending.
    #[serde(default)]
    pub more_ranges: Vec<BootRange>,
}

/// A further range of a [`BootArea`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootRange {
    pub base_pfn: u64,
    pub count: u64,
    /// Half-open bit ranges of this range set at boot.
    pub used: Vec<[u64; 2]>,
}

impl BootArea {
    /// Every range as (base_pfn, count, used), the first one first.
    fn ranges(&self) -> impl Iterator<Item = (u64, u64, &[[u64; 2]])> + '_ {
        std::iter::once((self.base_pfn, self.count, self.used.as_slice()))
            .chain(self.more_ranges.iter().map(|r| (r.base_pfn, r.count, r.used.as_slice())))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    #[serde(default)]
    pub default: bool,
    pub description: String,
    pub arch: String,
    pub version: String,
    pub source_package: String,
    /// The Debian suite `source_package` is fetched from with a private apt list (`sid`,
    /// `experimental`); none: installed by apt from the machine's own sources, in `/usr/src`.
    #[serde(default)]
    pub source_suite: Option<String>,
    pub fragments: Vec<String>,
    pub qemu: String,
    pub machine: String,
    pub cpu: String,
    pub memory_mib: u32,
    pub smp: u32,
    pub cmdline: String,
    pub atomic_pool_kib: u64,
    pub max_order: u32,
    /// Extra CMA areas from reusable `shared-dma-pool` regions added to qemu's device tree.
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Holes in RAM: `no-map` regions added to qemu's device tree.
    #[serde(default)]
    pub holes: Vec<Hole>,
    pub boot: Vec<BootArea>,
}

#[derive(Debug, Deserialize)]
struct Table {
    target: Vec<Target>,
}

impl Target {
    /// The kernel `ARCH=` of this target.
    pub fn kernel_arch(&self) -> &'static str {
        if self.arch == "arm64" {
            "arm64"
        } else {
            "arm"
        }
    }

    /// The Debian cross compiler prefix.
    pub fn cross_prefix(&self) -> &'static str {
        if self.arch == "arm64" {
            "aarch64-linux-gnu-"
        } else {
            "arm-linux-gnueabihf-"
        }
    }

    /// The boot image the build produces, relative to the tree.
    pub fn image_path(&self) -> &'static str {
        if self.arch == "arm64" {
            "arch/arm64/boot/Image"
        } else {
            "arch/arm/boot/zImage"
        }
    }

    /// The debug options users build with that change what the kernel checks and reports, as
    /// `(option, on)` from the target's fragments (`debug.config`); `cmafuzz targets` shows them.
    pub fn debug_options(&self) -> Vec<(&'static str, bool)> {
        let texts = self.fragment_texts().unwrap_or_default();
        DEBUG_OPTIONS
            .iter()
            .map(|o| {
                let set = format!("CONFIG_{o}=y");
                (*o, texts.iter().any(|(_, t)| t.lines().any(|l| l.trim() == set)))
            })
            .collect()
    }

    /// Text of each fragment, in order.
    pub fn fragment_texts(&self) -> Result<Vec<(&'static str, &'static str)>, TargetError> {
        self.fragments
            .iter()
            .map(|f| {
                FRAGMENTS
                    .iter()
                    .find(|(n, _)| n == f)
                    .copied()
                    .ok_or_else(|| TargetError::Table(format!("target {} names unknown fragment {f}", self.name)))
            })
            .collect()
    }

    pub fn model_arch(&self) -> Result<Arch, TargetError> {
        match self.arch.as_str() {
            "arm32" => Ok(Arch::Arm32),
            "arm32-lpae" => Ok(Arch::Arm32Lpae),
            "arm64" => Ok(Arch::Arm64),
            a => Err(TargetError::Table(format!("target {}: unknown arch {a}", self.name))),
        }
    }

    pub fn model_version(&self) -> Result<Version, TargetError> {
        Version::from_name(&self.version)
            .ok_or_else(|| TargetError::Table(format!("target {}: unknown version {}", self.name, self.version)))
    }

    /// The model's kernel profile, from the target alone (no kernel booted).
    /// `max_low_pfn`/`max_pfn` follow from the memory layout of qemu `virt`
    /// (RAM at 0x40000000) and the 3G/1G split (lowmem ends at 0x70000000).
    pub fn profile(&self) -> Result<KernelProfile, TargetError> {
        let ram_start = 0x40000u64;
        let max_pfn = ram_start + u64::from(self.memory_mib) * 256;
        let arch = self.model_arch()?;
        let max_low_pfn = match arch {
            Arch::Arm64 => max_pfn,
            _ => max_pfn.min(0x70000),
        };
        let version = self.model_version()?;
        Ok(KernelProfile {
            version,
            behaviour: version.behaviour(),
            arch,
            page_shift: 12,
            cma_alignment: 8,
            pageblock_order: 10,
            max_low_pfn: Pfn(max_low_pfn),
            max_pfn: Pfn(max_pfn),
            // dma_contiguous_reserve() names the default area "reserved"; `cma=0` leaves none.
            default_area: self.boot.iter().find(|a| a.name == "reserved").map(|a| a.name.clone()),
            coherent_dma_mask_bits: 32,
            atomic_pool_bytes: self.atomic_pool_kib * 1024,
            max_order: self.max_order,
        })
    }

    /// The boot observation the model assumes without a kernel.
    pub fn boot_observation(&self) -> Observation {
        self.boot_observation_as(self.model_version().is_ok_and(|v| v.behaviour().cma_ranges))
    }

    /// [`Target::boot_observation`] for a kernel that keeps 7.x's `available_count` or not
    /// (`--kernel-src` may give a target a tree of another version).
    pub fn boot_observation_as(&self, with_available: bool) -> Observation {
        let areas = self
            .boot
            .iter()
            .map(|a| {
                let ranges: Vec<RangeObservation> = a
                    .ranges()
                    .map(|(base_pfn, count, used)| {
                        let bits = count >> a.order_per_bit;
                        let mut words = vec![0u32; bits.div_ceil(32) as usize];
                        for [lo, hi] in used {
                            for bit in *lo..(*hi).min(bits) {
                                words[(bit / 32) as usize] |= 1 << (bit % 32);
                            }
                        }
                        RangeObservation { base_pfn: Pfn(base_pfn), count: Pages(count), bitmap: words }
                    })
                    .collect();
                let count = Pages(ranges.iter().map(|r| r.count.0).sum());
                let mut area = AreaObservation {
                    name: a.name.clone(),
                    order_per_bit: a.order_per_bit,
                    count,
                    available: None,
                    activated: count.0 != 0,
                    ranges,
                };
                // 7.x keeps available_count; at boot only whole boot allocations are out (the
                // pools, `cma_reserve_early()`), so it is count minus the boot bits' pages.
                if with_available {
                    area.available = Some(Pages(count.0.saturating_sub(area.used_bits() << a.order_per_bit)));
                }
                area
            })
            .collect();
        Observation { areas, cma_free: None, ..Default::default() }
    }
}

/// Every embedded target.
pub fn all() -> Result<Vec<Target>, TargetError> {
    let t: Table = toml::from_str(TARGETS_TOML).map_err(|e| TargetError::Table(e.to_string()))?;
    Ok(t.target)
}

/// The target called `name`, or the default one.
pub fn find(name: Option<&str>) -> Result<Target, TargetError> {
    let all = all()?;
    let found = match name {
        Some(n) => all.iter().find(|t| t.name == n),
        None => all.iter().find(|t| t.default),
    };
    found.cloned().ok_or_else(|| TargetError::Unknown {
        name: name.unwrap_or("<default>").to_string(),
        known: all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_parses_and_has_exactly_one_default() {
        let all = all().expect("targets.toml parses");
        assert_eq!(all.iter().filter(|t| t.default).count(), 1);
        for t in &all {
            t.fragment_texts().expect("every fragment is embedded");
            t.profile().expect("profile");
        }
    }

    #[test]
    fn only_the_debug_variant_has_debug_vm_and_dma_api_debug() {
        let plain = find(Some("arm32-7.2")).expect("target");
        let debug = find(Some("arm32-debug-7.2")).expect("target");
        assert_eq!(plain.debug_options(), vec![("DEBUG_VM", false), ("DMA_API_DEBUG", false)]);
        assert_eq!(debug.debug_options(), vec![("DEBUG_VM", true), ("DMA_API_DEBUG", true)]);
    }

    #[test]
    fn unknown_target_error_lists_the_known_ones() {
        let e = find(Some("riscv-9.9")).expect_err("no such target");
        let msg = e.to_string();
        assert!(msg.contains("riscv-9.9") && msg.contains("arm32-6.1"), "{msg}");
    }

    #[test]
    fn boot_observation_sets_exactly_the_used_ranges() {
        let t = find(Some("arm64-6.1")).expect("target");
        let obs = t.boot_observation();
        let bitmap = &obs.areas[0].ranges[0].bitmap;
        assert_eq!(bitmap[0..3], [u32::MAX; 3]);
        assert_eq!(bitmap[3], 0);
        assert_eq!(bitmap.len(), 256);
    }
}
