//! `cmafuzz fuzz`: coverage-guided campaigns on LibAFL (pinned at 0.16.1).
//!
//! One client per core, each with its own VM, started by LibAFL's `Launcher` and sharing inputs
//! over LLMP; a broker (in the launching process) runs the status monitor. Per client:
//! - input: [`input::ProgramInput`] (a program; its text form on disk);
//! - generator: the seeded generator of `generate.rs`, with handles made valid;
//! - mutators: [`mutate`] (structure-aware, handles kept valid);
//! - executor: [`executor::VmExecutor`] over `exec::Executor::execute`;
//! - feedback: one `MaxMapFeedback` map, model-state features then kernel coverage ([`features`]);
//!   every queue entry keeps the map entries it reached ([`corpus::QueueEntries`]);
//! - scheduler: LibAFL's `IndexesLenTimeMinimizerScheduler` over that map (the shortest program
//!   per map entry is favoured) around a `QueueScheduler`;
//! - objective: [`objective::FindingFeedback`], any unsuppressed verdict, written to
//!   `OUT/findings/` ([`findings`]) before the campaign moves on;
//! - corpus: `OUT/corpus/` (LibAFL's `InMemoryOnDiskCorpus`, one `<hash>.prog` per entry); a
//!   campaign started on an existing `OUT` loads it back (every entry, forced) with the seeds.
//!   The queue is culled to the programs that cover every map entry it reached (the rule of
//!   `cmafuzz corpus minimize`, [`corpus::cull`]) whenever it has grown by half, and at exit.
//! - backend: both sides compared (the default), or the model alone (`--backend model`: no VM,
//!   no kernel build; the model's own checks are the only verdicts).
//!
//! Process tree: `cmafuzz fuzz` (broker + monitor) → per core a LibAFL restarter → the client,
//! which owns qemu. qemu dies with the client (`PR_SET_PDEATHSIG`); the client stops when the
//! launching process is gone (checked between inputs), on SIGINT/SIGTERM, and at the deadline.

pub mod corpus;
pub mod executor;
pub mod features;
pub mod input;
pub mod monitor;
pub mod mutate;
pub mod objective;

use crate::backend::kernel::boot::{self as session, KernelChoice};
use crate::diff::BackendChoice;
use crate::findings;
use crate::oracle::Suppressions;
use crate::targets::Target;
use executor::{Counters, VmExecutor};
use input::ProgramInput;
use libafl::corpus::{Corpus, InMemoryCorpus, InMemoryOnDiskCorpus};
use libafl::events::{EventConfig, Launcher, ProgressReporter, SendExiting};
use libafl::feedbacks::{EagerOrFeedback, MaxMapFeedback};
use libafl::fuzzer::{Fuzzer, HasScheduler, StdFuzzer};
use libafl::generators::Generator;
use libafl::mutators::HavocScheduledMutator;
use libafl::schedulers::{IndexesLenTimeMinimizerScheduler, QueueScheduler};
use libafl::stages::StdMutationalStage;
use libafl::state::{HasCorpus, HasRand, StdState};
use libafl::Error;
use libafl_bolts::core_affinity::Cores;
use libafl_bolts::rands::{Rand, StdRand};
use libafl_bolts::shmem::{ShMemProvider, StdShMem, StdShMemProvider};
use libafl_bolts::tuples::{tuple_list, Handled};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// How often the status line is printed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Default LLMP broker address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1337";

/// The broker's listening socket for a campaign given no `--listen`: on [`DEFAULT_LISTEN`], or,
/// when another campaign on this machine holds that port, on a free loopback port (`Some(why)`
/// says so), so campaigns on several targets can run side by side without flags. It is bound
/// here and kept until the broker takes it: campaigns started together cannot both pick one port.
pub fn default_listen() -> Result<(std::net::TcpListener, Option<String>), FuzzError> {
    let want = parse_listen(DEFAULT_LISTEN)?;
    match std::net::TcpListener::bind(want) {
        Ok(l) => Ok((l, None)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| FuzzError::Listen("127.0.0.1:0".into(), format!("no free loopback port: {e}")))?;
            let free = l.local_addr().map_err(|e| FuzzError::Listen("127.0.0.1:0".into(), e.to_string()))?;
            Ok((l, Some(format!("{want} is in use (another campaign?): this one's broker listens on {free}"))))
        }
        Err(e) => Err(FuzzError::Listen(want.to_string(), e.to_string())),
    }
}

#[derive(Debug, Error)]
pub enum FuzzError {
    #[error("--duration {0}: expected a number with a unit, like 30s, 10m, 8h or 1d")]
    Duration(String),
    #[error("--cores {0}: expected a count (2) or a list of core ids (0,2-3) of this machine's {1} cores")]
    Cores(String, usize),
    #[error("--listen {0}: {1}")]
    Listen(String, String),
    #[error("--broker {0}: expected HOST:PORT of another campaign's broker (its --listen address)")]
    Broker(String),
    #[error("--broker {0}: {1} (is that campaign running and listening there?)")]
    BrokerUnreachable(String, String),
    #[error("{0}: no such seed directory (pass --corpus DIR with *.prog files)")]
    NoCorpus(PathBuf),
    #[error("no seed programs: {0} has no *.prog or *.json files and {1} is empty (pass --corpus DIR)")]
    NoSeeds(PathBuf, PathBuf),
    #[error(transparent)]
    Findings(#[from] findings::FindingError),
    #[error(transparent)]
    Session(#[from] crate::backend::kernel::boot::SessionError),
    #[error("{what}: {msg}")]
    Io { what: PathBuf, msg: String },
    #[error("--backend kernel: a campaign compares the kernel with the model; give --backend both (the default) or --backend model (the model alone, no VM)")]
    Backend,
    #[error("LibAFL: {0}")]
    Libafl(String),
    #[error("no client ran a single program (the VM never started?); the end of {log}:\n{tail}")]
    NoExecs { log: PathBuf, tail: String },
}

/// Everything `cmafuzz fuzz` was asked to do.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub target: Target,
    pub kernel: KernelChoice,
    pub duration: Duration,
    /// Core list in LibAFL's syntax (`0-1`, `0,2`).
    pub cores: String,
    pub corpus: PathBuf,
    /// Seeds for the target's other areas: the programs naming only areas the target has
    /// join the seeds ([`area_seed_files`]).
    pub area_seeds: Option<PathBuf>,
    pub out: PathBuf,
    pub seed: u64,
    pub json_stats: Option<PathBuf>,
    /// The broker's address; `None`: [`default_listen`], bound as the campaign starts its clients
    /// and held until the broker takes it (campaigns started side by side cannot pick one port).
    pub listen: Option<SocketAddr>,
    pub broker: Option<SocketAddr>,
    /// Stop once `OUT/findings` holds a finding (this campaign's or one found before).
    pub stop_on_finding: bool,
    pub sup: Suppressions,
    /// Time each client may spend minimizing its new findings (`Duration::ZERO`: none, not
    /// even at exit).
    pub minimize_budget: Duration,
    /// Time each client may spend, as it exits, on the new findings `minimize_budget` left
    /// unminimized (`Duration::ZERO`: none).
    pub exit_minimize_budget: Duration,
    /// `Both` (compared) or `Model` (the model alone, no VM); `Kernel` is refused.
    pub backend: BackendChoice,
    /// Functions to steer towards (`function` or `file: function`), resolved to their KCOV
    /// sites in the campaign's kernel ([`crate::coverage::focus`]).
    pub focus: Vec<String>,
}

/// The focus of `--focus NAMES` in the kernel at `vmlinux`, with one line each for what it
/// holds and what it cannot steer to: none without names, without KCOV in the kernel, or when
/// no name is an instrumented function (the campaign then runs unsteered).
fn resolve_focus(names: &[String], vmlinux: &Path) -> Option<Arc<crate::coverage::Focus>> {
    if names.is_empty() {
        return None;
    }
    let funcs = match crate::coverage::function_sites(vmlinux) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cmafuzz fuzz: --focus: not steered: {e}");
            return None;
        }
    };
    let f = crate::coverage::focus(&funcs, names);
    if !f.missing.is_empty() {
        eprintln!(
            "cmafuzz fuzz: --focus: no KCOV sites in this kernel for {} (not in an instrumented file, or inlined)",
            f.missing.join(", ")
        );
    }
    if f.sites.is_empty() {
        eprintln!("cmafuzz fuzz: --focus: not steered: none of the functions has KCOV sites");
        return None;
    }
    eprintln!("cmafuzz fuzz: steered towards {} ({} KCOV sites)", f.functions.join(", "), f.sites.len());
    Some(Arc::new(f))
}

/// Default of `fuzz --minimize-budget`.
pub const DEFAULT_MINIMIZE_BUDGET: &str = "3m";
/// Default of `fuzz --exit-minimize-budget`.
pub const DEFAULT_EXIT_MINIMIZE_BUDGET: &str = "2m";

/// `30s`, `10m`, `8h`, `1d` (a bare number is seconds), or any longer form `humantime` reads
/// (`1h30m`, `2days`); never zero.
pub fn parse_duration(s: &str) -> Result<Duration, FuzzError> {
    let t = s.trim();
    let d = match t.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(t).map_err(|_| FuzzError::Duration(s.to_string()))?,
    };
    if d.is_zero() {
        return Err(FuzzError::Duration(s.to_string()));
    }
    Ok(d)
}

/// `N` (the first N cores) or a LibAFL core list; checked against this machine.
pub fn parse_cores(s: &str) -> Result<String, FuzzError> {
    let avail = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let list = match s.trim().parse::<usize>() {
        Ok(0) => return Err(FuzzError::Cores(s.to_string(), avail)),
        Ok(n) if n > avail => return Err(FuzzError::Cores(s.to_string(), avail)),
        Ok(n) => format!("0-{}", n - 1),
        Err(_) => s.trim().to_string(),
    };
    match Cores::from_cmdline(&list) {
        Ok(c) if !c.ids.is_empty() && c.ids.iter().all(|id| id.0 < avail) => Ok(list),
        _ => Err(FuzzError::Cores(s.to_string(), avail)),
    }
}

/// The broker address: loopback unless built with the `public-broker` feature.
pub fn parse_listen(s: &str) -> Result<SocketAddr, FuzzError> {
    let a: SocketAddr =
        s.parse().map_err(|_| FuzzError::Listen(s.into(), "expected IP:PORT, like 127.0.0.1:1337".into()))?;
    if !a.ip().is_loopback() && !cfg!(feature = "public-broker") {
        return Err(FuzzError::Listen(
            s.into(),
            "this cmafuzz binds its broker to loopback only; rebuild with `cargo build --release --features public-broker` to accept other machines".into(),
        ));
    }
    if !a.ip().is_loopback() && !a.ip().is_unspecified() {
        return Err(FuzzError::Listen(
            s.into(),
            "this machine's own clients reach the broker over loopback: listen on 0.0.0.0:PORT (or [::]:PORT)".into(),
        ));
    }
    if a.port() == 0 {
        return Err(FuzzError::Listen(s.into(), "port 0 is not a port other clients can find".into()));
    }
    Ok(a)
}

pub fn parse_broker(s: &str) -> Result<SocketAddr, FuzzError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| FuzzError::Broker(s.to_string()))
}

/// `*.prog` / `*.json` files of `dir`, sorted, hidden files skipped.
fn program_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    !hidden && matches!(p.extension().and_then(|e| e.to_str()), Some("prog" | "json"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Where a program file a campaign reads comes from: the user's `--corpus` (not ours to move)
/// or the campaign's own `OUT/corpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Seeds,
    Corpus,
}

/// The program files of `dir` that read and parse. Each other one is set aside in
/// `quarantine` and reported in one line on stderr, so one bad file neither stops the campaign
/// (LibAFL would refuse the whole list) nor goes unnoticed: an `OUT/corpus` file is moved there
/// (`corpus.NAME`); a `--corpus` seed is left where it is (it is the user's, perhaps under
/// version control) and a copy is put there (`seeds.NAME`).
fn parseable_files(dir: &Path, origin: Origin, quarantine: &Path) -> Result<Vec<PathBuf>, FuzzError> {
    let mut ok = Vec::new();
    for p in program_files(dir) {
        let why = match input::read_program(&p) {
            Ok(_) => {
                ok.push(p);
                continue;
            }
            Err(why) => why,
        };
        let set_aside = match origin {
            Origin::Corpus => crate::disk::quarantine(quarantine, &p, "corpus"),
            Origin::Seeds => crate::disk::quarantine_copy(quarantine, &p, "seeds"),
        };
        let dest = set_aside.map_err(|e| FuzzError::Io { what: quarantine.to_path_buf(), msg: e.to_string() })?;
        crate::disk::notice(&match origin {
            Origin::Corpus => format!(
                "cmafuzz fuzz: {}: {why}; moved it to {} and going on without it (delete it, or fix it and copy it back)",
                p.display(),
                dest.display()
            ),
            Origin::Seeds => format!(
                "cmafuzz fuzz: seed {}: {why}; going on without it (fix or remove it; a copy is in {})",
                p.display(),
                dest.display()
            ),
        });
    }
    Ok(ok)
}

/// The seed files whose programs use no op kind of `refused` (the kernel would refuse them);
/// `say`: one line naming what was left out and why.
fn offered_seeds(files: &[PathBuf], refused: &[&str], say: bool) -> Vec<PathBuf> {
    if refused.is_empty() {
        return files.to_vec();
    }
    let (keep, out): (Vec<_>, Vec<_>) = files
        .iter()
        .cloned()
        .partition(|f| input::read_program(f).map_or(true, |p| !p.ops.iter().any(|op| refused.contains(&op.kind()))));
    if say && !out.is_empty() {
        eprintln!(
            "cmafuzz fuzz: this kernel refuses {} (its boot self-check): {} seed(s) using them left out, and no program will have them",
            refused.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            out.len()
        );
    }
    keep
}

/// The areas (by name) `p` names.
fn named_areas(p: &reference_impl::program::Program) -> std::collections::BTreeSet<String> {
    p.ops
        .iter()
        .filter_map(|op| match crate::generate::op_area(op) {
            Some(reference_impl::program::AreaRef::Name(n)) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// The program files of `dir` (the per-area seeds) that name only areas of `target` (its
/// recorded boot layout); a missing `dir` is no files.
pub fn area_seed_files(dir: &Path, target: &Target) -> Vec<PathBuf> {
    let have: std::collections::BTreeSet<String> = target.boot.iter().map(|a| a.name.clone()).collect();
    program_files(dir)
        .into_iter()
        .filter(|p| input::read_program(p).is_ok_and(|prog| named_areas(&prog).is_subset(&have)))
        .collect()
}

/// The areas of `target` no program of `files` names: one warning line each (the generator
/// still reaches them, but a campaign starts faster from a program that does).
fn warn_unseeded_areas(target: &Target, files: &[PathBuf], area_seeds: Option<&Path>) {
    let named: std::collections::BTreeSet<String> =
        files.iter().filter_map(|p| input::read_program(p).ok()).flat_map(|p| named_areas(&p)).collect();
    for a in &target.boot {
        if !named.contains(&a.name) {
            crate::disk::notice(&format!(
                "cmafuzz fuzz: warning: no seed program names area `{}` of {}; the generator still picks it, but add a program naming it to {} (see README, \"Every area\")",
                a.name,
                target.name,
                area_seeds.map_or_else(|| "the --area-seeds directory".to_string(), |d| d.display().to_string())
            ));
        }
    }
}

/// Generated programs over the target's areas (as its kernel reports them), without the op
/// kinds its kernel refuses, handles made valid.
pub struct ProgramGenerator {
    pub space: Arc<mutate::Space>,
}

impl<S: HasRand> Generator<ProgramInput, S> for ProgramGenerator {
    fn generate(&mut self, state: &mut S) -> Result<ProgramInput, Error> {
        let seed = state.rand_mut().next();
        let mut d = mutate::SplitMix(seed);
        let p =
            crate::generate::without_kinds(crate::generate::program_for(seed, &self.space.areas), &self.space.refused);
        Ok(ProgramInput(mutate::valid(p, &mut d)))
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
/// SIGINT/SIGTERM received so far.
static SIGNALS: AtomicU32 = AtomicU32::new(0);
/// What a second signal exits with: LibAFL's `CTRL_C_EXIT` in a client (its restarter then
/// stops instead of respawning it), 130 (128 + SIGINT) in the launching process.
static SECOND_EXIT: AtomicU32 = AtomicU32::new(130);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
        // A second Ctrl-C: out at once, whatever is running (the exit minimization).
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(SECOND_EXIT.load(Ordering::SeqCst) as libc::c_int) }
    }
}

/// Replaces (does not chain to) the client's SIGINT/SIGTERM handlers. Hand-written rather
/// than `signal-hook`, whose registry calls the handler it found before its own: in a LibAFL
/// client that is LibAFL's shutdown handler, `_exit(100)`, which would end the client mid-input
/// instead of between inputs with an orderly `send_exiting`. The first signal stops the
/// campaign between inputs (then findings left unminimized are minimized within
/// `--exit-minimize-budget`); a second one exits at once.
fn install_stop_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// How the launching process tells its clients to stop when they may not have been signalled
/// themselves (a SIGTERM to it alone), or that it is gone: a pipe whose write end only it holds
/// (each client's restarter closes its copy before it forks the client). Closing it, or the
/// launching process exiting, makes the clients' read end read end-of-file.
#[derive(Debug, Clone, Copy)]
struct StopPipe {
    read: libc::c_int,
    write: libc::c_int,
}

impl StopPipe {
    fn new() -> Result<Self, FuzzError> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(FuzzError::Libafl(format!("pipe: {}", std::io::Error::last_os_error())));
        }
        Ok(StopPipe { read: fds[0], write: fds[1] })
    }

    /// The write end goes: in a client's restarter (before it forks the client), or in the
    /// launching process to stop its clients. Called once per process.
    fn close_write(&self) {
        // SAFETY: closing a descriptor this process got from `pipe` and has not closed.
        unsafe { libc::close(self.write) };
    }

    /// The launching process closed its end or is gone.
    fn asked(&self) -> bool {
        let mut p = libc::pollfd { fd: self.read, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }
}

/// Kept on `libc` (`kill(pid, 0)`, one line): no crate says it more simply.
fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a campaign left in `OUT`, for the summary and the exit code.
#[derive(Debug)]
pub struct Summary {
    pub findings: Vec<findings::Meta>,
    pub corpus: u64,
    pub last_status: Option<monitor::Status>,
    pub out: PathBuf,
}

impl Summary {
    /// 1 when `OUT/findings` holds any finding, else 0 (errors are `Err`, exit 2).
    pub fn exit_code(&self) -> u8 {
        crate::oracle::exit_code(false, !self.findings.is_empty())
    }
}

/// Runs the campaign. Returns in the launching process only; clients exit inside.
pub fn run(opts: &FuzzOptions) -> Result<Summary, FuzzError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| FuzzError::Io { what: p, msg: e.to_string() }
    };
    std::fs::create_dir_all(opts.out.join("corpus")).map_err(io(&opts.out))?;
    if !opts.corpus.is_dir() {
        return Err(FuzzError::NoCorpus(opts.corpus.clone()));
    }
    let quarantine = opts.out.join("quarantine");
    let mut files = parseable_files(&opts.corpus, Origin::Seeds, &quarantine)?;
    if let Some(dir) = &opts.area_seeds {
        files.extend(area_seed_files(dir, &opts.target));
    }
    warn_unseeded_areas(&opts.target, &files, opts.area_seeds.as_deref());
    files.extend(parseable_files(&opts.out.join("corpus"), Origin::Corpus, &quarantine)?);
    if files.is_empty() {
        return Err(FuzzError::NoSeeds(opts.corpus.clone(), opts.out.join("corpus")));
    }
    if opts.backend == BackendChoice::Kernel {
        return Err(FuzzError::Backend);
    }
    // Build (or find) the kernel here, once, so clients only boot it and a bad patch is one
    // error before anything forks. The model alone needs none.
    let art = match opts.backend {
        BackendChoice::Model => None,
        _ => Some(session::build_kernel(&opts.target, &opts.kernel, &mut |l| eprintln!("{l}"))?),
    };
    let store = findings::FindingStore::open(
        &opts.out,
        &opts.target.name,
        art.as_ref().map(|a| a.key.clone()),
        opts.kernel.patches.iter().map(|p| p.display().to_string()).collect(),
    )?;
    if let Some(art) = &art {
        crate::coverage::record_kernel(
            &opts.out,
            &crate::coverage::KernelRecord {
                target: opts.target.name.clone(),
                key: art.key.clone(),
                vmlinux: art.vmlinux.clone(),
            },
        )
        .map_err(|e| FuzzError::Io { what: crate::coverage::dir(&opts.out), msg: e.to_string() })?;
    }
    let focus = art.as_ref().and_then(|a| resolve_focus(&opts.focus, &a.vmlinux));
    let resumed = program_files(&opts.out.join("corpus")).len();
    let before = store.existing()?.len();
    eprintln!(
        "cmafuzz fuzz: {} kernel {} on cores {} for {} s; out {} ({} corpus entries, {} findings already there)",
        opts.target.name,
        art.as_ref().map_or_else(|| "none (the model alone)".to_string(), |a| a.key.clone()),
        opts.cores,
        opts.duration.as_secs(),
        opts.out.display(),
        resumed,
        before
    );
    let deadline = unix_now() + opts.duration.as_secs();
    // SAFETY: getpid cannot fail.
    let main_pid = unsafe { libc::getpid() };
    let cores = Cores::from_cmdline(&opts.cores).map_err(|_| FuzzError::Cores(opts.cores.clone(), 0))?;
    let shmem = StdShMemProvider::new().map_err(|e| FuzzError::Libafl(e.to_string()))?;
    let mon = monitor::StatusMonitor::new(&opts.out, opts.json_stats.clone(), STATUS_INTERVAL)
        .with_focus_sites(focus.as_ref().map_or(0, |f| f.sites.len() as u64));
    let log = opts.out.join("clients.log");
    let log_s = log.display().to_string();
    let stop = StopPipe::new()?;

    let run_client = |state: Option<St>, mut mgr: Mgr, desc: libafl::events::ClientDescription| -> Result<(), Error> {
        SECOND_EXIT.store(libafl_bolts::os::CTRL_C_EXIT as u32, Ordering::SeqCst);
        install_stop_handlers();
        let counters = Arc::new(Counters::default());
        let mut executor =
            VmExecutor::new(opts.target.clone(), opts.kernel.clone(), opts.backend, opts.sup.clone(), counters.clone());
        executor.write_coverage_to(opts.out.clone(), desc.id(), STATUS_INTERVAL);
        if let Some(f) = &focus {
            executor.set_focus(f.clone());
        }
        // The areas the generator and the mutators choose among (the kernel's own list), and
        // the op kinds they leave out (the kernel refuses them: its boot self-check).
        let started = executor.ensure_started()?;
        let space = Arc::new(mutate::Space {
            areas: crate::generate::GenArea::of(&started.boot.areas),
            refused: started.refused_kinds(),
        });
        let files = offered_seeds(&files, &space.refused, desc.id() == 0);
        let mut feedback = EagerOrFeedback::new(
            MaxMapFeedback::new(&executor.observers_ref().0),
            corpus::QueueEntriesFeedback::new(executor.observers_ref().0.handle()),
        );
        let pending: objective::Pending = Arc::default();
        let mut objective = objective::FindingFeedback::new(
            store.clone(),
            executor.observers_ref().1 .0.handle(),
            counters.clone(),
            pending.clone(),
        );
        let mut minimizing = Duration::ZERO;
        let mut state = match state {
            Some(s) => s,
            None => StdState::new(
                StdRand::with_seed(opts.seed.wrapping_add(desc.id() as u64)),
                InMemoryOnDiskCorpus::no_meta(opts.out.join("corpus"))?,
                InMemoryCorpus::new(),
                &mut feedback,
                &mut objective,
            )?,
        };
        // Favour, for every coverage entry, the shortest program that reaches it (AFL's
        // "favored" inputs): the queue grows by one program per new entry, and without this
        // the old, long ones get as many turns as the few that cover everything.
        let scheduler = IndexesLenTimeMinimizerScheduler::new(&executor.observers_ref().0, QueueScheduler::new());
        let mut fuzzer = StdFuzzer::new(scheduler, feedback, objective);
        if state.must_load_initial_inputs() {
            state.load_initial_inputs_by_filenames_forced(&mut fuzzer, &mut executor, &mut mgr, &files)?;
            if state.corpus().count() == 0 {
                let mut generator = ProgramGenerator { space: space.clone() };
                state.generate_initial_inputs_forced(&mut fuzzer, &mut executor, &mut generator, &mut mgr, 8)?;
            }
        }
        let mutator = HavocScheduledMutator::with_max_stack_pow(mutate::mutators(space.clone()), 3);
        let mut stages = tuple_list!(StdMutationalStage::with_max_iterations(
            mutator,
            NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN)
        ));
        let found = || opts.stop_on_finding && !monitor::finding_dirs(&opts.out).is_empty();
        let culled_log = opts.out.join("corpus.culled");
        let mut kept = state.corpus().count();
        // New findings the running budget did not reach: minimized at exit.
        let mut left: Vec<PathBuf> = Vec::new();
        let stopped = || STOP.load(Ordering::SeqCst) || stop.asked() || !alive(main_pid);
        while !stopped() && unix_now() < deadline && !found() {
            fuzzer.fuzz_one(&mut stages, &mut executor, &mut state, &mut mgr)?;
            mgr.maybe_report_progress(&mut state, Duration::from_secs(2))?;
            if corpus::should_cull(state.corpus().count(), kept) {
                kept = cull_queue(
                    &mut state,
                    HasScheduler::<ProgramInput, St>::scheduler_mut(&mut fuzzer),
                    &counters,
                    &culled_log,
                )?;
            }
            let todo: Vec<PathBuf> = pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
            let budget = opts.minimize_budget.saturating_sub(minimizing);
            let (spent, rest) = triage_dirs(todo, &mut executor, budget, true)?;
            minimizing += spent;
            left.extend(rest);
        }
        if state.corpus().count() > kept {
            cull_queue(
                &mut state,
                HasScheduler::<ProgramInput, St>::scheduler_mut(&mut fuzzer),
                &counters,
                &culled_log,
            )?;
        }
        left.extend(pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default());
        if !opts.minimize_budget.is_zero() && !opts.exit_minimize_budget.is_zero() && !left.is_empty() {
            eprintln!(
                "cmafuzz fuzz: minimizing the {} new findings left before exiting, for at most {} (Ctrl-C again exits at once)",
                left.len(),
                humantime::format_duration(opts.exit_minimize_budget)
            );
            triage_dirs(left, &mut executor, opts.exit_minimize_budget, false)?;
        }
        executor.flush_coverage();
        executor.report(&mut state, &mut mgr, true)?;
        mgr.send_exiting()?;
        Ok(())
    };

    // Fail before forking anything when the port is taken or the other broker is not there. The
    // socket stays bound from here to the broker.
    let listener = match opts.listen {
        Some(listen) => std::net::TcpListener::bind(listen).map_err(|e| {
            FuzzError::Listen(
                listen.to_string(),
                format!("{e} (another campaign on this port? pick one with --listen)"),
            )
        })?,
        None => {
            let (listener, moved) = default_listen()?;
            if let Some(why) = moved {
                eprintln!("cmafuzz fuzz: {why}");
            }
            listener
        }
    };
    let listen = listener.local_addr().map_err(|e| FuzzError::Listen("the broker's socket".into(), e.to_string()))?;
    let listener = std::cell::RefCell::new(Some(listener));
    let port = listen.port();
    if let Some(addr) = opts.broker {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| FuzzError::BrokerUnreachable(addr.to_string(), e.to_string()))?;
    }
    let broker_err = std::cell::RefCell::new(None::<String>);
    let remote = opts.broker;
    let client_shmem = shmem.clone();
    // LibAFL 0.16.1's `Launcher::launch` ignores `remote_broker_addr`, and its TCP broker numbers
    // the first local client like a B2B link made after the listener (so that client drops every
    // message from the other machine as its own, and the link drops every message of that client):
    // clients go through `setup_restarting_mgr_llmp`, the broker is [`run_broker`].
    let spawn_mgr =
        |_l: &_, desc: Option<libafl::events::ClientDescription>, mon: Option<monitor::StatusMonitor>| match desc {
            Some(client_description) => {
                // The client's restarter: only the launching process keeps the write end.
                stop.close_write();
                // Only the broker listens.
                drop(listener.borrow_mut().take());
                libafl::events::setup_restarting_mgr_llmp(
                    client_shmem.clone(),
                    EventConfig::AlwaysUnique,
                    None::<monitor::StatusMonitor>,
                    port,
                    libafl::events::ManagerKind::Client { client_description },
                    None,
                    libafl::events::ShouldSaveState::OnRestart,
                    tuple_list!(),
                )
            }
            None => {
                let mon = mon.ok_or_else(|| Error::illegal_state("the broker has no monitor"))?;
                let l =
                    listener.borrow_mut().take().ok_or_else(|| Error::illegal_state("the broker's socket is gone"))?;
                if let Err(e) = run_broker(client_shmem.clone(), mon, l, remote, stop) {
                    // The launcher only logs a broker's error: keep it for the exit code.
                    *broker_err.borrow_mut() = Some(e.to_string());
                }
                Err(Error::shutting_down())
            }
        };
    let launched = Launcher::builder()
        .shmem_provider(shmem)
        .configuration(EventConfig::AlwaysUnique)
        .monitor(mon)
        .run_client(run_client)
        .cores(&cores)
        .broker_port(port)
        .stdout_file(Some(&log_s))
        .build()
        .launch_with_manager(spawn_mgr);
    // SAFETY: getpid cannot fail.
    if unsafe { libc::getpid() } != main_pid {
        // A client or its restarter coming back out of the launcher: its work is done, or it
        // failed (said in the clients' log: the restarter only sees the exit).
        if let Some(e) = launched.as_ref().err().filter(|e| !matches!(e, Error::ShuttingDown)) {
            eprintln!("cmafuzz fuzz: client {} stopped: {e}", std::process::id());
        }
        std::process::exit(0);
    }
    match launched {
        Ok(()) | Err(Error::ShuttingDown) => {}
        Err(e) => return Err(FuzzError::Libafl(e.to_string())),
    }
    if let Some(e) = broker_err.into_inner() {
        return Err(FuzzError::Libafl(format!("broker: {e}")));
    }
    let last_status: Option<monitor::Status> =
        std::fs::read_to_string(opts.out.join("stats.json")).ok().and_then(|s| serde_json::from_str(&s).ok());
    // A campaign whose clients never ran anything (every VM start failed, a client crashed at
    // once) is an error, not a clean run with nothing found.
    let ran = last_status.as_ref().is_some_and(|s| s.execs > 0) || monitor::corpus_files(&opts.out) > 0;
    if !ran && !STOP.load(Ordering::SeqCst) {
        return Err(FuzzError::NoExecs { log: log.clone(), tail: crate::disk::tail(&log, 15) });
    }
    Ok(Summary {
        findings: store.existing()?,
        corpus: monitor::corpus_files(&opts.out),
        last_status,
        out: opts.out.clone(),
    })
}

/// Culls the client's queue ([`corpus::cull`]), counting what went; returns the entries kept.
fn cull_queue<CS>(state: &mut St, scheduler: &mut CS, counters: &Counters, log: &Path) -> Result<usize, Error>
where
    CS: libafl::schedulers::RemovableScheduler<ProgramInput, St>,
{
    let c = corpus::cull(state, scheduler, log)?;
    counters.culled.fetch_add((c.before - c.after) as u64, Ordering::Relaxed);
    eprintln!("cmafuzz fuzz: queue culled from {} to {} programs covering every entry it reached", c.before, c.after);
    Ok(c.after)
}

/// Triages the findings of `dirs` on the client's VM within `budget`
/// ([`findings::minimize::triage_within`]), one line each in the client's log; returns the time
/// spent and the directories not reached. `stop_on_signal`: a first SIGINT/SIGTERM ends it too
/// (at exit only a second one does, by exiting). A failed triage leaves its finding as it was.
fn triage_dirs(
    dirs: Vec<PathBuf>,
    executor: &mut VmExecutor,
    budget: Duration,
    stop_on_signal: bool,
) -> Result<(Duration, Vec<PathBuf>), Error> {
    use findings::minimize::{ExecRunner, Runner, Triaged};
    let start = std::time::Instant::now();
    let stop = || stop_on_signal && STOP.load(Ordering::SeqCst);
    let (done, rest) = findings::minimize::triage_within(
        dirs,
        move || -> Result<Box<dyn Runner + '_>, String> {
            Ok(Box::new(ExecRunner::new(executor.ensure_started().map_err(|e| e.to_string())?)))
        },
        budget,
        &stop,
    )
    .map_err(Error::illegal_state)?;
    for (dir, t) in done {
        match t {
            Triaged::Done(saved, m) => eprintln!(
                "cmafuzz fuzz: {}: first verdict after every op {}; {} ops after {} runs{}",
                dir.display(),
                m.signature,
                m.program.ops.len(),
                m.runs,
                match saved {
                    findings::Saved::Kept(_) => String::new(),
                    findings::Saved::MergedInto(d) => format!("; the same bug as {}: merged into it", d.display()),
                }
            ),
            Triaged::Failed(e) => eprintln!("cmafuzz fuzz: {}: not minimized: {e}", dir.display()),
        }
    }
    Ok((start.elapsed(), rest))
}

/// The broker, in the launching process: B2B link first (when `--broker` is given), so it gets
/// client id 0 and the listener's numbering of local clients starts after it; then the listener
/// on `listen`; then forwarding until every client process (the launcher's children) has gone.
/// On SIGINT/SIGTERM it tells the clients to stop ([`StopPipe`]) and goes on forwarding until
/// they have (each minimizes what it has left first, within `--exit-minimize-budget`); a second
/// signal exits at once. A B2B link never "exits", so LLMP's own exit-after-N-clients rule would
/// keep a linked campaign running past its deadline.
fn run_broker(
    shmem: StdShMemProvider,
    mon: monitor::StatusMonitor,
    listener: std::net::TcpListener,
    remote: Option<SocketAddr>,
    stop: StopPipe,
) -> Result<(), Error> {
    use libafl_bolts::llmp::{Broker, Listener, LlmpBroker, Tag};
    // ll_mp's `LLMP_TAG_EXITING` (private there): tells the clients the broker is gone.
    const LLMP_TAG_EXITING: Tag = Tag(0x13C5171);
    install_stop_handlers();
    let hook = libafl::events::StdLlmpEventHook::<ProgramInput, _>::new(mon)?;
    let mut broker = LlmpBroker::new(shmem, tuple_list!(hook))?;
    if let Some(addr) = remote {
        broker
            .inner_mut()
            .connect_b2b(addr)
            .map_err(|e| Error::illegal_state(format!("--broker {addr}: cannot join that campaign's broker: {e}")))?;
        eprintln!("cmafuzz fuzz: linked to the broker at {addr}");
    }
    broker.inner_mut().launch_listener(Listener::Tcp(listener))?;
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let mut checked = std::time::Instant::now();
    let mut stopping = false;
    loop {
        let busy = broker.broker_once()?;
        if !stopping && STOP.load(Ordering::SeqCst) {
            stopping = true;
            stop.close_write();
        }
        if checked.elapsed() >= Duration::from_millis(200) {
            checked = std::time::Instant::now();
            if live_children(me) == 0 {
                // Whatever the last client sent before exiting.
                broker.broker_once()?;
                break;
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    broker.send_buf(LLMP_TAG_EXITING, &[])?;
    Ok(())
}

/// Processes whose parent is `ppid` and that have not exited (zombies do not count), from /proc.
fn live_children(ppid: libc::pid_t) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else { return 0 };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
            // After the command (in parentheses): state ppid …
            let mut f = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace();
            let state = f.next();
            let parent = f.next().and_then(|p| p.parse::<libc::pid_t>().ok());
            parent == Some(ppid) && state.is_some_and(|s| s != "Z" && s != "X")
        })
        .count()
}

/// The event manager of one client.
pub type Mgr = libafl::events::LlmpRestartingEventManager<(), ProgramInput, St, StdShMem, StdShMemProvider>;

/// The state of one client.
pub type St = StdState<InMemoryOnDiskCorpus<ProgramInput>, ProgramInput, StdRand, InMemoryCorpus<ProgramInput>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_listen_a_campaign_moves_off_a_default_port_another_one_holds() {
        // Held by this test, or by something else on the machine: taken either way.
        let _held = std::net::TcpListener::bind(DEFAULT_LISTEN);
        let (l, why) = default_listen().expect("a free loopback port");
        let a = l.local_addr().expect("bound");
        assert!(a.ip().is_loopback() && a.port() != 1337, "{a}");
        let why = why.expect("the move is said");
        assert!(why.contains("127.0.0.1:1337 is in use") && why.contains(&a.to_string()), "{why}");
        assert!(std::net::TcpListener::bind(a).is_err(), "the port is held until the broker takes it");
        drop(l);
        assert!(std::net::TcpListener::bind(a).is_ok(), "and was free");
    }

    #[test]
    fn durations_take_a_unit_or_bare_seconds_and_never_zero() {
        for (s, secs) in [("30s", 30), ("10m", 600), ("8h", 8 * 3600), ("1d", 86400), ("45", 45), (" 2m ", 120)] {
            assert_eq!(parse_duration(s).expect(s), Duration::from_secs(secs), "{s}");
        }
        for bad in ["", "0", "0s", "ten", "5x", "-3s"] {
            let e = parse_duration(bad).expect_err(bad).to_string();
            assert!(e.starts_with(&format!("--duration {bad}:")) && e.contains("30s, 10m, 8h or 1d"), "{e}");
        }
    }

    const GOOD: &str = "cma_alloc area=reserved count=3 align=0\n";

    #[test]
    fn an_unparsable_corpus_file_is_moved_to_quarantine_once_and_good_ones_stay() {
        let out = tempfile::tempdir().expect("tempdir");
        let corpus = out.path().join("corpus");
        std::fs::create_dir_all(&corpus).expect("mkdir");
        std::fs::write(corpus.join("good.prog"), GOOD).expect("write");
        std::fs::write(corpus.join("bad.prog"), "cma_alloc count=banana\n").expect("write");
        std::fs::write(corpus.join("bad.json"), [0xff, 0xfe]).expect("write");
        let q = out.path().join("quarantine");
        crate::disk::take_notices();
        let files = parseable_files(&corpus, Origin::Corpus, &q).expect("a bad file does not stop the campaign");
        assert_eq!(files, vec![corpus.join("good.prog")]);
        assert_eq!(std::fs::read_to_string(corpus.join("good.prog")).expect("good stays"), GOOD);
        assert!(!corpus.join("bad.prog").exists() && !corpus.join("bad.json").exists());
        assert_eq!(std::fs::read_to_string(q.join("corpus.bad.prog")).expect("moved"), "cma_alloc count=banana\n");
        assert!(q.join("corpus.bad.json").is_file());
        let said = crate::disk::take_notices();
        assert_eq!(said.len(), 2, "one line per file: {said:?}");
        assert!(said.iter().any(|l| l.contains("bad.prog") && l.contains("corpus.bad.prog")), "{said:?}");
        // The next start finds nothing more to say.
        assert_eq!(parseable_files(&corpus, Origin::Corpus, &q).expect("again").len(), 1);
        assert!(crate::disk::take_notices().is_empty());
    }

    #[test]
    fn area_seeds_join_only_for_targets_with_those_areas_and_an_unseeded_area_is_a_warning() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpora/areas");
        let hug = crate::targets::find(Some("arm64-hugetlb-6.1")).expect("target");
        let pools = crate::targets::find(Some("arm32-pools-6.1")).expect("target");
        let plain = crate::targets::find(Some("arm32-6.1")).expect("target");
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(area_seed_files(&root, &hug)), vec!["hugetlb0.prog"]);
        assert_eq!(names(area_seed_files(&root, &pools)), vec!["pool-high.prog", "pool-low.prog"]);
        assert!(area_seed_files(&root, &plain).is_empty());
        let seeds = program_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpora/seed"));
        crate::disk::take_notices();
        // The repository's seeds name every area of every target with areas.
        for t in [&hug, &pools, &plain] {
            let mut files = seeds.clone();
            files.extend(area_seed_files(&root, t));
            warn_unseeded_areas(t, &files, Some(&root));
            assert!(crate::disk::take_notices().is_empty(), "{}", t.name);
        }
        // Without the area seeds, hugetlb0 is unseeded: one line naming it and where seeds go.
        warn_unseeded_areas(&hug, &seeds, Some(&root));
        let said = crate::disk::take_notices();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("`hugetlb0`") && said[0].contains("corpora/areas"), "{}", said[0]);
    }

    #[test]
    fn an_unparsable_seed_is_reported_and_copied_but_left_in_the_users_directory() {
        let d = tempfile::tempdir().expect("tempdir");
        let seeds = d.path().join("seeds");
        std::fs::create_dir_all(&seeds).expect("mkdir");
        std::fs::write(seeds.join("good.prog"), GOOD).expect("write");
        std::fs::write(seeds.join("bad.prog"), "frobnicate\n").expect("write");
        let q = d.path().join("out/quarantine");
        crate::disk::take_notices();
        let files = parseable_files(&seeds, Origin::Seeds, &q).expect("goes on");
        assert_eq!(files, vec![seeds.join("good.prog")]);
        assert_eq!(std::fs::read_to_string(seeds.join("bad.prog")).expect("left alone"), "frobnicate\n");
        assert!(q.join("seeds.bad.prog").is_file());
        let said = crate::disk::take_notices();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("bad.prog") && said[0].contains("fix or remove"), "{}", said[0]);
    }
}
