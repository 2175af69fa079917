//! The injected-bug suite: every `benchmarks/bugs/*.patch` names, in its
//! header, the target, a program that reaches the bug and the kind of the
//! first verdict it must cause. Each is built into a real kernel (a
//! ccache variant build) and replayed against the model: the bug must be
//! seen, as that kind of verdict and not suppressed, with exit code 1. "First" is by op order,
//! the finding a campaign records.

use cmafuzz::backend::kernel::boot::KernelChoice;
use cmafuzz::diff::BackendChoice;
use cmafuzz::replay;
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
        let kc = KernelChoice { src: None, patches: vec![b.patch.clone()], ..Default::default() };
        let mut out = Vec::new();
        let opts = replay::ReplayOptions::new(true).expect("options");
        let sum = replay::replay(&t, BackendChoice::Both, &kc, &[prog], &opts, &mut out).expect("replay runs");
        let text = String::from_utf8_lossy(&out);
        let name = b.patch.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        assert_eq!(sum.exit_code(), 1, "{name}: not caught:\n{text}");
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("")).expect("JSON line");
        assert_eq!(v["verdict"], "finding", "{name}");
        // The program's finding: its first unsuppressed verdict by op order, as a campaign
        // records it (`findings::first_finding`: at one op, the bitmap, then a mapping, before
        // the op's outcome; end and console verdicts after every op's).
        let rank = |k: &str| match k {
            "bitmap" => 0,
            "mapping" | "alias-violation" => 1,
            _ => 2,
        };
        let first = v["verdicts"]
            .as_array()
            .and_then(|vs| {
                vs.iter().filter(|x| x["suppressed"].is_null() && x["kind"] != "harness-error").min_by_key(|x| {
                    (x["op_index"].as_u64().unwrap_or(u64::MAX), rank(x["kind"].as_str().unwrap_or("")))
                })
            })
            .unwrap_or_else(|| panic!("{name}: no unsuppressed verdict: {}", v["verdicts"]));
        assert_eq!(first["kind"], b.verdict.as_str(), "{name}: {}", v["verdicts"]);
    }
}

/// A campaign runs program after program in one VM, so what a buggy kernel leaves behind must
/// not be pinned on the next program. Here the buggy free (`arm32-lowmem-free-keeps-uncached`)
/// runs in the driver's reset and leaves the pages uncached; the reset check must see that (it
/// compares the mappings, not only the bitmaps) and reboot, and a bare `observe` after it
/// agrees. Then `release-clears-one-bit-short` leaks bits, forcing a reboot; the program after
/// it uses PKMAP slots and must not diverge on the slot cursor (the model takes the fresh VM's).
#[test]
fn what_a_buggy_kernel_leaves_behind_is_not_pinned_on_the_next_program() {
    use cmafuzz::diff::Executor;
    use reference_impl::program::Program;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases = [
        (
            "arm32-lowmem-free-keeps-uncached.patch",
            "arm32-lowmem-6.1",
            "dma_alloc size=12288\ndma_alloc size=8192 attrs=wc\n",
            "observe\n",
        ),
        (
            "release-clears-one-bit-short.patch",
            "arm32-6.1",
            "cma_alloc area=reserved count=16\ncma_release h=0\n",
            "kmap area=reserved off=808\ndma_alloc size=53247 attrs=wc\ndma_alloc size=53247 attrs=wc\n\
             observe\nkmap area=reserved off=808\n",
        ),
    ];
    for (patch, target, first, next) in cases {
        let t = targets::find(Some(target)).expect("target");
        let kc =
            KernelChoice { src: None, patches: vec![root.join("benchmarks/bugs").join(patch)], ..Default::default() };
        let sup = cmafuzz::oracle::Suppressions::builtin().expect("suppressions");
        let mut ex = Executor::start(&t, BackendChoice::Both, &kc, sup, &mut |_| {}).expect("VM starts");
        let first = Program::parse(first).expect("parses");
        let next = Program::parse(next).expect("parses");
        ex.execute(&first).expect("first program runs");
        let reboots = ex.subject.as_ref().map(|k| k.reboots).expect("a kernel");
        let e = ex.execute(&next).expect("next program runs");
        let after = ex.subject.as_ref().map(|k| k.reboots).expect("a kernel");
        assert!(after > reboots, "{patch}: the reset did not notice what the first program left");
        let bad: Vec<_> = e.verdicts.iter().filter(|v| v.suppressed.is_none()).map(|v| &v.signature).collect();
        assert!(bad.is_empty(), "{patch}: the next program was blamed for the last one's leftovers: {bad:?}");
    }
}

#[test]
fn a_second_kernel_with_the_release_bug_is_judged_against_the_first_and_a_pristine_one_agrees() {
    // `replay corpora/seed --target arm32-6.1 --vs-kernel-patch <release bug>`: the model checks the
    // pristine kernel (they agree), the patched kernel is judged against it.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let t = targets::find(Some("arm32-6.1")).expect("target");
    let files = replay::collect_files(&[root.join("corpora/seed")]).expect("seeds");
    let progs: Vec<_> = files.iter().map(|f| replay::load(f).expect("seed")).collect();
    let patch = root.join("benchmarks/bugs/release-clears-one-bit-short.patch");
    let run = |vs_patches: Vec<PathBuf>| {
        let mut opts = replay::ReplayOptions::new(false).expect("options");
        opts.vs = Some(replay::VsKernel {
            target: t.clone(),
            kernel: KernelChoice { src: None, patches: vs_patches, ..Default::default() },
            name: "kernel (patched)".into(),
        });
        let mut out = Vec::new();
        let sum = replay::replay(&t, BackendChoice::Both, &KernelChoice::default(), &progs, &opts, &mut out)
            .expect("replay runs");
        (sum, String::from_utf8_lossy(&out).into_owned())
    };
    let (sum, text) = run(vec![patch]);
    assert_eq!(sum.exit_code(), 1, "{text}");
    assert_eq!(sum.diverge, 0, "the model and the pristine kernel must agree:\n{text}");
    assert!(sum.vs_differ > 0, "{text}");
    assert!(
        text.contains("kernel (patched) vs kernel: VERDICT: bitmap [bitmap:reserved]"),
        "the bitmap difference between the kernels is not reported:\n{text}"
    );
    assert!(!text.contains("[mapping:pkmap-slot]"), "a restarted kernel's PKMAP cursor is not a difference:\n{text}");
    // The same pristine kernel on both sides: nothing differs.
    let (sum, text) = run(vec![]);
    assert_eq!((sum.exit_code(), sum.vs_differ), (0, 0), "{text}");
}

/// `release-testzero-in-vm-warn-on-7.2` lives only where DEBUG_VM is off (the suite above catches
/// it on `arm32-7.2` as `refcount`): on `arm32-debug-7.2` `VM_WARN_ON()` evaluates its condition,
/// the references are dropped and the same program agrees with the model, with no verdict.
#[test]
fn the_testzero_regression_is_harmless_where_debug_vm_is_on() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let t = targets::find(Some("arm32-debug-7.2")).expect("target");
    let prog = replay::load(&root.join("corpora/seed/01-alloc-release.prog")).expect("program");
    let patch = root.join("benchmarks/bugs/release-testzero-in-vm-warn-on-7.2.patch");
    let kc = KernelChoice { src: None, patches: vec![patch], ..Default::default() };
    let mut out = Vec::new();
    let opts = replay::ReplayOptions::new(true).expect("options");
    let sum = replay::replay(&t, BackendChoice::Both, &kc, &[prog], &opts, &mut out).expect("replay runs");
    let text = String::from_utf8_lossy(&out);
    assert_eq!((sum.exit_code(), sum.diverge, sum.errors), (0, 0, 0), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("")).expect("JSON line");
    assert_eq!(v["verdicts"].as_array().map(Vec::len), Some(0), "{text}");
}

/// Every kernel built from one Debian source, arch and fragment set shares one tree and its
/// objects (`build::tree::build_variant`): a variant recompiles only what it and the one before
/// it changed. A kernel built right after a bug's must carry none of the bug: a patch that only
/// appends a comment, built after the bug, gives the pristine kernel's code and data exactly,
/// and recompiles a handful of files, not the tree. Both patches are new to the cache on every
/// run (a comment naming this run), so both really build.
#[test]
fn a_variant_built_after_another_carries_none_of_its_patches() {
    use cmafuzz::build::kernel::{self, BuildRequest};
    use cmafuzz::build::signature;
    let t = targets::find(Some("arm32-6.1")).expect("target");
    let mut log = |l: &str| eprintln!("{l}");
    let req = |patches: Vec<PathBuf>| BuildRequest { target: t.clone(), src: None, patches };
    let pristine = kernel::build(&req(vec![]), &mut log).expect("pristine kernel");
    let sig0 = signature::of_vmlinux(&pristine.vmlinux).expect("signature");

    let tree = kernel::pristine_tree(&t, &mut log).expect("source");
    let d = tempfile::tempdir().expect("temp dir");
    let run = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let comment = |name: &str| {
        let rel = "kernel/dma/contiguous.c";
        let old = std::fs::read_to_string(tree.join(rel)).expect("source file");
        let (a, b) = (d.path().join(format!("{name}.a")), d.path().join(format!("{name}.b")));
        std::fs::write(&a, &old).expect("write");
        std::fs::write(&b, format!("{old}/* cmafuzz variant test {name} {run} */\n")).expect("write");
        let out = std::process::Command::new("diff")
            .args(["-u", "--label", &format!("a/{rel}"), "--label", &format!("b/{rel}")])
            .arg(&a)
            .arg(&b)
            .output()
            .expect("diff");
        let p = d.path().join(format!("{name}.patch"));
        std::fs::write(&p, &out.stdout).expect("write");
        p
    };
    let bug = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benchmarks/bugs/release-clears-one-bit-short.patch");
    let a = kernel::build(&req(vec![bug, comment("a")]), &mut log).expect("the bug's kernel");
    let b = kernel::build(&req(vec![comment("b")]), &mut log).expect("the comment's kernel");
    assert!(!a.cache_hit && !b.cache_hit, "both built");
    assert_ne!(signature::of_vmlinux(&a.vmlinux).expect("signature"), sig0, "the bug changes the kernel");
    assert_eq!(signature::of_vmlinux(&b.vmlinux).expect("signature"), sig0, "the bug is gone from the next build");
    let blog = std::fs::read_to_string(b.dir.join("build.log")).expect("build log");
    let compiled: Vec<&str> = blog.lines().filter(|l| l.trim_start().starts_with("CC ")).collect();
    assert!(
        compiled.iter().any(|l| l.ends_with("mm/cma.o")) && compiled.iter().any(|l| l.ends_with("contiguous.o")),
        "the files the two patches touched are recompiled: {compiled:?}"
    );
    assert!(compiled.len() < 20, "{} files recompiled, not a handful: {compiled:?}", compiled.len());
    for k in [a, b] {
        std::fs::remove_dir_all(&k.dir).expect("removing this test's kernels");
    }
}
