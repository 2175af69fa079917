//! Minimizing a reproducer: delta debugging over its ops (ddmin, removing from the back first,
//! as proptest-state-machine shrinks), then argument simplification (smaller counts and sizes,
//! lower alignment, no attrs, offsets towards 0), keeping the signature of the program's first
//! verdict; handles are renumbered as ops go ([`without`]). Every candidate is judged by a
//! [`Runner`]: [`ExecRunner`] runs it through the spine (`diff::Executor`, one booted VM, the
//! executor's checked reset between candidates, a reboot only when a reset leaves state
//! behind) with observations after every op, so a bitmap that goes wrong at a release is seen at
//! that release and not at the later `cma_alloc` it spoils: the signature kept is where the
//! state first went wrong. [`reliability`] reruns the result (syzkaller's rule).

use super::{first_finding, load_finding, FindingError, FindingStore, MinimizedFinding, Reliability, Saved};
use crate::backend::{Backend, ModelBackend};
use crate::diff::{BackendChoice, ExecError, Executor};
use reference_impl::program::{Op, Program};
use reference_impl::units::{Bytes, Handle, Order, Pages};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Runs candidates for the minimizer.
pub trait Runner {
    /// The signature of `prog`'s first unsuppressed verdict ([`super::first_finding`]), `None`
    /// when it has none or cannot run (a candidate that no longer resolves). `Err` stops the
    /// minimization (the backend is gone).
    fn first_signature(&mut self, prog: &Program) -> Result<Option<String>, String>;
}

/// A function as a runner (tests, other front ends).
impl<F: FnMut(&Program) -> Result<Option<String>, String>> Runner for F {
    fn first_signature(&mut self, prog: &Program) -> Result<Option<String>, String> {
        self(prog)
    }
}

/// The spine as a runner: every candidate through [`Executor::execute`] with observations after
/// every op (turned back off when the runner goes).
pub struct ExecRunner<'a, R: Backend, S: Backend> {
    ex: &'a mut Executor<R, S>,
}

impl<'a, R: Backend, S: Backend> ExecRunner<'a, R, S> {
    pub fn new(ex: &'a mut Executor<R, S>) -> Self {
        ex.set_observe_each(true);
        ExecRunner { ex }
    }
}

impl<R: Backend, S: Backend> Drop for ExecRunner<'_, R, S> {
    fn drop(&mut self) {
        self.ex.set_observe_each(false);
    }
}

impl<R: Backend, S: Backend> Runner for ExecRunner<'_, R, S> {
    fn first_signature(&mut self, prog: &Program) -> Result<Option<String>, String> {
        match self.ex.execute(prog) {
            Ok(e) => Ok(first_finding(&e.verdicts).map(|v| v.signature.clone())),
            Err(ExecError::Resolve(_)) => Ok(None),
            Err(e @ ExecError::Model(_)) => Err(e.to_string()),
        }
    }
}

#[derive(Debug, Error)]
pub enum MinimizeError {
    /// The program does not (or no longer) gives the signature.
    #[error("the reproducer no longer reproduces {signature} (its first verdict now: {now})")]
    NotReproduced { signature: String, now: String },
    #[error("{0}")]
    Runner(String),
    #[error(transparent)]
    Finding(#[from] FindingError),
}

/// A minimized program and the runs it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minimized {
    pub program: Program,
    /// Candidates run, the check of the original included.
    pub runs: u64,
}

/// `prog` without the ops `drop` marks, and without the releases and frees of the allocations
/// dropped; the handles of the rest renumbered (the k-th allocating op defines handle k).
/// A release of a handle no allocation defines (yet) is kept only if nothing was dropped.
pub fn without(prog: &Program, drop: &[bool]) -> Program {
    // Old handle -> new handle (None: its allocation is gone).
    let mut map: Vec<Option<u32>> = Vec::new();
    let mut next = 0u32;
    let mut ops = Vec::with_capacity(prog.ops.len());
    let dropped_any = drop.iter().any(|d| *d);
    for (i, op) in prog.ops.iter().enumerate() {
        let gone = drop.get(i).copied().unwrap_or(false);
        if op.allocates() {
            if gone {
                map.push(None);
            } else {
                map.push(Some(next));
                next += 1;
                ops.push(op.clone());
            }
            continue;
        }
        if gone {
            continue;
        }
        let renumber = |h: Handle| -> Option<Handle> {
            match map.get(h.0 as usize) {
                Some(Some(n)) => Some(Handle(*n)),
                Some(None) => None,
                None if !dropped_any => Some(h),
                None => None,
            }
        };
        match op {
            Op::CmaRelease { h } => {
                if let Some(h) = renumber(*h) {
                    ops.push(Op::CmaRelease { h });
                }
            }
            Op::DmaFree { h } => {
                if let Some(h) = renumber(*h) {
                    ops.push(Op::DmaFree { h });
                }
            }
            other => ops.push(other.clone()),
        }
    }
    Program { ops }
}

/// Simpler forms of one op, simplest first.
fn simpler(op: &Op) -> Vec<Op> {
    let mut v = Vec::new();
    let smaller = |n: u64| -> Vec<u64> {
        let mut c = vec![1, n / 2, n.saturating_sub(1)];
        c.retain(|x| *x >= 1 && *x < n);
        c.dedup();
        c
    };
    let toward_zero = |o: i64| -> Vec<i64> {
        let mut c = vec![0, o / 2];
        c.retain(|x| x.unsigned_abs() < o.unsigned_abs());
        c.dedup();
        c
    };
    match op {
        Op::CmaAlloc { area, count, align } => {
            for c in smaller(count.0) {
                v.push(Op::CmaAlloc { area: area.clone(), count: Pages(c), align: *align });
            }
            for a in [0, align.0 / 2, align.0.saturating_sub(1)] {
                if a < align.0 {
                    v.push(Op::CmaAlloc { area: area.clone(), count: *count, align: Order(a) });
                }
            }
        }
        Op::CmaReleaseRaw { area, off, count } => {
            for c in smaller(count.0) {
                v.push(Op::CmaReleaseRaw { area: area.clone(), off: *off, count: Pages(c) });
            }
            for o in toward_zero(*off) {
                v.push(Op::CmaReleaseRaw { area: area.clone(), off: o, count: *count });
            }
        }
        Op::DmaAlloc { size, attrs, gfp } => {
            if *attrs != Default::default() {
                v.push(Op::DmaAlloc { size: *size, attrs: Default::default(), gfp: *gfp });
                if attrs.wc && attrs.nokmap {
                    let mut a = *attrs;
                    a.wc = false;
                    v.push(Op::DmaAlloc { size: *size, attrs: a, gfp: *gfp });
                    let mut a = *attrs;
                    a.nokmap = false;
                    v.push(Op::DmaAlloc { size: *size, attrs: a, gfp: *gfp });
                }
            }
            if *gfp != Default::default() {
                v.push(Op::DmaAlloc { size: *size, attrs: *attrs, gfp: Default::default() });
            }
            // Whole pages, fewer of them.
            let page = 4096u64;
            let pages = size.0.div_ceil(page);
            for p in smaller(pages) {
                v.push(Op::DmaAlloc { size: Bytes(p * page), attrs: *attrs, gfp: *gfp });
            }
            if size.0 % page != 0 && size.0 > page {
                v.push(Op::DmaAlloc { size: Bytes(pages * page), attrs: *attrs, gfp: *gfp });
            }
        }
        Op::Pin { area, off } => {
            for o in toward_zero(*off) {
                v.push(Op::Pin { area: area.clone(), off: o });
            }
        }
        Op::Unpin { area, off } => {
            for o in toward_zero(*off) {
                v.push(Op::Unpin { area: area.clone(), off: o });
            }
        }
        Op::Kmap { area, off } => {
            for o in toward_zero(*off) {
                v.push(Op::Kmap { area: area.clone(), off: o });
            }
        }
        Op::DmaMap { h, dir } => {
            if *dir != Default::default() {
                v.push(Op::DmaMap { h: *h, dir: Default::default() });
            }
        }
        Op::CmaRelease { .. } | Op::DmaFree { .. } | Op::Observe => {}
    }
    v
}

/// Minimizes `prog`, keeping `signature` as the first verdict `runner` sees: ddmin over ops,
/// then argument simplification, repeated until neither changes anything or `deadline` passes
/// (the smallest program found so far is returned then). `Err(NotReproduced)` when `prog`
/// itself does not give `signature`.
pub fn minimize(
    prog: &Program,
    signature: &str,
    runner: &mut dyn Runner,
    deadline: Option<Instant>,
) -> Result<Minimized, MinimizeError> {
    let mut runs = 1u64;
    match runner.first_signature(prog).map_err(MinimizeError::Runner)? {
        Some(s) if s == signature => {}
        now => {
            return Err(MinimizeError::NotReproduced {
                signature: signature.to_string(),
                now: now.unwrap_or_else(|| "none".into()),
            })
        }
    }
    let mut test = |p: &Program, runs: &mut u64| -> Result<bool, MinimizeError> {
        *runs += 1;
        Ok(runner.first_signature(p).map_err(MinimizeError::Runner)?.as_deref() == Some(signature))
    };
    let late = || deadline.is_some_and(|d| Instant::now() >= d);
    let mut cur = prog.clone();
    loop {
        let before = cur.clone();
        // ddmin over ops: remove one of n chunks (back first); on success fewer chunks, else
        // twice as many, down to single ops.
        let mut n = 2usize;
        while cur.ops.len() >= 2 && !late() {
            let len = cur.ops.len();
            let chunk = len.div_ceil(n);
            let mut removed = false;
            for i in (0..n).rev() {
                let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(len));
                if lo >= hi {
                    continue;
                }
                let drop: Vec<bool> = (0..len).map(|k| k >= lo && k < hi).collect();
                let cand = without(&cur, &drop);
                if cand.ops.len() < len && test(&cand, &mut runs)? {
                    cur = cand;
                    n = n.saturating_sub(1).max(2);
                    removed = true;
                    break;
                }
                if late() {
                    break;
                }
            }
            if !removed {
                if n >= len {
                    break;
                }
                n = (n * 2).min(len);
            }
        }
        // Arguments, op by op, the simplest form that keeps the signature.
        let mut i = 0;
        while i < cur.ops.len() && !late() {
            for s in simpler(&cur.ops[i]) {
                let mut cand = cur.clone();
                cand.ops[i] = s;
                if test(&cand, &mut runs)? {
                    cur = cand;
                    break;
                }
                if late() {
                    break;
                }
            }
            i += 1;
        }
        if cur == before || late() {
            break;
        }
    }
    Ok(Minimized { program: cur, runs })
}

/// Reruns `prog` up to `max_runs` times, stopping at `enough` reproductions (syzkaller: 10 and 3).
pub fn reliability(
    prog: &Program,
    signature: &str,
    runner: &mut dyn Runner,
    max_runs: u32,
    enough: u32,
) -> Result<Reliability, MinimizeError> {
    let (mut k, mut n) = (0, 0);
    while n < max_runs && k < enough {
        n += 1;
        if runner.first_signature(prog).map_err(MinimizeError::Runner)?.as_deref() == Some(signature) {
            k += 1;
        }
    }
    Ok(Reliability::new(k, n))
}

/// Syzkaller's rule: up to 10 runs, stop at 3 successes.
pub const RELIABILITY_RUNS: u32 = 10;
pub const RELIABILITY_ENOUGH: u32 = 3;

/// The whole triage of one program: its first verdict observed after every op (where the state
/// first went wrong) is the signature kept; minimize, then rate the result. `Err(NotReproduced)`
/// when the program has no finding on `runner`.
pub fn triage(
    prog: &Program,
    runner: &mut dyn Runner,
    deadline: Option<Instant>,
) -> Result<MinimizedFinding, MinimizeError> {
    let root = root_signature(prog, runner)?;
    triage_from(prog, &root, runner, deadline)
}

/// The signature of `prog`'s first verdict on `runner` (one run).
fn root_signature(prog: &Program, runner: &mut dyn Runner) -> Result<String, MinimizeError> {
    runner
        .first_signature(prog)
        .map_err(MinimizeError::Runner)?
        .ok_or_else(|| MinimizeError::NotReproduced { signature: "a finding".into(), now: "none".into() })
}

/// [`triage`] with the root signature known (its run counted).
fn triage_from(
    prog: &Program,
    root: &str,
    runner: &mut dyn Runner,
    deadline: Option<Instant>,
) -> Result<MinimizedFinding, MinimizeError> {
    let m = minimize(prog, root, runner, deadline)?;
    let rel = reliability(&m.program, root, runner, RELIABILITY_RUNS, RELIABILITY_ENOUGH)?;
    Ok(MinimizedFinding { program: m.program, signature: root.to_string(), runs: m.runs + 1, reliability: Some(rel) })
}

/// The model against itself on `target`'s recorded layout: what the model alone decides (an
/// alias on its own page tables, an op it refuses) minimizes here, with no VM.
pub fn model_executor(
    target: &crate::targets::Target,
    sup: crate::oracle::Suppressions,
) -> Result<Executor<ModelBackend, ModelBackend>, String> {
    let boot = target.boot_observation();
    let profile = target.profile().map_err(|e| e.to_string())?;
    let a = ModelBackend::new(profile.clone(), boot.clone()).map_err(|e| e.to_string())?;
    let b = ModelBackend::new(profile, boot.clone()).map_err(|e| e.to_string())?;
    let rules = Some(b.alias_rules());
    Ok(Executor::new(target, BackendChoice::Both, Some(a), Some(b), boot, sup, rules))
}

/// Triages the finding in `dir` ([`triage`] of its reproducer) and saves the result into it,
/// merged with another finding of its store where they are one bug
/// ([`FindingStore::save_minimized`]). A finding whose reproducer's first verdict observed
/// after every op is already another minimized finding's (and is not its own signature) is
/// merged into that one after that one run, not minimized again. A failure leaves the disk as
/// it was.
pub fn triage_finding(
    dir: &Path,
    runner: &mut dyn Runner,
    deadline: Option<Instant>,
) -> Result<(Saved, MinimizedFinding), MinimizeError> {
    let f = load_finding(dir)?;
    let store = FindingStore::of_finding(dir, &f.meta).ok_or_else(|| FindingError::NotAFinding(dir.to_path_buf()))?;
    let not_reproduced = |e: MinimizeError| match e {
        MinimizeError::NotReproduced { now, .. } => {
            MinimizeError::NotReproduced { signature: f.meta.signature.clone(), now }
        }
        e => e,
    };
    let root = root_signature(&f.program, runner).map_err(not_reproduced)?;
    let known = store.existing()?.iter().any(|m| m.min_signature.as_deref() == Some(root.as_str()));
    let min = if known && f.meta.signature != root {
        MinimizedFinding { program: f.program.clone(), signature: root, runs: 1, reliability: None }
    } else {
        triage_from(&f.program, &root, runner, deadline).map_err(not_reproduced)?
    };
    let saved = store.save_minimized(dir, &min)?;
    Ok((saved, min))
}

/// What [`triage_within`] did with the findings it reached, and the directories it did not.
pub type TriagedAll = (Vec<(PathBuf, Triaged)>, Vec<PathBuf>);

/// What [`triage_within`] did with one finding.
#[derive(Debug)]
pub enum Triaged {
    Done(Saved, MinimizedFinding),
    /// The triage failed; the finding is as it was.
    Failed(MinimizeError),
}

/// Triages each finding of `dirs` in turn ([`triage_finding`]) while `budget` lasts (the
/// budget left is each one's deadline) and `stop()` says nothing; returns what became of each
/// one reached, and the directories not reached (budget spent or stopped), as they were.
/// `runner()` gives the runner, called once and only when there is a finding to triage (a VM
/// starts only then).
pub fn triage_within<'r>(
    dirs: Vec<PathBuf>,
    runner: impl FnOnce() -> Result<Box<dyn Runner + 'r>, String>,
    budget: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<TriagedAll, String> {
    let start = Instant::now();
    let mut done = Vec::new();
    let mut rest = Vec::new();
    let mut runner = Some(runner);
    let mut r: Option<Box<dyn Runner + 'r>> = None;
    for dir in dirs {
        let left = budget.saturating_sub(start.elapsed());
        if left.is_zero() || stop() {
            rest.push(dir);
            continue;
        }
        if r.is_none() {
            r = Some((runner.take().ok_or("no runner")?)()?);
        }
        let Some(run) = r.as_mut() else { continue };
        let t = match triage_finding(&dir, run.as_mut(), Some(Instant::now() + left)) {
            Ok((saved, m)) => Triaged::Done(saved, m),
            Err(e) => Triaged::Failed(e),
        };
        done.push((dir, t));
    }
    Ok((done, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Program {
        Program::parse(t).expect("parses")
    }

    #[test]
    fn dropping_an_allocation_drops_its_release_and_renumbers_later_handles() {
        let prog = p("cma_alloc area=reserved count=2 align=0\n\
                      dma_alloc size=4096\n\
                      cma_alloc area=reserved count=3 align=0\n\
                      cma_release h=0\n\
                      cma_release h=2\n\
                      dma_free h=1\n");
        let q = without(&prog, &[true, false, false, false, false, false]);
        assert_eq!(
            q,
            p("dma_alloc size=4096\ncma_alloc area=reserved count=3 align=0\ncma_release h=1\ndma_free h=0\n")
        );
        assert_eq!(without(&prog, &[false; 6]), prog);
    }

    /// A fake "kernel": the bug shows when a cma_alloc of at least 2 pages is released.
    fn bug(prog: &Program) -> Result<Option<String>, String> {
        let mut live: Vec<Option<u64>> = Vec::new();
        for op in &prog.ops {
            match op {
                Op::CmaAlloc { count, .. } => live.push(Some(count.0)),
                Op::DmaAlloc { .. } => live.push(None),
                Op::CmaRelease { h } if live.get(h.0 as usize).copied().flatten().is_some_and(|c| c >= 2) => {
                    return Ok(Some("bitmap:reserved".into()));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    #[test]
    fn ddmin_and_argument_simplification_find_the_two_op_core() {
        let padded = p("observe\n\
                        pin area=reserved off=40\n\
                        dma_alloc size=8192 attrs=wc\n\
                        cma_alloc area=reserved count=17 align=4\n\
                        cma_alloc area=reserved count=9 align=2\n\
                        observe\n\
                        kmap area=reserved off=3\n\
                        cma_release h=2\n\
                        dma_free h=0\n\
                        cma_release h=1\n");
        let mut r = bug;
        let m = minimize(&padded, "bitmap:reserved", &mut r, None).expect("minimizes");
        assert_eq!(m.program, p("cma_alloc area=reserved count=2 align=0\ncma_release h=0\n"));
        assert!(m.runs > 2, "{}", m.runs);
        assert_eq!(bug(&m.program).expect("runs").as_deref(), Some("bitmap:reserved"));
    }

    #[test]
    fn a_program_that_does_not_reproduce_is_refused() {
        let mut r = bug;
        let e = minimize(&p("observe\n"), "bitmap:reserved", &mut r, None).expect_err("not reproduced");
        assert!(e.to_string().contains("no longer reproduces bitmap:reserved"), "{e}");
    }

    /// A store in a tempdir with one finding per program (its first verdict as `bug` gives it).
    fn store_with(progs: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let out = tempfile::tempdir().expect("tempdir");
        let store = FindingStore::open(out.path(), "arm32-6.1", None, vec![]).expect("open");
        let mut dirs = Vec::new();
        for (i, text) in progs.iter().enumerate() {
            let mut e = crate::findings::tests::exec();
            e.verdicts = vec![crate::findings::tests::verdict(&format!("layout:x{i}"))];
            dirs.push(store.record_program(&p(text), &e, "").expect("record").expect("a finding").1);
        }
        (out, dirs)
    }

    fn snapshot(d: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for e in walk(d) {
            v.push((e.clone(), std::fs::read(&e).expect("read")));
        }
        v.sort();
        v
    }

    fn walk(d: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(d).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
        v
    }

    const BUGGY: &str = "observe\ncma_alloc area=reserved count=9 align=2\nobserve\ncma_release h=0\n";

    #[test]
    fn findings_left_are_triaged_within_the_budget_and_the_rest_left_as_they_were() {
        let (out, dirs) = store_with(&[BUGGY, BUGGY]);
        let before = snapshot(out.path());
        // No budget: nothing is run (no runner asked for), nothing changes.
        let (done, rest) =
            triage_within(dirs.clone(), || Err("no VM".into()), Duration::ZERO, &|| false).expect("runs");
        assert!(done.is_empty());
        assert_eq!(rest, dirs);
        assert_eq!(snapshot(out.path()), before);
        // Stopped: the same.
        let (done, rest) =
            triage_within(dirs.clone(), || Err("no VM".into()), Duration::from_secs(60), &|| true).expect("runs");
        assert!(done.is_empty() && rest == dirs);
        // A budget: both minimized; the second is the same bug, merged into the first.
        let (done, rest) =
            triage_within(dirs.clone(), || Ok(Box::new(bug) as Box<dyn Runner>), Duration::from_secs(60), &|| false)
                .expect("runs");
        assert!(rest.is_empty());
        assert_eq!(done.len(), 2);
        match &done[0].1 {
            Triaged::Done(Saved::Kept(d), m) => {
                assert_eq!(d, &dirs[0]);
                assert_eq!(m.program, p("cma_alloc area=reserved count=2 align=0\ncma_release h=0\n"));
                assert!(d.join("reproducer.min.prog").is_file());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&done[1].1, Triaged::Done(Saved::MergedInto(d), _) if d == &dirs[0]), "{:?}", done[1]);
    }

    #[test]
    fn a_failed_triage_changes_nothing_on_disk() {
        let (out, dirs) = store_with(&["observe\n", BUGGY]);
        let before = snapshot(out.path());
        // `observe` alone does not reproduce; the runner then dies on the second.
        let mut n = 0;
        let dying = move |prog: &Program| {
            n += 1;
            if n > 1 {
                Err("the VM died".to_string())
            } else {
                bug(prog)
            }
        };
        let (done, rest) =
            triage_within(dirs.clone(), || Ok(Box::new(dying) as Box<dyn Runner>), Duration::from_secs(60), &|| false)
                .expect("runs");
        assert!(rest.is_empty());
        assert!(matches!(&done[0].1, Triaged::Failed(MinimizeError::NotReproduced { .. })), "{:?}", done[0]);
        assert!(matches!(&done[1].1, Triaged::Failed(MinimizeError::Runner(_))), "{:?}", done[1]);
        assert_eq!(snapshot(out.path()), before, "a failed minimization leaves the findings as they were");
    }

    #[test]
    fn reliability_follows_syzkallers_rule() {
        let prog = p("observe\n");
        let mut always = |_: &Program| Ok(Some("x".to_string()));
        assert_eq!(reliability(&prog, "x", &mut always, 10, 3).expect("runs"), Reliability::new(3, 3));
        let mut never = |_: &Program| Ok(None);
        let r = reliability(&prog, "x", &mut never, 10, 3).expect("runs");
        assert_eq!((r.reproduced, r.runs, r.class.as_str()), (0, 10, "not-reproduced"));
        let mut i = 0;
        let mut some = |_: &Program| {
            i += 1;
            Ok((i % 4 == 0).then(|| "x".to_string()))
        };
        let r = reliability(&prog, "x", &mut some, 10, 3).expect("runs");
        assert_eq!((r.reproduced, r.runs, r.class.as_str()), (2, 10, "flaky"));
    }
}
