//! `cmafuzz targets`: the named targets.

use crate::targets;

pub fn run() -> anyhow::Result<u8> {
    let all = targets::all()?;
    let w = all.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in all {
        outln!(
            "{:<w$} Linux {:<5} {}{} [{} {} MiB, qemu {} -cpu {}; source {}{}; {}]",
            t.name,
            t.version,
            t.description,
            if t.default { " (default)" } else { "" },
            t.arch,
            t.memory_mib,
            t.machine,
            t.cpu,
            t.source_package,
            t.source_suite.as_deref().map(|s| format!(" from Debian {s}")).unwrap_or_default(),
            t.debug_options()
                .iter()
                .map(|(o, on)| format!("{o} {}", if *on { "on" } else { "off" }))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(0)
}
