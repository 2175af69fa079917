//! `cmafuzz validate` end to end (arm32-6.1; the base is the target's default kernel, which
//! other tests build anyway; each patched kernel is a ccache'd variant). The series are in
//! `tests/data/validate/`, made with `git format-patch` against Debian's 6.1 source:
//! `cleanup/` (a format-patch directory with a cover letter: a behaviour-neutral rename and
//! comment in `cma_release()`), `release-bug.mbx` (mboxrd, b4-style: that cleanup, then the
//! `benchmarks/bugs/release-clears-one-bit-short.patch` bug), `ki1-fix/` (flush unused PKMAP
//! slots before an uncached highmem remap: KI-1's fix). The bug series' first prefix is the
//! cleanup series' kernel, so the bisection reuses its build; its introduced findings come with
//! reproducers minimized on the patched kernel. The kernel-booting cases run one after the other
//! (a lock); only the cleanup series runs a campaign (10 s a side). The git-range form runs on
//! the 6.1 history `tests/bisect.rs` bisects (`common/bisect_history.rs`), on two targets.

#[path = "common/bisect_history.rs"]
mod history;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/validate").join(name)
}

/// Runs `cmafuzz validate` from the repository (its default corpora); returns the output and
/// the JSON report.
fn validate(series: &std::path::Path, extra: &[&str]) -> (Output, Option<Value>) {
    let dir = tempfile::tempdir().expect("tmp");
    let json = dir.path().join("report.json");
    let md = dir.path().join("report.md");
    let t = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .current_dir(root())
        .args(["validate", "--target", "arm32-6.1", "--generated", "10"])
        .arg("--series")
        .arg(series)
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&md)
        .args(extra)
        .output()
        .expect("cmafuzz runs");
    eprintln!("validate {} took {:.0} s", series.display(), t.elapsed().as_secs_f64());
    let report: Option<Value> = std::fs::read_to_string(&json).ok().and_then(|s| serde_json::from_str(&s).ok());
    if let Some(r) = &report {
        // The Markdown file is what stdout printed.
        let text = std::fs::read_to_string(&md).expect("markdown written");
        assert_eq!(text, String::from_utf8_lossy(&o.stdout), "--markdown and stdout differ");
        assert!(r["summary"].is_string());
    }
    (o, report)
}

fn show(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_series_that_does_not_apply_exits_2_naming_its_patch_and_hunk_before_any_build() {
    // The cleanup patch with one removed line that is not in the base.
    let dir = tempfile::tempdir().expect("tmp");
    for e in std::fs::read_dir(data("cleanup")).expect("cleanup").flatten() {
        let text = std::fs::read_to_string(e.path()).expect("read");
        let text = text.replace("-\tfree_contig_range(pfn, count);", "-\tfree_contig_range(pfn, nr_pages);");
        std::fs::write(dir.path().join(e.file_name()), text).expect("write");
    }
    let t = std::time::Instant::now();
    let (o, report) = validate(dir.path(), &["--duration", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(line.contains("patch 1/1 \"mm/cma: name the first pfn of a release"), "{}", show(&o));
    assert!(line.contains("mm/cma.c hunk #1") && line.contains("cma_release()"), "{}", show(&o));
    assert!(!err.contains("building zImage"), "no kernel is built for a series that does not apply");
    let r = report.expect("a report for a series that does not apply");
    assert_eq!(r["exit_code"], 2);
    assert!(r["targets"].as_array().is_some_and(Vec::is_empty), "nothing ran");
    assert!(t.elapsed().as_secs() < 300, "failed before any build");
}

#[test]
fn series_on_base_and_patched_kernels() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    // A behaviour-neutral cleanup (format-patch directory, cover letter read, not applied).
    let (o, r) = validate(&data("cleanup"), &["--duration", "10s"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = r.expect("report");
    assert_eq!(r["cover"], "mm/cma: a cleanup of cma_release()");
    assert_eq!(r["patches"].as_array().map(Vec::len), Some(1), "the cover letter is not a patch");
    assert!(r["introduced"].as_array().is_some_and(Vec::is_empty), "{}", show(&o));
    assert!(r["targets"][0]["programs"].as_u64().is_some_and(|n| n >= 40), "{}", show(&o));
    assert_eq!(r["changed_functions"][0], "mm/cma.c: cma_release");
    assert!(String::from_utf8_lossy(&o.stdout).contains("no CMA/DMA behaviour change"), "{}", show(&o));

    assert!(r["targets"][0]["campaign"].as_array().is_some_and(|c| c.len() == 2), "{}", show(&o));
    // Both campaigns are steered towards cma_release (arm32-6.1 has KCOV) and reach some of it.
    for c in r["targets"][0]["campaign"].as_array().into_iter().flatten() {
        let line = c.as_str().unwrap_or_default();
        let reached = line
            .split_once("; reached ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        assert!(
            reached > Some(0) && line.ends_with("KCOV sites of the changed functions"),
            "campaign line {line:?}: {}",
            show(&o)
        );
    }

    // The cleanup, then an injected bug (mbox): introduced, first in patch 2 (no campaign here:
    // on a kernel that leaks bits every program restarts the VM).
    let (o, r) = validate(&data("release-bug.mbx"), &["--duration", "0", "--minimize-budget", "60s"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let r = r.expect("report");
    let intro = r["introduced"].as_array().cloned().unwrap_or_default();
    let bitmap = intro
        .iter()
        .find(|f| f["verdict"]["signature"] == "bitmap:reserved")
        .unwrap_or_else(|| panic!("bitmap:reserved introduced: {}", show(&o)));
    assert_eq!(bitmap["first_patch"], 2, "{}", show(&o));
    // Its reproducer comes minimized on the patched kernel, and the summary says so.
    assert_eq!(bitmap["minimized"], true, "{}", show(&o));
    let ops = bitmap["program"]
        .as_str()
        .map_or(0, |p| p.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).count());
    assert!((1..=6).contains(&ops), "a minimized reproducer of at most 6 ops: {}\n{}", bitmap["program"], show(&o));
    assert!(bitmap["original_ops"].as_u64().is_some_and(|n| n as usize >= ops), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(", minimized"), "{}", show(&o));
    assert!(intro.iter().all(|f| f["first_patch"] == 2), "every change is the second patch's: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("first in patch 2/2 \"mm/cma: clear the bitmap of a release in bits\""),
        "{}",
        show(&o)
    );

    // KI-1's fix: reported as fixing KI-1, not as a regression, though the model still predicts
    // the stale PKMAP mapping.
    let (o, r) = validate(&data("ki1-fix"), &["--duration", "0"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = r.expect("report");
    let removed = r["removed"].as_array().cloned().unwrap_or_default();
    let ki1 = removed
        .iter()
        .find(|x| x["known_issue"] == "KI-1")
        .unwrap_or_else(|| panic!("KI-1 reported fixed: {}", show(&o)));
    assert_eq!(ki1["verdict"]["signature"], "alias-violation:vmap:nc+pkmap:wb");
    assert!(r["introduced"].as_array().is_some_and(Vec::is_empty), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("fixes KI-1"), "{}", show(&o));
}

/// The third form, `BASE..TIP` in `--kernel-src`, on a real tree and two targets: c19..c21 of the
/// bisect fixture's 6.1 history (c20 injects `release-clears-one-bit-short`, c21 is a comment).
/// The base is c19 in a private worktree; the tree's own checkout is left as it was; the bug is
/// introduced on both targets, first by patch 1/2, named by its commit subject.
#[test]
fn a_git_range_in_a_kernel_tree_on_two_targets_names_the_commit_that_brings_the_bug() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (repo, shas) = history::history();
    let state = |args: &[&str]| history::git(&repo, args);
    let (head, status) = (state(&["rev-parse", "HEAD"]), state(&["status", "--porcelain"]));
    let range = format!("{}..{}", shas[history::BUG_AT - 1], shas[history::BUG_AT + 1]);
    let repo_arg = repo.to_string_lossy().into_owned();
    let (o, r) = validate(
        std::path::Path::new(&range),
        &["--kernel-src", &repo_arg, "--target", "arm32-lowmem-6.1", "--duration", "0", "--minimize-budget", "0"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let r = r.expect("report");
    assert_eq!(r["patches"].as_array().map(Vec::len), Some(2), "{}", show(&o));
    let intro = r["introduced"].as_array().cloned().unwrap_or_default();
    for t in ["arm32-6.1", "arm32-lowmem-6.1"] {
        assert!(intro.iter().any(|f| f["target"] == t), "introduced on {t}: {}", show(&o));
    }
    assert!(intro.iter().all(|f| f["first_patch"] == 1), "every change is the first patch's: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("first in patch 1/2 \"mm/cma: clear the bitmap in cma_clear_bitmap() by the bits of count - 1\""),
        "{}",
        show(&o)
    );
    assert_eq!(
        (state(&["rev-parse", "HEAD"]), state(&["status", "--porcelain"])),
        (head, status),
        "the tree is untouched"
    );
}
