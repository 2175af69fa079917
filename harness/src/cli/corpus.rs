//! `cmafuzz corpus minimize OUT`: keep the fewest programs of `OUT/corpus` that reach the same
//! coverage entries; the others go to `OUT/corpus.pruned/`.

use super::KernelArgs;
use crate::targets;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CorpusCmd {
    /// Keep the smallest set of OUT/corpus programs reaching every coverage entry (model-state
    /// and KCOV) the whole corpus reaches; move the rest to OUT/corpus.pruned/.
    Minimize(MinimizeArgs),
}

#[derive(Args)]
pub struct MinimizeArgs {
    /// The campaign directory (its corpus/).
    pub out: PathBuf,
    #[arg(long)]
    pub target: Option<String>,
    /// Which sides run the programs: both (as `fuzz` does by default) or model (for a
    /// campaign run with `fuzz --backend model`).
    #[arg(long, value_enum, default_value = "both")]
    pub backend: super::BackendArg,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

pub fn run(c: CorpusCmd) -> anyhow::Result<u8> {
    let CorpusCmd::Minimize(MinimizeArgs { out, target, backend, kernel }) = c;
    let t = targets::find(target.as_deref())?;
    let sup = crate::oracle::Suppressions::builtin()?;
    let s = crate::campaign::corpus::minimize_corpus(&out, &t, &kernel.choice(), backend.into(), sup)
        .with_context(|| format!("corpus minimize {} on {}", out.display(), t.name))?;
    outln!(
        "{}: {} programs -> {} reaching the same {} coverage entries ({} did not run and stay); the others are in {}",
        out.join("corpus").display(),
        s.before,
        s.after,
        s.entries,
        s.unrun,
        s.pruned_dir.display()
    );
    Ok(0)
}
