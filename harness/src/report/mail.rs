//! `cmafuzz report --mail`: the plain-text report a developer sends upstream. The reproducer
//! (a finding's minimized one when there is one, or a program file) is replayed on each
//! target's real kernel first, so the mail says what the kernel does now: subject, affected
//! versions and targets, the reproducer, what the kernel did and what it should have done
//! (for an alias, the mapping table of the page), the console excerpt and the config.

use super::load::{self, VerdictRecord};
use super::ReportError;
use crate::backend::kernel::boot::{self as session, KernelChoice};
use crate::backend::ProgramRun;
use crate::diff::{BackendChoice, Execution, Executor};
use crate::oracle::compare::show_outcome;
use crate::oracle::{Suppressions, VerdictKind};
use crate::targets::{self, Target};
use reference_impl::observation::{MapRun, Observation, PageAddr};
use reference_impl::program::Program;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What to report on.
#[derive(Debug, Clone)]
pub struct MailRequest {
    /// A finding directory or a program file.
    pub input: PathBuf,
    /// Targets to replay on; empty: the finding's target (or the default target for a program).
    pub targets: Vec<String>,
    /// Patches the kernel is built with; empty: the finding's.
    pub patches: Vec<PathBuf>,
}

/// The program, where it came from, and what its finding recorded.
struct Input {
    program: Program,
    text: String,
    what: String,
    target: Option<String>,
    patches: Vec<PathBuf>,
    minimized: bool,
    /// The finding's signature: the verdict the mail is about when the replay gives it.
    signature: Option<String>,
}

fn input(path: &Path) -> Result<Input, ReportError> {
    if path.is_dir() {
        let f = load::finding(path)?;
        let text = f.best_reproducer().to_string();
        let program = Program::parse(&text)
            .map_err(|e| ReportError::Program(format!("{}: {e} (fix the reproducer)", path.display())))?;
        return Ok(Input {
            program,
            text,
            what: path.display().to_string(),
            target: Some(f.meta.target.clone()).filter(|t| !t.is_empty()),
            patches: f.meta.kernel_patches.iter().map(PathBuf::from).collect(),
            minimized: f.minimized.is_some(),
            signature: Some(f.meta.signature.clone()).filter(|s| !s.is_empty()),
        });
    }
    let lp = crate::findings::programs::load(path).map_err(|e| ReportError::Program(e.to_string()))?;
    let text = lp.program.to_text();
    Ok(Input {
        program: lp.program,
        text,
        what: path.display().to_string(),
        target: None,
        patches: vec![],
        minimized: false,
        signature: None,
    })
}

/// The verdict a mail is about: the finding's own signature when the replay gives it, else the
/// first unsuppressed one by op order (harness errors are not kernel bugs), else the first one a
/// suppression lists as a known kernel bug.
fn the_verdict(e: &Execution, signature: Option<&str>) -> Option<VerdictRecord> {
    if let Some(v) = e.verdicts.iter().find(|v| Some(v.signature.as_str()) == signature) {
        return Some(VerdictRecord::from_verdict(v));
    }
    let key = |v: &&crate::oracle::Verdict| v.op_index.unwrap_or(usize::MAX);
    let mut open: Vec<_> =
        e.verdicts.iter().filter(|v| v.suppressed.is_none() && v.kind != VerdictKind::HarnessError).collect();
    open.sort_by_key(key);
    if let Some(v) = open.first() {
        return Some(VerdictRecord::from_verdict(v));
    }
    let mut known: Vec<_> =
        e.verdicts.iter().filter(|v| v.suppressed.as_ref().is_some_and(|s| s.class == "kernel-bug")).collect();
    known.sort_by_key(key);
    known.first().map(|v| VerdictRecord::from_verdict(v))
}

/// One target's replay.
struct TargetRun {
    target: Target,
    release: String,
    exec: Execution,
    verdict: Option<VerdictRecord>,
    console: String,
    config: Option<PathBuf>,
    build: String,
}

fn run_on(
    t: &Target,
    kc: &KernelChoice,
    prog: &Program,
    signature: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<TargetRun, ReportError> {
    let art = session::build_kernel(t, kc, progress)?;
    let mut ex = Executor::start(t, BackendChoice::Both, kc, Suppressions::builtin()?, progress)?;
    let release = ex.subject.as_ref().and_then(|k| k.hello().map(|h| h.release.clone())).unwrap_or_default();
    let exec = ex.execute(prog).map_err(|e| ReportError::Program(e.to_string()))?;
    let console = ex.subject.as_ref().map(|k| k.console()).unwrap_or_default();
    let verdict = the_verdict(&exec, signature);
    Ok(TargetRun { target: t.clone(), release, exec, verdict, console, config: Some(art.config), build: art.key })
}

/// The mail text, replaying on every target of `req` (progress lines go to `progress`).
pub fn mail(req: &MailRequest, progress: &mut dyn FnMut(&str)) -> Result<String, ReportError> {
    if !req.input.exists() {
        return Err(ReportError::Read { path: req.input.clone(), msg: "no such file or directory".into() });
    }
    let inp = input(&req.input)?;
    let names: Vec<String> = if req.targets.is_empty() {
        vec![inp.target.clone().unwrap_or_else(|| targets::find(None).map(|t| t.name).unwrap_or_default())]
    } else {
        req.targets.clone()
    };
    let patches = if req.patches.is_empty() { inp.patches.clone() } else { req.patches.clone() };
    for p in &patches {
        if !p.is_file() {
            return Err(ReportError::Read {
                path: p.clone(),
                msg: "the kernel patch of this finding is not there (run from the campaign's directory or give --kernel-patch)".into(),
            });
        }
    }
    let kc = KernelChoice { src: None, patches: patches.clone(), watchdog: None };
    let mut runs = Vec::new();
    for n in &names {
        let t = targets::find(Some(n))?;
        runs.push(run_on(&t, &kc, &inp.program, inp.signature.as_deref(), progress)?);
    }
    let Some(main) = runs.iter().find(|r| r.verdict.is_some()) else {
        return Err(ReportError::NoLongerReproduces { what: inp.what.clone(), target: names.join(", ") });
    };
    Ok(compose(&inp, &patches, main, &runs))
}

fn area_of(v: &VerdictRecord) -> &'static str {
    match v.kind.as_str() {
        "alias-violation" | "mapping" => "arm/dma-mapping",
        "bitmap" | "layout" => "mm/cma",
        _ => "mm",
    }
}

fn compose(inp: &Input, patches: &[PathBuf], main: &TargetRun, runs: &[TargetRun]) -> String {
    let v = main.verdict.clone().unwrap_or_default();
    let mut s = String::new();
    let headline = v.detail.lines().next().unwrap_or("").trim();
    // Every release the replay reproduced on, in the order of the targets given.
    let mut releases: Vec<&str> = Vec::new();
    for r in runs.iter().filter(|r| r.verdict.is_some()) {
        if !releases.contains(&r.release.as_str()) {
            releases.push(&r.release);
        }
    }
    let _ = writeln!(
        s,
        "Subject: [BUG] {}: {} ({}) on {} {}",
        area_of(&v),
        v.kind,
        v.signature,
        main.target.arch,
        releases.join(", ")
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "Hello,");
    let _ = writeln!(s);
    let _ = writeln!(s, "cmafuzz (a differential fuzzer of CMA and ARM coherent DMA: a reference model of the");
    let _ = writeln!(s, "kernel's rules beside the real kernel in qemu) finds this on {}:", main.target.name);
    let _ = writeln!(s);
    let _ = writeln!(s, "  {headline}");
    if let Some(sup) = &v.suppressed {
        let _ = writeln!(
            s,
            "  (a known kernel bug to cmafuzz: suppression {}, {})",
            sup.id,
            sup.known_issue.as_deref().unwrap_or(&sup.reason)
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Affected versions and targets (the reproducer below replayed on each):");
    for r in runs {
        let got = match &r.verdict {
            Some(x) => format!("reproduces ({})", x.signature),
            None => "does not reproduce".into(),
        };
        let _ = writeln!(s, "  {:<18} {:<28} {} [{}]", r.target.name, r.release, got, r.target.description);
    }
    if !patches.is_empty() {
        let names: Vec<String> = patches.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(s, "  kernel built with: {}", names.join(", "));
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Reproducer ({}{} ops; each line is one call of the in-kernel test driver: cma_alloc,",
        if inp.minimized { "minimized, " } else { "" },
        inp.program.ops.len()
    );
    let _ = writeln!(s, "cma_release, dma_alloc_attrs, dma_free_attrs, pin/kmap of single pages, observe):");
    let _ = writeln!(s);
    for l in inp.text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
        let _ = writeln!(s, "  {l}");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  cmafuzz replay {} --target {}", inp.what, main.target.name);
    let _ = writeln!(s);
    let (m, k) = (main.exec.reference.as_ref(), main.exec.subject.as_ref());
    let _ = writeln!(s, "What the kernel did, and what the model predicts:");
    let _ = writeln!(s);
    if let (Some(m), Some(k)) = (m, k) {
        let ops: Vec<String> = inp
            .program
            .to_text()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        let w = ops.iter().map(String::len).max().unwrap_or(0).min(48);
        let _ = writeln!(s, "  {:<4} {:<w$}  {:<28} model predicts", "#", "op", "kernel did");
        for (i, (ko, mo)) in k.outcomes.iter().zip(&m.outcomes).enumerate() {
            let mark = if v.op_index == Some(i) { "  <--" } else { "" };
            let _ = writeln!(
                s,
                "  {:<4} {:<w$}  {:<28} {}{mark}",
                i,
                ops.get(i).map_or("?", String::as_str),
                show_outcome(ko),
                show_outcome(mo)
            );
        }
        let _ = writeln!(s);
        let at = state_at(&v, k);
        let mo = state_at(&v, m);
        for a in &at.areas {
            let want = mo.areas.iter().find(|b| b.name == a.name).map(|b| b.used_bits());
            let _ = writeln!(
                s,
                "  area {} ({}): {} bitmap bits set, should be {}",
                a.name,
                a.extent_text(),
                a.used_bits(),
                want.map_or("-".into(), |w| w.to_string())
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  verdict: {} [{}]", v.kind, v.signature);
    let _ = writeln!(s, "  should have: {}", should_have(&v));
    for l in v.detail.lines() {
        let _ = writeln!(s, "    {l}");
    }
    if v.kind.starts_with("alias") || v.kind == "mapping" {
        if let Some(k) = k {
            let obs = state_at(&v, k);
            let table = alias_table(obs);
            if !table.is_empty() {
                let _ = writeln!(s);
                let _ = writeln!(
                    s,
                    "  The kernel's own page tables for the page(s) mapped cacheable and non-cacheable at once:"
                );
                let _ = writeln!(s);
                s.push_str(&table);
            }
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Console excerpt:");
    let _ = writeln!(s);
    let excerpt = v.excerpt.clone().unwrap_or_else(|| {
        let lines: Vec<&str> = main.console.lines().collect();
        // What the kernel printed after it started the agent, i.e. while the program ran.
        let start = lines.iter().rposition(|l| l.contains("Run /init as init process")).map_or(0, |i| i + 1);
        if start > 0 && start < lines.len() {
            lines[start..].iter().rev().take(40).rev().copied().collect::<Vec<_>>().join("\n")
        } else {
            let tail = lines[lines.len().saturating_sub(10)..].join("\n");
            format!("(the kernel printed nothing while the reproducer ran; the end of its boot log:)\n{tail}")
        }
    });
    for l in excerpt.lines() {
        let _ = writeln!(s, "  {l}");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Config ({} build {}; the CMA, DMA and memory options of its .config):",
        main.target.name, main.build
    );
    let _ = writeln!(s);
    if let Some(cfg) = main.config.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        for l in cfg.lines().filter(|l| config_line_matters(l)) {
            let _ = writeln!(s, "  {l}");
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "qemu: {} -M {} -cpu {} -m {}M, {}",
        main.target.qemu, main.target.machine, main.target.cpu, main.target.memory_mib, main.target.cmdline
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "-- ");
    let _ = writeln!(s, "reported with cmafuzz report --mail");
    s
}

/// What the kernel should have done, by verdict kind. The right-hand column above is the
/// model's prediction; for a known kernel bug the model predicts the bug too, so the rule is
/// said here.
fn should_have(v: &VerdictRecord) -> String {
    let rule = match v.kind.as_str() {
        "alias-violation" => "no page mapped cacheable and non-cacheable at once: a page handed out as an uncached coherent DMA buffer keeps no cacheable mapping (linear map, PKMAP slot, fixmap) while it is one (the Arm ARM forbids mismatched-attribute aliases)",
        "bitmap" => "leave the CMA bitmap as the model has it: every allocation sets, and every release clears, exactly its own bits",
        "layout" => "return what the model predicts for the op (the place, or the failure, that the kernel's own search rules give)",
        "mapping" => "map the buffer's pages with the memory types the model predicts for this allocation path",
        "oops" | "bug" | "warning" | "hang" => "complete the op without a kernel report",
        _ => "what the model predicts",
    };
    match v.suppressed.as_ref().and_then(|s| s.known_issue.as_ref()) {
        Some(k) => format!("{rule} (known issue: {k})"),
        None => rule.to_string(),
    }
}

fn state_at<'a>(v: &VerdictRecord, r: &'a ProgramRun) -> &'a Observation {
    // A verdict on no op is about the end state.
    let Some(op) = v.op_index else { return &r.end };
    r.observations.iter().find(|(i, _)| *i >= op).map_or(&r.end, |(_, o)| o)
}

fn config_line_matters(l: &str) -> bool {
    let l = l.trim();
    if !l.starts_with("CONFIG_") {
        return false;
    }
    ["CMA", "DMA", "HIGHMEM", "LPAE", "ARM64_", "VMSPLIT", "PAGE_OFFSET", "KCOV", "SMP", "CPU_V7", "ZONE_"]
        .iter()
        .any(|k| l.contains(k))
}

/// Every pfn of `obs` that one mapping maps cacheable and another non-cacheable, with all of
/// that page's mappings (kind, virtual address, memory type, level), as text rows.
fn alias_table(obs: &Observation) -> String {
    let mut per: BTreeMap<u64, Vec<&MapRun>> = BTreeMap::new();
    for r in &obs.maps {
        let PageAddr::Pfn(p) = r.first else { continue };
        for i in 0..r.pages.min(1 << 20) {
            per.entry(p.0 + i).or_default().push(r);
        }
    }
    let mut s = String::new();
    let mut shown = 0;
    for (pfn, runs) in &per {
        let cacheable = runs.iter().any(|r| r.mem.cacheable());
        let uncached = runs.iter().any(|r| !r.mem.cacheable());
        if !(cacheable && uncached) {
            continue;
        }
        if shown == 4 {
            let _ = writeln!(s, "    ... (more pages alike)");
            break;
        }
        shown += 1;
        let _ = writeln!(s, "    pfn {pfn:#x}:");
        let _ = writeln!(s, "      {:<7} {:<12} {:<5} level", "kind", "va", "type");
        for r in runs {
            let off = pfn
                - match r.first {
                    PageAddr::Pfn(p) => p.0,
                    PageAddr::Buffer { .. } => *pfn,
                };
            let va = r.va.map_or("-".into(), |va| format!("{:#x}", va + off * 4096));
            let level = r.level.map_or("-", |l| l.name());
            let _ = writeln!(s, "      {:<7} {:<12} {:<5} {}", r.kind.name(), va, r.mem.name(), level);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::observation::{MapKind, MapLevel, MemType};
    use reference_impl::units::Pfn;

    #[test]
    fn the_alias_table_lists_only_pages_mapped_cacheable_and_uncached_at_once() {
        let run = |kind, pfn, pages, mem, va| MapRun {
            kind,
            first: PageAddr::Pfn(Pfn(pfn)),
            pages,
            mem,
            va: Some(va),
            level: Some(MapLevel::Pte),
        };
        let obs = Observation {
            maps: vec![
                run(MapKind::Vmap, 0x7e040, 2, MemType::Nc, 0xf000_0000),
                run(MapKind::Pkmap, 0x7e041, 1, MemType::Wb, 0xbfe0_0000),
            ],
            ..Observation::default()
        };
        let t = alias_table(&obs);
        assert!(t.contains("pfn 0x7e041"), "{t}");
        assert!(!t.contains("pfn 0x7e040"), "0x7e040 is only uncached: {t}");
        assert!(t.contains("vmap") && t.contains("pkmap") && t.contains("0xf0001000"), "{t}");
    }
}
