//! `cmafuzz bench`: figures, not assertions. Boot-to-ready time; the ops/s of the same programs on
//! the kernel (one round trip per program) and on the model; the **harness efficiency** (the
//! ops/s of the full [`Executor`] path, model + kernel + compare + oracle, divided by the ops/s of
//! the same RUN payloads run by the agent inside the guest with no host round trip, its local
//! mode); KCOV's collection cost; and the peak resident memory (VmHWM) of the harness process and
//! of each qemu, with one client and with two clients side by side. Everything is measured in one
//! run so it can be compared as ratios.

use crate::backend::kernel::boot::{self as session, KernelChoice, SessionError};
use crate::backend::{Backend, KernelBackend, ModelBackend};
use crate::diff::BackendChoice;
use crate::diff::Executor;
use crate::findings::programs::LoadedProgram;
use crate::guest::wire::{self, WireOp};
use crate::oracle::Suppressions;
use crate::targets::Target;
use crate::vm::{Vm, VmSpec};
use reference_impl::program::{Program, ResolvedProgram};
use std::process::Stdio;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error("suppressions: {0}")]
    Suppressions(String),
    #[error("program {0}: {1}")]
    Exec(String, String),
    #[error("encoding a RUN payload: {0}")]
    Wire(#[from] wire::WireError),
    /// The guest's local mode did not print its timing line.
    #[error("local mode in the guest failed ({0}); console tail:\n{1}")]
    Local(String, String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// One client of the full path (its own VM).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClientFigures {
    /// Program ops run (every round).
    pub ops: u64,
    /// Wall time of `Executor::execute` over every program and round.
    pub secs: f64,
    /// Of which inside the kernel backend's program runs (round trips included).
    pub kernel_secs: f64,
    /// VmHWM of this client's qemu, KiB.
    pub qemu_hwm_kib: u64,
    /// Of `kernel_secs`, per stage of the RUNs: sending, waiting for the guest's answer,
    /// receiving the RESULT, decoding it; RUNs sent and RESULT payload bytes received.
    pub stages: crate::guest::ChannelTimes,
    /// Of `kernel_secs`, turning the RESULTs into outcomes and observations.
    pub convert: Duration,
}

impl ClientFigures {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
}

/// What one bench run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    pub target: String,
    pub boots: Vec<f64>,
    pub programs: usize,
    pub ops_per_round: u64,
    pub rounds: u32,
    /// Kernel: time inside program runs only.
    pub kernel_run_s: f64,
    /// Kernel: program runs plus the resets (and reboots) between them.
    pub kernel_total_s: f64,
    pub kernel_reboots: u32,
    pub model_s: f64,
    /// The agent's local mode: the same payloads and resets, no host (ns measured in the guest).
    pub local_s: f64,
    /// Full path, one client, KCOV off.
    pub full: ClientFigures,
    /// Full path, one client, KCOV collected (None: the guest has no KCOV).
    pub full_kcov: Option<ClientFigures>,
    /// The agent's local mode with KCOV collected (None: the guest has no KCOV).
    pub local_kcov_s: Option<f64>,
    /// Of the full path: compare + alias scan + oracle, re-timed on the runs' outputs.
    pub judge_s: f64,
    /// The efficiency of each turn (one round of the local mode, then one of the full path).
    pub turns: Vec<f64>,
    /// The same with KCOV collected.
    pub turns_kcov: Vec<f64>,
    /// VmHWM of the harness process after the one-client runs, KiB.
    pub harness_hwm_kib: u64,
    /// Two clients at once (KCOV as in campaigns), each with its VM.
    pub pair: Vec<ClientFigures>,
    /// Wall time of the two-client run.
    pub pair_wall_s: f64,
    /// One RUN of no ops, host to guest and back, microseconds (median of several batches).
    pub empty_run_us: f64,
    /// VmHWM of the harness process after the two-client run (both clients), KiB.
    pub pair_harness_hwm_kib: u64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Figures {
    fn ops(&self) -> f64 {
        (self.ops_per_round * u64::from(self.rounds)) as f64
    }

    pub fn render(&self) -> String {
        let mut boots = self.boots.clone();
        boots.sort_by(f64::total_cmp);
        let median = boots.get(boots.len() / 2).copied().unwrap_or(0.0);
        let kr = self.ops() / self.kernel_run_s.max(1e-9);
        let kt = self.ops() / self.kernel_total_s.max(1e-9);
        let m = self.ops() / self.model_s.max(1e-9);
        let local = self.ops() / self.local_s.max(1e-9);
        let full = self.full.ops_per_s();
        let t = &self.target;
        let mut s = format!(
            "{t}: boot-to-ready median {median:.3} s (min {min:.3} s, {n} boots)\n\
             {t}: {programs} programs x {rounds} rounds = {ops} ops\n\
             {t}: kernel {kr:.0} ops/s in program runs, {kt:.0} ops/s including resets ({reboots} reboots)\n\
             {t}: model {m:.0} ops/s; model/kernel = {ratio:.0}x\n\
             {t}: guest local mode (no host) {local:.0} ops/s\n\
             {t}: full path (model + kernel + compare + oracle) {full:.0} ops/s, {eps:.1} exec/s\n\
             {t}: harness efficiency = full path / guest local = {eff:.2} (target >= 0.95; turn by turn {turns})\n\
             {t}: where the full path's time goes: guest work {gw:.0}%, host<->guest round trips and decoding {rt:.0}%, \
             model {mo:.0}%, compare + alias scan {ju:.0}%, rest (console scan, resets' bookkeeping) {rest:.0}%",
            min = boots.first().copied().unwrap_or(0.0),
            n = boots.len(),
            programs = self.programs,
            rounds = self.rounds,
            ops = self.ops(),
            reboots = self.kernel_reboots,
            ratio = m / kr.max(1e-9),
            eps = (self.programs as f64 * f64::from(self.rounds)) / self.full.secs.max(1e-9),
            eff = full / local.max(1e-9),
            turns = turns(&self.turns),
            gw = pct(self.local_s, self.full.secs),
            rt = pct(self.full.kernel_secs - self.local_s, self.full.secs),
            mo = pct(self.model_s, self.full.secs),
            ju = pct(self.judge_s, self.full.secs),
            rest = pct(self.full.secs - self.full.kernel_secs - self.model_s - self.judge_s, self.full.secs),
        );
        s.push_str(&stage_line(t, &self.full, self.local_s, self.programs as f64 * f64::from(self.rounds)));
        s.push_str(&format!("\n{t}: a RUN of no ops, host to guest and back: {:.0} us", self.empty_run_us));
        match (&self.full_kcov, self.local_kcov_s) {
            (Some(k), Some(lk_s)) => {
                let lk = self.ops() / lk_s.max(1e-9);
                s.push_str(&format!(
                    "\n{t}: with KCOV collected (as in campaigns): guest local mode {lk:.0} ops/s ({:.2} of without), \
                     full path {:.0} ops/s\n\
                     {t}: harness efficiency with KCOV = full path / guest local = {:.2} (target >= 0.95; turn by turn {})",
                    lk / local.max(1e-9),
                    k.ops_per_s(),
                    k.ops_per_s() / lk.max(1e-9),
                    turns(&self.turns_kcov),
                ));
                s.push_str(&stage_line(t, k, lk_s, self.programs as f64 * f64::from(self.rounds)));
            }
            _ => s.push_str(&format!("\n{t}: no KCOV in this guest")),
        }
        s.push_str(&format!(
            "\n{t}: peak RSS one client: harness {:.0} MiB + qemu {:.0} MiB = {:.0} MiB (target <= 300 MiB)",
            mib(self.harness_hwm_kib),
            mib(self.full.qemu_hwm_kib),
            mib(self.harness_hwm_kib + self.full.qemu_hwm_kib),
        ));
        if !self.pair.is_empty() {
            let total: u64 = self.pair.iter().map(|c| c.ops).sum();
            let per: Vec<String> = self.pair.iter().map(|c| format!("{:.0}", c.ops_per_s())).collect();
            let qemu: u64 = self.pair.iter().map(|c| c.qemu_hwm_kib).sum();
            s.push_str(&format!(
                "\n{t}: {n} clients at once: {per} ops/s each, {all:.0} ops/s together\n\
                 {t}: peak RSS {n} clients: harness {h:.0} MiB (one process) + qemu {q} MiB = {sum:.0} MiB, {each:.0} MiB per client",
                n = self.pair.len(),
                per = per.join(" + "),
                all = total as f64 / self.pair_wall_s.max(1e-9),
                h = mib(self.pair_harness_hwm_kib),
                q = self.pair.iter().map(|c| format!("{:.0}", mib(c.qemu_hwm_kib))).collect::<Vec<_>>().join(" + "),
                sum = mib(self.pair_harness_hwm_kib + qemu),
                each = mib(self.pair_harness_hwm_kib + qemu) / self.pair.len() as f64,
            ));
        }
        s
    }
}

/// `T: per program: ...`: the kernel backend's time per program by stage, beside the guest's
/// own work (`local_s` over the same programs), and the RESULT size per RUN.
fn stage_line(t: &str, f: &ClientFigures, local_s: f64, programs: f64) -> String {
    let us = |s: f64| s * 1e6 / programs.max(1.0);
    let st = &f.stages;
    let (send, answer, receive, decode, convert) = (
        st.send.as_secs_f64(),
        st.answer.as_secs_f64(),
        st.receive.as_secs_f64(),
        st.decode.as_secs_f64(),
        f.convert.as_secs_f64(),
    );
    format!(
        "\n{t}: per program: guest work {:.0} us; kernel backend {:.0} us = send {:.0} + guest answer {:.0} + receive {:.0} + \
         decode {:.0} + convert {:.0} (+ reset check {:.0}); {:.1} RUNs of {:.1} KiB RESULT each",
        us(local_s),
        us(f.kernel_secs),
        us(send),
        us(answer),
        us(receive),
        us(decode),
        us(convert),
        us(f.kernel_secs - send - answer - receive - decode - convert),
        st.runs as f64 / programs.max(1.0),
        st.result_bytes as f64 / 1024.0 / (st.runs.max(1) as f64),
    )
}

/// Each turn's efficiency, two decimals, space-separated.
fn turns(t: &[f64]) -> String {
    t.iter().map(|e| format!("{e:.2}")).collect::<Vec<_>>().join(" ")
}

fn pct(part: f64, whole: f64) -> f64 {
    100.0 * part.max(0.0) / whole.max(1e-9)
}

/// Untimed rounds of the full path before its turns (with KCOV and without).
const WARM_ROUNDS: u32 = 4;

/// RUNs of no ops per batch of the round-trip figure.
const EMPTY_RUNS: u32 = 100;

/// Runs the benchmark.
pub fn run(
    target: &Target,
    kc: &KernelChoice,
    programs: &[LoadedProgram],
    rounds: u32,
    boots: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<Figures, BenchError> {
    let rounds = rounds.max(1);
    let k = session::build_kernel(target, kc, progress)?;
    let g = crate::build::agent::build(target, &[]).map_err(SessionError::from)?;
    let spec = session::vm_spec(target, &k, g.initramfs, kc.watchdog)?;
    let mut boot_times = Vec::new();
    for _ in 0..boots.max(1) {
        let vm = Vm::boot(&spec).map_err(|e| SessionError::Backend(e.into()))?;
        boot_times.push(vm.boot_time.as_secs_f64());
    }
    let mut kb = KernelBackend::boot(spec.clone())?;
    let boot = kb.boot_observation().clone();
    let profile = session::profile_from_kernel(target, &kb, kc.src.as_deref())?;
    let mut mb = ModelBackend::new(profile.clone(), boot.clone())?;
    let (kept, resolved): (Vec<&Program>, Vec<ResolvedProgram>) =
        programs.iter().filter_map(|p| p.program.resolve(&boot.areas).ok().map(|r| (&p.program, r))).unzip();
    let ops_per_round: u64 = resolved.iter().map(|p| p.ops.len() as u64).sum();

    // A model in lockstep says what the kernel must look like after each reset (pool growth
    // included), so arm64 does not reboot after every atomic allocation.
    let mut shadow = ModelBackend::new(profile, boot.clone())?;
    let mut run_time = Duration::ZERO;
    let mut total = Instant::now();
    // One untimed round first: warm, as everything below is timed.
    for round in 0..=rounds {
        if round == 1 {
            run_time = Duration::ZERO;
            total = Instant::now();
        }
        for p in &resolved {
            crate::diff::reset_pair(Some(&mut shadow), Some(&mut kb), &boot).map_err(|e| match e {
                crate::diff::PairError::Reference(e) | crate::diff::PairError::Subject(e) => BenchError::Backend(e),
            })?;
            let t = Instant::now();
            kb.run(p)?;
            run_time += t.elapsed();
            shadow.run(p)?;
        }
    }
    let kernel_total = total.elapsed();
    let kernel_reboots = kb.reboots;
    let mut batches = Vec::new();
    for _ in 0..5 {
        batches.push(kb.empty_round_trips(EMPTY_RUNS)?.as_secs_f64() * 1e6 / f64::from(EMPTY_RUNS));
    }
    batches.sort_by(f64::total_cmp);
    let empty_run_us = batches[batches.len() / 2];
    drop(kb);

    let m = Instant::now();
    for _ in 0..rounds {
        for p in &resolved {
            mb.reset()?;
            mb.run(p)?;
        }
    }
    let model = m.elapsed();

    let sup = Suppressions::builtin().map_err(|e| BenchError::Suppressions(e.to_string()))?;
    let mut ex = Executor::start(target, BackendChoice::Both, kc, sup.clone(), progress)?;
    // Round by round, the guest's local mode (a VM of its own) and the full path take turns, so
    // a host that is faster or slower for a while weighs on both alike.
    // Warm, as the local mode is (it runs one round untimed first): under TCG the first run of
    // guest code pays for its translation. The full path's VM takes a few rounds more to reach
    // its speed when local-mode VMs run between its rounds (below, with KCOV).
    client_rounds(&mut ex, &kept, WARM_ROUNDS, false)?;
    progress("running the programs in the guest's local mode and through the full path, in turns");
    let (local_s, full, judge_s, turns) = in_turns(&mut ex, target, &spec, &kept, &resolved, rounds, false)?;
    let with_kcov = if ex.subject.as_ref().and_then(KernelBackend::hello).is_some_and(wire::Hello::kcov) {
        ex.set_kcov(true);
        // With KCOV the full path's VM is slower for its first few rounds when a local-mode VM
        // runs between them (measured on arm32-6.1: turns at 0.75 0.77 0.96 after one warm
        // round; 0.95 0.96 0.97 after four), while one local-mode VM is at its speed after its
        // one untimed round. Campaigns run on warm VMs.
        client_rounds(&mut ex, &kept, WARM_ROUNDS, false)?;
        progress("the same with KCOV collected");
        Some(in_turns(&mut ex, target, &spec, &kept, &resolved, rounds, true)?)
    } else {
        None
    };
    let harness_hwm_kib = vm_hwm_kib("self");
    drop(ex);
    let (local_kcov_s, full_kcov, turns_kcov) = match with_kcov {
        Some((l, f, _, t)) => (Some(l), Some(f), t),
        None => (None, None, vec![]),
    };

    progress("running the programs through the full path, two clients at once");
    let pair_start = Instant::now();
    let pair = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let sup = sup.clone();
                let kept = &kept;
                s.spawn(move || -> Result<ClientFigures, BenchError> {
                    let mut ex = Executor::start(target, BackendChoice::Both, kc, sup, &mut |_| {})?;
                    ex.set_kcov(true);
                    Ok(client_rounds(&mut ex, kept, rounds, false)?.0)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(BenchError::Exec("client thread".into(), "panicked".into()))))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let pair_wall_s = pair_start.elapsed().as_secs_f64();
    let pair_harness_hwm_kib = vm_hwm_kib("self");

    Ok(Figures {
        target: target.name.clone(),
        boots: boot_times,
        programs: resolved.len(),
        ops_per_round,
        rounds,
        kernel_run_s: run_time.as_secs_f64(),
        kernel_total_s: kernel_total.as_secs_f64(),
        kernel_reboots,
        model_s: model.as_secs_f64(),
        local_s,
        full,
        full_kcov,
        local_kcov_s,
        judge_s,
        turns,
        turns_kcov,
        harness_hwm_kib,
        pair,
        pair_wall_s,
        pair_harness_hwm_kib,
        empty_run_us,
    })
}

/// `rounds` turns of one round of the local mode then one round of the full path; returns the
/// local mode's seconds, the full path's figures, the judging time and each turn's efficiency.
#[allow(clippy::too_many_arguments)]
fn in_turns(
    ex: &mut Executor,
    target: &Target,
    spec: &VmSpec,
    kept: &[&Program],
    resolved: &[ResolvedProgram],
    rounds: u32,
    kcov: bool,
) -> Result<(f64, ClientFigures, f64, Vec<f64>), BenchError> {
    let (mut local_s, mut judge_s) = (0.0, 0.0);
    let mut full = ClientFigures::default();
    let mut turns = Vec::new();
    for _ in 0..rounds {
        let l = local_mode(target, spec, resolved, 1, kcov)?;
        let (f, j) = client_rounds(ex, kept, 1, !kcov)?;
        turns.push(f.ops_per_s() * l / f.ops.max(1) as f64);
        local_s += l;
        judge_s += j;
        full.ops += f.ops;
        full.secs += f.secs;
        full.kernel_secs += f.kernel_secs;
        full.qemu_hwm_kib = full.qemu_hwm_kib.max(f.qemu_hwm_kib);
        full.stages.add(&f.stages);
        full.convert += f.convert;
    }
    Ok((local_s, full, judge_s, turns))
}

/// `rounds` rounds of every program through `Executor::execute`; with `judge`, the compare +
/// alias scan + oracle of each run are timed again on its outputs (not inside the wall time).
fn client_rounds(
    ex: &mut Executor,
    progs: &[&Program],
    rounds: u32,
    judge: bool,
) -> Result<(ClientFigures, f64), BenchError> {
    let mut ops = 0u64;
    let mut kernel = Duration::ZERO;
    let mut judged = Duration::ZERO;
    let mut wall = Duration::ZERO;
    let stages = |ex: &mut Executor| ex.subject.as_mut().map(|k| (k.channel_times(), k.convert_time));
    let before = stages(ex);
    for _ in 0..rounds {
        for p in progs {
            let t = Instant::now();
            let e = ex.execute(p).map_err(|e| BenchError::Exec(p.to_text(), e.to_string()))?;
            wall += t.elapsed();
            ops += e.resolved.ops.len() as u64;
            kernel += e.subject_time;
            if judge {
                judged += time_judging(ex, &e);
            }
        }
    }
    let qemu_hwm_kib = ex.subject.as_ref().and_then(KernelBackend::vm_pid).map_or(0, |p| vm_hwm_kib(&p.to_string()));
    let mut f = ClientFigures {
        ops,
        secs: wall.as_secs_f64(),
        kernel_secs: kernel.as_secs_f64(),
        qemu_hwm_kib,
        ..Default::default()
    };
    if let (Some((t0, c0)), Some((t1, c1))) = (before, stages(ex)) {
        f.stages = t1.since(&t0);
        f.convert = c1.saturating_sub(c0);
    }
    Ok((f, judged.as_secs_f64()))
}

/// Compare and the alias scan again on one execution's outputs (what `execute` spends on them).
fn time_judging(ex: &Executor, e: &crate::diff::Execution) -> Duration {
    let (Some(m), Some(k), Some(model)) = (&e.reference, &e.subject, &ex.reference) else { return Duration::ZERO };
    let t = Instant::now();
    let d = crate::oracle::compare::compare(&e.resolved, m, k, &ex.boot.areas);
    let rules = model.alias_rules();
    let aliases: usize = k
        .observations
        .iter()
        .map(|(_, o)| o)
        .chain([&k.end])
        .map(|o| reference_impl::alias::scan(&o.maps, &rules).len())
        .sum();
    std::hint::black_box((d, aliases));
    t.elapsed()
}

/// `VmHWM` (peak resident set) of `/proc/<pid>/status`, KiB; 0 if unreadable.
pub fn vm_hwm_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(0, |s| parse_vm_hwm(&s))
}

fn parse_vm_hwm(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The RUN payloads the kernel backend sends for `p` (the program's ops, an OBSERVE, then the
/// driver's RESET and OBSERVE for the next program; in chunks of `CF_MAX_OPS`, as
/// [`KernelBackend`]'s `run` does).
pub fn run_payloads(p: &ResolvedProgram, flags: u32) -> Result<Vec<Vec<u8>>, wire::WireError> {
    let mut ops: Vec<WireOp> = p.ops.iter().map(crate::backend::kernel::codec::to_wire).collect();
    for kind in [wire::OP_OBSERVE, wire::OP_RESET, wire::OP_OBSERVE] {
        ops.push(WireOp { kind, ..Default::default() });
    }
    ops.chunks(wire::MAX_OPS as usize).map(|c| wire::encode_run_flags(c, flags)).collect()
}

/// Boots the guest with the payloads in its initramfs and `cmafuzz.local=/progs`; returns the
/// seconds the agent measured for `rounds` rounds. With `kcov`, the agent traces every run and
/// collects its PCs as it does for the host.
fn local_mode(
    target: &Target,
    spec: &VmSpec,
    progs: &[ResolvedProgram],
    rounds: u32,
    kcov: bool,
) -> Result<f64, BenchError> {
    let flags = if kcov { wire::RUN_KCOV } else { 0 };
    let mut extra = Vec::new();
    for (i, p) in progs.iter().enumerate() {
        for (c, payload) in run_payloads(p, flags)?.into_iter().enumerate() {
            extra.push((format!("progs/{i:05}-{c:03}.run"), payload));
        }
    }
    let g = crate::build::agent::build(target, &extra).map_err(SessionError::from)?;
    let mut spec = spec.clone();
    spec.initrd = g.initramfs;
    spec.cmdline = format!("{} cmafuzz.local=/progs cmafuzz.repeat={rounds}", spec.cmdline);
    let console = run_to_power_off(&spec)?;
    parse_local_ns(&console).map(|ns| ns as f64 / 1e9).ok_or_else(|| {
        let tail: Vec<&str> = console.lines().rev().take(20).collect();
        BenchError::Local(
            "no `cmafuzz-local: files=... ns=...` line".into(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        )
    })
}

/// The `ns=` of the agent's local-mode directory timing line.
fn parse_local_ns(console: &str) -> Option<u64> {
    let line = console.lines().find(|l| l.contains("cmafuzz-local: files="))?;
    line.split_whitespace().find_map(|w| w.strip_prefix("ns="))?.parse().ok()
}

/// Runs qemu with no channel until the guest powers off (local mode), bounded by the boot
/// timeout plus a minute; returns the console.
fn run_to_power_off(spec: &VmSpec) -> Result<String, BenchError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| BenchError::Io { what, source }
    };
    let dir = tempfile::Builder::new().prefix("cmafuzz-local-").tempdir().map_err(io("creating a temp dir"))?;
    let console = dir.path().join("console.log");
    let mut cmd = crate::vm::qemu_command(spec);
    cmd.arg("-serial").arg(format!("file:{}", console.display())).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(io(&format!("starting {}", spec.qemu)))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let limit = spec.boot_timeout + Duration::from_secs(60);
    let status = rx.recv_timeout(limit);
    if status.is_err() {
        // SAFETY: our own child, not yet reaped (the waiter thread reaps it after this).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let _ = waiter.join();
    let text = std::fs::read(&console).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    match status {
        Ok(Ok(_)) => Ok(text),
        Ok(Err(e)) => Err(BenchError::Io { what: "waiting for qemu".into(), source: e }),
        Err(_) => Err(BenchError::Local(format!("qemu still running after {} s", limit.as_secs()), text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        let client =
            |ops, secs, q| ClientFigures { ops, secs, kernel_secs: secs / 2.0, qemu_hwm_kib: q, ..Default::default() };
        Figures {
            target: "t".into(),
            boots: vec![0.9, 0.5, 0.7],
            programs: 2,
            ops_per_round: 100,
            rounds: 10,
            kernel_run_s: 0.5,
            kernel_total_s: 1.0,
            kernel_reboots: 1,
            model_s: 0.001,
            local_s: 0.8,
            full: ClientFigures {
                kernel_secs: 1.0,
                stages: crate::guest::ChannelTimes {
                    runs: 20,
                    send: Duration::from_millis(10),
                    answer: Duration::from_millis(700),
                    receive: Duration::from_millis(20),
                    decode: Duration::from_millis(30),
                    result_bytes: 20 * 2048,
                },
                convert: Duration::from_millis(40),
                ..client(1000, 1.25, 200 * 1024)
            },
            full_kcov: Some(client(1000, 2.5, 210 * 1024)),
            local_kcov_s: Some(2.0),
            judge_s: 0.05,
            turns: vec![0.6, 0.68],
            turns_kcov: vec![0.8],
            harness_hwm_kib: 40 * 1024,
            pair: vec![client(1000, 2.0, 200 * 1024), client(1000, 2.0, 220 * 1024)],
            pair_wall_s: 2.0,
            pair_harness_hwm_kib: 60 * 1024,
            empty_run_us: 812.4,
        }
    }

    #[test]
    fn render_reports_ratios_from_the_measured_times() {
        let r = figures().render();
        assert!(r.contains("median 0.700 s (min 0.500 s, 3 boots)"), "{r}");
        assert!(r.contains("kernel 2000 ops/s in program runs, 1000 ops/s including resets (1 reboots)"), "{r}");
        assert!(r.contains("model 1000000 ops/s; model/kernel = 500x"), "{r}");
        assert!(r.contains("guest local mode (no host) 1250 ops/s"), "{r}");
        assert!(r.contains("full path (model + kernel + compare + oracle) 800 ops/s, 16.0 exec/s"), "{r}");
        assert!(
            r.contains("harness efficiency = full path / guest local = 0.64 (target >= 0.95; turn by turn 0.60 0.68)"),
            "{r}"
        );
        assert!(r.contains("guest work 64%, host<->guest round trips and decoding 16%"), "{r}");
        // 2 programs x 10 rounds: per program 1.0 s / 20 of kernel backend, 0.8 s / 20 of guest work.
        assert!(
            r.contains(
                "per program: guest work 40000 us; kernel backend 50000 us = send 500 + guest answer 35000 + \
                 receive 1000 + decode 1500 + convert 2000 (+ reset check 10000); 1.0 RUNs of 2.0 KiB RESULT each"
            ),
            "{r}"
        );
        assert!(r.contains("t: a RUN of no ops, host to guest and back: 812 us"), "{r}");
        assert!(r.contains("guest local mode 500 ops/s (0.40 of without), full path 400 ops/s"), "{r}");
        assert!(
            r.contains(
                "harness efficiency with KCOV = full path / guest local = 0.80 (target >= 0.95; turn by turn 0.80)"
            ),
            "{r}"
        );
        assert!(r.contains("harness 40 MiB + qemu 200 MiB = 240 MiB"), "{r}");
        assert!(r.contains("2 clients at once: 500 + 500 ops/s each, 1000 ops/s together"), "{r}");
        assert!(r.contains("harness 60 MiB (one process) + qemu 200 + 220 MiB = 480 MiB, 240 MiB per client"), "{r}");
    }

    #[test]
    fn vm_hwm_is_read_from_proc_status() {
        let s = "Name:\tqemu\nVmPeak:\t  999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(s), 204_800);
        assert_eq!(parse_vm_hwm("Name:\tx\n"), 0);
        // This process has a peak resident set.
        assert!(vm_hwm_kib("self") > 0);
    }

    #[test]
    fn local_timing_line_gives_the_guest_nanoseconds() {
        let c = "[    1.0] boot\ncmafuzz-local: files=3 rounds=2 runs=12 ops=40 ns=123456 ops_per_sec=324\n";
        assert_eq!(parse_local_ns(c), Some(123_456));
        assert_eq!(parse_local_ns("cmafuzz-local: ops=4 ns=5 ops_per_sec=1\n"), None);
        assert_eq!(parse_local_ns("cmafuzz-local: files=1 ns=abc\n"), None);
    }

    #[test]
    fn payloads_are_what_the_kernel_backend_sends() {
        let p = Program::parse("cma_alloc area=reserved count=4 align=0\ncma_release h=0\n").expect("parses");
        let areas = crate::targets::find(Some("arm32-6.1")).expect("target").boot_observation().areas;
        let r = p.resolve(&areas).expect("resolves");
        let pl = run_payloads(&r, 0).expect("encodes");
        assert_eq!(pl.len(), 1);
        // the two ops, an OBSERVE, then RESET + OBSERVE for the next program: one RUN per program
        assert_eq!(pl[0].len(), wire::RUN_SIZE + 5 * wire::OP_SIZE);
        assert_eq!(&pl[0][0..4], &5u32.to_le_bytes());
        let kind = |i: usize| pl[0][wire::RUN_SIZE + i * wire::OP_SIZE..][..4].to_vec();
        assert_eq!(kind(0), wire::OP_CMA_ALLOC.to_le_bytes());
        assert_eq!(kind(2), wire::OP_OBSERVE.to_le_bytes());
        assert_eq!(kind(3), wire::OP_RESET.to_le_bytes());
        assert_eq!(kind(4), wire::OP_OBSERVE.to_le_bytes());
    }
}
