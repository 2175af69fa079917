//! The error of every build step (kernel, sources), in one place so the build modules that
//! produce it need not import each other.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BuildError {
    /// The default source package is not installed.
    #[error("kernel source {path} not found: install it with `apt-get install {package}`, or pass --kernel-src DIR")]
    MissingSource { path: PathBuf, package: String },
    /// `--kernel-src` does not name a kernel tree.
    #[error("--kernel-src {0}: not a kernel source tree (no Makefile and mm/cma.c there)")]
    NotATree(PathBuf),
    /// `--kernel-src`'s Makefile has no version.
    #[error("{path}: {detail}; is this a kernel tree?")]
    TreeVersion { path: PathBuf, detail: String },
    /// `--kernel-src` is a tree the model has no profile for.
    #[error("--kernel-src {path} is {release}, which cmafuzz cannot model: it needs {missing}")]
    TreeUnmodelled { path: PathBuf, release: String, missing: String },
    /// A patch file cannot be read.
    #[error("--kernel-patch {path}: {source}")]
    PatchUnreadable { path: PathBuf, source: std::io::Error },
    /// A patch does not apply to the tree.
    #[error("patch {path} does not apply to {tree}: {detail}")]
    PatchDoesNotApply { path: PathBuf, tree: String, detail: String },
    /// A host tool is missing.
    #[error("`{tool}` not found: install it with `apt-get install {package}` (or run `cmafuzz doctor`)")]
    MissingTool { tool: String, package: String },
    /// A fragment option did not survive `allnoconfig`.
    #[error("{option}={wanted} from fragment {fragment} did not survive allnoconfig (.config has {got}): a dependency of it is missing from the fragments")]
    ConfigDropped { option: String, wanted: String, got: String, fragment: String },
    /// A build step failed.
    #[error("{step} failed (exit {code}); log: {log}\n{tail}")]
    StepFailed { step: String, code: String, log: PathBuf, tail: String },
    /// File system trouble in the cache.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}
