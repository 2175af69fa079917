//! `cmafuzz bisect`: the first commit between `--good` and `--bad` on which the reproducer
//! gives the bad signature. `git bisect` chooses the commits, in a private worktree of the
//! user's repository ([`git::Worktree`]); a [`Tester`] says good, bad or skip for the commit
//! checked out there (the real one builds it in place, boots it and replays the reproducer:
//! [`kernel::KernelTester`]).
//!
//! Order of work (as syzkaller's `pkg/bisect`): the checks first (both ends resolve, `--good`
//! is an ancestor of `--bad`, the reproducer is bad on `--bad` and good on `--good`), then
//! the steps, then the confirmation (the culprit reverted on top of `--bad` must be good).
//!
//! Decision rule per commit: the reproducer runs `runs` times in one boot; if all runs agree,
//! that is the verdict; if they disagree, `runs` more are made and the commit is bad when the
//! bad signature showed in any run (a deterministic program that shows a bug at all has it).
//! A commit that does not build, does not boot, cannot be modelled, or crashes/hangs before
//! the signature can show, is skipped, never bad.
//!
//! The two commits that decide the answer, the culprit and its parent, are tested again in a
//! fresh boot once git has found the culprit (role `recheck`). A recheck that contradicts the
//! first test is broken by a third test (two of three); when the majority turns the culprit good
//! or the parent bad, the step contradicted its neighbour and the bisection is inconclusive
//! (exit 1), naming the commit and its marks, never a culprit git picked from a flake.

pub mod git;
pub mod kernel;

use git::{BisectState, CommitInfo, GitError, Repo, Worktree};
use serde::Serialize;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BisectError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("the reproducer does not fail on --bad {rev} ({detail}): give a --bad where it fails, or pass --any-finding if the finding's signature changed")]
    BadIsNotBad { rev: String, detail: String },
    #[error("the reproducer fails on --good {rev} too ({detail}): give an older --good where it passes")]
    GoodIsNotGood { rev: String, detail: String },
    #[error("--{end} {rev} cannot be tested ({detail}): give an end that builds and boots")]
    EndSkipped { end: &'static str, rev: String, detail: String },
    #[error("{0}")]
    Harness(String),
}

/// What one commit's test says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "verdict", content = "reason")]
pub enum Mark {
    Good,
    Bad,
    Skip(String),
}

impl Mark {
    /// The `git bisect` term (and `git bisect run`'s exit code: 0, 1, 125).
    pub fn term(&self) -> &'static str {
        match self {
            Mark::Good => "good",
            Mark::Bad => "bad",
            Mark::Skip(_) => "skip",
        }
    }
}

/// One commit's test, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub mark: Mark,
    /// Reproducer runs made (0 when it did not get that far).
    pub runs: usize,
    /// Runs that gave the bad signature.
    pub bad_runs: usize,
    /// The signatures seen (unsuppressed), for the report.
    pub signatures: Vec<String>,
    /// Whether a kernel was built (not a cache hit).
    pub built: bool,
    pub build_seconds: f64,
    pub seconds: f64,
    /// The built kernel's signature ([`crate::build::signature`]), when a kernel was built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_signature: Option<String>,
}

/// Tests the commit checked out in the worktree.
pub trait Tester {
    /// `identity` names the tree's content (its git tree id) for the build cache; `label` is
    /// for progress lines.
    fn test(&mut self, label: &str, identity: &str) -> Result<StepResult, BisectError>;
}

/// A tested commit.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub commit: CommitInfo,
    /// `good-end`, `bad-end`, `step`, `revert`.
    pub role: &'static str,
    #[serde(flatten)]
    pub result: StepResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    /// Whether the culprit reverted cleanly on top of `--bad`.
    pub reverts: bool,
    /// The reproducer's verdict there (None when it did not revert or was not tested).
    pub result: Option<StepResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Parent {
    pub commit: CommitInfo,
    pub mark: Option<Mark>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub good: CommitInfo,
    pub bad: CommitInfo,
    /// Commits in good..bad.
    pub range: usize,
    /// The first bad commit, when the bisection found one.
    pub culprit: Option<CommitInfo>,
    /// When skips leave several candidates: the first bad commit is one of these.
    pub candidates: Vec<CommitInfo>,
    /// The culprit's parent and its verdict (from its step or the good end; none when git
    /// did not need it tested).
    pub parent: Option<Parent>,
    pub steps: Vec<Step>,
    pub confirmation: Option<Confirmation>,
    /// The recheck of the culprit or its parent disagreed with its step by a majority: what it
    /// said (the bisection then names no culprit).
    pub contradiction: Option<String>,
    /// The first bad commit git found builds the same kernel as its parent (equal
    /// [`StepResult::kernel_signature`]s): a reproducer cannot tell them apart, so some step
    /// went wrong; what was found (the bisection then names no culprit).
    pub noop: Option<String>,
    /// `git bisect log` of the run.
    pub bisect_log: String,
    pub seconds: f64,
}

impl Report {
    /// Steps chosen by git (not the ends or the revert).
    pub fn bisection_steps(&self) -> usize {
        self.steps.iter().filter(|s| s.role == "step").count()
    }
    pub fn builds(&self) -> usize {
        self.steps.iter().filter(|s| s.result.built).count()
    }
    pub fn skips(&self) -> usize {
        self.steps.iter().filter(|s| matches!(s.result.mark, Mark::Skip(_))).count()
    }
    /// 0 found (and not contradicted by the revert), 1 inconclusive.
    pub fn exit_code(&self) -> u8 {
        let contradicted =
            self.confirmation.as_ref().and_then(|c| c.result.as_ref()).is_some_and(|r| r.mark == Mark::Bad);
        if self.culprit.is_some() && !contradicted && self.contradiction.is_none() && self.noop.is_none() {
            0
        } else {
            1
        }
    }

    /// The text a developer pastes into a mail.
    pub fn text(&self, repro: &str) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let short = |c: &CommitInfo| c.sha.chars().take(12).collect::<String>();
        let verdict = |r: &StepResult| match &r.mark {
            Mark::Skip(why) => format!("skip ({why})"),
            m => format!("{} ({}/{} runs bad{})", m.term(), r.bad_runs, r.runs, sig_list(&r.signatures)),
        };
        match &self.culprit {
            Some(_) if self.contradiction.is_some() => {
                let why = self.contradiction.as_deref().unwrap_or_default();
                let _ = writeln!(s, "inconclusive: the reproducer is not stable where it matters: {why}");
            }
            Some(_) if self.noop.is_some() => {
                let why = self.noop.as_deref().unwrap_or_default();
                let _ = writeln!(s, "inconclusive: {why}");
            }
            Some(c) => {
                let _ = writeln!(s, "first bad commit: {} {}", c.sha, c.subject);
                let _ = writeln!(s, "Author: {}", c.author);
                let _ = writeln!(s, "Date:   {}", c.date);
                if let Some(step) = self.steps.iter().rev().find(|st| st.commit.sha == c.sha) {
                    let _ = writeln!(s, "verdict on {}: {}", short(c), verdict(&step.result));
                }
                if let Some(Parent { commit: p, mark: m }) = &self.parent {
                    let on = self.steps.iter().rev().find(|st| st.commit.sha == p.sha);
                    let text = match (on, m) {
                        (Some(st), _) => verdict(&st.result),
                        (None, Some(m)) => m.term().to_string(),
                        (None, None) => "not tested".into(),
                    };
                    let _ = writeln!(s, "verdict on parent {}: {}", short(p), text);
                }
            }
            None if !self.candidates.is_empty() => {
                let _ = writeln!(
                    s,
                    "inconclusive: skipped commits leave several candidates; the first bad commit could be any of:"
                );
                for c in &self.candidates {
                    let _ = writeln!(s, "  {} {}", c.sha, c.subject);
                }
            }
            None => {
                let _ = writeln!(s, "inconclusive: no first bad commit found");
            }
        }
        if let Some(conf) = &self.confirmation {
            match (&self.culprit, conf.reverts, &conf.result) {
                (_, false, _) => {
                    let _ =
                        writeln!(s, "revert check: the culprit does not revert cleanly on top of --bad; not confirmed");
                }
                (Some(_), true, Some(r)) => {
                    let agrees = if r.mark == Mark::Good { "agrees" } else { "DOES NOT agree" };
                    let _ = writeln!(s, "revert check: --bad with the culprit reverted is {}: {agrees}", verdict(r));
                }
                _ => {}
            }
        }
        let _ = writeln!(
            s,
            "steps: {} over {} commits ({}..{}), builds: {}, skips: {}, time: {:.0} s",
            self.bisection_steps(),
            self.range,
            short(&self.good),
            short(&self.bad),
            self.builds(),
            self.skips(),
            self.seconds
        );
        let runs: Vec<String> =
            self.steps.iter().map(|st| format!("{}:{}", short(&st.commit), st.result.runs)).collect();
        let _ = writeln!(s, "runs per commit: {}", runs.join(" "));
        let _ = writeln!(s, "reproducer: {repro}");
        if let (Some(c), None, None) = (&self.culprit, &self.contradiction, &self.noop) {
            let _ = writeln!(s, "Fixes: {} (\"{}\")", short(c), c.subject);
        }
        s
    }
}

fn sig_list(sigs: &[String]) -> String {
    if sigs.is_empty() {
        String::new()
    } else {
        format!("; {}", sigs.join(", "))
    }
}

/// What to bisect.
#[derive(Debug, Clone)]
pub struct Range {
    pub good: String,
    pub bad: String,
    /// Revert the culprit on top of `--bad` and test that.
    pub confirm: bool,
}

/// Runs the checks and the bisection. `progress` gets a line per step.
pub fn bisect(
    repo: &Repo,
    wt: &Worktree,
    range: &Range,
    tester: &mut dyn Tester,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, BisectError> {
    let start = Instant::now();
    let good = repo.resolve("--good", &range.good)?;
    let bad = repo.resolve("--bad", &range.bad)?;
    if good == bad {
        return Err(GitError::Same(bad).into());
    }
    if !repo.is_ancestor(&good, &bad)? {
        return Err(GitError::NotAncestor { good: range.good.clone(), bad: range.bad.clone() }.into());
    }
    let good_info = repo.info(&good)?;
    let bad_info = repo.info(&bad)?;
    let count = repo.count_between(&good, &bad)?;
    let mut steps: Vec<Step> = Vec::new();
    let mut test = |sha: &str, role: &'static str, steps: &mut Vec<Step>, progress: &mut dyn FnMut(&str)| {
        wt.checkout(sha)?;
        let info = repo.info(sha)?;
        let r = tester.test(&format!("{} {}", &sha[..12.min(sha.len())], info.subject), &wt.tree_of(sha)?)?;
        progress(&format!(
            "bisect: {role} {} {}: {} in {:.0} s",
            &sha[..12.min(sha.len())],
            info.subject,
            r.mark.term(),
            r.seconds
        ));
        steps.push(Step { commit: info, role, result: r.clone() });
        Ok::<StepResult, BisectError>(r)
    };

    // The checks: both ends must say what the user claims before any bisection.
    let r = test(&bad, "bad-end", &mut steps, progress)?;
    match r.mark {
        Mark::Bad => {}
        Mark::Good => {
            return Err(BisectError::BadIsNotBad {
                rev: range.bad.clone(),
                detail: if r.signatures.is_empty() {
                    "no unsuppressed verdict".into()
                } else {
                    format!("it gives {}", r.signatures.join(", "))
                },
            })
        }
        Mark::Skip(why) => return Err(BisectError::EndSkipped { end: "bad", rev: range.bad.clone(), detail: why }),
    }
    let r = test(&good, "good-end", &mut steps, progress)?;
    match r.mark {
        Mark::Good => {}
        Mark::Bad => {
            return Err(BisectError::GoodIsNotGood {
                rev: range.good.clone(),
                detail: format!("{}/{} runs bad{}", r.bad_runs, r.runs, sig_list(&r.signatures)),
            })
        }
        Mark::Skip(why) => return Err(BisectError::EndSkipped { end: "good", rev: range.good.clone(), detail: why }),
    }

    let mut state = wt.bisect_start(&bad, &good)?;
    let (culprit, candidates) = loop {
        match state {
            BisectState::Next(sha) => {
                let r = test(&sha, "step", &mut steps, progress)?;
                state = wt.bisect_mark(r.mark.term(), &sha)?;
            }
            BisectState::Found(sha) => break (Some(sha), vec![]),
            BisectState::OnlySkipped(shas) => break (None, shas),
        }
    };
    let bisect_log = wt.bisect_log()?;
    wt.bisect_reset()?;

    // The culprit and its parent decide the answer: each is tested again in a fresh boot.
    let mut contradiction = None;
    if let Some(c) = &culprit {
        let p = repo.parent(c)?;
        for (sha, want) in [(c.clone(), Mark::Bad), (p, Mark::Good)] {
            let first = steps.iter().rev().find(|s| s.commit.sha == sha).map(|s| s.result.mark.clone());
            if first.as_ref().is_some_and(|m| *m != want) {
                // Git marks only what was tested; a parent it never tested has no mark to confirm.
                continue;
            }
            let mut marks: Vec<Mark> = first.into_iter().collect();
            let again = test(&sha, "recheck", &mut steps, progress)?;
            marks.push(again.mark.clone());
            if again.mark != want && !matches!(again.mark, Mark::Skip(_)) {
                let third = test(&sha, "recheck", &mut steps, progress)?;
                marks.push(third.mark);
            }
            let agree = marks.iter().filter(|m| **m == want).count();
            let against = marks.iter().filter(|m| !matches!(m, Mark::Skip(_)) && **m != want).count();
            if against > agree {
                let terms: Vec<&str> = marks.iter().map(Mark::term).collect();
                contradiction = Some(format!(
                    "{} (the {}) was {} in {} tests",
                    &sha[..12.min(sha.len())],
                    if want == Mark::Bad { "first bad commit git found" } else { "parent of the first bad commit" },
                    terms.join(", then "),
                    marks.len()
                ));
                break;
            }
        }
    }

    // A culprit that builds its parent's kernel changed nothing a reproducer can see.
    let mut noop = None;
    if let (Some(c), None) = (&culprit, &contradiction) {
        let p = repo.parent(c)?;
        let sig = |sha: &str| {
            steps.iter().rev().find(|s| s.commit.sha == sha).and_then(|s| s.result.kernel_signature.clone())
        };
        if let (Some(a), Some(b)) = (sig(c), sig(&p)) {
            if a == b {
                noop = Some(format!(
                    "the first bad commit git found, {}, builds the same kernel as its parent {} (signature {}): \
                     a reproducer cannot tell them apart, so a step was wrong (a flaky reproducer?)",
                    &c[..12.min(c.len())],
                    &p[..12.min(p.len())],
                    &a[..16.min(a.len())]
                ));
            }
        }
    }

    let culprit_info = culprit.as_deref().map(|c| repo.info(c)).transpose()?;
    let candidates = candidates.iter().map(|c| repo.info(c)).collect::<Result<Vec<_>, _>>()?;
    let parent = match &culprit {
        Some(c) => {
            let p = repo.parent(c)?;
            let mark = steps.iter().rev().find(|s| s.commit.sha == p).map(|s| s.result.mark.clone());
            Some(Parent { commit: repo.info(&p)?, mark })
        }
        None => None,
    };
    let confirmation = match (&culprit, range.confirm && contradiction.is_none() && noop.is_none()) {
        (Some(c), true) => {
            let conf = match wt.revert_onto(&bad, c)? {
                None => Confirmation { reverts: false, result: None },
                Some(tree) => {
                    let r = tester.test(&format!("{} with {} reverted", &bad[..12], &c[..12]), &tree);
                    wt.clean()?;
                    let r = r?;
                    progress(&format!("bisect: revert check: {} in {:.0} s", r.mark.term(), r.seconds));
                    let mut info = bad_info.clone();
                    info.subject = format!("{} + revert of {}", info.subject, &c[..12]);
                    steps.push(Step { commit: info, role: "revert", result: r.clone() });
                    Confirmation { reverts: true, result: Some(r) }
                }
            };
            Some(conf)
        }
        _ => None,
    };
    Ok(Report {
        good: good_info,
        bad: bad_info,
        range: count,
        culprit: culprit_info,
        candidates,
        parent,
        steps,
        confirmation,
        contradiction,
        noop,
        bisect_log,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests;
