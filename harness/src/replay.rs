//! `cmafuzz replay`: runs program files on the model, the kernel or both,
//! prints what each side returned per op and every disagreement.

use crate::backend::{Backend, BackendError, KernelBackend, ModelBackend, ProgramRun};
use crate::compare::{self, show_outcome, Divergence};
use crate::console;
use crate::oracle::{self, AliasSeen, Suppressions, Verdict};
use crate::session::{self, SessionError};
use crate::targets::Target;
use reference_impl::observation::Observation;
use reference_impl::program::Program;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Model,
    Kernel,
    Both,
}

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("no program files given (pass files or directories of *.prog / *.json)")]
    NoFiles,
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A program loaded from disk.
#[derive(Debug, Clone)]
pub struct LoadedProgram {
    pub path: PathBuf,
    pub program: Program,
}

/// Expands directories into their `*.prog` and `*.json` files (sorted).
pub fn collect_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, ReplayError> {
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let rd = std::fs::read_dir(a).map_err(|e| ReplayError::File { path: a.clone(), msg: e.to_string() })?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("prog" | "json")))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(a.clone());
        }
    }
    if files.is_empty() {
        return Err(ReplayError::NoFiles);
    }
    Ok(files)
}

/// Loads one program, text or JSON by extension.
pub fn load(path: &Path) -> Result<LoadedProgram, ReplayError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReplayError::File { path: path.to_path_buf(), msg: format!("cannot read: {e}") })?;
    let parsed = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        Program::from_json(&text)
    } else {
        Program::parse(&text)
    };
    let program = parsed.map_err(|e| ReplayError::File { path: path.to_path_buf(), msg: e.to_string() })?;
    Ok(LoadedProgram { path: path.to_path_buf(), program })
}

/// Totals over a replay, for the summary and the exit code.
#[derive(Debug, Default)]
pub struct Summary {
    pub programs: usize,
    pub agree: usize,
    /// Programs run on one backend only (nothing to compare).
    pub ran: usize,
    pub diverge: usize,
    pub errors: usize,
    /// Verdicts a suppression accepted (reported, not counted as findings).
    pub suppressed: usize,
    pub kernel_ops: u64,
    pub kernel_time: Duration,
    /// The kernel's CMA layout at boot, when a kernel ran.
    pub kernel_boot: Option<Observation>,
}

impl Summary {
    /// 0 when every program agrees, 1 on a divergence, 2 on an error.
    pub fn exit_code(&self) -> u8 {
        crate::exit_code(self.errors > 0, self.diverge > 0)
    }
}

/// Replays `programs` on `target`. Per-program failures (a dead guest, an
/// unknown area) are reported and counted, and the replay goes on.
pub fn replay(
    target: &Target,
    choice: BackendChoice,
    kernel: &session::KernelChoice,
    programs: &[LoadedProgram],
    json_out: bool,
    console_log: Option<&Path>,
    sup: &Suppressions,
    out: &mut dyn Write,
) -> Result<Summary, ReplayError> {
    let mut kb: Option<KernelBackend> = None;
    let mut placement_finding = false;
    let boot: Observation;
    let profile;
    if choice == BackendChoice::Model {
        boot = target.boot_observation();
        profile = target.profile().map_err(SessionError::from)?;
    } else {
        let k = session::boot_kernel(target, kernel, &mut |l| eprintln!("{l}"))?;
        boot = k.boot_observation().clone();
        profile = session::profile_from_kernel(target, &k)?;
        if !json_out {
            let hello = k.hello().map(|h| h.release.clone()).unwrap_or_default();
            let bt = k.boot_times.first().copied().unwrap_or_default();
            let _ = writeln!(out, "kernel: {} ({hello}) ready in {:.2} s", target.name, bt.as_secs_f64());
            for a in &boot.areas {
                let _ = writeln!(
                    out,
                    "kernel: area {} base_pfn {:#x} count {} order_per_bit {}, {} bits used at boot",
                    a.name,
                    a.base_pfn.0,
                    a.count.0,
                    a.order_per_bit,
                    a.used_bits()
                );
            }
        }
        if let Some(note) = session::placement_note(target, &boot) {
            // A placement divergence is a finding about the kernel, not about one program.
            let v = Verdict {
                kind: oracle::VerdictKind::Placement,
                signature: "placement:boot".into(),
                op_index: None,
                detail: note,
                excerpt: None,
                suppressed: sup.find(&target.name, "placement:boot"),
            };
            if json_out {
                let _ = writeln!(out, "{}", json!({"file": "<boot>", "verdict": "finding", "verdicts": [v]}));
            } else {
                let _ = writeln!(out, "VERDICT: {v}");
            }
            if v.suppressed.is_none() {
                placement_finding = true;
            }
        }
        kb = Some(k);
    }
    // With `--backend kernel` the model still runs in lockstep, unseen, so that resets know where
    // the kernel must be (arm64's pools keep their growth); if it cannot start, resets expect boot.
    let mut mb = match ModelBackend::new(profile, boot.clone()) {
        Ok(m) => Some(m),
        Err(_) if choice == BackendChoice::Kernel => None,
        Err(e) => return Err(SessionError::Backend(e).into()),
    };

    let mut sum = Summary { kernel_boot: kb.as_ref().map(|k| k.boot_observation().clone()), ..Summary::default() };
    if placement_finding {
        sum.diverge += 1;
    }
    let alias_rules = AliasRulesStub;
    // Console reports already shown (the console only grows within one VM).
    let mut seen_reports = 0usize;
    let mut seen_reboots = 0u32;
    for (pi, lp) in programs.iter().enumerate() {
        sum.programs += 1;
        let label = lp.path.display().to_string();
        let resolved = match lp.program.resolve(&boot.areas) {
            Ok(r) => r,
            Err(e) => {
                sum.errors += 1;
                report_error(out, json_out, &label, &format!("{e}"));
                continue;
            }
        };
        let mut reset_err = None;
        if pi > 0 {
            if let Some(m) = mb.as_mut() {
                m.reset().map_err(SessionError::Backend)?;
            }
            if let Some(k) = kb.as_mut() {
                // The kernel must be where the model is after a reset (boot plus pool growth).
                let expected = mb.as_ref().map_or_else(|| boot.clone(), ModelBackend::observe);
                match k.reset_expecting(&expected) {
                    Ok(true) => mb.iter_mut().for_each(ModelBackend::reset_to_boot),
                    Ok(false) => {}
                    Err(e) => reset_err = Some(e),
                }
            }
        }
        let mrun = mb.as_mut().map(|m| m.run(&resolved)).transpose().map_err(SessionError::Backend)?;
        // What the user asked to see.
        let mrun = if choice == BackendChoice::Kernel { None } else { mrun };
        let mut krun = None;
        let mut kerr: Option<BackendError> = None;
        if let Some(k) = kb.as_mut() {
            let res = (|| -> Result<ProgramRun, BackendError> {
                if let Some(e) = reset_err {
                    return Err(e);
                }
                let t = Instant::now();
                let r = k.run(&resolved)?;
                sum.kernel_time += t.elapsed();
                sum.kernel_ops += resolved.ops.len() as u64;
                Ok(r)
            })();
            match res {
                Ok(r) => krun = Some(r),
                Err(e) => kerr = Some(e),
            }
        }
        let mut kernel_reports = Vec::new();
        if let Some(k) = kb.as_ref() {
            if let Some(BackendError::Guest { console: c, .. }) = &kerr {
                // The VM is gone; its whole console is in the error.
                kernel_reports = console::scan(c).into_iter().skip(seen_reports).collect();
                seen_reports = 0;
            } else {
                if k.reboots != seen_reboots {
                    seen_reboots = k.reboots;
                    seen_reports = 0;
                }
                let all = console::scan(&k.console());
                kernel_reports = all.into_iter().skip(seen_reports).collect::<Vec<_>>();
                seen_reports += kernel_reports.len();
            }
        }
        let divs = match (&mrun, &krun) {
            (Some(m), Some(k)) => compare::compare(&resolved, m, k, &boot.areas),
            _ => vec![],
        };
        let aliases = krun.as_ref().map(|k| scan_aliases(&alias_rules, k)).unwrap_or_default();
        let verdicts = oracle::judge(
            &oracle::Evidence {
                prog: &resolved,
                divergences: &divs,
                aliases: &aliases,
                console: &kernel_reports,
                error: kerr.as_ref(),
            },
            sup,
            &target.name,
        );
        if let Some(e) = &kerr {
            // The run did not complete: say so on stderr, keep the console for the user.
            let saved = save_console(e);
            eprintln!("error: {label}: {}{saved}", e.to_string().lines().next().unwrap_or_default());
        }
        let harness_error = verdicts.iter().any(|v| v.kind == oracle::VerdictKind::HarnessError);
        let finding = verdicts.iter().any(|v| v.suppressed.is_none() && v.kind != oracle::VerdictKind::HarnessError);
        if harness_error {
            sum.errors += 1;
        }
        if finding {
            sum.diverge += 1;
        } else if kerr.is_some() {
            // Counted as an error above (or explained by a suppressed report).
        } else if choice != BackendChoice::Both {
            sum.ran += 1;
        } else {
            sum.agree += 1;
        }
        sum.suppressed += verdicts.iter().filter(|v| v.suppressed.is_some()).count();
        let text = lp.program.to_text();
        let op_lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        if json_out {
            print_json(out, &label, target, choice, &op_lines, mrun.as_ref(), krun.as_ref(), &divs, &verdicts);
        } else {
            print_text(out, &label, &op_lines, mrun.as_ref(), krun.as_ref(), &divs, &verdicts, &boot);
        }
    }
    if let (Some(path), Some(k)) = (console_log, kb.as_ref()) {
        if let Err(e) = std::fs::write(path, k.console()) {
            return Err(ReplayError::File {
                path: path.to_path_buf(),
                msg: format!("cannot write the console log: {e}"),
            });
        }
    }
    if !json_out {
        if choice == BackendChoice::Both {
            let _ = write!(
                out,
                "{} programs: {} agree, {} diverge, {} errors",
                sum.programs, sum.agree, sum.diverge, sum.errors
            );
        } else {
            let _ = write!(
                out,
                "{} programs: {} ran on the {} alone, {} errors",
                sum.programs,
                sum.ran,
                format!("{choice:?}").to_lowercase(),
                sum.errors
            );
        }
        if sum.kernel_ops > 0 && !sum.kernel_time.is_zero() {
            let _ = write!(
                out,
                "; kernel ran {} ops in {:.3} s ({:.0} ops/s including round trips)",
                sum.kernel_ops,
                sum.kernel_time.as_secs_f64(),
                sum.kernel_ops as f64 / sum.kernel_time.as_secs_f64()
            );
        }
        if let Some(k) = &kb {
            if k.reboots > 0 {
                let _ = write!(out, "; {} VM reboots", k.reboots);
            }
        }
        let _ = writeln!(out);
    }
    Ok(sum)
}

/// Placeholder until the model's alias rules land.
struct AliasRulesStub;

/// Runs the alias invariant over every kernel observation of one run.
fn scan_aliases(_rules: &AliasRulesStub, _k: &ProgramRun) -> Vec<AliasSeen> {
    Vec::new()
}

/// Keeps the console of a failed guest for the user; returns a note.
fn save_console(e: &BackendError) -> String {
    let BackendError::Guest { console, .. } = e else { return String::new() };
    let path = std::env::temp_dir().join(format!(
        "cmafuzz-console-{}-{}.log",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
    ));
    match std::fs::write(&path, console) {
        Ok(()) => format!(" (console tail saved to {})", path.display()),
        Err(_) => String::new(),
    }
}

fn report_error(out: &mut dyn Write, json_out: bool, label: &str, msg: &str) {
    let one_line = msg.lines().next().unwrap_or(msg);
    if json_out {
        let _ = writeln!(out, "{}", json!({"file": label, "verdict": "error", "error": msg}));
    }
    eprintln!("error: {label}: {one_line}");
}

fn print_text(
    out: &mut dyn Write,
    label: &str,
    ops: &[&str],
    m: Option<&ProgramRun>,
    k: Option<&ProgramRun>,
    divs: &[Divergence],
    verdicts: &[Verdict],
    boot: &Observation,
) {
    let _ = writeln!(out, "== {label}");
    let n = m.or(k).map_or(0, |r| r.outcomes.len());
    let width = ops.iter().map(|l| l.len()).max().unwrap_or(0).min(60);
    for i in 0..n {
        let op = ops.get(i).copied().unwrap_or("?");
        let mut line = format!("  #{i:<3} {op:<width$}");
        if let Some(m) = m {
            line.push_str(&format!("  model: {:<26}", show_outcome(&m.outcomes[i])));
        }
        if let Some(k) = k {
            line.push_str(&format!("  kernel: {}", show_outcome(&k.outcomes[i])));
        }
        if divs.iter().any(|d| matches!(d, Divergence::Outcome { op_index, .. } if *op_index == i)) {
            line.push_str("   <-- DIVERGES");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let side = k.or(m);
    if let Some(s) = side {
        for (i, o) in &s.observations {
            let _ = writeln!(out, "  observe #{i}: {}", used_summary(o, boot));
        }
        let _ = writeln!(out, "  end: {}", used_summary(&s.end, boot));
        let _ = writeln!(out, "  end maps: {}", maps_summary(&s.end));
    }
    for v in verdicts {
        let tag = if v.suppressed.is_some() { "suppressed" } else { "VERDICT" };
        let _ = writeln!(out, "  {tag}: {v}");
    }
    let verdict = if oracle::any_unsuppressed(verdicts) {
        "FINDING"
    } else if m.is_some() && k.is_some() && divs.is_empty() {
        "agree"
    } else if m.is_some() && k.is_some() {
        "agree (suppressed verdicts only)"
    } else if k.is_none() && m.is_none() {
        "error"
    } else {
        "ran"
    };
    let _ = writeln!(out, "  => {verdict}");
}

/// `vmap:nc 67 pages, pkmap:wb 1 page`: pages per (kind, memory type) in a mapping table.
pub fn maps_summary(o: &Observation) -> String {
    let mut per: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for r in &o.maps {
        *per.entry(format!("{}:{}", r.kind.name(), r.mem.name())).or_default() += r.pages;
    }
    if per.is_empty() {
        return "none".into();
    }
    let mut s: Vec<String> = per.iter().map(|(k, n)| format!("{k} {n} page{}", if *n == 1 { "" } else { "s" })).collect();
    if o.maps_truncated {
        s.push("(truncated)".into());
    }
    s.join(", ")
}

fn used_summary(o: &Observation, boot: &Observation) -> String {
    o.areas
        .iter()
        .map(|a| {
            let b = boot.areas.iter().find(|b| b.name == a.name).map_or(0, |b| b.used_bits());
            let free = o.cma_free.map(|p| format!(", CmaFree {} pages", p.0)).unwrap_or_default();
            format!("{} {} bits used ({} at boot){free}", a.name, a.used_bits(), b)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[allow(clippy::too_many_arguments)]
fn print_json(
    out: &mut dyn Write,
    label: &str,
    target: &Target,
    choice: BackendChoice,
    ops: &[&str],
    m: Option<&ProgramRun>,
    k: Option<&ProgramRun>,
    divs: &[Divergence],
    verdicts: &[Verdict],
) {
    let n = m.or(k).map_or(0, |r| r.outcomes.len());
    let op_objs: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "index": i,
                "op": ops.get(i).copied().unwrap_or("?"),
                "model": m.map(|r| &r.outcomes[i]),
                "kernel": k.map(|r| &r.outcomes[i]),
                "kernel_raw": k.and_then(|r| r.raw[i]),
            })
        })
        .collect();
    let obs = |r: Option<&ProgramRun>| {
        r.map(|r| {
            let mut v: Vec<_> = r.observations.iter().map(|(i, o)| json!({"at": i, "observation": o})).collect();
            v.push(json!({"at": "end", "observation": r.end}));
            v
        })
    };
    let verdict = if oracle::any_unsuppressed(verdicts) {
        "finding"
    } else if m.is_some() && k.is_some() {
        "agree"
    } else {
        "ran"
    };
    let v = json!({
        "file": label,
        "target": target.name,
        "backend": format!("{choice:?}").to_lowercase(),
        "verdict": verdict,
        "ops": op_objs,
        "model_observations": obs(m),
        "kernel_observations": obs(k),
        "divergences": divs,
        "verdicts": verdicts,
    });
    let _ = writeln!(out, "{v}");
}
