//! Reading a campaign directory as the campaign and triage write it: `OUT/findings/<dir>/`
//! (`meta.json`, `reproducer.prog`, `reproducer.min.prog`, `verdict.json`, `observations.json`,
//! `console.txt`) and the stats (`OUT/stats.jsonl`, every status line; `OUT/stats.json`, the
//! last). Every field triage adds, and every file but `meta.json` and a reproducer, is optional:
//! findings of older campaigns have none of them.

use super::ReportError;
use reference_impl::observation::Observation;
use reference_impl::outcome::Outcome;
use serde::Deserialize;
use std::fs;
use std::path::{Path, PathBuf};

/// One op of a finding's program that diverged after its first verdict (triage's `context`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContextEntry {
    pub op_index: Option<usize>,
    pub signature: String,
    pub kind: String,
    pub detail: String,
}

/// How often the reproducer gave its signature again (triage's `reliability`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Reliability {
    pub reproduced: u64,
    pub runs: u64,
    /// `reliable`, `flaky` or `not-reproduced`.
    pub class: String,
}

/// `meta.json`: [`crate::findings::Meta`] plus what triage adds, every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FindingMeta {
    pub signature: String,
    pub kind: String,
    pub target: String,
    pub kernel_hash: Option<String>,
    pub kernel_patches: Vec<String>,
    pub count: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    pub context: Vec<ContextEntry>,
    pub reliability: Option<Reliability>,
    pub min_runs: Option<u64>,
    pub original_ops: Option<u64>,
    pub min_ops: Option<u64>,
    /// Signatures of other programs' first verdicts found to be this bug.
    pub alternates: Vec<serde_json::Value>,
    /// Finding directories merged into this one.
    pub merged: Vec<serde_json::Value>,
    /// The signature the minimized reproducer gives, when it differs.
    pub min_signature: Option<String>,
}

/// A suppression as `verdict.json` records it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SuppressedRecord {
    pub id: String,
    pub class: String,
    pub reason: String,
    pub known_issue: Option<String>,
}

/// A verdict as `verdict.json` records it ([`crate::oracle::Verdict`]'s serialized form).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VerdictRecord {
    pub kind: String,
    pub signature: String,
    pub op_index: Option<usize>,
    pub detail: String,
    pub excerpt: Option<String>,
    pub suppressed: Option<SuppressedRecord>,
}

impl VerdictRecord {
    pub fn from_verdict(v: &crate::oracle::Verdict) -> Self {
        // Both are the same serde shape; a verdict always serializes.
        serde_json::to_value(v).ok().and_then(|x| serde_json::from_value(x).ok()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct VerdictFile {
    verdict: Option<VerdictRecord>,
    all_verdicts: Vec<VerdictRecord>,
}

/// One side's run as `observations.json` records it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunRecord {
    pub outcomes: Vec<Outcome>,
    #[serde(default)]
    pub observations: Vec<(usize, Observation)>,
    pub end: Observation,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ObservationsFile {
    model: Option<RunRecord>,
    kernel: Option<RunRecord>,
}

/// One finding directory, read.
#[derive(Debug, Clone)]
pub struct Finding {
    pub dir: PathBuf,
    pub meta: FindingMeta,
    /// `reproducer.prog`: the program the campaign ran (the one `observations.json` is of).
    pub reproducer: String,
    /// `reproducer.min.prog`, when triage minimized it.
    pub minimized: Option<String>,
    pub verdict: Option<VerdictRecord>,
    pub all_verdicts: Vec<VerdictRecord>,
    pub model: Option<RunRecord>,
    pub kernel: Option<RunRecord>,
    pub console: String,
}

impl Finding {
    /// The reproducer to send and replay: the minimized one when there is one.
    pub fn best_reproducer(&self) -> &str {
        self.minimized.as_deref().unwrap_or(&self.reproducer)
    }
}

fn read_text(p: &Path) -> Result<Option<String>, ReportError> {
    match fs::read(p) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReportError::Read { path: p.to_path_buf(), msg: e.to_string() }),
    }
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(p: &Path) -> Result<Option<T>, ReportError> {
    match read_text(p)? {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| ReportError::Parse { path: p.to_path_buf(), msg: e.to_string() }),
    }
}

/// Reads one finding directory; a directory without `meta.json` or without a reproducer is an
/// error naming it.
pub fn finding(dir: &Path) -> Result<Finding, ReportError> {
    let meta_path = dir.join("meta.json");
    let meta: FindingMeta =
        read_json(&meta_path)?.ok_or_else(|| ReportError::NotAFinding { path: dir.to_path_buf() })?;
    let minimized = read_text(&dir.join("reproducer.min.prog"))?;
    let reproducer = match read_text(&dir.join("reproducer.prog"))? {
        Some(r) => r,
        None => minimized.clone().ok_or_else(|| ReportError::NoReproducer { path: dir.to_path_buf() })?,
    };
    let vf: VerdictFile = read_json(&dir.join("verdict.json"))?.unwrap_or_default();
    let of: ObservationsFile = read_json(&dir.join("observations.json"))?.unwrap_or_default();
    Ok(Finding {
        dir: dir.to_path_buf(),
        meta,
        reproducer,
        minimized,
        verdict: vf.verdict,
        all_verdicts: vf.all_verdicts,
        model: of.model,
        kernel: of.kernel,
        console: read_text(&dir.join("console.txt"))?.unwrap_or_default(),
    })
}

/// One status line of the campaign ([`crate::campaign`]'s monitor writes them; read here by
/// field name, so a line from an older or newer monitor still reads).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StatsPoint {
    pub run_time_s: u64,
    pub execs: u64,
    pub execs_per_sec: f64,
    pub corpus: u64,
    pub coverage_model: u64,
    pub coverage_kcov: u64,
    pub findings_total: u64,
}

/// A campaign directory, read.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub out: PathBuf,
    pub findings: Vec<Finding>,
    pub stats: Vec<StatsPoint>,
}

/// Reads `out` as a campaign: it must hold `findings/` or `stats.json` (what `cmafuzz fuzz`
/// creates first), or it is not one.
pub fn campaign(out: &Path) -> Result<Campaign, ReportError> {
    let fdir = out.join("findings");
    if !out.is_dir() || (!fdir.is_dir() && !out.join("stats.json").is_file()) {
        return Err(ReportError::NotACampaign { path: out.to_path_buf() });
    }
    let mut findings = Vec::new();
    if fdir.is_dir() {
        let rd = fs::read_dir(&fdir).map_err(|e| ReportError::Read { path: fdir.clone(), msg: e.to_string() })?;
        let mut dirs: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.') && e.path().is_dir())
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for d in dirs {
            findings.push(finding(&d)?);
        }
    }
    findings.sort_by(|a, b| a.meta.first_seen.cmp(&b.meta.first_seen).then(a.meta.signature.cmp(&b.meta.signature)));
    let mut stats = Vec::new();
    if let Some(t) = read_text(&out.join("stats.jsonl"))? {
        // A line cut by a killed campaign is skipped, not fatal.
        stats.extend(t.lines().filter_map(|l| serde_json::from_str::<StatsPoint>(l).ok()));
    }
    if stats.is_empty() {
        if let Some(p) = read_json::<StatsPoint>(&out.join("stats.json"))? {
            stats.push(p);
        }
    }
    Ok(Campaign { out: out.to_path_buf(), findings, stats })
}
