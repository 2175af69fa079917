//! The status line, as a LibAFL monitor (it runs in the broker and sees every client's stats):
//! run time, execs, exec/s, kernel ops/s, corpus size, coverage, findings (new / total) and
//! restarts, every few seconds; `--json-stats FILE` appends the same as JSON lines, and
//! `OUT/stats.json` always holds the last one and `OUT/stats.jsonl` all of them (the campaign over
//! time, for `cmafuzz report`). Corpus and findings are counted on disk, so
//! several clients sharing `OUT` are counted once.

use libafl::monitors::stats::{ClientStatsManager, UserStatsValue};
use libafl::monitors::Monitor;
use libafl::Error;
use libafl_bolts::ClientId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// User-stat name prefix of an area's op count (`area_ops:NAME`).
pub const AREA_OPS: &str = "area_ops:";
/// User-stat name prefix of an area's finding count (`area_findings:NAME`).
pub const AREA_FINDINGS: &str = "area_findings:";
/// User stat a client sends last, as it exits: the status is written then, due or not.
pub const EXITED: &str = "exited";

/// What a campaign did with one area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaStats {
    /// Ops that named the area.
    pub ops: u64,
    /// Programs naming the area that gave a finding (repeats included).
    pub findings: u64,
}

/// One status line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub run_time_s: u64,
    pub clients: u64,
    pub execs: u64,
    pub execs_per_sec: f64,
    pub kernel_ops: u64,
    pub kernel_ops_per_sec: f64,
    pub corpus: u64,
    /// Queue entries the clients culled so far ([`super::corpus::cull`]).
    #[serde(default)]
    pub culled: u64,
    /// Model-state map entries reached (max over clients).
    pub coverage_model: u64,
    /// Kernel-coverage map entries reached (max over clients; 0 until the agent collects KCOV).
    pub coverage_kcov: u64,
    /// With `--focus`: focus sites reached (max over clients) of `focus_sites`.
    #[serde(default)]
    pub focus_reached: u64,
    #[serde(default)]
    pub focus_sites: u64,
    pub findings_new: u64,
    pub findings_total: u64,
    /// Times a unsuppressed-verdict-producing program was seen (repeats included).
    pub finding_hits: u64,
    pub restarts: u64,
    pub harness_errors: u64,
    /// Per area, by name (every client's sum): an area no op names shows as missing or 0.
    #[serde(default)]
    pub areas: BTreeMap<String, AreaStats>,
}

impl Status {
    pub fn line(&self) -> String {
        let t = self.run_time_s;
        format!(
            "[cmafuzz] {}h{:02}m{:02}s clients {} execs {} ({:.1}/s) kernel ops {} ({:.0}/s) corpus {} (culled {}) coverage model {} kcov {} findings {} new / {} total restarts {} harness-errors {}",
            t / 3600,
            t / 60 % 60,
            t % 60,
            self.clients,
            self.execs,
            self.execs_per_sec,
            self.kernel_ops,
            self.kernel_ops_per_sec,
            self.corpus,
            self.culled,
            self.coverage_model,
            self.coverage_kcov,
            self.findings_new,
            self.findings_total,
            self.restarts,
            self.harness_errors,
        ) + &self.focus_text()
            + &self.areas_text()
    }

    /// ` focus REACHED/SITES` (empty without a focus).
    fn focus_text(&self) -> String {
        if self.focus_sites == 0 {
            return String::new();
        }
        format!(" focus {}/{}", self.focus_reached, self.focus_sites)
    }

    /// ` areas NAME ops/findings …` (empty without areas).
    fn areas_text(&self) -> String {
        if self.areas.is_empty() {
            return String::new();
        }
        let list: Vec<String> = self.areas.iter().map(|(n, a)| format!("{n} {}/{}", a.ops, a.findings)).collect();
        format!(" areas (ops/findings) {}", list.join(" "))
    }
}

/// Signatures (directory names) in `OUT/findings`.
pub fn finding_dirs(out: &Path) -> BTreeSet<String> {
    std::fs::read_dir(out.join("findings"))
        .map(|rd| {
            rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect()
        })
        .unwrap_or_default()
}

/// Programs in `OUT/corpus`.
pub fn corpus_files(out: &Path) -> u64 {
    std::fs::read_dir(out.join("corpus"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && n.ends_with(".prog")
                })
                .count() as u64
        })
        .unwrap_or(0)
}

pub struct StatusMonitor {
    out: PathBuf,
    json: Option<PathBuf>,
    interval: Duration,
    last: Option<Instant>,
    start: Instant,
    known: BTreeSet<String>,
    at_start: usize,
    /// Clients seen exiting, so each exit writes the status once.
    exited: u64,
    /// Sites of the campaign's focus (0: none).
    focus_sites: u64,
}

impl StatusMonitor {
    pub fn new(out: &Path, json: Option<PathBuf>, interval: Duration) -> Self {
        let known = finding_dirs(out);
        StatusMonitor {
            out: out.to_path_buf(),
            json,
            interval,
            last: None,
            start: Instant::now(),
            at_start: known.len(),
            known,
            exited: 0,
            focus_sites: 0,
        }
    }

    /// A campaign steered towards `sites` focus sites shows how many it reached.
    pub fn with_focus_sites(mut self, sites: u64) -> Self {
        self.focus_sites = sites;
        self
    }

    fn status(&self, csm: &mut ClientStatsManager) -> Status {
        // LibAFL's own execution counts lag (or stay 0) in the broker: the clients report theirs.
        let libafl_execs: u64 = csm.client_stats().values().map(|c| c.executions()).sum();
        let clients = csm.client_stats().values().filter(|c| c.enabled()).count() as u64;
        let run = self.start.elapsed().as_secs_f64().max(1e-3);
        let mut s = Status { run_time_s: run as u64, clients, execs: libafl_execs, ..Status::default() };
        let mut own_execs = 0;
        for cs in csm.client_stats().values() {
            for (name, us) in cs.user_stats() {
                match (name.as_ref(), us.value()) {
                    ("execs", UserStatsValue::Number(n)) => own_execs += n,
                    ("kernel_ops", UserStatsValue::Number(n)) => s.kernel_ops += n,
                    ("restarts", UserStatsValue::Number(n)) => s.restarts += n,
                    ("harness_errors", UserStatsValue::Number(n)) => s.harness_errors += n,
                    ("culled", UserStatsValue::Number(n)) => s.culled += n,
                    ("finding_hits", UserStatsValue::Number(n)) => s.finding_hits += n,
                    ("model-state", UserStatsValue::Number(a)) => s.coverage_model = s.coverage_model.max(*a),
                    ("kcov", UserStatsValue::Number(a)) => s.coverage_kcov = s.coverage_kcov.max(*a),
                    ("focus", UserStatsValue::Number(a)) => s.focus_reached = s.focus_reached.max(*a),
                    (n, UserStatsValue::Number(v)) if n.starts_with(AREA_OPS) => {
                        s.areas.entry(n[AREA_OPS.len()..].to_string()).or_default().ops += v;
                    }
                    (n, UserStatsValue::Number(v)) if n.starts_with(AREA_FINDINGS) => {
                        s.areas.entry(n[AREA_FINDINGS.len()..].to_string()).or_default().findings += v;
                    }
                    _ => {}
                }
            }
        }
        s.focus_sites = self.focus_sites;
        s.execs = s.execs.max(own_execs);
        s.execs_per_sec = s.execs as f64 / run;
        s.kernel_ops_per_sec = s.kernel_ops as f64 / run;
        s.corpus = corpus_files(&self.out);
        let dirs = finding_dirs(&self.out);
        s.findings_total = dirs.len() as u64;
        s.findings_new = dirs.len().saturating_sub(self.at_start) as u64;
        s
    }

    fn emit(&mut self, s: &Status) {
        println!("{}", s.line());
        let json = serde_json::to_string(s).unwrap_or_default();
        let history = self.out.join("stats.jsonl");
        for p in self.json.iter().chain(std::iter::once(&history)) {
            let r = std::fs::OpenOptions::new().create(true).append(true).open(p).and_then(|mut f| {
                writeln!(f, "{json}")?;
                f.flush()
            });
            if let Err(e) = r {
                eprintln!("cmafuzz fuzz: cannot append to {}: {e}", p.display());
            }
        }
        let _ = crate::findings::write_atomic(&self.out.join("stats.json"), json.as_bytes());
        for d in finding_dirs(&self.out) {
            if self.known.insert(d.clone()) {
                println!("[cmafuzz] new finding: {}", self.out.join("findings").join(&d).display());
            }
        }
    }
}

/// Clients that said they are exiting.
fn exited(csm: &mut ClientStatsManager) -> u64 {
    csm.client_stats()
        .values()
        .filter_map(|cs| match cs.user_stats().get(EXITED).map(|u| u.value()) {
            Some(UserStatsValue::Number(n)) => Some(*n),
            _ => None,
        })
        .sum()
}

impl Monitor for StatusMonitor {
    fn display(&mut self, csm: &mut ClientStatsManager, event_msg: &str, _sender: ClientId) -> Result<(), Error> {
        let due = self.last.map_or(true, |l| l.elapsed() >= self.interval);
        let exited = exited(csm);
        let exit = exited > self.exited;
        self.exited = exited;
        if !due && !exit && !event_msg.contains("Objective") {
            return Ok(());
        }
        self.last = Some(Instant::now());
        let s = self.status(csm);
        self.emit(&s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_every_figure() {
        let mut s = Status { run_time_s: 3725, execs: 10, findings_new: 1, findings_total: 3, ..Status::default() };
        s.areas.insert("hugetlb0".into(), AreaStats { ops: 7, findings: 2 });
        let l = s.line();
        assert!(l.contains("hugetlb0 7/2"), "{l}");
        assert!(l.contains("1h02m05s"), "{l}");
        assert!(l.contains("findings 1 new / 3 total"), "{l}");
        for w in ["execs", "kernel ops", "corpus", "coverage", "restarts"] {
            assert!(l.contains(w), "{w} missing: {l}");
        }
        let back: Status = serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("parses");
        assert_eq!(back, s);
    }

    #[test]
    fn corpus_and_findings_are_counted_on_disk_without_hidden_files() {
        let out = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(out.path().join("corpus")).expect("mkdir");
        std::fs::create_dir_all(out.path().join("findings/bitmap_x")).expect("mkdir");
        std::fs::create_dir_all(out.path().join("findings/.new-123")).expect("mkdir");
        std::fs::write(out.path().join("corpus/a.prog"), "observe\n").expect("write");
        std::fs::write(out.path().join("corpus/.a.prog"), "1").expect("write");
        assert_eq!(corpus_files(out.path()), 1);
        assert_eq!(finding_dirs(out.path()).len(), 1);
    }
}
