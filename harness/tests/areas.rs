//! Campaigns that reach every area (issue 15), end to end on real VMs from the build cache:
//! - a campaign from a single `observe` on `arm64-hugetlb-6.1` names both its areas (the 1 GiB
//!   `hugetlb0` with `order_per_bit` 9 and `reserved`), as the status JSON's per-area counts
//!   show, and says at start that no seed names `hugetlb0`;
//! - one on `arm32-pools-6.1` names its three areas, and `cmafuzz coverage OUT` lists the
//!   instrumented kernel functions it reached (`cma_alloc`) and those no op reaches (the
//!   boot-time `cma_init_reserved_areas`);
//! - a short campaign from a single `observe` finds the `order_per_bit > 0` injected bug
//!   (`benchmarks/bugs/release-count-truncated-to-bits.patch`), and its reproducer replays: a
//!   finding on the patched kernel, clean on the unpatched one.
//!
//! One after the other (a lock), each with its own broker port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bug() -> String {
    root().join("benchmarks/bugs/release-count-truncated-to-bits.patch").display().to_string()
}

/// A seed directory with one program, `observe`, and an empty area-seed directory.
fn single_observe(dir: &Path) -> (PathBuf, PathBuf) {
    let (seeds, none) = (dir.join("seeds"), dir.join("no-area-seeds"));
    std::fs::create_dir_all(&seeds).expect("mkdir");
    std::fs::create_dir_all(&none).expect("mkdir");
    std::fs::write(seeds.join("observe.prog"), "observe\n").expect("write");
    (seeds, none)
}

fn campaign(target: &str, dir: &Path, duration: &str, port: u16, extra: &[&str]) -> (Output, PathBuf) {
    let (seeds, none) = single_observe(dir);
    let out = dir.join("out");
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .args(["fuzz", "--target", target, "--duration", duration, "--cores", "1", "--minimize-budget", "0"])
        .arg("--corpus")
        .arg(&seeds)
        .arg("--area-seeds")
        .arg(&none)
        .arg("--out")
        .arg(&out)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .output()
        .expect("cmafuzz fuzz runs");
    println!("{target} campaign ({duration}): {:.0} s", t.elapsed().as_secs_f64());
    (o, out)
}

fn stats(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("stats.json")).expect("stats.json written");
    serde_json::from_str(&text).expect("stats.json parses")
}

/// Ops per area from the status JSON.
fn area_ops(out: &Path) -> Vec<(String, u64)> {
    let s = stats(out);
    s["areas"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v["ops"].as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

fn assert_every_area_named(target: &str, out: &Path, areas: &[&str]) {
    let ops = area_ops(out);
    println!("{target}: ops per area {ops:?}");
    for a in areas {
        let n = ops.iter().find(|(k, _)| k == a).map_or(0, |(_, n)| *n);
        assert!(n > 0, "{target}: no op named area {a}: {ops:?}");
    }
}

#[test]
fn a_hugetlb_campaign_from_one_observe_names_both_areas_and_warns_that_hugetlb0_has_no_seed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().expect("tempdir");
    let (o, out) = campaign("arm64-hugetlb-6.1", d.path(), "40s", 14321, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{}\n{stderr}", String::from_utf8_lossy(&o.stdout));
    let warned: Vec<&str> = stderr.lines().filter(|l| l.contains("warning: no seed program names area")).collect();
    assert_eq!(warned.len(), 2, "one warning per unseeded area: {stderr}");
    assert!(warned.iter().any(|l| l.contains("`hugetlb0`")), "{warned:?}");
    assert_every_area_named("arm64-hugetlb-6.1", &out, &["hugetlb0", "reserved"]);
}

#[test]
fn a_pools_campaign_names_every_area_and_coverage_lists_reached_and_never_reached_functions() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().expect("tempdir");
    // Steered towards cma_alloc (and a name no kernel function has).
    let (o, out) =
        campaign("arm32-pools-6.1", d.path(), "40s", 14322, &["--focus", "cma_alloc,mm/cma.c: cma_no_such_fn"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("steered towards mm/cma.c: cma_alloc ("), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("--focus: no KCOV sites in this kernel for mm/cma.c: cma_no_such_fn")),
        "{stderr}"
    );
    let st = stats(&out);
    let (focus_reached, focus_sites) = (st["focus_reached"].as_u64(), st["focus_sites"].as_u64());
    assert!(focus_sites > Some(0) && focus_reached > Some(0) && focus_reached <= focus_sites, "{st}");
    assert_every_area_named("arm32-pools-6.1", &out, &["pool-low@4c400000", "pool-high@74c00000", "reserved"]);

    let pcs = std::fs::read_dir(out.join("coverage"))
        .expect("OUT/coverage")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pcs"))
        .count();
    assert!(pcs >= 1, "no client wrote its PCs");
    let c = Command::new(env!("CARGO_BIN_EXE_cmafuzz")).arg("coverage").arg(&out).output().expect("coverage runs");
    let text = String::from_utf8_lossy(&c.stdout);
    assert_eq!(c.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&c.stderr));
    println!("{}", text.lines().next().unwrap_or(""));
    let (reached, never) = text.split_once("never reached").expect("a never-reached section");
    let listed = |section: &str, f: &str| section.lines().any(|l| l.split_whitespace().nth(1) == Some(f));
    assert!(listed(reached, "cma_alloc"), "cma_alloc not reached:\n{text}");
    assert!(listed(reached, "cma_release"), "cma_release not reached:\n{text}");
    // Runs once, at boot (core_initcall), before the agent traces anything: no op reaches it.
    assert!(listed(never, "cma_init_reserved_areas"), "cma_init_reserved_areas not listed as never reached:\n{text}");

    let j = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("coverage")
        .arg(&out)
        .arg("--json")
        .output()
        .expect("coverage --json runs");
    let funcs: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    let alloc =
        funcs.as_array().and_then(|a| a.iter().find(|f| f["function"] == "cma_alloc")).expect("cma_alloc in the JSON");
    assert_eq!(alloc["file"], "mm/cma.c");
    assert!(alloc["hit"].as_u64() > Some(0) && alloc["hit"].as_u64() <= alloc["sites"].as_u64(), "{alloc}");
    // The focus is cma_alloc's sites, and what the campaign counted reaching is what its PCs hit.
    assert_eq!(alloc["sites"].as_u64(), focus_sites, "{alloc} vs {st}");
    assert_eq!(alloc["hit"].as_u64(), focus_reached, "{alloc} vs {st}");
}

#[test]
fn a_short_campaign_from_one_observe_finds_the_order_per_bit_bug_and_its_reproducer_replays() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().expect("tempdir");
    let (o, out) =
        campaign("arm64-hugetlb-6.1", d.path(), "3m", 14323, &["--kernel-patch", &bug(), "--stop-on-finding"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "not found:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let s = stats(&out);
    println!("found after {} s, {} execs; areas {}", s["run_time_s"], s["execs"], s["areas"]);
    let dirs: Vec<PathBuf> = std::fs::read_dir(out.join("findings"))
        .expect("findings")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    assert!(!dirs.is_empty(), "no finding on disk");
    let bitmap = dirs
        .iter()
        .find(|p| {
            std::fs::read_to_string(p.join("meta.json"))
                .is_ok_and(|m| m.contains("\"kind\": \"bitmap\"") || m.contains("\"kind\":\"bitmap\""))
        })
        .unwrap_or_else(|| panic!("no bitmap finding among {dirs:?}"));
    let repro = std::fs::read_dir(bitmap)
        .expect("finding dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "prog"))
        .expect("a reproducer .prog");
    let text = std::fs::read_to_string(&repro).expect("reproducer");
    assert!(text.contains("hugetlb0"), "the reproducer does not name hugetlb0:\n{text}");
    let replay = |patch: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cmafuzz"));
        c.args(["replay", "--target", "arm64-hugetlb-6.1"]).arg(&repro);
        if patch {
            c.args(["--kernel-patch", &bug()]);
        }
        c.output().expect("replay runs")
    };
    let on_bug = replay(true);
    assert_eq!(on_bug.status.code(), Some(1), "{}", String::from_utf8_lossy(&on_bug.stdout));
    let clean = replay(false);
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stdout));
}
