//! Triage end to end: `cmafuzz minimize` refuses bad input with one line and exit 2 and leaves
//! the disk as it was; a short real-kernel campaign (arm32-6.1 with the injected
//! `release-clears-one-bit-short` bug, the kernel `tests/fuzz.rs` builds too) leaves at most
//! two findings, each minimized to at most 6 ops that replay to the same signature; findings
//! the running budget left are minimized at exit, and a second Ctrl-C then exits at once. The
//! VM cases run one after the other (a lock).

#[path = "common/campaign.rs"]
mod campaign;

use campaign::exit_within;
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

/// `--minimize-budget 1ns`: a running budget shorter than any run, so every new finding is left
/// to the exit budget.
fn deferred_campaign(out: &Path, duration: &str, port: u16) -> Command {
    let mut c = cmafuzz();
    c.args(["fuzz", "--target", "arm32-6.1", "--duration", duration, "--cores", "1"])
        .args(["--minimize-budget", "1ns", "--exit-minimize-budget", "5m"])
        .arg("--corpus")
        .arg(root().join("corpora/seed"))
        .arg("--out")
        .arg(out)
        .args(["--kernel-patch", &patch(), "--listen", &format!("127.0.0.1:{port}")]);
    c
}

const AT_EXIT: &str = "new findings left before exiting";

#[test]
fn findings_the_running_budget_left_are_minimized_at_exit() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().expect("tempdir");
    let o = deferred_campaign(out.path(), "30s", 14322).output().expect("cmafuzz fuzz runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "findings: exit 1\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(out.path().join("clients.log")).expect("clients.log");
    assert!(log.contains(AT_EXIT), "the client says it minimizes at exit:\n{log}");
    let dirs = finding_dirs(out.path());
    assert!(!dirs.is_empty() && dirs.len() <= 2, "one bug, at most two findings: {dirs:?}\n{stdout}");
    for d in &dirs {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).expect("meta.json")).expect("parses");
        let min_ops = m["min_ops"].as_u64().unwrap_or_else(|| panic!("{} not minimized at exit: {m}", d.display()));
        assert!(min_ops <= 6, "{}: {min_ops} ops", d.display());
        assert!(d.join("reproducer.min.prog").is_file(), "{}", d.display());
    }
    // The summary is printed after the clients' exit minimization: it shows the minimized sizes.
    assert!(stdout.contains("minimized "), "{stdout}");
}

/// Processes of process group `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn a_second_ctrl_c_during_the_exit_minimization_exits_at_once_and_leaves_findings_readable() {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = deferred_campaign(out.path(), "10m", 14323)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cmafuzz fuzz starts");
    let pgid = child.id() as i32;
    let t = Instant::now();
    while finding_dirs(out.path()).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(300), "no finding after 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ctrl-C as a terminal sends it: to the whole foreground process group.
    // SAFETY: signalling the process group we created.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let log = out.path().join("clients.log");
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(AT_EXIT) {
        assert!(t.elapsed() < Duration::from_secs(120), "no exit minimization within 120 s of Ctrl-C");
        assert!(child.try_wait().expect("wait").is_none(), "the campaign exited before minimizing its findings");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let status = exit_within(&mut child, Duration::from_secs(10), "a second Ctrl-C (exits at once)");
    assert_eq!(status.code(), Some(130), "a second Ctrl-C exits 130");
    let t = Instant::now();
    while !group_members(pgid).is_empty() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(group_members(pgid), Vec::<i32>::new(), "processes of the campaign survive");
    // Nothing half-written: every finding still reads.
    for d in finding_dirs(out.path()) {
        let text = std::fs::read_to_string(d.join("meta.json")).expect("meta.json");
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        assert!(d.join("reproducer.prog").is_file(), "{}", d.display());
    }
}
