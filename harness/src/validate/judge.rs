//! The judgement: syz-diff's rule extended to every verdict kind. A finding is introduced by
//! the series when it appears on the patched kernel, never on the base, and its reproducer
//! gives it again on patched and not on base. A verdict the series removes is reported too;
//! one a known issue's suppression names is "fixes KI-n", and the differences the model then
//! sees on the patched kernel for the mappings that known issue is about (the model still
//! predicts the old behaviour) are the fix's, not regressions. Base/patched differences where
//! the model agrees with neither kernel are reported as they are.

use super::common::{counts, gives, ProgramRecord, ValidateError};
use crate::diff::Executor;
use crate::oracle::{Verdict, VerdictKind};
use reference_impl::program::Program;
use std::collections::{BTreeMap, BTreeSet};

/// A verdict first seen on one program, not yet confirmed by rerunning it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub verdict: Verdict,
    pub record: usize,
}

/// What the runs suggest, before confirmation.
#[derive(Debug, Default)]
pub struct Judgement {
    pub introduced: Vec<Candidate>,
    pub removed: Vec<Candidate>,
    pub neither: Vec<Neither>,
}

/// A finding the series introduces (confirmed).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Introduced {
    pub target: String,
    pub verdict: Verdict,
    /// The program that first gave it.
    pub label: String,
    #[serde(serialize_with = "program_text")]
    pub program: Program,
    /// 1-based index of the first patch of the series that gives it.
    pub first_patch: Option<usize>,
    /// `program` is the reproducer minimized on the patched kernel (`MinimizeHook`).
    pub minimized: bool,
    /// The ops of the reproducer as found, when `program` is its minimized form.
    pub original_ops: Option<usize>,
}

/// A verdict the series removes (confirmed).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Removed {
    pub target: String,
    pub verdict: Verdict,
    pub label: String,
    #[serde(serialize_with = "program_text")]
    pub program: Program,
    /// `KI-1`, when a known issue's suppression accepted the verdict on the base.
    pub known_issue: Option<String>,
    /// Patched-only verdicts that are this fix seen through the model, which still predicts the
    /// old behaviour.
    pub model_still_predicts: Vec<Verdict>,
}

/// Base and patched differ on a program and the model agrees with neither.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Neither {
    pub target: String,
    pub label: String,
    /// Patched vs base.
    pub kernels: Vec<Verdict>,
    pub base: Vec<String>,
    pub patched: Vec<String>,
}

/// A candidate its reproducer did not give again (reported, never counted).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unconfirmed {
    pub target: String,
    pub side: &'static str,
    pub signature: String,
    pub label: String,
}

/// The confirmed judgement of one target.
#[derive(Debug, Default, serde::Serialize)]
pub struct Confirmed {
    pub introduced: Vec<Introduced>,
    pub removed: Vec<Removed>,
    pub neither: Vec<Neither>,
    pub unconfirmed: Vec<Unconfirmed>,
}

fn program_text<S: serde::Serializer>(p: &Program, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_text())
}

fn unsuppressed(vs: &[Verdict]) -> impl Iterator<Item = &Verdict> {
    vs.iter().filter(|v| counts(v) && v.suppressed.is_none())
}

/// The candidates from the runs of one target.
pub fn judge(records: &[ProgramRecord], target: &str) -> Judgement {
    let sigs = |side: fn(&ProgramRecord) -> &Vec<Verdict>| -> BTreeSet<String> {
        records.iter().flat_map(|r| side(r).iter()).filter(|v| counts(v)).map(|v| v.signature.clone()).collect()
    };
    let base_all = sigs(|r| &r.base);
    let patched_all = sigs(|r| &r.patched);
    let mut j = Judgement::default();
    let mut seen_in = BTreeSet::new();
    let mut seen_out = BTreeSet::new();
    for (i, r) in records.iter().enumerate() {
        for v in unsuppressed(&r.patched) {
            if !base_all.contains(&v.signature) && seen_in.insert(v.signature.clone()) {
                j.introduced.push(Candidate { verdict: v.clone(), record: i });
            }
        }
        for v in r.base.iter().filter(|v| counts(v)) {
            if !patched_all.contains(&v.signature) && seen_out.insert(v.signature.clone()) {
                j.removed.push(Candidate { verdict: v.clone(), record: i });
            }
        }
        let differ = unsuppressed(&r.kernels).next().is_some();
        if differ && unsuppressed(&r.base).next().is_some() && unsuppressed(&r.patched).next().is_some() {
            j.neither.push(Neither {
                target: target.to_string(),
                label: r.label.clone(),
                kernels: unsuppressed(&r.kernels).cloned().collect(),
                base: unsuppressed(&r.base).map(|v| v.signature.clone()).collect(),
                patched: unsuppressed(&r.patched).map(|v| v.signature.clone()).collect(),
            });
        }
    }
    j
}

/// Reruns each candidate's program on both kernels (`base`, `patched`: the executors the runs
/// used) and keeps what holds; then gives a fixed known issue the patched-only verdicts it
/// explains.
pub fn confirm(
    target: &str,
    base: &mut Executor,
    patched: &mut Executor,
    j: Judgement,
    records: &[ProgramRecord],
) -> Result<Confirmed, ValidateError> {
    let mut c = Confirmed { neither: j.neither, ..Confirmed::default() };
    let mut intro = Vec::new();
    for cand in j.introduced {
        let r = &records[cand.record];
        let sig = &cand.verdict.signature;
        if gives(patched, &r.program, sig)? && !gives(base, &r.program, sig)? {
            intro.push(Introduced {
                target: target.into(),
                verdict: cand.verdict,
                label: r.label.clone(),
                program: r.program.clone(),
                first_patch: None,
                minimized: false,
                original_ops: None,
            });
        } else {
            c.unconfirmed.push(Unconfirmed {
                target: target.into(),
                side: "introduced",
                signature: sig.clone(),
                label: r.label.clone(),
            });
        }
    }
    for cand in j.removed {
        let r = &records[cand.record];
        let sig = &cand.verdict.signature;
        if gives(base, &r.program, sig)? && !gives(patched, &r.program, sig)? {
            let known_issue = cand.verdict.suppressed.as_ref().and_then(|s| s.known_issue.as_deref()).and_then(ki_name);
            c.removed.push(Removed {
                target: target.into(),
                verdict: cand.verdict,
                label: r.label.clone(),
                program: r.program.clone(),
                known_issue,
                model_still_predicts: vec![],
            });
        } else {
            c.unconfirmed.push(Unconfirmed {
                target: target.into(),
                side: "removed",
                signature: sig.clone(),
                label: r.label.clone(),
            });
        }
    }
    for f in intro {
        let fix = c.removed.iter_mut().find(|r| r.known_issue.is_some() && explained_by(&f.verdict, &r.verdict));
        match fix {
            Some(r) => r.model_still_predicts.push(f.verdict),
            None => c.introduced.push(f),
        }
    }
    Ok(c)
}

/// `KNOWN-ISSUES.md#ki-1-stale-pkmap-...` → `KI-1`.
pub fn ki_name(link: &str) -> Option<String> {
    let lower = link.to_ascii_lowercase();
    let at = lower.find("ki-")?;
    let digits: String = lower[at + 3..].chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("KI-{digits}"))
}

/// The `kind:mem` mappings a signature names on each side: `mapping:A-vs-B` → (A, B);
/// `alias-violation:A` → (A, A).
fn mapping_sets(sig: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let set = |s: &str| -> BTreeSet<String> {
        s.split('+').map(str::trim).filter(|m| !m.is_empty() && *m != "none").map(String::from).collect()
    };
    let rest = sig.split_once(':').map_or("", |(_, r)| r);
    match rest.split_once("-vs-") {
        Some((a, b)) => (set(a), set(b)),
        None => (set(rest), set(rest)),
    }
}

/// Whether a patched-only mapping verdict is a fixed known issue seen through the model: the
/// model still predicts a mapping the issue is about and the patched kernel no longer has it
/// (or, for the PKMAP cursor, the issue is about PKMAP slots).
pub fn explained_by(v: &Verdict, issue: &Verdict) -> bool {
    if v.kind != VerdictKind::Mapping {
        return false;
    }
    let (issue_maps, _) = mapping_sets(&issue.signature);
    if v.signature == "mapping:pkmap-slot" {
        return issue_maps.iter().any(|m| m.starts_with("pkmap:"));
    }
    let (model, kernel) = mapping_sets(&v.signature);
    model.difference(&kernel).any(|m| issue_maps.contains(m))
}

/// Candidates per signature, for tests and the report.
pub fn by_signature(c: &[Candidate]) -> BTreeMap<String, usize> {
    c.iter().map(|x| (x.verdict.signature.clone(), x.record)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: VerdictKind, sig: &str) -> Verdict {
        Verdict { kind, signature: sig.into(), op_index: None, detail: String::new(), excerpt: None, suppressed: None }
    }

    fn rec(label: &str, base: Vec<Verdict>, patched: Vec<Verdict>, kernels: Vec<Verdict>) -> ProgramRecord {
        ProgramRecord { label: label.into(), program: Program { ops: vec![] }, base, patched, kernels }
    }

    #[test]
    fn introduced_is_on_patched_and_never_on_base() {
        let records = vec![
            rec("a", vec![v(VerdictKind::Bitmap, "bitmap:reserved")], vec![], vec![]),
            rec(
                "b",
                vec![],
                vec![v(VerdictKind::Bitmap, "bitmap:reserved"), v(VerdictKind::Layout, "layout:x")],
                vec![],
            ),
        ];
        let j = judge(&records, "t");
        // bitmap:reserved is on the base too (another program): not introduced.
        assert_eq!(by_signature(&j.introduced).into_keys().collect::<Vec<_>>(), vec!["layout:x".to_string()]);
        assert!(j.removed.is_empty(), "bitmap:reserved is still on patched");
    }

    #[test]
    fn harness_errors_are_never_introduced() {
        let records = vec![rec("a", vec![], vec![v(VerdictKind::HarnessError, "harness-error:vm")], vec![])];
        assert!(judge(&records, "t").introduced.is_empty());
    }

    #[test]
    fn neither_needs_both_kernels_off_the_model_and_apart() {
        let l = |s: &str| v(VerdictKind::Layout, s);
        let records = vec![
            rec("both-off", vec![l("layout:a")], vec![l("layout:b")], vec![l("layout:k")]),
            rec("same", vec![l("layout:a")], vec![l("layout:a")], vec![]),
        ];
        let j = judge(&records, "t");
        assert_eq!(j.neither.len(), 1);
        assert_eq!(j.neither[0].label, "both-off");
    }

    #[test]
    fn the_model_still_predicting_a_fixed_pkmap_alias_is_the_fix() {
        let ki1 = v(VerdictKind::AliasViolation, "alias-violation:vmap:nc+pkmap:wb");
        assert!(explained_by(&v(VerdictKind::Mapping, "mapping:vmap:nc+pkmap:wb-vs-vmap:nc"), &ki1));
        assert!(explained_by(&v(VerdictKind::Mapping, "mapping:pkmap:wb-vs-none"), &ki1));
        assert!(explained_by(&v(VerdictKind::Mapping, "mapping:pkmap-slot"), &ki1));
        // The patched kernel maps something the model does not predict: not the fix.
        assert!(!explained_by(&v(VerdictKind::Mapping, "mapping:vmap:nc-vs-vmap:nc+lin:wb"), &ki1));
        assert!(!explained_by(&v(VerdictKind::Bitmap, "bitmap:reserved"), &ki1));
    }

    #[test]
    fn known_issue_names() {
        assert_eq!(ki_name("KNOWN-ISSUES.md#ki-1-stale-pkmap-slot-aliases").as_deref(), Some("KI-1"));
        assert_eq!(ki_name("KNOWN-ISSUES.md#KI-12"), Some("KI-12".into()));
        assert_eq!(ki_name("KNOWN-ISSUES.md"), None);
    }
}
