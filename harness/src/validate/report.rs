//! The result of `cmafuzz validate`: JSON (serde) and a Markdown summary short enough to quote
//! in a cover letter.

use super::common::human;
use super::judge::{Confirmed, Introduced, Neither, Removed, Unconfirmed};
use super::series::Series;
use crate::targets::Target;
use serde::Serialize;
use std::fmt::Write;

/// Reproducers quoted in the Markdown (the shortest ones).
const MAX_REPRODUCERS: usize = 2;

/// One patch as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PatchSummary {
    pub index: usize,
    pub subject: String,
    pub files: Vec<String>,
    pub functions: Vec<String>,
}

/// What ran on one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub base_kernel: String,
    pub patched_kernel: String,
    /// Programs run on both kernels.
    pub programs: usize,
    pub harness_errors: usize,
    /// Build (or cache hit) and boot, per side.
    pub base_ready_seconds: f64,
    pub patched_ready_seconds: f64,
    pub run_seconds: f64,
    pub campaign: Vec<String>,
    pub campaign_seconds: f64,
}

impl TargetReport {
    pub fn new(t: &Target) -> Self {
        TargetReport {
            target: t.name.clone(),
            base_kernel: String::new(),
            patched_kernel: String::new(),
            programs: 0,
            harness_errors: 0,
            base_ready_seconds: 0.0,
            patched_ready_seconds: 0.0,
            run_seconds: 0.0,
            campaign: vec![],
            campaign_seconds: 0.0,
        }
    }
}

/// Everything `validate` found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub series: String,
    pub form: super::series::SeriesForm,
    pub cover: Option<String>,
    pub patches: Vec<PatchSummary>,
    pub base: String,
    pub base_commit: Option<String>,
    /// What the series touches (steering: reported; see `steering`).
    pub changed_files: Vec<String>,
    pub changed_functions: Vec<String>,
    pub steering: String,
    pub inputs: Vec<String>,
    pub duration_seconds: u64,
    /// `patch N/M "..." does not apply to ...: FILE hunk #K (...)`.
    pub does_not_apply: Option<String>,
    pub targets: Vec<TargetReport>,
    pub introduced: Vec<Introduced>,
    pub removed: Vec<Removed>,
    pub neither: Vec<Neither>,
    pub unconfirmed: Vec<Unconfirmed>,
    pub seconds: f64,
    /// One line: "no CMA/DMA behaviour change", or what changed.
    pub summary: String,
    pub exit_code: u8,
}

impl Report {
    pub fn new(s: &Series, duration: std::time::Duration) -> Self {
        Report {
            series: s.source.clone(),
            form: s.form.clone(),
            cover: s.cover.clone(),
            patches: s
                .patches
                .iter()
                .map(|p| PatchSummary {
                    index: p.index,
                    subject: p.subject.clone(),
                    files: p.files.clone(),
                    functions: p.functions(),
                })
                .collect(),
            base: String::new(),
            base_commit: s.base_commit.clone(),
            changed_files: s.files(),
            changed_functions: s.functions(),
            steering: "the campaigns on both sides are steered towards the changed functions: their KCOV \
                       sites count extra in the feedback (`fuzz --focus`), where the target has KCOV; \
                       each target's campaign line says how many of those sites it reached"
                .into(),
            inputs: vec![],
            duration_seconds: duration.as_secs(),
            does_not_apply: None,
            targets: vec![],
            introduced: vec![],
            removed: vec![],
            neither: vec![],
            unconfirmed: vec![],
            seconds: 0.0,
            summary: String::new(),
            exit_code: 2,
        }
    }

    pub fn add_target(&mut self, t: TargetReport, c: Confirmed) {
        self.targets.push(t);
        self.introduced.extend(c.introduced);
        self.removed.extend(c.removed);
        self.neither.extend(c.neither);
        self.unconfirmed.extend(c.unconfirmed);
    }

    /// The summary line and the exit code: 2 when the series does not apply or a program could
    /// not be run on a side and nothing was introduced, 1 when something was introduced, else 0.
    pub fn finish(&mut self) {
        let errors: usize = self.targets.iter().map(|t| t.harness_errors).sum();
        let fixes: Vec<String> = self.removed.iter().filter_map(|r| r.known_issue.clone()).collect();
        let mut fixes_dedup = fixes.clone();
        fixes_dedup.dedup();
        if let Some(e) = &self.does_not_apply {
            self.summary = format!("does not apply: {e}");
            self.exit_code = 2;
            return;
        }
        let mut parts = Vec::new();
        if self.introduced.is_empty() {
            parts.push("no CMA/DMA behaviour change introduced".to_string());
        } else {
            parts.push(format!("{} behaviour change(s) introduced", self.introduced.len()));
        }
        if !fixes_dedup.is_empty() {
            parts.push(format!("fixes {}", fixes_dedup.join(", ")));
        }
        let other_removed = self.removed.iter().filter(|r| r.known_issue.is_none()).count();
        if other_removed > 0 {
            parts.push(format!("{other_removed} base verdict(s) removed"));
        }
        if !self.neither.is_empty() {
            parts.push(format!(
                "{} program(s) where the kernels differ and the model agrees with neither",
                self.neither.len()
            ));
        }
        if errors > 0 {
            parts.push(format!("{errors} run(s) the harness could not complete"));
        }
        self.summary = parts.join("; ");
        self.exit_code = if !self.introduced.is_empty() {
            1
        } else if errors > 0 {
            2
        } else {
            0
        };
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let n = self.patches.len();
        let _ = writeln!(m, "### cmafuzz validate: {}", self.cover.as_deref().unwrap_or(&self.series));
        let _ = writeln!(m);
        let _ = writeln!(m, "**Result:** {}", self.summary);
        let _ = writeln!(m);
        let _ =
            writeln!(m, "- Series: {} ({n} patch{}), base: {}", self.series, if n == 1 { "" } else { "es" }, self.base);
        if !self.changed_functions.is_empty() || !self.changed_files.is_empty() {
            let what = if self.changed_functions.is_empty() { &self.changed_files } else { &self.changed_functions };
            let _ = writeln!(m, "- Touches: {}", what.join(", "));
        }
        for t in &self.targets {
            let mut line = format!(
                "- {}: {} programs on base ({}) and patched ({}) kernels, {:.0} s",
                t.target,
                t.programs,
                if t.base_kernel.is_empty() { "?" } else { &t.base_kernel },
                if t.patched_kernel.is_empty() { "?" } else { &t.patched_kernel },
                t.base_ready_seconds + t.patched_ready_seconds + t.run_seconds + t.campaign_seconds
            );
            if !t.campaign.is_empty() {
                let _ = write!(line, "; campaigns {}", t.campaign.join(", "));
            }
            let _ = writeln!(m, "{line}");
        }
        if !self.inputs.is_empty() {
            let _ = writeln!(m, "- Inputs: {}", self.inputs.join(", "));
        }
        let _ = writeln!(m, "- Wall time: {}", human(std::time::Duration::from_secs_f64(self.seconds)));
        if let Some(e) = &self.does_not_apply {
            let _ = writeln!(m);
            let _ = writeln!(m, "The series does not apply: {e}");
            return m;
        }
        // Short enough for a cover letter: one line per change, the reproducers of the
        // shortest few (every reproducer is in the JSON).
        if !self.introduced.is_empty() {
            let _ = writeln!(m);
            let _ = writeln!(m, "Introduced:");
        }
        for f in &self.introduced {
            let first = f
                .first_patch
                .and_then(|i| self.patches.get(i.saturating_sub(1)))
                .map(|p| format!("patch {}/{n} \"{}\"", p.index, p.subject))
                .unwrap_or_else(|| "?".into());
            let _ = writeln!(m, "- `{}` on {}, first in {first} ({})", f.verdict.signature, f.target, f.label);
        }
        let mut shown: Vec<&Introduced> = self.introduced.iter().filter(|f| !f.program.ops.is_empty()).collect();
        shown.sort_by_key(|f| f.program.ops.len());
        for f in shown.iter().take(MAX_REPRODUCERS) {
            let _ = writeln!(m);
            let _ = writeln!(
                m,
                "`{}` ({}{}): {}",
                f.verdict.signature,
                f.label,
                match (f.minimized, f.original_ops) {
                    (true, Some(n)) => format!(", minimized from {n} ops"),
                    (true, None) => ", minimized".to_string(),
                    _ => String::new(),
                },
                f.verdict.detail.lines().next().unwrap_or_default()
            );
            let _ = writeln!(m, "```");
            let _ = write!(m, "{}", f.program.to_text());
            let _ = writeln!(m, "```");
        }
        if shown.len() > MAX_REPRODUCERS {
            let _ = writeln!(m);
            let _ = writeln!(m, "({} more reproducers in the JSON report.)", shown.len() - MAX_REPRODUCERS);
        }
        for r in &self.removed {
            let _ = writeln!(m);
            match &r.known_issue {
                Some(ki) => {
                    let _ = writeln!(
                        m,
                        "**Fixes {ki}** on {}: `{}` no longer happens ({}).",
                        r.target, r.verdict.signature, r.label
                    );
                    if !r.model_still_predicts.is_empty() {
                        let sigs: Vec<String> =
                            r.model_still_predicts.iter().map(|v| format!("`{}`", v.signature)).collect();
                        let _ = writeln!(
                            m,
                            "The model still predicts the old behaviour: {} (the fix, not a regression).",
                            sigs.join(", ")
                        );
                    }
                }
                None => {
                    let _ = writeln!(m, "**Removed** on {}: `{}` ({}).", r.target, r.verdict.signature, r.label);
                }
            }
        }
        for x in &self.neither {
            let _ = writeln!(m);
            let sigs: Vec<String> = x.kernels.iter().map(|v| format!("`{}`", v.signature)).collect();
            let _ = writeln!(
                m,
                "**Kernels differ, model agrees with neither** on {} ({}): {}",
                x.target,
                x.label,
                sigs.join(", ")
            );
        }
        if !self.unconfirmed.is_empty() {
            let _ = writeln!(m);
            let _ = writeln!(
                m,
                "Not confirmed on rerun (not counted): {}",
                self.unconfirmed
                    .iter()
                    .map(|u| format!("`{}` ({})", u.signature, u.side))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        m
    }
}
