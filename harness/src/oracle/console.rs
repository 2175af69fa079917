//! Reads a kernel console log for signs of trouble: panic, Oops, BUG and
//! WARN. (Soft lockups and RCU stalls are not parsed: the target kernels have
//! no soft-lockup detector, and a stall outlasts the op timeout, so a hung
//! guest is reported by the channel's timeout instead.) Each report has a title in the manner of
//! syzkaller's `pkg/report` (kind + the function it happened in), which is
//! stable across runs and so usable for de-duplication, and the excerpt of
//! the log it came from. Every pattern here has a real console log in
//! `harness/tests/data/console/` with the verdict it must give.

use serde::Serialize;

/// What kind of trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Panic,
    Oops,
    Bug,
    Warning,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Panic => "PANIC",
            Kind::Oops => "OOPS",
            Kind::Bug => "BUG",
            Kind::Warning => "WARNING",
        }
    }
}

/// One problem found in the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub kind: Kind,
    /// `"WARNING in __alloc_pages"`, `"PANIC: cmafuzz test fixture: …"`.
    pub title: String,
    /// The function named by the report, where there is one.
    pub function: Option<String>,
    /// Up to 40 lines of the log starting at the report.
    pub excerpt: String,
}

/// Strips the `[    1.234567] ` printk timestamp.
fn body(line: &str) -> &str {
    let l = line.trim_end_matches('\r');
    if let Some(rest) = l.strip_prefix('[') {
        if let Some(end) = rest.find("] ") {
            if rest[..end].trim().parse::<f64>().is_ok() {
                return &rest[end + 2..];
            }
        }
    }
    l
}

/// `../src/mm/cma.c:446` → `mm/cma.c`: no line numbers or build-dir prefixes in titles.
fn strip_line(loc: &str) -> String {
    let file = loc.split(':').next().unwrap_or(loc);
    file.trim_start_matches("../src/").trim_start_matches("./").to_string()
}

/// `func+0x10/0x20` → `func`.
fn func_of(sym: &str) -> Option<String> {
    let s = sym.trim();
    let name = s.split('+').next()?.trim();
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    ok.then(|| name.to_string())
}

/// The function from an Oops's program counter line: arm32 `PC is at f+0x…`,
/// arm64 `pc : f+0x…/0x…`.
fn oops_function(lines: &[&str]) -> Option<String> {
    lines.iter().take(60).find_map(|l| {
        let b = body(l);
        b.strip_prefix("PC is at ").or_else(|| b.strip_prefix("pc : ")).and_then(func_of)
    })
}

/// Every report in `log`, in order. A panic that follows an Oops or BUG is
/// part of it and not reported again.
pub fn scan(log: &str) -> Vec<Report> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<Report> = Vec::new();
    let excerpt = |i: usize| lines[i..(i + 40).min(lines.len())].join("\n");
    for (i, line) in lines.iter().enumerate() {
        let b = body(line);
        let found = if let Some(rest) = b.strip_prefix("Kernel panic - not syncing: ") {
            if out.iter().any(|r| matches!(r.kind, Kind::Oops | Kind::Bug)) {
                None
            } else {
                let msg = rest.trim();
                Some((Kind::Panic, format!("PANIC: {msg}"), None))
            }
        } else if b.starts_with("Internal error: Oops") || b.starts_with("Unable to handle kernel") {
            // The Oops line that follows "Unable to handle…" or "kernel BUG at…" is the same event.
            if out.last().is_some_and(|r| matches!(r.kind, Kind::Oops | Kind::Bug) && r.excerpt.contains(b)) {
                None
            } else {
                let f = oops_function(&lines[i..]);
                let what = if b.contains("NULL pointer") { "null-ptr-deref" } else { "Oops" };
                let title = match &f {
                    Some(f) => format!("OOPS: {what} in {f}"),
                    None => format!("OOPS: {what}"),
                };
                Some((Kind::Oops, title, f))
            }
        } else if let Some(rest) = b.strip_prefix("kernel BUG at ") {
            let f = oops_function(&lines[i..]);
            // By function, not file:line, so the title survives unrelated patches.
            let title = match &f {
                Some(f) => format!("BUG in {f}"),
                None => format!("BUG at {}", strip_line(rest.trim_end_matches('!').trim())),
            };
            Some((Kind::Bug, title, f))
        } else if let Some(rest) = b.strip_prefix("WARNING: ") {
            // "WARNING: CPU: 0 PID: 1 at mm/page_alloc.c:5634 __alloc_pages+0x1d4/0x2b0"
            // or a bare "WARNING: <message>" (lockdep and friends).
            match rest.split_once(" at ") {
                Some((_, loc)) if rest.starts_with("CPU:") => {
                    let mut parts = loc.split_whitespace();
                    let file = parts.next().unwrap_or("?").to_string();
                    let f = parts.next().and_then(func_of);
                    let title = match &f {
                        Some(f) => format!("WARNING in {f}"),
                        None => format!("WARNING at {}", strip_line(&file)),
                    };
                    Some((Kind::Warning, title, f))
                }
                // 7.x: "WARNING: ../src/mm/page_alloc.c:5336 at __alloc_frozen_pages_noprof+0xb1c/0xc74, CPU#0: init/1"
                Some((file, loc)) if loc.contains(", CPU#") => {
                    let f = loc.split(',').next().and_then(func_of);
                    let title = match &f {
                        Some(f) => format!("WARNING in {f}"),
                        None => format!("WARNING at {}", strip_line(file.trim())),
                    };
                    Some((Kind::Warning, title, f))
                }
                _ => Some((Kind::Warning, format!("WARNING: {}", rest.trim()), None)),
            }
        } else if let Some(rest) = b.strip_prefix("BUG: ") {
            // "BUG: Bad page state in process …", "BUG: sleeping function called from invalid context at …"
            let what = rest.split(" in process").next().unwrap_or(rest);
            let what = what.split(" at ").next().unwrap_or(what).trim();
            Some((Kind::Bug, format!("BUG: {what}"), None))
        } else {
            None
        };
        if let Some((kind, title, function)) = found {
            out.push(Report { kind, title, function, excerpt: excerpt(i) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_7x_warning_header_names_its_function() {
        let r = scan(
            "[    1.0] WARNING: ../src/mm/page_alloc.c:5336 at __alloc_frozen_pages_noprof+0xb1c/0xc74, CPU#0: init/1\n",
        );
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].title, "WARNING in __alloc_frozen_pages_noprof");
    }

    #[test]
    fn timestamps_are_stripped_but_other_brackets_kept() {
        assert_eq!(body("[    0.124257] WARNING: x"), "WARNING: x");
        assert_eq!(body("[not a time] WARNING"), "[not a time] WARNING");
    }

    #[test]
    fn locations_lose_line_numbers_and_build_prefixes() {
        assert_eq!(strip_line("../src/mm/cma.c:446"), "mm/cma.c");
        assert_eq!(strip_line("mm/page_alloc.c"), "mm/page_alloc.c");
    }

    #[test]
    fn symbol_offsets_are_cut_from_function_names() {
        assert_eq!(func_of("__alloc_pages+0x1d4/0x2b0").as_deref(), Some("__alloc_pages"));
        assert_eq!(func_of("+0x10"), None);
    }

    #[test]
    fn a_clean_boot_log_has_no_report() {
        let log = "[    0.0] Booting Linux\n[    0.2] cma: Reserved 32 MiB at 0x7e000000\n[    0.3] Run /init as init process\n";
        assert!(scan(log).is_empty());
    }
}
