//! `cmafuzz doctor`: the host tools cmafuzz needs.

use crate::build::tools as doctor;
use crate::build::{sources, tree_profile};
use crate::targets;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DoctorArgs {
    /// Also say which model profile this kernel tree gets, and why (or what it lacks).
    #[arg(long = "kernel-src", value_name = "DIR")]
    pub kernel_src: Option<PathBuf>,
}

pub fn run(a: DoctorArgs) -> anyhow::Result<u8> {
    if let Some(dir) = &a.kernel_src {
        // A tree the model cannot follow is the answer, whatever the tools say.
        outln!("{}", tree_profile::read(dir)?.describe());
    }
    let checks = doctor::checks();
    for c in &checks {
        match &c.found {
            Some(p) => outln!("  ok       {:<36} {p}", c.what),
            None => outln!("  MISSING  {:<36} package {} (for {})", c.what, c.package, c.needed_for),
        }
    }
    // Sources from suites the machine does not use: fetched (privately) on a target's first build.
    let mut seen = Vec::new();
    for t in targets::all()? {
        let Some(suite) = &t.source_suite else { continue };
        if seen.contains(&t.source_package) {
            continue;
        }
        seen.push(t.source_package.clone());
        match sources::cached(&t) {
            Some(p) => outln!("  ok       {:<36} {}", t.source_package, p.display()),
            None => outln!(
                "  later    {:<36} from Debian {suite}, fetched with a private apt list on the first build of a \
                 target that needs it (`cmafuzz kernel build --target {}`)",
                t.source_package,
                t.name
            ),
        }
    }
    match doctor::install_command(&checks) {
        Some(cmd) => {
            outln!("install the missing tools with:\n  {cmd}");
            Ok(2)
        }
        None => {
            outln!("everything cmafuzz needs is installed");
            Ok(0)
        }
    }
}
