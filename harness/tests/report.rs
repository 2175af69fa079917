//! `cmafuzz report`: the HTML page of a real short campaign against an injected bug
//! (`release-clears-one-bit-short.patch` on arm32-6.1, the kernel `tests/fuzz.rs` builds too)
//! loads in headless Chromium (Debian's `chromium`) with no console message, gives a
//! screenshot, shows the bitmap pictures and names no outside resource; `--mail` of a divergent
//! program and of KI-1's reproducer has the subject, the reproducer and what the kernel did
//! against what it should have; bad input is one line and exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// One kernel at a time in this binary.
static KERNEL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn patch() -> String {
    root().join("benchmarks/bugs/release-clears-one-bit-short.patch").display().to_string()
}

fn cmafuzz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cmafuzz")).args(args).output().expect("cmafuzz runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The campaign (30 s, stopping at its first finding) and its report, made once.
struct Report {
    _dir: tempfile::TempDir,
    out: PathBuf,
    html: PathBuf,
}

fn report() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let seeds = root().join("corpora/seed");
        let o = cmafuzz(&[
            "fuzz",
            "--target",
            "arm32-6.1",
            "--duration",
            "30s",
            "--cores",
            "1",
            "--minimize-budget",
            "0",
            "--corpus",
            &seeds.display().to_string(),
            "--area-seeds",
            &root().join("corpora/areas").display().to_string(),
            "--out",
            &out.display().to_string(),
            "--kernel-patch",
            &patch(),
            "--listen",
            "127.0.0.1:14391",
        ]);
        assert_eq!(o.status.code(), Some(1), "the campaign finds the bug\n{}\n{}", text(&o.stdout), text(&o.stderr));
        let html = dir.path().join("report.html");
        let json = dir.path().join("report.json");
        let r = cmafuzz(&[
            "report",
            &out.display().to_string(),
            "--html",
            &html.display().to_string(),
            "--json",
            &json.display().to_string(),
        ]);
        assert_eq!(r.status.code(), Some(0), "report: {}{}", text(&r.stdout), text(&r.stderr));
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("report.json")).expect("JSON parses");
        let n = j["findings"].as_array().map_or(0, Vec::len);
        assert!(n >= 1, "the JSON lists the findings: {j}");
        assert!(j["stats"].as_array().is_some_and(|s| !s.is_empty()), "the JSON has the stats over time: {j}");
        Report { _dir: dir, out, html }
    })
}

fn chromium(args: &[&str], page: &Path) -> Output {
    // The page is a file: Chromium needs no sandbox, GPU or profile of the user's.
    let profile = tempfile::tempdir().expect("profile dir");
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (install Debian's `chromium`: scripts/setup.sh does)")
}

#[test]
fn the_html_report_of_a_campaign_loads_in_chromium_with_its_bitmap_pictures_and_a_screenshot() {
    let r = report();
    let page = std::fs::read_to_string(&r.html).expect("report.html");
    assert!(page.contains("Findings table") && page.contains("release-clears-one-bit-short.patch"), "table");
    let dom = chromium(&["--dump-dom"], &r.html);
    let dom_text = text(&dom.stdout);
    let log = text(&dom.stderr);
    assert!(dom.status.success(), "chromium --dump-dom: {log}");
    // A page with no script logs nothing to the console unless something in it is broken.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    // The DOM Chromium built has the bitmap pictures: per area the model's, the kernel's and
    // the difference, each an SVG with cells in it.
    for class in ["bitmap model", "bitmap kernel", "bitmap diff"] {
        assert!(dom_text.contains(&format!("<figure class=\"{class}\">")), "no {class} picture in the DOM");
    }
    let svgs = dom_text.matches("class=\"bitmap-svg\"").count();
    assert!(svgs >= 3, "{svgs} bitmap SVGs");
    assert!(dom_text.contains("class=\"pagemap-svg\""), "the buffers' page pictures are there");
    assert!(dom_text.contains("<polyline"), "the stats charts have lines");
    // Per-function coverage from the campaign's KCOV PCs (arm32-6.1 has kcov.config).
    assert!(dom_text.contains("<td>mm/cma.c</td>"), "mm/cma.c in the coverage table");
    assert!(!dom_text.contains("Not available:"), "the coverage section is there");
    let shot = r.out.join("screenshot.png");
    let s = chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1200,2000"], &r.html);
    assert!(s.status.success(), "chromium --screenshot: {}", text(&s.stderr));
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(png.len() > 1000, "screenshot of {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the screenshot is a PNG");
}

#[test]
fn the_html_report_names_no_outside_resource() {
    let page = std::fs::read_to_string(&report().html).expect("report.html");
    let lower = page.to_lowercase();
    for bad in ["http://", "https://", "src=", "<script", "<link", "url(", "@import"] {
        assert!(!lower.contains(bad), "the page has {bad:?}");
    }
    assert!(lower.contains("<style>"), "its CSS is inline");
}

#[test]
fn the_mail_of_a_divergent_program_has_the_subject_the_reproducer_and_what_the_kernel_did_against_the_model() {
    let prog = root().join("corpora/seed/01-alloc-release.prog");
    let o = {
        let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
        cmafuzz(&["report", "--mail", &prog.display().to_string(), "--target", "arm32-6.1", "--kernel-patch", &patch()])
    };
    let mail = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{mail}\n{}", text(&o.stderr));
    let first = mail.lines().next().unwrap_or("");
    assert!(first.starts_with("Subject: [BUG] mm/cma: bitmap (bitmap:reserved) on arm32 6.1."), "{first}");
    // The mail prints the program in its canonical text form.
    let src = reference_impl::program::Program::parse(&std::fs::read_to_string(&prog).expect("program"))
        .expect("parses")
        .to_text();
    for l in src.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        assert!(mail.contains(&format!("  {l}\n")), "the reproducer line {l:?} is in the mail:\n{mail}");
    }
    assert!(mail.contains("kernel did") && mail.contains("model predicts"), "{mail}");
    assert!(mail.contains("should have: "), "{mail}");
    assert!(mail.contains("release-clears-one-bit-short.patch"), "the build is named: {mail}");
    assert!(mail.contains("CONFIG_CMA=y"), "the config is there: {mail}");
    // The bitmap line: the kernel leaks a bit, so it has more set than the model says.
    let area = mail.lines().find(|l| l.trim_start().starts_with("area reserved")).expect("the area line");
    let nums: Vec<u64> = area.split_whitespace().filter_map(|w| w.trim_end_matches(',').parse().ok()).collect();
    assert!(nums.len() >= 2 && nums[nums.len() - 2] > nums[nums.len() - 1], "kernel bits above the model's: {area}");
}

#[test]
fn the_mail_of_ki_1_shows_the_alias_in_the_kernels_page_tables() {
    let prog = root().join("corpora/regressions/stale-pkmap-slot.prog");
    let o = {
        let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
        cmafuzz(&["report", "--mail", &prog.display().to_string(), "--target", "arm32-6.1"])
    };
    let mail = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{mail}\n{}", text(&o.stderr));
    assert!(
        mail.starts_with("Subject: [BUG] arm/dma-mapping: alias-violation (alias-violation:vmap:nc+pkmap:wb)"),
        "{mail}"
    );
    assert!(mail.contains("suppression stale-pkmap-slot"), "a known issue says so: {mail}");
    let table = mail.split("pfn 0x7e040:").nth(1).expect("the page's mapping table");
    let rows: Vec<&str> = table.lines().take(4).collect();
    assert!(rows.iter().any(|r| r.trim_start().starts_with("vmap") && r.contains(" nc ")), "{rows:?}");
    assert!(rows.iter().any(|r| r.trim_start().starts_with("pkmap") && r.contains(" wb ")), "{rows:?}");
}

#[test]
fn the_mail_of_a_campaign_finding_replays_it_with_the_findings_target_and_patches() {
    let r = report();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(r.out.join("findings"))
        .expect("findings")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    dirs.sort();
    // The bitmap finding when there is one (the bug's own verdict), else the first.
    let d = dirs.iter().find(|d| d.to_string_lossy().contains("bitmap")).or(dirs.first()).expect("a finding").clone();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).expect("meta")).expect("parses");
    let o = {
        let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
        cmafuzz(&["report", "--mail", &d.display().to_string()])
    };
    let mail = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{mail}\n{}", text(&o.stderr));
    assert!(mail.starts_with("Subject: [BUG] "), "{mail}");
    assert!(mail.contains("arm32-6.1 "), "the finding's target: {mail}");
    assert!(mail.contains("release-clears-one-bit-short.patch"), "the finding's patch: {mail}");
    let sig = meta["signature"].as_str().expect("signature");
    assert!(mail.contains(&format!("reproduces ({sig})")), "it reproduces as {sig}: {mail}");
}

fn one_line_exit_2(o: &Output, names: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "exit 2: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains(names), "the line names {names}: {err}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = tempfile::tempdir().expect("tempdir");
    let not_campaign = d.path().join("empty");
    std::fs::create_dir(&not_campaign).expect("mkdir");
    let o = cmafuzz(&["report", &not_campaign.display().to_string()]);
    one_line_exit_2(&o, "not a campaign directory");
    // A finding directory whose reproducer is gone.
    let f = d.path().join("out/findings/bitmap_reserved");
    std::fs::create_dir_all(&f).expect("mkdir");
    std::fs::write(f.join("meta.json"), r#"{"signature":"bitmap:reserved","kind":"bitmap","target":"arm32-6.1","count":1,"first_seen":1,"last_seen":1}"#)
        .expect("meta");
    let o = cmafuzz(&["report", "--mail", &f.display().to_string()]);
    one_line_exit_2(&o, "no reproducer.prog");
    // The same campaign as a whole cannot be rendered either, and says which finding.
    let o = cmafuzz(&["report", &d.path().join("out").display().to_string()]);
    one_line_exit_2(&o, "bitmap_reserved");
    let o = cmafuzz(&["report", "--mail", &d.path().join("nope.prog").display().to_string()]);
    one_line_exit_2(&o, "nope.prog");
}

#[test]
fn the_mail_of_a_program_that_does_not_diverge_is_one_line_and_exit_2() {
    let prog = root().join("corpora/seed/01-alloc-release.prog");
    let o = {
        let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
        cmafuzz(&["report", "--mail", &prog.display().to_string(), "--target", "arm32-6.1"])
    };
    // Progress lines of the build and boot go to stderr too: the error is the last line.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error: ") && last.contains("no longer reproduces"), "{err}");
    assert!(o.stdout.is_empty(), "no mail: {}", text(&o.stdout));
}
