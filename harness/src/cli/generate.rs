//! `cmafuzz generate`: the program a seed generates.

use clap::Args;

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long)]
    pub seed: u64,
}

pub fn run(a: GenerateArgs) -> anyhow::Result<u8> {
    let GenerateArgs { seed } = a;
    out!("{}", crate::generate::program(seed).to_text());
    Ok(0)
}
