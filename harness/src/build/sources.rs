//! Where a target's Debian kernel source tarball lives, and fetching the ones the machine's own
//! apt sources do not carry. The 6.x packages (bookworm/trixie) are installed by apt and read
//! from `/usr/src`; `linux-source-7.2` (sid) and `linux-source-7.3` (experimental) are
//! downloaded by `apt-get download` with a private sources list, private lists and a private
//! package cache under `cache::root()/sources/apt-<suite>/`, so the machine's apt
//! configuration and state stay as they are. The tarball is taken out of the `.deb`
//! (`dpkg-deb -x`) into `cache::root()/sources/`, and from there it is unpacked like the others.

use crate::build::cache;
use crate::build::error::BuildError;
use crate::targets::Target;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The one signing keyring a private list trusts (Debian's archive keys, from
/// `debian-archive-keyring`).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The mirror a private list names.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The source tarball of `t`: in `/usr/src` for an installed package, in the cache for a
/// fetched one (which may not be there yet: see [`ensure`]).
pub fn tarball(t: &Target) -> PathBuf {
    match &t.source_suite {
        None => PathBuf::from(format!("/usr/src/{}.tar.xz", t.source_package)),
        Some(_) => cache::root().join("sources").join(format!("{}.tar.xz", t.source_package)),
    }
}

/// The private sources list for one suite: that suite's `main`, signed by Debian's keys.
pub fn sources_list(suite: &str) -> String {
    format!("deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_MIRROR} {suite} main\n")
}

/// Makes sure the tarball of `t` is there, downloading it first if `t`'s package comes from a
/// suite the machine does not use. An installed package that is missing is the usual
/// "install it" error; nothing is downloaded for it.
pub fn ensure(t: &Target, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, BuildError> {
    let tar = tarball(t);
    if tar.is_file() {
        return Ok(tar);
    }
    let Some(suite) = &t.source_suite else {
        return Err(BuildError::MissingSource { path: tar, package: t.source_package.clone() });
    };
    for (tool, package) in [("apt-get", "apt"), ("dpkg-deb", "dpkg")] {
        if which::which(tool).is_err() {
            return Err(BuildError::MissingTool { tool: tool.into(), package: package.into() });
        }
    }
    if !Path::new(DEBIAN_KEYRING).is_file() {
        return Err(BuildError::MissingTool { tool: DEBIAN_KEYRING.into(), package: "debian-archive-keyring".into() });
    }
    let sources = cache::root().join("sources");
    let apt = sources.join(format!("apt-{suite}"));
    for d in [apt.join("lists/partial"), apt.join("cache/archives/partial"), apt.join("download")] {
        fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
    }
    let lock_path = sources.join(format!(".{}.lock", t.source_package));
    let _lock = crate::disk::Lock::exclusive(&lock_path).map_err(io(format!("locking {}", lock_path.display())))?;
    if tar.is_file() {
        return Ok(tar);
    }
    let list = apt.join("sources.list");
    fs::write(&list, sources_list(suite)).map_err(io(format!("writing {}", list.display())))?;
    let private = |c: &mut Command| {
        c.arg("-q")
            .arg("-o")
            .arg(format!("Dir::Etc::sourcelist={}", list.display()))
            .arg("-o")
            .arg("Dir::Etc::sourceparts=-")
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", apt.join("lists").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt.join("cache").display()))
            .arg("-o")
            .arg("APT::Get::List-Cleanup=0");
    };
    progress(&format!(
        "[{}] fetching {} from Debian {suite} with a private apt list ({})",
        t.name,
        t.source_package,
        list.display()
    ));
    let mut update = Command::new("apt-get");
    private(&mut update);
    update.arg("update");
    run(&mut update, &format!("apt-get update (private list for {suite})"))?;
    let dl = apt.join("download");
    clear_dir(&dl)?;
    let mut get = Command::new("apt-get");
    private(&mut get);
    get.arg("download").arg(&t.source_package).current_dir(&dl);
    run(&mut get, &format!("apt-get download {} ({suite})", t.source_package))?;
    let deb = fs::read_dir(&dl)
        .map_err(io(format!("reading {}", dl.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| BuildError::Io {
            what: format!("apt-get download {} left no .deb in {}", t.source_package, dl.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    progress(&format!("[{}] taking {}.tar.xz out of {}", t.name, t.source_package, deb.display()));
    let x = apt.join("x");
    let _ = fs::remove_dir_all(&x);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x), &format!("dpkg-deb -x {}", deb.display()))?;
    let inner = x.join("usr/src").join(format!("{}.tar.xz", t.source_package));
    if !inner.is_file() {
        return Err(BuildError::Io {
            what: format!("{} has no usr/src/{}.tar.xz", deb.display(), t.source_package),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let tmp = sources.join(format!(".tmp-{}-{}", t.source_package, std::process::id()));
    fs::copy(&inner, &tmp).map_err(io(format!("copying {} to {}", inner.display(), tmp.display())))?;
    fs::rename(&tmp, &tar).map_err(io(format!("renaming {} to {}", tmp.display(), tar.display())))?;
    let _ = fs::remove_dir_all(&x);
    clear_dir(&dl)?;
    Ok(tar)
}

/// Where a fetched package stands, for `doctor`: its tarball if cached.
pub fn cached(t: &Target) -> Option<PathBuf> {
    let tar = tarball(t);
    tar.is_file().then_some(tar)
}

fn clear_dir(d: &Path) -> Result<(), BuildError> {
    for e in fs::read_dir(d).map_err(io(format!("reading {}", d.display())))?.filter_map(Result::ok) {
        let _ = fs::remove_file(e.path());
    }
    Ok(())
}

fn run(cmd: &mut Command, step: &str) -> Result<(), BuildError> {
    let out = cmd.output().map_err(io(format!("running {step}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut tail = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Some(cut) = tail.len().checked_sub(2000).and_then(|c| (c..tail.len()).find(|i| tail.is_char_boundary(*i))) {
        tail = tail[cut..].to_string();
    }
    Err(BuildError::StepFailed {
        step: step.into(),
        code: out.status.code().map_or_else(|| "signal".into(), |c| c.to_string()),
        log: PathBuf::from("-"),
        tail,
    })
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> BuildError {
    move |source| BuildError::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_list_names_only_its_suite_and_debians_keyring() {
        let l = sources_list("experimental");
        assert_eq!(l.lines().count(), 1);
        assert!(l.starts_with("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "));
        assert!(l.trim_end().ends_with(" experimental main"));
    }
}
