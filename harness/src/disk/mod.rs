//! Files on disk, the one copy of each: atomic publication (temp + rename, for files and for
//! directories), an exclusive lock file, bounded tail reads, a size-bounded log that rotates
//! into `NAME.1`, content hashes for file names, and quarantine (setting a corrupt file aside
//! under a name that says where it came from). Plain `std::io` errors: every caller names the
//! file in its own error type.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The sha256 of `bytes`, as 64 lower-case hex digits (stable across Rust releases and
/// machines, unlike `DefaultHasher`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `data` to `path` through a temporary file in the same directory, synced, then
/// renamed over `path`: a reader sees the old content or the new, never half of it.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Whether [`publish_dir`] put its directory in place or found one there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Ours,
    /// Another publisher got there first; ours was removed.
    Theirs,
}

/// Renames the finished directory `tmp` to `dest` (same file system). When `dest` exists
/// already (another process published the same thing), `tmp` is removed and the existing one
/// stays: publishers of one name publish equal content.
pub fn publish_dir(tmp: &Path, dest: &Path) -> io::Result<Published> {
    match fs::rename(tmp, dest) {
        Ok(()) => Ok(Published::Ours),
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(tmp);
            Ok(Published::Theirs)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(tmp);
            Err(e)
        }
    }
}

/// An exclusive `flock(2)` on a lock file, held while this lives (processes and threads that
/// take the same path serialise). Hand-written over `libc` (already a dependency, twelve lines)
/// until the workspace's rust-version reaches 1.89 and `std::fs::File::lock`.
#[derive(Debug)]
pub struct Lock {
    file: fs::File,
}

impl Lock {
    /// Blocks until the lock on `path` (created if missing) is ours.
    pub fn exclusive(path: &Path) -> io::Result<Lock> {
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        loop {
            // SAFETY: flock on a descriptor this struct owns; released when the file closes.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as above (closing the file would release it too).
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The last `max` bytes of one file (empty when it cannot be read).
fn file_tail(p: &Path, max: u64) -> Vec<u8> {
    let Ok(mut f) = fs::File::open(p) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max && f.seek(SeekFrom::Start(len - max)).is_err() {
        return Vec::new();
    }
    let mut b = Vec::new();
    let _ = f.take(max).read_to_end(&mut b);
    b
}

/// The last `max` bytes of the log at `p`. A log a [`RotatingLog`] rotated (its first line is
/// the rotation note) continues its `.1` file: that file's end comes first, the notes are left out.
pub fn read_tail(p: &Path, max: u64) -> Vec<u8> {
    let (cur, rotated) = without_note(p, max);
    if !rotated {
        return cur;
    }
    let (mut out, _) = without_note(&rotated_path(p), max.saturating_sub(cur.len() as u64));
    out.extend_from_slice(&cur);
    out
}

/// The last `max` bytes of `p` without a leading rotation note, and whether it had one.
fn without_note(p: &Path, max: u64) -> (Vec<u8>, bool) {
    let b = file_tail(p, max);
    let whole = fs::metadata(p).map(|m| m.len()).unwrap_or(0) as usize == b.len();
    if !whole || !b.starts_with(ROTATED_NOTE.as_bytes()) {
        return (b, false);
    }
    let body = b.iter().position(|c| *c == b'\n').map_or(b.len(), |i| i + 1);
    (b[body..].to_vec(), true)
}

/// The last `n` lines of a log file (the last 256 KiB read, rotation followed).
pub fn tail(p: &Path, n: usize) -> String {
    let text = String::from_utf8_lossy(&read_tail(p, 256 * 1024)).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How a rotated log's first line starts.
pub const ROTATED_NOTE: &str = "[cmafuzz: rotated:";

/// `NAME.1`, where a [`RotatingLog`] keeps the file before the current one.
pub fn rotated_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// An append-only log bounded on disk: when the current file passes `limit` bytes, it is
/// renamed to `NAME.1` (replacing the one before) at the next line end and a new file starts
/// with a one-line note saying how many bytes are in `NAME.1` and how many were discarded. At
/// most about `2 * limit` bytes stay on disk, and the last `limit` bytes are always there.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: fs::File,
    len: u64,
    limit: u64,
    /// Bytes written in files that have since been discarded.
    discarded: u64,
}

impl RotatingLog {
    /// Creates (truncates) the log at `path`.
    pub fn create(path: &Path, limit: u64) -> io::Result<RotatingLog> {
        let file = fs::File::create(path)?;
        let _ = fs::remove_file(rotated_path(path));
        Ok(RotatingLog { path: path.to_path_buf(), file, len: 0, limit: limit.max(1), discarded: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes`. Lines are never split across files, except a line longer than `limit`.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.len < self.limit {
                // Up to the limit, then on to the end of that line.
                let room = (self.limit - self.len) as usize;
                let end = if bytes.len() <= room {
                    bytes.len()
                } else {
                    match bytes[room..].iter().position(|b| *b == b'\n') {
                        Some(i) => room + i + 1,
                        // A line longer than the limit is cut at twice the limit.
                        None => bytes.len().min(room + self.limit as usize),
                    }
                };
                self.file.write_all(&bytes[..end])?;
                self.len += end as u64;
                bytes = &bytes[end..];
                if bytes.is_empty() {
                    break;
                }
            }
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let old = rotated_path(&self.path);
        self.discarded += fs::metadata(&old).map(|m| m.len()).unwrap_or(0);
        fs::rename(&self.path, &old)?;
        self.file = fs::File::create(&self.path)?;
        let note = format!(
            "{ROTATED_NOTE} the {} bytes before this line are in {}; {} earlier bytes were discarded]\n",
            self.len,
            old.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            self.discarded
        );
        self.file.write_all(note.as_bytes())?;
        // The note does not count against the limit: a file holds `limit` bytes of log.
        self.len = 0;
        Ok(())
    }
}

/// Moves the corrupt file or directory `what` into `quarantine/` as `ORIGIN.NAME` (with `.N`
/// added when that is taken), so it no longer stops anything and a person can still read it.
/// Returns where it went.
pub fn quarantine(quarantine: &Path, what: &Path, origin: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(quarantine)?;
    let name = what.file_name().map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
    let base = format!("{origin}.{name}");
    let mut dest = quarantine.join(&base);
    let mut n = 1;
    while dest.exists() {
        dest = quarantine.join(format!("{base}.{n}"));
        n += 1;
    }
    fs::rename(what, &dest)?;
    Ok(dest)
}

/// Copies the file `what` into `quarantine/` as [`quarantine`] would move it, for files this
/// program does not own (a user's seed directory, perhaps under version control).
pub fn quarantine_copy(quarantine: &Path, what: &Path, origin: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(quarantine)?;
    let name = what.file_name().map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
    let dest = quarantine.join(format!("{origin}.{name}"));
    fs::copy(what, &dest)?;
    Ok(dest)
}

/// Tells the user, in one line on stderr, about something set aside so the run could go on.
pub fn notice(line: &str) {
    eprintln!("{line}");
    #[cfg(test)]
    NOTICES.with(|n| n.borrow_mut().push(line.to_string()));
}

#[cfg(test)]
thread_local! {
    static NOTICES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The notices this thread gave since the last call (tests count them).
#[cfg(test)]
pub fn take_notices() -> Vec<String> {
    NOTICES.with(|n| std::mem::take(&mut *n.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_sha256sum() {
        // printf 'abc' | sha256sum
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(fs::read_dir(d.path()).expect("list").count(), 1);
    }

    #[test]
    fn publish_dir_keeps_the_first_and_removes_the_second() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b, dest) = (d.path().join("a"), d.path().join("b"), d.path().join("dest"));
        for (dir, text) in [(&a, "a"), (&b, "b")] {
            fs::create_dir(dir).expect("mkdir");
            fs::write(dir.join("x"), text).expect("write");
        }
        assert_eq!(publish_dir(&a, &dest).expect("publish"), Published::Ours);
        assert_eq!(publish_dir(&b, &dest).expect("publish"), Published::Theirs);
        assert_eq!(fs::read_to_string(dest.join("x")).expect("read"), "a");
        assert!(!b.exists());
    }

    #[test]
    fn the_lock_serialises_threads() {
        let d = tempfile::tempdir().expect("tempdir");
        let lock = d.path().join(".lock");
        let counter = std::sync::Arc::new(std::sync::Mutex::new((0u32, 0u32)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _l = Lock::exclusive(&lock).expect("lock");
                        {
                            let mut c = counter.lock().expect("mutex");
                            c.0 += 1;
                            c.1 = c.1.max(c.0);
                        }
                        std::thread::yield_now();
                        counter.lock().expect("mutex").0 -= 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(counter.lock().expect("mutex").1, 1, "two holders at once");
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("l");
        fs::write(&p, "a\nb\nc\n").expect("write");
        assert_eq!(tail(&p, 2), "b\nc");
        assert_eq!(tail(&d.path().join("missing"), 2), "");
    }

    #[test]
    fn a_rotating_log_stays_bounded_keeps_lines_whole_and_reads_back_across_rotation() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("console.log");
        let mut log = RotatingLog::create(&p, 100).expect("create");
        let mut all = Vec::new();
        for i in 0..200 {
            let line = format!("line {i:04} of the console\n");
            // Uneven chunks: a line may arrive in pieces.
            let (a, b) = line.as_bytes().split_at(i % line.len());
            log.write(a).expect("write");
            log.write(b).expect("write");
            all.extend_from_slice(line.as_bytes());
        }
        let cur = fs::read_to_string(&p).expect("read");
        let old = fs::read_to_string(rotated_path(&p)).expect("read .1");
        assert!(cur.starts_with(ROTATED_NOTE), "{cur}");
        assert!(cur.contains("console.log.1"), "{cur}");
        assert!(old.len() <= 100 + 26 + 200 && cur.len() <= 100 + 26 + 200, "{} {}", old.len(), cur.len());
        for f in [&cur, &old] {
            assert!(f.lines().all(|l| l.starts_with("line ") || l.starts_with(ROTATED_NOTE)), "{f}");
        }
        // The note counts every byte: kept in .1 plus discarded plus this file is everything.
        let kept = read_tail(&p, u64::MAX);
        assert!(all.ends_with(&kept), "the tail across both files is the end of what was written");
        assert!(kept.len() >= 100);
        assert_eq!(tail(&p, 1), "line 0199 of the console");
        assert_eq!(String::from_utf8_lossy(&read_tail(&p, 25)), "line 0199 of the console\n");
    }

    #[test]
    fn quarantine_moves_and_never_overwrites() {
        let d = tempfile::tempdir().expect("tempdir");
        let q = d.path().join("quarantine");
        for _ in 0..2 {
            let f = d.path().join("bad.prog");
            fs::write(&f, "x").expect("write");
            quarantine(&q, &f, "corpus").expect("move");
            assert!(!f.exists());
        }
        assert!(q.join("corpus.bad.prog").is_file() && q.join("corpus.bad.prog.1").is_file());
    }
}
