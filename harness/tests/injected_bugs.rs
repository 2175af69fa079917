//! The injected-bug suite: every `benchmarks/bugs/*.patch` names, in its
//! header, the target, a program that reaches the bug and the kind of the
//! first verdict it must cause. Each is built into a real kernel (a
//! ccache variant build) and replayed against the model: the bug must be
//! seen, as that kind of verdict and not suppressed, with exit code 1.

use cmafuzz::replay::{self, BackendChoice};
use cmafuzz::session::KernelChoice;
use cmafuzz::targets;
use std::path::PathBuf;

struct Bug {
    patch: PathBuf,
    target: String,
    program: PathBuf,
    verdict: String,
}

fn bugs() -> Vec<Bug> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("benchmarks/bugs"))
        .expect("benchmarks/bugs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    v.into_iter()
        .map(|patch| {
            let text = std::fs::read_to_string(&patch).expect("readable patch");
            let head = text.split("\n---").next().unwrap_or("");
            let field = |k: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_else(|| panic!("{}: no `{k}` header line", patch.display()))
            };
            assert!(head.starts_with("Breaks: "), "{}: first line must say what it breaks", patch.display());
            Bug { target: field("Target:"), program: root.join(field("Program:")), verdict: field("Verdict:"), patch }
        })
        .collect()
}

#[test]
fn every_injected_bug_is_caught_as_its_declared_divergence() {
    let bugs = bugs();
    assert!(bugs.len() >= 6, "the suite has {} bugs", bugs.len());
    let mapping = bugs.iter().filter(|b| b.verdict == "mapping").count();
    assert!(mapping >= 3, "{mapping} mapping bugs; the suite needs at least 3");
    for b in bugs {
        let t = targets::find(Some(&b.target)).expect("target");
        let prog = replay::load(&b.program).expect("program");
        let kc = KernelChoice { src: None, patches: vec![b.patch.clone()] };
        let mut out = Vec::new();
        let opts = replay::ReplayOptions::new(true).expect("options");
        let sum = replay::replay(&t, BackendChoice::Both, &kc, &[prog], &opts, &mut out).expect("replay runs");
        let text = String::from_utf8_lossy(&out);
        let name = b.patch.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        assert_eq!(sum.exit_code(), 1, "{name}: not caught:\n{text}");
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("")).expect("JSON line");
        assert_eq!(v["verdict"], "finding", "{name}");
        let first = v["verdicts"]
            .as_array()
            .and_then(|vs| vs.iter().find(|x| x["suppressed"].is_null()))
            .unwrap_or_else(|| panic!("{name}: no unsuppressed verdict: {}", v["verdicts"]));
        assert_eq!(first["kind"], b.verdict.as_str(), "{name}: {}", v["verdicts"]);
    }
}
