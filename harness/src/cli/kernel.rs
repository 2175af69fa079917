//! `cmafuzz kernel build`: build (or find in the cache) a target's kernel and guest.

use super::{progress, KernelArgs};
use crate::backend::kernel::boot as session;
use crate::build::agent as guest_build;
use crate::targets;

/// Kernel builds.
#[derive(clap::Subcommand)]
pub enum KernelCmd {
    /// Build (or find in the cache) the kernel of a target, with the test driver built in.
    Build {
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

pub fn run(cmd: KernelCmd) -> anyhow::Result<u8> {
    let KernelCmd::Build { target, kernel } = cmd;
    if kernel.choice().watchdog.is_some() {
        anyhow::bail!("--watchdog applies to commands that run programs (replay, difftest, fuzz, bench, boot), not to kernel build: drop it");
    }
    let t = targets::find(target.as_deref())?;
    let a = session::build_kernel(&t, &kernel.choice(), &mut progress)?;
    let g = guest_build::build(&t, &[])?;
    outln!(
        "{} kernel {} ({}, {:.1} s): {}",
        t.name,
        a.key,
        if a.cache_hit { "cached" } else { "built" },
        a.seconds,
        a.image.display()
    );
    outln!("{} guest initramfs: {}", t.name, g.initramfs.display());
    Ok(0)
}
