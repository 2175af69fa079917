//! Real kernels in qemu: boot both 6.1 targets, replay the seed corpus on
//! the model and the kernel side by side, and pin the kernel's answers to
//! the edge cases the spec observed. Kernels come from the build cache
//! (scripts/test.sh builds them first; a cold cache builds them here).

use cmafuzz::backend::kernel::boot::{self as session, KernelChoice};
use cmafuzz::backend::{Backend, BackendError, KernelBackend};
use cmafuzz::diff::BackendChoice;
use cmafuzz::guest::GuestError;
use cmafuzz::oracle::placement::placement_note;
use cmafuzz::replay;
use cmafuzz::targets;
use reference_impl::outcome::Outcome;
use reference_impl::program::Program;
use reference_impl::units::{Pages, Pfn};
use std::path::PathBuf;

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpora/seed")
}

fn boot(target: &str) -> KernelBackend {
    let t = targets::find(Some(target)).expect("target");
    session::boot_kernel(&t, &KernelChoice::default(), &mut |l| eprintln!("{l}")).expect("kernel boots")
}

/// Replays `programs` on the model and the kernel of `t` in process; prints and returns the output.
fn replay_both(t: &targets::Target, programs: &[replay::LoadedProgram], json: bool) -> (replay::Summary, String) {
    let mut out = Vec::new();
    let sum = replay::replay(
        t,
        BackendChoice::Both,
        &KernelChoice::default(),
        programs,
        &replay::ReplayOptions::new(json).expect("options"),
        &mut out,
    )
    .expect("replay runs");
    let text = String::from_utf8_lossy(&out).into_owned();
    println!("{text}");
    (sum, text)
}

fn replay_seeds(target: &str) {
    let t = targets::find(Some(target)).expect("target");
    let files = replay::collect_files(&[seed_dir()]).expect("seed corpus");
    let programs: Vec<_> = files.iter().map(|f| replay::load(f).expect("seed parses")).collect();
    assert!(programs.len() >= 20, "seed corpus has {} programs", programs.len());
    let (sum, text) = replay_both(&t, &programs, false);
    assert_eq!((sum.diverge, sum.errors), (0, 0), "seed corpus on {target}:\n{text}");
    // The layout recorded for model-only runs is the one the kernel really has, and on arm32 the
    // model's placement rule (spec §1.6) predicts the default area's base.
    let boot = sum.kernel_boot.as_ref().expect("a kernel ran");
    assert_eq!(placement_note(&t, boot, None), None);
    assert!(!text.contains("VERDICT: placement"), "{text}");
    if t.arch.starts_with("arm32") {
        let def = boot.areas.iter().find(|a| a.name == "reserved").expect("default area");
        let reserved: Vec<_> =
            boot.areas.iter().filter(|a| a.name != "reserved").flat_map(|a| a.pfn_ranges()).collect();
        let profile = t.profile().expect("profile");
        let want = reference_impl::placement::predict_default_area(&profile, def.count, &reserved);
        assert_eq!(want, Some(def.base_pfn()), "{target}: predicted placement");
    }
    assert_eq!(sum.agree, programs.len());
}

#[test]
fn seed_corpus_agrees_with_the_model_on_arm32_6_1() {
    replay_seeds("arm32-6.1");
}

#[test]
fn seed_corpus_agrees_with_the_model_on_arm64_6_1() {
    replay_seeds("arm64-6.1");
}

#[test]
fn seed_corpus_agrees_with_the_model_on_arm32_lowmem_6_1() {
    replay_seeds("arm32-lowmem-6.1");
}

#[test]
fn seed_corpus_agrees_with_the_model_on_arm32_6_12() {
    replay_seeds("arm32-6.12");
}

#[test]
fn seed_corpus_agrees_with_the_model_on_arm64_6_12() {
    replay_seeds("arm64-6.12");
}

/// Issue 11's acceptance: the seed corpus on every 7.x target (the debug and the two-range
/// targets have their own tests below).
#[test]
fn seed_corpus_agrees_with_the_model_on_every_7x_target() {
    for t in [
        "arm32-7.2",
        "arm32-lowmem-7.2",
        "arm32-pools-7.2",
        "arm32-lpae-7.2",
        "arm64-7.2",
        "arm64-hugetlb-7.2",
        "arm32-7.3",
        "arm64-7.3",
    ] {
        replay_seeds(t);
    }
}

/// The kernel as many users build it (CONFIG_DEBUG_VM and CONFIG_DMA_API_DEBUG on): every
/// VM_BUG_ON/VM_WARN_ON evaluated, every freed page checked, every DMA alloc/free and streaming
/// map tracked, and still no unsuppressed verdict on the seed corpus, `dma_map` included.
#[test]
fn seed_corpus_agrees_with_the_model_on_arm32_debug_7_2() {
    replay_seeds("arm32-debug-7.2");
    // What DMA-API debug reported before the driver worked around it: a streaming map of a
    // dma_alloc buffer synced with dma_sync_single_* (KI-3, `dma-api:sync-not-allocated`), and a
    // 512 KiB segment over the default 64 KiB max_seg_size (`dma-api:sg-segment-too-long`).
    let t = targets::find(Some("arm32-debug-7.2")).expect("target");
    let text = "dma_alloc size=8192\ndma_map h=0\ndma_map h=0 dir=to_device\n\
                dma_alloc size=4096 attrs=nokmap\ndma_map h=1 dir=from_device\n\
                cma_alloc area=reserved count=128\ndma_map h=2\nobserve\n";
    let program = Program::parse(text).expect("parses");
    let programs = [replay::LoadedProgram { path: PathBuf::from("dma-map-debug.prog"), program }];
    let (sum, out) = replay_both(&t, &programs, false);
    assert_eq!((sum.agree, sum.diverge, sum.errors), (1, 0, 0), "dma_map on the debug kernel: {out}");
    // Not even suppressed (KI-2's nokmap cookie is, and may show).
    for sig in ["dma-api:sync-not-allocated", "dma-api:sg-segment-too-long"] {
        assert!(!out.contains(sig), "{sig}: {out}");
    }
}

/// cma-spec §9.1, row "pin bit 65/97 then `cma_alloc(4,2)`": a page pinned
/// by the driver (`alloc_contig_range(pfn, pfn + 1)`, bitmap untouched)
/// inside the first candidate window makes `cma_alloc(4, 2)` meet -EBUSY and
/// retry at `bitmap_no + mask + 1`. Replays through the same path as the
/// seed corpus (model and kernel, compared op by op and bitmap by bitmap),
/// then checks the kernel's pfns against the spec, that unpinning gives the
/// window back, and that the kernel logged no WARN.
fn pin_forces_the_spec_retry(target: &str, base: u64, pin_bit: u64, retry_bit: u64) {
    let t = targets::find(Some(target)).expect("target");
    let text = format!(
        "pin area=reserved off={pin_bit}\n\
         cma_alloc area=reserved count=4 align=2\n\
         observe\n\
         unpin area=reserved off={pin_bit}\n\
         cma_alloc area=reserved count=4 align=2\n\
         observe\n"
    );
    let program = Program::parse(&text).expect("parses");
    let programs = [replay::LoadedProgram { path: PathBuf::from(format!("pin-{target}.prog")), program }];
    let (sum, text) = replay_both(&t, &programs, true);
    assert_eq!((sum.agree, sum.diverge, sum.errors), (1, 0, 0), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.lines().next().expect("one JSON line")).expect("JSON");
    assert_eq!(v["verdict"], "agree", "{v}");
    let console_verdicts: Vec<&serde_json::Value> = v["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter(|x| matches!(x["kind"].as_str(), Some("warning" | "bug" | "oops" | "panic")))
        .collect();
    assert!(console_verdicts.is_empty(), "no WARN/BUG on the console: {console_verdicts:?}");
    let kernel: Vec<Outcome> =
        (0..6).map(|i| serde_json::from_value(v["ops"][i]["kernel"].clone()).expect("kernel outcome")).collect();
    let alloc = |bit: u64| Outcome::Allocated { pfn: Pfn(base + bit), pages: Pages(4) };
    let window = pin_bit & !3;
    assert_eq!(
        kernel,
        vec![
            Outcome::Pinned { pfn: Pfn(base + pin_bit) },
            alloc(retry_bit),
            Outcome::Observed,
            Outcome::Unpinned { pfn: Pfn(base + pin_bit) },
            alloc(window),
            Outcome::Observed,
        ],
        "{target}"
    );
}

#[test]
fn arm32_cma_alloc_over_a_pinned_page_retries_at_bit_68_as_the_spec_observed() {
    // base 0x7e000, boot bits 0-63: window 64-67 holds the pin, retry at 64 + 3 + 1.
    pin_forces_the_spec_retry("arm32-6.1", 0x7e000, 65, 68);
}

#[test]
fn arm64_cma_alloc_over_a_pinned_page_retries_at_bit_100_as_the_spec_observed() {
    // base 0x7ce00 (the spec's 0x7cc00 plus one pageblock: this kernel has CONFIG_HUGETLBFS, so
    // pageblock_order is HUGETLB_PAGE_ORDER 9 and the area is 2 MiB- rather than 4 MiB-aligned),
    // boot bits 0-95: window 96-99 holds the pin, retry at 96 + 3 + 1.
    pin_forces_the_spec_retry("arm64-6.1", 0x7ce00, 97, 100);
}

/// The kernel's own answers to the edge cases of the issue, as the spec
/// observed them on 6.1.192 (arm32, highmem area at 0x7e000, bits 0-63 used).
#[test]
fn arm32_kernel_answers_edge_cases_as_observed_in_the_spec() {
    let mut k = boot("arm32-6.1");
    let boot_obs = k.boot_observation().clone();
    let area = &boot_obs.areas[0];
    assert_eq!((area.name.as_str(), area.base_pfn(), area.count), ("reserved", Pfn(0x7e000), Pages(8192)));
    assert_eq!(area.used_bits(), 64, "atomic pool holds bits 0-63");
    let prog = Program::parse(
        "cma_alloc area=reserved count=3\n\
         cma_alloc area=reserved count=5\n\
         cma_release_raw area=reserved off=67 count=2\n\
         cma_release h=0\n\
         cma_release h=0\n\
         cma_release_raw area=reserved off=8192 count=1\n\
         cma_release_raw area=reserved off=-1 count=1\n\
         cma_release_raw area=reserved off=500 count=1\n\
         cma_alloc area=reserved count=0\n\
         cma_alloc area=reserved count=8193\n\
         cma_alloc area=reserved count=1 align=12\n\
         observe\n",
    )
    .expect("parses");
    let run = k.run(&prog.resolve(&boot_obs.areas).expect("resolves")).expect("runs");
    let p = |o: u64, n: u64| Outcome::Allocated { pfn: Pfn(0x7e000 + o), pages: Pages(n) };
    assert_eq!(
        run.outcomes,
        vec![
            p(64, 3),
            p(67, 5),
            Outcome::Released,        // the first two pages of the 5-page block
            Outcome::Released,        // h=0
            Outcome::Noop,            // h=0 again
            Outcome::ReleaseRejected, // pfn at base+count
            Outcome::ReleaseRejected, // pfn below base
            Outcome::Refused,         // nobody holds bit 500
            Outcome::AllocFailed,     // count 0
            Outcome::AllocFailed,     // more than the area
            p(4096, 1),               // align 12 from bit 72
            Outcome::Observed,
        ]
    );
    // bits 0-63 (pool), 69-71 (rest of h=1), 4096 (h=2)
    let bm = &run.end.areas[0].ranges[0].bitmap;
    assert_eq!((bm[0], bm[1], bm[2]), (u32::MAX, u32::MAX, 0b1110_0000));
    assert_eq!(run.end.areas[0].used_bits(), 64 + 3 + 1);
    k.reset().expect("reset");
    let again = k.run(&Program::parse("observe\n").expect("p").resolve(&boot_obs.areas).expect("r")).expect("run");
    assert_eq!(again.end.areas, boot_obs.areas, "reset restores the boot bitmap");
    assert_eq!(k.reboots, 0, "reset needed no reboot");
}

#[test]
fn a_guest_that_dies_mid_session_is_an_error_and_the_next_program_gets_a_fresh_vm() {
    let mut k = boot("arm32-6.1");
    let areas = k.boot_observation().areas.clone();
    let prog = Program::parse("cma_alloc area=reserved count=4\nobserve\n").expect("parses");
    let resolved = prog.resolve(&areas).expect("resolves");
    let pid = k.vm_pid().expect("a VM runs");
    // SAFETY: sending SIGKILL to our own child qemu.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    match k.run(&resolved) {
        Err(BackendError::Guest { source: GuestError::Disconnected | GuestError::Timeout { .. }, .. }) => {}
        other => panic!("expected a dead-guest error, got {other:?}"),
    }
    let run = k.run(&resolved).expect("a fresh VM runs the program");
    assert_eq!(run.outcomes[0], Outcome::Allocated { pfn: Pfn(0x7e040), pages: Pages(4) });
    assert_eq!(k.reboots, 1);
}

/// A real kernel that panics in the middle of a program (a test patch makes
/// `cma_alloc(count=4242)` panic): `cmafuzz replay` gives a panic verdict with the console
/// excerpt, reports the dead run on one error line, keeps the console, and exits 1 (a finding).
#[test]
fn replay_on_a_kernel_that_panics_mid_program_is_a_panic_verdict_with_the_console_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = dir.path().join("dies.prog");
    std::fs::write(&prog, "cma_alloc area=reserved count=1\ncma_alloc area=reserved count=4242\nobserve\n")
        .expect("write");
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/panic-on-cma-alloc-4242.patch");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(&prog)
        .arg("--kernel-patch")
        .arg(&patch)
        .output()
        .expect("cmafuzz runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    let verdict = stdout.lines().find(|l| l.contains("VERDICT: panic")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(verdict.contains("panic on cma_alloc(count=4242)"), "{verdict}");
    assert!(!stdout.contains("VERDICT: hang") && !stdout.contains("harness-error"), "{stdout}");
    let errs: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errs.len(), 1, "{stderr}");
    assert!(errs[0].contains("dies.prog") && errs[0].contains("closed the channel"), "{}", errs[0]);
    let saved = errs[0].rsplit("saved to ").next().and_then(|s| s.strip_suffix(')')).expect("console path");
    let console = std::fs::read_to_string(saved).expect("saved console");
    assert!(console.contains("cmafuzz test fixture: panic on cma_alloc(count=4242)"), "{console}");
    let _ = std::fs::remove_file(saved);
}

/// An injected kernel bug (benchmarks/bugs/alignment-offset-ignored.patch:
/// the physical-pfn offset of the alignment is ignored) is a divergence:
/// exit 1, first at the first alignment where arm64-6.1's base 0x7ce00 is not
/// aligned (order 10: 0x7ce00 & 0x3ff = 0x200), and the bitmaps differ.
#[test]
fn an_injected_alignment_bug_is_a_divergence_with_exit_1() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(root.join("corpora/seed/02-align-0-to-12.prog"))
        .args(["--target", "arm64-6.1", "--kernel-patch"])
        .arg(root.join("benchmarks/bugs/alignment-offset-ignored.patch"))
        .output()
        .expect("cmafuzz runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    let first = out.lines().find(|l| l.contains("VERDICT")).expect("a verdict line");
    assert!(first.contains("op #10") && first.contains("model pfn 0x7d400"), "{first}");
    assert!(out.contains("bitmap differs"), "{out}");
}

/// Runs `cmafuzz replay --json` on one program and returns (exit code, the program's JSON line).
fn replay_json(target: &str, program: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(root.join(program))
        .args(["--target", target, "--json"])
        .args(extra)
        .output()
        .expect("cmafuzz runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out.lines().rfind(|l| l.contains("\"verdicts\"")).unwrap_or("{}").to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {out}"));
    (o.status.code(), v, format!("{out}\n{}", String::from_utf8_lossy(&o.stderr)))
}

/// Spec §5.6, KNOWN-ISSUES.md KI-1: a page kmap()ed by an earlier owner keeps its PKMAP slot, and
/// a coherent buffer on it is then mapped write-back (PKMAP) and non-cacheable (vmap) at once. The
/// kernel's own page tables show it, the model predicts it (no divergence), the alias scan flags
/// it, and the suppression names the known issue; without suppressions it is a finding.
#[test]
fn a_stale_pkmap_slot_is_an_alias_violation_suppressed_as_a_known_kernel_issue() {
    let prog = "corpora/regressions/stale-pkmap-slot.prog";
    let (code, v, all) = replay_json("arm32-6.1", prog, &[]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(v["divergences"].as_array().map(Vec::len), Some(0), "{all}");
    let verdicts = v["verdicts"].as_array().expect("verdicts");
    let alias = verdicts
        .iter()
        .find(|x| x["signature"] == "alias-violation:vmap:nc+pkmap:wb")
        .unwrap_or_else(|| panic!("no PKMAP alias verdict: {all}"));
    assert_eq!(alias["kind"], "alias-violation");
    assert_eq!(alias["suppressed"]["class"], "kernel-bug");
    let ki = alias["suppressed"]["known_issue"].as_str().expect("known issue");
    assert!(ki.starts_with("KNOWN-ISSUES.md#ki-1"), "{ki}");
    let known = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../KNOWN-ISSUES.md"))
        .expect("KNOWN-ISSUES.md");
    assert!(known.contains(prog), "KNOWN-ISSUES.md must name the reproducer");
    // The PKMAP mapping is still there after dma_free (the last observation).
    let end = &v["kernel_observations"].as_array().expect("observations").last().expect("end")["observation"];
    assert!(end["maps"].as_array().expect("maps").iter().any(|m| m["kind"] == "pkmap" && m["mem"] == "wb"), "{all}");
    let (code, v, all) = replay_json("arm32-6.1", prog, &["--no-suppressions"]);
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(v["verdict"], "finding");
}

/// KI-1 is still there on 7.2 and 7.3-rc (KNOWN-ISSUES.md lists the versions): the same
/// reproducer gives the same suppressed alias, and the model still predicts it.
#[test]
fn the_stale_pkmap_slot_alias_reproduces_on_7_2_and_7_3() {
    let prog = "corpora/regressions/stale-pkmap-slot.prog";
    for target in ["arm32-7.2", "arm32-lpae-7.2", "arm32-7.3"] {
        let (code, v, all) = replay_json(target, prog, &[]);
        assert_eq!(code, Some(0), "{target}: {all}");
        assert_eq!(v["divergences"].as_array().map(Vec::len), Some(0), "{target}: {all}");
        let alias = v["verdicts"]
            .as_array()
            .and_then(|vs| vs.iter().find(|x| x["signature"] == "alias-violation:vmap:nc+pkmap:wb"))
            .unwrap_or_else(|| panic!("{target}: no PKMAP alias verdict: {all}"));
        assert_eq!(alias["suppressed"]["class"], "kernel-bug", "{target}");
    }
}

/// Spec §5.5 R/P: with `cma=0` a blocking dma_alloc takes the remap allocator and an atomic one
/// the buddy-backed pool; both keep the cacheable linear alias of the uncached vmap. The scan
/// reports it and the by-design suppression names it.
#[test]
fn cma_0_remap_keeps_a_cacheable_linear_alias_and_the_suppression_names_it() {
    let (code, v, all) = replay_json("arm32-nocma-6.1", "corpora/regressions/nocma-remap-alias.prog", &[]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(v["divergences"].as_array().map(Vec::len), Some(0), "{all}");
    let alias = v["verdicts"]
        .as_array()
        .and_then(|vs| vs.iter().find(|x| x["signature"] == "alias-by-design:arm32-remap-linear-alias").cloned())
        .unwrap_or_else(|| panic!("no remap alias verdict: {all}"));
    assert_eq!(alias["suppressed"]["id"], "arm32-remap-linear-alias");
    assert_eq!(alias["suppressed"]["class"], "by-design");
    // The buffers came from outside every CMA area (there is none) and had both mappings.
    let obs = &v["kernel_observations"][0]["observation"];
    let kinds: Vec<(String, String)> = obs["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .map(|m| (m["kind"].as_str().unwrap_or("").to_string(), m["mem"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(kinds.contains(&("lin".into(), "wb".into())) && kinds.contains(&("vmap".into(), "nc".into())), "{kinds:?}");
}

/// A kernel that stops answering mid-program (the fixture patch spins forever with interrupts off
/// in `cma_alloc(count=4246)`) is a hang verdict named after the op, the VM is restarted, and the
/// next program runs on the fresh VM and agrees with the model.
#[test]
fn a_hung_kernel_is_a_hang_verdict_and_the_next_program_runs_on_a_fresh_vm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hang = dir.path().join("1-hangs.prog");
    std::fs::write(&hang, "cma_alloc area=reserved count=1\ncma_alloc area=reserved count=4246\n").expect("write");
    let fine = dir.path().join("2-fine.prog");
    std::fs::write(&fine, "cma_alloc area=reserved count=3\nobserve\n").expect("write");
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/panic-on-cma-alloc-4242.patch");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(dir.path())
        .arg("--kernel-patch")
        .arg(&patch)
        .output()
        .expect("cmafuzz runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    let hang_section = stdout.split("== ").find(|s| s.contains("1-hangs.prog")).expect("first program");
    assert!(hang_section.contains("VERDICT: hang [hang:cma_alloc]"), "{hang_section}");
    let fine_section = stdout.split("== ").find(|s| s.contains("2-fine.prog")).expect("second program");
    assert!(fine_section.contains("=> agree"), "{fine_section}");
    assert!(stdout.contains("2 programs") && stdout.contains("1 VM reboots"), "{stdout}");
}

/// The watchdog measures progress, not the program: a 200-op program whose op 3 hangs (the
/// fixture spins with interrupts off in `cma_alloc(count=4246)`) gets its hang verdict about
/// `--watchdog` after op 2, not after a per-op allowance times 200. With `--watchdog 10s` that
/// is well under a minute, boot and reboot included.
#[test]
fn a_long_program_that_hangs_at_op_3_gets_its_hang_verdict_within_a_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from(
        "cma_alloc area=reserved count=1\ncma_alloc area=reserved count=2\ncma_alloc area=reserved count=4246\n",
    );
    for _ in 0..197 {
        text.push_str("cma_alloc area=reserved count=1\n");
    }
    let hang = dir.path().join("200-ops.prog");
    std::fs::write(&hang, text).expect("write");
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/panic-on-cma-alloc-4242.patch");
    // Build first (a cached kernel variant), so the time below is the run's.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .args(["kernel", "build", "--kernel-patch"])
        .arg(&patch)
        .output()
        .expect("cmafuzz runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = std::time::Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(&hang)
        .arg("--kernel-patch")
        .arg(&patch)
        .args(["--watchdog", "10s"])
        .output()
        .expect("cmafuzz runs");
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("VERDICT: hang [hang:cma_alloc]"), "{stdout}");
    assert!(took < std::time::Duration::from_secs(60), "the hang verdict took {took:?}");
}

/// Progress, not time, on a real kernel: a program whose one RUN takes several times the
/// watchdog (1000 whole-8-MiB allocations and releases, 5-15 s under TCG) is no hang, because
/// the agent reports the driver's completed ops every second.
#[test]
fn a_run_longer_than_the_watchdog_that_keeps_completing_ops_is_no_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!("cma_alloc area=reserved count=2048\ncma_release h={i}\n"));
    }
    let prog = dir.path().join("slow.prog");
    std::fs::write(&prog, text).expect("write");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(&prog)
        .args(["--watchdog", "1500ms"])
        .output()
        .expect("cmafuzz runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("=> agree") && !stdout.contains("hang"), "{stdout}");
    // Only meaningful if the kernel's run outlasted the watchdog: "kernel ran 2000 ops in 8.1 s".
    let secs: f64 = stdout
        .split("kernel ran 2000 ops in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no kernel time in the summary:\n{stdout}"));
    assert!(secs > 3.0, "the run took {secs} s, not twice the 1.5 s watchdog");
}

#[test]
fn seed_corpus_agrees_with_the_model_on_three_device_tree_areas() {
    replay_seeds("arm32-pools-6.1");
}

#[test]
fn seed_corpus_agrees_with_the_model_beside_an_order_per_bit_9_area() {
    replay_seeds("arm64-hugetlb-6.1");
}

/// `hugetlb_cma=1G` on arm64: one bitmap bit covers 512 pages (order_per_bit 9), the area base
/// 0xbfe00 is 2 MiB- but not 4 MiB-aligned, so alignment works in bits relative to the physical
/// pfn (`cma_bitmap_aligned_offset`, mm/cma.c). Expected values worked out by hand from the spec
/// (§2.1-2.3), then checked against the kernel and the model.
#[test]
fn an_order_per_bit_9_area_allocates_whole_bits_aligned_to_the_physical_pfn() {
    let mut k = boot("arm64-hugetlb-6.1");
    let boot_obs = k.boot_observation().clone();
    let hu = boot_obs.areas.iter().find(|a| a.name == "hugetlb0").expect("hugetlb0 area");
    assert_eq!((hu.order_per_bit, hu.count), (9, Pages(262_144)));
    let base = hu.base_pfn().0;
    assert_eq!(base % 512, 0, "2 MiB-aligned");
    let prog = Program::parse(
        "cma_alloc area=hugetlb0 count=1\n\
         cma_alloc area=hugetlb0 count=513 align=9\n\
         cma_alloc area=hugetlb0 count=1024 align=10\n\
         cma_release_raw area=hugetlb0 off=1 count=511\n\
         cma_release h=0\n\
         observe\n",
    )
    .expect("parses");
    let run = k.run(&prog.resolve(&boot_obs.areas).expect("resolves")).expect("runs");
    // bit 0 for 1 page; 513 pages = 2 bits from bit 1; align 10 = 2 bits, aligned to the
    // physical pfn: (base >> 9) is odd here, so even physical 2-bit windows start at odd bits -> 3.
    assert_eq!((base >> 9) % 2, 1, "the layout this test expects");
    let p = |bit: u64, n: u64| Outcome::Allocated { pfn: Pfn(base + bit * 512), pages: Pages(n) };
    assert_eq!(run.outcomes[..5], [p(0, 1), p(1, 513), p(3, 1024), Outcome::Refused, Outcome::Released]);
    let hu_end = run.end.areas.iter().find(|a| a.name == "hugetlb0").expect("area");
    // bits 1-2 (513 pages) and 3-4 (1024 pages) remain
    assert_eq!(hu_end.ranges[0].bitmap[0], 0b11110);
    assert_eq!(hu_end.used_pages(), 4 * 512);
}

#[test]
fn seed_corpus_agrees_with_the_model_on_lpae_descriptors() {
    replay_seeds("arm32-lpae-6.1");
}

/// Console reports are found however long the console grows: the fixture WARNs in
/// `cma_alloc(count=4243)` and prints 1.5 MiB of filler in `cma_alloc(count=4244)`. A WARN, the
/// filler, the WARN again: both WARNs are warning verdicts of their own programs (scanning the
/// last 1 MiB of the whole console and skipping as many reports as seen before lost the second),
/// and a program after them is not given them again.
#[test]
fn console_reports_are_found_after_the_console_passes_one_mib_and_each_only_once() {
    use cmafuzz::diff::Executor;
    use cmafuzz::oracle::VerdictKind;
    let t = targets::find(Some("arm32-6.1")).expect("target");
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/panic-on-cma-alloc-4242.patch");
    let kc = KernelChoice { src: None, patches: vec![patch], ..Default::default() };
    let sup = cmafuzz::oracle::Suppressions::builtin().expect("suppressions");
    let mut ex = Executor::start(&t, BackendChoice::Both, &kc, sup, &mut |_| {}).expect("VM starts");
    let warnings = |ex: &mut Executor, text: &str| {
        let e = ex.execute(&Program::parse(text).expect("parses")).expect("runs");
        let w: Vec<String> =
            e.verdicts.iter().filter(|v| v.kind == VerdictKind::Warning).map(|v| v.detail.clone()).collect();
        let others: Vec<&String> =
            e.verdicts.iter().filter(|v| v.kind != VerdictKind::Warning).map(|v| &v.signature).collect();
        assert!(others.is_empty(), "{text}: {others:?}");
        w
    };
    let warn = "cma_alloc area=reserved count=4243\n";
    assert_eq!(warnings(&mut ex, warn).len(), 1, "the first WARN");
    assert!(warnings(&mut ex, "cma_alloc area=reserved count=4244\n").is_empty(), "the filler is no report");
    let console = ex.subject.as_ref().map(|k| k.console()).unwrap_or_default();
    assert!(
        console.len() >= 1 << 20 && !console.contains("warning on cma_alloc"),
        "the first WARN is out of the last MiB"
    );
    assert_eq!(warnings(&mut ex, warn).len(), 1, "the WARN after 1.5 MiB of console");
    assert!(warnings(&mut ex, "observe\n").is_empty(), "reports are not handed out twice");
}

/// No silent op: the 7.x flags mistake (the driver passing MIGRATE_CMA to alloc_contig_range(),
/// which 7.x reads as acr_flags_t without ACR_FLAGS_CMA) compiles, and every pin would fail with
/// -EBUSY. The boot self-check catches it: the console says why, and a program with a pin is
/// refused with one error naming the op and the kernel version, never run.
#[test]
fn the_boot_self_check_catches_migrate_cma_on_7x_and_a_pin_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = dir.path().join("pins.prog");
    std::fs::write(&prog, "pin area=reserved off=65\ncma_alloc area=reserved count=4 align=2\nobserve\n")
        .expect("write");
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/selfcheck-migrate-cma-7x.patch");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .args(["replay", "--target", "arm32-7.2", "--kernel-patch"])
        .arg(&patch)
        .arg(&prog)
        .output()
        .expect("cmafuzz runs");
    let out = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_ne!(o.status.code(), Some(0), "{out}");
    let refusals: Vec<&str> = out.lines().filter(|l| l.contains("cannot run on this kernel")).collect();
    assert!(!refusals.is_empty(), "{out}");
    assert!(refusals.iter().all(|l| l.contains("`pin`") && l.contains("Linux 7.2")), "{out}");
    assert!(!out.contains("kernel: pinned pfn"), "the pin must not have run: {out}");
}

/// Issue 11 item 6: a CMA area with two ranges on a real kernel. `arm64-hugetlb-ranges-7.2`
/// (the arm64-hugetlb-7.2 kernel; 6.5 GiB with a 2 MiB `no-map` hole at 5 GiB, `hugetlb_cma=2G`)
/// has no 2 GiB run of 1 GiB-aligned free memory, so `cma_declare_contiguous_multi()` builds
/// hugetlb0 from the two 1 GiB pieces above 4 GiB (cma-spec-7x §1.3). The seed corpus agrees,
/// and the model follows a cma_alloc that fills the first range into the second and back.
#[test]
fn a_hugetlb_area_in_two_ranges_is_seen_and_followed_range_by_range() {
    let target = "arm64-hugetlb-ranges-7.2";
    replay_seeds(target);
    let t = targets::find(Some(target)).expect("target");
    let text = "observe\n\
                cma_alloc area=hugetlb0 count=262144 align=9\n\
                cma_alloc area=hugetlb0 count=512 align=9\n\
                cma_alloc area=hugetlb0 count=1024 align=10\n\
                observe\n\
                cma_release h=0\n\
                cma_alloc area=hugetlb0 count=513 align=9\n\
                observe\n";
    let program = Program::parse(text).expect("parses");
    let programs = [replay::LoadedProgram { path: PathBuf::from("two-ranges.prog"), program }];
    let (sum, out) = replay_both(&t, &programs, true);
    assert_eq!((sum.agree, sum.diverge, sum.errors), (1, 0, 0), "{out}");
    let boot = sum.kernel_boot.as_ref().expect("a kernel ran");
    let huge = boot.areas.iter().find(|a| a.name == "hugetlb0").expect("hugetlb0");
    let ranges: Vec<(u64, u64)> = huge.ranges.iter().map(|r| (r.base_pfn.0, r.count.0)).collect();
    assert_eq!(ranges, vec![(0x100000, 262144), (0x180000, 262144)], "the kernel's ranges");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().expect("one JSON line")).expect("JSON");
    let kernel: Vec<Outcome> =
        (0..8).map(|i| serde_json::from_value(v["ops"][i]["kernel"].clone()).expect("kernel outcome")).collect();
    let at = |pfn: u64, pages: u64| Outcome::Allocated { pfn: Pfn(pfn), pages: Pages(pages) };
    // The first range full, the next allocations fall through to the second; once the first is
    // released, it is searched first again.
    assert_eq!(kernel[1..4], [at(0x100000, 262144), at(0x180000, 512), at(0x180400, 1024)], "{out}");
    assert_eq!(kernel[6], at(0x100000, 513), "{out}");
}

/// `dma_map` (streaming map, sync both ways, unmap) on a real arm32 kernel: the kernel maps the
/// pages each handle still holds (all of a buffer, the two runs left of a punched `cma_alloc`),
/// a freed handle is a no-op, the model predicts every answer, the bitmaps and mappings at each
/// `observe` are the model's (nothing changed), the console has no WARN, and the program's text
/// round-trips.
#[test]
fn dma_map_on_arm32_6_1_maps_the_held_pages_and_changes_nothing() {
    let t = targets::find(Some("arm32-6.1")).expect("target");
    let path = seed_dir().join("33-dma-map.prog");
    let program = replay::load(&path).expect("seed parses").program;
    assert_eq!(Program::parse(&program.to_text()).as_ref(), Ok(&program), "text round-trips");
    assert_eq!(Program::from_json(&program.to_json()).as_ref(), Ok(&program), "JSON round-trips");
    let programs = [replay::LoadedProgram { path, program }];
    let (sum, text) = replay_both(&t, &programs, true);
    assert_eq!((sum.agree, sum.diverge, sum.errors), (1, 0, 0), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.lines().next().expect("one JSON line")).expect("JSON");
    let warns = v["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter(|x| matches!(x["kind"].as_str(), Some("warning" | "bug" | "oops" | "panic")))
        .count();
    assert_eq!(warns, 0, "no WARN/BUG on the console: {v}");
    let kernel = |i: usize| -> Outcome { serde_json::from_value(v["ops"][i]["kernel"].clone()).expect("outcome") };
    let mapped = |n: u64| Outcome::Mapped { pages: Pages(n) };
    assert_eq!(
        [1, 3, 5, 7, 9, 12, 14].map(kernel),
        [mapped(128), mapped(124), mapped(16), mapped(2), mapped(1), Outcome::Noop, Outcome::Noop]
    );
}

/// Issue 11's acceptance for `--kernel-src`: a 7.3-rc tree as a user has it (Debian's tarball
/// unpacked, here hard-linked from the cache's unpacked copy to save CI a minute), given to a
/// target of another version (`arm32-6.12`: the same machine and fragments as `arm32-7.3`). The
/// version comes from the tree's Makefile, the profile is named with its evidence, and the seed
/// corpus agrees on the kernel built from that tree.
#[test]
fn seed_corpus_agrees_on_a_hand_unpacked_7_3_tree() {
    let t73 = targets::find(Some("arm32-7.3")).expect("target");
    let pristine = cmafuzz::build::kernel::pristine_tree(&t73, &mut |l| eprintln!("{l}")).expect("7.3 source");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("linux-7.3");
    let st = std::process::Command::new("cp").arg("-al").arg(&pristine).arg(&dir).status().expect("cp runs");
    assert!(st.success(), "{}: cp -al failed", pristine.display());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cmafuzz"))
        .arg("replay")
        .arg(seed_dir())
        .args(["--target", "arm32-6.12", "--kernel-src"])
        .arg(&dir)
        .output()
        .expect("cmafuzz runs");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("{out}\n{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
    let want = format!("kernel tree {} is 7.3.0-rc7: profile 7.3 (its sources agree)", dir.display());
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("yes: CMA areas made of ranges"), "{err}");
    assert!(out.contains("kernel: arm32-6.12 (7.3.0-rc7"), "the kernel booted is the tree's: {out}");
    let n = replay::collect_files(&[seed_dir()]).expect("seed corpus").len();
    assert!(out.contains(&format!("{n} programs: {n} agree, 0 diverge, 0 errors")), "{out}");
}
