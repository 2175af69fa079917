//! Where build outputs live: `${XDG_CACHE_HOME:-~/.cache}/cmafuzz`, keyed by
//! a hash of their inputs. Nothing here is ever committed.

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The cache root, `${XDG_CACHE_HOME:-$HOME/.cache}/cmafuzz`.
pub fn root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("cmafuzz")
}

/// An incremental hash whose parts are length-prefixed, so ("ab","c") and
/// ("a","bc") give different keys.
#[derive(Default)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    pub fn new(domain: &str) -> Self {
        let mut k = KeyHasher(Sha256::new());
        k.part(domain.as_bytes());
        k
    }

    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// The first 16 hex digits: plenty for a cache of a few hundred builds.
    pub fn finish(self) -> String {
        let d = self.0.finalize();
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// The sha256 of a file, streamed.
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::disk::hex(&h.finalize()))
}

/// `file_sha256`, remembered under the cache root by path, size and mtime,
/// so a 140 MB source tarball is hashed once, not on every command.
pub fn file_sha256_cached(path: &std::path::Path) -> std::io::Result<String> {
    let md = std::fs::metadata(path)?;
    let mtime = md.modified()?.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut k = KeyHasher::new("file-sha256");
    k.part(path.to_string_lossy().as_bytes()).part(&md.len().to_le_bytes()).part(&mtime.to_le_bytes());
    let memo = root().join("hashes").join(k.finish());
    if let Ok(text) = std::fs::read_to_string(&memo) {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(text.to_string());
        }
    }
    let sha = file_sha256(path)?;
    // A memo that cannot be written only costs hashing again next time.
    if let Some(dir) = memo.parent() {
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = crate::disk::write_atomic(&memo, sha.as_bytes());
        }
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_are_length_prefixed() {
        let mut a = KeyHasher::new("t");
        a.part(b"ab").part(b"c");
        let mut b = KeyHasher::new("t");
        b.part(b"a").part(b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn cache_root_honours_xdg_cache_home_layout() {
        // Only checks the suffix: the environment belongs to the test runner.
        assert!(root().ends_with("cmafuzz"));
    }
}
