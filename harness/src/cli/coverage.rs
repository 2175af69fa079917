//! `cmafuzz coverage OUT`: the instrumented kernel functions a campaign reached and those it
//! never did.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CoverageArgs {
    /// The campaign's output directory (`cmafuzz fuzz --out OUT`).
    pub out: PathBuf,
    /// Symbolize against this vmlinux instead of the campaign's kernel build.
    #[arg(long, value_name = "FILE")]
    pub vmlinux: Option<PathBuf>,
    /// Print the functions as JSON (file, function, sites, hit) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CoverageArgs) -> anyhow::Result<u8> {
    if !a.out.is_dir() {
        anyhow::bail!("{}: no such campaign directory (pass the --out of a `cmafuzz fuzz` run)", a.out.display());
    }
    let pcs = crate::coverage::campaign_pcs(&a.out)?;
    let vmlinux = match a.vmlinux {
        Some(v) => v,
        None => crate::coverage::campaign_vmlinux(&a.out)?,
    };
    let funcs = crate::coverage::functions(&vmlinux, &pcs).with_context(|| "symbolizing the campaign's PCs")?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&funcs)?);
    } else {
        out!("{}", crate::coverage::render(&funcs, pcs.len(), &vmlinux));
    }
    Ok(0)
}
