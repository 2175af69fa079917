//! `cmafuzz report`: a campaign as one HTML page (and JSON), or `--mail` one finding as text.

use crate::report::{self, html, load, mail};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReportArgs {
    /// A campaign directory (the --out of `cmafuzz fuzz`); with --mail, a finding directory
    /// (OUT/findings/<dir>) or a program file.
    pub input: PathBuf,
    /// Write the HTML page here (default OUT/report.html).
    #[arg(long, value_name = "FILE", conflicts_with = "mail")]
    pub html: Option<PathBuf>,
    /// Write the JSON summary here.
    #[arg(long, value_name = "FILE", conflicts_with = "mail")]
    pub json: Option<PathBuf>,
    /// Print the plain-text mail for a finding or a program (replayed on the kernel first).
    #[arg(long)]
    pub mail: bool,
    /// With --mail: the targets to replay on (repeatable; default the finding's target).
    #[arg(long, requires = "mail")]
    pub target: Vec<String>,
    /// With --mail: build the kernel with this patch (repeatable; default the finding's patches).
    #[arg(long = "kernel-patch", value_name = "FILE", requires = "mail")]
    pub kernel_patch: Vec<PathBuf>,
    /// With --mail: also write the mail to this file.
    #[arg(long, value_name = "FILE", requires = "mail")]
    pub output: Option<PathBuf>,
}

fn write(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    crate::disk::write_atomic(path, data)
        .map_err(|e| report::ReportError::Write { path: path.to_path_buf(), msg: e.to_string() })?;
    Ok(())
}

pub fn run(a: ReportArgs) -> anyhow::Result<u8> {
    if a.mail {
        let req = mail::MailRequest { input: a.input.clone(), targets: a.target, patches: a.kernel_patch };
        let text = mail::mail(&req, &mut |l| errln!("{l}"))?;
        out!("{text}");
        if let Some(p) = &a.output {
            write(p, text.as_bytes())?;
            errln!("cmafuzz report: mail written to {}", p.display());
        }
        return Ok(0);
    }
    let c = load::campaign(&a.input)?;
    let (page, json) = html::render(&c);
    let html_path = a.html.clone().unwrap_or_else(|| a.input.join("report.html"));
    write(&html_path, page.as_bytes()).with_context(|| "the HTML report")?;
    outln!("cmafuzz report: {} findings; HTML in {}", c.findings.len(), html_path.display());
    if let Some(p) = &a.json {
        let mut s = serde_json::to_vec_pretty(&json)?;
        s.push(b'\n');
        write(p, &s)?;
        outln!("cmafuzz report: JSON in {}", p.display());
    }
    Ok(0)
}
