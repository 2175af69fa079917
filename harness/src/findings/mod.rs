//! Findings on disk: `OUT/findings/<signature>/`, one directory per signature, written before
//! the campaign moves on. A new signature is assembled in a temporary directory and renamed into
//! place (a reader never sees half a finding); a signature seen again only bumps `count` and
//! `last_seen` in `meta.json` (temp file + rename). Clients of one campaign (and campaigns
//! sharing an `OUT`) serialise on `OUT/findings/.lock`. A finding whose `meta.json` does not
//! parse never stops a campaign: it is moved to `OUT/quarantine/findings.<dir>` with one line on
//! stderr, and the signature counts as new the next time it is seen.

pub mod programs;

use crate::diff::Execution;
use crate::disk;
use crate::oracle::Verdict;
use reference_impl::program::Program;
use serde::{Deserialize, Serialize};
use serde_json::json;
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

    /// Records `verdict` of `prog`'s execution `e` (`console`: the kernel console, for the
    /// excerpt when the verdict has none).
    pub fn record(
        &self,
        prog: &Program,
        e: &Execution,
        verdict: &Verdict,
        console: &str,
    ) -> Result<Recorded, FindingError> {
        let _lock = lock(&self.dir.join(".lock"))?;
        let final_dir = self.dir.join(dir_name(&verdict.signature));
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

    fn exec() -> Execution {
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

    fn verdict(sig: &str) -> Verdict {
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
}
