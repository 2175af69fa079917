//! `cmafuzz bisect` on a real git history of the 6.1 kernel source, with real builds and boots:
//! 32 commits of comment edits in mm/ and kernel/dma/, one that breaks the build (c18), one
//! that mends it (c19), and one that injects `benchmarks/bugs/release-clears-one-bit-short.patch`
//! (c20). The bisection must name c20, skip c18 (git's midpoints land on it for this shape),
//! and the revert of c20 on top of c32 must be good. The checks-first errors share the history.
//!
//! The history is made once and kept in the cache (`fixtures/bisect-6.1-v1`): `git init` of a
//! hard-linked copy of the unpacked Debian source, every edit replacing its file (never writing
//! through a link into the shared copy).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUG_AT: usize = 20;
const BREAK_AT: usize = 18;
const COMMITS: usize = 32;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Fixture Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_NAME", "Fixture Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.org")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Replaces `rel` in `dir` with `f(old)` (a new inode: the tree is hard-linked).
fn edit(dir: &Path, rel: &str, f: impl FnOnce(String) -> String) {
    let p = dir.join(rel);
    let old = std::fs::read_to_string(&p).expect("readable source file");
    std::fs::remove_file(&p).expect("remove");
    std::fs::write(&p, f(old)).expect("write");
}

const EDITED: &[&str] = &["mm/cma.c", "mm/page_isolation.c", "kernel/dma/contiguous.c", "mm/highmem.c", "mm/vmalloc.c"];

/// The repository and the shas of c0 (the base) .. c32.
fn history() -> (PathBuf, Vec<String>) {
    let cache = cmafuzz::build::cache::root();
    let dir = cache.join("fixtures").join("bisect-6.1-v1");
    let repo = dir.join("repo");
    if dir.join("done").is_file() {
        let shas = git(&repo, &["rev-list", "--reverse", "HEAD"]).lines().map(String::from).collect::<Vec<_>>();
        assert_eq!(shas.len(), COMMITS + 1);
        return (repo, shas);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let pristine = std::fs::read_dir(cache.join("src"))
        .ok()
        .and_then(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains("linux-source-6.1-") && p.join("done").is_file())
        })
        .map(|p| p.join("tree"));
    match pristine {
        Some(tree) => {
            let st = Command::new("cp").arg("-al").arg(&tree).arg(&repo).status().expect("cp");
            assert!(st.success());
        }
        None => {
            std::fs::create_dir_all(&repo).expect("repo dir");
            let st = Command::new("tar")
                .args(["-xf", "/usr/src/linux-source-6.1.tar.xz", "--strip-components=1", "-C"])
                .arg(&repo)
                .status()
                .expect("tar");
            assert!(st.success(), "unpack linux-source-6.1 (apt-get install linux-source-6.1)");
        }
    }
    git(&repo, &["init", "-q"]);
    // No background gc eating the CPU the builds need.
    git(&repo, &["config", "gc.auto", "0"]);
    git(&repo, &["config", "maintenance.auto", "false"]);
    // -f: Debian's top-level .gitignore ignores everything but debian/.
    git(&repo, &["add", "-A", "-f"]);
    git(&repo, &["commit", "-q", "-m", "base: linux-source-6.1"]);
    let bug =
        std::fs::read_to_string(root().join("benchmarks/bugs/release-clears-one-bit-short.patch")).expect("patch");
    for i in 1..=COMMITS {
        let subject = if i == BUG_AT {
            // `patch` writes a new file and renames it over the old: the link is broken.
            let mut c = Command::new("patch");
            c.current_dir(&repo).args(["-p1", "--batch", "--forward", "--no-backup-if-mismatch"]);
            let mut child = c.stdin(std::process::Stdio::piped()).spawn().expect("patch");
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bug.as_bytes()).expect("patch input");
            assert!(child.wait().expect("patch").success());
            "mm/cma: clear the bitmap in cma_clear_bitmap() by the bits of count - 1".to_string()
        } else if i == BREAK_AT {
            edit(&repo, "mm/cma.c", |s| format!("{s}this is not C;\n"));
            "mm/cma: work in progress (does not build)".to_string()
        } else if i == BREAK_AT + 1 {
            edit(&repo, "mm/cma.c", |s| s.trim_end_matches("this is not C;\n").to_string());
            "mm/cma: mend the build".to_string()
        } else {
            let f = EDITED[i % EDITED.len()];
            edit(&repo, f, |s| format!("{s}/* bisect fixture: edit {i} */\n"));
            format!("{f}: comment {i}")
        };
        git(&repo, &["commit", "-q", "-a", "-m", &subject]);
    }
    std::fs::write(dir.join("done"), b"").expect("done marker");
    let shas = git(&repo, &["rev-list", "--reverse", "HEAD"]).lines().map(String::from).collect();
    (repo, shas)
}

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
