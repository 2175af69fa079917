//! The real kernel in qemu as a backend: a VM booted from built artifacts (`boot` builds and
//! boots a target), one RUN frame per program through the agent, the driver's answers decoded
//! into the shared vocabulary (`codec`, `memtype`).

pub mod boot;
pub mod codec;
pub mod memtype;

use super::{Backend, BackendError, ProgramRun, Reset};
use crate::guest::wire::{self, WireOp};
use crate::guest::GuestError;
use crate::vm::{Instance, Launcher, QemuLauncher, VmSpec};
use memtype::AttrDecoder;
use reference_impl::observation::Observation;
use reference_impl::program::ResolvedProgram;

/// The real kernel in qemu, driven through the agent.
pub struct KernelBackend {
    /// Who this kernel is in reports (`kernel`, or `kernel (patched)` beside another).
    pub name: String,
    spec: VmSpec,
    vm: Option<Box<dyn Instance>>,
    launcher: Box<dyn Launcher>,
    boot: Observation,
    /// Reboots caused by resets that did not restore the boot state or by dead guests.
    pub reboots: u32,
    pub boot_times: Vec<std::time::Duration>,
    /// The console of the last VM that was thrown away (bounded), so a dead
    /// guest's last words survive it.
    last_console: String,
    /// What the last VM printed that [`KernelBackend::new_console`] had not handed out yet.
    dead_console: Option<String>,
    /// The state after the RESET + OBSERVE that ended the last program's RUN, until the next
    /// [`Backend::reset`] takes it.
    pending_reset: Option<Observation>,
    /// Ask the driver for an observation after every op (`CF_RUN_OBSERVE_EACH`).
    pub observe_each: bool,
    /// RUN stage times of the VMs gone (the running one's are in its channel).
    past_times: crate::guest::ChannelTimes,
    /// Turning the driver's results into outcomes and observations.
    pub convert_time: std::time::Duration,
    /// Ask the agent for KCOV coverage of every run (`CF_RUN_KCOV`). Set it only when the
    /// hello says the agent has KCOV ([`wire::Hello::kcov`]); otherwise runs have no coverage.
    pub kcov: bool,
}

impl KernelBackend {
    /// Boots the kernel and reads its boot-time CMA layout.
    pub fn boot(spec: VmSpec) -> Result<Self, BackendError> {
        Self::boot_with(spec, Box::new(QemuLauncher))
    }

    /// Boots through `launcher` (a fake guest, in host-side fault-injection tests).
    pub fn boot_with(spec: VmSpec, launcher: Box<dyn Launcher>) -> Result<Self, BackendError> {
        let mut vm = launcher.boot(&spec)?;
        let boot_time = vm.boot_time();
        let boot = observe(vm.as_mut())?;
        Ok(KernelBackend {
            name: "kernel".into(),
            spec,
            vm: Some(vm),
            launcher,
            boot,
            reboots: 0,
            boot_times: vec![boot_time],
            last_console: String::new(),
            dead_console: None,
            pending_reset: None,
            observe_each: false,
            past_times: Default::default(),
            convert_time: std::time::Duration::ZERO,
            kcov: false,
        })
    }

    pub fn hello(&self) -> Option<&wire::Hello> {
        self.vm.as_ref().map(|v| v.hello())
    }

    fn vm(&mut self) -> Result<&mut dyn Instance, BackendError> {
        if self.vm.is_none() {
            let vm = self.launcher.boot(&self.spec)?;
            self.boot_times.push(vm.boot_time());
            self.reboots += 1;
            self.vm = Some(vm);
        }
        // Just ensured.
        match self.vm.as_deref_mut() {
            Some(vm) => Ok(vm),
            None => Err(BackendError::Model("no VM".into())),
        }
    }

    /// qemu's process id, if a VM runs (for fault-injection tests).
    pub fn vm_pid(&self) -> Option<u32> {
        self.vm.as_ref().and_then(|v| v.pid())
    }

    /// Throws the VM away; the next use boots a fresh one.
    pub fn discard_vm(&mut self) {
        self.drop_vm();
    }

    /// Drops the VM, keeping what it printed that nobody has read yet.
    /// Where the RUNs of every VM so far spent their time (for `cmafuzz bench`).
    pub fn channel_times(&mut self) -> crate::guest::ChannelTimes {
        let mut t = self.past_times;
        if let Some(vm) = self.vm.as_mut() {
            t.add(&vm.chan().times);
        }
        t
    }

    /// `n` RUNs of no ops on the running VM, timed from the first write to the last RESULT: the
    /// round trip's own cost, beside which a program's guest work is measured (`cmafuzz bench`).
    pub fn empty_round_trips(&mut self, n: u32) -> Result<std::time::Duration, BackendError> {
        let t = std::time::Instant::now();
        for _ in 0..n {
            let r = self.vm()?.chan().run(&[]);
            r.map_err(|e| self.guest_err(e))?;
        }
        Ok(t.elapsed())
    }

    fn drop_vm(&mut self) {
        self.pending_reset = None;
        if let Some(mut vm) = self.vm.take() {
            self.past_times.add(&vm.chan().times);
            let rest = vm.new_console(true);
            self.dead_console.get_or_insert_with(String::new).push_str(&rest);
        }
    }

    /// The console printed since the last call, across reboots: the rest of any VM thrown away
    /// since, then the current VM's new complete lines. Each line is handed out once, so the
    /// console is scanned once however long a campaign runs.
    pub fn new_console(&mut self) -> String {
        let mut out = self.dead_console.take().unwrap_or_default();
        if let Some(vm) = self.vm.as_mut() {
            out.push_str(&vm.new_console(false));
        }
        out
    }

    /// The console of the current VM (bounded), if one runs.
    /// The console of the current VM, or of the last one if it died (bounded to 1 MiB).
    pub fn console(&self) -> String {
        match &self.vm {
            Some(v) => v.console(),
            None => self.last_console.clone(),
        }
    }

    /// Boots a fresh VM and gives it the driver's RESET + OBSERVE, as every program gets: that
    /// flushes the PKMAP slots boot left and reports the cursor, which the model must take
    /// (without it, the first program after a reboot diverged on `mapping:pkmap-slot`).
    fn boot_fresh(&mut self) -> Result<Option<Observation>, BackendError> {
        self.drop_vm();
        self.vm()?;
        self.reset_observe().map_err(|e| self.guest_err(e))
    }

    /// The driver's RESET then OBSERVE on the running VM (the observation carries the PKMAP cursor).
    fn reset_observe(&mut self) -> Result<Option<Observation>, GuestError> {
        self.pending_reset = None;
        let Some(vm) = self.vm.as_mut() else { return Ok(None) };
        let r = vm.chan().run(&RESET_OBSERVE)?;
        let dec = codec::decoder(vm.hello());
        let now = r.observations.first().map(|o| codec::to_observation(o, &dec));
        Ok(now)
    }

    fn decoder(&mut self) -> Result<AttrDecoder, BackendError> {
        Ok(codec::decoder(self.vm()?.hello()))
    }

    fn guest_err(&mut self, source: GuestError) -> BackendError {
        self.guest_err_at(source, None)
    }

    fn guest_err_at(&mut self, source: GuestError, at: Option<usize>) -> BackendError {
        // The whole (bounded) console: an Oops header comes long before the panic.
        let console = self.vm.as_ref().map(|v| v.console()).unwrap_or_default();
        // A guest that failed once is not trusted again.
        self.drop_vm();
        self.last_console = console.clone();
        BackendError::Guest { source, console, at }
    }
}

fn observe(vm: &mut dyn Instance) -> Result<Observation, BackendError> {
    let r = vm
        .chan()
        .run(&[WireOp { kind: wire::OP_OBSERVE, ..Default::default() }])
        .map_err(|source| BackendError::Guest { source, console: vm.console_tail(40), at: None })?;
    let dec = codec::decoder(vm.hello());
    match r.observations.first() {
        Some(o) => Ok(codec::to_observation(o, &dec)),
        None => Err(BackendError::Inconsistent { index: 0, kind: wire::OP_OBSERVE, status: r.results[0].status }),
    }
}

impl Backend for KernelBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn boot_observation(&self) -> &Observation {
        &self.boot
    }

    /// The driver's RESET then OBSERVE. A guest that cannot reset, or a VM that died, is
    /// rebooted (the documented recovery), and the reset says so.
    fn reset(&mut self) -> Result<Reset, BackendError> {
        if self.vm.is_none() {
            // The last guest died: a fresh one is at its boot state already.
            let state = self.boot_fresh()?;
            return Ok(Reset { state, restarted: true });
        }
        // The last program's RUN ended with the reset: its state is this reset's.
        if let Some(state) = self.pending_reset.take() {
            return Ok(Reset { state: Some(state), restarted: false });
        }
        match self.reset_observe() {
            Ok(state) => Ok(Reset { state, restarted: false }),
            Err(e) => {
                let _ = self.guest_err(e);
                let state = self.boot_fresh()?;
                Ok(Reset { state, restarted: true })
            }
        }
    }

    fn restart(&mut self) -> Result<Option<Observation>, BackendError> {
        self.boot_fresh()
    }

    fn new_console(&mut self) -> String {
        KernelBackend::new_console(self)
    }

    fn set_observe_each(&mut self, on: bool) {
        self.observe_each = on;
    }

    fn set_coverage(&mut self, on: bool) -> bool {
        self.kcov = on && self.hello().is_some_and(wire::Hello::kcov);
        self.kcov
    }

    fn refused_kinds(&self) -> Vec<&'static str> {
        self.hello().map(codec::refused_kinds).unwrap_or_default()
    }

    fn restarts(&self) -> u32 {
        self.reboots
    }

    /// The program's ops, an OBSERVE, then the driver's RESET and OBSERVE, in one RUN frame: the
    /// reset the next program needs rides with this one (one round trip per program, not two),
    /// and what it hits (a kernel that dies freeing what this program left) is this program's.
    fn run(&mut self, prog: &ResolvedProgram) -> Result<ProgramRun, BackendError> {
        self.pending_reset = None;
        let mut ops: Vec<WireOp> = prog.ops.iter().map(codec::to_wire).collect();
        ops.push(WireOp { kind: wire::OP_OBSERVE, ..Default::default() });
        ops.extend_from_slice(&RESET_OBSERVE);
        match self.run_wire(&ops, prog) {
            Ok((run, reset)) => {
                self.pending_reset = reset;
                Ok(run)
            }
            Err(Failure::Backend(e)) => Err(e),
            Err(Failure::Guest(e, at)) => Err(self.guest_err_at(e, at)),
        }
    }
}

/// Why a RUN of a program failed: the guest (and for a hang whose guest kept reporting, the
/// program's op it stopped at), or what it answered.
enum Failure {
    Guest(GuestError, Option<usize>),
    Backend(BackendError),
}

impl KernelBackend {
    /// Sends `ops` (`prog`'s, an OBSERVE, the driver's RESET and OBSERVE) in RUN frames and
    /// decodes the answers: the program's run, and the state after the trailing reset.
    fn run_wire(
        &mut self,
        ops: &[WireOp],
        prog: &ResolvedProgram,
    ) -> Result<(ProgramRun, Option<Observation>), Failure> {
        // Refused before anything runs: an op whose boot self-check failed would mean something else.
        let hello = self.vm().map_err(Failure::Backend)?.hello();
        codec::check_ops(&prog.ops, hello).map_err(Failure::Backend)?;
        let mut results = Vec::with_capacity(ops.len());
        let mut obs = Vec::new();
        // Handles live in the driver across runs, so long programs go in chunks; with an
        // observation after every op, small ones, so that a RESULT stays far below CF_MAX_FRAME.
        let (per_run, mut flags) =
            if self.observe_each { (64, wire::RUN_OBSERVE_EACH) } else { (wire::MAX_OPS as usize, 0) };
        if self.kcov {
            flags |= wire::RUN_KCOV;
        }
        let mut coverage = Vec::new();
        for (ci, chunk) in ops.chunks(per_run).enumerate() {
            let base = ci * per_run;
            let vm = self.vm().map_err(Failure::Backend)?;
            let r = match vm.chan().run_flags(chunk, flags) {
                Ok(r) => r,
                Err(e) => {
                    // A guest that kept reporting while its op count stood still was stuck at
                    // the op after the count; one that stopped reporting (interrupts off) may
                    // have done more than its last report says.
                    let at = match e {
                        GuestError::Timeout { .. } if vm.chan().reported_to_the_end() => {
                            usize::try_from(vm.chan().ops_done()).ok().map(|d| base + d).filter(|i| *i < prog.ops.len())
                        }
                        _ => None,
                    };
                    return Err(Failure::Guest(e, at));
                }
            };
            results.extend(r.results);
            if let Some(k) = r.kcov {
                coverage.extend(k.pcs);
            }
            obs.extend(r.observations.into_iter().map(|o| (base + o.op_index as usize, o)));
        }
        let converting = std::time::Instant::now();
        let n = prog.ops.len();
        let mut outcomes = Vec::with_capacity(n);
        for (i, (op, r)) in ops.iter().zip(&results).enumerate().take(n) {
            outcomes.push(codec::to_outcome(i, op, r).map_err(Failure::Backend)?);
        }
        let dec = self.decoder().map_err(Failure::Backend)?;
        // The reset's OBSERVE is the last op.
        let reset_at = ops.len() - 1;
        let mut reset = None;
        let mut observations = Vec::with_capacity(obs.len());
        for (i, o) in &obs {
            if *i <= n {
                observations.push((*i, codec::to_observation(o, &dec)));
            } else if *i == reset_at {
                reset = Some(codec::to_observation(o, &dec));
            }
        }
        let end = match observations.pop() {
            Some((i, o)) if i == n => o,
            _ => {
                return Err(Failure::Backend(BackendError::Inconsistent {
                    index: n,
                    kind: wire::OP_OBSERVE,
                    status: 0,
                }))
            }
        };
        let raw = results.iter().take(n).map(|r| Some(codec::to_reply(r))).collect();
        // Distinct within each run already; chunks of one program may repeat PCs.
        coverage.sort_unstable();
        coverage.dedup();
        self.convert_time += converting.elapsed();
        Ok((ProgramRun { outcomes, raw, observations, end, coverage }, reset))
    }
}

/// The driver's RESET then OBSERVE.
const RESET_OBSERVE: [WireOp; 2] = [
    WireOp { kind: wire::OP_RESET, area: 0, handle: 0, flags: 0, a: 0, b: 0 },
    WireOp { kind: wire::OP_OBSERVE, area: 0, handle: 0, flags: 0, a: 0, b: 0 },
];
