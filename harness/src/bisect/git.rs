//! The git side of a bisection: checks on the user's repository (read only) and a private,
//! detached worktree of it in the cache where `git bisect` runs. The user's checkout, index,
//! branches and bisect state are never touched: `refs/bisect/*`, `BISECT_LOG` and `HEAD` are
//! per-worktree in git.

use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GitError {
    #[error("`git` not found: install it with `apt-get install git`")]
    NoGit,
    #[error("--kernel-src {0}: not a git repository (bisect needs the kernel's git history; `git clone` it)")]
    NotARepo(PathBuf),
    #[error("--kernel-src {0}: not a kernel tree (no Makefile and mm/cma.c at the top of its worktree)")]
    NotAKernel(PathBuf),
    #[error("--kernel-src {dir}: the worktree has uncommitted changes to tracked files ({first}); commit or stash them, since bisect builds commits, not your edits")]
    Dirty { dir: PathBuf, first: String },
    #[error("{flag} {rev}: no such revision in {dir} (check the name with `git rev-parse {rev}`)")]
    NoRevision { flag: &'static str, rev: String, dir: PathBuf },
    #[error("--good {good} is not an ancestor of --bad {bad}: give a --good that --bad descends from (`git merge-base --is-ancestor {good} {bad}`)")]
    NotAncestor { good: String, bad: String },
    #[error("--good and --bad are the same commit {0}: nothing to bisect")]
    Same(String),
    #[error("git {args}: {msg}")]
    Failed { args: String, msg: String },
}

fn git_in(dir: &Path) -> Command {
    let mut c = Command::new("git");
    // No automatic gc or maintenance in the user's repository on our behalf.
    c.arg("-C").arg(dir).args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"]);
    // Nothing the user's environment points at (another repository, an index) leaks in.
    for v in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"] {
        c.env_remove(v);
    }
    c.env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C");
    c
}

/// Runs git in `dir`; stdout on success, or `Failed` with stderr.
fn run(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = git_in(dir).args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GitError::NoGit,
        _ => GitError::Failed { args: args.join(" "), msg: e.to_string() },
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let msg = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim().to_string();
        return Err(GitError::Failed { args: args.join(" "), msg });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], with stdout and stderr together and the exit status (for `git bisect`).
fn run_status(dir: &Path, args: &[&str]) -> Result<(bool, String), GitError> {
    let out = git_in(dir).args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GitError::NoGit,
        _ => GitError::Failed { args: args.join(" "), msg: e.to_string() },
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// One commit as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub sha: String,
    pub subject: String,
    pub author: String,
    pub date: String,
}

/// The user's repository, checked.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The top of the user's worktree (or the repository, when bare).
    pub dir: PathBuf,
    /// The common git directory (shared by all worktrees).
    pub common_dir: PathBuf,
}

impl Repo {
    /// Opens `dir`: a git repository whose worktree is a kernel tree with no uncommitted
    /// changes to tracked files.
    pub fn open(dir: &Path) -> Result<Repo, GitError> {
        let inside = run(dir, &["rev-parse", "--git-common-dir"]).map_err(|e| match e {
            GitError::NoGit => GitError::NoGit,
            _ => GitError::NotARepo(dir.to_path_buf()),
        })?;
        let common = PathBuf::from(inside.trim());
        let common_dir = if common.is_absolute() { common } else { dir.join(common) };
        let common_dir = std::fs::canonicalize(&common_dir).unwrap_or(common_dir);
        let bare = run(dir, &["rev-parse", "--is-bare-repository"])?.trim() == "true";
        let top =
            if bare { dir.to_path_buf() } else { PathBuf::from(run(dir, &["rev-parse", "--show-toplevel"])?.trim()) };
        if !bare {
            if !top.join("Makefile").is_file() || !top.join("mm/cma.c").is_file() {
                return Err(GitError::NotAKernel(top));
            }
            // Stat information can be stale (a hard-linked copy changes ctimes): refresh it
            // first, so only a difference in content counts as a change.
            let _ = run(&top, &["update-index", "-q", "--refresh"]);
            let status = run(&top, &["status", "--porcelain", "--untracked-files=no"])?;
            if let Some(first) = status.lines().next() {
                return Err(GitError::Dirty { dir: top, first: first.trim().to_string() });
            }
        }
        Ok(Repo { dir: top, common_dir })
    }

    /// The full sha of `rev` (a commit), or `NoRevision` naming the flag.
    pub fn resolve(&self, flag: &'static str, rev: &str) -> Result<String, GitError> {
        run(&self.dir, &["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{rev}^{{commit}}")])
            .map(|s| s.trim().to_string())
            .map_err(|_| GitError::NoRevision { flag, rev: rev.to_string(), dir: self.dir.clone() })
    }

    /// Whether `a` is an ancestor of `b` (both full shas).
    pub fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitError> {
        let (ok, _) = run_status(&self.dir, &["merge-base", "--is-ancestor", a, b])?;
        Ok(ok)
    }

    /// Commits in `good..bad` (what a bisection chooses from).
    pub fn count_between(&self, good: &str, bad: &str) -> Result<usize, GitError> {
        let n = run(&self.dir, &["rev-list", "--count", &format!("{good}..{bad}")])?;
        n.trim().parse().map_err(|_| GitError::Failed { args: "rev-list --count".into(), msg: n })
    }

    pub fn info(&self, sha: &str) -> Result<CommitInfo, GitError> {
        let s = run(&self.dir, &["show", "-s", "--format=%H%x00%s%x00%an <%ae>%x00%aD", sha])?;
        let mut f = s.trim_end_matches('\n').split('\0');
        let mut next = || f.next().unwrap_or("").to_string();
        Ok(CommitInfo { sha: next(), subject: next(), author: next(), date: next() })
    }

    /// The first parent of `sha`.
    pub fn parent(&self, sha: &str) -> Result<String, GitError> {
        Ok(run(&self.dir, &["rev-parse", &format!("{sha}^")])?.trim().to_string())
    }
}

/// How `git bisect good|bad|skip` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BisectState {
    /// Test this commit next (git has checked it out).
    Next(String),
    /// `<sha> is the first bad commit`.
    Found(String),
    /// Only skipped commits are left: the first bad commit is one of these.
    OnlySkipped(Vec<String>),
}

/// A private worktree of a repository, under the cache, reused across bisections of it.
#[derive(Debug, Clone)]
pub struct Worktree {
    pub dir: PathBuf,
}

impl Worktree {
    /// Adds (or reuses) a detached worktree of `repo` at `dir`, checked out at `rev`.
    pub fn open(repo: &Repo, dir: &Path, rev: &str) -> Result<Worktree, GitError> {
        let registered = run(&repo.dir, &["worktree", "list", "--porcelain"])?
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .any(|p| Path::new(p) == dir || std::fs::canonicalize(p).ok().as_deref() == Some(dir));
        if !registered || !dir.join(".git").exists() {
            if dir.exists() {
                let _ = std::fs::remove_dir_all(dir);
            }
            let _ = run(&repo.dir, &["worktree", "prune"]);
            let d = dir.to_string_lossy().into_owned();
            run(&repo.dir, &["worktree", "add", "--detach", "--quiet", &d, rev])?;
        }
        let wt = Worktree { dir: dir.to_path_buf() };
        // A bisection a killed run left behind is ended; the tree goes back to a clean state.
        let _ = run(&wt.dir, &["bisect", "reset"]);
        wt.clean()?;
        Ok(wt)
    }

    /// Throws away what a build wrote into the tree (patches, the driver's Makefile lines).
    /// Untracked files stay: the driver's own files are rewritten identically each build.
    pub fn clean(&self) -> Result<(), GitError> {
        run(&self.dir, &["reset", "--hard", "--quiet"])?;
        Ok(())
    }

    pub fn checkout(&self, sha: &str) -> Result<(), GitError> {
        self.clean()?;
        run(&self.dir, &["checkout", "--detach", "--quiet", sha])?;
        Ok(())
    }

    /// The tree id of a commit (what its kernel is keyed by).
    pub fn tree_of(&self, sha: &str) -> Result<String, GitError> {
        Ok(run(&self.dir, &["rev-parse", &format!("{sha}^{{tree}}")])?.trim().to_string())
    }

    pub fn head(&self) -> Result<String, GitError> {
        Ok(run(&self.dir, &["rev-parse", "HEAD"])?.trim().to_string())
    }

    /// Starts `git bisect` with both ends; git checks out the first commit to test.
    pub fn bisect_start(&self, bad: &str, good: &str) -> Result<BisectState, GitError> {
        self.clean()?;
        let _ = run(&self.dir, &["bisect", "reset"]);
        let (ok, text) = run_status(&self.dir, &["bisect", "start", "--no-checkout", bad, good])?;
        if !ok {
            return Err(GitError::Failed { args: "bisect start".into(), msg: first_line(&text) });
        }
        // --no-checkout leaves BISECT_HEAD to move; check it out ourselves so that only the
        // files that differ are rewritten (mtimes of the rest stay, make rebuilds little).
        self.after_mark(&text)
    }

    /// Marks the commit under test and returns what git wants next.
    pub fn bisect_mark(&self, term: &str, sha: &str) -> Result<BisectState, GitError> {
        self.clean()?;
        let (ok, text) = run_status(&self.dir, &["bisect", term, sha])?;
        if !ok && !text.contains("first bad commit") {
            return Err(GitError::Failed { args: format!("bisect {term}"), msg: first_line(&text) });
        }
        self.after_mark(&text)
    }

    fn after_mark(&self, text: &str) -> Result<BisectState, GitError> {
        if let Some(line) = text.lines().find(|l| l.ends_with(" is the first bad commit")) {
            let sha = line.split_whitespace().next().unwrap_or("").to_string();
            return Ok(BisectState::Found(sha));
        }
        if text.contains("There are only 'skip'ped commits left to test") {
            let shas = text
                .lines()
                .map(str::trim)
                .filter(|l| l.len() == 40 && l.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_string)
                .collect();
            return Ok(BisectState::OnlySkipped(shas));
        }
        let next = run(&self.dir, &["rev-parse", "BISECT_HEAD"])?.trim().to_string();
        self.checkout(&next)?;
        Ok(BisectState::Next(next))
    }

    /// `git bisect log`, for `git bisect replay`.
    pub fn bisect_log(&self) -> Result<String, GitError> {
        run(&self.dir, &["bisect", "log"])
    }

    pub fn bisect_reset(&self) -> Result<(), GitError> {
        self.clean()?;
        run(&self.dir, &["bisect", "reset"])?;
        Ok(())
    }

    /// Checks out `onto` with `culprit` reverted in the worktree and index (not committed);
    /// `Ok(None)` when the revert does not apply cleanly. Returns the tree id of the result.
    pub fn revert_onto(&self, onto: &str, culprit: &str) -> Result<Option<String>, GitError> {
        self.checkout(onto)?;
        let (ok, _) = run_status(&self.dir, &["revert", "--no-commit", culprit])?;
        if !ok {
            let _ = run(&self.dir, &["revert", "--abort"]);
            self.clean()?;
            return Ok(None);
        }
        let tree = run(&self.dir, &["write-tree"])?.trim().to_string();
        // The revert stays in the files for the build; the sequencer state goes.
        let _ = run(&self.dir, &["revert", "--quit"]);
        Ok(Some(tree))
    }
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim().to_string()
}
