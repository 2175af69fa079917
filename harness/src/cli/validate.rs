//! `cmafuzz validate`: what a patch series changes, on base and patched kernels.

use crate::backend::kernel::boot::KernelChoice;
use crate::findings::programs::{self, LoadedProgram};
use crate::targets::{self, Target};
use crate::validate::{self, ValidateError, ValidateOptions};
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
        sup: crate::oracle::Suppressions::builtin()?,
        // `cmafuzz minimize` (the triage work) plugs in here once it lands.
        minimize: None,
    };
    let campaign_dir = tempfile::Builder::new().prefix("cmafuzz-validate-campaign-").tempdir()?;
    let seed = opts.seed;
    // The campaigns start from the first corpus (the seeds, by default).
    let seeds = opts.corpora.first().cloned().unwrap_or_else(|| PathBuf::from("corpora/seed"));
    let mut runner = |t: &Target, kc: &KernelChoice, side: &str, d: Duration| {
        run_campaign(t, kc, &seeds, &campaign_dir.path().join(format!("{}-{side}", t.name)), d, seed)
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

/// One side's campaign: `cmafuzz fuzz` as a child (a campaign forks its clients), one core,
/// its own loopback port; what it kept (queue and findings) comes back as programs.
fn run_campaign(
    t: &Target,
    kc: &KernelChoice,
    seeds: &Path,
    out: &Path,
    d: Duration,
    seed: u64,
) -> Result<Vec<LoadedProgram>, ValidateError> {
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
    Ok(progs)
}
