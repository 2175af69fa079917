//! `cmafuzz doctor`: every host tool cmafuzz needs, found or missing, with
//! the exact command that installs it.

use std::path::Path;

/// One requirement of the host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub what: String,
    pub found: Option<String>,
    pub package: String,
    pub needed_for: &'static str,
}

/// `scripts/host-packages.tsv`: the one table of host tools and their Debian packages, shared
/// with `scripts/setup.sh`.
pub const HOST_PACKAGES: &str = include_str!("../../../scripts/host-packages.tsv");

/// One row of [`HOST_PACKAGES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTool {
    /// A program looked up on `PATH`, or an absolute path: a file that must exist.
    pub tool: &'static str,
    pub package: &'static str,
    pub needed_for: &'static str,
}

/// The rows of [`HOST_PACKAGES`] (comments and blank lines skipped; a row without three
/// tab-separated fields is left out, and the table's unit test fails on it).
pub fn host_tools() -> Vec<HostTool> {
    HOST_PACKAGES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t').map(str::trim);
            match (f.next(), f.next(), f.next()) {
                (Some(tool), Some(package), Some(needed_for))
                    if !tool.is_empty() && !package.is_empty() && !needed_for.is_empty() =>
                {
                    Some(HostTool { tool, package, needed_for })
                }
                _ => None,
            }
        })
        .collect()
}

/// The Debian package that provides `tool` (its own name when the table does not list it).
pub fn package_of(tool: &str) -> String {
    host_tools().iter().find(|t| t.tool == tool).map_or(tool, |t| t.package).to_string()
}

/// Where `tool` is on `PATH`, if it is.
pub fn on_path(tool: &str) -> Option<std::path::PathBuf> {
    which::which(tool).ok()
}

/// Runs every check.
pub fn checks() -> Vec<Check> {
    host_tools()
        .into_iter()
        .map(|t| {
            let found = if t.tool.starts_with('/') {
                Path::new(t.tool).is_file().then(|| t.tool.to_string())
            } else {
                on_path(t.tool).map(|p| p.display().to_string())
            };
            Check { what: t.tool.to_string(), found, package: t.package.to_string(), needed_for: t.needed_for }
        })
        .collect()
}

/// The apt-get line that installs every missing package, if any.
pub fn install_command(checks: &[Check]) -> Option<String> {
    let mut pkgs: Vec<&str> = checks.iter().filter(|c| c.found.is_none()).map(|c| c.package.as_str()).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    (!pkgs.is_empty()).then(|| format!("apt-get install -y {}", pkgs.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_table_parses_and_setup_sh_installs_exactly_its_packages() {
        let rows = HOST_PACKAGES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
        let tools = host_tools();
        assert_eq!(tools.len(), rows, "every row has tool, package and what for, tab-separated");
        let mut ours: Vec<&str> = tools.iter().map(|t| t.package).collect();
        ours.sort_unstable();
        ours.dedup();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/setup.sh"))
            .env("CMAFUZZ_SETUP_LIST_PACKAGES", "1")
            .output()
            .expect("bash runs scripts/setup.sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut setup: Vec<&str> = text.lines().collect();
        setup.sort_unstable();
        assert_eq!(setup, ours, "scripts/setup.sh installs the table's packages");
        for p in ["qemu-system-arm", "gcc-arm-linux-gnueabihf", "linux-source-6.1", "device-tree-compiler"] {
            assert!(ours.contains(&p), "{p}");
        }
    }

    #[test]
    fn package_of_reads_the_table() {
        assert_eq!(package_of("xz"), "xz-utils");
        assert_eq!(package_of("qemu-system-aarch64"), "qemu-system-arm");
        assert_eq!(package_of("aarch64-linux-gnu-gcc"), "gcc-aarch64-linux-gnu");
        assert_eq!(package_of("unlisted-tool"), "unlisted-tool");
    }

    #[test]
    fn install_command_lists_each_missing_package_once() {
        let c = |what: &str, pkg: &str, found: bool| Check {
            what: what.into(),
            found: found.then(|| what.into()),
            package: pkg.into(),
            needed_for: "x",
        };
        let v = vec![
            c("qemu-system-arm", "qemu-system-arm", false),
            c("qemu-system-aarch64", "qemu-system-arm", false),
            c("make", "build-essential", true),
        ];
        assert_eq!(install_command(&v).as_deref(), Some("apt-get install -y qemu-system-arm"));
        assert_eq!(install_command(&v[2..]), None);
    }
}
