//! `cmafuzz bisect`: the first bad commit between two revisions of a kernel git tree.

use crate::bisect::git::{GitError, Repo, Worktree};
use crate::bisect::kernel::{Expect, KernelTester};
use crate::bisect::{self, Range};
use crate::build::cache;
use crate::build::tree::InPlaceTree;
use crate::findings::programs::{self, LoadedProgram};
use crate::{disk, findings, targets};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct BisectArgs {
    /// The kernel's git repository (never modified: the bisection runs in a private worktree).
    #[arg(long = "kernel-src", value_name = "GITDIR")]
    pub kernel_src: PathBuf,
    /// A revision where the reproducer passes.
    #[arg(long, value_name = "REV")]
    pub good: String,
    /// A revision where the reproducer fails.
    #[arg(long, value_name = "REV")]
    pub bad: String,
    #[arg(long)]
    pub target: Option<String>,
    /// Apply this patch to every commit built (repeatable, in order).
    #[arg(long = "kernel-patch", value_name = "FILE")]
    pub kernel_patch: Vec<PathBuf>,
    /// "Bad" is any unsuppressed verdict, not only the finding's signature.
    #[arg(long)]
    pub any_finding: bool,
    /// Reproducer runs per commit (doubled when they disagree; see the README's decision rule).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub runs: u16,
    /// Do not build --bad with the culprit reverted to confirm it.
    #[arg(long)]
    pub no_confirm: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where report.txt, report.json and bisect.log (`git bisect replay` input) are written.
    #[arg(long, value_name = "DIR", default_value = "cmafuzz-bisect")]
    pub out: PathBuf,
    /// A program that completes no op for this long is a hang (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_watchdog)]
    pub watchdog: Option<std::time::Duration>,
    /// Program files or finding directories (OUT/findings/<signature>/).
    #[arg(required = true, value_name = "REPRO")]
    pub repro: Vec<PathBuf>,
}

/// A REPRO argument: a finding directory gives its reproducer and signature.
fn load_repro(paths: &[PathBuf]) -> anyhow::Result<(Vec<LoadedProgram>, Vec<String>, Option<String>)> {
    let mut progs = Vec::new();
    let mut sigs = Vec::new();
    let mut target = None;
    for p in paths {
        let meta = p.join("meta.json");
        if p.is_dir() && meta.is_file() {
            let m = findings::read_meta(&meta)?;
            let repro = p.join("reproducer.prog");
            progs.push(programs::load(&repro)?);
            sigs.push(m.signature);
            target.get_or_insert(m.target);
        } else if p.is_dir() {
            anyhow::bail!(
                "{}: a directory without meta.json is not a finding (give a finding directory or a program file)",
                p.display()
            );
        } else {
            progs.push(programs::load(p)?);
        }
    }
    Ok((progs, sigs, target))
}

fn check_patches(patches: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    patches
        .iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .map_err(|_| anyhow::anyhow!("--kernel-patch {}: no such file (give the path of a patch)", p.display()))
        })
        .collect()
}

/// The private worktree of a repository for one architecture: `cache/bisect/<hash>-<arch>`.
fn tree_for(repo: &Repo, arch: &str) -> InPlaceTree {
    let h = disk::sha256_hex(repo.common_dir.to_string_lossy().as_bytes());
    InPlaceTree::at(&cache::root().join("bisect").join(format!("{}-{arch}", &h[..16])))
}

pub fn run(a: BisectArgs) -> anyhow::Result<u8> {
    let (programs, sigs, finding_target) = load_repro(&a.repro)?;
    let t = targets::find(a.target.as_deref().or(finding_target.as_deref()))?;
    let patches = check_patches(&a.kernel_patch)?;
    let repo = Repo::open(&a.kernel_src)?;
    // Revisions are checked before the worktree is made (a typo costs no checkout).
    let bad = repo.resolve("--bad", &a.bad)?;
    let good = repo.resolve("--good", &a.good)?;
    if !repo.is_ancestor(&good, &bad)? {
        return Err(GitError::NotAncestor { good: a.good.clone(), bad: a.bad.clone() }.into());
    }
    let tree = tree_for(&repo, &t.arch);
    std::fs::create_dir_all(&tree.base).map_err(|e| {
        anyhow::anyhow!("{}: {e} (the cache must be writable; set XDG_CACHE_HOME)", tree.base.display())
    })?;
    let _lock = disk::Lock::exclusive(&tree.base.join(".bisect.lock"))
        .map_err(|e| anyhow::anyhow!("{}: {e} (is another bisect of this tree running?)", tree.base.display()))?;
    errln!("bisect: private worktree {} (your checkout is not touched)", tree.src.display());
    let wt = Worktree::open(&repo, &tree.src, &bad)?;
    let expect = if a.any_finding {
        Expect::AnyFinding
    } else if !sigs.is_empty() {
        Expect::Signatures(sigs)
    } else {
        Expect::FromFirst
    };
    let repro_names: Vec<String> = a.repro.iter().map(|p| p.display().to_string()).collect();
    let mut tester = KernelTester {
        target: t.clone(),
        patches,
        tree,
        programs,
        expect,
        runs: usize::from(a.runs),
        suppressions: crate::oracle::Suppressions::builtin()?,
        watchdog: a.watchdog,
        progress: Box::new(|l: &str| errln!("{l}")),
    };
    let range = Range { good: a.good.clone(), bad: a.bad.clone(), confirm: !a.no_confirm };
    let report = bisect::bisect(&repo, &wt, &range, &mut tester, &mut |l| errln!("{l}"))?;
    let text = report.text(&repro_names.join(" "));
    let json = serde_json::json!({ "target": t.name, "reproducer": repro_names, "report": &report,
        "exit": report.exit_code() });
    write_outputs(&a.out, &text, &json, &report.bisect_log)?;
    if a.json {
        outln!("{json}");
    } else {
        out!("{text}");
        outln!("bisect log: {} (`git bisect replay` it)", a.out.join("bisect.log").display());
    }
    Ok(report.exit_code())
}

fn write_outputs(dir: &Path, text: &str, json: &serde_json::Value, log: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("--out {}: {e} (give a writable directory)", dir.display()))?;
    for (name, data) in
        [("report.txt", text.to_string()), ("report.json", json.to_string()), ("bisect.log", log.to_string())]
    {
        disk::write_atomic(&dir.join(name), data.as_bytes())
            .map_err(|e| anyhow::anyhow!("--out {}: writing {name}: {e}", dir.display()))?;
    }
    Ok(())
}
