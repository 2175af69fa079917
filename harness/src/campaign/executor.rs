//! LibAFL's executor over cmafuzz's spine: every input goes through [`exec::Executor::execute`]
//! (reset, model and kernel, compare, alias scan, oracle) on this client's own VM. The executor
//! fills the coverage map (model-state features in its first [`features::MODEL_MAP_SIZE`]
//! entries, kernel coverage after them: one map, so one minimizing scheduler sees both) and hands
//! the whole [`Execution`] to the objective through [`ExecObserver`].
//!
//! The VM: `exec::Executor` resets it between programs and reboots it after a hang or a dead
//! guest (those come back as verdicts). Only a failure to start at all is handled here: bounded
//! retries with exponential back-off, counted as restarts.

use super::features;
use super::input::ProgramInput;
use crate::backend::kernel::boot::KernelChoice;
use crate::diff::BackendChoice;
use crate::diff::{self as exec, Execution};
use crate::oracle::{Suppressions, VerdictKind};
use crate::targets::Target;
use libafl::events::{Event, EventFirer, EventWithStats};
use libafl::executors::{Executor, ExitKind, HasObservers};
use libafl::monitors::stats::{AggregatorOps, UserStats, UserStatsValue};
use libafl::observers::{CanTrack, ExplicitTracking, Observer, StdMapObserver};
use libafl::state::HasExecutions;
use libafl::Error;
use libafl_bolts::tuples::RefIndexable;
use libafl_bolts::Named;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Attempts to start a VM before the client gives up.
pub const START_ATTEMPTS: u32 = 5;
/// First back-off; doubled after every failed start.
pub const START_BACKOFF: Duration = Duration::from_secs(2);

/// Counters one client shares between its executor and its objective.
#[derive(Debug, Default)]
pub struct Counters {
    /// Programs run (LibAFL's own execution count does not reach the monitor reliably).
    pub execs: AtomicU64,
    pub kernel_ops: AtomicU64,
    pub restarts: AtomicU64,
    pub findings_new: AtomicU64,
    pub finding_hits: AtomicU64,
    pub harness_errors: AtomicU64,
    /// Queue entries culled ([`super::corpus::cull`]).
    pub culled: AtomicU64,
    /// Model-state map entries this client has seen set.
    pub coverage_model: AtomicU64,
    /// Kernel-coverage map entries this client has seen set.
    pub coverage_kcov: AtomicU64,
    /// Focus sites (`fuzz --focus`) this client's runs reached.
    pub focus_reached: AtomicU64,
    /// Per area (by name): ops that named it, programs naming it that gave a finding.
    pub areas: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl Counters {
    /// Counts `ops` ops and `findings` finding programs for `area`.
    pub fn count_area(&self, area: &str, ops: u64, findings: u64) {
        if let Ok(mut m) = self.areas.lock() {
            let e = m.entry(area.to_string()).or_default();
            e.0 += ops;
            e.1 += findings;
        }
    }
}

/// Holds the last execution for the objective. Never sent to other clients (the campaign runs
/// with `EventConfig::AlwaysUnique`: every client re-runs what it receives on its own VM).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ExecObserver {
    #[serde(skip)]
    pub exec: Option<Execution>,
    /// The kernel console, captured only for executions with a finding.
    #[serde(skip)]
    pub console: String,
    /// The areas (by name) the program's ops named.
    #[serde(skip)]
    pub areas: BTreeSet<String>,
}

impl Named for ExecObserver {
    fn name(&self) -> &Cow<'static, str> {
        static NAME: Cow<'static, str> = Cow::Borrowed("execution");
        &NAME
    }
}

impl<I, S> Observer<I, S> for ExecObserver {
    fn pre_exec(&mut self, _state: &mut S, _input: &I) -> Result<(), Error> {
        self.exec = None;
        self.console.clear();
        self.areas.clear();
        Ok(())
    }
}

pub type MapObs = ExplicitTracking<StdMapObserver<'static, u8, false>, true, false>;
pub type Observers = (MapObs, (ExecObserver, ()));

/// Entries of the coverage map: model-state features, then kernel coverage.
pub const MAP_SIZE: usize = features::MODEL_MAP_SIZE + features::KCOV_MAP_SIZE;

pub fn observers() -> Observers {
    (StdMapObserver::owned("coverage", vec![0u8; MAP_SIZE]).track_indices(), (ExecObserver::default(), ()))
}

/// LibAFL's view of one client's VM.
pub struct VmExecutor {
    inner: Option<exec::Executor>,
    observers: Observers,
    target: Target,
    kernel: KernelChoice,
    backend: BackendChoice,
    sup: Suppressions,
    pub counters: Arc<Counters>,
    seen_reboots: u32,
    last_stats: Instant,
    /// Coverage-map entries ever set by this client (for the coverage figures).
    seen: Vec<bool>,
    /// Every KCOV PC this client's runs reached, for `OUT/coverage/client-N.pcs`.
    pcs: BTreeSet<u64>,
    /// The sites the campaign is steered towards (`fuzz --focus`).
    focus: Option<Arc<crate::coverage::Focus>>,
    /// Where they go (`OUT`, client id); `None`: nowhere.
    pcs_out: Option<(PathBuf, usize, Duration)>,
    pcs_written: usize,
    last_pcs: Instant,
}

impl VmExecutor {
    /// `backend`: `Both` (model and kernel compared) or `Model` (the model alone, no VM).
    pub fn new(
        target: Target,
        kernel: KernelChoice,
        backend: BackendChoice,
        sup: Suppressions,
        counters: Arc<Counters>,
    ) -> Self {
        VmExecutor {
            inner: None,
            observers: observers(),
            target,
            kernel,
            backend,
            sup,
            counters,
            seen_reboots: 0,
            last_stats: Instant::now(),
            seen: vec![false; MAP_SIZE],
            pcs: BTreeSet::new(),
            focus: None,
            pcs_out: None,
            pcs_written: 0,
            last_pcs: Instant::now(),
        }
    }

    /// Steer towards `focus`: its sites get extra coverage entries ([`features::focus_features`])
    /// and the status counts how many of them the client reached.
    pub fn set_focus(&mut self, focus: Arc<crate::coverage::Focus>) {
        self.focus = Some(focus);
    }

    /// Write the KCOV PCs this client reaches to `OUT/coverage/client-N.pcs` every `interval`
    /// (the status interval) and at [`VmExecutor::flush_coverage`].
    pub fn write_coverage_to(&mut self, out: PathBuf, client: usize, interval: Duration) {
        self.pcs_out = Some((out, client, interval));
    }

    /// Writes the PCs seen so far when there are new ones. A write that fails is one line on
    /// stderr: the campaign goes on (the PCs stay in memory for the next write).
    pub fn flush_coverage(&mut self) {
        self.last_pcs = Instant::now();
        let Some((out, client, _)) = &self.pcs_out else { return };
        if self.pcs.len() == self.pcs_written {
            return;
        }
        match crate::coverage::write_client_pcs(out, *client, &self.pcs) {
            Ok(()) => self.pcs_written = self.pcs.len(),
            Err(e) => eprintln!("cmafuzz fuzz: cannot write the kernel coverage: {e}"),
        }
    }

    pub fn observers_ref(&self) -> &Observers {
        &self.observers
    }

    /// Starts the VM if none runs: up to [`START_ATTEMPTS`] tries, backing off between them.
    pub fn ensure_started(&mut self) -> Result<&mut exec::Executor, Error> {
        if self.inner.is_none() {
            let mut wait = START_BACKOFF;
            let mut last = String::new();
            for attempt in 1..=START_ATTEMPTS {
                match exec::Executor::start(&self.target, self.backend, &self.kernel, self.sup.clone(), &mut |l| {
                    eprintln!("{l}")
                }) {
                    Ok(mut ex) => {
                        // Kernel coverage feeds the kcov map (when the guest has KCOV).
                        ex.set_kcov(true);
                        self.seen_reboots = ex.subject.as_ref().map_or(0, |k| k.reboots);
                        self.inner = Some(ex);
                        break;
                    }
                    Err(e) => {
                        last = e.to_string();
                        self.counters.restarts.fetch_add(1, Ordering::Relaxed);
                        eprintln!("cmafuzz fuzz: VM start {attempt}/{START_ATTEMPTS} failed: {last}");
                        if attempt < START_ATTEMPTS {
                            // Back-off before the next boot, not synchronisation.
                            std::thread::sleep(wait);
                            wait *= 2;
                        }
                    }
                }
            }
            if self.inner.is_none() {
                return Err(Error::illegal_state(format!(
                    "the {} VM did not start after {START_ATTEMPTS} attempts: {last} (run `cmafuzz boot --target {}` to see why)",
                    self.target.name, self.target.name
                )));
            }
        }
        self.inner.as_mut().ok_or_else(|| Error::illegal_state("no VM"))
    }

    /// The kernel's console of the running VM.
    fn console(&self) -> String {
        self.inner.as_ref().and_then(|i| i.subject.as_ref()).map(|k| k.console()).unwrap_or_default()
    }

    /// Sends this client's counters to the monitor; `last`: the client is about to exit (the
    /// monitor then writes the status whatever its interval, so a campaign that stops early, on
    /// a finding while loading its seeds, still leaves its figures).
    pub fn report<EM, S>(&mut self, state: &mut S, mgr: &mut EM, last: bool) -> Result<(), Error>
    where
        EM: EventFirer<ProgramInput, S>,
        S: HasExecutions,
    {
        let c = &self.counters;
        let areas: Vec<(String, u64, u64)> =
            c.areas.lock().map(|m| m.iter().map(|(k, (o, f))| (k.clone(), *o, *f)).collect()).unwrap_or_default();
        let mut stats: Vec<(Cow<'static, str>, u64, AggregatorOps)> = Vec::new();
        for (name, v, op) in [
            ("execs", c.execs.load(Ordering::Relaxed), AggregatorOps::Sum),
            ("kernel_ops", c.kernel_ops.load(Ordering::Relaxed), AggregatorOps::Sum),
            ("restarts", c.restarts.load(Ordering::Relaxed), AggregatorOps::Sum),
            ("harness_errors", c.harness_errors.load(Ordering::Relaxed), AggregatorOps::Sum),
            ("culled", c.culled.load(Ordering::Relaxed), AggregatorOps::Sum),
            ("finding_hits", c.finding_hits.load(Ordering::Relaxed), AggregatorOps::Sum),
            ("model-state", c.coverage_model.load(Ordering::Relaxed), AggregatorOps::Max),
            ("kcov", c.coverage_kcov.load(Ordering::Relaxed), AggregatorOps::Max),
            ("focus", c.focus_reached.load(Ordering::Relaxed), AggregatorOps::Max),
        ] {
            stats.push((Cow::Borrowed(name), v, op));
        }
        for (a, o, f) in areas {
            stats.push((Cow::Owned(format!("{}{a}", super::monitor::AREA_OPS)), o, AggregatorOps::Sum));
            stats.push((Cow::Owned(format!("{}{a}", super::monitor::AREA_FINDINGS)), f, AggregatorOps::Sum));
        }
        if last {
            stats.push((Cow::Borrowed(super::monitor::EXITED), 1, AggregatorOps::Sum));
        }
        for (name, v, op) in stats {
            let execs = *state.executions();
            mgr.fire(
                state,
                EventWithStats::with_current_time(
                    Event::UpdateUserStats {
                        name,
                        value: UserStats::new(UserStatsValue::Number(v), op),
                        phantom: PhantomData,
                    },
                    execs,
                ),
            )?;
        }
        Ok(())
    }
}

impl HasObservers for VmExecutor {
    type Observers = Observers;

    fn observers(&self) -> RefIndexable<&Self::Observers, Self::Observers> {
        RefIndexable::from(&self.observers)
    }

    fn observers_mut(&mut self) -> RefIndexable<&mut Self::Observers, Self::Observers> {
        RefIndexable::from(&mut self.observers)
    }
}

/// The exit kind LibAFL sees: a timeout for an unsuppressed hang, a crash for any other finding.
pub fn exit_kind(e: &Execution) -> ExitKind {
    if e.verdicts.iter().any(|v| v.suppressed.is_none() && v.kind == VerdictKind::Hang) {
        ExitKind::Timeout
    } else if e.finding() {
        ExitKind::Crash
    } else {
        ExitKind::Ok
    }
}

impl<EM, S, Z> Executor<EM, ProgramInput, S, Z> for VmExecutor
where
    EM: EventFirer<ProgramInput, S>,
    S: HasExecutions,
{
    fn run_target(
        &mut self,
        _fuzzer: &mut Z,
        state: &mut S,
        mgr: &mut EM,
        input: &ProgramInput,
    ) -> Result<ExitKind, Error> {
        let ex = self.ensure_started()?;
        let result = ex.execute(&input.0);
        let reboots = ex.subject.as_ref().map_or(0, |k| k.reboots);
        self.counters.execs.fetch_add(1, Ordering::Relaxed);
        if reboots != self.seen_reboots {
            self.counters.restarts.fetch_add(u64::from(reboots.saturating_sub(self.seen_reboots)), Ordering::Relaxed);
            self.seen_reboots = reboots;
        }
        let kind = match result {
            // A program that does not resolve (an area this kernel lacks) or that the model
            // refuses: nothing ran, nothing to learn.
            Err(_) => ExitKind::Ok,
            Ok(e) => {
                if e.subject.is_some() {
                    self.counters.kernel_ops.fetch_add(e.resolved.ops.len() as u64, Ordering::Relaxed);
                }
                let mut per = BTreeMap::<String, u64>::new();
                if let Some(boot) = self.inner.as_ref().map(|i| &i.boot) {
                    for op in &e.resolved.ops {
                        if let Some(a) = features::op_area(op).and_then(|id| boot.areas.get(id.0 as usize)) {
                            *per.entry(a.name.clone()).or_default() += 1;
                        }
                    }
                }
                for (a, n) in &per {
                    self.counters.count_area(a, *n, 0);
                }
                if e.harness_error() {
                    self.counters.harness_errors.fetch_add(1, Ordering::Relaxed);
                }
                let map = &mut self.observers.0.as_mut()[..];
                let (model, kcov) = map.split_at_mut(features::MODEL_MAP_SIZE);
                let set_model = features::fill_model(model, &features::model_features(&e));
                let mut kf = features::kcov_features(&e);
                if let Some(focus) = &self.focus {
                    kf.extend(features::focus_features(&e, focus));
                    for &pc in &e.coverage {
                        if focus.contains(pc) && !self.pcs.contains(&pc) {
                            self.counters.focus_reached.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let set_kcov = features::fill(kcov, &kf);
                self.pcs.extend(e.coverage.iter().copied());
                for (set, base, c) in [
                    (set_model, 0, &self.counters.coverage_model),
                    (set_kcov, features::MODEL_MAP_SIZE, &self.counters.coverage_kcov),
                ] {
                    for i in set {
                        if !std::mem::replace(&mut self.seen[base + i], true) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let kind = exit_kind(&e);
                let console = if e.finding() { self.console() } else { String::new() };
                let obs = &mut self.observers.1 .0;
                obs.console = console;
                obs.areas = per.into_keys().collect();
                obs.exec = Some(e);
                kind
            }
        };
        if self.pcs_out.as_ref().is_some_and(|(_, _, every)| self.last_pcs.elapsed() >= *every) {
            self.flush_coverage();
        }
        if self.last_stats.elapsed() >= Duration::from_secs(2) {
            self.last_stats = Instant::now();
            self.report(state, mgr, false)?;
        }
        Ok(kind)
    }
}
