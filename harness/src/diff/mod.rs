//! One program on two backends: reset both, run the program on each, read what the subject
//! printed, compare, scan the subject's page tables for aliases and judge everything with the
//! oracle. `replay`, `difftest`, `bench` and the fuzzer's executor all go through
//! [`Executor::execute`].
//!
//! The spine is generic over [`Backend`]: the *reference* says what should happen and the
//! *subject* is judged against it. Today's path is the model (reference) against a kernel
//! (subject); two kernels (a base build against a patched one, one version against another)
//! and two model profiles run through the same code. [`Executor::against`] runs the same
//! program on a third backend and judges it against this executor's subject: the model checks
//! the first kernel, the first kernel checks the second.

use crate::backend::kernel::boot::{self as session, SessionError};
use crate::backend::{Backend, BackendError, KernelBackend, ModelBackend, ProgramRun};
use crate::oracle::compare::{self, Divergence, Point};
use crate::oracle::console::{self, Report};
use crate::oracle::{self, AliasSeen, Suppressions, Verdict, VerdictKind};
use crate::targets::Target;
use reference_impl::alias::{AliasClass, AliasRules};
use reference_impl::observation::{Observation, PageAddr};
use reference_impl::program::{Program, ResolvedProgram};
use std::time::{Duration, Instant};

/// Which sides of the spine run and are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// The reference alone (the model).
    Model,
    /// The subject alone (the kernel; the model still runs unseen, so resets know where the
    /// kernel must be).
    Kernel,
    /// Both, compared.
    Both,
}

/// Everything one program produced.
#[derive(Debug)]
pub struct Execution {
    pub resolved: ResolvedProgram,
    /// The reference's run (absent with `--backend kernel`, where the model runs unseen).
    pub reference: Option<ProgramRun>,
    /// The subject's run.
    pub subject: Option<ProgramRun>,
    pub divergences: Vec<Divergence>,
    pub verdicts: Vec<Verdict>,
    /// The subject failed (dead or hung guest, garbled frame): already judged in `verdicts`.
    pub subject_error: Option<BackendError>,
    /// Time spent in the subject's run (round trips included).
    pub subject_time: Duration,
    /// The subject's code coverage of the run (KCOV PCs, deduplicated), when it collects it.
    pub coverage: Vec<u64>,
    /// The subject's state after its reset, before the program (what a backend run beside it
    /// must start from).
    pub subject_reset: Option<Observation>,
}

impl Execution {
    /// A verdict no suppression accepts, other than a harness error.
    pub fn finding(&self) -> bool {
        self.verdicts.iter().any(|v| v.suppressed.is_none() && v.kind != VerdictKind::HarnessError)
    }

    pub fn harness_error(&self) -> bool {
        self.verdicts.iter().any(|v| v.kind == VerdictKind::HarnessError)
    }
}

/// A third backend's run of a program, judged against an execution's subject.
#[derive(Debug)]
pub struct Against {
    pub run: Option<ProgramRun>,
    pub divergences: Vec<Divergence>,
    pub verdicts: Vec<Verdict>,
    pub error: Option<BackendError>,
}

/// The two backends of one target, kept across programs.
pub struct Executor<R: Backend = ModelBackend, S: Backend = KernelBackend> {
    pub target: Target,
    pub choice: BackendChoice,
    /// Says what should happen; runs in lockstep even with `--backend kernel`, so resets know
    /// where the subject must be.
    pub reference: Option<R>,
    /// Judged against the reference.
    pub subject: Option<S>,
    /// The layout programs are resolved against (the kernel's at boot, or the target's record).
    pub boot: Observation,
    pub sup: Suppressions,
    /// The alias rules of the target's profile, applied to the subject's page tables (none when
    /// the model cannot be made for this kernel: no alias scan then).
    pub rules: Option<AliasRules>,
    coverage: bool,
}

impl Executor<ModelBackend, KernelBackend> {
    /// Builds (or finds) and boots what `choice` needs: the model against the target's kernel.
    pub fn start(
        target: &Target,
        choice: BackendChoice,
        kc: &session::KernelChoice,
        sup: Suppressions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Self, SessionError> {
        let (kernel, boot, profile) = if choice == BackendChoice::Model {
            (None, target.boot_observation(), target.profile()?)
        } else {
            let k = session::boot_kernel(target, kc, progress)?;
            let boot = k.boot_observation().clone();
            let profile = session::profile_from_kernel(target, &k, kc.src.as_deref())?;
            (Some(k), boot, profile)
        };
        let model = match ModelBackend::new(profile, boot.clone()) {
            Ok(m) => Some(m),
            Err(_) if choice == BackendChoice::Kernel => None,
            Err(e) => return Err(SessionError::Backend(e)),
        };
        let rules = model.as_ref().map(ModelBackend::alias_rules);
        Ok(Executor::new(target, choice, model, kernel, boot, sup, rules))
    }

    /// The kernel placed its areas differently from the target's record, or its default area
    /// elsewhere than the model predicts (`reference_impl::placement`, spec §1.6): a finding about
    /// the kernel, not about one program.
    pub fn placement_verdict(&self) -> Option<Verdict> {
        self.subject.as_ref()?;
        oracle::placement::verdict(
            &self.target,
            &self.boot,
            self.reference.as_ref().map(ModelBackend::profile),
            &self.sup,
        )
    }
}

impl<R: Backend, S: Backend> Executor<R, S> {
    /// An executor over two backends that are already up.
    pub fn new(
        target: &Target,
        choice: BackendChoice,
        reference: Option<R>,
        subject: Option<S>,
        boot: Observation,
        sup: Suppressions,
        rules: Option<AliasRules>,
    ) -> Self {
        Executor { target: target.clone(), choice, reference, subject, boot, sup, rules, coverage: false }
    }

    /// The op kinds either backend refuses (see [`Backend::refused_kinds`]).
    pub fn refused_kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<_> = self.reference.iter().flat_map(Backend::refused_kinds).collect();
        k.extend(self.subject.iter().flat_map(Backend::refused_kinds));
        k.sort_unstable();
        k.dedup();
        k
    }

    /// Observe after every op on both sides (`--observe-each`).
    pub fn set_observe_each(&mut self, on: bool) {
        if let Some(s) = self.subject.as_mut() {
            s.set_observe_each(on);
        }
        if let Some(r) = self.reference.as_mut() {
            r.set_observe_each(on);
        }
    }

    /// Collect the subject's coverage of every run into [`Execution::coverage`] (fuzz
    /// campaigns). A subject that cannot (no KCOV in the guest, the hello says so) leaves it off.
    pub fn set_kcov(&mut self, on: bool) {
        self.coverage = self.subject.as_mut().is_some_and(|s| s.set_coverage(on));
    }

    /// Whether subject runs collect coverage.
    pub fn kcov(&self) -> bool {
        self.coverage
    }

    /// Resets both sides to the boot state (the subject to where the reference is: boot plus
    /// arm64 pool growth), runs `prog` on both and judges it. `Err` only when the program does
    /// not resolve (an unknown area) or the reference cannot run it.
    pub fn execute(&mut self, prog: &Program) -> Result<Execution, ExecError> {
        let resolved = prog.resolve(&self.boot.areas).map_err(|e| ExecError::Resolve(e.to_string()))?;
        // The reference first: its reset says what the subject's must leave.
        let want = match self.reference.as_mut() {
            Some(r) => r.reset().map_err(|e| ExecError::Model(e.to_string()))?.state,
            None => None,
        };
        let expected = want.as_ref().unwrap_or(&self.boot);
        // The subject's reset is checked against the reference's, then the subject runs the
        // program; the reference runs after it, from what the subject's reset revealed (its
        // PKMAP cursor). In series: on two cores qemu's
        // vCPU and I/O threads leave no core for the model to overlap the guest with (measured:
        // a thread per program made the full path slower).
        let (subject_reset, srun, subject_error, subject_time) = match self.subject.as_mut() {
            Some(s) => {
                let t = Instant::now();
                let r = reset_run_checked(s, expected, &resolved);
                let took = t.elapsed();
                match r {
                    Ok(Checked { state, restarted, run }) => {
                        if let Some(r) = self.reference.as_mut() {
                            if restarted {
                                r.restart().map_err(|e| ExecError::Model(e.to_string()))?;
                            }
                            r.adopt(state.as_ref());
                        }
                        let (run, err) = match run {
                            Ok(run) => (Some(run), None),
                            Err(e) => (None, Some(e)),
                        };
                        (state, run, err, took)
                    }
                    Err(e) => (None, None, Some(e), Duration::ZERO),
                }
            }
            None => (None, None, None, Duration::ZERO),
        };
        let rrun = self
            .reference
            .as_mut()
            .map(|r| r.run(&resolved))
            .transpose()
            .map_err(|e| ExecError::Model(e.to_string()))?;
        let rrun = if self.choice == BackendChoice::Kernel { None } else { rrun };
        let reports = self.subject.as_mut().map(|s| console::scan(&s.new_console())).unwrap_or_default();
        let (divergences, verdicts) = judge_pair(
            &resolved,
            rrun.as_ref(),
            srun.as_ref(),
            &reports,
            subject_error.as_ref(),
            &self.boot,
            self.rules.as_ref(),
            &self.sup,
            &self.target.name,
            oracle::MODEL_KERNEL,
        );
        let coverage = srun.as_ref().map(|k| k.coverage.clone()).unwrap_or_default();
        Ok(Execution {
            resolved,
            reference: rrun,
            subject: srun,
            divergences,
            verdicts,
            subject_error,
            subject_time,
            coverage,
            subject_reset,
        })
    }

    /// Runs the program `e` ran on `other`, from the state `e`'s subject started from, and
    /// judges `other` against `e`'s subject: the differences between two kernels on one
    /// program, typed like divergences. `other`'s reset is checked against the subject's; what
    /// a buggy `other` left behind makes it restart, never blamed on the program.
    pub fn against<B: Backend>(&self, e: &Execution, other: &mut B) -> Against {
        let expected = e.subject_reset.as_ref().unwrap_or(&self.boot);
        let (run, error, start) = match reset_run_checked(other, expected, &e.resolved) {
            Err(err) => (None, Some(err), None),
            Ok(Checked { state, run: Ok(run), .. }) => (Some(run), None, state),
            Ok(Checked { state, run: Err(err), .. }) => (None, Some(err), state),
        };
        // Two kernels reach the same PKMAP slots only from the same cursor: one that restarted
        // (a buggy build's leftovers) starts over, and "last slot" differences say nothing then.
        let cursor = |o: Option<&Observation>| o.and_then(|o| o.pkmap_last);
        let same_cursor = cursor(start.as_ref()) == cursor(e.subject_reset.as_ref());
        let reports = console::scan(&other.new_console());
        let first = self.subject.as_ref().map_or("kernel", |s| s.name());
        let mut divergences = match (e.subject.as_ref(), run.as_ref()) {
            (Some(a), Some(b)) => compare::compare(&e.resolved, a, b, &self.boot.areas),
            _ => vec![],
        };
        if !same_cursor {
            divergences.retain(|d| !matches!(d, Divergence::Pkmap { .. }));
        }
        let (divergences, verdicts) = judge(
            &e.resolved,
            divergences,
            run.as_ref(),
            &reports,
            error.as_ref(),
            self.rules.as_ref(),
            &self.sup,
            &self.target.name,
            (first, other.name()),
        );
        Against { run, divergences, verdicts, error }
    }
}

/// Which side a reset failed on.
#[derive(Debug)]
pub enum PairError {
    Reference(BackendError),
    Subject(BackendError),
}

/// Resets both sides for the next program. The subject's state after its reset must equal the
/// reference's (for the model: boot plus arm64 pool growth, spec §6.3): the bitmaps and the
/// mapping of every page the tables cover, so what a buggy kernel leaves behind (a page a free
/// left uncached) is never pinned on the next program. Otherwise the subject restarts, and so
/// does the reference (the subject's pool growth is gone). The reference then adopts what the
/// subject's reset revealed (its PKMAP cursor). Returns the subject's state after all that.
pub fn reset_pair<R: Backend, S: Backend>(
    reference: Option<&mut R>,
    subject: Option<&mut S>,
    boot: &Observation,
) -> Result<Option<Observation>, PairError> {
    let mut reference = reference;
    let want = match reference.as_deref_mut() {
        Some(r) => r.reset().map_err(PairError::Reference)?.state,
        None => None,
    };
    let Some(s) = subject else { return Ok(None) };
    let (state, restarted) = reset_checked(s, want.as_ref().unwrap_or(boot)).map_err(PairError::Subject)?;
    if let Some(r) = reference {
        if restarted {
            r.restart().map_err(PairError::Reference)?;
        }
        r.adopt(state.as_ref());
    }
    Ok(state)
}

/// Resets `s` and checks its state against `expected`; a difference, or a reset that could not
/// be observed, restarts `s`. Returns `s`'s state then and whether it restarted.
fn reset_checked<B: Backend>(s: &mut B, expected: &Observation) -> Result<(Option<Observation>, bool), BackendError> {
    let r = s.reset()?;
    let why = match (r.restarted, &r.state) {
        (true, _) => return Ok((r.state, true)),
        (false, Some(now)) => match compare::state_difference(expected, now) {
            None => return Ok((r.state, false)),
            Some(why) => why,
        },
        (false, None) => "no observation".into(),
    };
    eprintln!("note: reset left the {}'s CMA state different from the expected one ({why}); restarting it", s.name());
    Ok((s.restart()?, true))
}

/// A program run by a backend after a checked reset.
struct Checked {
    /// The backend's state after its reset, when it could be observed.
    state: Option<Observation>,
    /// The backend went back to boot on the way.
    restarted: bool,
    run: Result<ProgramRun, BackendError>,
}

/// [`reset_checked`], then `prog` on `s`. `Err`: `s` could not be reset, even by restarting.
fn reset_run_checked<B: Backend>(
    s: &mut B,
    expected: &Observation,
    prog: &ResolvedProgram,
) -> Result<Checked, BackendError> {
    let (state, restarted) = reset_checked(s, expected)?;
    let run = s.run(prog);
    Ok(Checked { state, restarted, run })
}

/// Compares a reference run with a subject run of one program and judges it ([`judge`]).
#[allow(clippy::too_many_arguments)]
fn judge_pair(
    prog: &ResolvedProgram,
    reference: Option<&ProgramRun>,
    subject: Option<&ProgramRun>,
    reports: &[Report],
    error: Option<&BackendError>,
    boot: &Observation,
    rules: Option<&AliasRules>,
    sup: &Suppressions,
    target: &str,
    sides: (&str, &str),
) -> (Vec<Divergence>, Vec<Verdict>) {
    let divergences = match (reference, subject) {
        (Some(m), Some(k)) => compare::compare(prog, m, k, &boot.areas),
        _ => vec![],
    };
    judge(prog, divergences, subject, reports, error, rules, sup, target, sides)
}

/// Scans the subject's page tables for aliases and judges it all with the divergences found.
#[allow(clippy::too_many_arguments)]
fn judge(
    prog: &ResolvedProgram,
    divergences: Vec<Divergence>,
    subject: Option<&ProgramRun>,
    reports: &[Report],
    error: Option<&BackendError>,
    rules: Option<&AliasRules>,
    sup: &Suppressions,
    target: &str,
    sides: (&str, &str),
) -> (Vec<Divergence>, Vec<Verdict>) {
    let aliases = match (subject, rules) {
        (Some(k), Some(rules)) => scan_aliases(rules, k),
        _ => vec![],
    };
    let verdicts = oracle::judge_sides(
        &oracle::Evidence { prog, divergences: &divergences, aliases: &aliases, console: reports, error },
        sup,
        target,
        sides,
    );
    (divergences, verdicts)
}

/// Runs the alias invariant (the target's rules) over every observation of a run.
fn scan_aliases(rules: &AliasRules, k: &ProgramRun) -> Vec<AliasSeen> {
    let mut out = Vec::new();
    let points = k.observations.iter().map(|(i, o)| (Point::Observe(*i), o)).chain([(Point::End, &k.end)]);
    for (at, obs) in points {
        for a in reference_impl::alias::scan(&obs.maps, rules) {
            let PageAddr::Pfn(p) = a.first else { continue };
            out.push(AliasSeen {
                at,
                first_pfn: p.0,
                pages: a.pages,
                mappings: a.mappings.clone(),
                rule: match a.class {
                    AliasClass::Violation => None,
                    AliasClass::ByDesign(r) => Some(r.name().to_string()),
                },
            });
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Resolve(String),
    #[error("model: {0}")]
    Model(String),
}
