//! `cmafuzz validate`: what a patch series changes, on base and patched kernels.

use crate::backend::kernel::boot::KernelChoice;
use crate::findings::programs;
use crate::targets::{self, Target};
use crate::validate::{self, CampaignFound, ValidateError, ValidateOptions};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Args)]
pub struct ValidateArgs {
    /// The series: a `git format-patch` directory (a cover letter is read, not applied), an
    /// mbox/.mbx file (`b4 am`), or a git range BASE..TIP in --kernel-src.
    #[arg(long, value_name = "DIR|FILE|BASE..TIP")]
    pub series: String,
    /// The kernel tree the series is for (its base-commit is checked out in a private worktree
    /// when the tree has it); default: each target's own kernel source.
    #[arg(long = "kernel-src", value_name = "DIR")]
    pub kernel_src: Option<PathBuf>,
    /// Targets to validate on (repeatable; default: the default target).
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Campaign budget on each side (equal); 0 runs the fixed inputs only.
    #[arg(long, default_value = "2m")]
    pub duration: String,
    /// A campaign's output (OUT or OUT/findings): every reproducer runs on both kernels.
    #[arg(long, value_name = "DIR")]
    pub findings: Option<PathBuf>,
    /// Program directories run on both kernels (repeatable).
    #[arg(long = "corpus", value_name = "DIR", default_values = ["corpora/seed", "corpora/regressions"])]
    pub corpora: Vec<PathBuf>,
    /// Generated programs (the difftest set) run on both kernels.
    #[arg(long, default_value_t = 50)]
    pub generated: u64,
    /// First seed of the generated programs and of the campaigns.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the Markdown summary here (it is printed on stdout too).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// A program that completes no op for this long is a hang (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_watchdog)]
    pub watchdog: Option<Duration>,
    /// Time per target for minimizing the reproducers of introduced findings on the patched
    /// kernel (shortest first); 0 keeps them as found.
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub minimize_budget: String,
}

/// Queue entries of each side's campaign that run on both kernels.
const CAMPAIGN_CORPUS: usize = 100;

fn parse_budget(s: &str) -> anyhow::Result<Duration> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::campaign::parse_duration(s).with_context(|| format!("--duration {s}"))
}

pub fn run(a: ValidateArgs) -> anyhow::Result<u8> {
    let duration = parse_budget(&a.duration)?;
    let minimize_budget = parse_budget(&a.minimize_budget).map_err(|_| {
        anyhow::anyhow!("--minimize-budget {}: expected a duration like 2m or 90s, or 0 to disable", a.minimize_budget)
    })?;
    let sup = crate::oracle::Suppressions::builtin()?;
    let targets: Vec<Target> = if a.targets.is_empty() {
        vec![targets::find(None)?]
    } else {
        a.targets.iter().map(|t| targets::find(Some(t))).collect::<Result<_, _>>()?
    };
    for c in &a.corpora {
        if !c.is_dir() {
            anyhow::bail!("--corpus {}: no such directory (run from the repository, or give its path)", c.display());
        }
    }
    if let Some(dir) = &a.kernel_src {
        errln!("{}", crate::build::tree_profile::read(dir)?.describe());
    }
    let opts = ValidateOptions {
        series: a.series,
        kernel_src: a.kernel_src,
        targets,
        duration,
        findings: a.findings,
        corpora: a.corpora,
        generated: a.generated,
        seed: a.seed,
        watchdog: a.watchdog,
        minimize: (!minimize_budget.is_zero()).then(|| minimize_hook(minimize_budget, sup.clone())),
        sup,
    };
    let campaign_dir = tempfile::Builder::new().prefix("cmafuzz-validate-campaign-").tempdir()?;
    let seed = opts.seed;
    // The campaigns start from the first corpus (the seeds, by default).
    let seeds = opts.corpora.first().cloned().unwrap_or_else(|| PathBuf::from("corpora/seed"));
    let mut runner = |t: &Target, kc: &KernelChoice, side: &str, d: Duration, focus: &[String]| {
        run_campaign(t, kc, &seeds, &campaign_dir.path().join(format!("{}-{side}", t.name)), d, seed, focus)
    };
    let report = validate::validate(&opts, Some(&mut runner)).context("validate")?;
    let md = report.markdown();
    out!("{md}");
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md).with_context(|| format!("--markdown {}", p.display()))?;
    }
    if let Some(p) = &a.json {
        std::fs::write(p, report.json()).with_context(|| format!("--json {}", p.display()))?;
    }
    if let Some(e) = &report.does_not_apply {
        errln!("error: {e}");
    }
    Ok(report.exit_code)
}

/// The minimize hook: each introduced finding's reproducer shrunk on the patched kernel by
/// `findings::minimize::minimize` (ddmin, then arguments), keeping the judgement's rule: the
/// program still gives the verdict among its verdicts. One VM per target for all of its
/// findings, within `budget` per target (the smallest program so far is kept when it runs out).
/// A program minimized for an earlier (shorter) finding that gives this one's verdict too is
/// where this one starts. `None` when nothing shorter or simpler was found, or on an error (one
/// line on stderr).
fn minimize_hook(budget: Duration, sup: crate::oracle::Suppressions) -> validate::MinimizeHook {
    use crate::diff::{BackendChoice, ExecError, Executor};
    use reference_impl::program::Program;
    use std::cell::RefCell;
    use std::time::Instant;
    struct Vm {
        target: String,
        ex: Executor,
        spent: Duration,
        done: Vec<Program>,
    }
    let vm: RefCell<Option<Vm>> = RefCell::new(None);
    Box::new(move |req: &validate::MinimizeRequest| {
        if req.program.ops.len() <= 1 {
            return None;
        }
        let mut slot = vm.borrow_mut();
        if !slot.as_ref().is_some_and(|v| v.target == req.target.name) {
            // The previous target's VM goes before this one boots.
            *slot = None;
            match Executor::start(req.target, BackendChoice::Both, req.kernel, sup.clone(), &mut |l| errln!("{l}")) {
                Ok(ex) => {
                    *slot = Some(Vm { target: req.target.name.clone(), ex, spent: Duration::ZERO, done: Vec::new() })
                }
                Err(e) => {
                    errln!("[{}] validate: reproducers not minimized: {e}", req.target.name);
                    return None;
                }
            }
        }
        let v = slot.as_mut()?;
        let left = budget.saturating_sub(v.spent);
        if left.is_zero() {
            return None;
        }
        let t = Instant::now();
        let sig = req.signature.to_string();
        let ex = &mut v.ex;
        let mut runner = |p: &Program| -> Result<Option<String>, String> {
            match ex.execute(p) {
                Ok(e) => Ok(e.verdicts.iter().any(|x| x.signature == sig).then(|| sig.clone())),
                Err(ExecError::Resolve(_)) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        };
        let mut from = req.program.clone();
        for p in &v.done {
            if p.ops.len() < from.ops.len() && runner(p).ok().flatten().is_some() {
                from = p.clone();
                break;
            }
        }
        let r = crate::findings::minimize::minimize(&from, req.signature, &mut runner, Some(t + left));
        v.spent += t.elapsed();
        match r {
            Ok(m) if m.program != *req.program => {
                errln!(
                    "[{}] validate: {}: {} ops -> {} in {} runs",
                    req.target.name,
                    req.signature,
                    req.program.ops.len(),
                    m.program.ops.len(),
                    m.runs
                );
                v.done.push(m.program.clone());
                Some(m.program)
            }
            Ok(_) => None,
            Err(e) => {
                errln!("[{}] validate: {}: not minimized: {e}", req.target.name, req.signature);
                None
            }
        }
    })
}

/// One side's campaign: `cmafuzz fuzz` as a child (a campaign forks its clients), one core,
/// its own loopback port, steered towards `focus` (`--focus`); what it kept (queue and
/// findings) comes back as programs, with how much of the focus it reached.
fn run_campaign(
    t: &Target,
    kc: &KernelChoice,
    seeds: &Path,
    out: &Path,
    d: Duration,
    seed: u64,
    focus: &[String],
) -> Result<CampaignFound, ValidateError> {
    let err = |msg: String| ValidateError::Io { what: format!("the {} campaign in {}", t.name, out.display()), msg };
    let exe = std::env::current_exe().map_err(|e| err(e.to_string()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| err(format!("no free loopback port: {e}")))?
        .port();
    let mut cmd = Command::new(exe);
    cmd.args(["fuzz", "--target", &t.name, "--cores", "1", "--minimize-budget", "0"])
        .arg("--corpus")
        .arg(seeds)
        .arg("--duration")
        .arg(format!("{}s", d.as_secs().max(1)))
        .arg("--out")
        .arg(out)
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        // Its status lines are progress: stdout stays the report's.
        .stdout(std::process::Stdio::from(std::io::stderr()));
    if let Some(src) = &kc.src {
        cmd.arg("--kernel-src").arg(src);
    }
    for f in focus {
        cmd.arg("--focus").arg(f);
    }
    for p in &kc.patches {
        cmd.arg("--kernel-patch").arg(p);
    }
    errln!(
        "[{}] validate: {} s campaign on the {} kernel",
        t.name,
        d.as_secs(),
        if kc.patches.is_empty() { "base" } else { "patched" }
    );
    let status = cmd.status().map_err(|e| err(e.to_string()))?;
    // 0: nothing found, 1: findings; anything else is the campaign's own error.
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(err(format!("cmafuzz fuzz exited with {status} (its log: {})", out.join("clients.log").display())));
    }
    let mut progs = Vec::new();
    let corpus = out.join("corpus");
    if corpus.is_dir() {
        // At most CAMPAIGN_CORPUS queue entries (in name order): on a kernel that leaks, every
        // program restarts the VM, and the findings, all kept, are what matters.
        let files = programs::collect_files(&[corpus]).unwrap_or_default();
        let mut bad = 0;
        for f in files.iter().take(CAMPAIGN_CORPUS) {
            match programs::load(f) {
                Ok(p) => progs.push(p),
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            errln!("[{}] validate: {bad} of the campaign's queue files do not load; left out", t.name);
        }
    }
    if out.join("findings").is_dir() {
        if let Ok(found) = validate::finding_reproducers(out) {
            progs.extend(found);
        }
    }
    Ok(CampaignFound { programs: progs, steering: steering(out, focus) })
}

/// What the campaign's last status says of its focus.
fn steering(out: &Path, focus: &[String]) -> Option<String> {
    if focus.is_empty() {
        return None;
    }
    let status: Option<crate::campaign::monitor::Status> =
        std::fs::read_to_string(out.join("stats.json")).ok().and_then(|s| serde_json::from_str(&s).ok());
    Some(match status {
        Some(s) if s.focus_sites > 0 => {
            format!("reached {} of {} KCOV sites of the changed functions", s.focus_reached, s.focus_sites)
        }
        _ => "not steered (no KCOV sites of the changed functions in this kernel)".to_string(),
    })
}
