//! The `cmafuzz` command line. Exit codes: 0 success (sides agree),
//! 1 divergence found, 2 error (bad input, build failure, dead guest, usage).

// Output goes through `outln!`/`out!`/`errln!`, which a closed pipe does not make panic.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use crate::backend::kernel::boot::KernelChoice;
use crate::diff::BackendChoice;
use clap::{Args, Parser, Subcommand};

/// `println!` for the CLI's output: a reader that went away (`cmafuzz doctor | head`) is not
/// an error of the command, which goes on to its end and its exit code; `println!` would panic.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `print!`, as [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `eprintln!`, as [`outln!`] (progress and errors on a closed stderr are dropped).
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

mod bench;
mod bisect;
mod boot;
mod corpus;
mod coverage;
mod difftest;
mod doctor;
mod fuzz;
mod generate;
mod kernel;
mod minimize;
mod model_check;
mod replay;
mod report;
mod targets;
mod validate;

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
    /// A program that completes no op for this long is a hang (30s, 2m; default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_watchdog)]
    watchdog: Option<std::time::Duration>,
}

/// `--watchdog`: a human duration above zero.
fn parse_watchdog(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the watchdog must be above zero (for example 30s)".into()),
        Err(e) => Err(format!("{e} (give a duration such as 30s or 2m)")),
    }
}

impl KernelArgs {
    fn choice(&self) -> KernelChoice {
        KernelChoice { src: self.kernel_src.clone(), patches: self.kernel_patch.clone(), watchdog: self.watchdog }
    }
}

/// `--backend`: which sides run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
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
        cmd: kernel::KernelCmd,
    },
    /// Boot a target, print what the kernel reports, and power it off.
    Boot(boot::BootArgs),
    /// Run programs on the model, the kernel or both and compare them op by op.
    Replay(replay::ReplayArgs),
    /// Print the program a seed generates (the one `model-check` / `difftest` ran).
    Generate(generate::GenerateArgs),
    /// Run generated programs on the model alone, checking its invariants after every op.
    ModelCheck(model_check::ModelCheckArgs),
    /// Run generated programs on the model and the kernel side by side and compare them.
    Difftest(difftest::DifftestArgs),
    /// Coverage-guided campaign (LibAFL): one VM per core, findings in OUT/findings, queue in
    /// OUT/corpus (a campaign on an existing OUT resumes from it). Exit 1 if OUT holds findings.
    Fuzz(fuzz::FuzzArgs),
    /// List the instrumented kernel functions a campaign's KCOV PCs reached and those it never
    /// did (from OUT/coverage, symbolized against the campaign kernel's vmlinux).
    Coverage(coverage::CoverageArgs),
    /// Check the host tools cmafuzz needs and print how to install the missing ones.
    Doctor(doctor::DoctorArgs),
    /// Find the first bad commit between --good and --bad of a kernel git tree for a
    /// reproducer (program files or a finding directory). Exit 0 found, 1 inconclusive, 2 error.
    Bisect(bisect::BisectArgs),
    /// Shrink a finding's reproducer (or a program) to the fewest ops and simplest arguments
    /// that keep its first verdict; saves reproducer.min.prog (PROG.min.prog) beside it.
    /// Exit 0 saved, 2 bad input or no longer reproduces (nothing changed).
    Minimize(minimize::MinimizeArgs),
    /// Campaign corpora: `corpus minimize OUT`.
    Corpus {
        #[command(subcommand)]
        cmd: corpus::CorpusCmd,
    },
    /// Print speed figures: boot-to-ready, kernel ops/s over the channel, model ops/s.
    Bench(bench::BenchArgs),
    /// A campaign as one self-contained HTML page (and --json), or with --mail one finding (or
    /// program, replayed first) as the plain-text report for upstream. Exit 0 written, 2 error.
    Report(report::ReportArgs),
    /// What a patch series changes: the same programs (corpora, --findings, generated, an
    /// equal-budget campaign) on the base and the patched kernels, judged against the model and
    /// each other. Exit 0 nothing introduced, 1 something introduced, 2 error or does not apply.
    Validate(validate::ValidateArgs),
}

/// Parses the command line and runs it; the exit code follows the convention above.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn progress(line: &str) {
    errln!("{line}");
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.cmd {
        Cmd::Targets => targets::run(),
        Cmd::Kernel { cmd } => kernel::run(cmd),
        Cmd::Boot(a) => boot::run(a),
        Cmd::Replay(a) => replay::run(a),
        Cmd::Generate(a) => generate::run(a),
        Cmd::ModelCheck(a) => model_check::run(a),
        Cmd::Difftest(a) => difftest::run(a),
        Cmd::Fuzz(a) => fuzz::run(a),
        Cmd::Doctor(a) => doctor::run(a),
        Cmd::Coverage(a) => coverage::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Minimize(a) => minimize::run(a),
        Cmd::Corpus { cmd } => corpus::run(cmd),
        Cmd::Bisect(a) => bisect::run(a),
        Cmd::Report(a) => report::run(a),
        Cmd::Validate(a) => validate::run(a),
    }
}
