//! The objective: every verdict no suppression accepts (harness errors aside: those are the
//! harness's problems, counted in the status line). Each is written to `OUT/findings/` before
//! the campaign moves on; the input counts as a new objective only when one of its signatures
//! is new, so the solutions LibAFL keeps are one per signature.

use super::executor::{Counters, ExecObserver};
use super::input::ProgramInput;
use crate::findings::{FindingStore, Recorded};
use crate::oracle::VerdictKind;
use libafl::executors::ExitKind;
use libafl::feedbacks::{Feedback, StateInitializer};
use libafl::Error;
use libafl_bolts::tuples::{Handle, MatchNameRef};
use libafl_bolts::Named;
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct FindingFeedback {
    store: FindingStore,
    exec: Handle<ExecObserver>,
    counters: Arc<Counters>,
}

impl FindingFeedback {
    pub fn new(store: FindingStore, exec: Handle<ExecObserver>, counters: Arc<Counters>) -> Self {
        FindingFeedback { store, exec, counters }
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
        let mut new = false;
        let mut found = false;
        for v in e.verdicts.iter().filter(|v| v.suppressed.is_none() && v.kind != VerdictKind::HarnessError) {
            let r = self
                .store
                .record(&input.0, e, v, &obs.console)
                .map_err(|err| Error::os_error(std::io::Error::other(err.to_string()), "recording a finding"))?;
            self.counters.finding_hits.fetch_add(1, Ordering::Relaxed);
            found = true;
            if r == Recorded::New {
                self.counters.findings_new.fetch_add(1, Ordering::Relaxed);
                new = true;
            }
        }
        if found {
            for a in &obs.areas {
                self.counters.count_area(a, 0, 1);
            }
        }
        Ok(new)
    }
}
