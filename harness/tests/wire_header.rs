//! Proves the Rust wire module and the C header agree on every constant and
//! layout: generates `_Static_assert`s from the Rust values and compiles them
//! against `qemu/include/cmafuzz_wire.h` with the host compiler and with
//! both cross compilers (the ABIs the guest really uses).

use cmafuzz::guest::wire::*;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn probe_source() -> String {
    let mut s = String::from("#include <stddef.h>\n#include \"cmafuzz_wire.h\"\n");
    let mut eq = |c: &str, v: u64| {
        let _ = writeln!(s, "_Static_assert((unsigned long long)({c}) == {v}ULL, \"{c} != {v}\");");
    };
    eq("CF_MAGIC", MAGIC.into());
    eq("CF_VERSION", VERSION.into());
    eq("CF_MAX_FRAME", MAX_FRAME.into());
    eq("CF_MAX_OPS", MAX_OPS.into());
    eq("CF_MAX_HANDLES", MAX_HANDLES.into());
    eq("CF_MAX_PINS", MAX_PINS.into());
    eq("CF_MAX_AREAS", MAX_AREAS.into());
    eq("CF_NAME_LEN", NAME_LEN as u64);
    eq("CF_MAX_BITMAP_WORDS", MAX_BITMAP_WORDS.into());
    eq("CF_FRAME_HELLO", FRAME_HELLO.into());
    eq("CF_FRAME_RUN", FRAME_RUN.into());
    eq("CF_FRAME_RESULT", FRAME_RESULT.into());
    eq("CF_FRAME_ERROR", FRAME_ERROR.into());
    eq("CF_ARCH_ARM32", ARCH_ARM32.into());
    eq("CF_ARCH_ARM32_LPAE", ARCH_ARM32_LPAE.into());
    eq("CF_ARCH_ARM64", ARCH_ARM64.into());
    eq("CF_OP_CMA_ALLOC", OP_CMA_ALLOC.into());
    eq("CF_OP_CMA_RELEASE", OP_CMA_RELEASE.into());
    eq("CF_OP_CMA_RELEASE_RAW", OP_CMA_RELEASE_RAW.into());
    eq("CF_OP_DMA_ALLOC", OP_DMA_ALLOC.into());
    eq("CF_OP_DMA_FREE", OP_DMA_FREE.into());
    eq("CF_OP_OBSERVE", OP_OBSERVE.into());
    eq("CF_OP_RESET", OP_RESET.into());
    eq("CF_OP_PIN", OP_PIN.into());
    eq("CF_OP_UNPIN", OP_UNPIN.into());
    eq("CF_OP_KMAP", OP_KMAP.into());
    eq("CF_MAX_MAPS", MAX_MAPS.into());
    eq("CF_RUN_OBSERVE_EACH", RUN_OBSERVE_EACH.into());
    eq("CF_RUN_FLAGS_MASK", RUN_FLAGS_MASK.into());
    eq("CF_RUN_KCOV", RUN_KCOV.into());
    eq("CF_AGENT_KCOV", AGENT_KCOV.into());
    eq("CF_MAX_KCOV", MAX_KCOV.into());
    eq("CF_KCOV_MAGIC", KCOV_MAGIC.into());
    eq("CF_KCOV_TRUNCATED", KCOV_TRUNCATED.into());
    eq("sizeof(struct cf_agent_hello)", AGENT_HELLO_SIZE as u64);
    eq("sizeof(struct cf_kcov)", KCOV_SIZE as u64);
    // The driver must never see the agent's bit.
    eq("CF_RUN_KCOV & CF_RUN_FLAGS_MASK", 0);
    eq("CF_OBS_MAPS_TRUNCATED", OBS_MAPS_TRUNCATED.into());
    eq("CF_PKMAP_UNKNOWN", PKMAP_UNKNOWN.into());
    eq("CF_MAP_LIN", MAP_LIN.into());
    eq("CF_MAP_VMAP", MAP_VMAP.into());
    eq("CF_MAP_PKMAP", MAP_PKMAP.into());
    eq("CF_MAP_FIXMAP", MAP_FIXMAP.into());
    eq("CF_LVL_PTE", LVL_PTE.into());
    eq("CF_LVL_SECTION", LVL_SECTION.into());
    eq("CF_LVL_PMD", LVL_PMD.into());
    eq("CF_LVL_PUD", LVL_PUD.into());
    eq("sizeof(struct cf_map)", MAP_SIZE as u64);
    eq("CF_ATTR_WC", ATTR_WC.into());
    eq("CF_ATTR_NOKMAP", ATTR_NOKMAP.into());
    eq("CF_GFP_ATOMIC", GFP_ATOMIC.into());
    eq("CF_ST_OK", ST_OK.into());
    eq("CF_ST_FAILED", ST_FAILED.into());
    eq("CF_ST_NOOP", ST_NOOP.into());
    eq("CF_ST_REFUSED", ST_REFUSED.into());
    eq("CF_ST_BADOP", ST_BADOP.into());
    eq("CF_CPU_LINEAR", CPU_LINEAR);
    eq("CF_CPU_VMALLOC", CPU_VMALLOC);
    eq("CF_CPU_COOKIE", CPU_COOKIE);
    eq("CF_CPU_OTHER", CPU_OTHER);
    eq("sizeof(struct cf_frame_hdr)", FRAME_HDR_SIZE as u64);
    eq("sizeof(struct cf_hello)", HELLO_SIZE as u64);
    eq("sizeof(struct cf_op)", OP_SIZE as u64);
    eq("sizeof(struct cf_run)", RUN_SIZE as u64);
    eq("sizeof(struct cf_result)", RESULT_SIZE as u64);
    eq("sizeof(struct cf_result_hdr)", RESULT_HDR_SIZE as u64);
    eq("sizeof(struct cf_obs_hdr)", OBS_HDR_SIZE as u64);
    eq("sizeof(struct cf_area)", AREA_SIZE as u64);
    // Field offsets the Rust encoder/decoder relies on (see wire.rs order).
    for (c, v) in [
        ("offsetof(struct cf_frame_hdr, version)", 4),
        ("offsetof(struct cf_frame_hdr, kind)", 6),
        ("offsetof(struct cf_frame_hdr, len)", 8),
        ("offsetof(struct cf_frame_hdr, seq)", 12),
        ("offsetof(struct cf_hello, pb_order)", 28),
        ("offsetof(struct cf_hello, max_low_pfn)", 32),
        ("offsetof(struct cf_hello, max_pfn)", 40),
        ("offsetof(struct cf_hello, release)", 48),
        ("offsetof(struct cf_hello, attr_regs)", 112),
        ("offsetof(struct cf_hello, pkmap_slots)", 120),
        ("offsetof(struct cf_obs_hdr, nmaps)", 16),
        ("offsetof(struct cf_obs_hdr, flags)", 20),
        ("offsetof(struct cf_obs_hdr, pkmap_last)", 24),
        ("offsetof(struct cf_map, pfn)", 8),
        ("offsetof(struct cf_map, pages)", 16),
        ("offsetof(struct cf_map, kind)", 20),
        ("offsetof(struct cf_map, level)", 21),
        ("offsetof(struct cf_map, attr)", 22),
        ("offsetof(struct cf_op, handle)", 8),
        ("offsetof(struct cf_op, flags)", 12),
        ("offsetof(struct cf_op, a)", 16),
        ("offsetof(struct cf_op, b)", 24),
        ("offsetof(struct cf_result, pfn)", 8),
        ("offsetof(struct cf_result, pages)", 16),
        ("offsetof(struct cf_result, aux)", 24),
        ("offsetof(struct cf_obs_hdr, cma_free_pages)", 8),
        ("offsetof(struct cf_area, base_pfn)", 64),
        ("offsetof(struct cf_area, count)", 72),
        ("offsetof(struct cf_area, order_per_bit)", 80),
        ("offsetof(struct cf_area, nwords)", 84),
        ("offsetof(struct cf_agent_hello, max_kcov)", 4),
        ("offsetof(struct cf_kcov, npcs)", 4),
        ("offsetof(struct cf_kcov, flags)", 8),
        ("offsetof(struct cf_kcov, reserved)", 12),
    ] {
        eq(c, v);
    }
    s
}

fn compile_with(cc: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("probe.c");
    std::fs::write(&src, probe_source()).expect("write probe");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/include");
    let out = Command::new(cc)
        .args(["-std=gnu11", "-Wall", "-Werror", "-c", "-o"])
        .arg(dir.path().join("probe.o"))
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("{cc} must be installed (scripts/test.sh installs it): {e}"));
    assert!(out.status.success(), "{cc}: header and wire.rs disagree:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn header_agrees_with_rust_on_the_host_abi() {
    compile_with("gcc");
}

#[test]
fn header_agrees_with_rust_on_the_arm32_guest_abi() {
    compile_with("arm-linux-gnueabihf-gcc");
}

#[test]
fn header_agrees_with_rust_on_the_arm64_guest_abi() {
    compile_with("aarch64-linux-gnu-gcc");
}

#[test]
fn a_wrong_constant_is_caught_by_the_probe() {
    // The probe must be able to fail: a deliberately wrong assertion does not compile.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("bad.c");
    std::fs::write(&src, "#include \"cmafuzz_wire.h\"\n_Static_assert(sizeof(struct cf_op) == 31, \"x\");\n")
        .expect("write");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/include");
    let out = Command::new("gcc")
        .args(["-c", "-o"])
        .arg(dir.path().join("bad.o"))
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(!out.status.success());
}
