//! The reference model as a backend, in process.

use super::{Backend, BackendError, ProgramRun, Reset};
use reference_impl::model::Model;
use reference_impl::observation::Observation;
use reference_impl::profile::KernelProfile;
use reference_impl::program::ResolvedProgram;

/// The reference model, in process.
pub struct ModelBackend {
    model: Model,
    boot: Observation,
    /// Observe after every op, not only at `observe` ops (as `CF_RUN_OBSERVE_EACH` makes the
    /// driver do).
    pub observe_each: bool,
}

impl ModelBackend {
    pub fn new(profile: KernelProfile, boot: Observation) -> Result<Self, BackendError> {
        let model = Model::new(profile, &boot).map_err(|e| BackendError::Model(e.to_string()))?;
        Ok(ModelBackend { model, boot, observe_each: false })
    }
}

impl ModelBackend {
    /// Back to the state of a freshly booted kernel (after the kernel side rebooted).
    pub fn reset_to_boot(&mut self) {
        self.model.reset_to_boot();
    }

    /// The model's layout now.
    pub fn observe(&self) -> Observation {
        self.model.observe()
    }

    /// The model's kernel profile.
    pub fn profile(&self) -> &KernelProfile {
        self.model.profile()
    }

    /// The alias rules of the model's kernel profile and areas.
    pub fn alias_rules(&self) -> reference_impl::alias::AliasRules {
        self.model.alias_rules()
    }
}

impl Backend for ModelBackend {
    fn name(&self) -> &str {
        "model"
    }

    fn boot_observation(&self) -> &Observation {
        &self.boot
    }

    fn reset(&mut self) -> Result<Reset, BackendError> {
        self.model.reset();
        Ok(Reset { state: Some(self.model.observe()), restarted: false })
    }

    fn restart(&mut self) -> Result<Option<Observation>, BackendError> {
        self.model.reset_to_boot();
        Ok(Some(self.model.observe()))
    }

    /// The model cannot know the PKMAP slot the kernel's driver reached at its reset.
    fn adopt(&mut self, other_reset: Option<&Observation>) {
        self.model.set_pkmap_last(other_reset.and_then(|o| o.pkmap_last));
    }

    fn set_observe_each(&mut self, on: bool) {
        self.observe_each = on;
    }

    fn run(&mut self, prog: &ResolvedProgram) -> Result<ProgramRun, BackendError> {
        let (outcomes, observations) = if self.observe_each {
            let mut outcomes = Vec::with_capacity(prog.ops.len());
            let mut observations = Vec::with_capacity(prog.ops.len());
            for (i, op) in prog.ops.iter().enumerate() {
                outcomes.push(self.model.step(op));
                observations.push((i, self.model.observe()));
            }
            (outcomes, observations)
        } else {
            reference_impl::model::run(&mut self.model, prog)
        };
        let raw = vec![None; outcomes.len()];
        Ok(ProgramRun { outcomes, raw, observations, end: self.model.observe(), coverage: Vec::new() })
    }
}
