//! The objective: a program's finding is its first verdict no suppression accepts (harness
//! errors aside: those are the harness's problems, counted in the status line), the verdicts
//! after it its context (`findings::FindingStore::record_program`). It is written to
//! `OUT/findings/` before the campaign moves on; the input counts as a new objective only when
//! its signature is new, so the solutions LibAFL keeps are one per signature. A new finding's
//! directory is queued for the client to minimize ([`Pending`]) before it fuzzes on.

use super::executor::{Counters, ExecObserver};
use super::input::ProgramInput;
use crate::findings::{FindingStore, Recorded};
use libafl::executors::ExitKind;
use libafl::feedbacks::{Feedback, StateInitializer};
use libafl::Error;
use libafl_bolts::tuples::{Handle, MatchNameRef};
use libafl_bolts::Named;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// New finding directories the client has yet to minimize.
pub type Pending = Arc<Mutex<Vec<PathBuf>>>;

pub struct FindingFeedback {
    store: FindingStore,
    exec: Handle<ExecObserver>,
    counters: Arc<Counters>,
    pending: Pending,
}

impl FindingFeedback {
    pub fn new(store: FindingStore, exec: Handle<ExecObserver>, counters: Arc<Counters>, pending: Pending) -> Self {
        FindingFeedback { store, exec, counters, pending }
    }
}

impl Named for FindingFeedback {
    fn name(&self) -> &Cow<'static, str> {
        static NAME: Cow<'static, str> = Cow::Borrowed("finding");
        &NAME
    }
}

impl<S> StateInitializer<S> for FindingFeedback {}

impl<EM, OT, S> Feedback<EM, ProgramInput, OT, S> for FindingFeedback
where
    OT: MatchNameRef,
{
    fn is_interesting(
        &mut self,
        _state: &mut S,
        _manager: &mut EM,
        input: &ProgramInput,
        observers: &OT,
        _exit_kind: &ExitKind,
    ) -> Result<bool, Error> {
        let Some(obs) = observers.get(&self.exec) else { return Ok(false) };
        let Some(e) = obs.exec.as_ref() else { return Ok(false) };
        let recorded = self
            .store
            .record_program(&input.0, e, &obs.console)
            .map_err(|err| Error::os_error(std::io::Error::other(err.to_string()), "recording a finding"))?;
        let Some((r, dir)) = recorded else { return Ok(false) };
        self.counters.finding_hits.fetch_add(1, Ordering::Relaxed);
        for a in &obs.areas {
            self.counters.count_area(a, 0, 1);
        }
        if r != Recorded::New {
            return Ok(false);
        }
        self.counters.findings_new.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut p) = self.pending.lock() {
            p.push(dir);
        }
        Ok(true)
    }
}
