//! Builds the kernel of a target: Debian's source package (or the user's
//! tree), patches applied in order to a private copy, `allnoconfig` plus the
//! target's fragments, the in-kernel test driver added as `mm/cmafuzz.c`.
//! Outputs are cached under `cache::root()/kernels/<key>`, where the key
//! hashes every input; a second build of the same inputs is a cache hit.

use crate::build::cache::{self, KeyHasher};
use crate::disk;
use crate::targets::Target;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const DRIVER_C: &str = include_str!("../../../qemu/driver/cmafuzz.c");
pub const WIRE_H: &str = include_str!("../../../qemu/include/cmafuzz_wire.h");

pub use super::error::BuildError;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub target: Target,
    pub src: Option<PathBuf>,
    pub patches: Vec<PathBuf>,
}

/// A built kernel in the cache.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelArtifacts {
    pub key: String,
    pub dir: PathBuf,
    pub image: PathBuf,
    pub vmlinux: PathBuf,
    pub config: PathBuf,
    pub cache_hit: bool,
    pub seconds: f64,
}

/// Identity of the kernel source, for the cache key.
fn source_identity(req: &BuildRequest) -> Result<String, BuildError> {
    match &req.src {
        None => {
            let tar = crate::build::sources::tarball(&req.target);
            if !tar.is_file() {
                return Err(BuildError::MissingSource { path: tar, package: req.target.source_package.clone() });
            }
            let sha = cache::file_sha256_cached(&tar).map_err(io(format!("hashing {}", tar.display())))?;
            Ok(format!("tarball:{sha}"))
        }
        Some(dir) => {
            // A tree the model cannot follow is refused before minutes of building.
            crate::build::tree_profile::read(dir)?;
            if dir.join(".git").exists() {
                let head = run_capture(Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]))?;
                let diff = run_capture(Command::new("git").arg("-C").arg(dir).args(["diff", "HEAD"]))?;
                let status = run_capture(Command::new("git").arg("-C").arg(dir).args([
                    "status",
                    "--porcelain",
                    "--untracked-files=all",
                ]))?;
                let mut k = KeyHasher::new("git");
                k.part(head.as_bytes()).part(diff.as_bytes()).part(status.as_bytes());
                Ok(format!("git:{}", k.finish()))
            } else {
                let mut k = KeyHasher::new("tree");
                hash_tree(dir, dir, &mut k)?;
                Ok(format!("tree:{}", k.finish()))
            }
        }
    }
}

/// Hashes paths, sizes and mtimes of a tree without a VCS (cheap, not content).
fn hash_tree(root: &Path, dir: &Path, k: &mut KeyHasher) -> Result<(), BuildError> {
    let mut entries: Vec<_> =
        fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let Ok(md) = e.metadata() else { continue };
        let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
        if md.is_dir() {
            hash_tree(root, &p, k)?;
        } else {
            let mtime = md.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            k.part(rel.as_bytes())
                .part(&md.len().to_le_bytes())
                .part(&mtime.unwrap_or_default().as_nanos().to_le_bytes());
        }
    }
    Ok(())
}

pub(crate) fn run_capture(cmd: &mut Command) -> Result<String, BuildError> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BuildError::MissingTool { tool: prog.clone(), package: package_of(&prog) },
        _ => BuildError::Io { what: format!("running {prog}"), source: e },
    })?;
    if !out.status.success() {
        return Err(BuildError::StepFailed {
            step: format!("{prog} {:?}", cmd.get_args().collect::<Vec<_>>()),
            code: out.status.code().map_or("signal".into(), |c| c.to_string()),
            log: PathBuf::new(),
            tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub use crate::build::tools::package_of;

/// The cache key of a request: every input that changes the kernel.
pub fn cache_key(req: &BuildRequest) -> Result<String, BuildError> {
    cache_key_with(req, &source_identity(req)?)
}

/// The cache key of a request whose source is named by `identity` (`tarball:SHA`, `git:...`,
/// `gittree:TREE` for a commit's tree in a bisect worktree).
pub(crate) fn cache_key_with(req: &BuildRequest, identity: &str) -> Result<String, BuildError> {
    let mut k = KeyHasher::new("cmafuzz-kernel-v1");
    // Kernel inputs only, not the target's name: targets that differ only in
    // how qemu runs the kernel (memory size) share one build.
    k.part(req.target.arch.as_bytes());
    k.part(identity.as_bytes());
    for p in &req.patches {
        let text = fs::read(p).map_err(|source| BuildError::PatchUnreadable { path: p.clone(), source })?;
        k.part(&text);
    }
    for (name, text) in req
        .target
        .fragment_texts()
        .map_err(|e| BuildError::Io { what: e.to_string(), source: std::io::Error::other("bad target table") })?
    {
        k.part(name.as_bytes()).part(text.as_bytes());
    }
    k.part(DRIVER_C.as_bytes()).part(WIRE_H.as_bytes());
    for (rel, lines) in MAKEFILE_LINES {
        k.part(rel.as_bytes()).part(lines.as_bytes());
    }
    let gcc = format!("{}gcc", req.target.cross_prefix());
    k.part(run_capture(Command::new(&gcc).arg("--version"))?.as_bytes());
    Ok(k.finish())
}

/// The kernel image make builds for the target's arch.
pub(crate) fn image_name(req: &BuildRequest) -> &'static str {
    if req.target.arch == "arm64" {
        "Image"
    } else {
        "zImage"
    }
}

/// The cache directory of a kernel with `key`, and what it holds once built
/// (`arts(cache_hit, seconds)`).
pub(crate) fn slot(req: &BuildRequest, key: &str) -> (PathBuf, impl Fn(bool, f64) -> KernelArtifacts) {
    let dir = cache::root().join("kernels").join(format!("{}-{}-{key}", req.target.arch, req.target.version));
    let image_name = image_name(req);
    let (key, d) = (key.to_string(), dir.clone());
    let arts = move |hit: bool, secs: f64| KernelArtifacts {
        key: key.clone(),
        dir: d.clone(),
        image: d.join(image_name),
        vmlinux: d.join("vmlinux"),
        config: d.join("config"),
        cache_hit: hit,
        seconds: secs,
    };
    (dir, arts)
}

/// Builds (or finds in the cache) the kernel for `req`. `progress` receives
/// one line at a time for the user.
pub fn build(req: &BuildRequest, progress: &mut dyn FnMut(&str)) -> Result<KernelArtifacts, BuildError> {
    let start = Instant::now();
    if req.src.is_none() {
        // Only the source a requested target needs is downloaded (7.x, from sid/experimental).
        crate::build::sources::ensure(&req.target, progress)?;
    }
    let key = cache_key(req)?;
    let root = cache::root();
    let (dir, arts) = slot(req, &key);
    if dir.join("done").is_file() {
        return Ok(arts(true, start.elapsed().as_secs_f64()));
    }
    let Some(src) = req.src.as_deref() else {
        // Debian's source: in the tree its arch and fragments share (incremental).
        for p in &req.patches {
            if !p.is_file() {
                return Err(BuildError::PatchUnreadable {
                    path: p.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
        }
        return build_variant(req, progress);
    };
    // One builder per key: a second process (or test thread) waits, then hits the cache.
    fs::create_dir_all(root.join("kernels")).map_err(io("creating the kernel cache"))?;
    let _lock = lock(&root.join("kernels").join(format!(".{key}.lock")))?;
    if dir.join("done").is_file() {
        return Ok(arts(true, start.elapsed().as_secs_f64()));
    }
    for p in &req.patches {
        if !p.is_file() {
            return Err(BuildError::PatchUnreadable {
                path: p.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
    }
    let work = root.join("build").join(&key);
    let tree = work.join("src");
    let out = work.join("out");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(io(format!("removing stale {}", work.display())))?;
    }
    fs::create_dir_all(&out).map_err(io(format!("creating {}", out.display())))?;
    let logs = root.join("logs");
    fs::create_dir_all(&logs).map_err(io(format!("creating {}", logs.display())))?;
    let log_path = logs.join(format!("{}-{}-{key}.log", req.target.arch, req.target.version));
    let _ = fs::remove_file(&log_path);
    let tmp = root.join("kernels").join(format!(".tmp-{key}-{}", std::process::id()));
    let result = build_in(req, src, &root, &work, &tree, &out, &log_path, image_name(req), &tmp, progress);
    // The tree is large (~1.5 GiB) and ccache makes rebuilding it cheap; the log stays.
    let _ = fs::remove_dir_all(&work);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let src = req.src.as_ref().map(|p| p.display().to_string());
    let secs = publish(req, &key, serde_json::json!(src), &tmp, &dir, start)?;
    progress(&format!("[{}] built in {secs:.0} s: {}", req.target.name, dir.display()));
    Ok(arts(false, secs))
}

/// Writes `meta.json` and the done marker into `tmp` and publishes it as the cache slot `dir`;
/// returns the seconds since `start`.
fn publish(
    req: &BuildRequest,
    key: &str,
    src: serde_json::Value,
    tmp: &Path,
    dir: &Path,
    start: Instant,
) -> Result<f64, BuildError> {
    let meta = serde_json::json!({
        "target": req.target.name,
        "key": key,
        "src": src,
        "patches": req.patches.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "seconds": start.elapsed().as_secs_f64(),
    });
    fs::write(tmp.join("meta.json"), meta.to_string()).map_err(io("writing meta.json"))?;
    fs::write(tmp.join("done"), b"").map_err(io("writing done marker"))?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io(format!("removing incomplete {}", dir.display())))?;
    }
    disk::publish_dir(tmp, dir).map_err(io(format!("publishing {}", dir.display())))?;
    Ok(start.elapsed().as_secs_f64())
}

/// The build proper, in `work`; artifacts are copied into `tmp`.
#[allow(clippy::too_many_arguments)]
fn build_in(
    req: &BuildRequest,
    src: &Path,
    root: &Path,
    work: &Path,
    tree: &Path,
    out: &Path,
    log_path: &Path,
    image_name: &str,
    tmp: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    progress(&format!("[{}] preparing source in {}", req.target.name, tree.display()));
    prepare_source(src, tree, log_path)?;
    for p in &req.patches {
        apply_patch(p, tree, log_path)?;
    }
    install_driver(tree)?;
    configure_and_make(req, root, work, tree, out, log_path, image_name, tmp, progress)
}

/// `allnoconfig` + the fragments (checked) and the image, in `tree` with `O=out`; ccache paths
/// are relative to `basedir` (the common parent of `tree` and `out`, so trees at other paths
/// with the same layout share ccache entries). Artifacts are copied into `tmp`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn configure_and_make(
    req: &BuildRequest,
    root: &Path,
    basedir: &Path,
    tree: &Path,
    out: &Path,
    log_path: &Path,
    image_name: &str,
    tmp: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    let work = basedir;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.current_dir(tree)
            .arg(format!("O={}", out.display()))
            .arg(format!("ARCH={}", req.target.kernel_arch()))
            .arg(format!("CROSS_COMPILE={}", req.target.cross_prefix()))
            .env("KBUILD_BUILD_USER", "cmafuzz")
            .env("KBUILD_BUILD_HOST", "cmafuzz")
            .env("KBUILD_BUILD_TIMESTAMP", "2024-01-01")
            .env("KBUILD_BUILD_VERSION", "1")
            .env("CCACHE_DIR", root.join("ccache"))
            .env("CCACHE_BASEDIR", work)
            .env("CCACHE_NOHASHDIR", "1")
            .args(args);
        c
    };

    let frag_path = work.join("fragment.config");
    let mut frag_text = String::new();
    let fragments = req
        .target
        .fragment_texts()
        .map_err(|e| BuildError::Io { what: e.to_string(), source: std::io::Error::other("bad target table") })?;
    for (_, t) in &fragments {
        frag_text.push_str(t);
        frag_text.push('\n');
    }
    fs::write(&frag_path, &frag_text).map_err(io("writing the config fragment"))?;
    progress(&format!("[{}] configuring (allnoconfig + {})", req.target.name, req.target.fragments.join(" + ")));
    let mut cfg = make(&["allnoconfig"]);
    cfg.env("KCONFIG_ALLCONFIG", &frag_path);
    run_logged(&mut cfg, "make allnoconfig", log_path, &req.target.name, progress)?;
    let config_text = fs::read_to_string(out.join(".config")).map_err(io("reading .config"))?;
    verify_config(&fragments, &config_text)?;

    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let ccache_cc = format!("CC=ccache {}gcc", req.target.cross_prefix());
    let jflag = format!("-j{jobs}");
    let has_ccache = crate::build::tools::on_path("ccache").is_some();
    let mut args = vec![jflag.as_str(), image_name];
    if has_ccache {
        args.push(&ccache_cc);
    }
    progress(&format!(
        "[{}] building {image_name} with {jobs} jobs{}",
        req.target.name,
        if has_ccache { " and ccache" } else { "" }
    ));
    run_logged(&mut make(&args), &format!("make {image_name}"), log_path, &req.target.name, progress)?;

    fs::create_dir_all(tmp).map_err(io(format!("creating {}", tmp.display())))?;
    for (from, to) in [
        (out.join(req.target.image_path()), tmp.join(image_name)),
        (out.join("vmlinux"), tmp.join("vmlinux")),
        (out.join(".config"), tmp.join("config")),
        (out.join("System.map"), tmp.join("System.map")),
        (log_path.to_path_buf(), tmp.join("build.log")),
    ] {
        fs::copy(&from, &to).map_err(io(format!("copying {} to the cache", from.display())))?;
    }
    Ok(())
}

/// The cache's lock file for one key.
pub(crate) fn lock(path: &Path) -> Result<disk::Lock, BuildError> {
    disk::Lock::exclusive(path).map_err(io(format!("locking {}", path.display())))
}

/// Gives `tree` a private copy of the user's kernel tree `dir` (Debian's source is built in its
/// variant tree instead, [`build_variant`]).
fn prepare_source(dir: &Path, tree: &Path, log: &Path) -> Result<(), BuildError> {
    fs::create_dir_all(tree).map_err(io(format!("creating {}", tree.display())))?;
    // Hard links where the cache shares the tree's file system (seconds, not the
    // minute a copy of ~1.5 GiB takes): like the Debian source's, the copy is only
    // ever replaced file by file (patch, install_driver) or unlinked (mrproper).
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(
            "link() { for f in \"$1\"/* \"$1\"/.[!.]*; do [ -e \"$f\" ] || continue; \
             [ \"${f##*/}\" = .git ] && continue; cp -al \"$f\" \"$2\"/ || return 1; done; }; \
             { link \"$1\" \"$2\" 2>/dev/null || { rm -rf \"$2\" && mkdir -p \"$2\" && \
             tar -C \"$1\" --exclude=.git -cf - . | tar -C \"$2\" -xf -; }; } \
             && make -C \"$2\" -s mrproper",
        )
        .arg("sh")
        .arg(dir)
        .arg(tree);
    run_logged(&mut c, "copying the kernel source", log, "", &mut |_| {})
}

/// The target's unpacked Debian source (unpacked once, shared read-only by every build; the
/// tarball fetched first where it must be): what `validate` checks a series against before
/// any build. Never write into it.
pub fn pristine_tree(target: &Target, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, BuildError> {
    crate::build::sources::ensure(target, progress)?;
    let logs = cache::root().join("logs");
    fs::create_dir_all(&logs).map_err(io(format!("creating {}", logs.display())))?;
    let log = logs.join(format!("unpack-{}.log", target.source_package));
    let req = BuildRequest { target: target.clone(), src: None, patches: vec![] };
    pristine_source(&req, &log, progress)
}

/// The unpacked Debian source, shared read-only by every build.
fn pristine_source(req: &BuildRequest, log: &Path, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, BuildError> {
    let tar = crate::build::sources::tarball(&req.target);
    let sha = cache::file_sha256_cached(&tar).map_err(io(format!("hashing {}", tar.display())))?;
    let short = &sha[..16.min(sha.len())];
    let base = cache::root().join("src");
    let dir = base.join(format!("{}-{short}", req.target.source_package));
    let tree = dir.join("tree");
    if dir.join("done").is_file() {
        return Ok(tree);
    }
    fs::create_dir_all(&base).map_err(io(format!("creating {}", base.display())))?;
    let _lock = lock(&base.join(format!(".{short}.lock")))?;
    if dir.join("done").is_file() {
        return Ok(tree);
    }
    progress(&format!("[{}] unpacking {} once into {}", req.target.name, tar.display(), dir.display()));
    let tmp = base.join(format!(".tmp-{short}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.join("tree")).map_err(io(format!("creating {}", tmp.display())))?;
    let mut c = Command::new("tar");
    c.arg("-xf").arg(&tar).arg("--strip-components=1").arg("-C").arg(tmp.join("tree"));
    run_logged(&mut c, "unpacking the kernel source", log, "", &mut |_| {})?;
    fs::write(tmp.join("done"), b"").map_err(io("writing done marker"))?;
    let _ = fs::remove_dir_all(&dir);
    disk::publish_dir(&tmp, &dir).map_err(io(format!("publishing {}", dir.display())))?;
    Ok(tree)
}

pub(crate) fn apply_patch(patch: &Path, tree: &Path, log: &Path) -> Result<(), BuildError> {
    let abs =
        fs::canonicalize(patch).map_err(|source| BuildError::PatchUnreadable { path: patch.to_path_buf(), source })?;
    let out = Command::new("patch")
        .current_dir(tree)
        .args(["-p1", "--batch", "--forward", "--dry-run", "-i"])
        .arg(&abs)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BuildError::MissingTool { tool: "patch".into(), package: "patch".into() },
            _ => BuildError::Io { what: "running patch".into(), source: e },
        })?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        let detail = text
            .lines()
            .find(|l| l.contains("FAILED") || l.contains("can't find file") || l.contains("Only garbage"))
            .unwrap_or_else(|| text.lines().last().unwrap_or("patch reported an error"))
            .trim()
            .to_string();
        return Err(BuildError::PatchDoesNotApply {
            path: patch.to_path_buf(),
            tree: "the kernel source".into(),
            detail,
        });
    }
    let mut cmd = Command::new("patch");
    cmd.current_dir(tree).args(["-p1", "--batch", "--forward", "-i"]).arg(&abs);
    run_logged(&mut cmd, &format!("applying {}", patch.display()), log, "", &mut |_| {})
}

/// Lines appended to kbuild Makefiles: the driver itself, and KCOV instrumentation of exactly
/// the code under test (with `CONFIG_KCOV_INSTRUMENT_ALL=n` nothing else is instrumented, so
/// coverage is about CMA and coherent DMA, and the rest of the kernel runs at full speed). A
/// per-object `KCOV_INSTRUMENT_x.o := y` wins over the directory's and the config's default
/// (`scripts/Makefile.lib`); without `CONFIG_KCOV` the lines do nothing. Part of the cache key.
pub const MAKEFILE_LINES: &[(&str, &str)] = &[
    (
        "mm/Makefile",
        "obj-y += cmafuzz.o\nKCOV_INSTRUMENT_cmafuzz.o := n\nKCOV_INSTRUMENT_cma.o := y\n\
         KCOV_INSTRUMENT_page_alloc.o := y\nKCOV_INSTRUMENT_page_isolation.o := y\n\
         KCOV_INSTRUMENT_highmem.o := y\nKCOV_INSTRUMENT_vmalloc.o := y\n",
    ),
    ("kernel/dma/Makefile", "KCOV_INSTRUMENT := y\n"),
    ("lib/Makefile", "KCOV_INSTRUMENT_genalloc.o := y\nKCOV_INSTRUMENT_bitmap.o := y\n"),
    ("arch/arm/mm/Makefile", "KCOV_INSTRUMENT_dma-mapping.o := y\n"),
    ("arch/arm64/mm/Makefile", "KCOV_INSTRUMENT_dma-mapping.o := y\n"),
];

/// The files [`install_driver`] adds to a tree (the driver and its wire header).
pub(crate) const DRIVER_FILES: [&str; 2] = ["mm/cmafuzz.c", "mm/cmafuzz_wire.h"];

/// The comment line above [`MAKEFILE_LINES`] in each Makefile.
const MAKEFILE_MARK: &str = "# cmafuzz: test driver and KCOV of the code under test";

/// What [`install_driver`] appends to a Makefile of [`MAKEFILE_LINES`].
fn makefile_block(lines: &str) -> String {
    format!("\n{MAKEFILE_MARK}\n{lines}")
}

/// Adds the test driver to the tree as a built-in part of `mm/`, where it can
/// include the private `mm/cma.h`, and the KCOV lines of [`MAKEFILE_LINES`].
pub(crate) fn install_driver(tree: &Path) -> Result<(), BuildError> {
    for (rel, text) in DRIVER_FILES.iter().zip([DRIVER_C, WIRE_H]) {
        // Left alone when already there (a tree that stays put, build::tree): a new mtime
        // would make every incremental build recompile the driver.
        let p = tree.join(rel);
        if fs::read(&p).ok().as_deref() != Some(text.as_bytes()) {
            let _ = fs::remove_file(&p);
            fs::write(&p, text).map_err(io(format!("installing {rel}")))?;
        }
    }
    for (rel, lines) in MAKEFILE_LINES {
        let mf = tree.join(rel);
        if !mf.is_file() {
            // The other architecture's directory (or a tree without it): nothing to add.
            continue;
        }
        // Replace, never write through: the tree is hard-linked to a shared copy. Once only: a
        // tree that stays put (build::tree, the variant tree) already has the lines.
        let mut text = fs::read_to_string(&mf).map_err(io(format!("reading {rel}")))?;
        let block = makefile_block(lines);
        if text.ends_with(&block) {
            continue;
        }
        text.push_str(&block);
        fs::remove_file(&mf).map_err(io(format!("replacing {rel}")))?;
        fs::write(&mf, text).map_err(io(format!("writing {rel}")))?;
    }
    Ok(())
}

/// Refuses a .config where an option a fragment asked for was dropped (the
/// way kunit.py does): a silently missing CONFIG_CMA would make every run
/// meaningless.
pub fn verify_config(fragments: &[(&str, &str)], config: &str) -> Result<(), BuildError> {
    let mut have = std::collections::HashMap::new();
    for line in config.lines() {
        if let Some((k, v)) = line.split_once('=') {
            have.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    for (fragment, text) in fragments {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            let got = have.get(k).cloned();
            let ok = match (v, &got) {
                ("n", None) => true,
                (_, Some(g)) => g == v,
                _ => false,
            };
            if !ok {
                return Err(BuildError::ConfigDropped {
                    option: k.to_string(),
                    wanted: v.to_string(),
                    got: got.map_or("it unset".into(), |g| format!("{k}={g}")),
                    fragment: fragment.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Runs a build step with its output appended to `log`, printing progress
/// every 15 s; on failure the error carries the log's tail.
pub(crate) fn run_logged(
    cmd: &mut Command,
    step: &str,
    log: &Path,
    target: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    let file =
        fs::OpenOptions::new().create(true).append(true).open(log).map_err(io(format!("opening {}", log.display())))?;
    let file2 = file.try_clone().map_err(io("duplicating the log handle"))?;
    let prog = cmd.get_program().to_string_lossy().into_owned();
    // A build must not outlive the harness: make passes SIGTERM on to its jobs.
    // SAFETY: prctl is async-signal-safe and only sets a flag on the child.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child =
        cmd.stdout(Stdio::from(file)).stderr(Stdio::from(file2)).stdin(Stdio::null()).spawn().map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound => {
                    BuildError::MissingTool { tool: prog.clone(), package: package_of(&prog) }
                }
                _ => BuildError::Io { what: format!("starting {step}"), source: e },
            }
        })?;
    let start = Instant::now();
    let mut last = Instant::now();
    let status = loop {
        match child.try_wait().map_err(io(format!("waiting for {step}")))? {
            Some(s) => break s,
            None => std::thread::sleep(Duration::from_millis(200)),
        }
        if !target.is_empty() && last.elapsed() >= Duration::from_secs(15) {
            last = Instant::now();
            progress(&format!(
                "[{target}] {step}: {} files compiled, {:.0} s",
                count_compiled(log),
                start.elapsed().as_secs_f64()
            ));
        }
    };
    if status.success() {
        return Ok(());
    }
    Err(BuildError::StepFailed {
        step: step.to_string(),
        code: status.code().map_or("signal".into(), |c| c.to_string()),
        log: log.to_path_buf(),
        tail: log_tail(log, 25),
    })
}

pub(crate) fn count_compiled(log: &Path) -> usize {
    fs::File::open(log)
        .map(|f| BufReader::new(f).lines().map_while(Result::ok).filter(|l| l.starts_with("  CC")).count())
        .unwrap_or(0)
}

/// The last `n` lines of a log file ([`disk::tail`]).
pub fn log_tail(log: &Path, n: usize) -> String {
    disk::tail(log, n)
}

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

/// What runs in a tree before its build, under its lock: `prepare(log, progress)`.
pub(crate) type Prepare<'a> = dyn FnMut(&Path, &mut dyn FnMut(&str)) -> Result<(), BuildError> + 'a;

/// `tree::build_in_place`, with `prepare(log, progress)` run first, under the tree's lock.
pub(crate) fn build_in_place_after(
    req: &BuildRequest,
    tree: &InPlaceTree,
    identity: &str,
    prepare: &mut Prepare<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, BuildError> {
    let start = Instant::now();
    let key = cache_key_with(req, identity)?;
    let root = cache::root();
    let (dir, arts) = slot(req, &key);
    if dir.join("done").is_file() {
        return Ok(arts(true, start.elapsed().as_secs_f64()));
    }
    fs::create_dir_all(root.join("kernels")).map_err(io("creating the kernel cache"))?;
    // One build at a time in this tree (its output directory is shared by every commit).
    let _tree_lock = lock(&tree.base.join(".build.lock"))?;
    let _lock = lock(&root.join("kernels").join(format!(".{key}.lock")))?;
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
            apply_patch(p, &tree.src, &log_path)?;
        }
        install_driver(&tree.src)?;
        configure_and_make(req, &root, &tree.base, &tree.src, &tree.out, &log_path, image_name(req), &tmp, progress)
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let secs = publish(req, &key, serde_json::json!(identity), &tmp, &dir, start)?;
    let n = count_compiled(&dir.join("build.log"));
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
    k.part(run_capture(std::process::Command::new(&gcc).arg("--version"))?.as_bytes());
    let name = format!("{}-{}-{}", req.target.arch, req.target.version, k.finish());
    Ok(InPlaceTree::at(&cache::root().join("trees").join(name)))
}

/// Builds Debian's source with `req.patches` in its [`variant_tree`]. First the tree is made
/// the unpacked source again ([`resync`]): what the last build there patched is put back as a
/// fresh copy, with a new mtime, so make recompiles it; the rest stays, objects and all.
pub(crate) fn build_variant(req: &BuildRequest, progress: &mut dyn FnMut(&str)) -> Result<KernelArtifacts, BuildError> {
    let tree = variant_tree(req)?;
    let pristine = pristine_tree(&req.target, progress)?;
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
            run_logged(&mut c, "linking the kernel source", log, "", &mut |_| {})?;
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
/// has not is removed, but for the driver's own files, which `install_driver` keeps up to date
/// (a Makefile with the driver's lines is put back too: a patch must see the source's text). A file still hard-linked to `pristine`'s is unchanged by definition and not read.
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
                theirs == ours
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
        if theirs.contains(rel) || DRIVER_FILES.iter().any(|d| Path::new(d) == rel) {
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

    #[test]
    fn config_check_accepts_kept_options_and_absent_n() {
        let frag = [("f", "CONFIG_CMA=y\nCONFIG_ARM_LPAE=n\n# comment\nCONFIG_CMA_SIZE_MBYTES=32\n")];
        let cfg = "CONFIG_CMA=y\n# CONFIG_ARM_LPAE is not set\nCONFIG_CMA_SIZE_MBYTES=32\n";
        verify_config(&frag, cfg).expect("all kept");
    }

    #[test]
    fn config_check_names_the_dropped_option_and_fragment() {
        let frag = [("arm32.config", "CONFIG_HIGHMEM=y\n")];
        let e = verify_config(&frag, "CONFIG_CMA=y\n").expect_err("dropped");
        let msg = e.to_string();
        assert!(msg.contains("CONFIG_HIGHMEM=y") && msg.contains("arm32.config"), "{msg}");
    }

    #[test]
    fn config_check_rejects_a_changed_value() {
        let frag = [("f", "CONFIG_CMA_SIZE_MBYTES=32\n")];
        assert!(verify_config(&frag, "CONFIG_CMA_SIZE_MBYTES=16\n").is_err());
    }

    #[test]
    fn targets_differing_only_in_qemu_memory_share_a_kernel_and_arches_do_not() {
        let req = |name: &str| BuildRequest {
            target: crate::targets::find(Some(name)).expect("target"),
            src: None,
            patches: vec![],
        };
        let a = cache_key(&req("arm32-6.1")).expect("key");
        assert_eq!(a, cache_key(&req("arm32-lowmem-6.1")).expect("key"));
        assert_ne!(a, cache_key(&req("arm64-6.1")).expect("key"));
        assert_ne!(a, cache_key(&req("arm32-6.12")).expect("key"));
    }

    #[test]
    fn a_patch_changes_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.patch");
        fs::write(&p, "--- a/x\n+++ b/x\n").expect("write");
        let t = crate::targets::find(Some("arm32-6.1")).expect("target");
        let plain = BuildRequest { target: t.clone(), src: None, patches: vec![] };
        let patched = BuildRequest { target: t, src: None, patches: vec![p] };
        assert_ne!(cache_key(&plain).expect("key"), cache_key(&patched).expect("key"));
    }

    #[test]
    fn log_tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("l");
        fs::write(&p, "a\nb\nc\n").expect("write");
        assert_eq!(log_tail(&p, 2), "b\nc");
    }
}

#[cfg(test)]
mod variant_tests {
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
        install_driver(&src).expect("install");
        let (same_ino, mk_ino) = (ino(&src.join("same.c")), ino(&pristine.join("Makefile")));

        assert_eq!(resync(&pristine, &src).expect("resync"), 5, "cma.c, page_alloc.c, link, new.c, the Makefile");
        assert_eq!(fs::read_to_string(src.join("mm/cma.c")).expect("read"), "cma\n");
        assert_ne!(ino(&src.join("mm/cma.c")), ino(&pristine.join("mm/cma.c")), "a copy, not a link");
        assert_eq!(fs::read_to_string(src.join("mm/page_alloc.c")).expect("read"), "pa\n");
        assert!(!src.join("mm/new.c").exists());
        assert_eq!(fs::read_link(src.join("link")).expect("link"), Path::new("mm/cma.c"));
        assert_eq!(ino(&src.join("same.c")), same_ino, "an equal file keeps its mtime");
        assert_eq!(ino(&src.join("Makefile")), mk_ino, "a linked file is left linked");
        assert_eq!(fs::read_to_string(src.join("kernel/dma/Makefile")).expect("read"), "obj-y += x.o\n");
        assert!(src.join("mm/cmafuzz.c").is_file(), "the driver stays");
        assert_eq!(fs::read_to_string(pristine.join("mm/cma.c")).expect("read"), "cma\n", "the shared copy");
        assert_eq!(resync(&pristine, &src).expect("resync"), 0, "a second resync finds nothing");
    }
}
