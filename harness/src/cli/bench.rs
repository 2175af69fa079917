//! `cmafuzz bench`: speed figures.

use super::{progress, KernelArgs};
use crate::{replay, targets};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// Programs to run (files or directories).
    #[arg(default_value = "corpora/random")]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub target: Option<String>,
    /// Times every program is run on each side.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Boots timed for boot-to-ready.
    #[arg(long, default_value_t = 3)]
    pub boots: u32,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

pub fn run(a: BenchArgs) -> anyhow::Result<u8> {
    let BenchArgs { files, target, rounds, boots, kernel } = a;
    let t = targets::find(target.as_deref())?;
    let files = replay::collect_files(&files)?;
    let programs = files.iter().map(|f| replay::load(f)).collect::<Result<Vec<_>, _>>()?;
    let f = crate::bench::run(&t, &kernel.choice(), &programs, rounds, boots, &mut progress)?;
    outln!("{}", f.render());
    Ok(0)
}
