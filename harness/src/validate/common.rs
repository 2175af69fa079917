//! What the parts of `validate` share: the error, one program's record, and the two small
//! questions the judgement and the bisection both ask.

use crate::backend::kernel::boot::SessionError;
use crate::bisect::git::GitError;
use crate::build::kernel::BuildError;
use crate::diff::Executor;
use crate::findings::programs::ProgramFileError;
use crate::oracle::{Verdict, VerdictKind};
use reference_impl::program::Program;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ValidateError {
    #[error(transparent)]
    Series(#[from] super::series::SeriesError),
    #[error(transparent)]
    Apply(#[from] super::apply::ApplyError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("--kernel-src: {0}")]
    Git(#[from] GitError),
    #[error(transparent)]
    Programs(#[from] ProgramFileError),
    #[error("{0}")]
    Exec(String),
    #[error("--findings {0}: no finding directories (OUT/findings/<signature>/reproducer.prog) there")]
    NoFindings(PathBuf),
    #[error("{what}: {msg}")]
    Io { what: String, msg: String },
}

/// One program with what each side gave.
#[derive(Debug)]
pub struct ProgramRecord {
    pub label: String,
    pub program: Program,
    /// Model vs base kernel.
    pub base: Vec<Verdict>,
    /// Model vs patched kernel.
    pub patched: Vec<Verdict>,
    /// Patched kernel vs base kernel.
    pub kernels: Vec<Verdict>,
}

/// `2m`, `15s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Whether `prog` gives `signature` on `ex` (its verdicts, suppressed ones included).
pub fn gives(ex: &mut Executor, prog: &Program, signature: &str) -> Result<bool, ValidateError> {
    if prog.ops.is_empty() {
        // The boot layout: a placement verdict is the kernel's, not a program's.
        return Ok(ex.placement_verdict().is_some_and(|v| v.signature == signature));
    }
    let e = ex.execute(prog).map_err(|e| ValidateError::Exec(e.to_string()))?;
    Ok(e.verdicts.iter().any(|v| v.signature == signature))
}

/// Whether a verdict counts for the judgement (harness errors are the harness's, not the
/// series').
pub fn counts(v: &Verdict) -> bool {
    v.kind != VerdictKind::HarnessError
}
