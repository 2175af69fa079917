//! `cmafuzz doctor`: the host tools cmafuzz needs.

use crate::build::tools as doctor;

pub fn run() -> anyhow::Result<u8> {
    let checks = doctor::checks();
    for c in &checks {
        match &c.found {
            Some(p) => println!("  ok       {:<36} {p}", c.what),
            None => println!("  MISSING  {:<36} package {} (for {})", c.what, c.package, c.needed_for),
        }
    }
    match doctor::install_command(&checks) {
        Some(cmd) => {
            println!("install the missing tools with:\n  {cmd}");
            Ok(2)
        }
        None => {
            println!("everything cmafuzz needs is installed");
            Ok(0)
        }
    }
}
