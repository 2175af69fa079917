//! Proves the Rust wire table (`harness/src/guest/wire_def.rs`) and the C header
//! `qemu/include/cmafuzz_wire.h` are one definition:
//!
//! - the checked-in header is exactly what the table renders
//!   (`CMAFUZZ_BLESS=1 cargo test -p cmafuzz --test wire_header` rewrites it);
//! - the header defines no struct, field or macro the table lacks and the table none the header
//!   lacks, in the same order with the same C types;
//! - `_Static_assert`s generated from the table (every constant, every struct's size, every
//!   field's offset and size) compile against the header with the host compiler and with both
//!   cross compilers (the ABIs the guest really uses);
//! - the model crate's copies of the limits equal the wire's.

use cmafuzz::guest::wire;
use cmafuzz::guest::wire_def::{self, consts, structs, Style};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn header_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/include/cmafuzz_wire.h")
}

fn checked_in() -> String {
    std::fs::read_to_string(header_path()).expect("qemu/include/cmafuzz_wire.h is readable")
}

#[test]
fn the_checked_in_header_is_what_the_table_renders() {
    let want = wire_def::header();
    if std::env::var_os("CMAFUZZ_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(header_path(), &want).expect("rewrite qemu/include/cmafuzz_wire.h");
        return;
    }
    let got = checked_in();
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "qemu/include/cmafuzz_wire.h is not what harness/src/guest/wire_def.rs renders \
             (first difference at line {}:\n  checked in: {:?}\n  rendered:   {:?}).\n\
             Edit the table, not the header, then regenerate it with\n\n  \
             CMAFUZZ_BLESS=1 cargo test -p cmafuzz --test wire_header\n",
            first + 1,
            got.lines().nth(first).unwrap_or("<end of file>"),
            want.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

/// `text` without its C comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        match rest[i..].find("*/") {
            Some(j) => rest = &rest[i + j + 2..],
            None => panic!("unterminated comment in the header"),
        }
    }
    out.push_str(rest);
    out
}

/// The structs of a C header: (tag, member declarations in order, whitespace normalised).
fn parse_structs(text: &str) -> Vec<(String, Vec<String>)> {
    let code = strip_comments(text);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("struct ") {
        let after = &rest[i + "struct ".len()..];
        let tag: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let body_start = after[tag.len()..].trim_start();
        if !body_start.starts_with('{') {
            rest = &after[tag.len()..];
            continue;
        }
        let end = body_start.find("};").unwrap_or_else(|| panic!("struct {tag} has no end"));
        let body = &body_start[1..end];
        let fields = body
            .split(';')
            .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|d| !d.is_empty())
            .collect();
        out.push((tag, fields));
        rest = &body_start[end + 2..];
    }
    out
}

/// Every macro name the header `#define`s.
fn parse_defines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn header_and_table_have_the_same_structs_fields_and_macros_in_both_directions() {
    let text = checked_in();
    let in_header = parse_structs(&text);
    let in_table: Vec<(String, Vec<String>)> =
        structs().map(|s| (s.name.to_string(), s.fields.iter().map(|f| f.ty.c_decl(f.name)).collect())).collect();
    for (tag, fields) in &in_header {
        let t = in_table.iter().find(|(n, _)| n == tag);
        assert!(t.is_some(), "struct {tag} is in the header but not in the Rust table");
        assert_eq!(Some(fields), t.map(|(_, f)| f), "struct {tag}: fields (order, type, name) differ");
    }
    for (tag, _) in &in_table {
        assert!(in_header.iter().any(|(n, _)| n == tag), "struct {tag} is in the Rust table but not in the header");
    }
    assert_eq!(
        in_header.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        in_table.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "struct order"
    );
    let defines: Vec<String> = parse_defines(&text).into_iter().filter(|d| d != "CMAFUZZ_WIRE_H").collect();
    let table: Vec<String> = consts().map(|c| c.name.to_string()).collect();
    for d in &defines {
        assert!(table.contains(d), "{d} is defined in the header but not in the Rust table");
    }
    for c in &table {
        assert!(defines.contains(c), "{c} is in the Rust table but not defined in the header");
    }
}

#[test]
fn the_parser_sees_every_struct_and_field() {
    // The both-directions check is only as good as its parser: it must find a struct the
    // table lacks and a field it lacks.
    let extra = format!("{}\nstruct cf_extra {{\n\t__u32 x;\t/* a; b */\n}};\n", checked_in());
    let parsed = parse_structs(&extra);
    assert_eq!(parsed.last().map(|(n, f)| (n.as_str(), f.clone())), Some(("cf_extra", vec!["__u32 x".to_string()])));
    assert_eq!(parsed.len(), structs().count() + 1);
    let ioc = parsed.iter().find(|(n, _)| n == "cf_ioc_hello").map(|(_, f)| f.clone());
    assert_eq!(ioc, Some(vec!["struct cf_hello hello".to_string()]));
}

fn probe_source() -> String {
    let mut s = String::from("#include <stddef.h>\n#include \"cmafuzz_wire.h\"\n");
    let mut eq = |c: &str, v: u64| {
        let _ = writeln!(s, "_Static_assert((unsigned long long)({c}) == {v}ULL, \"{c} != {v}\");");
    };
    for c in consts() {
        if let Some(v) = c.value {
            eq(c.name, v);
        } else {
            assert!(matches!(c.style, Style::Expr(_)), "{}", c.name);
        }
    }
    for st in structs() {
        let t = format!("struct {}", st.name);
        eq(&format!("sizeof({t})"), st.size() as u64);
        for (i, f) in st.fields.iter().enumerate() {
            eq(&format!("offsetof({t}, {})", f.name), st.offset(i) as u64);
            eq(&format!("sizeof((({t} *)0)->{})", f.name), f.ty.size() as u64);
        }
    }
    // The driver must never see the agent's bit.
    eq("CF_RUN_KCOV & CF_RUN_FLAGS_MASK", 0);
    s
}

fn compile(cc: &str, source: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("probe.c");
    std::fs::write(&src, source).expect("write probe");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/include");
    Command::new(cc)
        // -Wpadded: a struct C pads behind our back would be a layout the table did not compute.
        .args(["-std=gnu11", "-Wall", "-Wpadded", "-Werror", "-c", "-o"])
        .arg(dir.path().join("probe.o"))
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("{cc} is missing ({e}): it is required for this test; scripts/setup.sh installs it"))
}

fn compile_with(cc: &str) {
    let out = compile(cc, &probe_source());
    assert!(
        out.status.success(),
        "{cc}: the header and the Rust table disagree:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
fn a_wrong_offset_or_size_is_caught_by_the_probe() {
    // The probe must be able to fail: deliberately wrong assertions do not compile.
    for bad in [
        "_Static_assert(sizeof(struct cf_op) == 31, \"x\");",
        "_Static_assert(offsetof(struct cf_map, attr) == 21, \"x\");",
    ] {
        let out = compile("gcc", &format!("#include <stddef.h>\n#include \"cmafuzz_wire.h\"\n{bad}\n"));
        assert!(!out.status.success(), "{bad} compiled");
    }
}

#[test]
fn the_model_and_the_wire_format_agree_on_every_limit() {
    use reference_impl::program as model;
    assert_eq!(model::MAX_OPS, wire::MAX_OPS as usize, "CF_MAX_OPS");
    assert_eq!(model::MAX_HANDLES, wire::MAX_HANDLES, "CF_MAX_HANDLES");
    assert_eq!(model::MAX_PINS, wire::MAX_PINS as usize, "CF_MAX_PINS");
    assert_eq!(model::MAX_ALIGN, wire::MAX_CMA_ALIGN, "CF_MAX_CMA_ALIGN");
    assert_eq!(model::MAX_DMA_SIZE, wire::MAX_DMA_SIZE, "CF_MAX_DMA_SIZE");
}

#[test]
fn the_run_encoder_tool_agrees_on_the_op_limit_and_kinds() {
    // qemu/tools/mkrun.py (a development tool) writes RUN payloads by hand.
    let py = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/tools/mkrun.py"))
        .expect("qemu/tools/mkrun.py");
    assert!(py.contains(&format!("\nMAX_OPS = {}\n", wire::MAX_OPS)), "mkrun.py MAX_OPS != CF_MAX_OPS");
    for c in consts() {
        if let (Some(op), Some(v)) = (c.name.strip_prefix("CF_OP_"), c.value) {
            let line = format!("\"{}\": {v},", op.to_ascii_lowercase());
            assert!(py.contains(&line), "mkrun.py lacks {line}");
        }
    }
}
