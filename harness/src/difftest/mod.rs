//! `cmafuzz model-check` and `cmafuzz difftest`: generated programs (`generate`) on the model
//! alone with its invariants checked after every op, or on the model and a real kernel side by
//! side, one VM for all, reset between programs.

use crate::backend::kernel::boot::{KernelChoice, SessionError};
use crate::backend::{Backend, BackendError};
use crate::diff::BackendChoice;
use crate::diff::Executor;
use crate::generate;
use crate::targets::Target;
use reference_impl::model::Model;
use reference_impl::observation::Observation;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DifftestError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("model: {0}")]
    Model(String),
}

/// What `model-check` found.
#[derive(Debug, Default)]
pub struct ModelCheckSummary {
    pub programs: u64,
    pub ops: u64,
    pub seconds: f64,
    /// The first violation: seed, program text, what broke.
    pub violation: Option<(u64, String, String)>,
}

/// Runs `count` generated programs (seeds `seed..`) on the model of `target` (its recorded boot
/// layout, as `replay --backend model`), checking [`Model::check_invariants`] after every op and,
/// after a reset, that the layout is the boot one plus pool growth only. Stops at the first
/// violation.
pub fn model_check(target: &Target, count: u64, seed: u64) -> Result<ModelCheckSummary, DifftestError> {
    let boot = target.boot_observation();
    let profile = target.profile().map_err(SessionError::from)?;
    let mut model = Model::new(profile, &boot).map_err(|e| DifftestError::Model(e.to_string()))?;
    let areas = generate::GenArea::of(&boot.areas);
    let mut sum = ModelCheckSummary::default();
    let t = Instant::now();
    for s in seed..seed.saturating_add(count) {
        let prog = generate::program_for(s, &areas);
        let resolved = prog.resolve(&boot.areas).map_err(|e| DifftestError::Model(format!("seed {s}: {e}")))?;
        let fail = |why: String| Some((s, prog.to_text(), why));
        let before = model.observe();
        for (i, op) in resolved.ops.iter().enumerate() {
            model.step(op);
            sum.ops += 1;
            if let Err(e) = model.check_invariants() {
                sum.violation = fail(format!("after op {i}: {e}"));
                break;
            }
        }
        sum.programs += 1;
        if sum.violation.is_none() {
            model.reset();
            if let Err(e) = model.check_invariants().and_then(|()| only_pool_growth(&before, &model.observe())) {
                sum.violation = fail(format!("after reset: {e}"));
            }
        }
        if sum.violation.is_some() {
            break;
        }
        // Pool growth accumulates across programs as in the kernel; start afresh now and then.
        if s % 64 == 63 {
            model.reset_to_boot();
        }
    }
    sum.seconds = t.elapsed().as_secs_f64();
    Ok(sum)
}

/// After a reset only pool growth may remain: every bit set before is still set, and any new
/// bit is one the pools took (checked by `check_invariants`); so bits may only be added.
fn only_pool_growth(before: &Observation, after: &Observation) -> Result<(), String> {
    for (b, a) in before.areas.iter().zip(&after.areas) {
        for (r, (rb, ra)) in b.ranges.iter().zip(&a.ranges).enumerate() {
            for (i, (wb, wa)) in rb.bitmap.iter().zip(&ra.bitmap).enumerate() {
                if wb & !wa != 0 {
                    return Err(format!(
                        "area {}: reset cleared bits the state before the program had (range {r} word {i})",
                        b.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Options of one difftest run.
#[derive(Debug, Clone)]
pub struct DifftestOptions {
    pub count: u64,
    pub seed: u64,
    /// Where reproducers of divergences go.
    pub out_dir: PathBuf,
}

/// What a difftest run found.
#[derive(Debug, Default, Clone)]
pub struct DifftestSummary {
    pub programs: u64,
    pub ops: u64,
    pub divergences: u64,
    pub errors: u64,
    pub reboots: u32,
    /// Resets after which the expected layout kept pool growth (each one a reboot before
    /// resets compared against the model's post-reset layout).
    pub grown_resets: u64,
    pub seconds: f64,
    /// Reproducers written.
    pub reproducers: Vec<PathBuf>,
    /// Suppressed verdicts by signature: how many programs had each.
    pub suppressed: std::collections::BTreeMap<String, u64>,
}

impl DifftestSummary {
    /// 2 on errors, 1 on a divergence, 0 otherwise.
    pub fn exit_code(&self) -> u8 {
        crate::oracle::exit_code(self.errors > 0, self.divergences > 0)
    }

    pub fn render(&self) -> String {
        format!(
            "{} programs, {} ops, {} divergences, {} errors, {} reboots ({} resets kept pool growth), \
             {:.1} programs/s ({:.0} ops/s) in {:.1} s",
            self.programs,
            self.ops,
            self.divergences,
            self.errors,
            self.reboots,
            self.grown_resets,
            self.programs as f64 / self.seconds.max(1e-9),
            self.ops as f64 / self.seconds.max(1e-9),
            self.seconds
        )
    }
}

/// Runs `opts.count` generated programs on the model and the kernel of `target`, comparing them
/// op by op. Divergent programs are written to `difftest-<target>-<seed>.prog` in `opts.out_dir`.
pub fn difftest(
    target: &Target,
    kc: &KernelChoice,
    opts: &DifftestOptions,
    out: &mut dyn Write,
) -> Result<DifftestSummary, DifftestError> {
    let sup = crate::oracle::Suppressions::builtin().map_err(|e| DifftestError::Model(e.to_string()))?;
    let mut ex = Executor::start(target, BackendChoice::Both, kc, sup, &mut |l| eprintln!("{l}"))?;
    let boot = ex.boot.clone();
    let areas = generate::GenArea::of(&boot.areas);
    // Ops the kernel refuses (its boot self-check) are not generated: said once, never run.
    let refused = ex.refused_kinds();
    if !refused.is_empty() {
        let _ = writeln!(
            out,
            "{}: this kernel refuses {}: programs are generated without them",
            target.name,
            refused.join(", ")
        );
    }
    let mut sum = DifftestSummary::default();
    let t = Instant::now();
    let mut last_progress = Instant::now();
    for s in opts.seed..opts.seed.saturating_add(opts.count) {
        let prog = generate::without_kinds(generate::program_for(s, &areas), &refused);
        if let Some(m) = ex.reference.as_mut() {
            // What the reset will expect: boot, or boot plus arm64 pool growth.
            m.reset().map_err(SessionError::Backend)?;
            if !crate::oracle::compare::same_layout(&m.observe(), &boot) {
                sum.grown_resets += 1;
            }
        }
        let e = match ex.execute(&prog) {
            Ok(e) => e,
            Err(e) => {
                sum.errors += 1;
                eprintln!("error: seed {s}: {e}");
                continue;
            }
        };
        sum.programs += 1;
        sum.ops += e.resolved.ops.len() as u64;
        for v in e.verdicts.iter().filter(|v| v.suppressed.is_some()) {
            *sum.suppressed.entry(v.signature.clone()).or_default() += 1;
        }
        if let Some(err) = &e.subject_error {
            let why = match err {
                BackendError::Guest { console: c, .. } => crate::oracle::console::scan(c)
                    .first()
                    .map(|r| format!(": kernel said {}", r.title))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            eprintln!("error: seed {s}: {}{why}", err.to_string().lines().next().unwrap_or_default());
        }
        if e.harness_error() {
            sum.errors += 1;
        }
        if e.finding() || e.harness_error() {
            if e.finding() {
                sum.divergences += 1;
            }
            let _ = writeln!(out, "FINDING at seed {s}:");
            for v in e.verdicts.iter().filter(|v| v.suppressed.is_none()) {
                let _ = writeln!(out, "  {v}");
            }
            match save(&opts.out_dir, target, s, &prog.to_text()) {
                Ok(p) => {
                    let _ = writeln!(out, "  program: {}", p.display());
                    sum.reproducers.push(p);
                }
                Err(err) => eprintln!("error: cannot write the reproducer of seed {s}: {err}"),
            }
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            last_progress = Instant::now();
            sum.reboots = ex.subject.as_ref().map_or(0, |k| k.reboots);
            sum.seconds = t.elapsed().as_secs_f64();
            eprintln!("progress: {}", sum.render());
        }
    }
    sum.reboots = ex.subject.as_ref().map_or(0, |k| k.reboots);
    sum.seconds = t.elapsed().as_secs_f64();
    for (sig, n) in &sum.suppressed {
        let _ = writeln!(out, "suppressed: {sig} ({n} programs)");
    }
    Ok(sum)
}

fn save(dir: &Path, target: &Target, seed: u64, text: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("difftest-{}-{seed}.prog", target.name));
    std::fs::write(&path, format!("# cmafuzz difftest --target {} seed {seed}\n{text}", target.name))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_check_of_generated_programs_is_clean_on_every_target() {
        for t in crate::targets::all().expect("targets") {
            let sum = model_check(&t, 300, 1).expect("model runs");
            assert_eq!(sum.violation, None, "{}", t.name);
            assert_eq!(sum.programs, 300);
        }
    }

    #[test]
    fn exit_code_puts_errors_before_divergences() {
        let s = DifftestSummary { divergences: 1, errors: 1, ..Default::default() };
        assert_eq!(s.exit_code(), 2);
        let s = DifftestSummary { divergences: 1, ..Default::default() };
        assert_eq!(s.exit_code(), 1);
        assert_eq!(DifftestSummary::default().exit_code(), 0);
    }
}
