//! Findings on disk: `OUT/findings/<signature>/`, one directory per signature, written before
//! the campaign moves on. A program makes one finding: its first unsuppressed verdict by op
//! order ([`first_finding`]); the verdicts after it are kept as that finding's `context`
//! ([`FindingStore::record_program`]). After minimization ([`minimize`]) findings whose
//! minimized reproducers are the same program or whose minimized first verdicts share a
//! signature are merged into one ([`FindingStore::save_minimized`]): the other's reproducer is
//! kept as an alternate, its signature in `OUT/findings/.merged.json`, so it is counted there
//! the next time it is seen. A new signature is assembled in a temporary directory and renamed into
//! place (a reader never sees half a finding); a signature seen again only bumps `count` and
//! `last_seen` in `meta.json` (temp file + rename). Clients of one campaign (and campaigns
//! sharing an `OUT`) serialise on `OUT/findings/.lock`. A finding whose `meta.json` does not
//! parse never stops a campaign: it is moved to `OUT/quarantine/findings.<dir>` with one line on
//! stderr, and the signature counts as new the next time it is seen.

pub mod minimize;
pub mod programs;

use crate::diff::Execution;
use crate::disk;
use crate::oracle::{Verdict, VerdictKind};
use reference_impl::program::Program;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FindingError {
    #[error("{path}: {msg} (check that the --out directory is writable)")]
    Io { path: PathBuf, msg: String },
    #[error("{path}: {msg} (fix or remove this finding's meta.json)")]
    Meta { path: PathBuf, msg: String },
    #[error("{0}: not a finding directory: it has no meta.json (give OUT/findings/<name>/ or a .prog file)")]
    NotAFinding(PathBuf),
    #[error("{0}: this finding has no reproducer.prog (nothing to run; replay or delete the finding)")]
    NoReproducer(PathBuf),
    #[error("{path}: {msg} (fix the reproducer or delete the finding)")]
    BadReproducer { path: PathBuf, msg: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> FindingError {
    FindingError::Io { path: path.to_path_buf(), msg: e.to_string() }
}

/// `meta.json` of one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub signature: String,
    pub kind: String,
    pub target: String,
    /// The kernel build's cache key (a hash of source, patches, config and driver).
    pub kernel_hash: Option<String>,
    /// Patches the kernel was built with, as given on the command line.
    #[serde(default)]
    pub kernel_patches: Vec<String>,
    /// Programs that produced this signature.
    pub count: u64,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    /// The verdicts after the finding's own in the program that made it (they follow from it).
    #[serde(default)]
    pub context: Vec<ContextVerdict>,
    /// How often the minimized reproducer reproduces ([`minimize::reliability`]).
    #[serde(default)]
    pub reliability: Option<Reliability>,
    /// Runs minimization took (`None`: not minimized).
    #[serde(default)]
    pub min_runs: Option<u64>,
    /// Ops of `reproducer.prog`.
    #[serde(default)]
    pub original_ops: usize,
    /// Ops of `reproducer.min.prog` (`None`: not minimized).
    #[serde(default)]
    pub min_ops: Option<usize>,
    /// The first verdict of `reproducer.min.prog`, observed after every op: where the state
    /// first went wrong, the signature findings are merged by.
    #[serde(default)]
    pub min_signature: Option<String>,
    /// Reproducers of findings merged into this one (file names in this directory).
    #[serde(default)]
    pub alternates: Vec<String>,
    /// Signatures of the findings merged into this one.
    #[serde(default)]
    pub merged: Vec<String>,
}

/// A verdict after the finding's own in the same program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextVerdict {
    pub op_index: Option<usize>,
    pub signature: String,
    pub kind: String,
    pub detail: String,
}

/// How a reproducer reproduces: `reproduced` of `runs` (syzkaller's rule: up to 10 runs,
/// stopping at 3 successes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reliability {
    pub reproduced: u32,
    pub runs: u32,
    /// `reliable` (every run), `flaky` (some) or `not-reproduced` (none).
    pub class: String,
}

impl Reliability {
    pub fn new(reproduced: u32, runs: u32) -> Self {
        let class = if reproduced == 0 {
            "not-reproduced"
        } else if reproduced == runs {
            "reliable"
        } else {
            "flaky"
        };
        Reliability { reproduced, runs, class: class.into() }
    }
}

/// The finding of a program: its first unsuppressed verdict by op order (a verdict of the end
/// observation or of the console, which no op pins, after every op's), harness errors aside.
/// At one op, what the state shows (a bitmap, then a mapping) comes before what the op
/// returned: a busy retry that leaks a bit both returns another pfn and leaves the bitmap
/// wrong, and the bitmap is where the state went wrong, the signature the bug's other programs
/// share.
pub fn first_finding(verdicts: &[Verdict]) -> Option<&Verdict> {
    let rank = |k: VerdictKind| match k {
        VerdictKind::Bitmap => 0,
        VerdictKind::Mapping | VerdictKind::AliasViolation => 1,
        _ => 2,
    };
    verdicts
        .iter()
        .filter(|v| v.suppressed.is_none() && v.kind != VerdictKind::HarnessError)
        .min_by_key(|v| (v.op_index.unwrap_or(usize::MAX), rank(v.kind)))
}

/// Whether a recorded verdict was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    Again { count: u64 },
}

/// `OUT/findings` of one campaign.
#[derive(Debug, Clone)]
pub struct FindingStore {
    pub dir: PathBuf,
    pub target: String,
    pub kernel_hash: Option<String>,
    pub kernel_patches: Vec<String>,
}

/// The directory name of a signature: `[A-Za-z0-9._-]` kept, anything else `_`, at most 96
/// characters; a changed or shortened name gets the signature's hash appended so two signatures
/// never share a directory.
pub fn dir_name(signature: &str) -> String {
    let mut s: String = signature
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    let changed = s != signature;
    s.truncate(96);
    if changed {
        s.push('-');
        s.push_str(&disk::sha256_hex(signature.as_bytes())[..8]);
    }
    s
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes `data` to `path` atomically ([`disk::write_atomic`]).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), FindingError> {
    disk::write_atomic(path, data).map_err(|e| io(path, e))
}

fn lock(path: &Path) -> Result<disk::Lock, FindingError> {
    disk::Lock::exclusive(path).map_err(|e| io(path, e))
}

impl FindingStore {
    pub fn open(
        out: &Path,
        target: &str,
        kernel_hash: Option<String>,
        kernel_patches: Vec<String>,
    ) -> Result<Self, FindingError> {
        let dir = out.join("findings");
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(FindingStore { dir, target: target.to_string(), kernel_hash, kernel_patches })
    }

    /// Signatures already on disk (their `meta.json`). A finding whose `meta.json` does not parse
    /// is set aside ([`FindingStore::set_aside`]) and left out.
    pub fn existing(&self) -> Result<Vec<Meta>, FindingError> {
        let _lock = lock(&self.dir.join(".lock"))?;
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        for e in rd.flatten() {
            let p = e.path().join("meta.json");
            if e.file_name().to_string_lossy().starts_with('.') || !p.is_file() {
                continue;
            }
            match read_meta(&p) {
                Ok(m) => out.push(m),
                Err(FindingError::Meta { msg, .. }) => self.set_aside(&e.path(), &msg)?,
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.signature.cmp(&b.signature));
        Ok(out)
    }

    /// `OUT/quarantine`, beside `OUT/findings`.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join("quarantine")
    }

    /// Moves the finding directory `dir`, whose `meta.json` is corrupt (`why`), to
    /// `OUT/quarantine/findings.<name>` and says so in one line on stderr. Called with the lock
    /// held, so one process moves it and reports it, once.
    fn set_aside(&self, dir: &Path, why: &str) -> Result<(), FindingError> {
        let q = self.quarantine_dir();
        let dest = disk::quarantine(&q, dir, "findings").map_err(|e| io(&q, e))?;
        disk::notice(&format!(
            "cmafuzz: {}: {why}; moved that finding to {} and carrying on (read its reproducer.prog there, then delete it)",
            dir.join("meta.json").display(),
            dest.display()
        ));
        Ok(())
    }

    /// The replay command a person runs on the reproducer.
    fn replay_hint(&self, dir: &Path) -> String {
        let mut s = format!("cmafuzz replay {} --target {}", dir.join("reproducer.prog").display(), self.target);
        for p in &self.kernel_patches {
            s.push_str(&format!(" --kernel-patch {p}"));
        }
        s
    }

    /// Records the finding of `prog`'s execution `e` ([`first_finding`]), the verdicts after it
    /// as its context; `None` when `e` has no finding. Returns the finding's directory.
    pub fn record_program(
        &self,
        prog: &Program,
        e: &Execution,
        console: &str,
    ) -> Result<Option<(Recorded, PathBuf)>, FindingError> {
        let Some(v) = first_finding(&e.verdicts) else { return Ok(None) };
        let r = self.record(prog, e, v, console)?;
        Ok(Some((r, self.dir.join(dir_name(&v.signature)))))
    }

    /// `OUT/findings/.merged.json`: the signature of every finding merged into another, to the
    /// directory it was merged into.
    fn merged_map(&self) -> BTreeMap<String, String> {
        fs::read_to_string(self.dir.join(".merged.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Records `verdict` of `prog`'s execution `e` (`console`: the kernel console, for the
    /// excerpt when the verdict has none); the other unsuppressed verdicts of `e` after it are
    /// its context. A signature merged into another finding counts there.
    pub fn record(
        &self,
        prog: &Program,
        e: &Execution,
        verdict: &Verdict,
        console: &str,
    ) -> Result<Recorded, FindingError> {
        let _lock = lock(&self.dir.join(".lock"))?;
        let mut final_dir = self.dir.join(dir_name(&verdict.signature));
        if !final_dir.join("meta.json").is_file() {
            if let Some(into) = self.merged_map().get(&verdict.signature) {
                let d = self.dir.join(into);
                if d.join("meta.json").is_file() {
                    final_dir = d;
                }
            }
        }
        let meta_path = final_dir.join("meta.json");
        let t = now();
        if meta_path.is_file() {
            match read_meta(&meta_path) {
                Ok(mut m) => {
                    m.count += 1;
                    m.last_seen = t;
                    write_atomic(&meta_path, &to_json(&m))?;
                    return Ok(Recorded::Again { count: m.count });
                }
                Err(FindingError::Meta { msg, .. }) => self.set_aside(&final_dir, &msg)?,
                Err(e) => return Err(e),
            }
        }
        let final_dir = self.dir.join(dir_name(&verdict.signature));
        let context = e
            .verdicts
            .iter()
            .filter(|v| {
                v.suppressed.is_none() && v.kind != VerdictKind::HarnessError && v.signature != verdict.signature
            })
            .map(|v| ContextVerdict {
                op_index: v.op_index,
                signature: v.signature.clone(),
                kind: v.kind.as_str().to_string(),
                detail: v.detail.clone(),
            })
            .collect();
        let tmp = tempfile::Builder::new().prefix(".new-").tempdir_in(&self.dir).map_err(|e| io(&self.dir, e))?;
        let d = tmp.path();
        let header = format!(
            "# cmafuzz finding {}\n# {}\n# replay: {}\n",
            verdict.signature,
            verdict.detail.lines().next().unwrap_or(""),
            self.replay_hint(&final_dir)
        );
        write_atomic(&d.join("reproducer.prog"), format!("{header}{}", prog.to_text()).as_bytes())?;
        let verdicts = json!({ "verdict": verdict, "all_verdicts": &e.verdicts });
        write_atomic(&d.join("verdict.json"), &to_json(&verdicts))?;
        let side = |r: Option<&crate::backend::ProgramRun>| {
            r.map(|r| json!({ "outcomes": r.outcomes, "observations": r.observations, "end": r.end }))
        };
        let obs = json!({ "model": side(e.reference.as_ref()), "kernel": side(e.subject.as_ref()) });
        write_atomic(&d.join("observations.json"), &to_json(&obs))?;
        let excerpt = match &verdict.excerpt {
            Some(x) => x.clone(),
            None => {
                let lines: Vec<&str> = console.lines().collect();
                lines[lines.len().saturating_sub(80)..].join("\n")
            }
        };
        write_atomic(&d.join("console.txt"), excerpt.as_bytes())?;
        let m = Meta {
            signature: verdict.signature.clone(),
            kind: verdict.kind.as_str().to_string(),
            target: self.target.clone(),
            kernel_hash: self.kernel_hash.clone(),
            kernel_patches: self.kernel_patches.clone(),
            count: 1,
            first_seen: t,
            last_seen: t,
            context,
            reliability: None,
            min_runs: None,
            original_ops: prog.ops.len(),
            min_ops: None,
            min_signature: None,
            alternates: vec![],
            merged: vec![],
        };
        write_atomic(&d.join("meta.json"), &to_json(&m))?;
        let tmp_path = tmp.keep();
        // Under the lock nobody else publishes this signature; a directory there without a
        // meta.json (a person's leftovers) is an error naming it.
        match disk::publish_dir(&tmp_path, &final_dir).map_err(|e| io(&final_dir, e))? {
            disk::Published::Ours => Ok(Recorded::New),
            disk::Published::Theirs => {
                Err(io(&final_dir, "a directory without meta.json is in the way (move or delete it)"))
            }
        }
    }
}

/// A finding directory as the minimizer reads it.
#[derive(Debug, Clone)]
pub struct FindingDir {
    pub dir: PathBuf,
    pub meta: Meta,
    pub program: Program,
}

/// Reads the finding in `dir`: its `meta.json` and `reproducer.prog`.
pub fn load_finding(dir: &Path) -> Result<FindingDir, FindingError> {
    let mp = dir.join("meta.json");
    if !mp.is_file() {
        return Err(FindingError::NotAFinding(dir.to_path_buf()));
    }
    let meta = read_meta(&mp)?;
    let rp = dir.join("reproducer.prog");
    if !rp.is_file() {
        return Err(FindingError::NoReproducer(dir.to_path_buf()));
    }
    let text = fs::read_to_string(&rp).map_err(|e| io(&rp, e))?;
    let program = Program::parse(&text).map_err(|e| FindingError::BadReproducer { path: rp, msg: e.to_string() })?;
    Ok(FindingDir { dir: dir.to_path_buf(), meta, program })
}

/// What minimization found for one finding.
#[derive(Debug, Clone)]
pub struct MinimizedFinding {
    pub program: Program,
    /// The first verdict of `program`, observed after every op.
    pub signature: String,
    pub runs: u64,
    pub reliability: Option<Reliability>,
}

/// What [`FindingStore::save_minimized`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Kept in its own directory.
    Kept(PathBuf),
    /// Merged into the finding in this directory.
    MergedInto(PathBuf),
}

impl FindingStore {
    /// The store `dir` (a finding directory) belongs to: `OUT/findings`.
    pub fn of_finding(dir: &Path, meta: &Meta) -> Option<FindingStore> {
        let parent = dir.parent()?;
        Some(FindingStore {
            dir: parent.to_path_buf(),
            target: meta.target.clone(),
            kernel_hash: meta.kernel_hash.clone(),
            kernel_patches: meta.kernel_patches.clone(),
        })
    }

    /// Writes `reproducer.min.prog` and the minimization's figures into the finding in `dir`,
    /// then merges it with another minimized finding of this store whose minimized reproducer
    /// is the same program or whose minimized signature is the same: the older one stays, the
    /// count adds up, the other's reproducers become its alternates and its directory goes.
    pub fn save_minimized(&self, dir: &Path, min: &MinimizedFinding) -> Result<Saved, FindingError> {
        let _lock = lock(&self.dir.join(".lock"))?;
        let mp = dir.join("meta.json");
        let mut m = read_meta(&mp)?;
        let header = format!(
            "# cmafuzz finding {} minimized ({} ops, {} runs)\n# first verdict observed after every op: {}\n# replay: {}\n",
            m.signature,
            min.program.ops.len(),
            min.runs,
            min.signature,
            self.replay_hint(dir).replace("reproducer.prog", "reproducer.min.prog")
        );
        write_atomic(&dir.join("reproducer.min.prog"), format!("{header}{}", min.program.to_text()).as_bytes())?;
        if m.original_ops == 0 {
            // A finding recorded before `original_ops` existed.
            m.original_ops = fs::read_to_string(dir.join("reproducer.prog"))
                .ok()
                .and_then(|t| Program::parse(&t).ok())
                .map_or(0, |p| p.ops.len());
        }
        m.min_runs = Some(min.runs);
        m.min_ops = Some(min.program.ops.len());
        m.min_signature = Some(min.signature.clone());
        if min.reliability.is_some() {
            m.reliability.clone_from(&min.reliability);
        }
        write_atomic(&mp, &to_json(&m))?;
        let me = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = min.program.to_text();
        let rd = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        let mut same: Vec<(PathBuf, Meta)> = rd
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with('.') && n != me
            })
            .filter_map(|e| read_meta(&e.path().join("meta.json")).ok().map(|m| (e.path(), m)))
            .filter(|(p, o)| {
                o.min_ops.is_some()
                    && (o.min_signature.as_deref() == Some(min.signature.as_str())
                        || fs::read_to_string(p.join("reproducer.min.prog"))
                            .ok()
                            .and_then(|t| Program::parse(&t).ok())
                            .is_some_and(|q| q.to_text() == text))
            })
            .collect();
        if same.is_empty() {
            return Ok(Saved::Kept(dir.to_path_buf()));
        }
        same.push((dir.to_path_buf(), m));
        // The finding whose own signature is the bug's (where the state first went wrong) is
        // kept; else the oldest.
        same.sort_by_key(|(p, o)| (o.signature != min.signature, o.first_seen, p.clone()));
        let (keep, mut k) = same.remove(0);
        for (gone, g) in same {
            self.merge_into(&keep, &mut k, &gone, &g)?;
        }
        write_atomic(&keep.join("meta.json"), &to_json(&k))?;
        if keep == dir {
            Ok(Saved::Kept(keep))
        } else {
            Ok(Saved::MergedInto(keep))
        }
    }

    /// Merges the finding `gone` (meta `g`) into `keep` (meta `k`, written by the caller): its
    /// reproducers become alternates there, its count adds up, its signature is recorded in
    /// `.merged.json`, and its directory goes.
    fn merge_into(&self, keep: &Path, k: &mut Meta, gone: &Path, g: &Meta) -> Result<(), FindingError> {
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (gname, kname) = (name(gone), name(keep));
        for f in ["reproducer.prog", "reproducer.min.prog"] {
            if let Ok(bytes) = fs::read(gone.join(f)) {
                let alt = format!("alternate-{gname}-{f}");
                write_atomic(&keep.join(&alt), &bytes)?;
                k.alternates.push(alt);
            }
        }
        for a in &g.alternates {
            if let Ok(bytes) = fs::read(gone.join(a)) {
                write_atomic(&keep.join(a), &bytes)?;
                k.alternates.push(a.clone());
            }
        }
        k.count += g.count;
        k.first_seen = k.first_seen.min(g.first_seen);
        k.last_seen = k.last_seen.max(g.last_seen);
        k.merged.push(g.signature.clone());
        k.merged.extend(g.merged.iter().cloned());
        let mut map = self.merged_map();
        for v in map.values_mut() {
            if *v == gname {
                v.clone_from(&kname);
            }
        }
        map.insert(g.signature.clone(), kname);
        write_atomic(&self.dir.join(".merged.json"), &to_json(&map))?;
        // Out of the way first (a reader never sees half a directory), then gone.
        let away = self.dir.join(format!(".merged-{gname}"));
        fs::rename(gone, &away).map_err(|e| io(gone, e))?;
        fs::remove_dir_all(&away).map_err(|e| io(&away, e))?;
        Ok(())
    }
}

pub fn read_meta(p: &Path) -> Result<Meta, FindingError> {
    let bytes = fs::read(p).map_err(|e| io(p, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| FindingError::Meta { path: p.to_path_buf(), msg: format!("not UTF-8: {e}") })?;
    serde_json::from_str(&text).map_err(|e| FindingError::Meta { path: p.to_path_buf(), msg: e.to_string() })
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    s.push(b'\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::VerdictKind;
    use reference_impl::program::ResolvedProgram;

    pub(crate) fn exec() -> Execution {
        Execution {
            resolved: ResolvedProgram::default(),
            reference: None,
            subject: None,
            divergences: vec![],
            verdicts: vec![],
            subject_error: None,
            subject_time: std::time::Duration::ZERO,
            coverage: vec![],
            subject_reset: None,
        }
    }

    pub(crate) fn verdict(sig: &str) -> Verdict {
        Verdict {
            kind: VerdictKind::Bitmap,
            signature: sig.into(),
            op_index: Some(1),
            detail: "bits differ".into(),
            excerpt: None,
            suppressed: None,
        }
    }

    #[test]
    fn dir_names_are_safe_and_distinct() {
        assert_eq!(dir_name("bitmap_cma_release_reserved"), "bitmap_cma_release_reserved");
        let a = dir_name("bitmap:reserved");
        let b = dir_name("bitmap_cma_release_reserved");
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{a}");
        assert!(!dir_name("../../etc").contains('/'));
        assert!(!dir_name(".hidden").starts_with('.'));
        assert!(dir_name(&"x:".repeat(200)).len() <= 96 + 9);
    }

    #[test]
    fn the_same_signature_twice_is_one_directory_with_count_two() {
        let out = tempfile::tempdir().expect("tempdir");
        let store =
            FindingStore::open(out.path(), "arm32-6.1", Some("abc".into()), vec!["bug.patch".into()]).expect("open");
        let prog = Program::parse("cma_alloc area=reserved count=3 align=0\ncma_release h=0\n").expect("parses");
        let v = verdict("bitmap:reserved");
        assert_eq!(store.record(&prog, &exec(), &v, "console\n").expect("record"), Recorded::New);
        assert_eq!(store.record(&prog, &exec(), &v, "").expect("record"), Recorded::Again { count: 2 });
        let dirs: Vec<_> = fs::read_dir(&store.dir)
            .expect("list")
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(dirs.len(), 1);
        let d = dirs[0].path();
        for f in ["reproducer.prog", "verdict.json", "observations.json", "console.txt", "meta.json"] {
            assert!(d.join(f).is_file(), "{f} missing");
        }
        let text = fs::read_to_string(d.join("reproducer.prog")).expect("read");
        assert_eq!(Program::parse(&text).expect("reproducer parses"), prog);
        assert!(text.contains("--kernel-patch bug.patch"), "{text}");
        let metas = store.existing().expect("existing");
        assert_eq!(metas.len(), 1);
        assert_eq!(metas[0].count, 2);
        assert_eq!(metas[0].kernel_hash.as_deref(), Some("abc"));
        // No temporary directories left behind.
        assert!(!fs::read_dir(&store.dir)
            .expect("list")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".new-")));
    }

    #[test]
    fn a_signature_changed_for_its_directory_name_gets_a_pinned_sha256_suffix() {
        // printf 'bitmap:reserved' | sha256sum | cut -c1-8
        assert_eq!(dir_name("bitmap:reserved"), "bitmap_reserved-8dfdeabc");
    }

    fn corrupt_finding(store: &FindingStore, sig: &str) -> PathBuf {
        let d = store.dir.join(dir_name(sig));
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(d.join("meta.json"), "{").expect("write");
        fs::write(d.join("reproducer.prog"), "observe\n").expect("write");
        d
    }

    #[test]
    fn a_corrupt_meta_json_is_set_aside_and_the_store_still_opens() {
        let out = tempfile::tempdir().expect("tempdir");
        let store = FindingStore::open(out.path(), "t", None, vec![]).expect("open");
        let prog = Program::default();
        store.record(&prog, &exec(), &verdict("bitmap:good"), "").expect("record");
        let good = store.dir.join(dir_name("bitmap:good"));
        let good_meta = fs::read(good.join("meta.json")).expect("read");
        let bad = corrupt_finding(&store, "bitmap:x");
        disk::take_notices();
        let metas = store.existing().expect("a corrupt finding does not stop the store");
        let said = disk::take_notices();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("meta.json") && said[0].contains("quarantine"), "{}", said[0]);
        assert_eq!(metas.iter().map(|m| m.signature.as_str()).collect::<Vec<_>>(), ["bitmap:good"]);
        assert!(!bad.exists(), "the corrupt finding left findings/");
        let moved = store.quarantine_dir().join(format!("findings.{}", dir_name("bitmap:x")));
        assert_eq!(fs::read_to_string(moved.join("reproducer.prog")).expect("kept"), "observe\n");
        // Set aside once: the next look finds nothing more to move, and the good one is untouched.
        assert_eq!(store.existing().expect("existing").len(), 1);
        assert!(disk::take_notices().is_empty(), "reported once");
        assert_eq!(fs::read_dir(store.quarantine_dir()).expect("list").count(), 1);
        assert_eq!(fs::read(good.join("meta.json")).expect("read"), good_meta);
    }

    #[test]
    fn recording_a_signature_whose_meta_json_is_corrupt_sets_it_aside_and_records_it_anew() {
        let out = tempfile::tempdir().expect("tempdir");
        let store = FindingStore::open(out.path(), "t", None, vec![]).expect("open");
        corrupt_finding(&store, "bitmap:x");
        let prog = Program::default();
        assert_eq!(store.record(&prog, &exec(), &verdict("bitmap:x"), "").expect("record"), Recorded::New);
        assert_eq!(store.existing().expect("existing")[0].count, 1);
        assert!(store.quarantine_dir().join(format!("findings.{}", dir_name("bitmap:x"))).is_dir());
    }

    fn v(kind: VerdictKind, sig: &str, op: Option<usize>, suppressed: bool) -> Verdict {
        Verdict {
            kind,
            signature: sig.into(),
            op_index: op,
            detail: format!("{sig} detail"),
            excerpt: None,
            suppressed: suppressed.then(|| crate::oracle::Suppressed {
                id: "x".into(),
                class: "by-design".into(),
                reason: "r".into(),
                known_issue: None,
            }),
        }
    }

    #[test]
    fn a_program_with_several_divergences_records_one_finding_with_the_rest_as_context() {
        let out = tempfile::tempdir().expect("tempdir");
        let store = FindingStore::open(out.path(), "t", None, vec![]).expect("open");
        let prog = Program::parse(
            "cma_alloc area=reserved count=3 align=0\ncma_release h=0\ncma_alloc area=reserved count=3 align=0\n",
        )
        .expect("parses");
        let mut e = exec();
        // In the judge's order (divergences by kind), not op order.
        e.verdicts = vec![
            v(VerdictKind::Layout, "layout:cma_alloc:allocated-vs-allocated", Some(2), false),
            v(VerdictKind::Bitmap, "bitmap:reserved", None, false),
            v(VerdictKind::AliasByDesign, "alias-by-design:x", Some(0), true),
            v(VerdictKind::HarnessError, "harness-error:agent", Some(0), false),
            v(VerdictKind::Bitmap, "bitmap:reserved-at-release", Some(1), false),
        ];
        assert_eq!(first_finding(&e.verdicts).map(|v| v.signature.as_str()), Some("bitmap:reserved-at-release"));
        // At one op, the state before the outcome.
        let same_op = [
            v(VerdictKind::Layout, "layout:cma_alloc:allocated-vs-allocated", Some(1), false),
            v(VerdictKind::Bitmap, "bitmap:reserved", Some(1), false),
        ];
        assert_eq!(first_finding(&same_op).map(|v| v.signature.as_str()), Some("bitmap:reserved"));
        let (r, dir) = store.record_program(&prog, &e, "").expect("record").expect("a finding");
        assert_eq!(r, Recorded::New);
        let metas = store.existing().expect("existing");
        assert_eq!(metas.len(), 1, "one finding for one program: {metas:?}");
        let m = &metas[0];
        assert_eq!(m.signature, "bitmap:reserved-at-release");
        assert_eq!(dir, store.dir.join(dir_name(&m.signature)));
        assert_eq!(m.original_ops, 3);
        let ctx: Vec<_> = m.context.iter().map(|c| (c.op_index, c.signature.as_str())).collect();
        assert_eq!(ctx, [(Some(2), "layout:cma_alloc:allocated-vs-allocated"), (None, "bitmap:reserved")]);
        // A program with suppressed verdicts and harness errors only makes no finding.
        let mut quiet = exec();
        quiet.verdicts = vec![
            v(VerdictKind::AliasByDesign, "alias-by-design:x", Some(0), true),
            v(VerdictKind::HarnessError, "harness-error:agent", None, false),
        ];
        assert!(store.record_program(&prog, &quiet, "").expect("record").is_none());
    }

    #[test]
    fn an_old_meta_json_without_the_triage_fields_still_loads() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("meta.json");
        fs::write(
            &p,
            r#"{"signature":"bitmap:reserved","kind":"bitmap","target":"arm32-6.1","kernel_hash":null,"count":3,"first_seen":1,"last_seen":2}"#,
        )
        .expect("write");
        let m = read_meta(&p).expect("loads");
        assert_eq!((m.count, m.min_ops, m.reliability.clone(), m.context.len()), (3, None, None, 0));
    }

    fn minimized(sig: &str, text: &str) -> MinimizedFinding {
        MinimizedFinding {
            program: Program::parse(text).expect("parses"),
            signature: sig.into(),
            runs: 7,
            reliability: Some(Reliability::new(3, 3)),
        }
    }

    #[test]
    fn findings_whose_minimized_first_verdicts_agree_merge_into_the_one_named_for_it() {
        let out = tempfile::tempdir().expect("tempdir");
        let store = FindingStore::open(out.path(), "t", None, vec![]).expect("open");
        let prog = Program::parse("cma_alloc area=reserved count=3 align=0\n").expect("parses");
        let rec = |sig: &str| {
            let mut e = exec();
            e.verdicts = vec![v(VerdictKind::Layout, sig, Some(0), false)];
            store.record_program(&prog, &e, "").expect("record").expect("finding").1
        };
        let layout = rec("layout:cma_alloc:allocated-vs-allocated");
        let bitmap = rec("bitmap:reserved");
        let other = rec("mapping:x");
        let two = "cma_alloc area=reserved count=2 align=0\ncma_release h=0\n";
        assert_eq!(
            store.save_minimized(&layout, &minimized("bitmap:reserved", two)).expect("save"),
            Saved::Kept(layout.clone())
        );
        assert!(layout.join("reproducer.min.prog").is_file());
        assert_eq!(
            store.save_minimized(&other, &minimized("mapping:x", "observe\n")).expect("save"),
            Saved::Kept(other.clone())
        );
        // The finding named for the minimized signature stays; the other becomes its alternate.
        let pinned = "pin area=reserved off=3\ncma_alloc area=reserved count=4 align=2\n";
        assert_eq!(
            store.save_minimized(&bitmap, &minimized("bitmap:reserved", pinned)).expect("save"),
            Saved::Kept(bitmap.clone())
        );
        assert!(!layout.exists(), "merged away");
        let metas = store.existing().expect("existing");
        assert_eq!(metas.iter().map(|m| m.signature.as_str()).collect::<Vec<_>>(), ["bitmap:reserved", "mapping:x"]);
        let m = &metas[0];
        assert_eq!(m.count, 2);
        assert_eq!(m.merged, ["layout:cma_alloc:allocated-vs-allocated"]);
        assert_eq!((m.min_ops, m.min_runs, m.original_ops), (Some(2), Some(7), 1));
        assert_eq!(m.reliability.as_ref().map(|r| r.class.as_str()), Some("reliable"));
        for a in &m.alternates {
            assert!(bitmap.join(a).is_file(), "{a}");
        }
        assert_eq!(m.alternates.len(), 2);
        // The merged signature seen again counts on the finding it went into.
        rec("layout:cma_alloc:allocated-vs-allocated");
        let metas = store.existing().expect("existing");
        assert_eq!(metas.len(), 2);
        assert_eq!(metas[0].count, 3);
        assert!(!layout.exists());
    }
}
