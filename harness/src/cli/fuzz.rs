//! `cmafuzz fuzz`: a coverage-guided LibAFL campaign.

use super::KernelArgs;
use crate::targets;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct FuzzArgs {
    #[arg(long)]
    pub target: Option<String>,
    /// How long to run: 30s, 10m, 8h, 1d.
    #[arg(long, default_value = "10m")]
    pub duration: String,
    /// Cores: a count (2) or a list (0,2-3); one client and one VM per core.
    #[arg(long, default_value = "1")]
    pub cores: String,
    /// Seed programs.
    #[arg(long, value_name = "DIR", default_value = "corpora/seed")]
    pub corpus: PathBuf,
    /// Seed programs for the areas a target has besides `reserved` (one file per area or
    /// more): those naming only areas of this target join the seeds.
    #[arg(long, value_name = "DIR", default_value = "corpora/areas")]
    pub area_seeds: PathBuf,
    /// Campaign directory: corpus/, findings/, stats.json, clients.log.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Random seed of the clients (client i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Append every status line as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json_stats: Option<PathBuf>,
    /// Address of this campaign's LLMP broker (loopback unless built with `public-broker`);
    /// default 127.0.0.1:1337, or a free loopback port when another campaign holds that one.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Join another machine's campaign: connect this broker to its broker.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
    /// Stop the campaign once OUT/findings holds a finding (checked between programs).
    #[arg(long)]
    pub stop_on_finding: bool,
    /// Time each client may spend minimizing its new findings (reproducer.min.prog, merged
    /// with the findings of the same bug); 0 disables (at exit too).
    #[arg(long, value_name = "DURATION", default_value = crate::campaign::DEFAULT_MINIMIZE_BUDGET)]
    pub minimize_budget: String,
    /// Time each client may spend as the campaign ends (deadline, SIGINT/SIGTERM) minimizing
    /// the new findings --minimize-budget left unminimized; 0 disables. A second Ctrl-C exits
    /// at once.
    #[arg(long, value_name = "DURATION", default_value = crate::campaign::DEFAULT_EXIT_MINIMIZE_BUDGET)]
    pub exit_minimize_budget: String,
    /// Which sides run: both (the model and the kernel, compared) or model (the model alone:
    /// no kernel is built or booted; only the model's own checks give verdicts).
    #[arg(long, value_enum, default_value = "both")]
    pub backend: super::BackendArg,
    /// Steer towards these kernel functions (`cma_alloc` or `mm/cma.c: cma_alloc`; repeat or
    /// separate with commas): their KCOV sites count extra in the feedback, and the status
    /// shows how many of them the campaign reached. Needs a target with KCOV.
    #[arg(long, value_name = "FUNCTION", value_delimiter = ',')]
    pub focus: Vec<String>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

pub fn run(a: FuzzArgs) -> anyhow::Result<u8> {
    let FuzzArgs {
        target,
        duration,
        cores,
        corpus,
        area_seeds,
        out,
        seed,
        json_stats,
        listen,
        broker,
        stop_on_finding,
        minimize_budget,
        exit_minimize_budget,
        backend,
        focus,
        kernel,
    } = a;
    let budget = |flag: &str, s: &str| match s.trim() {
        "0" => Ok(std::time::Duration::ZERO),
        t => humantime::parse_duration(t)
            .map_err(|_| anyhow::anyhow!("{flag} {t}: expected a duration like 3m or 90s, or 0 to disable")),
    };
    let minimize_budget = budget("--minimize-budget", &minimize_budget)?;
    let exit_minimize_budget = budget("--exit-minimize-budget", &exit_minimize_budget)?;
    use crate::campaign as fuzz;
    let listen = listen.as_deref().map(fuzz::parse_listen).transpose()?;
    let opts = fuzz::FuzzOptions {
        target: targets::find(target.as_deref())?,
        kernel: kernel.choice(),
        duration: fuzz::parse_duration(&duration)?,
        cores: fuzz::parse_cores(&cores)?,
        corpus,
        area_seeds: Some(area_seeds),
        out,
        seed,
        json_stats,
        listen,
        broker: broker.as_deref().map(fuzz::parse_broker).transpose()?,
        stop_on_finding,
        sup: crate::oracle::Suppressions::builtin()?,
        minimize_budget,
        exit_minimize_budget,
        backend: backend.into(),
        focus,
    };
    let sum = fuzz::run(&opts).with_context(|| format!("fuzz on {}", opts.target.name))?;
    if let Some(s) = &sum.last_status {
        outln!("{}", s.line());
    }
    outln!(
        "{} corpus entries in {}; {} findings in {}",
        sum.corpus,
        sum.out.join("corpus").display(),
        sum.findings.len(),
        sum.out.join("findings").display()
    );
    for m in &sum.findings {
        let min = match (m.min_ops, &m.reliability) {
            (Some(n), Some(r)) => format!(
                ", minimized {} -> {n} ops, reproduced {}/{} ({})",
                m.original_ops, r.reproduced, r.runs, r.class
            ),
            (Some(n), None) => format!(", minimized {} -> {n} ops", m.original_ops),
            _ => String::new(),
        };
        outln!("  {} (seen {} times{min})", m.signature, m.count);
    }
    Ok(sum.exit_code())
}
