//! A campaign keeps its queue bounded by usefulness: it culls the queue to the programs covering
//! every map entry it reached (the rule of `cmafuzz corpus minimize`) as it grows and at exit.
//! On the model alone (`--backend model`: no kernel, no VM), where a campaign runs hundreds of
//! programs a second and its queue would grow fastest.

#[path = "common/campaign.rs"]
mod campaign;

use campaign::corpus_files;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn a_model_campaign_culls_its_queue_to_a_set_covering_every_entry_its_feedback_saw() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .args(["fuzz", "--backend", "model", "--target", "arm32-6.1", "--duration", "20s", "--cores", "1"])
        .args(["--minimize-budget", "0", "--listen", "127.0.0.1:14331"])
        .arg("--corpus")
        .arg(root().join("corpora/seed"))
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("cmafuzz fuzz runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains(" (culled "), "the status line gives what was culled: {stdout}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("stats.json")).expect("stats.json"))
            .expect("parses");
    let kept = corpus_files(out.path());
    let culled = stats["culled"].as_u64().expect("culled in stats.json");
    assert!(culled > 0, "a 20 s model campaign culls: {stats}");
    assert_eq!(stats["corpus"].as_u64(), Some(kept.len() as u64), "{stats}");
    assert_eq!(stats["findings_total"], 0, "the model alone agrees with itself: {stats}");
    // Every culled program is named in corpus.culled and gone from the queue.
    let log = std::fs::read_to_string(out.path().join("corpus.culled")).expect("corpus.culled");
    let names: Vec<&str> = log.lines().collect();
    assert_eq!(names.len() as u64, culled, "one line per culled program");
    assert!(names.iter().all(|n| !kept.contains(*n)), "a culled program is still in the queue");

    // The queue left is already its own covering set, and it covers every entry the
    // campaign's feedback saw (its coverage figure; no finding took a program out of the queue).
    let m = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .args(["corpus", "minimize", "--backend", "model", "--target", "arm32-6.1"])
        .arg(out.path())
        .output()
        .expect("corpus minimize runs");
    let said = String::from_utf8_lossy(&m.stdout);
    assert_eq!(m.status.code(), Some(0), "{said}\n{}", String::from_utf8_lossy(&m.stderr));
    let n = kept.len();
    let entries = stats["coverage_model"].as_u64().expect("coverage_model");
    assert!(
        said.contains(&format!("{n} programs -> {n} reaching the same {entries} coverage entries")),
        "queue of {n} covering {entries} entries: {said}"
    );
}
