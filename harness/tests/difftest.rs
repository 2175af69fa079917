//! `cmafuzz difftest` on real kernels (from the build cache): generated programs agree with the
//! model, and on arm64 the resets between programs keep the atomic pools' growth instead of
//! rebooting the VM.

use cmafuzz::backend::kernel::boot::KernelChoice;
use cmafuzz::difftest::{self, DifftestOptions, DifftestSummary};
use cmafuzz::targets;

fn run(target: &str, count: u64, seed: u64) -> DifftestSummary {
    let t = targets::find(Some(target)).expect("target");
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = DifftestOptions { count, seed, out_dir: dir.path().to_path_buf() };
    let mut out = Vec::new();
    let sum = difftest::difftest(&t, &KernelChoice::default(), &opts, &mut out).expect("difftest runs");
    println!("{}\n{target}: {}", String::from_utf8_lossy(&out), sum.render());
    assert_eq!((sum.divergences, sum.errors), (0, 0), "{target}:\n{}", String::from_utf8_lossy(&out));
    assert_eq!(sum.programs, count);
    sum
}

#[test]
fn generated_programs_agree_with_the_model_on_arm32_6_1() {
    let sum = run("arm32-6.1", 2000, 20261124);
    assert_eq!(sum.reboots, 0, "arm32 has no pool growth, so no reset needs a reboot");
    // The generator's kmaps reach the stale PKMAP slot of KNOWN-ISSUES.md KI-1: the kernel-side
    // alias scan sees it, the model predicted it (no divergence), and it stays suppressed.
    let pkmap = sum.suppressed.get("alias-violation:vmap:nc+pkmap:wb").copied().unwrap_or(0);
    assert!(pkmap > 0, "no stale-PKMAP alias in 2000 programs: {:?}", sum.suppressed);
}

#[test]
fn generated_programs_agree_with_the_model_on_arm32_lpae_6_1() {
    run("arm32-lpae-6.1", 2000, 20261124);
}

#[test]
fn generated_programs_agree_on_three_areas_from_the_device_tree() {
    run("arm32-pools-6.1", 2000, 20261124);
}

#[test]
fn generated_programs_agree_on_an_order_per_bit_9_hugetlb_area() {
    let sum = run("arm64-hugetlb-6.1", 2000, 20261124);
    let linear = sum.suppressed.get("alias-by-design:arm64-linear-alias").copied().unwrap_or(0);
    assert!(linear > 0, "arm64 keeps its linear alias by design: {:?}", sum.suppressed);
}

#[test]
fn generated_programs_agree_on_arm64_6_1_and_pool_growth_does_not_reboot() {
    let sum = run("arm64-6.1", 2000, 20261124);
    assert!(sum.grown_resets > 200, "the programs grow the atomic pools: {} resets", sum.grown_resets);
    assert!(u64::from(sum.reboots) < sum.programs / 10, "{} reboots for {} programs", sum.reboots, sum.programs);
}

#[test]
fn generated_programs_agree_with_the_model_on_arm32_lowmem_6_1() {
    run("arm32-lowmem-6.1", 2000, 20261124);
}

#[test]
fn generated_programs_agree_with_the_model_on_arm32_6_12() {
    run("arm32-6.12", 2000, 20261124);
}

#[test]
fn generated_programs_agree_with_the_model_on_arm64_6_12() {
    let sum = run("arm64-6.12", 2000, 20261124);
    assert!(u64::from(sum.reboots) < sum.programs / 10, "{} reboots for {} programs", sum.reboots, sum.programs);
}

/// Issue 11's acceptance, as a regression guard: generated programs on every 7.x target, no
/// unsuppressed verdict. 2000 programs each agreed (2026-12-03, this test with 2000 everywhere:
/// 24 minutes, the two-range target 9 of them: every observation there walks 2 GiB of
/// page-granular linear map under TCG; arm32-lpae-7.2, added later, 2000 in 23 s on 2026-12-07);
/// CI runs 500, and 100 on the two-range target.
#[test]
fn generated_programs_agree_with_the_model_on_every_7x_target() {
    for (t, n) in [
        ("arm32-7.2", 500),
        ("arm32-lowmem-7.2", 500),
        ("arm32-pools-7.2", 500),
        ("arm32-debug-7.2", 500),
        ("arm32-lpae-7.2", 500),
        ("arm64-7.2", 500),
        ("arm64-hugetlb-7.2", 500),
        ("arm64-hugetlb-ranges-7.2", 100),
        ("arm32-7.3", 500),
        ("arm64-7.3", 500),
    ] {
        run(t, n, 20261124);
    }
}

#[test]
fn difftest_finds_the_injected_alignment_bug_and_keeps_reproducers_that_parse() {
    let t = targets::find(Some("arm64-6.1")).expect("target");
    let patch =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benchmarks/bugs/alignment-offset-ignored.patch");
    let kc = KernelChoice { src: None, patches: vec![patch], ..Default::default() };
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = DifftestOptions { count: 100, seed: 1, out_dir: dir.path().to_path_buf() };
    let mut out = Vec::new();
    let sum = difftest::difftest(&t, &kc, &opts, &mut out).expect("difftest runs");
    let text = String::from_utf8_lossy(&out);
    assert!(sum.divergences > 0, "the bug went unnoticed:\n{text}");
    assert_eq!((sum.errors, sum.exit_code()), (0, 1), "{text}");
    assert_eq!(sum.reproducers.len() as u64, sum.divergences);
    for p in &sum.reproducers {
        assert!(p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("difftest-arm64-6.1-")), "{p:?}");
        let prog = std::fs::read_to_string(p).expect("reproducer written");
        reference_impl::program::Program::parse(&prog).expect("reproducer parses");
        assert!(text.contains(&p.display().to_string()), "path printed");
    }
}
