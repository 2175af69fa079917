//! `cmafuzz replay`: program files on the model, the kernel or both (and a second kernel).

use super::{BackendArg, KernelArgs};
use crate::backend::kernel::boot::KernelChoice;
use crate::{replay, targets};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReplayArgs {
    /// Program files (*.prog text or *.json) or directories of them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "both")]
    pub backend: BackendArg,
    /// One JSON object per program on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the kernel's console (last VM, up to 1 MiB) to this file at the end.
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,
    /// Suppressions file replacing the built-in kernel-configs/suppressions.toml.
    #[arg(long, value_name = "FILE", conflicts_with = "no_suppressions")]
    pub suppressions: Option<PathBuf>,
    /// Report every verdict as a finding (no suppressions at all).
    #[arg(long)]
    pub no_suppressions: bool,
    /// Compare bitmaps and mappings after every op, not only at `observe` and the end.
    #[arg(long)]
    pub observe_each: bool,
    /// Run every program N times and print how many runs give its first finding again
    /// (reliable, flaky or not-reproduced).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Run every program on a second kernel too: the first one's build plus this patch
    /// (repeatable), judged against the first kernel (which the model still checks).
    #[arg(long = "vs-kernel-patch", value_name = "FILE")]
    pub vs_kernel_patch: Vec<PathBuf>,
    /// Run every program on this target's kernel too (its own source, plus any
    /// --vs-kernel-patch), judged against the first kernel.
    #[arg(long = "vs-target", value_name = "TARGET")]
    pub vs_target: Option<String>,
}

pub fn run(a: ReplayArgs) -> anyhow::Result<u8> {
    let ReplayArgs {
        files,
        target,
        backend,
        json,
        console_log,
        suppressions,
        no_suppressions,
        observe_each,
        repeat,
        kernel,
        vs_kernel_patch,
        vs_target,
    } = a;
    let t = targets::find(target.as_deref())?;
    if let Some(dir) = &kernel.kernel_src {
        errln!("{}", crate::build::tree_profile::read(dir)?.describe());
    }
    let vs = vs_kernel(&t, &kernel.choice(), vs_target.as_deref(), &vs_kernel_patch)?;
    let sup = match (&suppressions, no_suppressions) {
        (_, true) => crate::oracle::Suppressions::none(),
        (Some(p), false) => crate::oracle::Suppressions::load(p)?,
        (None, false) => crate::oracle::Suppressions::builtin()?,
    };
    let files = replay::collect_files(&files)?;
    let mut programs = Vec::new();
    let mut bad = 0;
    for f in &files {
        match replay::load(f) {
            Ok(p) => programs.push(p),
            Err(e) => {
                errln!("error: {e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        // Fail before paying for a kernel: fix the programs first.
        return Ok(2);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let sum = replay::replay(
        &t,
        backend.into(),
        &kernel.choice(),
        &programs,
        &replay::ReplayOptions { json, console_log, suppressions: sup, observe_each, vs, repeat },
        &mut out,
    )
    .with_context(|| format!("replay on {}", t.name))?;
    Ok(sum.exit_code())
}

/// The second kernel of `--vs-kernel-patch` / `--vs-target`: the first kernel's build plus the
/// patches, or another target's kernel (its own source) plus the patches.
fn vs_kernel(
    first: &targets::Target,
    kc: &KernelChoice,
    vs_target: Option<&str>,
    patches: &[PathBuf],
) -> anyhow::Result<Option<replay::VsKernel>> {
    for p in patches {
        if !p.is_file() {
            anyhow::bail!("--vs-kernel-patch {}: no such file (give the path of a patch)", p.display());
        }
    }
    match vs_target {
        Some(name) => {
            let t = targets::find(Some(name))?;
            let kernel = KernelChoice { src: None, patches: patches.to_vec(), watchdog: kc.watchdog };
            let label =
                if patches.is_empty() { format!("kernel {}", t.name) } else { format!("kernel {} (patched)", t.name) };
            Ok(Some(replay::VsKernel { target: t, kernel, name: label }))
        }
        None if patches.is_empty() => Ok(None),
        None => {
            let mut kernel = kc.clone();
            kernel.patches.extend(patches.iter().cloned());
            Ok(Some(replay::VsKernel { target: first.clone(), kernel, name: "kernel (patched)".into() }))
        }
    }
}
