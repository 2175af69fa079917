//! `cmafuzz fuzz` end to end on real VMs (arm32-6.1; the kernel build is cached): a short
//! campaign finds an injected bug and its reproducer replays to the same signature; a campaign
//! killed with SIGKILL leaves no qemu behind and a restart on the same `--out` loses nothing.
//! The two run one after the other (a lock), each with its own broker port.

#[path = "common/campaign.rs"]
mod campaign;

use campaign::{corpus_files, exit_within};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn patch() -> String {
    root().join("benchmarks/bugs/release-clears-one-bit-short.patch").display().to_string()
}

fn fuzz_cmd(out: &Path, duration: &str, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cmafuzz"));
    c.args(["fuzz", "--target", "arm32-6.1", "--duration", duration, "--cores", "1", "--minimize-budget", "0"])
        .arg("--corpus")
        .arg(root().join("corpora/seed"))
        .arg("--out")
        .arg(out)
        .args(["--kernel-patch", &patch(), "--listen", &format!("127.0.0.1:{port}")]);
    c
}

fn finding_dirs(out: &Path) -> BTreeSet<String> {
    std::fs::read_dir(out.join("findings"))
        .map(|rd| {
            rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect()
        })
        .unwrap_or_default()
}

fn meta(out: &Path, dir: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("findings").join(dir).join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json parses")
}

/// Processes (pid, command) whose process group is `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command (in parentheses): state ppid pgrp …
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid) {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ");
            v.push((pid, cmd));
        }
    }
    v
}

#[test]
fn a_short_campaign_finds_the_release_bug_and_its_reproducer_replays_to_the_same_signature() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().expect("tempdir");
    let o = fuzz_cmd(out.path(), "90s", 14311).output().expect("cmafuzz fuzz runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a campaign with findings exits 1\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("[cmafuzz] "), "status lines are printed: {stdout}");
    let dirs = finding_dirs(out.path());
    let bitmap = dirs
        .iter()
        .find(|d| meta(out.path(), d)["signature"].as_str().is_some_and(|s| s == "bitmap:reserved"))
        .unwrap_or_else(|| panic!("no bitmap:reserved finding among {dirs:?}"));
    let m = meta(out.path(), bitmap);
    let sig = m["signature"].as_str().expect("signature").to_string();
    assert_eq!(m["target"], "arm32-6.1");
    assert!(m["kernel_hash"].is_string(), "{m}");
    assert!(m["count"].as_u64().is_some_and(|c| c >= 1), "{m}");
    let d = out.path().join("findings").join(bitmap);
    for f in ["reproducer.prog", "verdict.json", "observations.json", "console.txt"] {
        assert!(d.join(f).is_file(), "{f} missing in {}", d.display());
    }
    let r = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(d.join("reproducer.prog"))
        .args(["--target", "arm32-6.1", "--kernel-patch", &patch()])
        .output()
        .expect("replay runs");
    let replayed = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "the reproducer diverges again\n{replayed}");
    assert!(replayed.contains(&format!("[{sig}]")), "replay gives {sig} again:\n{replayed}");
}

#[test]
fn a_sigkilled_campaign_leaves_no_qemu_and_a_restart_loses_no_finding_or_corpus_entry() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = fuzz_cmd(out.path(), "10m", 14312)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cmafuzz fuzz starts");
    let pgid = child.id() as i32;
    // Wait (bounded) until the campaign has a corpus, a finding and a running qemu.
    let t = Instant::now();
    loop {
        let qemu = group_members(pgid).iter().any(|(_, c)| c.contains("qemu-system"));
        if qemu && corpus_files(out.path()).len() >= 5 && !finding_dirs(out.path()).is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no corpus/finding/qemu after 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let corpus_before = corpus_files(out.path());
    let findings_before: Vec<(String, u64)> = finding_dirs(out.path())
        .into_iter()
        .map(|d| {
            let c = meta(out.path(), &d)["count"].as_u64().unwrap_or(0);
            (d, c)
        })
        .collect();
    // SAFETY: signalling the process group we created.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0);
    let _ = child.wait();
    // Dead processes disappear from /proc asynchronously (PDEATHSIG, reaping): bounded wait.
    let t = Instant::now();
    while !group_members(pgid).is_empty() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(group_members(pgid), vec![], "processes of the killed campaign survive");

    let o = fuzz_cmd(out.path(), "20s", 14312).output().expect("restart runs");
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let corpus_after = corpus_files(out.path());
    // What the restart's queue cull removed is named in corpus.culled (covered by what it kept).
    let culled: BTreeSet<String> = std::fs::read_to_string(out.path().join("corpus.culled"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let lost: Vec<_> = corpus_before.difference(&corpus_after).filter(|n| !culled.contains(*n)).collect();
    assert!(lost.is_empty(), "corpus entries lost on restart: {lost:?}");
    for (d, c) in findings_before {
        let m = meta(out.path(), &d);
        assert!(m["count"].as_u64().is_some_and(|n| n >= c), "finding {d} went from {c} to {m}");
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("findings already there"), "the restart reports what it resumed: {stderr}");
}

/// Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) stops a campaign on
/// a pristine kernel cleanly: it exits by itself within a bounded time with status 0 (no
/// findings), the status file is complete JSON, the corpus is on disk and no process survives.
#[test]
fn sigint_stops_a_pristine_campaign_cleanly_with_everything_flushed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .args(["fuzz", "--target", "arm32-6.1", "--duration", "10m", "--cores", "1", "--minimize-budget", "0"])
        .arg("--corpus")
        .arg(root().join("corpora/seed"))
        .arg("--out")
        .arg(out.path())
        .args(["--listen", "127.0.0.1:14313"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cmafuzz fuzz starts");
    let pgid = child.id() as i32;
    let t = Instant::now();
    while !(corpus_files(out.path()).len() >= 5 && out.path().join("stats.json").is_file()) {
        assert!(t.elapsed() < Duration::from_secs(300), "no corpus/status after 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: signalling the process group we created.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let status = exit_within(&mut child, Duration::from_secs(60), "the campaign after SIGINT");
    let mut stdout = String::new();
    if let Some(mut s) = child.stdout.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut stdout);
    }
    assert_eq!(status.code(), Some(0), "a pristine campaign stopped by SIGINT exits 0\n{stdout}");
    assert!(finding_dirs(out.path()).is_empty(), "pristine kernel, no findings: {:?}", finding_dirs(out.path()));
    let stats = std::fs::read_to_string(out.path().join("stats.json")).expect("stats.json");
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats.json is complete JSON");
    assert!(v.is_object(), "{v}");
    assert!(corpus_files(out.path()).len() >= 5);
    let t = Instant::now();
    while !group_members(pgid).is_empty() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(group_members(pgid), vec![], "processes of the stopped campaign survive");
}

/// The name a seed gets in `OUT/corpus` (its content hash).
fn corpus_name(seed: &Path) -> String {
    let text = std::fs::read_to_string(seed).expect("seed reads");
    let prog = reference_impl::program::Program::parse(&text).expect("seed parses");
    format!("{:016x}.prog", cmafuzz::campaign::input::ProgramInput(prog).content_hash())
}

/// Two launchers on one machine, the second joined to the first with `--broker` (LLMP
/// broker-to-broker over TCP), each starting from its own half of `corpora/seed` and writing its
/// own `--out`: inputs cross the link both ways, so each corpus ends up holding seeds that only
/// the other campaign was given, and both campaigns stop by themselves at their deadlines (a B2B
/// link never exits, so it must not keep a broker running).
#[test]
fn two_linked_campaigns_share_inputs_both_ways_and_both_stop_at_their_deadline() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let seeds: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("corpora/seed"))
            .expect("corpora/seed")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "prog"))
            .collect();
        v.sort();
        v
    };
    let mut halves = [BTreeSet::new(), BTreeSet::new()];
    for (side, name) in ["a", "b"].iter().enumerate() {
        let dir = work.path().join(format!("seeds-{name}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for s in seeds.iter().skip(side).step_by(2) {
            std::fs::copy(s, dir.join(s.file_name().expect("name"))).expect("copy seed");
            halves[side].insert(corpus_name(s));
        }
    }
    let campaign = |name: &str, duration: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cmafuzz"));
        c.args(["fuzz", "--target", "arm32-6.1", "--duration", duration, "--cores", "1", "--minimize-budget", "0"])
            .arg("--corpus")
            .arg(work.path().join(format!("seeds-{name}")))
            .arg("--out")
            .arg(work.path().join(format!("out-{name}")))
            .args(extra)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let out_a = work.path().join("out-a");
    let out_b = work.path().join("out-b");
    let mut a = campaign("a", "100s", &["--listen", "127.0.0.1:14314"]).spawn().expect("campaign a starts");
    // b joins once a has its seeds in (so a's broker is up and has inputs to pass on).
    let t = Instant::now();
    while corpus_files(&out_a).intersection(&halves[0]).count() < halves[0].len() {
        assert!(a.try_wait().expect("wait").is_none(), "campaign a ended before loading its seeds");
        assert!(t.elapsed() < Duration::from_secs(300), "campaign a did not load its seeds in 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let b = campaign("b", "60s", &["--listen", "127.0.0.1:14315", "--broker", "127.0.0.1:14314"])
        .spawn()
        .expect("campaign b starts");
    let wait = |mut c: std::process::Child, name: &str| {
        exit_within(&mut c, Duration::from_secs(400), &format!("campaign {name} at its deadline"));
        let o = c.wait_with_output().expect("output");
        assert_eq!(o.status.code(), Some(0), "campaign {name}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err_b = wait(b, "b");
    let _ = wait(a, "a");
    assert!(err_b.contains("linked to the broker at 127.0.0.1:14314"), "{err_b}");
    // What a side's queue cull removed after receiving it is named in its corpus.culled.
    let received = |out: &Path| {
        let mut names = corpus_files(out);
        if let Ok(text) = std::fs::read_to_string(out.join("corpus.culled")) {
            names.extend(text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()));
        }
        names
    };
    let (ca, cb) = (received(&out_a), received(&out_b));
    let a_to_b: Vec<_> = halves[0].intersection(&cb).collect();
    let b_to_a: Vec<_> = halves[1].intersection(&ca).collect();
    assert!(!a_to_b.is_empty(), "none of a's {} seeds reached b's corpus ({} entries)", halves[0].len(), cb.len());
    assert!(!b_to_a.is_empty(), "none of b's {} seeds reached a's corpus ({} entries)", halves[1].len(), ca.len());
}
