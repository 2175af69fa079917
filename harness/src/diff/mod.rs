//! One program through the whole spine: reset both sides, run the program on the model and on
//! the kernel, read the kernel's console, compare, scan the kernel's page tables for aliases and
//! judge everything with the oracle. `replay`, `difftest` and the fuzzer's executor all go
//! through [`Executor::execute`].

use crate::backend::{Backend, BackendError, KernelBackend, ModelBackend, ProgramRun};
use crate::oracle::compare::{self, Divergence, Point};
use crate::oracle::console::{self, Report};
use crate::oracle::{self, AliasSeen, Suppressions, Verdict, VerdictKind};
use crate::backend::kernel::boot::{self as session, SessionError};
use crate::targets::Target;
use reference_impl::observation::Observation;
use reference_impl::program::{Program, ResolvedProgram};
use std::time::{Duration, Instant};

/// Which sides of the spine run and are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// The model alone.
    Model,
    /// The kernel alone (the model still runs unseen, so resets know where the kernel must be).
    Kernel,
    /// Both, compared.
    Both,
}

/// Everything one program produced.
#[derive(Debug)]
pub struct Execution {
    pub resolved: ResolvedProgram,
    /// The model's run (absent with `--backend kernel`, where the model runs unseen).
    pub model: Option<ProgramRun>,
    pub kernel: Option<ProgramRun>,
    pub divergences: Vec<Divergence>,
    pub verdicts: Vec<Verdict>,
    /// The kernel side failed (dead or hung guest, garbled frame): already judged in `verdicts`.
    pub kernel_error: Option<BackendError>,
    /// Time spent in the kernel's run (round trips included).
    pub kernel_time: Duration,
    /// Kernel code coverage of the run (KCOV PCs, deduplicated), when the kernel collects it.
    pub coverage: Vec<u64>,
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

/// The backends of one target, kept across programs.
pub struct Executor {
    pub target: Target,
    pub choice: BackendChoice,
    pub kernel: Option<KernelBackend>,
    /// Runs in lockstep even with `--backend kernel`, so resets know where the kernel must be.
    pub model: Option<ModelBackend>,
    /// The layout programs are resolved against (the kernel's at boot, or the target's record).
    pub boot: Observation,
    pub sup: Suppressions,
}

impl Executor {
    /// Builds (or finds) and boots what `choice` needs.
    pub fn start(
        target: &Target,
        choice: BackendChoice,
        kc: &session::KernelChoice,
        sup: Suppressions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Executor, SessionError> {
        let (kernel, boot, profile) = if choice == BackendChoice::Model {
            (None, target.boot_observation(), target.profile()?)
        } else {
            let k = session::boot_kernel(target, kc, progress)?;
            let boot = k.boot_observation().clone();
            let profile = session::profile_from_kernel(target, &k)?;
            (Some(k), boot, profile)
        };
        let model = match ModelBackend::new(profile, boot.clone()) {
            Ok(m) => Some(m),
            Err(_) if choice == BackendChoice::Kernel => None,
            Err(e) => return Err(SessionError::Backend(e)),
        };
        Ok(Executor { target: target.clone(), choice, kernel, model, boot, sup })
    }

    /// The kernel placed its areas differently from the target's record, or its default area
    /// elsewhere than the model predicts (`reference_impl::placement`, spec §1.6): a finding about
    /// the kernel, not about one program.
    pub fn placement_verdict(&self) -> Option<Verdict> {
        self.kernel.as_ref()?;
        let mut notes = Vec::new();
        if let Some(note) = session::placement_note(&self.target, &self.boot) {
            notes.push(note);
        }
        if let (Some(m), Some(def)) = (&self.model, self.boot.areas.iter().find(|a| a.name == "reserved")) {
            // Device-tree regions are reserved before the default area is placed.
            let reserved: Vec<_> =
                self.boot.areas.iter().filter(|a| a.name != "reserved").map(|a| (a.base_pfn, a.count)).collect();
            if let Some(want) = reference_impl::placement::predict_default_area(m.profile(), def.count, &reserved) {
                if want != def.base_pfn {
                    notes.push(format!(
                        "the default area is at pfn {:#x}, the model predicts {:#x} (top-down, highmem first)",
                        def.base_pfn.0, want.0
                    ));
                }
            }
        }
        if notes.is_empty() {
            return None;
        }
        Some(Verdict {
            kind: VerdictKind::Placement,
            signature: "placement:boot".into(),
            op_index: None,
            detail: notes.join("; "),
            excerpt: None,
            suppressed: self.sup.find(&self.target.name, "placement:boot"),
        })
    }

    /// Observe after every op on both sides (`--observe-each`).
    pub fn set_observe_each(&mut self, on: bool) {
        if let Some(k) = self.kernel.as_mut() {
            k.observe_each = on;
        }
        if let Some(m) = self.model.as_mut() {
            m.observe_each = on;
        }
    }

    /// Collect KCOV coverage of every kernel run into [`Execution::coverage`] (fuzz campaigns).
    /// Without KCOV in the guest (the hello says so) this stays off and coverage stays empty.
    pub fn set_kcov(&mut self, on: bool) {
        if let Some(k) = self.kernel.as_mut() {
            k.kcov = on && k.hello().is_some_and(crate::guest::wire::Hello::kcov);
        }
    }

    /// Whether kernel runs collect KCOV coverage.
    pub fn kcov(&self) -> bool {
        self.kernel.as_ref().is_some_and(|k| k.kcov)
    }

    /// Resets both sides to the boot state (the kernel to where the model is: boot plus arm64
    /// pool growth), runs `prog` on both and judges it. `Err` only when the program does not
    /// resolve (an unknown area) or the model cannot run it.
    pub fn execute(&mut self, prog: &Program) -> Result<Execution, ExecError> {
        let resolved = prog.resolve(&self.boot.areas).map_err(|e| ExecError::Resolve(e.to_string()))?;
        let mut reset_err = None;
        if let Some(m) = self.model.as_mut() {
            m.reset().map_err(|e| ExecError::Model(e.to_string()))?;
        }
        if let Some(k) = self.kernel.as_mut() {
            let expected = self.model.as_ref().map_or_else(|| self.boot.clone(), ModelBackend::observe);
            match k.reset_expecting(&expected) {
                Ok(true) => self.model.iter_mut().for_each(ModelBackend::reset_to_boot),
                Ok(false) => {}
                Err(e) => reset_err = Some(e),
            }
            if let Some(m) = self.model.as_mut() {
                m.set_pkmap_last(k.pkmap_last);
            }
        }
        let mrun = match self.model.as_mut() {
            Some(m) => Some(m.run(&resolved).map_err(|e| ExecError::Model(e.to_string()))?),
            None => None,
        };
        let mrun = if self.choice == BackendChoice::Kernel { None } else { mrun };
        let mut krun = None;
        let mut kernel_error = None;
        let mut kernel_time = Duration::ZERO;
        if let Some(k) = self.kernel.as_mut() {
            let res = match reset_err {
                Some(e) => Err(e),
                None => {
                    let t = Instant::now();
                    let r = k.run(&resolved);
                    kernel_time = t.elapsed();
                    r
                }
            };
            match res {
                Ok(r) => krun = Some(r),
                Err(e) => kernel_error = Some(e),
            }
        }
        let reports = self.new_console_reports();
        let divergences = match (&mrun, &krun) {
            (Some(m), Some(k)) => compare::compare(&resolved, m, k, &self.boot.areas),
            _ => vec![],
        };
        let aliases = match (&krun, &self.model) {
            (Some(k), Some(m)) => scan_aliases(m, k),
            _ => vec![],
        };
        let verdicts = oracle::judge(
            &oracle::Evidence {
                prog: &resolved,
                divergences: &divergences,
                aliases: &aliases,
                console: &reports,
                error: kernel_error.as_ref(),
            },
            &self.sup,
            &self.target.name,
        );
        let coverage = krun.as_ref().map(|k| k.coverage.clone()).unwrap_or_default();
        Ok(Execution {
            resolved,
            model: mrun,
            kernel: krun,
            divergences,
            verdicts,
            kernel_error,
            kernel_time,
            coverage,
        })
    }

    /// Console reports printed since the last program: the console's new lines only (a
    /// re-scan of the whole console after every program cost time and, once it passed the
    /// 1 MiB read bound, lost every later report).
    fn new_console_reports(&mut self) -> Vec<Report> {
        match self.kernel.as_mut() {
            Some(k) => console::scan(&k.new_console()),
            None => Vec::new(),
        }
    }
}

/// Runs the alias invariant (the model's rules) over every observation of the kernel's run.
fn scan_aliases(model: &ModelBackend, k: &ProgramRun) -> Vec<AliasSeen> {
    let rules = model.alias_rules();
    let mut out = Vec::new();
    let points = k.observations.iter().map(|(i, o)| (Point::Observe(*i), o)).chain([(Point::End, &k.end)]);
    for (at, obs) in points {
        for a in reference_impl::alias::scan(&obs.maps, &rules) {
            let reference_impl::observation::PageAddr::Pfn(p) = a.first else { continue };
            out.push(AliasSeen {
                at,
                first_pfn: p.0,
                pages: a.pages,
                mappings: compare::show_page_maps(&a.mappings),
                rule: match a.class {
                    reference_impl::alias::AliasClass::Violation => None,
                    reference_impl::alias::AliasClass::ByDesign(r) => Some(r.name().to_string()),
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
