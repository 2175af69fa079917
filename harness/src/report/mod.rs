//! `cmafuzz report`: a campaign as one self-contained HTML page (and a JSON summary), and one
//! finding as the plain-text mail a developer sends upstream.
//!
//! Where the pictures come from: the HTML report never boots a VM. The model side of every
//! finding is the reproducer (`reproducer.prog`, the program the campaign ran) replayed on the
//! model here and now; the kernel side is what the campaign recorded of that program
//! (`observations.json`), so a report of a campaign made on another machine needs no kernel.
//! `report --mail` replays the (minimized) reproducer on the real kernel, since a mail must say
//! what the kernel does today.

pub mod coverage;
pub mod html;
pub mod load;
pub mod mail;
pub mod svg;

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{path}: not a campaign directory (no findings/ or stats.json in it; give the --out directory of `cmafuzz fuzz`)")]
    NotACampaign { path: PathBuf },
    #[error("{path}: not a finding directory (no meta.json; give OUT/findings/<dir> or a .prog file)")]
    NotAFinding { path: PathBuf },
    #[error("{path}: this finding has no reproducer.prog (nothing to replay; take another finding or replay its program by hand)")]
    NoReproducer { path: PathBuf },
    #[error("{path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("{path}: {msg} (fix or remove this file)")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: cannot write: {msg}")]
    Write { path: PathBuf, msg: String },
    #[error("{what}: the program gave no verdict on {target} (it no longer reproduces there): nothing to report")]
    NoLongerReproduces { what: String, target: String },
    #[error("{0}")]
    Program(String),
    #[error(transparent)]
    Target(#[from] crate::targets::TargetError),
    #[error(transparent)]
    Session(#[from] crate::backend::kernel::boot::SessionError),
    #[error(transparent)]
    Suppressions(#[from] crate::oracle::SuppressionError),
}

/// HTML-escapes text for an element's content or a double-quoted attribute.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_double_quoted_attribute(s)
}

/// `2026-12-02T18:00:00Z` for Unix seconds.
pub fn utc(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}
