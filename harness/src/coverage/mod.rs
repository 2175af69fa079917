//! Kernel coverage of a campaign, on disk and by function.
//!
//! - Every campaign client writes the distinct KCOV PCs it has seen to
//!   `OUT/coverage/client-N.pcs` ([`write_client_pcs`]: one `0x…` PC a line, sorted, written
//!   atomically at the status interval and at exit); [`campaign_pcs`] is their union.
//! - The campaign records which kernel it ran in `OUT/coverage/kernel.json`
//!   ([`record_kernel`]); [`campaign_vmlinux`] finds that build's `vmlinux` from it (or, for an
//!   `OUT` written before, from the kernel key in the findings' `meta.json`).
//! - [`functions`] symbolizes PCs against a `vmlinux`: every function with KCOV call sites
//!   (calls to `__sanitizer_cov_trace_pc`, found by decoding the branch instructions of the
//!   image's code), how many of them there are and how many the PCs hit. KCOV records a call's
//!   return address, so a site is the address after its call instruction.

mod elf;

pub use elf::{function_sites, functions};

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One instrumented kernel function and how much of it a set of PCs reached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FunctionCoverage {
    /// Source file, relative to the kernel tree (`mm/cma.c`) when the image names it, else the
    /// name the image gives (`?` when it gives none).
    pub file: String,
    pub function: String,
    /// KCOV call sites in the function.
    pub sites: u64,
    /// Sites among them the PCs hit.
    pub hit: u64,
}

impl FunctionCoverage {
    pub fn reached(&self) -> bool {
        self.hit > 0
    }
}

/// One instrumented kernel function and its KCOV call sites (the PCs KCOV reports for them:
/// the return addresses of its `__sanitizer_cov_trace_pc` calls).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FunctionSites {
    pub file: String,
    pub function: String,
    pub sites: Vec<u64>,
}

/// The focus of a campaign steered towards some functions (`cmafuzz fuzz --focus`, what
/// `cmafuzz validate` passes for the functions a series changes): their KCOV sites, and the
/// names that match no instrumented function of the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Focus {
    /// `file: function` of each matched function.
    pub functions: Vec<String>,
    pub sites: BTreeSet<u64>,
    /// Names given that match no instrumented function (not in an instrumented file, or
    /// inlined away).
    pub missing: Vec<String>,
}

impl Focus {
    /// Sites of the focus among `pcs` (a PC may carry the Thumb bit).
    pub fn reached(&self, pcs: &BTreeSet<u64>) -> usize {
        self.sites.iter().filter(|&&s| pcs.contains(&s) || pcs.contains(&(s | 1))).count()
    }

    /// Whether `pc` is a site of the focus.
    pub fn contains(&self, pc: u64) -> bool {
        self.sites.contains(&pc) || self.sites.contains(&(pc & !1))
    }
}

/// Resolves focus names against a build's functions: `function` or `file: function` (as
/// `cmafuzz validate` lists a series' changed functions; also `file:function`).
pub fn focus(funcs: &[FunctionSites], names: &[String]) -> Focus {
    let mut f = Focus::default();
    for name in names {
        let (file, function) = match name.rsplit_once(':') {
            Some((file, function)) => (Some(file.trim()), function.trim()),
            None => (None, name.trim()),
        };
        let hits: Vec<&FunctionSites> = funcs
            .iter()
            .filter(|s| s.function == function && file.map_or(true, |file| s.file == file || s.file == "?"))
            .collect();
        if hits.is_empty() {
            f.missing.push(name.clone());
        }
        for h in hits {
            let label = format!("{}: {}", h.file, h.function);
            if !f.functions.contains(&label) {
                f.functions.push(label);
                f.sites.extend(h.sites.iter().copied());
            }
        }
    }
    f
}

#[derive(Debug, Error)]
pub enum CoverageError {
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("{path}: line {line}: `{text}` is not a PC (expected 0x followed by hex digits; delete the file to drop that client's coverage)")]
    BadPc { path: PathBuf, line: usize, text: String },
    #[error("{path}: not an ELF image cmafuzz can read: {msg}")]
    Elf { path: PathBuf, msg: String },
    #[error("{path}: no `__sanitizer_cov_trace_pc` in its symbols: this kernel was built without KCOV (use a target whose fragments include kcov.config, e.g. arm32-6.1 or arm64-6.1)")]
    NoKcov { path: PathBuf },
    #[error("{path}: a {arch} image; cmafuzz decodes KCOV call sites of arm (ARM mode) and aarch64 images only")]
    Arch { path: PathBuf, arch: String },
    #[error("{out}: no record of the campaign's kernel (no coverage/kernel.json and no finding naming a kernel build): run `cmafuzz fuzz --out {out}` with this cmafuzz, or pass --vmlinux FILE")]
    NoKernel { out: PathBuf },
    #[error("{out}: the campaign ran kernel {key}, which is no longer in the build cache ({path}): rebuild it with the same `cmafuzz kernel build` arguments, or pass --vmlinux FILE")]
    KernelGone { out: PathBuf, key: String, path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CoverageError + '_ {
    move |e| CoverageError::Io { path: path.to_path_buf(), msg: e.to_string() }
}

/// `OUT/coverage`.
pub fn dir(out: &Path) -> PathBuf {
    out.join("coverage")
}

/// `OUT/coverage/client-N.pcs`.
pub fn client_pcs_path(out: &Path, client: usize) -> PathBuf {
    dir(out).join(format!("client-{client}.pcs"))
}

fn pcs_text(pcs: &BTreeSet<u64>) -> String {
    let mut s = String::with_capacity(pcs.len() * 19);
    for pc in pcs {
        s.push_str(&format!("{pc:#x}\n"));
    }
    s
}

/// Writes one client's PCs (atomically: a reader sees the old set or the new one).
pub fn write_client_pcs(out: &Path, client: usize, pcs: &BTreeSet<u64>) -> Result<(), CoverageError> {
    let d = dir(out);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let p = client_pcs_path(out, client);
    crate::disk::write_atomic(&p, pcs_text(pcs).as_bytes()).map_err(io(&p))
}

/// Reads one `.pcs` file.
pub fn read_pcs(path: &Path) -> Result<BTreeSet<u64>, CoverageError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut set = BTreeSet::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        let pc = t.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok()).ok_or_else(|| {
            CoverageError::BadPc { path: path.to_path_buf(), line: i + 1, text: t.chars().take(40).collect() }
        })?;
        set.insert(pc);
    }
    Ok(set)
}

/// The union of every client's PCs in `OUT/coverage` (empty when no client wrote any: a
/// campaign on a kernel without KCOV, or one that has not reached its first status interval).
pub fn campaign_pcs(out: &Path) -> Result<BTreeSet<u64>, CoverageError> {
    let d = dir(out);
    let mut all = BTreeSet::new();
    let rd = match std::fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
        Err(e) => return Err(io(&d)(e)),
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            !n.starts_with('.') && n.ends_with(".pcs")
        })
        .collect();
    files.sort();
    for f in files {
        all.extend(read_pcs(&f)?);
    }
    Ok(all)
}

/// The text of `cmafuzz coverage`: a summary line, then the reached functions (hit/sites)
/// and the never-reached ones, each by file.
pub fn render(funcs: &[FunctionCoverage], pcs: usize, vmlinux: &Path) -> String {
    let reached = funcs.iter().filter(|f| f.reached()).count();
    let sites: u64 = funcs.iter().map(|f| f.sites).sum();
    let hit: u64 = funcs.iter().map(|f| f.hit).sum();
    let mut s = format!(
        "kcov: {pcs} PCs; {reached} of {} instrumented functions reached, {hit} of {sites} call sites ({})\n",
        funcs.len(),
        vmlinux.display()
    );
    for (title, want) in [("reached", true), ("never reached", false)] {
        let list: Vec<&FunctionCoverage> = funcs.iter().filter(|f| f.reached() == want).collect();
        s.push_str(&format!("{title} ({}):\n", list.len()));
        for f in list {
            s.push_str(&format!("  {:<28} {:<40} {}/{}\n", f.file, f.function, f.hit, f.sites));
        }
    }
    s
}

/// What `OUT/coverage/kernel.json` says of the campaign's kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub target: String,
    /// The build cache key.
    pub key: String,
    pub vmlinux: PathBuf,
}

/// Records the campaign's kernel in `OUT/coverage/kernel.json`.
pub fn record_kernel(out: &Path, rec: &KernelRecord) -> Result<(), CoverageError> {
    let d = dir(out);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let p = d.join("kernel.json");
    let json = serde_json::to_vec_pretty(rec).map_err(|e| CoverageError::Io { path: p.clone(), msg: e.to_string() })?;
    crate::disk::write_atomic(&p, &json).map_err(io(&p))
}

/// The kernel build a campaign ran: `OUT/coverage/kernel.json`, else the kernel key of the
/// first finding that names one (its build found in the cache's `kernels/*-KEY/`).
pub fn campaign_kernel(out: &Path) -> Result<KernelRecord, CoverageError> {
    let p = dir(out).join("kernel.json");
    if p.is_file() {
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        return serde_json::from_str(&text).map_err(|e| CoverageError::Io {
            path: p.clone(),
            msg: format!("{e} (delete it and pass --vmlinux FILE)"),
        });
    }
    let findings = out.join("findings");
    let mut metas: Vec<PathBuf> = std::fs::read_dir(&findings)
        .map(|rd| rd.flatten().map(|e| e.path().join("meta.json")).filter(|m| m.is_file()).collect())
        .unwrap_or_default();
    metas.sort();
    for m in metas {
        let Ok(text) = std::fs::read_to_string(&m) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let (Some(key), Some(target)) = (v["kernel_hash"].as_str(), v["target"].as_str()) else { continue };
        let kernels = crate::build::cache::root().join("kernels");
        let found = std::fs::read_dir(&kernels)
            .ok()
            .and_then(|rd| rd.flatten().map(|e| e.path()).find(|d| d.to_string_lossy().ends_with(&format!("-{key}"))));
        let vmlinux = found.map_or_else(|| kernels.join(format!("*-{key}")).join("vmlinux"), |d| d.join("vmlinux"));
        return Ok(KernelRecord { target: target.to_string(), key: key.to_string(), vmlinux });
    }
    Err(CoverageError::NoKernel { out: out.to_path_buf() })
}

/// The `vmlinux` of the campaign's kernel build, checked to exist.
pub fn campaign_vmlinux(out: &Path) -> Result<PathBuf, CoverageError> {
    let rec = campaign_kernel(out)?;
    if rec.vmlinux.is_file() {
        Ok(rec.vmlinux)
    } else {
        Err(CoverageError::KernelGone { out: out.to_path_buf(), key: rec.key, path: rec.vmlinux })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_pcs_round_trip_and_the_campaign_is_their_union() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(campaign_pcs(d.path()).expect("no dir is no coverage").is_empty());
        write_client_pcs(d.path(), 0, &[0xc0101000, 0xc0101004].into_iter().collect()).expect("write");
        write_client_pcs(d.path(), 1, &[0xc0101004, 0xffff_8000_0810_0000].into_iter().collect()).expect("write");
        let all = campaign_pcs(d.path()).expect("reads");
        assert_eq!(all.into_iter().collect::<Vec<_>>(), vec![0xc0101000, 0xc0101004, 0xffff_8000_0810_0000]);
        let text = std::fs::read_to_string(client_pcs_path(d.path(), 0)).expect("read");
        assert_eq!(text, "0xc0101000\n0xc0101004\n");
    }

    #[test]
    fn a_garbled_pcs_file_is_named_with_its_line() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir(d.path())).expect("mkdir");
        std::fs::write(client_pcs_path(d.path(), 3), "0x10\nbanana\n").expect("write");
        let e = campaign_pcs(d.path()).expect_err("garbled").to_string();
        assert!(e.contains("client-3.pcs") && e.contains("line 2") && e.contains("banana"), "{e}");
    }

    #[test]
    fn a_focus_takes_the_sites_of_the_named_functions_and_names_the_missing_ones() {
        let f = |file: &str, function: &str, sites: &[u64]| FunctionSites {
            file: file.into(),
            function: function.into(),
            sites: sites.to_vec(),
        };
        let funcs = vec![
            f("mm/cma.c", "cma_alloc", &[0x10, 0x14]),
            f("mm/cma.c", "cma_release", &[0x20]),
            f("mm/page_alloc.c", "cma_release", &[0x30]),
            f("kernel/dma/pool.c", "atomic_pool_expand", &[0x40]),
        ];
        let names: Vec<String> =
            ["mm/cma.c: cma_release", "cma_alloc", "mm/cma.c: cma_gone", "kernel/dma/pool.c:atomic_pool_expand"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let fo = focus(&funcs, &names);
        assert_eq!(
            fo.functions,
            vec!["mm/cma.c: cma_release", "mm/cma.c: cma_alloc", "kernel/dma/pool.c: atomic_pool_expand"]
        );
        assert_eq!(fo.sites.iter().copied().collect::<Vec<_>>(), vec![0x10, 0x14, 0x20, 0x40]);
        assert_eq!(fo.missing, vec!["mm/cma.c: cma_gone"]);
        // A bare name takes every file's function of that name; a Thumb PC is its site.
        let both = focus(&funcs, &["cma_release".to_string()]);
        assert_eq!(both.sites.len(), 2);
        assert!(fo.contains(0x15) && fo.contains(0x14) && !fo.contains(0x30));
        assert_eq!(fo.reached(&[0x11, 0x40, 0x30].into_iter().collect()), 2);
    }

    #[test]
    fn the_kernel_record_is_found_and_a_missing_one_says_what_to_do() {
        let d = tempfile::tempdir().expect("tempdir");
        let e = campaign_vmlinux(d.path()).expect_err("nothing recorded").to_string();
        assert!(e.contains("--vmlinux"), "{e}");
        let vm = d.path().join("vmlinux");
        std::fs::write(&vm, b"x").expect("write");
        let rec = KernelRecord { target: "arm32-6.1".into(), key: "abc".into(), vmlinux: vm.clone() };
        record_kernel(d.path(), &rec).expect("record");
        assert_eq!(campaign_kernel(d.path()).expect("read"), rec);
        assert_eq!(campaign_vmlinux(d.path()).expect("exists"), vm);
        std::fs::remove_file(&vm).expect("rm");
        let e = campaign_vmlinux(d.path()).expect_err("gone").to_string();
        assert!(e.contains("abc") && e.contains("no longer in the build cache"), "{e}");
    }
}
