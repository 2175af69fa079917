//! Triage end to end: `cmafuzz minimize` refuses bad input with one line and exit 2 and leaves
//! the disk as it was; a short real-kernel campaign (arm32-6.1 with the injected
//! `release-clears-one-bit-short` bug, the kernel `tests/fuzz.rs` builds too) leaves at most
//! two findings, each minimized to at most 6 ops that replay to the same signature. The VM
//! cases run one after the other (a lock).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn patch() -> String {
    root().join("benchmarks/bugs/release-clears-one-bit-short.patch").display().to_string()
}

fn cmafuzz() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
}

/// Every file under `d` with its bytes.
fn snapshot(d: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    m
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

fn meta(sig: &str, patches: &[String]) -> String {
    serde_json::json!({
        "signature": sig, "kind": "bitmap", "target": "arm32-6.1", "kernel_hash": null,
        "kernel_patches": patches, "count": 1, "first_seen": 1, "last_seen": 1
    })
    .to_string()
}

#[test]
fn minimize_refuses_a_directory_that_is_not_a_finding_and_a_finding_without_a_reproducer() {
    let d = tempfile::tempdir().expect("tempdir");
    let not_finding = d.path().join("campaign");
    std::fs::create_dir_all(not_finding.join("corpus")).expect("mkdir");
    std::fs::write(not_finding.join("stats.json"), "{}").expect("write");
    let no_repro = d.path().join("findings/bitmap_reserved");
    std::fs::create_dir_all(&no_repro).expect("mkdir");
    std::fs::write(no_repro.join("meta.json"), meta("bitmap:reserved", &[])).expect("write");
    let before = snapshot(d.path());
    for (dir, says) in [(&not_finding, "not a finding directory"), (&no_repro, "no reproducer.prog")] {
        let o = cmafuzz().arg("minimize").arg(dir).output().expect("runs");
        let err = stderr_lines(&o);
        assert_eq!(o.status.code(), Some(2), "{err:?}");
        assert_eq!(err.len(), 1, "one line: {err:?}");
        assert!(err[0].contains(says) && err[0].contains(&dir.display().to_string()), "{err:?}");
    }
    assert_eq!(snapshot(d.path()), before, "nothing on disk changed");
}

#[test]
fn minimize_on_a_reproducer_that_no_longer_reproduces_says_so_and_changes_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().expect("tempdir");
    let f = d.path().join("findings/bitmap_reserved");
    std::fs::create_dir_all(&f).expect("mkdir");
    std::fs::write(f.join("meta.json"), meta("bitmap:reserved", &[patch()])).expect("write");
    // Allocates and releases one page: the injected bug only shows for 2+ pages.
    std::fs::write(f.join("reproducer.prog"), "cma_alloc area=reserved count=1 align=0\ncma_release h=0\n")
        .expect("write");
    let before = snapshot(d.path());
    let o = cmafuzz().arg("minimize").arg(&f).output().expect("runs");
    let err: Vec<String> = stderr_lines(&o).into_iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("no longer reproduces bitmap:reserved") && err[0].contains("nothing changed"), "{err:?}");
    assert_eq!(snapshot(d.path()), before, "nothing on disk changed");
}

fn finding_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("findings"))
        .map(|rd| {
            rd.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).map(|e| e.path()).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_short_campaign_against_one_injected_bug_leaves_at_most_two_minimized_findings_that_replay() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().expect("tempdir");
    let o = cmafuzz()
        .args(["fuzz", "--target", "arm32-6.1", "--duration", "45s", "--cores", "1", "--minimize-budget", "2m"])
        .arg("--corpus")
        .arg(root().join("corpora/seed"))
        .arg("--out")
        .arg(out.path())
        .args(["--kernel-patch", &patch(), "--listen", "127.0.0.1:14321"])
        .output()
        .expect("cmafuzz fuzz runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "findings: exit 1\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let dirs = finding_dirs(out.path());
    assert!(!dirs.is_empty() && dirs.len() <= 2, "one bug, at most two findings: {dirs:?}\n{stdout}");
    for d in &dirs {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).expect("meta.json")).expect("parses");
        let min_ops = m["min_ops"].as_u64().unwrap_or_else(|| panic!("{} not minimized: {m}", d.display()));
        assert!(min_ops <= 6, "{}: {min_ops} ops", d.display());
        assert!(m["min_runs"].as_u64().is_some_and(|r| r > 1), "{m}");
        assert!(m["original_ops"].as_u64().is_some_and(|n| n >= min_ops), "{m}");
        assert!(m["reliability"]["runs"].as_u64().is_some_and(|n| (1..=10).contains(&n)), "{m}");
        assert!(
            ["reliable", "flaky", "not-reproduced"].contains(&m["reliability"]["class"].as_str().unwrap_or("")),
            "{m}"
        );
        assert!(m["context"].is_array() && m["alternates"].is_array(), "{m}");
        let sig = m["min_signature"].as_str().expect("min_signature").to_string();
        let r = cmafuzz()
            .arg("replay")
            .arg(d.join("reproducer.min.prog"))
            .args(["--target", "arm32-6.1", "--kernel-patch", &patch(), "--repeat", "2"])
            .output()
            .expect("replay runs");
        let replayed = String::from_utf8_lossy(&r.stdout);
        assert_eq!(r.status.code(), Some(1), "the minimized reproducer diverges\n{replayed}");
        // Without observations after every op a state verdict shows at the end, so the first
        // finding of a plain replay may be the op's outcome at that op: the signature must be
        // among its verdicts, and the reruns must give its first finding again.
        assert!(replayed.contains(&format!("[{sig}]")), "replays to {sig}:\n{replayed}");
        assert!(replayed.contains("reproduced 2/2 (reliable)"), "{replayed}");
    }
}
