//! One trait where the worlds meet: the reference model and the real kernel in qemu both run a
//! resolved program and return outcomes and observations in the model crate's vocabulary. The
//! spine (`diff`) is generic over it, so any two backends can run one program: the model and a
//! kernel, two kernels (a base and a patched build, two versions), or two model profiles. Nothing
//! here carries a wire type: the kernel backend decodes the driver's frames (`kernel::codec`)
//! before anything above sees them.

pub mod kernel;
pub mod model;

pub use kernel::KernelBackend;
pub use model::ModelBackend;

use crate::guest::GuestError;
use crate::vm::VmError;
use reference_impl::observation::Observation;
use reference_impl::outcome::Outcome;
use reference_impl::program::ResolvedProgram;
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BackendError {
    /// The VM could not be booted.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The guest failed during a program; the console tail says why. `at`: the program's op the
    /// guest was stuck at, when its progress reports tell (a hang: the count stopped there).
    #[error("{source}")]
    Guest { source: GuestError, console: String, at: Option<usize> },
    /// The guest answered with a status that makes no sense for the op.
    #[error("guest answered op {index} ({kind}) with status {status}: a garbled guest")]
    Inconsistent { index: usize, kind: u32, status: u32 },
    /// The kernel's boot self-check found that this op kind does not do what it means there.
    #[error(
        "op {index} `{op}` cannot run on this kernel (Linux {release}): its boot self-check found that it does \
         not hold that {meaning} (the console's `cmafuzz: self-check:` lines say why); the program is refused \
         rather than run as something else"
    )]
    OpUnsupported { index: usize, op: &'static str, release: String, meaning: &'static str },
    /// The model cannot run this profile or layout.
    #[error("model: {0}")]
    Model(String),
}

/// The driver's own answer to one op, as it gave it (status code, pfn, pages, aux): kept beside
/// the decoded outcome for reports (`replay --json`'s `kernel_raw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DriverReply {
    pub status: u32,
    pub kind: u32,
    pub pfn: u64,
    pub pages: u64,
    pub aux: u64,
    /// Released pages the driver found still referenced right after `cma_release()` (wire 7).
    pub stale_refs: u64,
}

/// What one backend did with one program.
#[derive(Debug, Clone)]
pub struct ProgramRun {
    pub outcomes: Vec<Outcome>,
    /// The driver's answer per op (kernel backends only).
    pub raw: Vec<Option<DriverReply>>,
    /// (op index, observation) for every `observe` op.
    pub observations: Vec<(usize, Observation)>,
    /// The state after the last op.
    pub end: Observation,
    /// Kernel code coverage (KCOV PCs) of the run; empty for the model and for kernels without it.
    pub coverage: Vec<u64>,
}

/// What a reset left.
#[derive(Debug, Clone)]
pub struct Reset {
    /// The state right after the reset, when the backend could observe it.
    pub state: Option<Observation>,
    /// The backend had to go back to its boot state the hard way (a kernel rebooted): whatever
    /// runs in lockstep with it must go back to boot too.
    pub restarted: bool,
}

/// A program runner the spine can drive: the model or a kernel.
pub trait Backend {
    /// Who this is in reports: `model`, `kernel`.
    fn name(&self) -> &str;
    /// The CMA layout right after boot.
    fn boot_observation(&self) -> &Observation;
    /// The driver's RESET (every handle freed, every page unpinned; arm64 pool growth stays),
    /// then what the state is.
    fn reset(&mut self) -> Result<Reset, BackendError>;
    /// Back to the boot state the hard way (a kernel reboots and gets its first RESET +
    /// OBSERVE; the model drops its pool growth), and the state then.
    fn restart(&mut self) -> Result<Option<Observation>, BackendError>;
    /// Takes what the other side's reset revealed that this side cannot know by itself (the
    /// kernel's PKMAP cursor, for the model); nothing for a kernel.
    fn adopt(&mut self, _other_reset: Option<&Observation>) {}
    /// Runs one program from the current state.
    fn run(&mut self, prog: &ResolvedProgram) -> Result<ProgramRun, BackendError>;
    /// What the backend printed since the last call (a kernel's console), each line once.
    fn new_console(&mut self) -> String {
        String::new()
    }
    /// Observe after every op, not only at `observe` ops and the end.
    fn set_observe_each(&mut self, on: bool);
    /// Collect code coverage of every run, where the backend can; says whether it will.
    fn set_coverage(&mut self, _on: bool) -> bool {
        false
    }
    /// Times this backend restarted since it was made.
    fn restarts(&self) -> u32 {
        0
    }
    /// The op kinds (`Op::kind` names) this backend refuses to run because they would not mean
    /// what they mean (a kernel's boot self-check); generators leave them out.
    fn refused_kinds(&self) -> Vec<&'static str> {
        Vec::new()
    }
}
