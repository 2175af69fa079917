//! `cmafuzz model-check`: generated programs on the model alone, invariants after every op.

use crate::{difftest, targets};
use clap::Args;

#[derive(Args)]
pub struct ModelCheckArgs {
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, default_value_t = 10000)]
    pub count: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: ModelCheckArgs) -> anyhow::Result<u8> {
    let ModelCheckArgs { target, count, seed } = a;
    let t = targets::find(target.as_deref())?;
    let sum = difftest::model_check(&t, count, seed)?;
    outln!(
        "{}: {} programs, {} ops in {:.2} s ({:.0} programs/s, {:.0} ops/s)",
        t.name,
        sum.programs,
        sum.ops,
        sum.seconds,
        sum.programs as f64 / sum.seconds.max(1e-9),
        sum.ops as f64 / sum.seconds.max(1e-9)
    );
    match sum.violation {
        None => Ok(0),
        Some((seed, text, why)) => {
            outln!("VIOLATION at seed {seed}: {why}\n{text}");
            Ok(1)
        }
    }
}
