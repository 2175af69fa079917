//! `cmafuzz minimize FINDING|PROG`: the smallest program that still gives the finding's first
//! verdict (observed after every op), saved beside the original with the runs it took, rated
//! by reruns (syzkaller's rule), merged with the findings of the same bug. Exit 0 when saved,
//! 2 on bad input or a reproducer that no longer reproduces (nothing on disk changed then).

use super::KernelArgs;
use crate::diff::{BackendChoice, Executor};
use crate::findings::minimize::{self as min, ExecRunner, Runner};
use crate::findings::{self, programs, Saved};
use crate::targets;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct MinimizeArgs {
    /// A finding directory (OUT/findings/<name>/) or a program file (*.prog, *.json).
    pub path: PathBuf,
    /// The target (default: the finding's own, else the default target).
    #[arg(long)]
    pub target: Option<String>,
    /// Give up shrinking after this long and keep the smallest program found so far.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub budget: String,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

pub fn run(a: MinimizeArgs) -> anyhow::Result<u8> {
    let MinimizeArgs { path, target, budget, mut kernel } = a;
    let budget: Duration = humantime::parse_duration(budget.trim())
        .map_err(|_| anyhow::anyhow!("--budget {budget}: expected a duration like 10m or 90s"))?;
    let finding = if path.is_dir() { Some(findings::load_finding(&path)?) } else { None };
    let program = match &finding {
        Some(f) => f.program.clone(),
        None => programs::load(&path)?.program,
    };
    let target = target.or_else(|| finding.as_ref().map(|f| f.meta.target.clone()));
    let t = targets::find(target.as_deref())?;
    if let Some(f) = &finding {
        if kernel.kernel_patch.is_empty() && kernel.kernel_src.is_none() {
            for p in &f.meta.kernel_patches {
                let p = PathBuf::from(p);
                if !p.is_file() {
                    anyhow::bail!(
                        "{}: the finding's kernel patch {} is not there (pass --kernel-patch FILE)",
                        path.display(),
                        p.display()
                    );
                }
                kernel.kernel_patch.push(p);
            }
        }
    }
    let sup = crate::oracle::Suppressions::builtin()?;
    let deadline = Some(Instant::now() + budget);
    // What the model alone decides needs no VM.
    let mut model = min::model_executor(&t, sup.clone()).map_err(|e| anyhow::anyhow!("model of {}: {e}", t.name))?;
    let on_model = ExecRunner::new(&mut model).first_signature(&program).map_err(|e| anyhow::anyhow!(e))?.is_some();
    let mut kernel_ex;
    let mut runner: Box<dyn Runner + '_> = if on_model {
        errln!("cmafuzz minimize: the model alone gives this verdict: minimizing on the model, no VM");
        Box::new(ExecRunner::new(&mut model))
    } else {
        kernel_ex = Executor::start(&t, BackendChoice::Both, &kernel.choice(), sup, &mut |l| errln!("{l}"))
            .with_context(|| format!("booting {}", t.name))?;
        Box::new(ExecRunner::new(&mut kernel_ex))
    };
    let (m, wrote, merged) = match &finding {
        Some(_) => {
            let (saved, m) = min::triage_finding(&path, runner.as_mut(), deadline)
                .with_context(|| format!("{}: nothing changed", path.display()))?;
            match saved {
                Saved::Kept(d) => (m, d.join("reproducer.min.prog"), None),
                Saved::MergedInto(d) => {
                    (m, d.join(format!("alternate-{}-reproducer.min.prog", dir_file(&path))), Some(d))
                }
            }
        }
        None => {
            let m = min::triage(&program, runner.as_mut(), deadline)
                .with_context(|| format!("{}: nothing changed", path.display()))?;
            let dest = beside(&path);
            crate::disk::write_atomic(
                &dest,
                format!(
                    "# minimized from {} ({} runs): {}\n{}",
                    path.display(),
                    m.runs,
                    m.signature,
                    m.program.to_text()
                )
                .as_bytes(),
            )
            .with_context(|| format!("writing {}", dest.display()))?;
            (m, dest, None)
        }
    };
    drop(runner);
    let rel = m
        .reliability
        .as_ref()
        .map_or(String::new(), |r| format!("; reproduced {}/{} ({})", r.reproduced, r.runs, r.class));
    outln!(
        "{}: {} ops -> {} ops in {} runs, first verdict {}{rel}; wrote {}",
        path.display(),
        program.ops.len(),
        m.program.ops.len(),
        m.runs,
        m.signature,
        wrote.display()
    );
    if let Some(d) = merged {
        outln!("{}: the same bug as {}: merged into it", path.display(), d.display());
    }
    out!("{}", m.program.to_text());
    Ok(0)
}

fn dir_file(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `x.prog` -> `x.min.prog`, beside it.
fn beside(p: &Path) -> PathBuf {
    let stem = p.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "program".into());
    p.with_file_name(format!("{stem}.min.prog"))
}
