//! Device trees with extra CMA areas: qemu's own `virt` tree for the exact machine the target
//! boots (`-M virt,dumpdtb=FILE` with the same cpu, memory and devices), plus a
//! `/reserved-memory` node holding one reusable `shared-dma-pool` per target pool, which the
//! kernel turns into a CMA area of its own (`rmem_cma_setup`, `kernel/dma/contiguous.c`, spec
//! §1.8), and one `no-map` region per target hole (RAM in pieces). Built with `dtc`, cached under the cache root keyed by everything that goes in.

use crate::build::cache::{self, KeyHasher};
use crate::targets::Target;
pub use crate::targets::{Hole, Pool};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DtbError {
    #[error("`{tool}` is not installed (apt-get install {package}, or run scripts/setup.sh)")]
    MissingTool { tool: String, package: &'static str },
    #[error("{what} failed: {detail}")]
    Tool { what: String, detail: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("pool {name}: {msg}")]
    BadPool { name: String, msg: String },
    #[error("hole at {base:#x}: {msg}")]
    BadHole { base: u64, msg: String },
}

fn run(cmd: &mut Command, what: &str, package: &'static str) -> Result<Vec<u8>, DtbError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DtbError::MissingTool { tool: tool.clone(), package },
        _ => DtbError::Io { what: format!("running {tool}"), source: e },
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(DtbError::Tool {
            what: what.to_string(),
            detail: err.lines().take(5).collect::<Vec<_>>().join(" / "),
        });
    }
    Ok(out.stdout)
}

/// Checks the pools are what `rmem_cma_setup` accepts: 4 MiB-aligned base and size (the
/// pageblock-order minimum alignment), non-empty, inside RAM, not overlapping.
pub fn validate(pools: &[Pool], ram_start: u64, ram_bytes: u64) -> Result<(), DtbError> {
    let align = 4u64 << 20;
    for (i, p) in pools.iter().enumerate() {
        let bad = |msg: String| DtbError::BadPool { name: p.name.clone(), msg };
        if p.name.is_empty() || !p.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(bad("node names are letters, digits, '-' and '_'".into()));
        }
        if p.size == 0 || p.base % align != 0 || p.size % align != 0 {
            return Err(bad(format!("base {:#x} and size {:#x} must be non-zero multiples of 4 MiB", p.base, p.size)));
        }
        if p.base < ram_start || p.base.saturating_add(p.size) > ram_start + ram_bytes {
            return Err(bad(format!("[{:#x}, +{:#x}) is not inside RAM", p.base, p.size)));
        }
        for q in &pools[..i] {
            if p.base < q.base + q.size && q.base < p.base + p.size {
                return Err(bad(format!("overlaps {}", q.name)));
            }
        }
    }
    Ok(())
}

/// Checks the holes: non-empty multiples of 2 MiB (a section of the linear map), inside RAM, not
/// overlapping each other or a pool.
pub fn validate_holes(holes: &[Hole], pools: &[Pool], ram_start: u64, ram_bytes: u64) -> Result<(), DtbError> {
    let align = 2u64 << 20;
    for (i, h) in holes.iter().enumerate() {
        let bad = |msg: String| DtbError::BadHole { base: h.base, msg };
        if h.size == 0 || h.base % align != 0 || h.size % align != 0 {
            return Err(bad(format!("base and size {:#x} must be non-zero multiples of 2 MiB", h.size)));
        }
        if h.base < ram_start || h.base.saturating_add(h.size) > ram_start + ram_bytes {
            return Err(bad(format!("[{:#x}, +{:#x}) is not inside RAM", h.base, h.size)));
        }
        let overlaps = |b: u64, s: u64| h.base < b + s && b < h.base + h.size;
        if let Some(q) = holes[..i].iter().find(|q| overlaps(q.base, q.size)) {
            return Err(bad(format!("overlaps the hole at {:#x}", q.base)));
        }
        if let Some(p) = pools.iter().find(|p| overlaps(p.base, p.size)) {
            return Err(bad(format!("overlaps pool {}", p.name)));
        }
    }
    Ok(())
}

/// The `/reserved-memory` node for `pools` and `holes` (2 address and 2 size cells, as qemu
/// `virt` has).
pub fn reserved_memory_node(pools: &[Pool], holes: &[Hole]) -> String {
    let mut s =
        String::from("\treserved-memory {\n\t\t#address-cells = <0x02>;\n\t\t#size-cells = <0x02>;\n\t\tranges;\n");
    for p in pools {
        s.push_str(&format!(
            "\t\t{}@{:x} {{\n\t\t\tcompatible = \"shared-dma-pool\";\n\t\t\treusable;\n\t\t\treg = <{:#x} {:#x} {:#x} {:#x}>;\n\t\t}};\n",
            p.name,
            p.base,
            p.base >> 32,
            p.base & 0xffff_ffff,
            p.size >> 32,
            p.size & 0xffff_ffff
        ));
    }
    for h in holes {
        s.push_str(&format!(
            "\t\thole@{:x} {{\n\t\t\treg = <{:#x} {:#x} {:#x} {:#x}>;\n\t\t\tno-map;\n\t\t}};\n",
            h.base,
            h.base >> 32,
            h.base & 0xffff_ffff,
            h.size >> 32,
            h.size & 0xffff_ffff
        ));
    }
    s.push_str("\t};\n");
    s
}

/// Inserts `node` as the last child of the root node of a dts text (dtc wants properties
/// before subnodes). The root node closes with the last `};` at the start of a line.
pub fn insert_into_root(dts: &str, node: &str) -> Result<String, DtbError> {
    let bad = |detail: &str| DtbError::Tool { what: "reading qemu's device tree".into(), detail: detail.into() };
    if !dts.contains("/ {\n") {
        return Err(bad("no root node `/ {` in the decompiled tree"));
    }
    let at = dts.rfind("\n};").ok_or_else(|| bad("the root node is not closed"))? + 1;
    Ok(format!("{}\n{}{}", &dts[..at], node, &dts[at..]))
}

/// The device tree for `spec` with its pools and holes added; `None` without either (qemu
/// generates its own).
pub fn build(spec: &Target) -> Result<Option<PathBuf>, DtbError> {
    let (pools, holes) = (&spec.pools[..], &spec.holes[..]);
    if pools.is_empty() && holes.is_empty() {
        return Ok(None);
    }
    validate(pools, 0x4000_0000, u64::from(spec.memory_mib) << 20)?;
    validate_holes(holes, pools, 0x4000_0000, u64::from(spec.memory_mib) << 20)?;
    let version = run(Command::new(&spec.qemu).arg("--version"), "qemu --version", "qemu-system-arm")?;
    let mut k = KeyHasher::new("dtb-v1");
    k.part(&version).part(spec.machine.as_bytes()).part(spec.cpu.as_bytes());
    k.part(&spec.memory_mib.to_le_bytes()).part(&spec.smp.to_le_bytes());
    k.part(reserved_memory_node(pools, holes).as_bytes());
    let dir = cache::root().join("dtb");
    let out = dir.join(format!("{}.dtb", k.finish()));
    if out.is_file() {
        return Ok(Some(out));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| DtbError::Io { what: format!("creating {}", dir.display()), source: e })?;
    let tmp = tempfile::Builder::new()
        .prefix("cmafuzz-dtb-")
        .tempdir()
        .map_err(|e| DtbError::Io { what: "creating a temp dir".into(), source: e })?;
    let base = tmp.path().join("virt.dtb");
    // The same machine as the real boot, minus the host-side channel (null chardevs).
    run(
        Command::new(&spec.qemu)
            .arg("-M")
            .arg(format!("{},dumpdtb={}", spec.machine, base.display()))
            .args(["-cpu", &spec.cpu, "-m", &spec.memory_mib.to_string(), "-smp", &spec.smp.to_string()])
            .args(["-nodefaults", "-display", "none", "-monitor", "none", "-nic", "none"])
            .args(["-chardev", "null,id=con", "-serial", "chardev:con", "-device", "virtio-serial-device"])
            .args(["-chardev", "null,id=ch0", "-device", "virtserialport,chardev=ch0,name=cmafuzz"]),
        "qemu dumpdtb",
        "qemu-system-arm",
    )?;
    let dts = run(
        Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(&base),
        "dtc (decompile)",
        "device-tree-compiler",
    )?;
    let dts = String::from_utf8_lossy(&dts);
    if dts.contains("reserved-memory") {
        return Err(DtbError::Tool {
            what: "adding the pools".into(),
            detail: "qemu's tree already has a /reserved-memory node; merging is not supported".into(),
        });
    }
    let edited = insert_into_root(&dts, &reserved_memory_node(pools, holes))?;
    let dts_path = tmp.path().join("cmafuzz.dts");
    write(&dts_path, edited.as_bytes())?;
    let staged = tmp.path().join("cmafuzz.dtb");
    run(
        Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&staged).arg(&dts_path),
        "dtc (compile)",
        "device-tree-compiler",
    )?;
    // Publish atomically: another process may be building the same tree.
    let bytes = std::fs::read(&staged)
        .map_err(|e| DtbError::Io { what: format!("reading {}", staged.display()), source: e })?;
    crate::disk::write_atomic(&out, &bytes)
        .map_err(|e| DtbError::Io { what: format!("publishing {}", out.display()), source: e })?;
    Ok(Some(out))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DtbError> {
    std::fs::write(path, bytes).map_err(|e| DtbError::Io { what: format!("writing {}", path.display()), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, base: u64, size: u64) -> Pool {
        Pool { name: name.into(), base, size }
    }

    #[test]
    fn the_node_has_one_reusable_shared_dma_pool_per_region() {
        let n =
            reserved_memory_node(&[pool("pool-low", 0x4c40_0000, 4 << 20), pool("hi", 0x1_0040_0000, 8 << 20)], &[]);
        assert!(n.contains("pool-low@4c400000 {"), "{n}");
        assert!(n.contains("reg = <0x0 0x4c400000 0x0 0x400000>;"), "{n}");
        assert!(n.contains("hi@100400000 {") && n.contains("reg = <0x1 0x400000 0x0 0x800000>;"), "{n}");
        assert_eq!(n.matches("compatible = \"shared-dma-pool\";").count(), 2);
        assert_eq!(n.matches("reusable;").count(), 2);
        assert_eq!(pool("pool-low", 0x4c40_0000, 4 << 20).area_name(), "pool-low@4c400000");
    }

    #[test]
    fn pools_are_validated_like_rmem_cma_setup_wants_them() {
        let ram = (0x4000_0000, 1 << 30);
        assert!(validate(&[pool("a", 0x4c40_0000, 4 << 20)], ram.0, ram.1).is_ok());
        let e = validate(&[pool("a", 0x4c41_0000, 4 << 20)], ram.0, ram.1).expect_err("unaligned");
        assert!(e.to_string().contains("multiples of 4 MiB"), "{e}");
        assert!(validate(&[pool("a", 0x3fc0_0000, 4 << 20)], ram.0, ram.1).is_err());
        assert!(validate(&[pool("a", 0x4c40_0000, 8 << 20), pool("b", 0x4c80_0000, 4 << 20)], ram.0, ram.1).is_err());
        assert!(validate(&[pool("a b", 0x4c40_0000, 4 << 20)], ram.0, ram.1).is_err());
    }

    #[test]
    fn a_hole_is_a_no_map_region_checked_against_ram_pools_and_holes() {
        let h = |base, size| Hole { base, size };
        let n = reserved_memory_node(&[], &[h(0x1_4000_0000, 2 << 20)]);
        assert!(n.contains("hole@140000000 {\n\t\t\treg = <0x1 0x40000000 0x0 0x200000>;\n\t\t\tno-map;"), "{n}");
        assert!(!n.contains("shared-dma-pool"), "{n}");
        let ram = (0x4000_0000, 6u64 << 30);
        assert!(validate_holes(&[h(0x1_4000_0000, 2 << 20)], &[], ram.0, ram.1).is_ok());
        let e = validate_holes(&[h(0x1_4010_0000, 2 << 20)], &[], ram.0, ram.1).expect_err("unaligned");
        assert!(e.to_string().contains("hole at 0x140100000") && e.to_string().contains("2 MiB"), "{e}");
        assert!(validate_holes(&[h(0x2_0000_0000, 2 << 20)], &[], ram.0, ram.1).is_err(), "past RAM");
        assert!(validate_holes(&[h(0x4c40_0000, 2 << 20)], &[pool("a", 0x4c40_0000, 4 << 20)], ram.0, ram.1).is_err());
        assert!(validate_holes(&[h(0x1_4000_0000, 4 << 20), h(0x1_4020_0000, 2 << 20)], &[], ram.0, ram.1).is_err());
    }

    #[test]
    fn the_node_goes_last_into_the_root() {
        let dts = "/dts-v1/;\n\n/ {\n\tcompatible = \"linux,dummy-virt\";\n\n\tpsci {\n\t};\n};\n";
        let out = insert_into_root(dts, "\tX;\n").expect("has a root");
        assert_eq!(out, "/dts-v1/;\n\n/ {\n\tcompatible = \"linux,dummy-virt\";\n\n\tpsci {\n\t};\n\n\tX;\n};\n");
        assert!(insert_into_root("nothing", "x").is_err());
    }
}
