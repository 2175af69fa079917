//! `cmafuzz validate`: what a patch series changes in CMA / coherent-DMA behaviour, before it is
//! posted. The series (`series`) is checked against its base (`apply`: a series that does not
//! apply is its own result, exit 2), then per target the same programs run on the base kernel
//! and on the patched one, each judged against the model, and each program's patched run also
//! judged against its base run (the kernel-vs-kernel path of `replay --vs-kernel-patch`).
//! `judge` applies syz-diff's rule to every verdict kind: introduced = on patched, never on base,
//! and the reproducer gives it again on patched and not on base; it also reports what the series
//! removes (a known issue it fixes) and base/patched differences the model agrees with neither.
//! Each introduced finding is bisected over the series' prefixes to its first patch.

pub mod apply;
pub mod common;
pub mod judge;
pub mod report;
pub mod series;

use crate::backend::kernel::boot::KernelChoice;
use crate::bisect::git::{Repo, Worktree};
use crate::build::cache;
use crate::diff::{BackendChoice, ExecError, Executor};
use crate::findings::programs::{self, LoadedProgram};
use crate::oracle::Suppressions;
use crate::targets::Target;
pub use common::{counts, gives, human, ProgramRecord, ValidateError};
use reference_impl::program::Program;
use report::{Report, TargetReport};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a minimizer is asked: shrink `program` so it still gives `signature` on `kernel`.
pub struct MinimizeRequest<'a> {
    pub target: &'a Target,
    pub kernel: &'a KernelChoice,
    pub program: &'a Program,
    pub signature: &'a str,
}

/// The hook for minimizing an introduced finding's reproducer (the CLI's runs
/// `findings::minimize` on the patched kernel); `None` keeps the reproducer as found. Called
/// for the shortest reproducers first.
pub type MinimizeHook = Box<dyn Fn(&MinimizeRequest) -> Option<Program>>;

/// Everything `cmafuzz validate` was asked to do.
pub struct ValidateOptions {
    /// A format-patch directory, an mbox/.mbx file, or `BASE..TIP` in `kernel_src`.
    pub series: String,
    pub kernel_src: Option<PathBuf>,
    pub targets: Vec<Target>,
    /// The campaign budget on each side (zero: no campaign, the fixed inputs only).
    pub duration: Duration,
    /// A campaign's output (`OUT` or `OUT/findings`): every reproducer runs on both sides.
    pub findings: Option<PathBuf>,
    /// Program directories run on both sides (the seed and regression corpora).
    pub corpora: Vec<PathBuf>,
    /// How many generated programs (the difftest set) run on both sides, from `seed`.
    pub generated: u64,
    pub seed: u64,
    pub watchdog: Option<Duration>,
    pub sup: Suppressions,
    /// Hook for minimizing reproducers of introduced findings.
    pub minimize: Option<MinimizeHook>,
}

/// The campaign half of the inputs: given the target, a kernel, the side's name and the
/// functions the series changes (to steer towards), runs an equal-budget campaign and returns
/// the reproducers it found. Supplied by the caller (the CLI runs `cmafuzz fuzz` as a child
/// process, since a campaign forks its clients).
pub type CampaignRunner<'a> =
    &'a mut dyn FnMut(&Target, &KernelChoice, &str, Duration, &[String]) -> Result<CampaignFound, ValidateError>;

/// What one side's campaign kept.
#[derive(Debug, Default)]
pub struct CampaignFound {
    pub programs: Vec<LoadedProgram>,
    /// How the campaign was steered: `reached K of N KCOV sites of the changed functions`, or
    /// why it was not.
    pub steering: Option<String>,
}

fn progress(line: &str) {
    eprintln!("{line}");
}

/// Runs the whole validation. `Ok` carries the report even when the series does not apply
/// (its exit code says 2 then); `Err` is an error before or outside the judgement.
pub fn validate(opts: &ValidateOptions, campaign: Option<CampaignRunner>) -> Result<Report, ValidateError> {
    let start = Instant::now();
    let series = series::load(&opts.series, opts.kernel_src.as_deref())?;
    let mut report = Report::new(&series, opts.duration);
    let work = tempfile::Builder::new()
        .prefix("cmafuzz-validate-")
        .tempdir()
        .map_err(|e| ValidateError::Io { what: "a private directory".into(), msg: e.to_string() })?;
    let patches = apply::write_patches(&series, &work.path().join("patches"))?;
    let (base_src, base_desc) = resolve_base(&series, opts.kernel_src.as_deref())?;
    report.base.clone_from(&base_desc);
    // Everything the runs need is checked before any kernel is built: the series applies to
    // every target's base, the programs parse.
    for t in &opts.targets {
        let tree = match &base_src {
            Some(dir) => dir.clone(),
            None => crate::build::kernel::pristine_tree(t, &mut |l| progress(l))?,
        };
        let name = match &base_src {
            Some(_) => base_desc.clone(),
            None => format!("{} ({})", t.source_package, t.name),
        };
        if let Err(e) = apply::check(&series, &patches, &tree, &name, &work.path().join("apply")) {
            return match e {
                apply::ApplyError::DoesNotApply { .. } => {
                    report.does_not_apply = Some(e.to_string());
                    report.seconds = start.elapsed().as_secs_f64();
                    report.finish();
                    Ok(report)
                }
                other => Err(other.into()),
            };
        }
    }
    let fixed = fixed_inputs(opts)?;
    report.inputs.clone_from(&fixed.1);
    let watchdog = opts.watchdog;
    let base_kc = KernelChoice { src: base_src.clone(), patches: vec![], watchdog };
    let patched_kc = KernelChoice { src: base_src.clone(), patches: patches.clone(), watchdog };
    let mut campaign = campaign;
    for t in &opts.targets {
        let mut programs = fixed.0.clone();
        programs.extend(generated(t, opts.generated, opts.seed));
        let mut tr = TargetReport::new(t);
        if let Some(run) = campaign.as_mut() {
            if !opts.duration.is_zero() {
                // Equal budgets, patched side first; each side's finds run on both.
                let c = Instant::now();
                let focus = series.functions();
                for (side, kc) in [("patched", &patched_kc), ("base", &base_kc)] {
                    let found = run(t, kc, side, opts.duration, &focus)?;
                    let steer = found.steering.as_deref().map(|s| format!("; {s}")).unwrap_or_default();
                    tr.campaign.push(format!(
                        "{side} {} kept {} programs{steer}",
                        human(opts.duration),
                        found.programs.len()
                    ));
                    programs.extend(found.programs);
                }
                tr.campaign_seconds = c.elapsed().as_secs_f64();
            }
        }
        let (records, mut exb, mut exp) = run_target(t, &base_kc, &patched_kc, &programs, &opts.sup, &mut tr)?;
        let j = judge::judge(&records, &t.name);
        let mut confirmed = judge::confirm(&t.name, &mut exb, &mut exp, j, &records)?;
        // Both VMs go before the prefixes' kernels boot.
        drop((exb, exp));
        bisect_first_patches(t, &base_kc, &patches, &opts.sup, &mut confirmed.introduced)?;
        if let Some(hook) = &opts.minimize {
            // The shortest reproducers first: a hook that reuses what it minimized before
            // starts the longer ones from there.
            let mut order: Vec<usize> = (0..confirmed.introduced.len()).collect();
            order.sort_by_key(|&i| confirmed.introduced[i].program.ops.len());
            for i in order {
                let f = &mut confirmed.introduced[i];
                let req = MinimizeRequest {
                    target: t,
                    kernel: &patched_kc,
                    program: &f.program,
                    signature: &f.verdict.signature,
                };
                if let Some(p) = hook(&req) {
                    f.original_ops = Some(f.program.ops.len());
                    f.program = p;
                    f.minimized = true;
                }
            }
        }
        report.add_target(tr, confirmed);
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.finish();
    Ok(report)
}

/// The base tree (`None`: the target's own Debian source) and how the report names it.
fn resolve_base(s: &series::Series, kernel_src: Option<&Path>) -> Result<(Option<PathBuf>, String), ValidateError> {
    if let Some(sha) = &s.range_base {
        // A range is in --kernel-src by construction.
        let dir = kernel_src.unwrap_or(Path::new("."));
        let wt = base_worktree(dir, sha)?;
        return Ok((Some(wt), format!("{} (the range's base) of {}", short(sha), dir.display())));
    }
    match (kernel_src, &s.base_commit) {
        (Some(dir), Some(sha)) if dir.join(".git").exists() => {
            let has = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
                .status()
                .is_ok_and(|s| s.success());
            if !has {
                return Ok((
                    Some(dir.to_path_buf()),
                    format!("{} as it is (the series' base-commit {} is not in it)", dir.display(), short(sha)),
                ));
            }
            let head = crate::build::kernel::run_capture(
                std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]),
            )?;
            if head.trim().starts_with(sha.as_str()) || sha.starts_with(head.trim()) {
                return Ok((Some(dir.to_path_buf()), format!("{} at base-commit {}", dir.display(), short(sha))));
            }
            let wt = base_worktree(dir, sha)?;
            Ok((Some(wt), format!("base-commit {} of {}", short(sha), dir.display())))
        }
        (Some(dir), _) => Ok((Some(dir.to_path_buf()), format!("{} as it is", dir.display()))),
        (None, Some(sha)) => {
            Ok((None, format!("the target's own kernel source (base-commit {} needs --kernel-src)", short(sha))))
        }
        (None, None) => Ok((None, "the target's own kernel source".into())),
    }
}

fn short(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

/// A private detached worktree of `dir`'s repository at `sha`, under the cache (reused).
fn base_worktree(dir: &Path, sha: &str) -> Result<PathBuf, ValidateError> {
    let repo = Repo::open(dir)?;
    let mut h = cache::KeyHasher::new("validate-worktree");
    h.part(repo.common_dir.to_string_lossy().as_bytes());
    let key = h.finish();
    let wt_dir = cache::root().join("validate").join(format!("base-{}", &key[..16.min(key.len())]));
    std::fs::create_dir_all(cache::root().join("validate"))
        .map_err(|e| ValidateError::Io { what: "the validate cache".into(), msg: e.to_string() })?;
    let wt = Worktree::open(&repo, &wt_dir, sha)?;
    wt.checkout(sha)?;
    Ok(wt.dir)
}

/// The corpora and `--findings` reproducers, and a line per source for the report.
fn fixed_inputs(opts: &ValidateOptions) -> Result<(Vec<LoadedProgram>, Vec<String>), ValidateError> {
    let mut progs = Vec::new();
    let mut lines = Vec::new();
    for dir in &opts.corpora {
        let files = programs::collect_files(std::slice::from_ref(dir))?;
        for f in &files {
            progs.push(programs::load(f)?);
        }
        lines.push(format!("{} ({} programs)", dir.display(), files.len()));
    }
    if let Some(f) = &opts.findings {
        let found = finding_reproducers(f)?;
        lines.push(format!("{} ({} reproducers)", f.display(), found.len()));
        progs.extend(found);
    }
    if opts.generated > 0 {
        lines.push(format!(
            "{} generated programs (seeds {}..{})",
            opts.generated,
            opts.seed,
            opts.seed + opts.generated
        ));
    }
    Ok((progs, lines))
}

/// Every `reproducer.prog` of a findings store (`OUT` or `OUT/findings`).
pub fn finding_reproducers(dir: &Path) -> Result<Vec<LoadedProgram>, ValidateError> {
    let root = if dir.join("findings").is_dir() { dir.join("findings") } else { dir.to_path_buf() };
    let rd = std::fs::read_dir(&root)
        .map_err(|e| ValidateError::Io { what: root.display().to_string(), msg: e.to_string() })?;
    let mut files: Vec<PathBuf> =
        rd.filter_map(Result::ok).map(|e| e.path().join("reproducer.prog")).filter(|p| p.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return Err(ValidateError::NoFindings(dir.to_path_buf()));
    }
    files.iter().map(|f| programs::load(f).map_err(ValidateError::from)).collect()
}

/// The generated difftest set for `t` (resolved against the target's recorded layout).
fn generated(t: &Target, count: u64, seed: u64) -> Vec<LoadedProgram> {
    let areas = crate::generate::GenArea::of(&t.boot_observation().areas);
    (seed..seed + count)
        .map(|s| LoadedProgram {
            path: PathBuf::from(format!("generated:{s}")),
            program: crate::generate::program_for(s, &areas),
        })
        .collect()
}

/// Boots both kernels and runs every program on each (judged against the model) and the
/// patched run against the base run.
fn run_target(
    t: &Target,
    base: &KernelChoice,
    patched: &KernelChoice,
    programs: &[LoadedProgram],
    sup: &Suppressions,
    tr: &mut TargetReport,
) -> Result<(Vec<ProgramRecord>, Executor, Executor), ValidateError> {
    let b0 = Instant::now();
    let mut exb = Executor::start(t, BackendChoice::Both, base, sup.clone(), &mut |l| progress(l))?;
    tr.base_ready_seconds = b0.elapsed().as_secs_f64();
    let p0 = Instant::now();
    let mut exp = Executor::start(t, BackendChoice::Both, patched, sup.clone(), &mut |l| progress(l))?;
    tr.patched_ready_seconds = p0.elapsed().as_secs_f64();
    tr.base_kernel = exb.subject.as_ref().and_then(|k| k.hello().map(|h| h.release.clone())).unwrap_or_default();
    tr.patched_kernel = exp.subject.as_ref().and_then(|k| k.hello().map(|h| h.release.clone())).unwrap_or_default();
    if let Some(k) = exp.subject.as_mut() {
        k.name = "kernel (patched)".into();
    }
    let r0 = Instant::now();
    let mut out = Vec::new();
    out.push(ProgramRecord {
        label: "<boot layout>".into(),
        program: Program { ops: vec![] },
        base: exb.placement_verdict().into_iter().collect(),
        patched: exp.placement_verdict().into_iter().collect(),
        kernels: vec![],
    });
    for lp in programs {
        let label = lp.path.display().to_string();
        let eb = match exb.execute(&lp.program) {
            Ok(e) => e,
            // A program that names an area this target does not have is not this target's.
            Err(ExecError::Resolve(_)) => continue,
            Err(e) => return Err(ValidateError::Exec(format!("{label}: {e}"))),
        };
        let ep = exp.execute(&lp.program).map_err(|e| ValidateError::Exec(format!("{label}: {e}")))?;
        let kernels = match exp.subject.as_mut() {
            Some(k) => exb.against(&eb, k).verdicts,
            None => vec![],
        };
        tr.programs += 1;
        tr.harness_errors += usize::from(eb.harness_error()) + usize::from(ep.harness_error());
        out.push(ProgramRecord {
            label,
            program: lp.program.clone(),
            base: eb.verdicts,
            patched: ep.verdicts,
            kernels,
        });
    }
    tr.run_seconds = r0.elapsed().as_secs_f64();
    Ok((out, exb, exp))
}

/// The first patch of the series that introduces each finding: a binary search over the
/// series' prefixes (the empty prefix is the base, which never gives it; the whole series does),
/// one kernel per prefix tested, shared by every finding that needs it.
fn bisect_first_patches(
    t: &Target,
    base: &KernelChoice,
    patches: &[PathBuf],
    sup: &Suppressions,
    found: &mut [judge::Introduced],
) -> Result<(), ValidateError> {
    let n = patches.len();
    let mut bounds: Vec<(usize, usize)> = found.iter().map(|_| (0, n)).collect();
    let mut tested: std::collections::BTreeMap<(usize, usize), bool> = std::collections::BTreeMap::new();
    while let Some(i) = bounds.iter().position(|(lo, hi)| hi - lo > 1) {
        let mid = (bounds[i].0 + bounds[i].1) / 2;
        let kc = KernelChoice { src: base.src.clone(), patches: patches[..mid].to_vec(), watchdog: base.watchdog };
        progress(&format!("[{}] validate: bisecting over the series: booting the first {mid} of {n} patches", t.name));
        let mut ex = Executor::start(t, BackendChoice::Both, &kc, sup.clone(), &mut |l| progress(l))?;
        for (j, f) in found.iter().enumerate() {
            let (lo, hi) = bounds[j];
            if !(lo < mid && mid < hi) {
                continue;
            }
            let yes = match tested.get(&(j, mid)) {
                Some(y) => *y,
                None => {
                    let y = gives(&mut ex, &f.program, &f.verdict.signature)?;
                    tested.insert((j, mid), y);
                    y
                }
            };
            bounds[j] = if yes { (lo, mid) } else { (mid, hi) };
        }
    }
    for (f, (_, hi)) in found.iter_mut().zip(bounds) {
        f.first_patch = Some(hi);
    }
    Ok(())
}
