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

/// Expands directories into their `*.prog` and `*.json` files (sorted). Hidden files are not
/// programs: LibAFL's on-disk corpus keeps a one-byte `.<name>` lock file beside each entry.
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
                .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_gives_its_programs_not_the_corpus_lock_files_beside_them() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("b.prog"), "observe\n").expect("write");
        std::fs::write(d.path().join("a.json"), "[]").expect("write");
        std::fs::write(d.path().join(".b.prog"), "x").expect("write");
        std::fs::write(d.path().join("notes.txt"), "x").expect("write");
        let files = collect_files(&[d.path().to_path_buf()]).expect("files");
        let names: Vec<_> = files.iter().filter_map(|f| f.file_name()?.to_str().map(String::from)).collect();
        assert_eq!(names, vec!["a.json", "b.prog"]);
    }
}
