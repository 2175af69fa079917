//! Builds the guest userspace: the static C agent, cross-compiled with
//! Debian's compiler, packed as `/init` into a newc initramfs. Cached under
//! `cache::root()/guest/<key>` by a hash of the agent, the wire header and
//! the compiler.

use crate::build::cache::{self, KeyHasher};
use crate::build::kernel::{package_of, WIRE_H};
use crate::targets::Target;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

pub const AGENT_C: &str = include_str!("../../../qemu/agent/agent.c");

#[derive(Debug, Error)]
pub enum GuestBuildError {
    #[error("`{tool}` not found: install it with `apt-get install {package}` (or run `cmafuzz doctor`)")]
    MissingTool { tool: String, package: String },
    #[error("compiling the guest agent failed:\n{0}")]
    Compile(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuestBuildError {
    let what = what.into();
    move |source| GuestBuildError::Io { what, source }
}

/// A built initramfs with the agent as `/init`.
#[derive(Debug, Clone)]
pub struct GuestArtifacts {
    pub initramfs: PathBuf,
    pub agent: PathBuf,
}

/// Builds (or finds) the initramfs for `target`. `extra` files are added to
/// the image (used by local mode), with their parent directories; they take
/// part in the cache key.
pub fn build(target: &Target, extra: &[(String, Vec<u8>)]) -> Result<GuestArtifacts, GuestBuildError> {
    let gcc = format!("{}gcc", target.cross_prefix());
    let version = Command::new(&gcc).arg("--version").output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GuestBuildError::MissingTool { tool: gcc.clone(), package: package_of(&gcc) },
        _ => GuestBuildError::Io { what: format!("running {gcc}"), source: e },
    })?;
    let mut k = KeyHasher::new("cmafuzz-guest-v1");
    k.part(target.arch.as_bytes()).part(AGENT_C.as_bytes()).part(WIRE_H.as_bytes()).part(&version.stdout);
    for (name, data) in extra {
        k.part(name.as_bytes()).part(data);
    }
    let key = k.finish();
    let dir = cache::root().join("guest").join(format!("{}-{key}", target.arch));
    let arts = GuestArtifacts { initramfs: dir.join("initramfs.cpio"), agent: dir.join("init") };
    if arts.initramfs.is_file() {
        return Ok(arts);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-guest-")
        .tempdir_in(ensure_dir(&cache::root().join("guest"))?)
        .map_err(io("creating a temp dir in the cache"))?;
    let src = tmp.path().join("agent.c");
    fs::write(&src, AGENT_C).map_err(io("writing agent.c"))?;
    fs::write(tmp.path().join("cmafuzz_wire.h"), WIRE_H).map_err(io("writing cmafuzz_wire.h"))?;
    let bin = tmp.path().join("init");
    let out = Command::new(&gcc)
        .args(["-static", "-O2", "-Wall", "-Wextra", "-I"])
        .arg(tmp.path())
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(io(format!("running {gcc}")))?;
    if !out.status.success() {
        return Err(GuestBuildError::Compile(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let init = fs::read(&bin).map_err(io("reading the built agent"))?;
    let mut cpio = Cpio::default();
    cpio.dir("dev");
    cpio.node("dev/console", 0o020600, 5, 1);
    cpio.dir("proc");
    cpio.dir("sys");
    cpio.dir("tmp");
    cpio.file("init", 0o100755, &init);
    let mut dirs = std::collections::BTreeSet::new();
    for (name, data) in extra {
        // Parent directories first (local mode reads a directory of payloads).
        for (i, _) in name.match_indices('/') {
            if dirs.insert(name[..i].to_string()) {
                cpio.dir(&name[..i]);
            }
        }
        cpio.file(name, 0o100644, data);
    }
    fs::write(tmp.path().join("initramfs.cpio"), cpio.finish()).map_err(io("writing initramfs.cpio"))?;
    // Publish atomically; if another builder won the race, its identical
    // output stays and ours is dropped with the temp dir.
    if arts.initramfs.is_file() {
        return Ok(arts);
    }
    let tmp_path = tmp.keep();
    crate::disk::publish_dir(&tmp_path, &dir)
        .map_err(|source| GuestBuildError::Io { what: format!("publishing {}", dir.display()), source })?;
    Ok(arts)
}

fn ensure_dir(p: &Path) -> Result<&Path, GuestBuildError> {
    fs::create_dir_all(p).map_err(io(format!("creating {}", p.display())))?;
    Ok(p)
}

/// A minimal writer of the kernel's "newc" cpio format
/// (Documentation/driver-api/early-userspace/buffer-format.rst).
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            namesize,
            0
        );
        self.out.extend_from_slice(hdr.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    pub fn node(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, mode, (major, minor), &[]);
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, mode, (0, 0), data);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_newc_and_four_byte_aligned() {
        let mut c = Cpio::default();
        c.file("init", 0o100755, b"abc");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        // header 110 bytes + "init\0" padded to 116, data 3 padded to 4
        assert_eq!(&out[110..114], b"init");
        assert_eq!(&out[116..119], b"abc");
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn cpio_is_readable_by_the_system_cpio() {
        let mut c = Cpio::default();
        c.dir("dev");
        c.file("init", 0o100755, b"#!/bin/true\n");
        let bytes = c.finish();
        let mut child = Command::new("cpio")
            .args(["-t"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cpio (installed by scripts/test.sh) runs");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(&bytes).expect("write");
        let out = child.wait_with_output().expect("wait");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "dev\ninit\n");
    }
}
