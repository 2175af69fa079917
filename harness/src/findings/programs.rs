//! Program files on disk: `*.prog` (text) and `*.json`, one program each, alone or in
//! directories (corpora, findings' reproducers). Every front end loads programs through here.

use reference_impl::program::Program;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProgramFileError {
    /// The file cannot be read or is not a valid program.
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    /// Nothing to load.
    #[error("no program files given (pass files or directories of *.prog / *.json)")]
    NoFiles,
}

/// A program loaded from disk.
#[derive(Debug, Clone)]
pub struct LoadedProgram {
    pub path: PathBuf,
    pub program: Program,
}

/// Expands directories into their `*.prog` and `*.json` files (sorted).
pub fn collect_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, ProgramFileError> {
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let rd =
                std::fs::read_dir(a).map_err(|e| ProgramFileError::File { path: a.clone(), msg: e.to_string() })?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("prog" | "json")))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(a.clone());
        }
    }
    if files.is_empty() {
        return Err(ProgramFileError::NoFiles);
    }
    Ok(files)
}

/// Loads one program, text or JSON by extension.
pub fn load(path: &Path) -> Result<LoadedProgram, ProgramFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProgramFileError::File { path: path.to_path_buf(), msg: format!("cannot read: {e}") })?;
    let parsed = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        Program::from_json(&text)
    } else {
        Program::parse(&text)
    };
    let program = parsed.map_err(|e| ProgramFileError::File { path: path.to_path_buf(), msg: e.to_string() })?;
    Ok(LoadedProgram { path: path.to_path_buf(), program })
}
