//! The campaign page: one HTML file with its CSS and SVG inline and no script, and the JSON
//! summary beside it (the same findings table, stats and coverage, for machines).

use super::coverage::{self, CoverageSection};
use super::load::{Campaign, Finding, RunRecord, VerdictRecord};
use super::svg::{self, PageMaps};
use super::{esc, utc};
use crate::backend::kernel::boot::KernelChoice;
use crate::diff::{BackendChoice, Executor};
use crate::oracle::compare::show_outcome;
use crate::oracle::Suppressions;
use crate::targets;
use reference_impl::observation::{Observation, PageAddr};
use reference_impl::outcome::Outcome;
use reference_impl::program::{Program, ResolvedOp, ResolvedProgram};
use reference_impl::units::{Handle, Pfn};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// At most this many pages of one buffer are drawn.
const MAX_BUFFER_PAGES: u64 = 256;

/// One side's run, recorded or replayed.
struct Side {
    outcomes: Vec<Outcome>,
    observations: Vec<(usize, Observation)>,
    end: Observation,
}

impl From<RunRecord> for Side {
    fn from(r: RunRecord) -> Self {
        Side { outcomes: r.outcomes, observations: r.observations, end: r.end }
    }
}

impl Side {
    /// The observation of the `observe` op at `at`, or the end state for `None`.
    fn at(&self, at: Option<usize>) -> &Observation {
        at.and_then(|i| self.observations.iter().find(|(j, _)| *j == i).map(|(_, o)| o)).unwrap_or(&self.end)
    }
}

/// The model's replay of a finding's reproducer: the side and the resolved program.
struct ModelReplay {
    side: Side,
    resolved: ResolvedProgram,
}

/// Model-only executors, one per target (no VM is booted for a report page).
#[derive(Default)]
struct Models {
    by_target: HashMap<String, Option<Executor>>,
}

impl Models {
    fn replay(&mut self, target: &str, text: &str) -> Result<ModelReplay, String> {
        let ex = self.by_target.entry(target.to_string()).or_insert_with(|| {
            let t = targets::find(Some(target)).ok()?;
            let sup = Suppressions::builtin().ok()?;
            Executor::start(&t, BackendChoice::Model, &KernelChoice::default(), sup, &mut |_| {}).ok()
        });
        let ex = ex.as_mut().ok_or_else(|| format!("no model for target {target}"))?;
        let prog = Program::parse(text).map_err(|e| e.to_string())?;
        let e = ex.execute(&prog).map_err(|e| e.to_string())?;
        let run = e.reference.ok_or("the model did not run")?;
        Ok(ModelReplay {
            side: Side { outcomes: run.outcomes, observations: run.observations, end: run.end },
            resolved: e.resolved,
        })
    }
}

/// The op lines of a program text (comments and blank lines left out), as `Program` numbers
/// its ops.
fn op_lines(text: &str) -> Vec<String> {
    match Program::parse(text) {
        Ok(p) => p
            .to_text()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect(),
        Err(_) => {
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
        }
    }
}

fn reliability_text(f: &Finding) -> String {
    match &f.meta.reliability {
        Some(r) => format!("{}/{} {}", r.reproduced, r.runs, r.class),
        None => "not rated".into(),
    }
}

fn build_text(f: &Finding) -> String {
    let mut s = f.meta.kernel_hash.clone().unwrap_or_else(|| "-".into());
    for p in &f.meta.kernel_patches {
        let name = std::path::Path::new(p).file_name().map_or(p.clone(), |n| n.to_string_lossy().into_owned());
        s.push_str(&format!(" + {name}"));
    }
    s
}

/// The page and the JSON summary of `c`.
pub fn render(c: &Campaign) -> (String, serde_json::Value) {
    let mut models = Models::default();
    let mut h = String::new();
    let title = format!("cmafuzz report: {}", c.out.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<p class=\"how\">Model side: each reproducer replayed on the reference model when this page was made. Kernel side: what the campaign recorded when it ran the program (no VM was booted for this page).</p>"
    );
    findings_table(&mut h, c);
    stats_section(&mut h, c);
    let cov = coverage::campaign_functions(&c.out);
    coverage_section(&mut h, &cov);
    suppressed_section(&mut h, c);
    h.push_str("<h2 id=\"findings-detail\">Findings</h2>\n");
    for (i, f) in c.findings.iter().enumerate() {
        finding_section(&mut h, i, f, &mut models);
    }
    h.push_str("</body></html>\n");
    let json = json!({
        "out": c.out.display().to_string(),
        "findings": c.findings.iter().map(|f| json!({
            "dir": f.dir.display().to_string(),
            "signature": f.meta.signature,
            "kind": f.meta.kind,
            "count": f.meta.count,
            "first_seen": f.meta.first_seen,
            "last_seen": f.meta.last_seen,
            "reliability": f.meta.reliability.as_ref().map(|r| json!({"reproduced": r.reproduced, "runs": r.runs, "class": r.class})),
            "target": f.meta.target,
            "kernel_hash": f.meta.kernel_hash,
            "kernel_patches": f.meta.kernel_patches,
            "original_ops": f.meta.original_ops,
            "min_ops": f.meta.min_ops,
            "minimized": f.minimized.is_some(),
            "suppressed": f.all_verdicts.iter().filter_map(|v| v.suppressed.as_ref().map(|s| json!({"signature": v.signature, "id": s.id, "class": s.class, "reason": s.reason}))).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "stats": c.stats.iter().map(|s| json!({"run_time_s": s.run_time_s, "execs": s.execs, "execs_per_sec": s.execs_per_sec, "corpus": s.corpus, "coverage_model": s.coverage_model, "coverage_kcov": s.coverage_kcov, "findings_total": s.findings_total})).collect::<Vec<_>>(),
        "coverage": cov,
    });
    (h, json)
}

fn findings_table(h: &mut String, c: &Campaign) {
    h.push_str("<h2>Findings table</h2>\n");
    if c.findings.is_empty() {
        h.push_str("<p>No findings.</p>\n");
        return;
    }
    h.push_str("<table class=\"findings\"><thead><tr><th>signature</th><th>kind</th><th>count</th><th>first seen</th><th>last seen</th><th>reliability</th><th>target</th><th>kernel build</th><th>reproducer ops</th></tr></thead><tbody>\n");
    for (i, f) in c.findings.iter().enumerate() {
        let m = &f.meta;
        let ops = match (m.original_ops, m.min_ops) {
            (Some(o), Some(n)) if o > 0 => format!("{n} (from {o})"),
            _ => op_lines(f.best_reproducer()).len().to_string(),
        };
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#f{i}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.signature),
            esc(&m.kind),
            m.count,
            utc(m.first_seen),
            utc(m.last_seen),
            esc(&reliability_text(f)),
            esc(&m.target),
            esc(&build_text(f)),
            esc(&ops)
        );
    }
    h.push_str("</tbody></table>\n");
}

fn stats_section(h: &mut String, c: &Campaign) {
    h.push_str("<h2>Campaign over time</h2>\n");
    if c.stats.is_empty() {
        h.push_str("<p>No stats recorded (OUT/stats.jsonl and OUT/stats.json are missing).</p>\n");
        return;
    }
    let series = |f: &dyn Fn(&super::load::StatsPoint) -> f64| -> Vec<(f64, f64)> {
        c.stats.iter().map(|s| (s.run_time_s as f64, f(s))).collect()
    };
    h.push_str("<div class=\"charts\">");
    h.push_str(&svg::line_chart("execs/s", &series(&|s| s.execs_per_sec)));
    h.push_str(&svg::line_chart("coverage: model-state entries", &series(&|s| s.coverage_model as f64)));
    h.push_str(&svg::line_chart("coverage: KCOV entries", &series(&|s| s.coverage_kcov as f64)));
    h.push_str(&svg::line_chart("corpus", &series(&|s| s.corpus as f64)));
    h.push_str(&svg::line_chart("findings", &series(&|s| s.findings_total as f64)));
    h.push_str("</div>\n");
    let _ = writeln!(h, "<p>{} status lines.</p>", c.stats.len());
}

fn coverage_section(h: &mut String, cov: &CoverageSection) {
    h.push_str("<h2>Kernel coverage per function</h2>\n");
    match cov {
        CoverageSection::Unavailable(why) => {
            let _ = writeln!(h, "<p class=\"unavailable\">Not available: {}</p>", esc(why));
        }
        CoverageSection::Functions { vmlinux, pcs, functions } => {
            let _ = writeln!(
                h,
                "<p>{pcs} distinct KCOV PCs, symbolized against <code>{}</code>: the functions of the instrumented files, with the call sites the campaign reached.</p>",
                esc(&vmlinux.display().to_string())
            );
            let mut files: BTreeMap<&str, Vec<&coverage::FunctionCoverage>> = BTreeMap::new();
            for f in functions {
                files.entry(f.file.as_str()).or_default().push(f);
            }
            h.push_str("<table class=\"coverage\"><thead><tr><th>file</th><th>functions reached</th><th>sites hit</th><th></th></tr></thead><tbody>\n");
            for (file, fs) in &files {
                let (hit, sites) = fs.iter().fold((0, 0), |(a, b), f| (a + f.hit, b + f.sites));
                let reached = fs.iter().filter(|f| f.hit > 0).count();
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{reached}/{}</td><td>{hit}/{sites}</td><td>{}</td></tr>",
                    esc(file),
                    fs.len(),
                    bar(hit, sites)
                );
            }
            h.push_str("</tbody></table>\n");
            for (file, fs) in &files {
                let _ = write!(
                    h,
                    "<details><summary>{}</summary><table class=\"coverage\"><thead><tr><th>function</th><th>sites hit</th><th></th></tr></thead><tbody>",
                    esc(file)
                );
                for f in fs {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}/{}</td><td>{}</td></tr>",
                        esc(&f.function),
                        f.hit,
                        f.sites,
                        bar(f.hit, f.sites)
                    );
                }
                h.push_str("</tbody></table></details>\n");
            }
        }
    }
}

/// A 100-pixel bar filled `hit / sites` of the way.
fn bar(hit: u64, sites: u64) -> String {
    let pct = if sites == 0 { 0.0 } else { hit as f64 * 100.0 / sites as f64 };
    format!(
        "<svg width=\"100\" height=\"8\"><rect width=\"100\" height=\"8\" fill=\"#eceff1\"/><rect width=\"{pct:.0}\" height=\"8\" fill=\"#2e7d32\"/></svg>"
    )
}

fn suppressed_section(h: &mut String, c: &Campaign) {
    h.push_str("<h2>Suppressed verdicts</h2>\n");
    // (signature, suppression id) -> (verdict, findings it was seen in)
    let mut seen: BTreeMap<(String, String), (&VerdictRecord, u64)> = BTreeMap::new();
    for f in &c.findings {
        for v in &f.all_verdicts {
            if let Some(s) = &v.suppressed {
                seen.entry((v.signature.clone(), s.id.clone())).or_insert((v, 0)).1 += 1;
            }
        }
    }
    if seen.is_empty() {
        h.push_str("<p>None in the findings' programs.</p>\n");
        return;
    }
    h.push_str("<table class=\"suppressed\"><thead><tr><th>signature</th><th>suppression</th><th>class</th><th>reason</th><th>in findings</th></tr></thead><tbody>\n");
    for ((sig, id), (v, n)) in &seen {
        let s = v.suppressed.as_ref();
        let mut reason = s.map_or(String::new(), |s| s.reason.clone());
        if let Some(k) = s.and_then(|s| s.known_issue.as_ref()) {
            reason.push_str(&format!(" ({k})"));
        }
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{n}</td></tr>",
            esc(sig),
            esc(id),
            esc(s.map_or("", |s| s.class.as_str())),
            esc(&reason)
        );
    }
    h.push_str("</tbody></table>\n");
}

/// What maps each of the `pages` pages from `first` in `obs` (model addresses resolved
/// through `handles`).
fn page_maps(obs: &Observation, handles: &BTreeMap<Handle, Pfn>, first: u64, pages: u64) -> Vec<PageMaps> {
    let mut v = vec![PageMaps::new(); pages as usize];
    for r in &obs.maps {
        let start = match r.first {
            PageAddr::Pfn(p) => p.0,
            PageAddr::Buffer { handle, index } => match handles.get(&handle) {
                Some(p) => p.0.saturating_add(index),
                None => continue,
            },
        };
        let (lo, hi) = (start.max(first), start.saturating_add(r.pages).min(first + pages));
        for p in lo..hi {
            let slot = &mut v[(p - first) as usize];
            if !slot.contains(&(r.kind, r.mem)) {
                slot.push((r.kind, r.mem));
            }
        }
    }
    v
}

fn finding_section(h: &mut String, i: usize, f: &Finding, models: &mut Models) {
    let m = &f.meta;
    let _ = writeln!(h, "<section class=\"finding\" id=\"f{i}\"><h3>{}</h3>", esc(&m.signature));
    let _ = writeln!(
        h,
        "<p>{} &middot; seen {} times &middot; {} &middot; target {} &middot; kernel build {} &middot; directory <code>{}</code></p>",
        esc(&m.kind),
        m.count,
        esc(&reliability_text(f)),
        esc(&m.target),
        esc(&build_text(f)),
        esc(&f.dir.display().to_string())
    );
    if let Some(min) = &f.minimized {
        let runs = m.min_runs.map_or(String::new(), |r| format!(", {r} runs to minimize"));
        let _ = writeln!(h, "<h4>Minimized reproducer{}</h4><pre class=\"prog\">{}</pre>", esc(&runs), esc(min));
        let _ = writeln!(
            h,
            "<details><summary>Original reproducer</summary><pre class=\"prog\">{}</pre></details>",
            esc(&f.reproducer)
        );
    } else {
        let _ = writeln!(h, "<h4>Reproducer</h4><pre class=\"prog\">{}</pre>", esc(&f.reproducer));
    }
    let replay = models.replay(&m.target, &f.reproducer);
    let (model, resolved, model_note): (Option<Side>, Option<ResolvedProgram>, String) = match replay {
        Ok(r) => (Some(r.side), Some(r.resolved), "replayed on the model now".into()),
        Err(e) => {
            (f.model.clone().map(Side::from), None, format!("model replay failed ({e}); recorded model side shown"))
        }
    };
    let kernel: Option<Side> = f.kernel.clone().map(Side::from);
    // The op table.
    let ops = op_lines(&f.reproducer);
    let _ = writeln!(
        h,
        "<h4>Model vs kernel, op by op</h4><p class=\"note\">Model: {}. Kernel: {}.</p>",
        esc(&model_note),
        if kernel.is_some() { "recorded by the campaign" } else { "not recorded" }
    );
    h.push_str("<table class=\"ops\"><thead><tr><th>#</th><th>op</th><th>model</th><th>kernel</th><th>verdicts</th></tr></thead><tbody>\n");
    let n = model.as_ref().map_or(0, |s| s.outcomes.len()).max(kernel.as_ref().map_or(0, |s| s.outcomes.len()));
    for j in 0..n {
        let show = |s: &Option<Side>| s.as_ref().and_then(|s| s.outcomes.get(j)).map_or("-".to_string(), show_outcome);
        let at: Vec<&str> = f.all_verdicts.iter().filter(|v| v.op_index == Some(j)).map(|v| v.kind.as_str()).collect();
        let class = if at.is_empty() { "" } else { " class=\"diverges\"" };
        let _ = writeln!(
            h,
            "<tr{class}><td>{j}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(ops.get(j).map_or("?", String::as_str)),
            esc(&show(&model)),
            esc(&show(&kernel)),
            esc(&at.join(", "))
        );
    }
    h.push_str("</tbody></table>\n");
    // The verdicts.
    h.push_str("<h4>Verdicts</h4><ul class=\"verdicts\">");
    for v in &f.all_verdicts {
        let tag = match &v.suppressed {
            Some(s) => format!("suppressed ({}, {})", s.id, s.class),
            None => "VERDICT".into(),
        };
        let op = v.op_index.map_or(String::new(), |o| format!(" at op #{o}"));
        let _ = write!(
            h,
            "<li><b>{}</b> {} [{}]{}: {}</li>",
            esc(&tag),
            esc(&v.kind),
            esc(&v.signature),
            esc(&op),
            esc(&v.detail)
        );
    }
    h.push_str("</ul>\n");
    let listed = |v: &[serde_json::Value]| -> String {
        v.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), String::from)).collect::<Vec<_>>().join(", ")
    };
    if !m.alternates.is_empty() {
        let _ = writeln!(h, "<p>Also seen as: {}</p>", esc(&listed(&m.alternates)));
    }
    if !m.merged.is_empty() {
        let _ = writeln!(h, "<p>Merged into this finding: {}</p>", esc(&listed(&m.merged)));
    }
    if let Some(ms) = &m.min_signature {
        let _ = writeln!(h, "<p>The minimized reproducer gives: {}</p>", esc(ms));
    }
    if !m.context.is_empty() {
        h.push_str("<h4>What followed in the same program (context)</h4><ul class=\"context\">");
        for c in &m.context {
            let op = c.op_index.map_or(String::new(), |o| format!("op #{o}: "));
            let _ = write!(h, "<li>{}{} [{}] {}</li>", esc(&op), esc(&c.kind), esc(&c.signature), esc(&c.detail));
        }
        h.push_str("</ul>\n");
    }
    // Which state to draw: the first `observe` at or after the first verdict's op, else the end.
    // A verdict on no op is about the end state.
    let first_op = f.verdict.as_ref().and_then(|v| v.op_index);
    let obs_at = first_op.and_then(|op| {
        model.as_ref().or(kernel.as_ref()).and_then(|s| s.observations.iter().map(|(j, _)| *j).find(|j| *j >= op))
    });
    let where_ = obs_at.map_or("at the end of the program".to_string(), |j| format!("at op #{j} (observe)"));
    let (mo, ko) = (model.as_ref().map(|s| s.at(obs_at)), kernel.as_ref().map(|s| s.at(obs_at)));
    let _ = writeln!(h, "<h4>Bitmaps {}</h4>", esc(&where_));
    let mut names: Vec<&str> =
        mo.iter().chain(ko.iter()).flat_map(|o| o.areas.iter().map(|a| a.name.as_str())).collect();
    names.dedup();
    let mut shown = Vec::new();
    for name in names {
        if shown.contains(&name) {
            continue;
        }
        shown.push(name);
        let ma = mo.and_then(|o| o.areas.iter().find(|a| a.name == name));
        let ka = ko.and_then(|o| o.areas.iter().find(|a| a.name == name));
        h.push_str(&svg::area_bitmaps(name, ma, ka));
    }
    // The buffers' pages.
    let _ = writeln!(h, "<h4>Buffers' page mappings {}</h4>", esc(&where_));
    h.push_str(&svg::legend());
    let kh = match (&resolved, &kernel) {
        (Some(r), Some(k)) => crate::oracle::compare::handle_pfns(r, &k.outcomes),
        _ => BTreeMap::new(),
    };
    let mh = match (&resolved, &model) {
        (Some(r), Some(s)) => crate::oracle::compare::handle_pfns(r, &s.outcomes),
        _ => BTreeMap::new(),
    };
    // The model's buffer-relative pages sit where the kernel put the buffer.
    let mut model_handles = mh.clone();
    model_handles.extend(kh.iter().map(|(a, b)| (*a, *b)));
    let mut drew = 0;
    let allocs = kernel.as_ref().or(model.as_ref()).map(|s| s.outcomes.clone()).unwrap_or_default();
    for (j, o) in allocs.iter().enumerate() {
        let Outcome::Allocated { pfn, pages } = o else { continue };
        let kind = resolved.as_ref().and_then(|r| r.ops.get(j)).map_or("allocation", |op| match op {
            ResolvedOp::CmaAlloc { .. } => "cma_alloc",
            ResolvedOp::DmaAlloc { .. } => "dma_alloc",
            _ => "allocation",
        });
        let shown_pages = pages.0.min(MAX_BUFFER_PAGES);
        let label = format!(
            "op #{j} {kind}: pfn {:#x}, {} pages{}",
            pfn.0,
            pages.0,
            if shown_pages < pages.0 { format!(" (first {shown_pages} drawn)") } else { String::new() }
        );
        let mp = mo.map(|o| page_maps(o, &model_handles, pfn.0, shown_pages));
        let kp = ko.map(|o| page_maps(o, &kh, pfn.0, shown_pages));
        h.push_str(&svg::buffer_maps(&label, mp.as_deref(), kp.as_deref()));
        drew += 1;
    }
    if drew == 0 {
        h.push_str("<p>No buffer was allocated at a known pfn.</p>\n");
    }
    if !f.console.trim().is_empty() {
        let _ = writeln!(
            h,
            "<details><summary>Console excerpt</summary><pre class=\"console\">{}</pre></details>",
            esc(&f.console)
        );
    }
    h.push_str("</section>\n");
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#263238;max-width:1100px}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #cfd8dc;padding:2px 6px;font-size:13px;text-align:left;vertical-align:top}\
th{background:#eceff1}tr.diverges td{background:#ffebee}pre{background:#f5f5f5;padding:6px;overflow:auto;font-size:12px}\
figure{margin:4px 0 10px 0}figcaption{font-size:12px;color:#455a64}.charts{display:flex;flex-wrap:wrap;gap:12px}\
section.finding{border-top:2px solid #90a4ae;margin-top:2em}.note,.how{font-size:13px;color:#546e7a}.unavailable{color:#8d6e63}\
h4 small{font-weight:normal;color:#607d8b}";

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;

    /// A finding as triage writes it (reliability, context, a minimized reproducer), with no
    /// `observations.json`: the page is made from the model alone, with no VM.
    fn triaged_finding(out: &std::path::Path) {
        let d = out.join("findings/bitmap_reserved");
        std::fs::create_dir_all(&d).expect("mkdir");
        let meta = json!({
            "signature": "bitmap:reserved", "kind": "bitmap", "target": "arm32-6.1",
            "kernel_hash": "abc", "kernel_patches": ["bugs/<b>.patch"], "count": 4,
            "first_seen": 1_700_000_000u64, "last_seen": 1_700_000_100u64,
            "context": [{"op_index": 3, "signature": "layout:cma_alloc:x", "kind": "layout", "detail": "follows"}],
            "reliability": {"reproduced": 3, "runs": 3, "class": "reliable"},
            "min_runs": 17, "original_ops": 40, "min_ops": 2,
        });
        std::fs::write(d.join("meta.json"), meta.to_string()).expect("meta");
        std::fs::write(
            d.join("reproducer.prog"),
            "cma_alloc area=reserved count=3\ncma_alloc area=reserved count=5\nobserve\ncma_release h=0\n",
        )
        .expect("prog");
        std::fs::write(d.join("reproducer.min.prog"), "cma_alloc area=reserved count=3\ncma_release h=0\n")
            .expect("min");
        let verdicts = json!({
            "verdict": {"kind": "bitmap", "signature": "bitmap:reserved", "detail": "end: bits differ"},
            "all_verdicts": [
                {"kind": "bitmap", "signature": "bitmap:reserved", "detail": "end: bits differ"},
                {"kind": "alias-by-design", "signature": "alias:lin", "detail": "d", "suppressed": {"id": "arm64-linear-alias", "class": "by-design", "reason": "arm64 keeps it <by design>"}},
            ],
        });
        std::fs::write(d.join("verdict.json"), verdicts.to_string()).expect("verdict");
    }

    #[test]
    fn a_triaged_finding_renders_from_the_model_alone_with_its_ratings_and_escaped_text() {
        let out = tempfile::tempdir().expect("tempdir");
        triaged_finding(out.path());
        let c = load::campaign(out.path()).expect("a campaign");
        let (page, j) = render(&c);
        assert!(page.contains("3/3 reliable"), "reliability in the table");
        assert!(page.contains("2 (from 40)"), "the reproducer's size before and after");
        assert!(page.contains("Minimized reproducer, 17 runs to minimize"), "the minimized reproducer first");
        assert!(page.contains("layout:cma_alloc:x"), "the context");
        // The model ran the program: 3 pages at the first place after the boot-time pool's bits.
        assert!(page.contains("<td>pfn 0x7e040 (3 pages)</td>"), "the model's outcome in the op table");
        assert!(page.contains("<figure class=\"bitmap model\">"), "the model's bitmap without a kernel side");
        assert!(!page.contains("<figure class=\"bitmap kernel\">"), "no kernel side was recorded");
        assert!(page.contains("arm64-linear-alias") && page.contains("&lt;by design&gt;"), "suppressed, escaped");
        assert!(page.contains("+ &lt;b&gt;.patch"), "the patch name is escaped");
        assert!(!page.contains("<b>.patch") && !page.contains("<by design>"), "nothing unescaped");
        assert_eq!(j["findings"][0]["reliability"]["class"], "reliable");
        assert_eq!(j["findings"][0]["minimized"], true);
    }

    #[test]
    fn a_finding_of_an_older_campaign_with_only_meta_and_reproducer_renders() {
        let out = tempfile::tempdir().expect("tempdir");
        let d = out.path().join("findings/x");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("meta.json"), r#"{"signature":"x","kind":"layout","target":"arm32-6.1","kernel_hash":null,"count":1,"first_seen":1,"last_seen":1}"#).expect("meta");
        std::fs::write(d.join("reproducer.prog"), "observe\n").expect("prog");
        let (page, _) = render(&load::campaign(out.path()).expect("campaign"));
        assert!(page.contains("not rated"), "no reliability yet");
        assert!(page.contains("No stats recorded"), "no stats");
    }
}
