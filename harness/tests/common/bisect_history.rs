//! The git history `tests/bisect.rs` and `benches/bisect.rs` bisect: 32 commits on top of the
//! 6.1 Debian source, made once and kept in the cache (`fixtures/bisect-6.1-v1`): `git init` of
//! a hard-linked copy of the unpacked source, every edit replacing its file (never writing
//! through a link into the shared copy). c1..c32 are comment edits in mm/ and kernel/dma/,
//! except c18 (breaks the build), c19 (mends it) and c20 (injects
//! `benchmarks/bugs/release-clears-one-bit-short.patch`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BUG_AT: usize = 20;
pub const BREAK_AT: usize = 18;
pub const COMMITS: usize = 32;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Fixture Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_NAME", "Fixture Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.org")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Replaces `rel` in `dir` with `f(old)` (a new inode: the tree is hard-linked).
pub fn edit(dir: &Path, rel: &str, f: impl FnOnce(String) -> String) {
    let p = dir.join(rel);
    let old = std::fs::read_to_string(&p).expect("readable source file");
    std::fs::remove_file(&p).expect("remove");
    std::fs::write(&p, f(old)).expect("write");
}

const EDITED: &[&str] = &["mm/cma.c", "mm/page_isolation.c", "kernel/dma/contiguous.c", "mm/highmem.c", "mm/vmalloc.c"];

/// The repository and the shas of c0 (the base) .. c32.
pub fn history() -> (PathBuf, Vec<String>) {
    let cache = cmafuzz::build::cache::root();
    let dir = cache.join("fixtures").join("bisect-6.1-v1");
    let repo = dir.join("repo");
    if dir.join("done").is_file() {
        let shas = git(&repo, &["rev-list", "--reverse", "HEAD"]).lines().map(String::from).collect::<Vec<_>>();
        assert_eq!(shas.len(), COMMITS + 1);
        return (repo, shas);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let pristine = std::fs::read_dir(cache.join("src"))
        .ok()
        .and_then(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains("linux-source-6.1-") && p.join("done").is_file())
        })
        .map(|p| p.join("tree"));
    match pristine {
        Some(tree) => {
            let st = Command::new("cp").arg("-al").arg(&tree).arg(&repo).status().expect("cp");
            assert!(st.success());
        }
        None => {
            std::fs::create_dir_all(&repo).expect("repo dir");
            let st = Command::new("tar")
                .args(["-xf", "/usr/src/linux-source-6.1.tar.xz", "--strip-components=1", "-C"])
                .arg(&repo)
                .status()
                .expect("tar");
            assert!(st.success(), "unpack linux-source-6.1 (apt-get install linux-source-6.1)");
        }
    }
    git(&repo, &["init", "-q"]);
    // No background gc eating the CPU the builds need.
    git(&repo, &["config", "gc.auto", "0"]);
    git(&repo, &["config", "maintenance.auto", "false"]);
    // -f: Debian's top-level .gitignore ignores everything but debian/.
    git(&repo, &["add", "-A", "-f"]);
    git(&repo, &["commit", "-q", "-m", "base: linux-source-6.1"]);
    let bug =
        std::fs::read_to_string(root().join("benchmarks/bugs/release-clears-one-bit-short.patch")).expect("patch");
    for i in 1..=COMMITS {
        let subject = if i == BUG_AT {
            // `patch` writes a new file and renames it over the old: the link is broken.
            let mut c = Command::new("patch");
            c.current_dir(&repo).args(["-p1", "--batch", "--forward", "--no-backup-if-mismatch"]);
            let mut child = c.stdin(std::process::Stdio::piped()).spawn().expect("patch");
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bug.as_bytes()).expect("patch input");
            assert!(child.wait().expect("patch").success());
            "mm/cma: clear the bitmap in cma_clear_bitmap() by the bits of count - 1".to_string()
        } else if i == BREAK_AT {
            edit(&repo, "mm/cma.c", |s| format!("{s}this is not C;\n"));
            "mm/cma: work in progress (does not build)".to_string()
        } else if i == BREAK_AT + 1 {
            edit(&repo, "mm/cma.c", |s| s.trim_end_matches("this is not C;\n").to_string());
            "mm/cma: mend the build".to_string()
        } else {
            let f = EDITED[i % EDITED.len()];
            edit(&repo, f, |s| format!("{s}/* bisect fixture: edit {i} */\n"));
            format!("{f}: comment {i}")
        };
        git(&repo, &["commit", "-q", "-a", "-m", &subject]);
    }
    std::fs::write(dir.join("done"), b"").expect("done marker");
    let shas = git(&repo, &["rev-list", "--reverse", "HEAD"]).lines().map(String::from).collect();
    (repo, shas)
}
