//! The `cmafuzz` command line. Exit codes: 0 success (sides agree),
//! 1 divergence found, 2 error (bad input, build failure, dead guest, usage).

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use crate::diff::BackendChoice;
use crate::replay;
use crate::backend::kernel::boot::{self as session, KernelChoice};
use crate::build::{agent as guest_build, tools as doctor};
use crate::{difftest, targets};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cmafuzz", version, about = "Differential fuzzer for Linux CMA and ARM coherent DMA")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone, Default)]
struct KernelArgs {
    /// Build from this kernel tree instead of the target's Debian source package.
    #[arg(long = "kernel-src", alias = "src", value_name = "DIR")]
    kernel_src: Option<PathBuf>,
    /// Apply this patch to the kernel (repeatable, applied in order).
    #[arg(long = "kernel-patch", alias = "patch", value_name = "FILE")]
    kernel_patch: Vec<PathBuf>,
}

impl KernelArgs {
    fn choice(&self) -> KernelChoice {
        KernelChoice { src: self.kernel_src.clone(), patches: self.kernel_patch.clone() }
    }
}

/// `--backend`: which sides run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Model,
    Kernel,
    Both,
}

impl From<BackendArg> for BackendChoice {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Model => BackendChoice::Model,
            BackendArg::Kernel => BackendChoice::Kernel,
            BackendArg::Both => BackendChoice::Both,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// List the named targets.
    Targets,
    /// Kernel builds.
    Kernel {
        #[command(subcommand)]
        cmd: KernelCmd,
    },
    /// Boot a target, print what the kernel reports, and power it off.
    Boot {
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Run programs on the model, the kernel or both and compare them op by op.
    Replay {
        /// Program files (*.prog text or *.json) or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long, value_enum, default_value = "both")]
        backend: BackendArg,
        /// One JSON object per program on stdout.
        #[arg(long)]
        json: bool,
        /// Write the kernel's console (last VM, up to 1 MiB) to this file at the end.
        #[arg(long, value_name = "FILE")]
        console_log: Option<PathBuf>,
        /// Suppressions file replacing the built-in kernel-configs/suppressions.toml.
        #[arg(long, value_name = "FILE", conflicts_with = "no_suppressions")]
        suppressions: Option<PathBuf>,
        /// Report every verdict as a finding (no suppressions at all).
        #[arg(long)]
        no_suppressions: bool,
        /// Compare bitmaps and mappings after every op, not only at `observe` and the end.
        #[arg(long)]
        observe_each: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Print the program a seed generates (the one `model-check` / `difftest` ran).
    Generate {
        #[arg(long)]
        seed: u64,
    },
    /// Run generated programs on the model alone, checking its invariants after every op.
    ModelCheck {
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 10000)]
        count: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run generated programs on the model and the kernel side by side and compare them.
    Difftest {
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 2000)]
        count: u64,
        /// First seed (default: from the clock, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory for reproducers of divergences.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Coverage-guided campaign (LibAFL): one VM per core, findings in OUT/findings, queue in
    /// OUT/corpus (a campaign on an existing OUT resumes from it). Exit 1 if OUT holds findings.
    Fuzz {
        #[arg(long)]
        target: Option<String>,
        /// How long to run: 30s, 10m, 8h, 1d.
        #[arg(long, default_value = "10m")]
        duration: String,
        /// Cores: a count (2) or a list (0,2-3); one client and one VM per core.
        #[arg(long, default_value = "1")]
        cores: String,
        /// Seed programs.
        #[arg(long, value_name = "DIR", default_value = "corpora/seed")]
        corpus: PathBuf,
        /// Campaign directory: corpus/, findings/, stats.json, clients.log.
        #[arg(long, value_name = "DIR", default_value = "out")]
        out: PathBuf,
        /// Random seed of the clients (client i uses seed + i).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Append every status line as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json_stats: Option<PathBuf>,
        /// Address of this campaign's LLMP broker (loopback unless built with `public-broker`).
        #[arg(long, value_name = "IP:PORT", default_value = crate::campaign::DEFAULT_LISTEN)]
        listen: String,
        /// Join another machine's campaign: connect this broker to its broker.
        #[arg(long, value_name = "HOST:PORT")]
        broker: Option<String>,
        /// Stop the campaign once OUT/findings holds a finding (checked between programs).
        #[arg(long)]
        stop_on_finding: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Check the host tools cmafuzz needs and print how to install the missing ones.
    Doctor,
    /// Print speed figures: boot-to-ready, kernel ops/s over the channel, model ops/s.
    Bench {
        /// Programs to run (files or directories).
        #[arg(default_value = "corpora/random")]
        files: Vec<PathBuf>,
        #[arg(long)]
        target: Option<String>,
        /// Times every program is run on each side.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Boots timed for boot-to-ready.
        #[arg(long, default_value_t = 3)]
        boots: u32,
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

#[derive(Subcommand)]
enum KernelCmd {
    /// Build (or find in the cache) the kernel of a target, with the test driver built in.
    Build {
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

/// Parses the command line and runs it; the exit code follows the convention above.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn progress(line: &str) {
    eprintln!("{line}");
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.cmd {
        Cmd::Targets => {
            for t in targets::all()? {
                println!(
                    "{:<14} {}{} [{} {} MiB, qemu {} -cpu {}]",
                    t.name,
                    t.description,
                    if t.default { " (default)" } else { "" },
                    t.arch,
                    t.memory_mib,
                    t.machine,
                    t.cpu
                );
            }
            Ok(0)
        }
        Cmd::Kernel { cmd: KernelCmd::Build { target, kernel } } => {
            let t = targets::find(target.as_deref())?;
            let a = session::build_kernel(&t, &kernel.choice(), &mut progress)?;
            let g = guest_build::build(&t, &[])?;
            println!(
                "{} kernel {} ({}, {:.1} s): {}",
                t.name,
                a.key,
                if a.cache_hit { "cached" } else { "built" },
                a.seconds,
                a.image.display()
            );
            println!("{} guest initramfs: {}", t.name, g.initramfs.display());
            Ok(0)
        }
        Cmd::Boot { target, kernel } => {
            let t = targets::find(target.as_deref())?;
            let kb = session::boot_kernel(&t, &kernel.choice(), &mut progress)?;
            if let Some(h) = kb.hello() {
                println!("{}: Linux {} ready in {:.3} s", t.name, h.release, kb.boot_times[0].as_secs_f64());
                println!(
                    "  page_shift {} cma_alignment {} pageblock_order {} max_low_pfn {:#x} max_pfn {:#x}",
                    h.page_shift, h.cma_alignment, h.pageblock_order, h.max_low_pfn, h.max_pfn
                );
            }
            use crate::backend::Backend;
            for a in &kb.boot_observation().areas {
                println!(
                    "  area {} base_pfn {:#x} count {} order_per_bit {}: {} bits used",
                    a.name,
                    a.base_pfn.0,
                    a.count.0,
                    a.order_per_bit,
                    a.used_bits()
                );
            }
            if let Some(note) = session::placement_note(&t, kb.boot_observation()) {
                println!("  note: {note}");
            }
            Ok(0)
        }
        Cmd::Replay {
            files,
            target,
            backend,
            json,
            console_log,
            suppressions,
            no_suppressions,
            observe_each,
            kernel,
        } => {
            let t = targets::find(target.as_deref())?;
            let sup = match (&suppressions, no_suppressions) {
                (_, true) => crate::oracle::Suppressions::none(),
                (Some(p), false) => crate::oracle::Suppressions::load(p)?,
                (None, false) => crate::oracle::Suppressions::builtin()?,
            };
            let files = replay::collect_files(&files)?;
            let mut programs = Vec::new();
            let mut bad = 0;
            for f in &files {
                match replay::load(f) {
                    Ok(p) => programs.push(p),
                    Err(e) => {
                        eprintln!("error: {e}");
                        bad += 1;
                    }
                }
            }
            if bad > 0 {
                // Fail before paying for a kernel: fix the programs first.
                return Ok(2);
            }
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let sum = replay::replay(
                &t,
                backend.into(),
                &kernel.choice(),
                &programs,
                &replay::ReplayOptions { json, console_log, suppressions: sup, observe_each },
                &mut out,
            )
            .with_context(|| format!("replay on {}", t.name))?;
            Ok(sum.exit_code())
        }
        Cmd::Bench { files, target, rounds, boots, kernel } => {
            let t = targets::find(target.as_deref())?;
            let files = replay::collect_files(&files)?;
            let programs = files.iter().map(|f| replay::load(f)).collect::<Result<Vec<_>, _>>()?;
            let f = crate::bench::run(&t, &kernel.choice(), &programs, rounds, boots, &mut progress)?;
            println!("{}", f.render());
            Ok(0)
        }
        Cmd::Generate { seed } => {
            print!("{}", crate::generate::program(seed).to_text());
            Ok(0)
        }
        Cmd::ModelCheck { target, count, seed } => {
            let t = targets::find(target.as_deref())?;
            let sum = difftest::model_check(&t, count, seed)?;
            println!(
                "{}: {} programs, {} ops in {:.2} s ({:.0} programs/s, {:.0} ops/s)",
                t.name,
                sum.programs,
                sum.ops,
                sum.seconds,
                sum.programs as f64 / sum.seconds.max(1e-9),
                sum.ops as f64 / sum.seconds.max(1e-9)
            );
            match sum.violation {
                None => Ok(0),
                Some((seed, text, why)) => {
                    println!("VIOLATION at seed {seed}: {why}\n{text}");
                    Ok(1)
                }
            }
        }
        Cmd::Difftest { target, count, seed, out, kernel } => {
            let t = targets::find(target.as_deref())?;
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            });
            println!("seed: {seed}");
            let opts = difftest::DifftestOptions { count, seed, out_dir: out };
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            let sum = difftest::difftest(&t, &kernel.choice(), &opts, &mut w)
                .with_context(|| format!("difftest on {}", t.name))?;
            println!("{}: {}", t.name, sum.render());
            Ok(sum.exit_code())
        }
        Cmd::Fuzz {
            target,
            duration,
            cores,
            corpus,
            out,
            seed,
            json_stats,
            listen,
            broker,
            stop_on_finding,
            kernel,
        } => {
            use crate::campaign as fuzz;
            let opts = fuzz::FuzzOptions {
                target: targets::find(target.as_deref())?,
                kernel: kernel.choice(),
                duration: fuzz::parse_duration(&duration)?,
                cores: fuzz::parse_cores(&cores)?,
                corpus,
                out,
                seed,
                json_stats,
                listen: fuzz::parse_listen(&listen)?,
                broker: broker.as_deref().map(fuzz::parse_broker).transpose()?,
                stop_on_finding,
                sup: crate::oracle::Suppressions::builtin()?,
            };
            let sum = fuzz::run(&opts).with_context(|| format!("fuzz on {}", opts.target.name))?;
            if let Some(s) = &sum.last_status {
                println!("{}", s.line());
            }
            println!(
                "{} corpus entries in {}; {} findings in {}",
                sum.corpus,
                sum.out.join("corpus").display(),
                sum.findings.len(),
                sum.out.join("findings").display()
            );
            for m in &sum.findings {
                println!("  {} (seen {} times)", m.signature, m.count);
            }
            Ok(sum.exit_code())
        }
        Cmd::Doctor => {
            let checks = doctor::checks();
            for c in &checks {
                match &c.found {
                    Some(p) => println!("  ok       {:<36} {p}", c.what),
                    None => println!("  MISSING  {:<36} package {} (for {})", c.what, c.package, c.needed_for),
                }
            }
            match doctor::install_command(&checks) {
                Some(cmd) => {
                    println!("install the missing tools with:\n  {cmd}");
                    Ok(2)
                }
                None => {
                    println!("everything cmafuzz needs is installed");
                    Ok(0)
                }
            }
        }
    }
}
