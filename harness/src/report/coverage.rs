//! The coverage section's source: per-function kernel coverage of the instrumented files, from
//! the PCs a campaign saw (`OUT/coverage/`) symbolized against the build's vmlinux. Both are
//! owned by the coverage module (issue 15); this adapter is the one place the report calls it,
//! so the report does not symbolize anything itself.

use std::path::{Path, PathBuf};

/// One function of an instrumented file: KCOV call sites in it and how many of them a campaign
/// reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FunctionCoverage {
    pub file: String,
    pub function: String,
    pub sites: u64,
    pub hit: u64,
}

/// What the coverage section shows: the functions, or why there are none.
#[derive(Debug, Clone, serde::Serialize)]
pub enum CoverageSection {
    Functions { vmlinux: PathBuf, functions: Vec<FunctionCoverage> },
    Unavailable(String),
}

/// The build's vmlinux in the kernel cache (`kernels/<arch>-<version>-<key>/`, as
/// `build::kernel` names it), from a finding's target and `kernel_hash`.
pub fn vmlinux_of(target: &str, kernel_hash: &str) -> Option<PathBuf> {
    let t = crate::targets::find(Some(target)).ok()?;
    let dir = format!("{}-{}-{kernel_hash}", t.arch, t.version);
    Some(crate::build::cache::root().join("kernels").join(dir).join("vmlinux"))
}

/// The per-function coverage of the campaign in `out`, whose kernel build has `vmlinux`.
pub fn campaign_functions(out: &Path, vmlinux: Option<&Path>) -> CoverageSection {
    let Some(vmlinux) = vmlinux else {
        return CoverageSection::Unavailable(
            "no kernel build known for this campaign (no finding names its kernel_hash)".into(),
        );
    };
    if !vmlinux.is_file() {
        return CoverageSection::Unavailable(format!(
            "{}: no such file (the kernel build is not in this machine's cache; run `cmafuzz kernel build` with the campaign's target and patches)",
            vmlinux.display()
        ));
    }
    if !out.join("coverage").is_dir() {
        return CoverageSection::Unavailable(format!(
            "{}: no KCOV PCs recorded by this campaign",
            out.join("coverage").display()
        ));
    }
    CoverageSection::Unavailable(
        "per-function coverage needs the coverage module (issue 15), not merged into this build yet".into(),
    )
}
