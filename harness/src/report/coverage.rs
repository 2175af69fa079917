//! The coverage section's source: per-function kernel coverage of the instrumented files, from
//! the PCs a campaign saw (`OUT/coverage/`) symbolized against the build's vmlinux, both by
//! [`crate::coverage`]; this adapter is the one place the report calls it (the report
//! symbolizes nothing itself).

pub use crate::coverage::FunctionCoverage;
use std::path::{Path, PathBuf};

/// What the coverage section shows: the functions, or why there are none.
#[derive(Debug, Clone, serde::Serialize)]
pub enum CoverageSection {
    Functions { vmlinux: PathBuf, pcs: usize, functions: Vec<FunctionCoverage> },
    Unavailable(String),
}

/// The per-function coverage of the campaign in `out`.
pub fn campaign_functions(out: &Path) -> CoverageSection {
    let vmlinux = match crate::coverage::campaign_vmlinux(out) {
        Ok(v) => v,
        Err(e) => return CoverageSection::Unavailable(e.to_string()),
    };
    let pcs = match crate::coverage::campaign_pcs(out) {
        Ok(p) => p,
        Err(e) => return CoverageSection::Unavailable(e.to_string()),
    };
    if pcs.is_empty() {
        return CoverageSection::Unavailable(format!(
            "{}: no KCOV PCs recorded (a campaign on a target without kcov.config, or from before coverage was kept)",
            crate::coverage::dir(out).display()
        ));
    }
    match crate::coverage::functions(&vmlinux, &pcs) {
        Ok(functions) => CoverageSection::Functions { vmlinux, pcs: pcs.len(), functions },
        Err(e) => CoverageSection::Unavailable(e.to_string()),
    }
}
