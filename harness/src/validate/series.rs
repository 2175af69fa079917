//! A patch series in the forms developers hand it over: a directory of `git format-patch`
//! files (a cover letter is read, never applied), an mbox / `.mbx` file as `b4 am` writes it
//! (mboxrd: `>From ` lines unescaped; a series with a missing `[PATCH n/m]` is refused), or a
//! git range `BASE..TIP` in a kernel tree. Each patch is reduced to its diff (what `patch`
//! applies, nothing of the mail around it), with the files and functions its hunks touch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeriesError {
    #[error("{path}: cannot read the series: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("{path}: no patches found (give a directory of git format-patch files, an mbox/.mbx file, or BASE..TIP with --kernel-src)")]
    Empty { path: PathBuf },
    #[error("{path}: incomplete series: {have} of [PATCH n/{total}], missing {missing} (fetch the whole series, e.g. `b4 am` without -P)")]
    Incomplete { path: PathBuf, have: usize, total: usize, missing: String },
    #[error("{path}: patches disagree on the series length ([PATCH n/{a}] and [PATCH n/{b}]): give one series")]
    MixedSeries { path: PathBuf, a: usize, b: usize },
    #[error("{path}: patch {index} (\"{subject}\") has no diff (a cover letter must be [PATCH 0/n] or 0000-cover-letter.patch)")]
    NoDiff { path: PathBuf, index: usize, subject: String },
    #[error("{path}: patch {index} (\"{subject}\"): {msg}")]
    BadDiff { path: PathBuf, index: usize, subject: String, msg: String },
    #[error("the git range {range} needs --kernel-src DIR (the tree the range is in)")]
    RangeWithoutTree { range: String },
    #[error("{series}: no such file or directory (give a format-patch directory, an mbox/.mbx file, or BASE..TIP)")]
    Missing { series: String },
    #[error("git range {range} in {tree}: {msg}")]
    Git { range: String, tree: PathBuf, msg: String },
}

/// Which of the three forms a series came in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeriesForm {
    FormatPatchDir,
    Mbox,
    GitRange,
}

/// One hunk header: where it starts in the old file and the function git names for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hunk {
    pub file: String,
    /// 1-based, per file, in the order `patch` counts them (`Hunk #N FAILED`).
    pub number: usize,
    pub header: String,
    /// The functions its changed lines are in: git's hunk-header context, or a definition the
    /// hunk's own lines open before a change.
    pub functions: Vec<String>,
}

/// One patch of a series.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Patch {
    /// 1-based position in the series.
    pub index: usize,
    pub subject: String,
    /// Where it came from (a file name, `message N of FILE`, a commit).
    pub origin: String,
    /// The diff alone, as `patch -p1` applies it.
    #[serde(skip)]
    pub diff: String,
    pub files: Vec<String>,
    pub hunks: Vec<Hunk>,
}

impl Patch {
    /// `2/3 "mm/cma: ..."`.
    pub fn label(&self, total: usize) -> String {
        format!("{}/{} \"{}\"", self.index, total, self.subject)
    }

    /// The functions its hunks are in (git's hunk-header context), deduplicated.
    pub fn functions(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.hunks.iter().flat_map(|h| h.functions.iter().cloned()).filter(|f| seen.insert(f.clone())).collect()
    }
}

/// A parsed series.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Series {
    pub source: String,
    pub form: SeriesForm,
    /// The cover letter's subject, when there is one.
    pub cover: Option<String>,
    pub patches: Vec<Patch>,
    /// The `base-commit:` trailer (`git format-patch --base`, b4).
    pub base_commit: Option<String>,
    /// `BASE` of a git range, resolved to a commit.
    pub range_base: Option<String>,
}

impl Series {
    /// Every file the series touches, in order of first appearance.
    pub fn files(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.patches.iter().flat_map(|p| p.files.iter().cloned()).filter(|f| seen.insert(f.clone())).collect()
    }

    /// Every function the series' hunks are in (`file: function`).
    pub fn functions(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.patches
            .iter()
            .flat_map(|p| p.hunks.iter())
            .flat_map(|h| h.functions.iter().map(|f| format!("{}: {f}", h.file)))
            .filter(|f| seen.insert(f.clone()))
            .collect()
    }
}

/// Reads `spec`: a directory, a file, or (with `tree`) a git range.
pub fn load(spec: &str, tree: Option<&Path>) -> Result<Series, SeriesError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return from_dir(path);
    }
    if path.is_file() {
        let text = read(path)?;
        return from_mbox(&text, &path.display().to_string(), SeriesForm::Mbox);
    }
    if let Some((base, tip)) = spec.split_once("..") {
        if !base.is_empty() && !tip.is_empty() && !tip.starts_with('.') {
            let Some(tree) = tree else { return Err(SeriesError::RangeWithoutTree { range: spec.into() }) };
            return from_range(tree, base, tip);
        }
    }
    Err(SeriesError::Missing { series: spec.into() })
}

fn read(path: &Path) -> Result<String, SeriesError> {
    let bytes = std::fs::read(path).map_err(|e| SeriesError::Read { path: path.into(), msg: e.to_string() })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A `git format-patch -o DIR` directory: `*.patch` / `*.diff` files in name order.
pub fn from_dir(dir: &Path) -> Result<Series, SeriesError> {
    let rd = std::fs::read_dir(dir).map_err(|e| SeriesError::Read { path: dir.into(), msg: e.to_string() })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("patch" | "diff")))
        .collect();
    files.sort();
    let mut msgs = Vec::new();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = read(f)?;
        // A format-patch file is a one-message mbox (its first line is the `From <sha>` line).
        for raw in split_mbox(&text) {
            let mut m = Message::parse(&raw);
            m.origin.clone_from(&name);
            m.cover_by_name = name.starts_with("0000-");
            msgs.push(m);
        }
    }
    assemble(msgs, &dir.display().to_string(), SeriesForm::FormatPatchDir)
}

/// An mbox (mboxrd, as `b4 am` and `git format-patch --stdout --pretty=mboxrd` write it; a
/// plain mbox or a single patch file reads the same).
pub fn from_mbox(text: &str, source: &str, form: SeriesForm) -> Result<Series, SeriesError> {
    let mut msgs = Vec::new();
    for (i, raw) in split_mbox(text).into_iter().enumerate() {
        let mut m = Message::parse(&raw);
        m.origin = format!("message {} of {source}", i + 1);
        msgs.push(m);
    }
    assemble(msgs, source, form)
}

/// `git format-patch --stdout` of `BASE..TIP` in `tree`; the base is `BASE`.
pub fn from_range(tree: &Path, base: &str, tip: &str) -> Result<Series, SeriesError> {
    let range = format!("{base}..{tip}");
    let git = |args: &[&str]| -> Result<String, SeriesError> {
        let out = Command::new("git").arg("-C").arg(tree).args(args).output().map_err(|e| SeriesError::Git {
            range: range.clone(),
            tree: tree.into(),
            msg: e.to_string(),
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let msg = err.lines().next().unwrap_or("git failed").to_string();
            return Err(SeriesError::Git { range: range.clone(), tree: tree.into(), msg });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let base_sha = git(&["rev-parse", "--verify", "--quiet", &format!("{base}^{{commit}}")])?.trim().to_string();
    git(&["rev-parse", "--verify", "--quiet", &format!("{tip}^{{commit}}")])?;
    let mbox = git(&["format-patch", "--stdout", "--pretty=mboxrd", "--numbered", "--no-signature", &range])?;
    if mbox.trim().is_empty() {
        return Err(SeriesError::Empty { path: PathBuf::from(&range) });
    }
    let mut s = from_mbox(&mbox, &range, SeriesForm::GitRange)?;
    s.source = format!("{range} in {}", tree.display());
    s.range_base = Some(base_sha);
    Ok(s)
}

/// Splits an mbox at its `From ` separator lines and undoes mboxrd quoting (`>From ` with one
/// or more `>` loses one). Text before the first separator is one message of its own (a bare
/// patch file).
pub fn split_mbox(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with("From ") {
            if let Some(c) = cur.take() {
                if !c.trim().is_empty() {
                    out.push(c);
                }
            }
            cur = Some(String::new());
            continue;
        }
        let c = cur.get_or_insert_with(String::new);
        let gts = line.bytes().take_while(|b| *b == b'>').count();
        if gts > 0 && line[gts..].starts_with("From ") {
            c.push_str(&line[1..]);
        } else {
            c.push_str(line);
        }
    }
    if let Some(c) = cur {
        if !c.trim().is_empty() {
            out.push(c);
        }
    }
    out
}

/// One mail: its subject, the `[PATCH n/m]` tag, the diff and the trailers that matter here.
#[derive(Debug, Default)]
struct Message {
    subject: String,
    n_of_m: Option<(usize, usize)>,
    body: String,
    base_commit: Option<String>,
    origin: String,
    cover_by_name: bool,
}

impl Message {
    fn parse(text: &str) -> Message {
        let mut lines = text.split_inclusive('\n').peekable();
        let mut subject: Option<String> = None;
        let mut in_subject = false;
        let mut has_headers = false;
        // Headers: a mail starts with `Name: value`; a bare diff has none.
        let first = text.lines().next().unwrap_or_default();
        if is_header(first) {
            while let Some(l) = lines.peek() {
                let t = l.trim_end_matches(['\n', '\r']);
                if t.is_empty() {
                    lines.next();
                    break;
                }
                has_headers = true;
                if (t.starts_with(' ') || t.starts_with('\t')) && in_subject {
                    if let Some(s) = subject.as_mut() {
                        s.push(' ');
                        s.push_str(t.trim());
                    }
                } else if let Some(v) = t.strip_prefix("Subject:") {
                    subject = Some(v.trim().to_string());
                    in_subject = true;
                } else {
                    in_subject = false;
                }
                lines.next();
            }
        }
        let body: String = lines.collect();
        let subject = subject.unwrap_or_else(|| if has_headers { String::new() } else { "(no subject)".into() });
        let (n_of_m, subject) = split_tag(&subject);
        let base_commit = body
            .lines()
            .find_map(|l| l.strip_prefix("base-commit:").map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty());
        Message { subject, n_of_m, body, base_commit, origin: String::new(), cover_by_name: false }
    }
}

fn is_header(line: &str) -> bool {
    match line.split_once(':') {
        Some((name, _)) => !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        None => false,
    }
}

/// `[PATCH v2 2/3] mm/cma: x` → (Some((2, 3)), "mm/cma: x"); `[RFC PATCH]`, `[PATCH]` → no n/m.
fn split_tag(subject: &str) -> (Option<(usize, usize)>, String) {
    let s = subject.trim();
    let Some(rest) = s.strip_prefix('[') else { return (None, s.to_string()) };
    let Some((tag, after)) = rest.split_once(']') else { return (None, s.to_string()) };
    let nm = tag.split_whitespace().find_map(|w| {
        let (n, m) = w.split_once('/')?;
        Some((n.parse().ok()?, m.parse().ok()?))
    });
    (nm, after.trim().to_string())
}

fn assemble(msgs: Vec<Message>, source: &str, form: SeriesForm) -> Result<Series, SeriesError> {
    let path = PathBuf::from(source);
    let mut cover = None;
    let mut base_commit = None;
    let mut total: Option<usize> = None;
    let mut numbered = Vec::new();
    for m in msgs {
        if let Some((_, t)) = m.n_of_m {
            match total {
                Some(a) if a != t => return Err(SeriesError::MixedSeries { path, a, b: t }),
                _ => total = Some(t),
            }
        }
        let is_cover = m.n_of_m.is_some_and(|(n, _)| n == 0) || m.cover_by_name;
        if base_commit.is_none() {
            base_commit.clone_from(&m.base_commit);
        }
        if is_cover {
            cover = Some(m.subject.clone());
            continue;
        }
        numbered.push(m);
    }
    if let Some(t) = total {
        let have: BTreeSet<usize> = numbered.iter().filter_map(|m| m.n_of_m.map(|(n, _)| n)).collect();
        let missing: Vec<String> = (1..=t).filter(|n| !have.contains(n)).map(|n| n.to_string()).collect();
        if !missing.is_empty() {
            return Err(SeriesError::Incomplete { path, have: have.len(), total: t, missing: missing.join(", ") });
        }
        // Sorted by n; stable, so unnumbered stragglers keep their place at the end.
        numbered.sort_by_key(|m| m.n_of_m.map_or(usize::MAX, |(n, _)| n));
    }
    if numbered.is_empty() {
        return Err(SeriesError::Empty { path });
    }
    let mut patches = Vec::new();
    for (i, m) in numbered.into_iter().enumerate() {
        let index = i + 1;
        let parsed = parse_diff(&m.body).map_err(|msg| SeriesError::BadDiff {
            path: path.clone(),
            index,
            subject: m.subject.clone(),
            msg,
        })?;
        let Some(d) = parsed else {
            return Err(SeriesError::NoDiff { path, index, subject: m.subject });
        };
        patches.push(Patch {
            index,
            subject: m.subject,
            origin: m.origin,
            diff: d.text,
            files: d.files,
            hunks: d.hunks,
        });
    }
    Ok(Series { source: source.into(), form, cover, patches, base_commit, range_base: None })
}

/// The diff of a mail body.
#[derive(Debug)]
pub struct Diff {
    pub text: String,
    pub files: Vec<String>,
    pub hunks: Vec<Hunk>,
}

/// Extracts the diff from a mail body: from its first file header to the end of its last
/// hunk (hunk lengths are counted, so the signature and trailers after it are left out).
/// `Ok(None)`: no diff at all.
pub fn parse_diff(body: &str) -> Result<Option<Diff>, String> {
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    let bare = |l: &str| l.trim_end_matches(['\n', '\r']).to_string();
    let starts_file = |i: usize| {
        let l = lines[i];
        l.starts_with("diff --git ")
            || (l.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ ")))
    };
    let Some(start) = (0..lines.len()).find(|&i| starts_file(i)) else { return Ok(None) };
    let mut text = String::new();
    let mut files: Vec<String> = Vec::new();
    let mut hunks = Vec::new();
    let mut file = String::new();
    let mut per_file = 0usize;
    let mut i = start;
    let mut in_header = false;
    while i < lines.len() {
        let l = lines[i];
        let t = bare(l);
        if starts_file(i) || (in_header && is_file_header_line(&t)) {
            // A new file section starts at `diff --git`, or at a `---` that follows a hunk.
            if t.starts_with("diff --git ") || !in_header {
                per_file = 0;
            }
            if let Some(b) = t.strip_prefix("diff --git ").and_then(|r| r.rsplit_once(" b/")).map(|(_, b)| b) {
                file = b.to_string();
            }
            for (prefix, strip) in [("--- ", "a/"), ("+++ ", "b/")] {
                if let Some(p) = t.strip_prefix(prefix) {
                    let p = p.split('\t').next().unwrap_or(p).trim();
                    if p != "/dev/null" {
                        file = p.strip_prefix(strip).unwrap_or(p).to_string();
                    }
                }
            }
            if !file.is_empty() && !files.contains(&file) {
                files.push(file.clone());
            }
            in_header = true;
            text.push_str(l);
            i += 1;
            continue;
        }
        if t.starts_with("@@ ") {
            let (old, new, func) = hunk_counts(&t).ok_or_else(|| format!("malformed hunk header `{t}`"))?;
            per_file += 1;
            let header = t.split(" @@").next().map(|h| format!("{h} @@")).unwrap_or_default();
            text.push_str(l);
            i += 1;
            let (mut old, mut new) = (old, new);
            let mut current = func;
            let mut functions: Vec<String> = Vec::new();
            while old > 0 || new > 0 {
                let Some(h) = lines.get(i) else {
                    return Err(format!("{file}: hunk #{per_file} ends early (the mail is cut short?)"));
                };
                let content = h.get(1..).unwrap_or_default();
                if is_definition(content) {
                    current = function_name(content.trim_end());
                }
                if matches!(h.as_bytes().first(), Some(b'-' | b'+')) {
                    if let Some(f) = &current {
                        if !functions.contains(f) {
                            functions.push(f.clone());
                        }
                    }
                }
                match h.as_bytes().first() {
                    Some(b' ') => {
                        old = old.saturating_sub(1);
                        new = new.saturating_sub(1);
                    }
                    Some(b'-') => old = old.saturating_sub(1),
                    Some(b'+') => new = new.saturating_sub(1),
                    Some(b'\\') => {}
                    // A context line whose lone space a mailer took away.
                    Some(b'\n') | Some(b'\r') | None => {
                        old = old.saturating_sub(1);
                        new = new.saturating_sub(1);
                    }
                    _ => return Err(format!("{file}: hunk #{per_file}: unexpected line `{}`", bare(h))),
                }
                text.push_str(h);
                i += 1;
            }
            hunks.push(Hunk { file: file.clone(), number: per_file, header, functions });
            // A trailing "\ No newline at end of file".
            while lines.get(i).is_some_and(|h| h.starts_with('\\')) {
                text.push_str(lines[i]);
                i += 1;
            }
            in_header = false;
            continue;
        }
        if in_header {
            // Binary or mode-only sections carry no hunks.
            text.push_str(l);
            i += 1;
            continue;
        }
        // After a complete hunk, anything but the next file or hunk ends the diff.
        break;
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(Some(Diff { text, files, hunks }))
}

fn is_file_header_line(t: &str) -> bool {
    [
        "diff --git ",
        "index ",
        "new file mode",
        "deleted file mode",
        "old mode",
        "new mode",
        "similarity index",
        "dissimilarity index",
        "rename from",
        "rename to",
        "copy from",
        "copy to",
        "--- ",
        "+++ ",
        "Binary files",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// `@@ -86,7 +86,8 @@ static void f(...)` → (7, 8, Some("f")).
fn hunk_counts(t: &str) -> Option<(usize, usize, Option<String>)> {
    let rest = t.strip_prefix("@@ ")?;
    let (ranges, ctx) = rest.split_once(" @@")?;
    let mut it = ranges.split_whitespace();
    let count = |r: &str| -> Option<usize> {
        match r.split_once(',') {
            Some((_, c)) => c.parse().ok(),
            None => Some(1),
        }
    };
    let old = count(it.next()?.strip_prefix('-')?)?;
    let new = count(it.next()?.strip_prefix('+')?)?;
    Some((old, new, function_name(ctx.trim())))
}

/// A line that opens a C function definition: starts in column 0 with a name, has a `(`, and
/// is not a declaration, a label or a preprocessor line.
fn is_definition(line: &str) -> bool {
    let t = line.trim_end();
    t.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && t.contains('(')
        && !t.ends_with(';')
        && !t.ends_with(':')
        && !t.starts_with("if ")
        && function_name(t).is_some()
}

/// The name a C definition line defines: the identifier before its first `(`.
pub fn function_name(ctx: &str) -> Option<String> {
    let before = ctx.split('(').next()?;
    if before.len() == ctx.len() {
        return None;
    }
    let name: String = before.trim_end().chars().rev().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let name: String = name.chars().rev().collect();
    if name.is_empty() || name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        None
    } else {
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF1: &str = "diff --git a/mm/cma.c b/mm/cma.c\n\
index 1111111..2222222 100644\n\
--- a/mm/cma.c\n\
+++ b/mm/cma.c\n\
@@ -1,3 +1,3 @@ static void cma_clear_bitmap(struct cma *cma, unsigned long pfn,\n \
a\n\
-b\n\
+c\n \
d\n";

    fn mail(from: &str, subject: &str, body: &str) -> String {
        format!("From {from} Mon Sep 17 00:00:00 2001\nFrom: A <a@example.org>\nSubject: {subject}\n\n{body}")
    }

    #[test]
    fn a_diff_ends_at_its_last_hunk() {
        let body =
            format!("Why.\n\nSigned-off-by: A\n---\n mm/cma.c | 2 +-\n\n{DIFF1}\nbase-commit: abc\n-- \n2.47.3\n");
        let d = parse_diff(&body).expect("parses").expect("a diff");
        assert_eq!(d.text, DIFF1);
        assert_eq!(d.files, vec!["mm/cma.c".to_string()]);
        assert_eq!(d.hunks.len(), 1);
        assert_eq!(d.hunks[0].functions, vec!["cma_clear_bitmap".to_string()]);
        assert_eq!(d.hunks[0].header, "@@ -1,3 +1,3 @@");
    }

    #[test]
    fn a_hunk_that_opens_a_function_names_it_not_the_one_before() {
        let body = "--- a/mm/cma.c\n+++ b/mm/cma.c\n@@ -10,5 +10,5 @@ int cma_pages_valid(void)\n }\n \n bool cma_release(struct cma *cma)\n {\n-\tint a;\n+\tint b;\n";
        let d = parse_diff(body).expect("parses").expect("a diff");
        assert_eq!(d.hunks[0].functions, vec!["cma_release".to_string()]);
    }

    #[test]
    fn a_cut_short_hunk_is_an_error_naming_the_file() {
        let body = "--- a/mm/cma.c\n+++ b/mm/cma.c\n@@ -1,3 +1,3 @@\n a\n-b\n";
        let e = parse_diff(body).expect_err("short");
        assert!(e.contains("mm/cma.c") && e.contains("hunk #1"), "{e}");
    }

    #[test]
    fn subjects_give_their_place_in_the_series() {
        assert_eq!(split_tag("[PATCH v2 2/3] mm/cma: x"), (Some((2, 3)), "mm/cma: x".into()));
        assert_eq!(split_tag("[RFC PATCH 0/1] cover"), (Some((0, 1)), "cover".into()));
        assert_eq!(split_tag("[PATCH] one"), (None, "one".into()));
        assert_eq!(split_tag("plain"), (None, "plain".into()));
    }

    #[test]
    fn a_format_patch_directory_reads_its_cover_letter_and_applies_only_the_patches() {
        let d = tempfile::tempdir().expect("tmp");
        let cover = mail("0", "[PATCH 0/2] the cover", "Blurb.\n\nbase-commit: 0123456789ab\n-- \n2.47\n");
        std::fs::write(d.path().join("0000-cover-letter.patch"), cover).expect("w");
        std::fs::write(d.path().join("0001-a.patch"), mail("1", "[PATCH 1/2] first", DIFF1)).expect("w");
        std::fs::write(d.path().join("0002-b.patch"), mail("2", "[PATCH 2/2] second\n third line", DIFF1)).expect("w");
        std::fs::write(d.path().join("notes.txt"), "not a patch").expect("w");
        let s = from_dir(d.path()).expect("series");
        assert_eq!(s.form, SeriesForm::FormatPatchDir);
        assert_eq!(s.cover.as_deref(), Some("the cover"));
        assert_eq!(s.base_commit.as_deref(), Some("0123456789ab"));
        let subjects: Vec<&str> = s.patches.iter().map(|p| p.subject.as_str()).collect();
        assert_eq!(subjects, ["first", "second third line"]);
        assert!(s.patches.iter().all(|p| p.diff == DIFF1));
    }

    #[test]
    fn an_mbox_is_split_and_unescaped_mboxrd_style() {
        // mboxrd: a body line "From me" is written ">From me", ">From" as ">>From".
        let body1 = format!("Quoting:\n>From the list\n>>From deeper\n---\n{DIFF1}");
        let text = format!("{}{}", mail("1", "[PATCH 2/2] second", DIFF1), mail("2", "[PATCH 1/2] first", &body1));
        let msgs = split_mbox(&text);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].contains("\nFrom the list\n>From deeper\n"), "{}", msgs[1]);
        let s = from_mbox(&text, "x.mbx", SeriesForm::Mbox).expect("series");
        // Put in [PATCH n/m] order, whatever the mbox order.
        let subjects: Vec<&str> = s.patches.iter().map(|p| p.subject.as_str()).collect();
        assert_eq!(subjects, ["first", "second"]);
        assert_eq!(s.patches[0].index, 1);
    }

    #[test]
    fn an_incomplete_series_is_refused_naming_what_is_missing() {
        let text = format!("{}{}", mail("1", "[PATCH 1/3] a", DIFF1), mail("3", "[PATCH 3/3] c", DIFF1));
        let e = from_mbox(&text, "x.mbx", SeriesForm::Mbox).expect_err("incomplete");
        let msg = e.to_string();
        assert!(matches!(e, SeriesError::Incomplete { total: 3, .. }), "{msg}");
        assert!(msg.contains("missing 2"), "{msg}");
    }

    #[test]
    fn a_patch_without_a_diff_is_refused() {
        let text = mail("1", "[PATCH 1/1] words only", "No diff here.\n");
        let e = from_mbox(&text, "x.mbx", SeriesForm::Mbox).expect_err("no diff");
        assert!(e.to_string().contains("words only"), "{e}");
    }

    #[test]
    fn a_git_range_is_its_commits_with_the_range_base() {
        let d = tempfile::tempdir().expect("tmp");
        let git = |args: &[&str]| {
            let st = Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(["-c", "user.name=A", "-c", "user.email=a@example.org"])
                .args(args)
                .output()
                .expect("git");
            assert!(st.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&st.stderr));
            String::from_utf8_lossy(&st.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        std::fs::create_dir_all(d.path().join("mm")).expect("mkdir");
        std::fs::write(d.path().join("mm/cma.c"), "int cma_alloc(void)\n{\n\treturn 0;\n}\n").expect("w");
        git(&["add", "-A"]);
        git(&["commit", "-qm", "base"]);
        let base = git(&["rev-parse", "HEAD"]);
        for (i, v) in ["1", "2"].iter().enumerate() {
            std::fs::write(d.path().join("mm/cma.c"), format!("int cma_alloc(void)\n{{\n\treturn {v};\n}}\n"))
                .expect("w");
            git(&["commit", "-qam", &format!("mm/cma: change {i}")]);
        }
        let s = load(&format!("{base}..HEAD"), Some(d.path())).expect("range");
        assert_eq!(s.form, SeriesForm::GitRange);
        assert_eq!(s.range_base.as_deref(), Some(base.as_str()));
        let subjects: Vec<&str> = s.patches.iter().map(|p| p.subject.as_str()).collect();
        assert_eq!(subjects, ["mm/cma: change 0", "mm/cma: change 1"]);
        assert_eq!(s.files(), vec!["mm/cma.c".to_string()]);
        assert_eq!(s.functions(), vec!["mm/cma.c: cma_alloc".to_string()]);
        // Without the tree, a range is one clear error.
        let e = load(&format!("{base}..HEAD"), None).expect_err("needs a tree");
        assert!(e.to_string().contains("--kernel-src"), "{e}");
    }

    #[test]
    fn the_test_series_parse_in_their_forms() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/validate");
        let clean = from_dir(&data.join("cleanup")).expect("cleanup");
        assert_eq!((clean.patches.len(), clean.cover.is_some()), (1, true));
        let bug = load(&data.join("release-bug.mbx").display().to_string(), None).expect("mbox");
        assert_eq!(bug.patches.len(), 2);
        // The same patch in two forms is the same diff (and so the same kernel build).
        assert_eq!(bug.patches[0].diff, clean.patches[0].diff);
        assert_eq!(bug.patches[1].functions(), vec!["cma_clear_bitmap".to_string()]);
    }
}
