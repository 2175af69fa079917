//! `cmafuzz targets`: the named targets.

use crate::targets;

pub fn run() -> anyhow::Result<u8> {
    for t in targets::all()? {
        println!(
            "{:<14} {}{} [{} {} MiB, qemu {} -cpu {}]",
            t.name,
            t.description,
            if t.default { " (default)" } else { "" },
            t.arch,
            t.memory_mib,
            t.machine,
            t.cpu
        );
    }
    Ok(0)
}
