//! The oracle: one place that turns everything known about one program run — both sides'
//! outcomes and observations (already compared by `compare`), the alias scan of the kernel's own
//! page tables, the console and any failure of the guest — into typed verdicts, each with a
//! stable signature for de-duplication, and marks the ones a suppression accepts. A suppressed
//! verdict is still reported (as suppressed), never dropped.
//!
//! Signatures are `kind:detail…`, built only from things that do not change between runs of
//! the same bug: the verdict kind, the op kind of a diverging op, the kernel function of a
//! console report, the area of a bitmap difference, the mapping kinds and memory types involved
//! — never pfns, addresses, seeds, timestamps, or the op an observation happened to follow.

pub mod compare;
pub mod console;
pub mod placement;

use crate::backend::BackendError;
use crate::guest::GuestError;
use compare::{Divergence, Point};
use console::Report;
use reference_impl::program::{ResolvedOp, ResolvedProgram};
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// What went wrong, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// An op returned something else than the model predicts (pfn, success, status).
    Layout,
    /// A CMA bitmap differs from the model's.
    Bitmap,
    /// A page's kernel mappings (kind, memory type) differ from the model's.
    Mapping,
    /// One pfn mapped cacheable and non-cacheable at once, not accepted by any rule.
    AliasViolation,
    /// A cacheable/non-cacheable alias a rule of the model accepts by design.
    AliasByDesign,
    /// The kernel placed its CMA areas differently from the target's record.
    Placement,
    /// A release left pages still referenced (the model predicts every released page free).
    Refcount,
    /// A `CONFIG_DMA_API_DEBUG` report (`DMA-API: …`, kernel/dma/debug.c), by error class.
    DmaApi,
    /// Kernel console reports.
    Oops,
    Bug,
    Warning,
    Panic,
    /// The guest stopped answering within the watchdog time.
    Hang,
    /// The harness could not run or read the program (garbled frame, dead channel, …).
    HarnessError,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Layout => "layout",
            VerdictKind::Bitmap => "bitmap",
            VerdictKind::Mapping => "mapping",
            VerdictKind::AliasViolation => "alias-violation",
            VerdictKind::AliasByDesign => "alias-by-design",
            VerdictKind::Placement => "placement",
            VerdictKind::Refcount => "refcount",
            VerdictKind::DmaApi => "dma-api",
            VerdictKind::Oops => "oops",
            VerdictKind::Bug => "bug",
            VerdictKind::Warning => "warning",
            VerdictKind::Panic => "panic",
            VerdictKind::Hang => "hang",
            VerdictKind::HarnessError => "harness-error",
        }
    }
}

/// Why a verdict is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// The suppression's id.
    pub id: String,
    /// `by-design`, `expected-warning` or `kernel-bug` (a real kernel issue, known and listed).
    pub class: String,
    pub reason: String,
    /// Where the known issue is written up, for `kernel-bug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
}

/// One typed finding about one program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// Stable de-duplication key.
    pub signature: String,
    /// The op it is pinned to, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_index: Option<usize>,
    /// Human-readable detail (pfns, bits, memory types).
    pub detail: String,
    /// Console excerpt for kernel reports and failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppressed>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]: {}", self.kind.as_str(), self.signature, self.detail)?;
        if let Some(s) = &self.suppressed {
            write!(f, " (suppressed: {}, {}", s.id, s.class)?;
            if let Some(k) = &s.known_issue {
                write!(f, ", see {k}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// An alias the scan of one kernel observation found (the alias function's answer, flattened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasSeen {
    pub at: Point,
    pub first_pfn: u64,
    pub pages: u64,
    /// Every distinct (kind, memory type) mapping these pages (`vmap:nc+pkmap:wb`).
    pub mappings: compare::PageMaps,
    /// The rule that accepts it, `None` for a violation.
    pub rule: Option<String>,
}

/// Everything known about one program run.
pub struct Evidence<'a> {
    pub prog: &'a ResolvedProgram,
    pub divergences: &'a [Divergence],
    pub aliases: &'a [AliasSeen],
    /// Console reports printed while the program ran.
    pub console: &'a [Report],
    /// The kernel backend's failure, if the program did not complete.
    pub error: Option<&'a BackendError>,
}

fn op_index_of(at: Point) -> Option<usize> {
    match at {
        Point::Observe(i) => Some(i),
        Point::End => None,
    }
}

/// Judges one program run. Verdicts with the same signature within one program are merged
/// (the first detail is kept).
pub fn judge(e: &Evidence<'_>, sup: &Suppressions, target: &str) -> Vec<Verdict> {
    judge_sides(e, sup, target, MODEL_KERNEL)
}

/// The names of the two sides of today's spine, as details show them.
pub const MODEL_KERNEL: (&str, &str) = ("model", "kernel");

/// [`judge`] of a run whose two sides are called `sides` in the details (two kernels: `kernel`
/// and `kernel (patched)`). Signatures do not name the sides.
pub fn judge_sides(e: &Evidence<'_>, sup: &Suppressions, target: &str, sides: (&str, &str)) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = Vec::new();
    let mut push = |v: Verdict| {
        if !out.iter().any(|o| o.signature == v.signature) {
            out.push(v);
        }
    };
    for d in e.divergences {
        let (kind, signature, op_index) = match d {
            Divergence::Outcome { op_index, reference, subject } => {
                let op = e.prog.ops.get(*op_index).map_or("?", ResolvedOp::kind);
                (
                    VerdictKind::Layout,
                    format!("layout:{op}:{}-vs-{}", reference.class(), subject.class()),
                    Some(*op_index),
                )
            }
            Divergence::Areas { at, .. } => (VerdictKind::Placement, "placement:areas".to_string(), op_index_of(*at)),
            Divergence::Bitmap { at, area, .. } => {
                // The observation point is not where the bitmaps started to differ, so the op
                // before it would split one bug into as many signatures as op kinds: the area
                // names the bug; the detail says where it was seen.
                (VerdictKind::Bitmap, format!("bitmap:{area}"), op_index_of(*at))
            }
            Divergence::Available { at, area, .. } => {
                (VerdictKind::Bitmap, format!("available:{area}"), op_index_of(*at))
            }
            Divergence::MissingObservation { at } => {
                (VerdictKind::HarnessError, "harness-error:missing-observation".to_string(), op_index_of(*at))
            }
            Divergence::Mapping { at, groups, .. } => {
                // The first group's memory types on each side name the bug class; as for
                // bitmaps, not the op the observation followed.
                let class = groups
                    .first()
                    .map(|g| {
                        format!("{}-vs-{}", compare::show_page_maps(&g.reference), compare::show_page_maps(&g.subject))
                    })
                    .unwrap_or_default();
                (VerdictKind::Mapping, format!("mapping:{class}"), op_index_of(*at))
            }
            Divergence::Refcount { op_index, .. } => {
                let op = e.prog.ops.get(*op_index).map_or("?", ResolvedOp::kind);
                (VerdictKind::Refcount, format!("refcount:{op}"), Some(*op_index))
            }
            Divergence::Pkmap { at, .. } => (VerdictKind::Mapping, "mapping:pkmap-slot".to_string(), op_index_of(*at)),
            Divergence::Level { at, kind, model, kernel, .. } => (
                VerdictKind::Mapping,
                format!("mapping-level:{}:{}-vs-{}", kind.name(), model.name(), kernel.name()),
                op_index_of(*at),
            ),
        };
        push(Verdict { kind, signature, op_index, detail: d.describe(sides), excerpt: None, suppressed: None });
    }
    for a in e.aliases {
        let (kind, signature) = match &a.rule {
            Some(rule) => (VerdictKind::AliasByDesign, format!("alias-by-design:{rule}")),
            None => (VerdictKind::AliasViolation, format!("alias-violation:{}", compare::show_page_maps(&a.mappings))),
        };
        let range = if a.pages == 1 {
            format!("pfn {:#x}", a.first_pfn)
        } else {
            format!("pfns {:#x}-{:#x}", a.first_pfn, a.first_pfn + a.pages - 1)
        };
        let why = a.rule.as_ref().map(|r| format!(" (accepted by rule {r})")).unwrap_or_default();
        push(Verdict {
            kind,
            signature,
            op_index: op_index_of(a.at),
            detail: format!("{}: {range} mapped {} at once{why}", a.at, compare::show_page_maps(&a.mappings)),
            excerpt: None,
            suppressed: None,
        });
    }
    for r in e.console {
        let kind = match r.kind {
            console::Kind::Panic => VerdictKind::Panic,
            console::Kind::Oops => VerdictKind::Oops,
            console::Kind::Bug => VerdictKind::Bug,
            console::Kind::Warning => VerdictKind::Warning,
            console::Kind::DmaApi => VerdictKind::DmaApi,
        };
        // A DMA-API report is named by its error class; the others by their function.
        let func = match r.dma_api {
            Some(class) => class.as_str().to_string(),
            None => r.function.clone().unwrap_or_else(|| r.title.clone()),
        };
        push(Verdict {
            kind,
            signature: format!("{}:{func}", kind.as_str()),
            op_index: None,
            detail: r.title.clone(),
            excerpt: Some(r.excerpt.clone()),
            suppressed: None,
        });
    }
    if let Some(err) = e.error {
        let last =
            e.prog.ops.iter().rev().find(|o| !matches!(o, ResolvedOp::Observe)).map_or("start", ResolvedOp::kind);
        // The op a hang stopped at, when the guest's progress reports tell; else the last one.
        let stuck = match err {
            BackendError::Guest { at: Some(i), .. } => e.prog.ops.get(*i).map(|o| (*i, o.kind())),
            _ => None,
        };
        let (kind, signature, excerpt) = match err {
            BackendError::Guest { source, console, .. } => {
                let tail: String = {
                    let lines: Vec<&str> = console.lines().collect();
                    lines[lines.len().saturating_sub(40)..].join("\n")
                };
                match source {
                    GuestError::Timeout { .. } => {
                        (VerdictKind::Hang, format!("hang:{}", stuck.map_or(last, |(_, k)| k)), Some(tail))
                    }
                    GuestError::Disconnected => {
                        (VerdictKind::HarnessError, format!("harness-error:guest-died:{last}"), Some(tail))
                    }
                    GuestError::Agent(_) => (VerdictKind::HarnessError, "harness-error:agent".into(), Some(tail)),
                    GuestError::Io(_) => (VerdictKind::HarnessError, "harness-error:channel-io".into(), Some(tail)),
                    GuestError::Wire(_) | GuestError::Protocol(_) => {
                        (VerdictKind::HarnessError, "harness-error:garbled-guest".into(), Some(tail))
                    }
                }
            }
            BackendError::Inconsistent { .. } => {
                (VerdictKind::HarnessError, "harness-error:garbled-guest".into(), None)
            }
            BackendError::Vm(_) => (VerdictKind::HarnessError, "harness-error:vm".into(), None),
            BackendError::Model(_) => (VerdictKind::HarnessError, "harness-error:model".into(), None),
            BackendError::OpUnsupported { op, .. } => {
                (VerdictKind::HarnessError, format!("harness-error:op-unsupported:{op}"), None)
            }
        };
        // A panic or Oops already explains a dead or silent guest.
        let explained = matches!(kind, VerdictKind::Hang | VerdictKind::HarnessError)
            && matches!(err, BackendError::Guest { source: GuestError::Timeout { .. } | GuestError::Disconnected, .. })
            && e.console
                .iter()
                .any(|r| matches!(r.kind, console::Kind::Panic | console::Kind::Oops | console::Kind::Bug));
        if !explained {
            let op_index = if kind == VerdictKind::Hang { stuck.map(|(i, _)| i) } else { None };
            let detail = match (kind, stuck) {
                (VerdictKind::Hang, Some((i, k))) => format!("{err} (stuck at op {i}, {k})"),
                _ => err.to_string(),
            };
            push(Verdict { kind, signature, op_index, detail, excerpt, suppressed: None });
        }
    }
    for v in &mut out {
        v.suppressed = sup.find(target, &v.signature);
    }
    out
}

/// The exit-code convention of every command that compares: 2 if anything
/// failed to run (bad input, build failure, dead guest), else 1 if a
/// divergence was found, else 0.
pub fn exit_code(errors: bool, divergences: bool) -> u8 {
    if errors {
        2
    } else if divergences {
        1
    } else {
        0
    }
}

/// Whether any verdict is not suppressed: what makes a program a finding.
pub fn any_unsuppressed(vs: &[Verdict]) -> bool {
    vs.iter().any(|v| v.suppressed.is_none())
}

// ------------------------------------------------------------------------------------------------
// Suppressions

/// The project's suppressions, embedded in the binary.
pub const SUPPRESSIONS_TOML: &str = include_str!("../../../kernel-configs/suppressions.toml");

#[derive(Debug, Error)]
pub enum SuppressionError {
    #[error("{path}: {msg} (fix the file, or run without --suppressions to use the built-in list)")]
    Parse { path: String, msg: String },
    #[error("{path}: cannot read: {msg}")]
    Read { path: String, msg: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    /// Glob over the signature (`*` matches any run of characters).
    signature: String,
    class: String,
    reason: String,
    #[serde(default)]
    known_issue: Option<String>,
    /// Globs over target names; empty = every target.
    #[serde(default)]
    targets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    suppression: Vec<Entry>,
}

/// A list of accepted behaviours, matched by signature (and optionally target).
#[derive(Debug, Clone)]
pub struct Suppressions {
    entries: Vec<Entry>,
}

impl Suppressions {
    /// The built-in list.
    pub fn builtin() -> Result<Self, SuppressionError> {
        Self::parse("kernel-configs/suppressions.toml (built in)", SUPPRESSIONS_TOML)
    }

    /// No suppressions at all.
    pub fn none() -> Self {
        Suppressions { entries: Vec::new() }
    }

    pub fn load(path: &Path) -> Result<Self, SuppressionError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SuppressionError::Read { path: path.display().to_string(), msg: e.to_string() })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, SuppressionError> {
        let f: File =
            toml::from_str(text).map_err(|e| SuppressionError::Parse { path: path.into(), msg: e.to_string() })?;
        for e in &f.suppression {
            if !matches!(e.class.as_str(), "by-design" | "expected-warning" | "kernel-bug") {
                return Err(SuppressionError::Parse {
                    path: path.into(),
                    msg: format!(
                        "suppression {}: class `{}` (expected by-design, expected-warning or kernel-bug)",
                        e.id, e.class
                    ),
                });
            }
            if e.class == "kernel-bug" && e.known_issue.is_none() {
                return Err(SuppressionError::Parse {
                    path: path.into(),
                    msg: format!("suppression {}: a kernel-bug suppression must name its known_issue", e.id),
                });
            }
        }
        Ok(Suppressions { entries: f.suppression })
    }

    /// The first entry that accepts `signature` on `target`.
    pub fn find(&self, target: &str, signature: &str) -> Option<Suppressed> {
        self.entries
            .iter()
            .find(|e| {
                glob(&e.signature, signature) && (e.targets.is_empty() || e.targets.iter().any(|t| glob(t, target)))
            })
            .map(|e| Suppressed {
                id: e.id.clone(),
                class: e.class.clone(),
                reason: e.reason.clone(),
                known_issue: e.known_issue.clone(),
            })
    }
}

/// `*` matches any run of characters (including none), `?` one character; everything else
/// literally (the `wildmatch` crate).
pub fn glob(pattern: &str, s: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::observation::{MapKind, MemType};
    use reference_impl::outcome::Outcome;
    use reference_impl::program::{AreaId, Handle};
    use reference_impl::units::{Order, Pages, Pfn};

    fn prog() -> ResolvedProgram {
        ResolvedProgram {
            ops: vec![
                ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(0), count: Pages(3), align: Order(0) },
                ResolvedOp::Observe,
                ResolvedOp::CmaRelease { h: Handle(0) },
            ],
        }
    }

    fn judge_divs(divs: &[Divergence]) -> Vec<Verdict> {
        let p = prog();
        judge(
            &Evidence { prog: &p, divergences: divs, aliases: &[], console: &[], error: None },
            &Suppressions::none(),
            "arm32-6.1",
        )
    }

    #[test]
    fn glob_matches_prefix_suffix_and_middle() {
        assert!(glob("warning:__alloc_pages*", "warning:__alloc_pages_noprof"));
        assert!(glob("*:arm64-linear-alias", "alias-by-design:arm64-linear-alias"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn signatures_carry_kind_and_op_kind_but_no_pfns() {
        let v = judge_divs(&[
            Divergence::Outcome {
                op_index: 0,
                reference: Outcome::Allocated { pfn: Pfn(0x7e040), pages: Pages(3) },
                subject: Outcome::AllocFailed,
            },
            Divergence::Bitmap {
                at: Point::Observe(1),
                area: "reserved".into(),
                model_used: 67,
                kernel_used: 66,
                only_model: "bits 66".into(),
                only_kernel: "none".into(),
            },
        ]);
        assert_eq!(v[0].kind, VerdictKind::Layout);
        assert_eq!(v[0].signature, "layout:cma_alloc:allocated-vs-failed");
        assert_eq!(v[0].op_index, Some(0));
        assert_eq!(v[1].signature, "bitmap:reserved");
        assert!(!v.iter().any(|x| x.signature.contains("0x")));
    }

    #[test]
    fn mapping_signature_names_the_memory_types_on_each_side() {
        let v = judge_divs(&[Divergence::Mapping {
            at: Point::End,
            pages: 3,
            groups: vec![compare::MapGroup {
                lo: 0x7e040,
                hi: 0x7e043,
                reference: vec![(MapKind::Lin, MemType::Nc)],
                subject: vec![(MapKind::Lin, MemType::Wb)],
            }],
            group_count: 1,
        }]);
        assert_eq!(v[0].signature, "mapping:lin:nc-vs-lin:wb");
    }

    #[test]
    fn the_same_signature_twice_in_one_program_is_one_verdict() {
        let d = Divergence::Bitmap {
            at: Point::End,
            area: "reserved".into(),
            model_used: 1,
            kernel_used: 2,
            only_model: String::new(),
            only_kernel: String::new(),
        };
        assert_eq!(judge_divs(&[d.clone(), d]).len(), 1);
    }

    #[test]
    fn suppressed_verdicts_stay_in_the_list_with_their_reason() {
        let sup = Suppressions::parse(
            "t.toml",
            r#"
[[suppression]]
id = "pkmap"
signature = "alias-violation:vmap:nc+pkmap:wb"
class = "kernel-bug"
reason = "stale PKMAP slot"
known_issue = "KNOWN-ISSUES.md#stale-pkmap-slot"
targets = ["arm32-*"]
"#,
        )
        .expect("parses");
        let p = prog();
        let aliases = [AliasSeen {
            at: Point::End,
            first_pfn: 0x7e040,
            pages: 1,
            mappings: vec![(MapKind::Vmap, MemType::Nc), (MapKind::Pkmap, MemType::Wb)],
            rule: None,
        }];
        let e = Evidence { prog: &p, divergences: &[], aliases: &aliases, console: &[], error: None };
        let v = judge(&e, &sup, "arm32-6.1");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, VerdictKind::AliasViolation);
        let s = v[0].suppressed.as_ref().expect("suppressed");
        assert_eq!(s.known_issue.as_deref(), Some("KNOWN-ISSUES.md#stale-pkmap-slot"));
        assert!(!any_unsuppressed(&v));
        // Not on another target.
        let v = judge(&e, &sup, "arm64-6.1");
        assert!(v[0].suppressed.is_none() && any_unsuppressed(&v));
    }

    #[test]
    fn a_kernel_bug_suppression_without_known_issue_is_rejected() {
        let e = Suppressions::parse(
            "t.toml",
            "[[suppression]]\nid = \"x\"\nsignature = \"*\"\nclass = \"kernel-bug\"\nreason = \"r\"\n",
        )
        .expect_err("must name the known issue");
        assert!(e.to_string().contains("known_issue"), "{e}");
        let e = Suppressions::parse("t.toml", "[[suppression]]\nid = 1\n").expect_err("bad type");
        assert!(e.to_string().starts_with("t.toml:"), "{e}");
    }

    #[test]
    fn builtin_suppressions_parse() {
        let s = Suppressions::builtin().expect("built-in list parses");
        assert!(!s.entries.is_empty());
    }

    #[test]
    fn a_timeout_is_a_hang_named_after_the_last_op() {
        let p = prog();
        let err = BackendError::Guest {
            source: GuestError::Timeout { what: "RESULT", secs: 10.0 },
            console: "line\n".into(),
            at: None,
        };
        let e = Evidence { prog: &p, divergences: &[], aliases: &[], console: &[], error: Some(&err) };
        let v = judge(&e, &Suppressions::none(), "arm32-6.1");
        assert_eq!(v[0].kind, VerdictKind::Hang);
        assert_eq!(v[0].signature, "hang:cma_release");
        assert!(v[0].excerpt.is_some());
    }

    #[test]
    fn a_hang_the_progress_reports_place_is_named_after_the_op_it_stopped_at() {
        let p = prog();
        let err = BackendError::Guest {
            source: GuestError::Timeout { what: "RESULT", secs: 30.0 },
            console: String::new(),
            at: Some(0),
        };
        let e = Evidence { prog: &p, divergences: &[], aliases: &[], console: &[], error: Some(&err) };
        let v = judge(&e, &Suppressions::none(), "arm32-6.1");
        assert_eq!(v[0].signature, format!("hang:{}", p.ops[0].kind()));
        assert_ne!(p.ops[0].kind(), "cma_release", "the stuck op is not the last one");
        assert_eq!(v[0].op_index, Some(0));
        assert!(v[0].detail.contains("stuck at op 0"), "{}", v[0].detail);
    }

    #[test]
    fn every_signature_kind_is_built_from_the_typed_data_that_produces_it() {
        let p = prog();
        let maps = |k, m| vec![(k, m)];
        let divs = [
            Divergence::Outcome { op_index: 2, reference: Outcome::Released, subject: Outcome::Noop },
            Divergence::Areas { at: Point::End, model: "a".into(), kernel: "b".into() },
            Divergence::Bitmap {
                at: Point::End,
                area: "pool-low@4c400000".into(),
                model_used: 1,
                kernel_used: 2,
                only_model: String::new(),
                only_kernel: String::new(),
            },
            Divergence::Available { at: Point::End, area: "reserved".into(), model: 1, kernel: 2 },
            Divergence::MissingObservation { at: Point::Observe(1) },
            Divergence::Mapping {
                at: Point::End,
                pages: 1,
                groups: vec![compare::MapGroup {
                    lo: 1,
                    hi: 2,
                    reference: vec![],
                    subject: vec![(MapKind::Vmap, MemType::Nc), (MapKind::Pkmap, MemType::Wb)],
                }],
                group_count: 1,
            },
            Divergence::Pkmap { at: Point::End, model: 3, kernel: 4 },
            Divergence::Refcount { op_index: 2, model: 0, kernel: 3 },
            Divergence::Level {
                at: Point::End,
                kind: MapKind::Lin,
                model: reference_impl::observation::MapLevel::Pte,
                kernel: reference_impl::observation::MapLevel::Pmd,
                pages: 1,
                first_pfn: 1,
            },
        ];
        let aliases = [
            AliasSeen { at: Point::End, first_pfn: 1, pages: 1, mappings: maps(MapKind::Lin, MemType::Wb), rule: None },
            AliasSeen {
                at: Point::End,
                first_pfn: 1,
                pages: 1,
                mappings: maps(MapKind::Lin, MemType::Nc),
                rule: Some("arm64-linear-alias".into()),
            },
        ];
        let report = |kind, function: Option<&str>| Report {
            kind,
            title: "TITLE".into(),
            function: function.map(str::to_string),
            excerpt: String::new(),
            dma_api: None,
        };
        let console = [
            report(console::Kind::Panic, None),
            report(console::Kind::Oops, Some("cma_alloc")),
            report(console::Kind::Bug, Some("free_pages")),
            report(console::Kind::Warning, Some("__alloc_pages")),
            Report {
                dma_api: Some(console::DmaApiError::FreeDifferentSize),
                ..report(console::Kind::DmaApi, Some("check_unmap"))
            },
        ];
        let e = Evidence { prog: &p, divergences: &divs, aliases: &aliases, console: &console, error: None };
        let got: Vec<(VerdictKind, String)> =
            judge(&e, &Suppressions::none(), "t").into_iter().map(|v| (v.kind, v.signature)).collect();
        let want = [
            (VerdictKind::Layout, "layout:cma_release:released-vs-noop"),
            (VerdictKind::Placement, "placement:areas"),
            (VerdictKind::Bitmap, "bitmap:pool-low@4c400000"),
            (VerdictKind::Bitmap, "available:reserved"),
            (VerdictKind::HarnessError, "harness-error:missing-observation"),
            (VerdictKind::Mapping, "mapping:none-vs-vmap:nc+pkmap:wb"),
            (VerdictKind::Mapping, "mapping:pkmap-slot"),
            (VerdictKind::Refcount, "refcount:cma_release"),
            (VerdictKind::Mapping, "mapping-level:lin:pte-vs-pmd"),
            (VerdictKind::AliasViolation, "alias-violation:lin:wb"),
            (VerdictKind::AliasByDesign, "alias-by-design:arm64-linear-alias"),
            (VerdictKind::Panic, "panic:TITLE"),
            (VerdictKind::Oops, "oops:cma_alloc"),
            (VerdictKind::Bug, "bug:free_pages"),
            (VerdictKind::Warning, "warning:__alloc_pages"),
            (VerdictKind::DmaApi, "dma-api:free-different-size"),
        ];
        let want: Vec<(VerdictKind, String)> = want.iter().map(|(k, s)| (*k, s.to_string())).collect();
        assert_eq!(got, want);
        // Errors of the subject: each kind of guest failure has its own signature.
        let errs = [
            (BackendError::Vm(crate::vm::VmError::MissingQemu("q".into())), "harness-error:vm"),
            (BackendError::Inconsistent { index: 0, kind: 1, status: 9 }, "harness-error:garbled-guest"),
            (BackendError::Model("x".into()), "harness-error:model"),
            (
                BackendError::Guest { source: GuestError::Agent("x".into()), console: String::new(), at: None },
                "harness-error:agent",
            ),
            (
                BackendError::Guest { source: GuestError::Protocol("x".into()), console: String::new(), at: None },
                "harness-error:garbled-guest",
            ),
        ];
        for (err, sig) in errs {
            let e = Evidence { prog: &p, divergences: &[], aliases: &[], console: &[], error: Some(&err) };
            let v = judge(&e, &Suppressions::none(), "t");
            assert_eq!(v.iter().map(|v| v.signature.as_str()).collect::<Vec<_>>(), vec![sig], "{err}");
        }
    }

    #[test]
    fn a_garbled_or_dead_guest_is_a_harness_error_unless_a_kernel_report_explains_it() {
        let p = prog();
        let garbled = BackendError::Guest {
            source: GuestError::Wire(crate::guest::wire::WireError::BadValue { what: "map.kind", got: 9 }),
            console: "tail\n".into(),
            at: None,
        };
        let e = Evidence { prog: &p, divergences: &[], aliases: &[], console: &[], error: Some(&garbled) };
        let v = judge(&e, &Suppressions::none(), "arm32-6.1");
        assert_eq!((v[0].kind, v[0].signature.as_str()), (VerdictKind::HarnessError, "harness-error:garbled-guest"));
        let dead = BackendError::Guest { source: GuestError::Disconnected, console: String::new(), at: None };
        let e = Evidence { prog: &p, divergences: &[], aliases: &[], console: &[], error: Some(&dead) };
        let v = judge(&e, &Suppressions::none(), "arm32-6.1");
        assert_eq!(v[0].signature, "harness-error:guest-died:cma_release");
        // The same death after an Oops is the Oops, once.
        let oops = Report {
            kind: console::Kind::Oops,
            title: "OOPS: null-ptr-deref in cma_alloc".into(),
            function: Some("cma_alloc".into()),
            excerpt: "Unable to handle kernel NULL pointer dereference".into(),
            dma_api: None,
        };
        let reports = [oops];
        let e = Evidence { prog: &p, divergences: &[], aliases: &[], console: &reports, error: Some(&dead) };
        let v = judge(&e, &Suppressions::none(), "arm32-6.1");
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].kind, v[0].signature.as_str()), (VerdictKind::Oops, "oops:cma_alloc"));
        assert!(v[0].excerpt.as_deref().is_some_and(|x| x.contains("NULL pointer")));
    }
}
