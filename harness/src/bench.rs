//! `cmafuzz bench`: figures, not assertions. Boot-to-ready time, and the
//! ops/s of the same programs on the kernel (one round trip per program)
//! and on the model, measured in one run so they can be compared as ratios.

use crate::backend::{Backend, KernelBackend, ModelBackend};
use crate::replay::LoadedProgram;
use crate::session::{self, KernelChoice, SessionError};
use crate::targets::Target;
use crate::vm::Vm;
use reference_impl::program::ResolvedProgram;
use std::time::{Duration, Instant};

/// What one bench run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    pub target: String,
    pub boots: Vec<f64>,
    pub programs: usize,
    pub ops_per_round: u64,
    pub rounds: u32,
    /// Kernel: time inside program runs only.
    pub kernel_run_s: f64,
    /// Kernel: program runs plus the resets (and reboots) between them.
    pub kernel_total_s: f64,
    pub kernel_reboots: u32,
    pub model_s: f64,
}

impl Figures {
    fn ops(&self) -> f64 {
        (self.ops_per_round * u64::from(self.rounds)) as f64
    }

    pub fn render(&self) -> String {
        let mut boots = self.boots.clone();
        boots.sort_by(f64::total_cmp);
        let median = boots.get(boots.len() / 2).copied().unwrap_or(0.0);
        let kr = self.ops() / self.kernel_run_s.max(1e-9);
        let kt = self.ops() / self.kernel_total_s.max(1e-9);
        let m = self.ops() / self.model_s.max(1e-9);
        format!(
            "{target}: boot-to-ready median {median:.3} s (min {min:.3} s, {n} boots)\n\
             {target}: {programs} programs x {rounds} rounds = {ops} ops\n\
             {target}: kernel {kr:.0} ops/s in program runs, {kt:.0} ops/s including resets ({reboots} reboots)\n\
             {target}: model {m:.0} ops/s; model/kernel = {ratio:.0}x",
            target = self.target,
            min = boots.first().copied().unwrap_or(0.0),
            n = boots.len(),
            programs = self.programs,
            rounds = self.rounds,
            ops = self.ops(),
            reboots = self.kernel_reboots,
            ratio = m / kr.max(1e-9),
        )
    }
}

/// Runs the benchmark.
pub fn run(
    target: &Target,
    kc: &KernelChoice,
    programs: &[LoadedProgram],
    rounds: u32,
    boots: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<Figures, SessionError> {
    let k = session::build_kernel(target, kc, progress)?;
    let g = crate::guest_build::build(target, &[])?;
    let spec = session::vm_spec(target, &k, g.initramfs)?;
    let mut boot_times = Vec::new();
    for _ in 0..boots.max(1) {
        let vm = Vm::boot(&spec).map_err(|e| SessionError::Backend(e.into()))?;
        boot_times.push(vm.boot_time.as_secs_f64());
    }
    let mut kb = KernelBackend::boot(spec)?;
    let boot = kb.boot_observation().clone();
    let profile = session::profile_from_kernel(target, &kb)?;
    let mut mb = ModelBackend::new(profile.clone(), boot.clone())?;
    let resolved: Vec<ResolvedProgram> = programs.iter().filter_map(|p| p.program.resolve(&boot.areas).ok()).collect();
    let ops_per_round: u64 = resolved.iter().map(|p| p.ops.len() as u64).sum();

    let mut run_time = Duration::ZERO;
    let total = Instant::now();
    // A model in lockstep says what the kernel must look like after each reset (pool growth
    // included), so arm64 does not reboot after every atomic allocation.
    let mut shadow = ModelBackend::new(profile, boot.clone())?;
    for _ in 0..rounds {
        for p in &resolved {
            shadow.reset()?;
            if kb.reset_expecting(&shadow.observe())? {
                shadow.reset_to_boot();
            }
            let t = Instant::now();
            kb.run(p)?;
            run_time += t.elapsed();
            shadow.run(p)?;
        }
    }
    let kernel_total = total.elapsed();

    let m = Instant::now();
    for _ in 0..rounds {
        for p in &resolved {
            mb.reset()?;
            mb.run(p)?;
        }
    }
    let model = m.elapsed();
    Ok(Figures {
        target: target.name.clone(),
        boots: boot_times,
        programs: resolved.len(),
        ops_per_round,
        rounds,
        kernel_run_s: run_time.as_secs_f64(),
        kernel_total_s: kernel_total.as_secs_f64(),
        kernel_reboots: kb.reboots,
        model_s: model.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_reports_ratios_from_the_measured_times() {
        let f = Figures {
            target: "t".into(),
            boots: vec![0.9, 0.5, 0.7],
            programs: 2,
            ops_per_round: 100,
            rounds: 10,
            kernel_run_s: 0.5,
            kernel_total_s: 1.0,
            kernel_reboots: 1,
            model_s: 0.001,
        };
        let r = f.render();
        assert!(r.contains("median 0.700 s (min 0.500 s, 3 boots)"), "{r}");
        assert!(r.contains("kernel 2000 ops/s in program runs, 1000 ops/s including resets (1 reboots)"), "{r}");
        assert!(r.contains("model 1000000 ops/s; model/kernel = 500x"), "{r}");
    }
}
