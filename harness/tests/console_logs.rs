//! Every console pattern `console::scan` knows has a real kernel log in
//! `tests/data/console/*.log`, in the manner of syzkaller's pkg/report
//! testdata: header lines `TITLE: …` (or `TITLE: none`), `KIND: …`,
//! optionally `FUNCTION: …`, a blank line, then the raw console as captured
//! from a real guest (`cmafuzz replay --console-log`, or the console tail a
//! dead guest leaves).

use cmafuzz::oracle::console;
use std::path::PathBuf;

struct Case {
    name: String,
    title: String,
    kind: Option<String>,
    function: Option<String>,
    log: String,
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/console");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            let (head, log) = text.split_once("\n\n").expect("header, blank line, log");
            let field = |k: &str| head.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
            Case {
                name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                title: field("TITLE:").expect("TITLE header"),
                kind: field("KIND:"),
                function: field("FUNCTION:"),
                log: log.to_string(),
            }
        })
        .collect()
}

#[test]
fn every_real_console_log_gives_its_recorded_verdict() {
    let cases = cases();
    assert!(cases.len() >= 5, "expected real logs for clean, panic, oops, BUG and WARN; got {}", cases.len());
    for c in cases {
        let reports = console::scan(&c.log);
        if c.title == "none" {
            assert!(reports.is_empty(), "{}: expected no report, got {reports:?}", c.name);
            continue;
        }
        let first = reports.first().unwrap_or_else(|| panic!("{}: no report found", c.name));
        assert_eq!(first.title, c.title, "{}", c.name);
        if let Some(k) = &c.kind {
            assert_eq!(first.kind.as_str(), k, "{}", c.name);
        }
        assert_eq!(first.function, c.function, "{}", c.name);
        assert!(!first.excerpt.is_empty());
        // One event, one report: the Oops after a BUG and the panic after an Oops are part of it.
        assert_eq!(reports.len(), 1, "{}: {:?}", c.name, reports.iter().map(|r| &r.title).collect::<Vec<_>>());
    }
}

#[test]
fn every_report_kind_the_scanner_emits_for_crashes_has_a_log() {
    let kinds: Vec<String> = cases().iter().filter_map(|c| c.kind.clone()).collect();
    for k in ["PANIC", "OOPS", "BUG", "WARNING"] {
        assert!(kinds.iter().any(|x| x == k), "no real console log for {k}");
    }
}
