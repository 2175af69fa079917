//! `cmafuzz bisect` on a real git history of the 6.1 kernel source, with real builds and boots:
//! 32 commits of comment edits in mm/ and kernel/dma/, one that breaks the build (c18), one
//! that mends it (c19), and one that injects `benchmarks/bugs/release-clears-one-bit-short.patch`
//! (c20). The bisection must name c20, skip c18 (git's midpoints land on it for this shape),
//! and the revert of c20 on top of c32 must be good. The checks-first errors share the history.

#[path = "common/bisect_history.rs"]
mod history;

use history::{edit, git, history, root, BREAK_AT, BUG_AT, COMMITS};
use std::path::Path;
use std::process::{Command, Output};

fn bisect(repo: &Path, good: &str, bad: &str, repro: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cmafuzz"));
    c.arg("bisect")
        .arg("--kernel-src")
        .arg(repo)
        .args(["--good", good, "--bad", bad, "--target", "arm32-6.1", "--out"])
        .arg(out)
        .args(extra)
        .arg(repro);
    c.output().expect("cmafuzz runs")
}

fn error_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("error")).map(String::from).collect()
}

fn assert_one_error(o: &Output, wants: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let errs = error_lines(o);
    assert_eq!(errs.len(), 1, "{errs:?}");
    for w in wants {
        assert!(errs[0].contains(w), "{:?} lacks {w:?}", errs[0]);
    }
}

#[test]
fn bisect_names_the_injected_commit_skips_the_broken_one_and_the_revert_agrees() {
    let (repo, c) = history();
    let tmp = tempfile::tempdir().expect("tempdir");
    let repro = root().join("corpora/seed/01-alloc-release.prog");
    let out = tmp.path().join("out");

    // Checks first, no kernel needed.
    let o = bisect(&repo, "no-such-rev", &c[COMMITS], &repro, &out, &[]);
    assert_one_error(&o, &["--good no-such-rev", "no such revision"]);
    let o = bisect(&repo, &c[COMMITS], &c[0], &repro, &out, &[]);
    assert_one_error(&o, &["not an ancestor"]);
    edit(&repo, "mm/cma.c", |s| format!("{s}/* uncommitted */\n"));
    let o = bisect(&repo, &c[0], &c[COMMITS], &repro, &out, &[]);
    edit(&repo, "mm/cma.c", |s| s.trim_end_matches("/* uncommitted */\n").to_string());
    git(&repo, &["update-index", "--refresh", "-q"]);
    assert_one_error(&o, &["uncommitted changes", "mm/cma.c"]);

    // The bisection.
    let o = bisect(&repo, &c[0], &c[COMMITS], &repro, &out, &["--json"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let r = &v["report"];
    assert_eq!(r["culprit"]["sha"], c[BUG_AT].as_str(), "{r:#}");
    let steps = r["steps"].as_array().expect("steps");
    let broken =
        steps.iter().find(|s| s["commit"]["sha"] == c[BREAK_AT].as_str()).expect("the broken commit is tested");
    assert_eq!(broken["mark"]["verdict"], "skip", "{broken:#}");
    assert!(broken["mark"]["reason"].as_str().unwrap_or("").contains("does not build"), "{broken:#}");
    let revert = &r["confirmation"];
    assert_eq!(revert["reverts"], true);
    assert_eq!(revert["result"]["mark"]["verdict"], "good", "{revert:#}");
    let text = std::fs::read_to_string(out.join("report.txt")).expect("report.txt");
    let fixes = format!("Fixes: {} (\"mm/cma: clear the bitmap", &c[BUG_AT][..12]);
    assert!(text.contains(&fixes) && text.contains("revert check") && text.contains("agrees"), "{text}");
    let log = std::fs::read_to_string(out.join("bisect.log")).expect("bisect.log");
    assert!(log.contains(&format!("# first bad commit: [{}]", c[BUG_AT])), "{log}");
    assert!(log.contains(&format!("git bisect skip {}", c[BREAK_AT])), "{log}");
    eprintln!("{text}");

    // A reproducer that passes on --bad (the kernels are cached by tree now: boot + replay).
    let quiet = tmp.path().join("observe.prog");
    std::fs::write(&quiet, "observe\n").expect("write");
    let o = bisect(&repo, &c[0], &c[COMMITS], &quiet, &out, &[]);
    assert_one_error(&o, &["does not fail on --bad"]);
}

/// The same checks on a tiny repository: they come before any worktree or kernel, so they cost
/// nothing (and the refused runs leave the repository as it was).
#[test]
fn checks_first_errors_are_one_line_and_exit_2_before_any_build() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("linux");
    std::fs::create_dir_all(repo.join("mm")).expect("mkdir");
    std::fs::write(repo.join("Makefile"), "all:\n").expect("write");
    std::fs::write(repo.join("mm/cma.c"), "/* cma */\n").expect("write");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    std::fs::write(repo.join("mm/cma.c"), "/* cma 2 */\n").expect("write");
    git(&repo, &["commit", "-q", "-a", "-m", "two"]);
    let repro = root().join("corpora/seed/01-alloc-release.prog");
    let out = t.path().join("out");
    let o = bisect(&repo, "HEAD~1", "v7.0", &repro, &out, &[]);
    assert_one_error(&o, &["--bad v7.0", "no such revision"]);
    let o = bisect(&repo, "HEAD", "HEAD~1", &repro, &out, &[]);
    assert_one_error(&o, &["--good HEAD is not an ancestor of --bad HEAD~1"]);
    std::fs::write(repo.join("mm/cma.c"), "/* edited */\n").expect("write");
    let o = bisect(&repo, "HEAD~1", "HEAD", &repro, &out, &[]);
    assert_one_error(&o, &["uncommitted changes", "mm/cma.c", "commit or stash"]);
    let o = bisect(t.path(), "HEAD~1", "HEAD", &repro, &out, &[]);
    assert_one_error(&o, &["not a git repository"]);
    let o = bisect(&repo, "HEAD~1", "HEAD", &t.path().join("missing.prog"), &out, &[]);
    assert_one_error(&o, &["missing.prog"]);
}
