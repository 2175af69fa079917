//! The bisection against a synthetic git history and a fake verdict function (no kernel):
//! the commit's `state` file says what the "kernel" does (`bug` bad, `broken` skip).

use super::git::{GitError, Repo, Worktree};
use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A kernel-looking repository with `n` commits after the base; `what(i)` is commit i's
/// `state` line (`ok`, `bug`, `broken`), kept in a file that accumulates lines so a revert of
/// one commit applies cleanly.
fn history(n: usize, what: impl Fn(usize) -> &'static str) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("repo");
    std::fs::create_dir_all(repo.join("mm")).expect("mkdir");
    std::fs::write(repo.join("Makefile"), "all:\n").expect("write");
    std::fs::write(repo.join("mm/cma.c"), "/* cma */\n").expect("write");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    let mut shas = vec![git(&repo, &["rev-parse", "HEAD"])];
    for i in 1..=n {
        let w = what(i);
        std::fs::write(repo.join(format!("mm/f{i}")), format!("{w}\n")).expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("c{i}: {w}")]);
        shas.push(git(&repo, &["rev-parse", "HEAD"]));
    }
    (t, repo, shas)
}

/// Reads the worktree: any `mm/f*` saying `bug` (and not undone) is bad, `broken` a skip.
struct Fake {
    dir: PathBuf,
    tested: Vec<String>,
    /// (commit sha prefix, n): the n-th test (1-based) of that commit gives the opposite mark.
    flips: Vec<(String, usize)>,
}

impl Tester for Fake {
    fn test(&mut self, label: &str, _identity: &str) -> Result<StepResult, BisectError> {
        self.tested.push(label.to_string());
        let mut bug = false;
        let mut broken = false;
        // The "kernel" a commit builds: its `bug` and `broken` files; `ok` files are edits
        // that change no code (comments).
        let mut code = Vec::new();
        for e in std::fs::read_dir(self.dir.join("mm")).expect("mm").filter_map(Result::ok) {
            let s = std::fs::read_to_string(e.path()).unwrap_or_default();
            bug |= s.trim() == "bug";
            broken |= s.trim() == "broken";
            if s.trim() != "ok" {
                code.push(format!("{}={}", e.file_name().to_string_lossy(), s.trim()));
            }
        }
        code.sort();
        let nth = self.tested.iter().filter(|l| l.get(..12) == label.get(..12)).count();
        let flip = self.flips.iter().any(|(sha, n)| label.starts_with(&sha[..12]) && *n == nth);
        let mark = if broken {
            Mark::Skip("does not build".into())
        } else if bug != flip {
            Mark::Bad
        } else {
            Mark::Good
        };
        let bad_runs = usize::from(mark == Mark::Bad);
        Ok(StepResult {
            mark,
            runs: 1,
            bad_runs,
            signatures: vec![],
            built: true,
            build_seconds: 0.0,
            seconds: 0.0,
            kernel_signature: Some(code.join(",")),
        })
    }
}

/// `broken` files stay broken in later commits unless mended; here each commit adds its own
/// file, so a `broken` commit's successor mends it by removing that file.
fn history_with_mend(n: usize, bug: usize, broken: &[usize]) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let (t, repo, _) = history(0, |_| "ok");
    let mut shas = vec![git(&repo, &["rev-parse", "HEAD"])];
    for i in 1..=n {
        let w = if i == bug {
            "bug"
        } else if broken.contains(&i) {
            "broken"
        } else {
            "ok"
        };
        for prev in broken.iter().filter(|&&b| b + 1 == i) {
            std::fs::remove_file(repo.join(format!("mm/f{prev}"))).expect("mend");
        }
        std::fs::write(repo.join(format!("mm/f{i}")), format!("{w}\n")).expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("c{i}: {w}")]);
        shas.push(git(&repo, &["rev-parse", "HEAD"]));
    }
    (t, repo, shas)
}

fn run(repo: &Path, t: &Path, good: &str, bad: &str) -> (Result<Report, BisectError>, Fake) {
    run_flaky(repo, t, good, bad, vec![])
}

fn run_flaky(
    repo: &Path,
    t: &Path,
    good: &str,
    bad: &str,
    flips: Vec<(String, usize)>,
) -> (Result<Report, BisectError>, Fake) {
    let r = Repo::open(repo).expect("repo");
    let wt_dir = t.join("wt");
    let wt = Worktree::open(&r, &wt_dir, bad).expect("worktree");
    let mut fake = Fake { dir: wt_dir, tested: vec![], flips };
    let range = Range { good: good.into(), bad: bad.into(), confirm: true };
    let rep = bisect(&r, &wt, &range, &mut fake, &mut |_| {});
    (rep, fake)
}

#[test]
fn names_the_first_bad_commit_skips_the_broken_one_and_the_revert_agrees() {
    let (t, repo, c) = history_with_mend(32, 20, &[18]);
    let (rep, _) = run(&repo, t.path(), &c[0], &c[32]);
    let rep = rep.expect("bisect");
    assert_eq!(rep.culprit.as_ref().map(|x| x.sha.as_str()), Some(c[20].as_str()));
    let broken = rep.steps.iter().find(|s| s.commit.sha == c[18]).expect("c18 tested");
    assert_eq!(broken.result.mark.term(), "skip");
    assert!(rep.bisection_steps() <= 6, "{} steps", rep.bisection_steps());
    let conf = rep.confirmation.as_ref().expect("confirmation");
    assert!(conf.reverts);
    assert_eq!(conf.result.as_ref().map(|r| r.mark.clone()), Some(Mark::Good));
    assert_eq!(rep.exit_code(), 0);
    let text = rep.text("r.prog");
    assert!(text.contains(&format!("first bad commit: {} c20: bug", c[20])), "{text}");
    assert!(text.contains(&format!("Fixes: {} (\"c20: bug\")", &c[20][..12])), "{text}");
    assert!(text.contains("verdict on parent"), "{text}");
    assert!(rep.bisect_log.contains(&format!("# first bad commit: [{}]", c[20])), "{}", rep.bisect_log);
}

#[test]
fn skips_beside_the_culprit_leave_candidates_and_exit_1() {
    let (t, repo, c) = history_with_mend(8, 5, &[4]);
    // c4 broken and c5 the bug: whether c4 or c5 is first cannot be known.
    let (rep, _) = run(&repo, t.path(), &c[0], &c[8]);
    let rep = rep.expect("bisect");
    assert!(rep.culprit.is_none(), "{:?}", rep.culprit);
    let mut cands: Vec<&str> = rep.candidates.iter().map(|x| x.sha.as_str()).collect();
    cands.sort_unstable();
    let mut want = vec![c[4].as_str(), c[5].as_str()];
    want.sort_unstable();
    assert_eq!(cands, want);
    assert_eq!(rep.exit_code(), 1);
    let text = rep.text("r");
    assert!(text.contains("could be any of") && !text.contains("Fixes:"), "{text}");
    assert!(rep.confirmation.is_none(), "no culprit, nothing to revert");
}

#[test]
fn the_users_checkout_and_bisect_state_are_untouched() {
    let (t, repo, c) = history_with_mend(8, 5, &[]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let (rep, _) = run(&repo, t.path(), &c[0], &c[8]);
    rep.expect("bisect");
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    let log = Command::new("git").arg("-C").arg(&repo).args(["bisect", "log"]).output().expect("git");
    assert!(!log.status.success(), "the user's repository is not bisecting");
}

#[test]
fn a_bad_end_that_passes_is_refused_before_any_step() {
    let (t, repo, c) = history_with_mend(8, 5, &[]);
    let (rep, fake) = run(&repo, t.path(), &c[0], &c[4]);
    assert!(matches!(rep, Err(BisectError::BadIsNotBad { .. })), "{rep:?}");
    assert_eq!(fake.tested.len(), 1);
}

#[test]
fn a_good_end_that_fails_is_refused_before_any_step() {
    let (t, repo, c) = history_with_mend(8, 5, &[]);
    let (rep, fake) = run(&repo, t.path(), &c[6], &c[8]);
    let e = rep.expect_err("refused");
    assert!(matches!(e, BisectError::GoodIsNotGood { .. }), "{e:?}");
    assert!(e.to_string().contains("--good"), "{e}");
    assert_eq!(fake.tested.len(), 2);
}

#[test]
fn a_good_that_is_not_an_ancestor_and_a_missing_revision_are_refused() {
    let (t, repo, c) = history_with_mend(4, 3, &[]);
    let (rep, fake) = run(&repo, t.path(), &c[4], &c[1]);
    assert!(matches!(rep, Err(BisectError::Git(GitError::NotAncestor { .. }))), "{rep:?}");
    assert!(fake.tested.is_empty());
    let r = Repo::open(&repo).expect("repo");
    let e = r.resolve("--good", "v9.9").expect_err("missing");
    assert!(e.to_string().starts_with("--good v9.9: no such revision"), "{e}");
}

#[test]
fn a_dirty_worktree_is_refused_and_named() {
    let (_t, repo, _) = history_with_mend(2, 2, &[]);
    std::fs::write(repo.join("mm/cma.c"), "/* edited */\n").expect("write");
    let e = Repo::open(&repo).expect_err("dirty");
    assert!(matches!(e, GitError::Dirty { .. }) && e.to_string().contains("mm/cma.c"), "{e}");
    // Untracked files are not the user's edits to the history: allowed.
    git(&repo, &["checkout", "--", "mm/cma.c"]);
    std::fs::write(repo.join("notes.txt"), "x").expect("write");
    Repo::open(&repo).expect("untracked files are fine");
}

#[test]
fn a_directory_that_is_no_repository_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let e = Repo::open(t.path()).expect_err("no repo");
    assert!(matches!(e, GitError::NotARepo(_)), "{e}");
}

#[test]
fn the_culprit_and_its_parent_are_rechecked_and_a_single_flake_is_outvoted() {
    let (t, repo, c) = history_with_mend(16, 9, &[]);
    // c9's recheck says good once: the third test breaks the tie for bad.
    let (rep, fake) = run_flaky(&repo, t.path(), &c[0], &c[16], vec![(c[9].clone(), 2)]);
    let rep = rep.expect("bisect");
    assert_eq!(rep.culprit.as_ref().map(|x| x.sha.as_str()), Some(c[9].as_str()));
    assert!(rep.contradiction.is_none(), "{:?}", rep.contradiction);
    let c9 = fake.tested.iter().filter(|l| l.starts_with(&c[9][..12])).count();
    let c8 = fake.tested.iter().filter(|l| l.starts_with(&c[8][..12])).count();
    assert_eq!((c9, c8), (3, 2), "c9: step + two rechecks, c8: step + one recheck: {:?}", fake.tested);
    assert_eq!(rep.steps.iter().filter(|s| s.role == "recheck").count(), 3);
    assert_eq!(rep.exit_code(), 0);
    let text = rep.text("r");
    assert!(text.contains(&format!("first bad commit: {}", c[9])), "{text}");
}

#[test]
fn a_parent_that_turns_bad_on_its_rechecks_makes_the_bisection_inconclusive() {
    let (t, repo, c) = history_with_mend(16, 9, &[]);
    // c8 (the parent) was good at its step, then bad twice: the step contradicted its neighbour.
    let (rep, _) = run_flaky(&repo, t.path(), &c[0], &c[16], vec![(c[8].clone(), 2), (c[8].clone(), 3)]);
    let rep = rep.expect("bisect");
    let why = rep.contradiction.as_deref().expect("a contradiction");
    assert!(why.contains(&c[8][..12]) && why.contains("good, then bad, then bad"), "{why}");
    assert_eq!(rep.exit_code(), 1);
    assert!(rep.confirmation.is_none(), "no revert check of a culprit nobody trusts");
    let text = rep.text("r");
    assert!(text.starts_with("inconclusive: the reproducer is not stable") && !text.contains("Fixes:"), "{text}");
}

#[test]
fn a_culprit_that_builds_its_parents_kernel_is_inconclusive() {
    let (t, repo, c) = history_with_mend(16, 9, &[]);
    // c9 (the bug) says good at its step and at its recheck: git blames c10, an edit that
    // changes no code, whose parent c9 builds the same kernel.
    let (rep, _) = run_flaky(&repo, t.path(), &c[0], &c[16], vec![(c[9].clone(), 1), (c[9].clone(), 2)]);
    let rep = rep.expect("bisect");
    assert_eq!(rep.culprit.as_ref().map(|x| x.sha.as_str()), Some(c[10].as_str()), "the flake misled git");
    assert!(rep.contradiction.is_none(), "the rechecks were fooled too: {:?}", rep.contradiction);
    let why = rep.noop.as_deref().expect("the no-op culprit is caught");
    assert!(why.contains(&c[10][..12]) && why.contains(&c[9][..12]) && why.contains("same kernel"), "{why}");
    assert_eq!(rep.exit_code(), 1);
    assert!(rep.confirmation.is_none(), "no revert check of a culprit nobody trusts");
    let text = rep.text("r");
    assert!(text.starts_with("inconclusive: the first bad commit git found") && !text.contains("Fixes:"), "{text}");
}
