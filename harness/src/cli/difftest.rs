//! `cmafuzz difftest`: generated programs on the model and the kernel side by side.

use super::KernelArgs;
use crate::{difftest, targets};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DifftestArgs {
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, default_value_t = 2000)]
    pub count: u64,
    /// First seed (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for reproducers of divergences.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

pub fn run(a: DifftestArgs) -> anyhow::Result<u8> {
    let DifftestArgs { target, count, seed, out, kernel } = a;
    let t = targets::find(target.as_deref())?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    });
    outln!("seed: {seed}");
    let opts = difftest::DifftestOptions { count, seed, out_dir: out };
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let sum =
        difftest::difftest(&t, &kernel.choice(), &opts, &mut w).with_context(|| format!("difftest on {}", t.name))?;
    outln!("{}: {}", t.name, sum.render());
    Ok(sum.exit_code())
}
