//! Does a series apply to its base? Checked in a private copy of only the files the series
//! touches (seconds, no kernel build), patch by patch in order, with the same `patch -p1` the
//! kernel build uses; a failure names the patch, the file and the hunk.

use super::series::{Hunk, Series};
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("patch {patch} does not apply to {base}: {file}{hunk}: {detail}")]
    DoesNotApply { patch: String, base: String, file: String, hunk: String, detail: String },
    #[error("{what}: {msg}")]
    Io { what: String, msg: String },
    #[error("`patch` not found: install it with `apt-get install patch`")]
    NoPatchTool,
}

/// Writes each patch's diff to `dir/NNNN.patch` (what the kernel build applies) and returns
/// the paths in series order.
pub fn write_patches(series: &Series, dir: &Path) -> Result<Vec<PathBuf>, ApplyError> {
    std::fs::create_dir_all(dir).map_err(|e| ApplyError::Io { what: dir.display().to_string(), msg: e.to_string() })?;
    let mut out = Vec::new();
    for p in &series.patches {
        let path = dir.join(format!("{:04}.patch", p.index));
        std::fs::write(&path, p.diff.as_bytes())
            .map_err(|e| ApplyError::Io { what: path.display().to_string(), msg: e.to_string() })?;
        out.push(path);
    }
    Ok(out)
}

/// Applies `patches` (the files of [`write_patches`]) in order to a copy of the touched files of
/// `base` made under `work`. `base_name` names the base in the error.
pub fn check(
    series: &Series,
    patches: &[PathBuf],
    base: &Path,
    base_name: &str,
    work: &Path,
) -> Result<(), ApplyError> {
    let tree = work.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| ApplyError::Io { what, msg: e.to_string() }
    };
    std::fs::create_dir_all(&tree).map_err(io(&tree))?;
    for f in series.files() {
        let src = base.join(&f);
        if src.is_file() {
            let dst = tree.join(&f);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    let total = series.patches.len();
    for (p, file) in series.patches.iter().zip(patches) {
        let abs = std::fs::canonicalize(file).map_err(io(file))?;
        let out = Command::new("patch")
            .current_dir(&tree)
            .args(["-p1", "--batch", "--forward", "--no-backup-if-mismatch", "--reject-file=-", "-i"])
            .arg(&abs)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ApplyError::NoPatchTool,
                _ => ApplyError::Io { what: "running patch".into(), msg: e.to_string() },
            })?;
        if out.status.success() {
            continue;
        }
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let (f, hunk, detail) = failure(&text, &p.hunks);
        return Err(ApplyError::DoesNotApply { patch: p.label(total), base: base_name.into(), file: f, hunk, detail });
    }
    Ok(())
}

/// The first failure in `patch`'s output: the file, the hunk (with its header and function, from
/// the parsed series) and patch's own words.
pub fn failure(text: &str, hunks: &[Hunk]) -> (String, String, String) {
    let mut file = String::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("patching file ").or_else(|| line.strip_prefix("checking file ")) {
            file = f.trim().trim_matches('\'').to_string();
        }
        if line.contains("can't find file to patch") || line.starts_with("No file to patch") {
            let missing = hunks.iter().map(|h| h.file.clone()).find(|f| !text.contains(&format!("patching file {f}")));
            let f = missing.unwrap_or_else(|| "a file".into());
            return (f, String::new(), "the file is not in the base".into());
        }
        if let Some(rest) = line.strip_prefix("Hunk #") {
            if !line.contains("FAILED") {
                continue;
            }
            let n: usize = rest.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let h = hunks.iter().find(|h| h.file == file && h.number == n);
            let hunk = match h {
                Some(h) => format!(
                    " hunk #{n} ({}{})",
                    h.header,
                    h.functions.first().map(|f| format!(" in {f}()")).unwrap_or_default()
                ),
                None => format!(" hunk #{n}"),
            };
            return (file, hunk, line.trim().to_string());
        }
        if line.contains("Reversed (or previously applied) patch detected") {
            return (
                file,
                String::new(),
                "already applied to the base (a reversed or previously applied patch)".into(),
            );
        }
        if line.contains("Only garbage was found") {
            return (file, String::new(), "no diff `patch` can read".into());
        }
    }
    let last = text.lines().last().unwrap_or("patch failed").trim().to_string();
    (if file.is_empty() { "?".into() } else { file }, String::new(), last)
}
