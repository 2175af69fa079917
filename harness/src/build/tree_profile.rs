//! The model's profile of a kernel tree the user gives (`--kernel-src DIR`): the version from
//! its top Makefile, and each version difference the model knows ([`Behaviour`]) from what the
//! tree's sources show, so a tree between the known versions (6.6, 6.18, 7.0 ...) is modelled
//! by what it does, not by its number. The profile's [`Version`] is the nearest known one at or
//! below the tree's (it decides what no source line does: arm64's `PAGE_OFFSET`).
//!
//! A tree the tool cannot model is refused before it is built, naming what is missing: older
//! than 6.1, or sources that disagree with the driver's version gates (its compat section reads
//! `struct cma` ranges from 6.15 on and passes `acr_flags_t` to `alloc_contig_range()` from 6.17
//! on; a tree that has either elsewhere would build a driver that reads the wrong thing).

use super::error::BuildError;
use reference_impl::profile::{Behaviour, Version};
use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

/// What the tree is and how the model will treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeProfile {
    pub dir: PathBuf,
    /// `VERSION.PATCHLEVEL.SUBLEVEL` + `EXTRAVERSION`, as the Makefile has it (`7.3.0-rc7`).
    pub release: String,
    pub major: u32,
    pub minor: u32,
    pub version: Version,
    pub behaviour: Behaviour,
    /// One line per behaviour: what it is and the source line that says so.
    pub evidence: Vec<String>,
}

impl TreeProfile {
    /// True when the tree's version family is a known one and its sources behave as it does.
    pub fn exact(&self) -> bool {
        self.version.name() == format!("{}.{}", self.major, self.minor) && self.behaviour == self.version.behaviour()
    }

    /// The lines `replay`, `doctor` and the build print: which profile and why.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "kernel tree {} is {}: ", self.dir.display(), self.release);
        if self.exact() {
            let _ = write!(s, "profile {} (its sources agree)", self.version.name());
        } else {
            let _ = write!(
                s,
                "profile {} (the nearest known version below it) with the behaviour its sources show",
                self.version.name()
            );
        }
        for e in &self.evidence {
            let _ = write!(s, "\n  {e}");
        }
        s
    }
}

/// The known versions, oldest first.
const KNOWN: [(u32, u32, Version); 4] =
    [(6, 1, Version::V6_1), (6, 12, Version::V6_12), (7, 2, Version::V7_2), (7, 3, Version::V7_3)];

/// The driver's version gates (`qemu/driver/cmafuzz.c`'s compat section).
const RANGES_FROM: (u32, u32) = (6, 15);
const ACR_FLAGS_FROM: (u32, u32) = (6, 17);

fn unmodelled(dir: &Path, release: &str, missing: String) -> BuildError {
    BuildError::TreeUnmodelled { path: dir.to_path_buf(), release: release.to_string(), missing }
}

/// Reads `dir`'s version and behaviour.
pub fn read(dir: &Path) -> Result<TreeProfile, BuildError> {
    if !dir.join("Makefile").is_file() || !dir.join("mm/cma.c").is_file() {
        return Err(BuildError::NotATree(dir.to_path_buf()));
    }
    let makefile = read_file(dir, "Makefile")?;
    let field = |name: &str| {
        makefile.lines().take(20).find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let num = |name: &str| field(name).and_then(|v| v.parse::<u32>().ok());
    let (Some(major), Some(minor), Some(sub)) = (num("VERSION"), num("PATCHLEVEL"), num("SUBLEVEL")) else {
        return Err(BuildError::TreeVersion {
            path: dir.join("Makefile"),
            detail: "no numeric VERSION, PATCHLEVEL and SUBLEVEL in its first lines".into(),
        });
    };
    let release = format!("{major}.{minor}.{sub}{}", field("EXTRAVERSION").unwrap_or_default());
    let Some(&(_, _, version)) = KNOWN.iter().rev().find(|(a, b, _)| (*a, *b) <= (major, minor)) else {
        return Err(unmodelled(dir, &release, "a kernel of 6.1 or later (the oldest profile is 6.1)".into()));
    };

    let cma_h = read_optional(dir, "mm/cma.h")?;
    let cma_c = read_file(dir, "mm/cma.c")?;
    let pool_c = read_optional(dir, "kernel/dma/pool.c")?;
    let pageattr_c = read_optional(dir, "arch/arm64/mm/pageattr.c")?;
    let gfp_h = read_optional(dir, "include/linux/gfp.h")?;
    let mut evidence = Vec::new();
    let mut says = |on: bool, what: &str, yes: &str, no: &str| {
        evidence.push(format!("{}: {what} ({})", if on { "yes" } else { "no " }, if on { yes } else { no }));
        on
    };
    let behaviour = Behaviour {
        cma_ranges: says(
            cma_h.contains("struct cma_memrange"),
            "CMA areas made of ranges",
            "mm/cma.h has struct cma_memrange",
            "mm/cma.h has no struct cma_memrange",
        ),
        cma_release_checks_extent: says(
            cma_c.contains("find_cma_memrange"),
            "cma_release() checks the whole extent against one range",
            "mm/cma.c has find_cma_memrange()",
            "mm/cma.c checks the first pfn only",
        ),
        cma_release_ignores_refcount: says(
            cma_c.contains("free_contig_frozen_range"),
            "cma_release() frees pages whatever their refcount",
            "mm/cma.c calls free_contig_frozen_range()",
            "mm/cma.c frees through free_contig_range()",
        ),
        arm64_pools_per_managed_zone: says(
            pool_c.contains("has_managed_zone(ZONE_NORMAL)"),
            "arm64 atomic pools only for zones with managed pages",
            "kernel/dma/pool.c tests has_managed_zone(ZONE_NORMAL)",
            "kernel/dma/pool.c makes the kernel pool always",
        ),
        arm64_linear_map_ptes: says(
            pageattr_c.contains("rodata_full __ro_after_init = true"),
            "arm64 linear map in 4 KiB pages (rodata_full by default)",
            "arch/arm64/mm/pageattr.c sets rodata_full = true",
            "arch/arm64/mm/pageattr.c takes rodata_full from CONFIG_RODATA_FULL_DEFAULT_ENABLED",
        ),
    };
    // The driver chooses its compat code by version; the sources must agree with that choice.
    let at_least = |gate: (u32, u32)| (major, minor) >= gate;
    if behaviour.cma_ranges != at_least(RANGES_FROM) {
        return Err(unmodelled(
            dir,
            &release,
            format!(
                "a struct cma {} ranges, as the driver expects of a {major}.{minor} tree (it reads ranges from {}.{} on)",
                if at_least(RANGES_FROM) { "with" } else { "without" },
                RANGES_FROM.0,
                RANGES_FROM.1
            ),
        ));
    }
    let acr = gfp_h.contains("acr_flags_t");
    if acr != at_least(ACR_FLAGS_FROM) {
        return Err(unmodelled(
            dir,
            &release,
            format!(
                "alloc_contig_range() {} an acr_flags_t argument, as the driver expects of a {major}.{minor} tree (it \
                 passes flags from {}.{} on)",
                if at_least(ACR_FLAGS_FROM) { "with" } else { "without" },
                ACR_FLAGS_FROM.0,
                ACR_FLAGS_FROM.1
            ),
        ));
    }
    Ok(TreeProfile { dir: dir.to_path_buf(), release, major, minor, version, behaviour, evidence })
}

fn read_file(dir: &Path, rel: &str) -> Result<String, BuildError> {
    let p = dir.join(rel);
    let bytes = fs::read(&p).map_err(|source| BuildError::Io { what: format!("reading {}", p.display()), source })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A file an old or trimmed tree may lack: empty then (its behaviour reads as "no").
fn read_optional(dir: &Path, rel: &str) -> Result<String, BuildError> {
    if dir.join(rel).is_file() {
        read_file(dir, rel)
    } else {
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with the files the profile reads; `seven` writes 7.2's lines, else 6.12's.
    fn tree(version: (u32, u32, u32, &str), seven: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path();
        for sub in ["mm", "kernel/dma", "arch/arm64/mm", "include/linux"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let (a, b, c, x) = version;
        let w = |rel: &str, text: &str| fs::write(d.join(rel), text).expect("write");
        w(
            "Makefile",
            &format!("# SPDX\nVERSION = {a}\nPATCHLEVEL = {b}\nSUBLEVEL = {c}\nEXTRAVERSION = {x}\nNAME = T\n"),
        );
        if seven {
            w("mm/cma.h", "struct cma_memrange {\n");
            w("mm/cma.c", "static bool find_cma_memrange(\n\tfree_contig_frozen_range(pfn, count);\n");
            w("kernel/dma/pool.c", "\tif (has_managed_zone(ZONE_NORMAL)) {\n");
            w("arch/arm64/mm/pageattr.c", "bool rodata_full __ro_after_init = true;\n");
            w("include/linux/gfp.h", "typedef unsigned int __bitwise acr_flags_t;\n");
        } else {
            w("mm/cma.h", "struct cma {\n");
            w("mm/cma.c", "\tfree_contig_range(pfn, count);\n");
            w("kernel/dma/pool.c", "\tatomic_pool_kernel = __dma_atomic_pool_init(atomic_pool_size,\n");
            w(
                "arch/arm64/mm/pageattr.c",
                "bool rodata_full __ro_after_init = IS_ENABLED(CONFIG_RODATA_FULL_DEFAULT_ENABLED);\n",
            );
            w(
                "include/linux/gfp.h",
                "int alloc_contig_range(unsigned long start, unsigned long end, unsigned migratetype,\n",
            );
        }
        t
    }

    #[test]
    fn a_known_version_gets_its_own_profile() {
        let t = tree((7, 3, 0, "-rc7"), true);
        let p = read(t.path()).expect("profile");
        assert_eq!((p.release.as_str(), p.version), ("7.3.0-rc7", Version::V7_3));
        assert!(p.exact(), "{}", p.describe());
        assert!(p.describe().contains("is 7.3.0-rc7: profile 7.3 (its sources agree)"), "{}", p.describe());
        let t = tree((6, 12, 117, ""), false);
        assert_eq!(read(t.path()).expect("profile").version, Version::V6_12);
    }

    #[test]
    fn a_tree_between_known_versions_is_modelled_by_what_its_sources_show() {
        // 7.0: 7.x sources, the nearest known version below it is 6.12.
        let t = tree((7, 0, 4, ""), true);
        let p = read(t.path()).expect("profile");
        assert_eq!(p.version, Version::V6_12);
        assert_eq!(p.behaviour, Version::V7_2.behaviour());
        assert!(!p.exact());
        let d = p.describe();
        assert!(
            d.contains("profile 6.12 (the nearest known version below it) with the behaviour its sources show"),
            "{d}"
        );
        assert!(d.contains("yes: CMA areas made of ranges (mm/cma.h has struct cma_memrange)"), "{d}");
        // 6.6: 6.x sources under the 6.1 profile.
        let t = tree((6, 6, 50, ""), false);
        let p = read(t.path()).expect("profile");
        assert_eq!((p.version, p.behaviour), (Version::V6_1, Version::V6_1.behaviour()));
    }

    #[test]
    fn a_tree_the_tool_cannot_model_is_refused_naming_what_is_missing() {
        let t = tree((5, 15, 1, ""), false);
        let e = read(t.path()).expect_err("too old");
        assert!(
            e.to_string().contains("is 5.15.1, which cmafuzz cannot model: it needs a kernel of 6.1 or later"),
            "{e}"
        );
        // Ranges below the driver's 6.15 gate, and 6.x sources above it.
        let t = tree((6, 14, 0, ""), true);
        let e = read(t.path()).expect_err("ranges below the driver's gate");
        assert!(e.to_string().contains("a struct cma without ranges, as the driver expects of a 6.14 tree"), "{e}");
        let t = tree((6, 18, 0, ""), false);
        let e = read(t.path()).expect_err("6.x sources on a 6.18 tree");
        assert!(e.to_string().contains("with ranges"), "{e}");
        let t = tempfile::tempdir().expect("tempdir");
        assert!(matches!(read(t.path()), Err(BuildError::NotATree(_))));
    }
}
