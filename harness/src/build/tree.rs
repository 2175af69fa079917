//! Builds the kernel checked out in a persistent tree (a bisect's private git worktree), in
//! place: no copy of the source, `O=` a persistent output directory beside it, so `make`
//! rebuilds only what the last checkout changed, and ccache (paths relative to the common
//! parent of tree and output) shares objects with every other build of the same layout.
//! Outputs are published into the kernel cache like [`kernel::build`]'s, keyed by the tree's
//! identity (a git tree id), so a commit already built is a cache hit.

use crate::build::cache;
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
    progress(&format!("[{}] built in {secs:.0} s: {}", req.target.name, dir.display()));
    Ok(arts(false, secs))
}
