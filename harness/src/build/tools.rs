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

fn on_path(tool: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()).map(|p| p.display().to_string())
}

/// Runs every check.
pub fn checks() -> Vec<Check> {
    let tools: &[(&str, &str, &'static str)] = &[
        ("qemu-system-arm", "qemu-system-arm", "booting arm32 targets"),
        ("qemu-system-aarch64", "qemu-system-arm", "booting arm64 targets"),
        ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf", "arm32 kernels and guest agent"),
        ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", "arm64 kernels and guest agent"),
        ("gcc", "build-essential", "kernel host tools"),
        ("make", "build-essential", "kernel builds"),
        ("bc", "bc", "kernel builds"),
        ("flex", "flex", "kernel builds"),
        ("bison", "bison", "kernel builds"),
        ("patch", "patch", "--kernel-patch"),
        ("tar", "tar", "unpacking kernel sources"),
        ("xz", "xz-utils", "unpacking kernel sources"),
        ("ccache", "ccache", "fast rebuilds of kernel variants"),
        ("cpio", "cpio", "tests that read the initramfs back"),
        ("git", "git", "--kernel-src trees under git"),
    ];
    let mut v: Vec<Check> = tools
        .iter()
        .map(|(t, p, why)| Check {
            what: (*t).to_string(),
            found: on_path(t),
            package: (*p).to_string(),
            needed_for: why,
        })
        .collect();
    for (file, pkg, why) in [
        ("/usr/src/linux-source-6.1.tar.xz", "linux-source-6.1", "the 6.1 targets (default kernel source)"),
        ("/usr/src/linux-source-6.12.tar.xz", "linux-source-6.12", "the 6.12 targets"),
        ("/usr/include/openssl/ssl.h", "libssl-dev", "kernel host tools"),
    ] {
        v.push(Check {
            what: file.to_string(),
            found: Path::new(file).is_file().then(|| file.to_string()),
            package: pkg.to_string(),
            needed_for: why,
        });
    }
    v
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
