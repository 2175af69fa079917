//! The folders are the layers, and imports only go down (ARCHITECTURE.md, "Layers"). This test
//! reads the layering from ARCHITECTURE.md itself, so the document and the code cannot drift:
//! in `harness/src` a module may import from its own folder or from a layer below its own,
//! never from a layer above or beside it; in both crates the files' imports form no cycle.
//!
//! Imports are `crate::…`, `super::…` and child-module paths in the code outside `#[cfg(test)]`
//! modules (a test may reach anywhere). A folder's `mod.rs` re-exporting its children
//! (`pub use child::…`) is the folder's face, not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fenced block after `<!-- layers: NAME -->` in ARCHITECTURE.md: one layer a line, top
/// first, several folders on one line being one layer (they must not import each other).
fn layers(doc: &str, name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- layers: {name} -->");
    let at = doc.find(&marker).unwrap_or_else(|| panic!("ARCHITECTURE.md has no `{marker}` block"));
    let rest = &doc[at + marker.len()..];
    let open = rest.find("```").expect("a fenced block after the marker");
    let body = &rest[open + 3..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    let close = body.find("```").expect("a closing fence");
    body[..close]
        .lines()
        .map(|l| l.split_whitespace().filter(|w| *w != "→" && *w != "/").map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A source file and its module path (`oracle/compare.rs` → `["oracle", "compare"]`).
struct Source {
    file: PathBuf,
    module: Vec<String>,
    text: String,
}

fn sources(src: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).expect("under src");
            let mut module: Vec<String> =
                rel.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&p).expect("read source");
            out.push(Source { file: p, module, text });
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The code without comments, string literals and `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    // Drop string literals (a doc string may say `crate::x`).
    let mut clean = String::with_capacity(out.len());
    let mut in_str = false;
    let mut prev = ' ';
    for c in out.chars() {
        if c == '"' && prev != '\\' && prev != '\'' {
            in_str = !in_str;
        } else if !in_str {
            clean.push(c);
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    // Drop every `#[cfg(test)] mod … { … }`, wherever it sits (brace literals do not count).
    let clean = clean.replace("'{'", "' '").replace("'}'", "' '");
    let mut rest = clean.as_str();
    let mut kept = String::with_capacity(clean.len());
    while let Some(at) = rest.find("#[cfg(test)]\nmod ") {
        kept.push_str(&rest[..at]);
        let body = &rest[at..];
        let Some(open) = body.find('{') else { return kept };
        let mut depth = 0usize;
        let mut end = body.len();
        for (k, ch) in body[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    kept.push_str(rest);
    kept
}

fn ident_at(s: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&s[start..i]).into_owned(), i)
}

/// Every path `prefix::a::b…` (with `{…}` groups expanded to each item's leading segments).
fn paths_after(s: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        while i < s.len() && s[i] == b' ' {
            i += 1;
        }
        if i < s.len() && s[i] == b'{' {
            // A group: each comma-separated item continues the path.
            i += 1;
            loop {
                while i < s.len() && (s[i] == b' ' || s[i] == b'\n' || s[i] == b',') {
                    i += 1;
                }
                if i >= s.len() || s[i] == b'}' {
                    break;
                }
                let before = out.len();
                paths_after(s, i, path.clone(), out);
                if out.len() == before {
                    out.push(path.clone());
                }
                // Skip to the end of this item.
                let mut depth = 0;
                while i < s.len() {
                    match s[i] {
                        b'{' => depth += 1,
                        b'}' if depth == 0 => break,
                        b'}' => depth -= 1,
                        b',' if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            return;
        }
        let (id, j) = ident_at(s, i);
        if id.is_empty() {
            break;
        }
        path.push(id);
        i = j;
        if s.get(i..i + 2) == Some(b"::") {
            i += 2;
        } else {
            break;
        }
    }
    out.push(path);
}

/// The module paths a file names: `crate::x…`, `super::x…`, `self::x…` and `use child::…`.
fn imports(src: &Source, children: &BTreeSet<Vec<String>>) -> Vec<(Vec<String>, bool)> {
    let c = code(&src.text);
    let s = c.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        if !boundary {
            i += 1;
            continue;
        }
        let (id, j) = ident_at(s, i);
        if id.is_empty() {
            i += 1;
            continue;
        }
        let line_start = c[..i].rfind('\n').map_or(0, |n| n + 1);
        let reexport = c[line_start..i].trim_start().starts_with("pub use");
        if s.get(j..j + 2) == Some(b"::") {
            let base = match id.as_str() {
                "crate" => Some(Vec::new()),
                "super" => Some(src.module[..src.module.len().saturating_sub(1)].to_vec()),
                "self" => Some(src.module.clone()),
                _ => {
                    let mut child = src.module.clone();
                    child.push(id.clone());
                    let in_use = c[line_start..i].trim_start().starts_with("use ")
                        || c[line_start..i].trim_start().starts_with("pub use ");
                    (in_use && children.contains(&child)).then_some(child)
                }
            };
            if let Some(base) = base {
                let mut found = Vec::new();
                paths_after(s, j + 2, base, &mut found);
                out.extend(found.into_iter().map(|p| (p, reexport)));
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// The deepest module file a path names.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains(m))
}

struct Graph {
    /// (from module, to module, file) for every import between two different files.
    edges: BTreeSet<(Vec<String>, Vec<String>)>,
}

fn graph(src: &Path) -> Graph {
    let all = sources(src);
    let modules: BTreeSet<Vec<String>> = all.iter().map(|s| s.module.clone()).collect();
    let mut edges = BTreeSet::new();
    for s in &all {
        for (p, reexport) in imports(s, &modules) {
            let Some(to) = resolve(&p, &modules) else { continue };
            if to == s.module || to.is_empty() {
                continue;
            }
            // A mod.rs re-exporting its own children is the folder's face.
            if reexport && to.len() == s.module.len() + 1 && to.starts_with(&s.module) {
                continue;
            }
            edges.insert((s.module.clone(), to));
        }
    }
    Graph { edges }
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// A cycle among the modules, if there is one.
fn cycle(g: &Graph) -> Option<Vec<Vec<String>>> {
    let mut adj: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (a, b) in &g.edges {
        adj.entry(a).or_default().push(b);
    }
    // 0 new, 1 on the stack, 2 done.
    let mut state: BTreeMap<&Vec<String>, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a Vec<String>,
        adj: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        state: &mut BTreeMap<&'a Vec<String>, u8>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(n, 1);
        stack.push(n);
        for &m in adj.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|x| *x == m).unwrap_or(0);
                    let mut c: Vec<Vec<String>> = stack[at..].iter().map(|x| (*x).clone()).collect();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, adj, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let nodes: Vec<&Vec<String>> = adj.keys().copied().collect();
    for n in nodes {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, &adj, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Imports in `harness/src` that go up or sideways between the layers of ARCHITECTURE.md.
fn upward(g: &Graph, layers: &[Vec<String>]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> =
        layers.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |f| (f.as_str(), i))).collect();
    let mut bad = Vec::new();
    for (from, to) in &g.edges {
        let (Some(ff), Some(tf)) = (from.first(), to.first()) else { continue };
        if ff == tf {
            continue;
        }
        match (rank.get(ff.as_str()), rank.get(tf.as_str())) {
            (Some(a), Some(b)) if a < b => {}
            (Some(_), Some(_)) => bad.push(format!("{} imports {} (a layer above or beside it)", show(from), show(to))),
            (None, _) => {
                bad.push(format!("{} is in folder `{ff}`, which ARCHITECTURE.md's layers do not list", show(from)))
            }
            (_, None) => {
                bad.push(format!("{} imports {}, a folder ARCHITECTURE.md's layers do not list", show(from), show(to)))
            }
        }
    }
    bad
}

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md")
}

#[test]
fn harness_imports_only_go_down_the_layers_of_architecture_md() {
    let layers = layers(&architecture(), "harness");
    let g = graph(&root().join("harness/src"));
    let bad = upward(&g, &layers);
    assert!(bad.is_empty(), "imports against the layering:\n  {}", bad.join("\n  "));
    // Every folder is a layer.
    let listed: BTreeSet<&str> = layers.iter().flatten().map(String::as_str).collect();
    for e in std::fs::read_dir(root().join("harness/src")).expect("src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            assert!(listed.contains(name.as_str()), "harness/src/{name} is not in ARCHITECTURE.md's layers");
        }
    }
}

#[test]
fn no_module_import_closes_a_cycle_in_either_crate() {
    for krate in ["harness/src", "reference-impl/src"] {
        let g = graph(&root().join(krate));
        assert!(g.edges.len() > 10, "{krate}: the import scan found almost nothing ({} edges)", g.edges.len());
        if let Some(c) = cycle(&g) {
            let shown: Vec<String> = c.iter().map(|m| show(m)).collect();
            panic!("{krate}: import cycle {}", shown.join(" -> "));
        }
    }
}

#[test]
fn the_scan_sees_an_upward_import_and_a_cycle() {
    // The checks themselves, on a tree made for it: `low` imports `high` (upward), and `a` and
    // `b` import each other.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("high")).expect("mkdir");
    std::fs::create_dir_all(src.join("low")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "pub mod high;\npub mod low;\n").expect("write");
    std::fs::write(src.join("high/mod.rs"), "pub mod a;\npub mod b;\nuse crate::low::Thing;\n").expect("write");
    std::fs::write(src.join("high/a.rs"), "use super::b::{B, other::X};\n").expect("write");
    std::fs::write(src.join("high/b.rs"), "use crate::high::a::A;\n").expect("write");
    std::fs::write(src.join("low/mod.rs"), "pub struct Thing;\nfn f() { crate::high::a::go(); }\n").expect("write");
    let g = graph(src);
    let layers = vec![vec!["high".to_string()], vec!["low".to_string()]];
    let bad = upward(&g, &layers);
    assert_eq!(bad, vec!["low imports high::a (a layer above or beside it)".to_string()]);
    let c = cycle(&g).expect("a <-> b is a cycle");
    let shown: Vec<String> = c.iter().map(|m| show(m)).collect();
    assert!(shown.contains(&"high::a".to_string()) && shown.contains(&"high::b".to_string()), "{shown:?}");
    // Side by side in one layer is not allowed either.
    let flat = vec![vec!["high".to_string(), "low".to_string()]];
    assert_eq!(upward(&g, &flat).len(), 2);
}
