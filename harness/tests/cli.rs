//! The command line as a user meets it: bad input gives one clear error
//! line and exit 2; a model-only replay needs no VM.

use std::path::PathBuf;
use std::process::{Command, Output};

fn cmafuzz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cmafuzz")).args(args).output().expect("cmafuzz runs")
}

fn seed_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpora/seed").display().to_string()
}

fn error_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("error")).map(String::from).collect()
}

#[test]
fn malformed_program_names_file_line_and_column_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.prog");
    std::fs::write(&p, "observe\ncma_alloc area=reserved count=banana\n").expect("write");
    let o = cmafuzz(&["replay", p.to_str().expect("utf8"), "--backend", "model"]);
    assert_eq!(o.status.code(), Some(2));
    let errs = error_lines(&o);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("bad.prog") && errs[0].contains("line 2") && errs[0].contains("column"), "{}", errs[0]);
}

#[test]
fn model_only_replay_of_the_seed_corpus_succeeds_without_a_vm() {
    let o = cmafuzz(&["replay", &seed_dir(), "--backend", "model"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("0 errors"), "{out}");
}

#[test]
fn json_replay_prints_one_object_per_program() {
    let o = cmafuzz(&["replay", &seed_dir(), "--backend", "model", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<_> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    let files = std::fs::read_dir(seed_dir()).expect("seed").count();
    assert_eq!(lines.len(), files);
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
        assert!(v["ops"].is_array() && v["file"].is_string());
    }
}

#[test]
fn unknown_target_is_one_line_and_exit_2() {
    let o = cmafuzz(&["replay", &seed_dir(), "--target", "mips-2.6"]);
    assert_eq!(o.status.code(), Some(2));
    let errs = error_lines(&o);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("mips-2.6") && errs[0].contains("arm32-6.1"), "{}", errs[0]);
}

#[test]
fn bad_flag_exits_2() {
    let o = cmafuzz(&["replay", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn missing_kernel_source_tree_is_one_line_and_exit_2() {
    let o = cmafuzz(&["replay", &seed_dir(), "--kernel-src", "/nonexistent/linux"]);
    assert_eq!(o.status.code(), Some(2));
    let errs = error_lines(&o);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("/nonexistent/linux"), "{}", errs[0]);
}

#[test]
fn patch_that_does_not_apply_is_named_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("nonsense.patch");
    std::fs::write(
        &p,
        "--- a/mm/cma.c\n+++ b/mm/cma.c\n@@ -1,3 +1,3 @@\n-this line is not in cma.c\n+neither is this\n context\n",
    )
    .expect("write");
    let o = cmafuzz(&["kernel", "build", "--kernel-patch", p.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
    let errs = error_lines(&o);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("nonsense.patch") && errs[0].contains("does not apply"), "{}", errs[0]);
}

#[test]
fn missing_patch_file_is_one_line_and_exit_2() {
    let o = cmafuzz(&["kernel", "build", "--kernel-patch", "/nonexistent/fix.patch"]);
    assert_eq!(o.status.code(), Some(2));
    let errs = error_lines(&o);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("/nonexistent/fix.patch"), "{}", errs[0]);
}

#[test]
fn doctor_lists_every_tool_with_its_status() {
    let o = cmafuzz(&["doctor"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for tool in ["qemu-system-arm", "arm-linux-gnueabihf-gcc", "aarch64-linux-gnu-gcc", "linux-source-6.1"] {
        assert!(out.contains(tool), "{out}");
    }
    // scripts/test.sh installs everything, so the doctor is satisfied here.
    assert_eq!(o.status.code(), Some(0), "{out}");
}

#[test]
fn a_zero_or_garbled_watchdog_and_a_watchdog_on_kernel_build_are_one_clear_error() {
    for bad in ["0s", "soon"] {
        let o = cmafuzz(&["replay", &seed_dir(), "--backend", "model", "--watchdog", bad]);
        assert_eq!(o.status.code(), Some(2), "--watchdog {bad}");
        let e = error_lines(&o);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("--watchdog"), "{e:?}");
    }
    let o = cmafuzz(&["kernel", "build", "--watchdog", "5s"]);
    assert_eq!(o.status.code(), Some(2));
    let e = error_lines(&o);
    assert!(e.len() == 1 && e[0].contains("not to kernel build"), "{e:?}");
}

#[test]
fn vs_kernel_patch_naming_a_missing_file_is_one_clear_error_before_any_build() {
    let o = cmafuzz(&["replay", &seed_dir(), "--vs-kernel-patch", "/nonexistent/fix.patch"]);
    assert_eq!(o.status.code(), Some(2));
    let e = error_lines(&o);
    assert!(e.len() == 1 && e[0].contains("/nonexistent/fix.patch"), "{e:?}");
}

#[test]
fn a_reader_that_went_away_is_no_panic_and_the_command_ends_normally() {
    // `cmafuzz targets | head -0`: the pipe's read end is closed before the first write.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("targets")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("cmafuzz runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}
