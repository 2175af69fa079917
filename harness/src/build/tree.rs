//! Builds the kernel checked out in a persistent tree (a bisect's private git worktree), in
//! place: no copy of the source, `O=` a persistent output directory beside it, so `make`
//! rebuilds only what the last checkout changed, and ccache (paths relative to the common
//! parent of tree and output) shares objects with every other build of the same layout.
//! Outputs are published into the kernel cache like [`kernel::build`]'s, keyed by the tree's
//! identity (a git tree id), so a commit already built is a cache hit.

use crate::build::cache::{self, KeyHasher};
use crate::build::kernel::{self, BuildError, BuildRequest, KernelArtifacts};
use crate::disk;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A source tree that stays put across builds, and its output directory.
#[derive(Debug, Clone)]
pub struct InPlaceTree {
    /// The common parent of `src` and `out`: ccache's base directory.
    pub base: PathBuf,
    /// The checked-out source (`base/src`, the layout [`kernel::build`] uses, so ccache entries
    /// are shared with its builds).
    pub src: PathBuf,
    /// `O=` (`base/out`), kept between builds.
    pub out: PathBuf,
}

impl InPlaceTree {
    pub fn at(base: &Path) -> Self {
        InPlaceTree { base: base.to_path_buf(), src: base.join("src"), out: base.join("out") }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// Builds what is checked out in `tree.src` (named by `identity`, e.g. `gittree:<id>`), with
/// `req.patches` applied and the driver installed into the tree: the caller restores the tree
/// afterwards (`git reset --hard`), since both write into it. `req.src` is ignored.
pub fn build_in_place(
    req: &BuildRequest,
    tree: &InPlaceTree,
    identity: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, BuildError> {
    build_in_place_after(req, tree, identity, &mut |_, _| Ok(()), progress)
}

/// What runs in a tree before its build, under its lock: `prepare(log, progress)`.
type Prepare<'a> = dyn FnMut(&Path, &mut dyn FnMut(&str)) -> Result<(), BuildError> + 'a;

/// [`build_in_place`], with `prepare(log, progress)` run first, under the tree's lock.
fn build_in_place_after(
    req: &BuildRequest,
    tree: &InPlaceTree,
    identity: &str,
    prepare: &mut Prepare<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, BuildError> {
    let start = Instant::now();
    let key = kernel::cache_key_with(req, identity)?;
    let root = cache::root();
    let (dir, arts) = kernel::slot(req, &key);
    if dir.join("done").is_file() {
        return Ok(arts(true, start.elapsed().as_secs_f64()));
    }
    fs::create_dir_all(root.join("kernels")).map_err(io("creating the kernel cache"))?;
    // One build at a time in this tree (its output directory is shared by every commit).
    let _tree_lock = kernel::lock(&tree.base.join(".build.lock"))?;
    let _lock = kernel::lock(&root.join("kernels").join(format!(".{key}.lock")))?;
    if dir.join("done").is_file() {
        return Ok(arts(true, start.elapsed().as_secs_f64()));
    }
    fs::create_dir_all(&tree.out).map_err(io(format!("creating {}", tree.out.display())))?;
    let logs = root.join("logs");
    fs::create_dir_all(&logs).map_err(io(format!("creating {}", logs.display())))?;
    let log_path = logs.join(format!("{}-{}-{key}.log", req.target.arch, req.target.version));
    let _ = fs::remove_file(&log_path);
    let tmp = root.join("kernels").join(format!(".tmp-{key}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| {
        prepare(&log_path, &mut *progress)?;
        for p in &req.patches {
            kernel::apply_patch(p, &tree.src, &log_path)?;
        }
        kernel::install_driver(&tree.src)?;
        kernel::configure_and_make(
            req,
            &root,
            &tree.base,
            &tree.src,
            &tree.out,
            &log_path,
            kernel::image_name(req),
            &tmp,
            progress,
        )
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let meta = serde_json::json!({
        "target": req.target.name,
        "key": key,
        "src": identity,
        "patches": req.patches.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "seconds": start.elapsed().as_secs_f64(),
    });
    fs::write(tmp.join("meta.json"), meta.to_string()).map_err(io("writing meta.json"))?;
    fs::write(tmp.join("done"), b"").map_err(io("writing done marker"))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(format!("removing incomplete {}", dir.display())))?;
    }
    disk::publish_dir(&tmp, &dir).map_err(io(format!("publishing {}", dir.display())))?;
    let secs = start.elapsed().as_secs_f64();
    let n = kernel::count_compiled(&dir.join("build.log"));
    progress(&format!("[{}] built in {secs:.0} s ({n} files compiled): {}", req.target.name, dir.display()));
    Ok(arts(false, secs))
}

/// The tree every build of Debian's source for one arch, fragment set and compiler shares,
/// patched or not and whatever the driver: `src` hard-linked once from the unpacked source,
/// `out` kept, so a variant (a series, an injected bug, a new driver) recompiles the files it
/// changes and relinks, instead of running every compile through ccache again.
pub(crate) fn variant_tree(req: &BuildRequest) -> Result<InPlaceTree, BuildError> {
    let mut k = KeyHasher::new("cmafuzz-variant-tree-v1");
    let tar = crate::build::sources::tarball(&req.target);
    let sha = cache::file_sha256_cached(&tar).map_err(io(format!("hashing {}", tar.display())))?;
    k.part(req.target.arch.as_bytes()).part(sha.as_bytes());
    for (name, text) in req
        .target
        .fragment_texts()
        .map_err(|e| BuildError::Io { what: e.to_string(), source: std::io::Error::other("bad target table") })?
    {
        k.part(name.as_bytes()).part(text.as_bytes());
    }
    let gcc = format!("{}gcc", req.target.cross_prefix());
    k.part(kernel::run_capture(std::process::Command::new(&gcc).arg("--version"))?.as_bytes());
    let name = format!("{}-{}-{}", req.target.arch, req.target.version, k.finish());
    Ok(InPlaceTree::at(&cache::root().join("trees").join(name)))
}

/// Builds Debian's source with `req.patches` in its [`variant_tree`]. First the tree is made
/// the unpacked source again ([`resync`]): what the last build there patched is put back as a
/// fresh copy, with a new mtime, so make recompiles it; the rest stays, objects and all.
pub(crate) fn build_variant(req: &BuildRequest, progress: &mut dyn FnMut(&str)) -> Result<KernelArtifacts, BuildError> {
    let tree = variant_tree(req)?;
    let pristine = kernel::pristine_tree(&req.target, progress)?;
    let tar = crate::build::sources::tarball(&req.target);
    let sha = cache::file_sha256_cached(&tar).map_err(io(format!("hashing {}", tar.display())))?;
    fs::create_dir_all(&tree.base).map_err(io(format!("creating {}", tree.base.display())))?;
    let mut prepare = |log: &Path, progress: &mut dyn FnMut(&str)| -> Result<(), BuildError> {
        let linked = tree.base.join("src.done");
        if !linked.is_file() {
            progress(&format!("[{}] linking the source into {}", req.target.name, tree.src.display()));
            if tree.src.exists() {
                fs::remove_dir_all(&tree.src).map_err(io(format!("removing {}", tree.src.display())))?;
            }
            let _ = fs::remove_dir_all(&tree.out);
            let mut c = std::process::Command::new("cp");
            c.arg("-al").arg(&pristine).arg(&tree.src);
            kernel::run_logged(&mut c, "linking the kernel source", log, "", &mut |_| {})?;
            fs::write(&linked, b"").map_err(io(format!("writing {}", linked.display())))?;
            return Ok(());
        }
        let n = resync(&pristine, &tree.src)?;
        if n > 0 {
            progress(&format!("[{}] {n} files of the last build's patches put back", req.target.name));
        }
        Ok(())
    };
    build_in_place_after(req, &tree, &format!("tarball:{sha}"), &mut prepare, progress)
}

/// Makes `src` (a hard-linked copy of `pristine` that patches and the driver have replaced
/// files of) hold what `pristine` holds: a file whose content differs, or which is missing,
/// becomes a fresh copy (new inode, mtime now, the shared copy untouched); a file `pristine`
/// has not is removed, but for the driver's own files, and a Makefile that holds the source's
/// text plus the driver's lines is left as it is: `install_driver` keeps those up to date. A file still hard-linked to `pristine`'s is unchanged by definition and not read.
/// Returns how many files were put back or removed.
pub(crate) fn resync(pristine: &Path, src: &Path) -> Result<usize, BuildError> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, rel: &Path, files: &mut Vec<PathBuf>) -> Result<(), BuildError> {
        for e in fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))? {
            let e = e.map_err(io(format!("reading {}", dir.display())))?;
            let ft = e.file_type().map_err(io(format!("reading {}", e.path().display())))?;
            let r = rel.join(e.file_name());
            if ft.is_dir() {
                walk(&e.path(), &r, files)?;
            } else {
                files.push(r);
            }
        }
        Ok(())
    }
    let mut n = 0;
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    walk(pristine, Path::new(""), &mut theirs)?;
    walk(src, Path::new(""), &mut ours)?;
    for rel in &theirs {
        let (from, to) = (pristine.join(rel), src.join(rel));
        let a = fs::symlink_metadata(&from).map_err(io(format!("reading {}", from.display())))?;
        let same = match fs::symlink_metadata(&to) {
            Ok(b) if (a.dev(), a.ino()) == (b.dev(), b.ino()) => true,
            Ok(b) if a.file_type().is_symlink() && b.file_type().is_symlink() => {
                fs::read_link(&from).ok() == fs::read_link(&to).ok()
            }
            Ok(b) if a.is_file() && b.is_file() && a.len() <= b.len() => {
                let theirs = fs::read(&from).map_err(io(format!("reading {}", from.display())))?;
                let ours = fs::read(&to).map_err(io(format!("reading {}", to.display())))?;
                theirs == ours || kernel::is_installed_form(rel, &theirs, &ours)
            }
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(BuildError::Io { what: format!("reading {}", to.display()), source: e }),
        };
        if same {
            continue;
        }
        n += 1;
        if let Err(e) = fs::remove_file(&to) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(BuildError::Io { what: format!("removing {}", to.display()), source: e });
            }
        }
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        if a.file_type().is_symlink() {
            let target = fs::read_link(&from).map_err(io(format!("reading {}", from.display())))?;
            std::os::unix::fs::symlink(target, &to).map_err(io(format!("restoring {}", to.display())))?;
        } else {
            fs::copy(&from, &to).map_err(io(format!("restoring {}", to.display())))?;
        }
    }
    let theirs: std::collections::HashSet<&PathBuf> = theirs.iter().collect();
    for rel in &ours {
        if theirs.contains(rel) || kernel::DRIVER_FILES.iter().any(|d| Path::new(d) == rel) {
            continue;
        }
        let to = src.join(rel);
        fs::remove_file(&to).map_err(io(format!("removing {}", to.display())))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ino(p: &Path) -> u64 {
        fs::symlink_metadata(p).expect("stat").ino()
    }

    #[test]
    fn resync_puts_back_what_patches_changed_and_leaves_the_rest_linked() {
        let d = tempfile::tempdir().expect("temp dir");
        let (pristine, src) = (d.path().join("pristine"), d.path().join("src"));
        fs::create_dir_all(pristine.join("mm")).expect("mkdir");
        for (rel, text) in [("mm/cma.c", "cma\n"), ("mm/page_alloc.c", "pa\n"), ("Makefile", "mk\n"), ("same.c", "s\n")]
        {
            fs::write(pristine.join(rel), text).expect("write");
        }
        std::os::unix::fs::symlink("mm/cma.c", pristine.join("link")).expect("symlink");
        let st = std::process::Command::new("cp").arg("-al").arg(&pristine).arg(&src).status().expect("cp");
        assert!(st.success());
        // What a series and the driver leave: a changed file, a deleted one, a new one, a
        // replaced symlink, a file replaced by an equal copy, the driver.
        fs::remove_file(src.join("mm/cma.c")).expect("rm");
        fs::write(src.join("mm/cma.c"), "cma patched\n").expect("write");
        fs::remove_file(src.join("mm/page_alloc.c")).expect("rm");
        fs::write(src.join("mm/new.c"), "new\n").expect("write");
        fs::remove_file(src.join("link")).expect("rm");
        std::os::unix::fs::symlink("Makefile", src.join("link")).expect("symlink");
        fs::remove_file(src.join("same.c")).expect("rm");
        fs::write(src.join("same.c"), "s\n").expect("write");
        fs::write(src.join("mm/cmafuzz.c"), "driver\n").expect("write");
        fs::create_dir_all(pristine.join("kernel/dma")).expect("mkdir");
        fs::write(pristine.join("kernel/dma/Makefile"), "obj-y += x.o\n").expect("write");
        fs::create_dir_all(src.join("kernel/dma")).expect("mkdir");
        fs::write(src.join("kernel/dma/Makefile"), "obj-y += x.o\n").expect("write");
        kernel::install_driver(&src).expect("install");
        let mf_ino = ino(&src.join("kernel/dma/Makefile"));
        let (same_ino, mk_ino) = (ino(&src.join("same.c")), ino(&pristine.join("Makefile")));

        assert_eq!(resync(&pristine, &src).expect("resync"), 4, "cma.c, page_alloc.c, link, new.c");
        assert_eq!(fs::read_to_string(src.join("mm/cma.c")).expect("read"), "cma\n");
        assert_ne!(ino(&src.join("mm/cma.c")), ino(&pristine.join("mm/cma.c")), "a copy, not a link");
        assert_eq!(fs::read_to_string(src.join("mm/page_alloc.c")).expect("read"), "pa\n");
        assert!(!src.join("mm/new.c").exists());
        assert_eq!(fs::read_link(src.join("link")).expect("link"), Path::new("mm/cma.c"));
        assert_eq!(ino(&src.join("same.c")), same_ino, "an equal file keeps its mtime");
        assert_eq!(ino(&src.join("Makefile")), mk_ino, "a linked file is left linked");
        assert_eq!(ino(&src.join("kernel/dma/Makefile")), mf_ino, "the driver's Makefile lines are left in");
        assert!(src.join("mm/cmafuzz.c").is_file(), "the driver stays");
        assert_eq!(fs::read_to_string(pristine.join("mm/cma.c")).expect("read"), "cma\n", "the shared copy");
        assert_eq!(resync(&pristine, &src).expect("resync"), 0, "a second resync finds nothing");
    }
}
