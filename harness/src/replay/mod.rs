//! `cmafuzz replay`: runs program files on the model, the kernel or both,
//! prints what each side returned per op and every disagreement.

use crate::backend::kernel::boot::{self as session, SessionError};
use crate::backend::{Backend, BackendError, ProgramRun};
use crate::diff::{Against, BackendChoice, ExecError, Executor};
use crate::findings::programs::ProgramFileError;
pub use crate::findings::programs::{collect_files, load, LoadedProgram};
use crate::oracle::compare::{show_outcome, Divergence};
use crate::oracle::{self, Suppressions, Verdict};
use crate::targets::Target;
use reference_impl::observation::Observation;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error(transparent)]
    Programs(#[from] ProgramFileError),
    #[error("--vs-kernel-patch and --vs-target compare two kernels: drop --backend model")]
    VsWithoutKernel,
    #[error("{path}: cannot write the console log: {msg}")]
    ConsoleLog { path: PathBuf, msg: String },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{0}")]
    Model(String),
}

/// Totals over a replay, for the summary and the exit code.
#[derive(Debug, Default)]
pub struct Summary {
    pub programs: usize,
    pub agree: usize,
    /// Programs run on one backend only (nothing to compare).
    pub ran: usize,
    pub diverge: usize,
    /// Programs on which the second kernel (`--vs-*`) gave an unsuppressed verdict against the
    /// first.
    pub vs_differ: usize,
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
        crate::oracle::exit_code(self.errors > 0, self.diverge > 0 || self.vs_differ > 0)
    }
}

/// How `replay` reports and what it compares.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// One JSON object per program instead of text.
    pub json: bool,
    /// Where to write the kernel's console at the end.
    pub console_log: Option<PathBuf>,
    pub suppressions: Suppressions,
    /// Observe after every op, not only at `observe` ops and the end.
    pub observe_each: bool,
    /// A second kernel that runs every program beside the first and is judged against it.
    pub vs: Option<VsKernel>,
    /// Runs of every program (`--repeat N`): how many of them give the first run's finding
    /// again is printed as its reliability.
    pub repeat: u32,
}

/// The second kernel of `replay --vs-kernel-patch` / `--vs-target`.
#[derive(Debug, Clone)]
pub struct VsKernel {
    pub target: Target,
    pub kernel: session::KernelChoice,
    /// Its name in reports: `kernel (patched)`, `kernel arm64-6.12`.
    pub name: String,
}

impl ReplayOptions {
    /// Text output, the built-in suppressions, observations where the program asks.
    pub fn new(json: bool) -> Result<Self, crate::oracle::SuppressionError> {
        Ok(ReplayOptions {
            json,
            console_log: None,
            suppressions: Suppressions::builtin()?,
            observe_each: false,
            vs: None,
            repeat: 1,
        })
    }
}

/// Replays `programs` on `target`. Per-program failures (a dead guest, an
/// unknown area) are reported and counted, and the replay goes on.
pub fn replay(
    target: &Target,
    choice: BackendChoice,
    kernel: &session::KernelChoice,
    programs: &[LoadedProgram],
    opts: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<Summary, ReplayError> {
    let json_out = opts.json;
    let console_log = opts.console_log.as_deref();
    if opts.vs.is_some() && choice == BackendChoice::Model {
        return Err(ReplayError::VsWithoutKernel);
    }
    let mut ex = Executor::start(target, choice, kernel, opts.suppressions.clone(), &mut |l| eprintln!("{l}"))?;
    ex.set_observe_each(opts.observe_each);
    let mut vs = match &opts.vs {
        Some(v) => {
            let mut k = session::boot_kernel(&v.target, &v.kernel, &mut |l| eprintln!("{l}"))?;
            k.name.clone_from(&v.name);
            k.set_observe_each(opts.observe_each);
            if !json_out {
                let hello = k.hello().map(|h| h.release.clone()).unwrap_or_default();
                let _ = writeln!(out, "{}: {} ({hello}) runs every program beside the kernel", v.name, v.target.name);
            }
            Some(k)
        }
        None => None,
    };
    let boot = ex.boot.clone();
    let mut sum =
        Summary { kernel_boot: ex.subject.as_ref().map(|k| k.boot_observation().clone()), ..Summary::default() };
    if let Some(k) = ex.subject.as_ref() {
        if !json_out {
            let hello = k.hello().map(|h| h.release.clone()).unwrap_or_default();
            let bt = k.boot_times.first().copied().unwrap_or_default();
            let _ = writeln!(out, "kernel: {} ({hello}) ready in {:.2} s", target.name, bt.as_secs_f64());
            for a in &boot.areas {
                let _ = writeln!(
                    out,
                    "kernel: area {} {} order_per_bit {}, {} bits used at boot",
                    a.name,
                    a.extent_text(),
                    a.order_per_bit,
                    a.used_bits()
                );
            }
        }
    }
    if let Some(v) = ex.placement_verdict() {
        if json_out {
            let _ = writeln!(out, "{}", json!({"file": "<boot>", "verdict": "finding", "verdicts": [v]}));
        } else {
            let _ = writeln!(out, "VERDICT: {v}");
        }
        if v.suppressed.is_none() {
            sum.diverge += 1;
        }
    }
    for lp in programs {
        sum.programs += 1;
        let label = lp.path.display().to_string();
        let e = match ex.execute(&lp.program) {
            Ok(e) => e,
            Err(ExecError::Resolve(msg)) => {
                sum.errors += 1;
                report_error(out, json_out, &label, &msg);
                continue;
            }
            Err(e @ ExecError::Model(_)) => return Err(ReplayError::Model(e.to_string())),
        };
        if e.subject.is_some() {
            sum.kernel_time += e.subject_time;
            sum.kernel_ops += e.resolved.ops.len() as u64;
        }
        if let Some(err) = &e.subject_error {
            // The run did not complete: say so on stderr, keep the console for the user.
            let saved = save_console(err);
            eprintln!("error: {label}: {}{saved}", err.to_string().lines().next().unwrap_or_default());
        }
        if e.harness_error() {
            sum.errors += 1;
        }
        if e.finding() {
            sum.diverge += 1;
        } else if e.subject_error.is_some() {
            // Counted as an error above (or explained by a suppressed report).
        } else if choice != BackendChoice::Both {
            sum.ran += 1;
        } else {
            sum.agree += 1;
        }
        sum.suppressed += e.verdicts.iter().filter(|v| v.suppressed.is_some()).count();
        let text = lp.program.to_text();
        let op_lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        let second = vs.as_mut().map(|k| (ex.against(&e, k), k.name.clone()));
        if let Some((a, _)) = &second {
            if oracle::any_unsuppressed(&a.verdicts) {
                sum.vs_differ += 1;
            }
            if a.verdicts.iter().any(|v| v.kind == crate::oracle::VerdictKind::HarnessError) && !e.harness_error() {
                sum.errors += 1;
            }
            sum.suppressed += a.verdicts.iter().filter(|v| v.suppressed.is_some()).count();
        }
        let (m, k) = (e.reference.as_ref(), e.subject.as_ref());
        if json_out {
            print_json(out, &label, target, choice, &op_lines, m, k, &e.divergences, &e.verdicts, second.as_ref());
        } else {
            print_text(out, &label, &op_lines, m, k, &e.divergences, &e.verdicts, &boot);
            if let Some((a, name)) = &second {
                print_against(out, name, a);
            }
        }
        if opts.repeat > 1 {
            let first = crate::findings::first_finding(&e.verdicts).map(|v| v.signature.clone());
            let mut k = u32::from(first.is_some());
            for _ in 1..opts.repeat {
                let again = ex.execute(&lp.program).map_err(|e| ReplayError::Model(e.to_string()))?;
                if first.is_some()
                    && crate::findings::first_finding(&again.verdicts).map(|v| &v.signature) == first.as_ref()
                {
                    k += 1;
                }
            }
            let r = crate::findings::Reliability::new(k, opts.repeat);
            let sig = first.as_deref().unwrap_or("no finding");
            if json_out {
                let _ = writeln!(out, "{}", json!({"file": label, "signature": first, "reliability": r}));
            } else {
                let _ = writeln!(out, "  reliability: {sig} reproduced {}/{} ({})", r.reproduced, r.runs, r.class);
            }
        }
    }
    let kb = ex.subject.as_ref();
    if let (Some(path), Some(k)) = (console_log, kb) {
        if let Err(e) = std::fs::write(path, k.console()) {
            return Err(ReplayError::ConsoleLog { path: path.to_path_buf(), msg: e.to_string() });
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
        if let Some(v) = &opts.vs {
            let _ = write!(out, "; {} vs kernel: {} differ", v.name, sum.vs_differ);
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
        if let Some(k) = kb {
            if k.reboots > 0 {
                let _ = write!(out, "; {} VM reboots", k.reboots);
            }
        }
        let _ = writeln!(out);
    }
    Ok(sum)
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

/// The second kernel's verdicts on one program (`--vs-*`).
fn print_against(out: &mut dyn Write, name: &str, a: &Against) {
    if let Some(err) = &a.error {
        let _ = writeln!(out, "  {name}: did not complete: {}", err.to_string().lines().next().unwrap_or_default());
    }
    for v in &a.verdicts {
        let tag = if v.suppressed.is_some() { "suppressed" } else { "VERDICT" };
        let _ = writeln!(out, "  {name} vs kernel: {tag}: {v}");
    }
    let verdict = if oracle::any_unsuppressed(&a.verdicts) {
        "FINDING"
    } else if a.divergences.is_empty() && a.error.is_none() {
        "agree"
    } else {
        "agree (suppressed verdicts only)"
    };
    let _ = writeln!(out, "  => {name} vs kernel: {verdict}");
}

#[allow(clippy::too_many_arguments)]
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
    let mut s: Vec<String> =
        per.iter().map(|(k, n)| format!("{k} {n} page{}", if *n == 1 { "" } else { "s" })).collect();
    if o.maps_truncated {
        s.push("(truncated)".into());
    }
    s.join(", ")
}

fn used_summary(o: &Observation, boot: &Observation) -> String {
    let mut s = o
        .areas
        .iter()
        .map(|a| {
            let b = boot.areas.iter().find(|b| b.name == a.name).map_or(0, |b| b.used_bits());
            format!(
                "{} {} bits used ({} at boot), used {} pages, maxchunk {} pages",
                a.name,
                a.used_bits(),
                b,
                a.used_pages(),
                a.maxchunk_pages()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(p) = o.cma_free {
        s.push_str(&format!("; CmaFree {} pages", p.0));
    }
    s
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
    second: Option<&(Against, String)>,
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
        "vs": second.map(|(a, name)| json!({
            "name": name,
            "outcomes": a.run.as_ref().map(|r| &r.outcomes),
            "observations": obs(a.run.as_ref()),
            "divergences": a.divergences,
            "verdicts": a.verdicts,
            "error": a.error.as_ref().map(ToString::to_string),
        })),
    });
    let _ = writeln!(out, "{v}");
}
