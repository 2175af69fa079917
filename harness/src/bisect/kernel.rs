//! The real [`Tester`]: builds the commit checked out in the bisect worktree in place
//! ([`crate::build::tree`]), boots it, and replays the reproducer against the model.

use super::{BisectError, Mark, StepResult, Tester};
use crate::backend::kernel::boot as session;
use crate::backend::{Backend, KernelBackend, ModelBackend};
use crate::build::agent as guest_build;
use crate::build::kernel::{BuildError, BuildRequest};
use crate::build::tree::{self, InPlaceTree};
use crate::diff::{BackendChoice, Executor};
use crate::findings::programs::LoadedProgram;
use crate::oracle::{Suppressions, VerdictKind};
use crate::targets::Target;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What "bad" means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// These signatures (a finding's, or what the reproducer gave on `--bad`).
    Signatures(Vec<String>),
    /// Whatever unsuppressed signatures the reproducer gives on the first commit tested
    /// (`--bad`); they become `Signatures` from then on.
    FromFirst,
    /// Any unsuppressed verdict other than a harness error (`--any-finding`).
    AnyFinding,
}

pub struct KernelTester {
    pub target: Target,
    pub patches: Vec<PathBuf>,
    pub tree: InPlaceTree,
    pub programs: Vec<LoadedProgram>,
    pub expect: Expect,
    /// Runs per commit before the disagreement rule ([`super`]).
    pub runs: usize,
    pub suppressions: Suppressions,
    pub watchdog: Option<Duration>,
    pub progress: Box<dyn FnMut(&str)>,
}

/// The outcome of one run of all programs.
enum RunSays {
    Bad(Vec<String>),
    Good(Vec<String>),
    /// The kernel crashed, hung or the harness failed without the bad signature: the run
    /// cannot say whether the bug is there.
    Unclear(String),
}

impl KernelTester {
    fn run_once(&mut self, ex: &mut Executor) -> Result<RunSays, BisectError> {
        let mut seen = Vec::new();
        let mut unclear = None;
        let mut bad = false;
        for p in &self.programs {
            let e = ex.execute(&p.program).map_err(|e| BisectError::Harness(format!("{}: {e}", p.path.display())))?;
            for v in e.verdicts.iter().filter(|v| v.suppressed.is_none()) {
                if !seen.contains(&v.signature) {
                    seen.push(v.signature.clone());
                }
                let matches = match &self.expect {
                    Expect::Signatures(s) => s.contains(&v.signature),
                    Expect::FromFirst | Expect::AnyFinding => v.kind != VerdictKind::HarnessError,
                };
                if matches {
                    bad = true;
                } else if matches!(
                    v.kind,
                    VerdictKind::HarnessError
                        | VerdictKind::Hang
                        | VerdictKind::Oops
                        | VerdictKind::Bug
                        | VerdictKind::Panic
                ) {
                    unclear.get_or_insert_with(|| format!("{:?}: {}", v.kind, v.signature));
                }
            }
        }
        Ok(if bad {
            RunSays::Bad(seen)
        } else if let Some(u) = unclear {
            RunSays::Unclear(u)
        } else {
            RunSays::Good(seen)
        })
    }
}

fn skip(why: String, build_seconds: f64, built: bool, start: Instant) -> StepResult {
    StepResult {
        mark: Mark::Skip(why),
        runs: 0,
        bad_runs: 0,
        signatures: vec![],
        built,
        build_seconds,
        seconds: start.elapsed().as_secs_f64(),
        kernel_signature: None,
    }
}

impl Tester for KernelTester {
    fn test(&mut self, label: &str, identity: &str) -> Result<StepResult, BisectError> {
        let start = Instant::now();
        let req = BuildRequest { target: self.target.clone(), src: None, patches: self.patches.clone() };
        let progress = &mut self.progress;
        // A commit the model has no profile for is skipped before its build, never bad.
        if let Err(e) = crate::build::tree_profile::read(&self.tree.src) {
            return Ok(skip(format!("cannot be modelled: {e}"), 0.0, false, start));
        }
        progress(&format!("bisect: building {label}"));
        let k = match tree::build_in_place(&req, &self.tree, &format!("gittree:{identity}"), &mut |l| progress(l)) {
            Ok(k) => k,
            // The tree's own fault: skip, never bad. A missing tool or a full disk is ours.
            Err(
                e @ (BuildError::StepFailed { .. }
                | BuildError::ConfigDropped { .. }
                | BuildError::PatchDoesNotApply { .. }),
            ) => {
                let first = e.to_string().lines().next().unwrap_or("").to_string();
                return Ok(skip(format!("does not build: {first}"), start.elapsed().as_secs_f64(), true, start));
            }
            Err(e) => return Err(BisectError::Harness(format!("kernel build: {e}"))),
        };
        let build_seconds = start.elapsed().as_secs_f64();
        let built = !k.cache_hit;
        let kernel_signature = match crate::build::signature::of_vmlinux(&k.vmlinux) {
            Ok(s) => Some(s),
            Err(e) => {
                progress(&format!("bisect: no kernel signature for {label}: {e}"));
                None
            }
        };
        let g = guest_build::build(&self.target, &[]).map_err(|e| BisectError::Harness(format!("guest build: {e}")))?;
        let spec = session::vm_spec(&self.target, &k, g.initramfs, self.watchdog)
            .map_err(|e| BisectError::Harness(e.to_string()))?;
        let kb = match KernelBackend::boot(spec) {
            Ok(kb) => kb,
            Err(e) => {
                let mut r = skip(format!("does not boot: {e}"), build_seconds, built, start);
                r.kernel_signature = kernel_signature;
                return Ok(r);
            }
        };
        let boot = kb.boot_observation().clone();
        let model = match session::profile_from_kernel(&self.target, &kb, Some(self.tree.src.as_path()))
            .map_err(|e| e.to_string())
            .and_then(|p| ModelBackend::new(p, boot.clone()).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => {
                let mut r = skip(format!("cannot be modelled: {e}"), build_seconds, built, start);
                r.kernel_signature = kernel_signature;
                return Ok(r);
            }
        };
        let rules = Some(model.alias_rules());
        let mut ex = Executor::new(
            &self.target,
            BackendChoice::Both,
            Some(model),
            Some(kb),
            boot,
            self.suppressions.clone(),
            rules,
        );
        let runs = self.runs.max(1);
        let mut says = Vec::new();
        for round in 0..2 {
            for _ in 0..runs {
                says.push(self.run_once(&mut ex)?);
            }
            let bad = says.iter().filter(|s| matches!(s, RunSays::Bad(_))).count();
            if round == 0 && bad != 0 && bad != says.len() {
                continue; // they disagree: `runs` more, then any bad run decides
            }
            break;
        }
        let bad_runs = says.iter().filter(|s| matches!(s, RunSays::Bad(_))).count();
        let mut signatures = Vec::new();
        for s in &says {
            if let RunSays::Bad(v) | RunSays::Good(v) = s {
                for x in v {
                    if !signatures.contains(x) {
                        signatures.push(x.clone());
                    }
                }
            }
        }
        let mark = if bad_runs > 0 {
            if self.expect == Expect::FromFirst {
                self.expect = Expect::Signatures(signatures.clone());
            }
            Mark::Bad
        } else if let Some(RunSays::Unclear(why)) = says.iter().find(|s| matches!(s, RunSays::Unclear(_))) {
            Mark::Skip(format!("the kernel failed before the signature could show: {why}"))
        } else {
            Mark::Good
        };
        Ok(StepResult {
            mark,
            runs: says.len(),
            bad_runs,
            signatures,
            built,
            build_seconds,
            seconds: start.elapsed().as_secs_f64(),
            kernel_signature,
        })
    }
}
