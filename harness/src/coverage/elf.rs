//! KCOV call sites of a kernel image, by function.
//!
//! The image carries no DWARF (the targets build without `CONFIG_DEBUG_INFO`), so sites come
//! from the code itself: every `bl __sanitizer_cov_trace_pc` in the executable sections
//! (aarch64 `BL`, arm `BL` in ARM mode and Thumb-2), its function from the symbol table (the
//! function whose `[address, address + size)` holds the call). The file comes from the symbol
//! table too: local symbols follow the `STT_FILE` symbol of their object (a base name, made a
//! path with the instrumented objects' table, [`INSTRUMENTED`]); a global function takes the
//! file of the local function before it (an object's code is contiguous in the image; an object
//! whose first functions are global has them counted in the object before it; `?` when no
//! instrumented local function shares its section, as for globals of `.init.text`).

use super::{CoverageError, FunctionCoverage, FunctionSites};
use object::{Architecture, Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const TRACE_PC: &str = "__sanitizer_cov_trace_pc";

/// A function symbol: start, end, name, file (`None`: a global, file not known yet).
#[derive(Debug, Clone)]
struct Func {
    start: u64,
    end: u64,
    name: String,
    file: Option<String>,
    local: bool,
    section: usize,
}

fn sext(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Return addresses of the calls to `target` in `code` (loaded at `base`).
fn call_sites(arch: Architecture, thumb: bool, code: &[u8], base: u64, target: u64) -> Vec<u64> {
    let mut out = Vec::new();
    match (arch, thumb) {
        (Architecture::Aarch64, _) => {
            for (i, w) in code.chunks_exact(4).enumerate() {
                let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                if w & 0xfc00_0000 == 0x9400_0000 {
                    let at = base + 4 * i as u64;
                    let off = sext(u64::from(w & 0x03ff_ffff) << 2, 28);
                    if at.wrapping_add_signed(off) == target {
                        out.push(at + 4);
                    }
                }
            }
        }
        (_, false) => {
            for (i, w) in code.chunks_exact(4).enumerate() {
                let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                // BL<cond> imm24 (cond 0b1111 is BLX, which switches to Thumb: not a call here).
                if w & 0x0f00_0000 == 0x0b00_0000 && w >> 28 != 0xf {
                    let at = base + 4 * i as u64;
                    let off = sext(u64::from(w & 0x00ff_ffff) << 2, 26);
                    if (at + 8).wrapping_add_signed(off) & 0xffff_ffff == target {
                        out.push(at + 4);
                    }
                }
            }
        }
        (_, true) => {
            let hw: Vec<u16> = code.chunks_exact(2).map(|h| u16::from_le_bytes([h[0], h[1]])).collect();
            for i in 0..hw.len().saturating_sub(1) {
                let (h1, h2) = (u64::from(hw[i]), u64::from(hw[i + 1]));
                if h1 & 0xf800 == 0xf000 && h2 & 0xd000 == 0xd000 {
                    let s = (h1 >> 10) & 1;
                    let (j1, j2) = ((h2 >> 13) & 1, (h2 >> 11) & 1);
                    let (i1, i2) = (1 ^ (j1 ^ s), 1 ^ (j2 ^ s));
                    let imm = s << 24 | i1 << 23 | i2 << 22 | (h1 & 0x3ff) << 12 | (h2 & 0x7ff) << 1;
                    let at = base + 2 * i as u64;
                    if (at + 4).wrapping_add_signed(sext(imm, 25)) & 0xffff_ffff == target {
                        out.push(at + 4);
                    }
                }
            }
        }
    }
    out
}

/// The directories of the objects `build::kernel` instruments, by base name (`KCOV_INSTRUMENT`
/// lines of its Makefile table); the rest of `kernel/dma/` is instrumented whole.
const INSTRUMENTED: &[(&str, &str)] = &[
    ("cma.c", "mm"),
    ("page_alloc.c", "mm"),
    ("page_isolation.c", "mm"),
    ("highmem.c", "mm"),
    ("vmalloc.c", "mm"),
    ("genalloc.c", "lib"),
    ("bitmap.c", "lib"),
];

/// A symbol table's file name as a path in the kernel tree: `../src/mm/cma.c` → `mm/cma.c`,
/// `cma.c` → `mm/cma.c`, `dma-mapping.c` → `arch/ARCH/mm/dma-mapping.c`, another bare name →
/// `kernel/dma/NAME` (the one instrumented directory).
fn clean_file(name: &str, arch_dir: &str) -> String {
    let mut n = name;
    while let Some(r) = n.strip_prefix("../") {
        n = r;
    }
    let n = n.strip_prefix("src/").unwrap_or(n);
    if n.contains('/') {
        return n.to_string();
    }
    if let Some((_, d)) = INSTRUMENTED.iter().find(|(f, _)| *f == n) {
        return format!("{d}/{n}");
    }
    if n == "dma-mapping.c" {
        return format!("arch/{arch_dir}/mm/{n}");
    }
    format!("kernel/dma/{n}")
}

/// Every function of `vmlinux` with KCOV call sites, with how many of them `pcs` hit, sorted by
/// file and function.
pub fn functions(vmlinux: &Path, pcs: &BTreeSet<u64>) -> Result<Vec<FunctionCoverage>, CoverageError> {
    Ok(function_sites(vmlinux)?
        .into_iter()
        .map(|f| FunctionCoverage {
            hit: f.sites.iter().filter(|&&s| pcs.contains(&s) || pcs.contains(&(s | 1))).count() as u64,
            sites: f.sites.len() as u64,
            file: f.file,
            function: f.function,
        })
        .collect())
}

/// Every function of `vmlinux` with KCOV call sites and the sites themselves (the PCs KCOV
/// reports for them), sorted by file and function.
pub fn function_sites(vmlinux: &Path) -> Result<Vec<FunctionSites>, CoverageError> {
    let data = std::fs::read(vmlinux).map_err(super::io(vmlinux))?;
    let elf = |msg: String| CoverageError::Elf { path: vmlinux.to_path_buf(), msg };
    let file = object::File::parse(&*data).map_err(|e| elf(e.to_string()))?;
    let arch = file.architecture();
    if !matches!(arch, Architecture::Aarch64 | Architecture::Arm) {
        return Err(CoverageError::Arch { path: vmlinux.to_path_buf(), arch: format!("{arch:?}") });
    }
    let addr_mask = if arch == Architecture::Arm { !1u64 } else { !0u64 };
    let arch_dir = if arch == Architecture::Arm { "arm" } else { "arm64" };

    let mut trace_pc = None;
    let mut funcs: Vec<Func> = Vec::new();
    let mut current_file: Option<String> = None;
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        match sym.kind() {
            SymbolKind::File => current_file = Some(name.to_string()),
            SymbolKind::Text if !name.is_empty() && !name.starts_with('$') => {
                if name == TRACE_PC {
                    trace_pc = Some(sym.address());
                }
                if sym.size() > 0 {
                    let start = sym.address() & addr_mask;
                    funcs.push(Func {
                        start,
                        end: start + sym.size(),
                        name: name.to_string(),
                        file: if sym.is_local() { current_file.clone() } else { None },
                        local: sym.is_local(),
                        section: sym.section_index().map_or(0, |i| i.0),
                    });
                }
            }
            _ => {}
        }
    }
    let Some(trace_pc) = trace_pc else { return Err(CoverageError::NoKcov { path: vmlinux.to_path_buf() }) };
    let thumb = arch == Architecture::Arm && trace_pc & 1 == 1;
    let target = trace_pc & addr_mask;

    // One function per start address (aliases: the first name, a local's file if any).
    funcs.sort_by(|a, b| a.start.cmp(&b.start).then(b.local.cmp(&a.local)));
    funcs.dedup_by(|b, a| {
        if a.start == b.start {
            a.file = a.file.take().or(b.file.take());
            true
        } else {
            false
        }
    });
    let mut per: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for section in file.sections() {
        if section.kind() != SectionKind::Text {
            continue;
        }
        let Ok(code) = section.data() else { continue };
        for site in call_sites(arch, thumb, code, section.address(), target) {
            let call = site - 4;
            let at = funcs.partition_point(|f| f.start <= call);
            let Some(fi) = at.checked_sub(1).filter(|&j| call < funcs[j].end) else { continue };
            per.entry(fi).or_default().push(site);
        }
    }
    // Globals: the file of the local function just before them in their section when that
    // file is instrumented (has a local function with sites), else of the one just after, else
    // none.
    let instrumented: BTreeSet<String> = per.keys().filter_map(|&fi| funcs[fi].file.clone()).collect();
    let locals: Vec<usize> = (0..funcs.len()).filter(|&i| funcs[i].file.is_some()).collect();
    let file_of = |fi: usize| -> Option<String> {
        if let Some(n) = &funcs[fi].file {
            return Some(n.clone());
        }
        let ok = |j: Option<&usize>| {
            j.map(|&k| &funcs[k])
                .filter(|f| f.section == funcs[fi].section)
                .and_then(|f| f.file.clone())
                .filter(|n| instrumented.contains(n))
        };
        let at = locals.partition_point(|&k| k < fi);
        ok(at.checked_sub(1).and_then(|j| locals.get(j))).or_else(|| ok(locals.get(at)))
    };
    let mut out: Vec<FunctionSites> = per
        .into_iter()
        .filter(|(fi, _)| funcs[*fi].name != TRACE_PC)
        .map(|(fi, sites)| FunctionSites {
            file: file_of(fi).map_or_else(|| "?".to_string(), |n| clean_file(&n, arch_dir)),
            function: funcs[fi].name.clone(),
            sites,
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aarch64_bl_to_the_target_is_a_site_and_other_branches_are_not() {
        // At 0x1000: bl +0x100 (to 0x1100), b +0x100, bl -4 (to 0x1004).
        let bl_fwd = 0x9400_0040u32;
        let b_fwd = 0x1400_0040u32;
        let bl_back = 0x97ff_ffffu32;
        let code: Vec<u8> = [bl_fwd, b_fwd, bl_back].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(call_sites(Architecture::Aarch64, false, &code, 0x1000, 0x1100), vec![0x1004]);
        assert_eq!(call_sites(Architecture::Aarch64, false, &code, 0x1000, 0x1004), vec![0x100c]);
    }

    #[test]
    fn arm_bl_counts_from_pc_plus_eight() {
        // At 0xc0008000: bl 0xc0008100 is 0xeb00003e (0x100 - 8 = 0xf8 = 0x3e words).
        let code = 0xeb00_003eu32.to_le_bytes();
        assert_eq!(call_sites(Architecture::Arm, false, &code, 0xc000_8000, 0xc000_8100), vec![0xc000_8004]);
        // A conditional BL (ne) is a call too; BLX imm (cond 1111) is not.
        let ne = 0x1b00_003eu32.to_le_bytes();
        assert_eq!(call_sites(Architecture::Arm, false, &ne, 0xc000_8000, 0xc000_8100).len(), 1);
        let blx = 0xfb00_003eu32.to_le_bytes();
        assert!(call_sites(Architecture::Arm, false, &blx, 0xc000_8000, 0xc000_8100).is_empty());
    }

    #[test]
    fn thumb_bl_is_decoded() {
        // bl +0x100 from 0x8000: target 0x8104 (pc + 4 + 0x100): f000 f880.
        let code: Vec<u8> = [0xf000u16, 0xf880].iter().flat_map(|h| h.to_le_bytes()).collect();
        assert_eq!(call_sites(Architecture::Arm, true, &code, 0x8000, 0x8104), vec![0x8004]);
    }

    #[test]
    fn file_names_lose_the_build_prefix() {
        assert_eq!(clean_file("../src/mm/cma.c", "arm"), "mm/cma.c");
        assert_eq!(clean_file("mm/cma.c", "arm"), "mm/cma.c");
        assert_eq!(clean_file("cma.c", "arm"), "mm/cma.c");
        assert_eq!(clean_file("dma-mapping.c", "arm64"), "arch/arm64/mm/dma-mapping.c");
        assert_eq!(clean_file("pool.c", "arm64"), "kernel/dma/pool.c");
    }
}
