//! One trait where the two worlds meet: the reference model and the real
//! kernel in qemu both run a resolved program and return outcomes and
//! observations in the model crate's vocabulary. The comparison only ever
//! sees this trait's outputs.

pub mod kernel;

use crate::guest::GuestError;
use crate::backend::kernel::memtype::AttrDecoder;
use crate::vm::{Vm, VmError, VmSpec};
use crate::guest::wire::{self, WireObs, WireOp, WireResult};
use reference_impl::model::Model;
use reference_impl::observation::{AreaObservation, MapKind, MapLevel, MapRun, Observation, PageAddr};
use reference_impl::outcome::Outcome;
use reference_impl::profile::KernelProfile;
use reference_impl::program::{Gfp, ResolvedOp, ResolvedProgram};
use reference_impl::units::{Pages, Pfn};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The guest failed during a program; the console tail says why.
    #[error("{source}")]
    Guest { source: GuestError, console: String },
    /// The guest answered with a status that makes no sense for the op.
    #[error("guest answered op {index} ({kind}) with status {status}: a garbled guest")]
    Inconsistent { index: usize, kind: u32, status: u32 },
    /// After a reset the kernel's CMA state differs from its boot state.
    #[error("reset did not restore the boot CMA state ({0})")]
    ResetMismatch(String),
    #[error("model: {0}")]
    Model(String),
}

/// What one backend did with one program.
#[derive(Debug, Clone)]
pub struct ProgramRun {
    pub outcomes: Vec<Outcome>,
    /// Raw per-op results from the guest (kernel backend only).
    pub raw: Vec<Option<WireResult>>,
    /// (op index, observation) for every `observe` op.
    pub observations: Vec<(usize, Observation)>,
    /// The state after the last op.
    pub end: Observation,
    /// Kernel code coverage (KCOV PCs) of the run; empty for the model and for kernels without it.
    pub coverage: Vec<u64>,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    /// The CMA layout right after boot (or reset).
    fn boot_observation(&self) -> &Observation;
    /// The driver's RESET: every handle freed, every page unpinned (arm64 pool growth stays).
    fn reset(&mut self) -> Result<(), BackendError>;
    /// Runs one program from the current state.
    fn run(&mut self, prog: &ResolvedProgram) -> Result<ProgramRun, BackendError>;
}

/// The reference model, in process.
pub struct ModelBackend {
    model: Model,
    boot: Observation,
    /// Observe after every op, not only at `observe` ops (as `CF_RUN_OBSERVE_EACH` makes the
    /// driver do).
    pub observe_each: bool,
}

impl ModelBackend {
    pub fn new(profile: KernelProfile, boot: Observation) -> Result<Self, BackendError> {
        let model = Model::new(profile, &boot).map_err(|e| BackendError::Model(e.to_string()))?;
        Ok(ModelBackend { model, boot, observe_each: false })
    }
}

impl ModelBackend {
    /// Back to the state of a freshly booted kernel (after the kernel side rebooted).
    pub fn reset_to_boot(&mut self) {
        self.model.reset_to_boot();
    }

    /// The model's layout now.
    pub fn observe(&self) -> Observation {
        self.model.observe()
    }

    /// The PKMAP slot the kernel's driver learnt at its last reset (arm32 highmem).
    pub fn set_pkmap_last(&mut self, last: Option<u32>) {
        self.model.set_pkmap_last(last);
    }

    /// The model's kernel profile.
    pub fn profile(&self) -> &KernelProfile {
        self.model.profile()
    }

    /// The alias rules of the model's kernel profile and areas.
    pub fn alias_rules(&self) -> reference_impl::alias::AliasRules {
        self.model.alias_rules()
    }
}

impl Backend for ModelBackend {
    fn name(&self) -> &'static str {
        "model"
    }

    fn boot_observation(&self) -> &Observation {
        &self.boot
    }

    fn reset(&mut self) -> Result<(), BackendError> {
        self.model.reset();
        Ok(())
    }

    fn run(&mut self, prog: &ResolvedProgram) -> Result<ProgramRun, BackendError> {
        let (outcomes, observations) = if self.observe_each {
            let mut outcomes = Vec::with_capacity(prog.ops.len());
            let mut observations = Vec::with_capacity(prog.ops.len());
            for (i, op) in prog.ops.iter().enumerate() {
                outcomes.push(self.model.step(op));
                observations.push((i, self.model.observe()));
            }
            (outcomes, observations)
        } else {
            reference_impl::model::run(&mut self.model, prog)
        };
        let raw = vec![None; outcomes.len()];
        Ok(ProgramRun { outcomes, raw, observations, end: self.model.observe(), coverage: Vec::new() })
    }
}

/// The real kernel in qemu, driven through the agent.
pub struct KernelBackend {
    spec: VmSpec,
    vm: Option<Vm>,
    boot: Observation,
    /// Reboots caused by resets that did not restore the boot state or by dead guests.
    pub reboots: u32,
    pub boot_times: Vec<std::time::Duration>,
    /// The console of the last VM that was thrown away (bounded), so a dead
    /// guest's last words survive it.
    last_console: String,
    /// What the last VM printed that [`KernelBackend::new_console`] had not handed out yet.
    dead_console: Option<String>,
    /// The PKMAP slot the driver learnt at the last reset (arm32 highmem), for the model.
    pub pkmap_last: Option<u32>,
    /// Ask the driver for an observation after every op (`CF_RUN_OBSERVE_EACH`).
    pub observe_each: bool,
    /// Ask the agent for KCOV coverage of every run (`CF_RUN_KCOV`). Set it only when the
    /// hello says the agent has KCOV ([`wire::Hello::kcov`]); otherwise runs have no coverage.
    pub kcov: bool,
}

impl KernelBackend {
    /// Boots the kernel and reads its boot-time CMA layout.
    pub fn boot(spec: VmSpec) -> Result<Self, BackendError> {
        let mut vm = Vm::boot(&spec)?;
        let boot_time = vm.boot_time;
        let boot = observe(&mut vm)?;
        Ok(KernelBackend {
            spec,
            vm: Some(vm),
            boot,
            reboots: 0,
            boot_times: vec![boot_time],
            last_console: String::new(),
            dead_console: None,
            pkmap_last: None,
            observe_each: false,
            kcov: false,
        })
    }

    pub fn hello(&self) -> Option<&wire::Hello> {
        self.vm.as_ref().map(|v| &v.hello)
    }

    fn vm(&mut self) -> Result<&mut Vm, BackendError> {
        if self.vm.is_none() {
            let vm = Vm::boot(&self.spec)?;
            self.boot_times.push(vm.boot_time);
            self.reboots += 1;
            self.vm = Some(vm);
        }
        // Just ensured.
        self.vm.as_mut().ok_or_else(|| BackendError::Model("no VM".into()))
    }

    /// qemu's process id, if a VM runs (for fault-injection tests).
    pub fn vm_pid(&self) -> Option<u32> {
        self.vm.as_ref().map(|v| v.pid())
    }

    /// Throws the VM away; the next use boots a fresh one.
    pub fn discard_vm(&mut self) {
        self.drop_vm();
    }

    /// Drops the VM, keeping what it printed that nobody has read yet.
    fn drop_vm(&mut self) {
        if let Some(mut vm) = self.vm.take() {
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

    /// The driver's RESET (free every handle, unpin every page), then an OBSERVE: the kernel's
    /// layout must equal `expected` (the model's after its own reset: boot plus any arm64 pool
    /// growth, spec §6.3). If it does not, or the guest cannot reset, the VM is rebooted and
    /// `Ok(true)` says so: the caller must then go back to the boot state itself.
    pub fn reset_expecting(&mut self, expected: &Observation) -> Result<bool, BackendError> {
        self.pkmap_last = None;
        if self.vm.is_none() {
            // The last guest died: a fresh one is at its boot state already.
            self.boot_fresh()?;
            return Ok(true);
        }
        let now = match self.reset_observe() {
            Ok(now) => now,
            Err(e) => {
                // A guest that cannot reset is rebooted; that is the documented recovery.
                let _ = self.guest_err(e);
                self.boot_fresh()?;
                return Ok(true);
            }
        };
        let why = match &now {
            Some(o) => match state_difference(expected, o) {
                None => return Ok(false),
                Some(why) => why,
            },
            None => "no observation".into(),
        };
        eprintln!("note: reset left the kernel's CMA state different from the expected one ({why}); rebooting the VM");
        self.boot_fresh()?;
        Ok(true)
    }

    /// Boots a fresh VM and gives it the driver's RESET + OBSERVE, as every program gets: that
    /// flushes the PKMAP slots boot left and reports the cursor, which the model must take
    /// (without it, the first program after a reboot diverged on `mapping:pkmap-slot`).
    fn boot_fresh(&mut self) -> Result<(), BackendError> {
        self.drop_vm();
        self.vm()?;
        self.reset_observe().map(|_| ()).map_err(|e| self.guest_err(e))
    }

    /// The driver's RESET then OBSERVE on the running VM; learns the PKMAP cursor from it.
    fn reset_observe(&mut self) -> Result<Option<Observation>, GuestError> {
        let Some(vm) = self.vm.as_mut() else { return Ok(None) };
        let r = vm.chan.run(&RESET_OBSERVE)?;
        let dec = decoder(&vm.hello);
        let now = r.observations.first().map(|o| to_observation(o, &dec));
        self.pkmap_last = now.as_ref().and_then(|o| o.pkmap_last);
        Ok(now)
    }

    fn decoder(&mut self) -> Result<AttrDecoder, BackendError> {
        Ok(decoder(&self.vm()?.hello))
    }

    fn guest_err(&mut self, source: GuestError) -> BackendError {
        // The whole (bounded) console: an Oops header comes long before the panic.
        let console = self.vm.as_ref().map(|v| v.console()).unwrap_or_default();
        // A guest that failed once is not trusted again.
        self.drop_vm();
        self.last_console = console.clone();
        BackendError::Guest { source, console }
    }
}

fn observe(vm: &mut Vm) -> Result<Observation, BackendError> {
    let r = vm
        .chan
        .run(&[WireOp { kind: wire::OP_OBSERVE, ..Default::default() }])
        .map_err(|source| BackendError::Guest { source, console: vm.console_tail(40) })?;
    let dec = decoder(&vm.hello);
    match r.observations.first() {
        Some(o) => Ok(to_observation(o, &dec)),
        None => Err(BackendError::Inconsistent { index: 0, kind: wire::OP_OBSERVE, status: r.results[0].status }),
    }
}

/// The memory-type decoder for the kernel that said `hello`.
pub fn decoder(hello: &wire::Hello) -> AttrDecoder {
    AttrDecoder::new(hello.arch, hello.attr_regs)
}

/// One `struct cf_map` in the shared vocabulary.
pub fn to_map_run(m: &wire::WireMap, dec: &AttrDecoder) -> MapRun {
    let kind = match m.kind {
        wire::MAP_LIN => MapKind::Lin,
        wire::MAP_VMAP => MapKind::Vmap,
        wire::MAP_PKMAP => MapKind::Pkmap,
        _ => MapKind::Fixmap,
    };
    let level = match m.level {
        wire::LVL_PTE => MapLevel::Pte,
        wire::LVL_SECTION => MapLevel::Section,
        wire::LVL_PMD => MapLevel::Pmd,
        _ => MapLevel::Pud,
    };
    MapRun {
        kind,
        first: PageAddr::Pfn(Pfn(m.pfn)),
        pages: u64::from(m.pages),
        mem: dec.decode(m.attr),
        va: Some(m.va),
        level: Some(level),
    }
}

pub fn to_observation(o: &WireObs, dec: &AttrDecoder) -> Observation {
    Observation {
        areas: o
            .areas
            .iter()
            .map(|a| AreaObservation {
                name: a.name.clone(),
                base_pfn: Pfn(a.base_pfn),
                count: Pages(a.count),
                order_per_bit: a.order_per_bit,
                bitmap: a.words.clone(),
            })
            .collect(),
        cma_free: Some(Pages(o.cma_free_pages)),
        maps: o.maps.iter().map(|m| to_map_run(m, dec)).collect(),
        maps_truncated: o.flags & wire::OBS_MAPS_TRUNCATED != 0,
        pkmap_last: (o.pkmap_last != wire::PKMAP_UNKNOWN).then_some(o.pkmap_last),
    }
}

/// Encodes one resolved op for the driver.
pub fn to_wire(op: &ResolvedOp) -> WireOp {
    match op {
        ResolvedOp::CmaAlloc { area, h, count, align } => {
            WireOp { kind: wire::OP_CMA_ALLOC, area: area.0, handle: h.0, flags: 0, a: count.0, b: u64::from(align.0) }
        }
        ResolvedOp::CmaRelease { h } => WireOp { kind: wire::OP_CMA_RELEASE, handle: h.0, ..Default::default() },
        ResolvedOp::CmaReleaseRaw { area, off, count } => {
            WireOp { kind: wire::OP_CMA_RELEASE_RAW, area: area.0, a: *off as u64, b: count.0, ..Default::default() }
        }
        ResolvedOp::DmaAlloc { h, size, attrs, gfp } => {
            let mut flags = 0;
            if attrs.wc {
                flags |= wire::ATTR_WC;
            }
            if attrs.nokmap {
                flags |= wire::ATTR_NOKMAP;
            }
            if *gfp == Gfp::Atomic {
                flags |= wire::GFP_ATOMIC;
            }
            WireOp { kind: wire::OP_DMA_ALLOC, handle: h.0, flags, a: size.0, ..Default::default() }
        }
        ResolvedOp::DmaFree { h } => WireOp { kind: wire::OP_DMA_FREE, handle: h.0, ..Default::default() },
        ResolvedOp::Pin { area, off } => {
            WireOp { kind: wire::OP_PIN, area: area.0, a: *off as u64, ..Default::default() }
        }
        ResolvedOp::Unpin { area, off } => {
            WireOp { kind: wire::OP_UNPIN, area: area.0, a: *off as u64, ..Default::default() }
        }
        ResolvedOp::Kmap { area, off } => {
            WireOp { kind: wire::OP_KMAP, area: area.0, a: *off as u64, ..Default::default() }
        }
        ResolvedOp::Observe => WireOp { kind: wire::OP_OBSERVE, ..Default::default() },
    }
}

/// Decodes the driver's answer to one op into the shared vocabulary;
/// a status that the op cannot produce is a garbled guest.
pub fn to_outcome(index: usize, op: &WireOp, r: &WireResult) -> Result<Outcome, BackendError> {
    let bad = || BackendError::Inconsistent { index, kind: r.kind, status: r.status };
    if r.kind != op.kind {
        return Err(bad());
    }
    let o = match (op.kind, r.status) {
        (_, wire::ST_BADOP) => Outcome::BadOp,
        (wire::OP_CMA_ALLOC | wire::OP_DMA_ALLOC, wire::ST_OK) => {
            Outcome::Allocated { pfn: Pfn(r.pfn), pages: Pages(r.pages) }
        }
        (wire::OP_CMA_ALLOC | wire::OP_DMA_ALLOC, wire::ST_FAILED) => Outcome::AllocFailed,
        (wire::OP_CMA_RELEASE | wire::OP_DMA_FREE | wire::OP_CMA_RELEASE_RAW, wire::ST_OK) => Outcome::Released,
        (wire::OP_CMA_RELEASE | wire::OP_DMA_FREE | wire::OP_CMA_RELEASE_RAW, wire::ST_FAILED) => {
            Outcome::ReleaseRejected
        }
        (wire::OP_CMA_RELEASE | wire::OP_DMA_FREE, wire::ST_NOOP) => Outcome::Noop,
        (wire::OP_CMA_RELEASE_RAW | wire::OP_PIN | wire::OP_KMAP, wire::ST_REFUSED) => Outcome::Refused,
        (wire::OP_KMAP, wire::ST_OK) => Outcome::Kmapped { pfn: Pfn(r.pfn) },
        (wire::OP_KMAP, wire::ST_FAILED) => Outcome::PinFailed { pfn: Pfn(r.pfn) },
        (wire::OP_KMAP, wire::ST_NOOP) => Outcome::Noop,
        (wire::OP_PIN, wire::ST_OK) => Outcome::Pinned { pfn: Pfn(r.pfn) },
        (wire::OP_PIN, wire::ST_FAILED) => Outcome::PinFailed { pfn: Pfn(r.pfn) },
        (wire::OP_UNPIN, wire::ST_OK) => Outcome::Unpinned { pfn: Pfn(r.pfn) },
        (wire::OP_UNPIN, wire::ST_NOOP) => Outcome::Noop,
        (wire::OP_OBSERVE, wire::ST_OK) => Outcome::Observed,
        _ => return Err(bad()),
    };
    Ok(o)
}

impl Backend for KernelBackend {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn boot_observation(&self) -> &Observation {
        &self.boot
    }

    fn reset(&mut self) -> Result<(), BackendError> {
        let boot = self.boot.clone();
        self.reset_expecting(&boot).map(|_| ())
    }

    fn run(&mut self, prog: &ResolvedProgram) -> Result<ProgramRun, BackendError> {
        let mut ops: Vec<WireOp> = prog.ops.iter().map(to_wire).collect();
        ops.push(WireOp { kind: wire::OP_OBSERVE, ..Default::default() });
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
            let r = match self.vm()?.chan.run_flags(chunk, flags) {
                Ok(r) => r,
                Err(e) => return Err(self.guest_err(e)),
            };
            results.extend(r.results);
            if let Some(k) = r.kcov {
                coverage.extend(k.pcs);
            }
            obs.extend(r.observations.into_iter().map(|o| (base + o.op_index as usize, o)));
        }
        let mut outcomes = Vec::with_capacity(prog.ops.len());
        for (i, (op, r)) in ops.iter().zip(&results).enumerate().take(prog.ops.len()) {
            outcomes.push(to_outcome(i, op, r)?);
        }
        let dec = self.decoder()?;
        let mut observations: Vec<(usize, Observation)> =
            obs.iter().map(|(i, o)| (*i, to_observation(o, &dec))).collect();
        let end = match observations.pop() {
            Some((i, o)) if i == prog.ops.len() => o,
            _ => return Err(BackendError::Inconsistent { index: prog.ops.len(), kind: wire::OP_OBSERVE, status: 0 }),
        };
        let raw = results.into_iter().take(prog.ops.len()).map(Some).collect();
        // Distinct within each run already; chunks of one program may repeat PCs.
        coverage.sort_unstable();
        coverage.dedup();
        Ok(ProgramRun { outcomes, raw, observations, end, coverage })
    }
}

/// Same areas and bitmaps (CmaFree is not part of the layout).
pub fn same_layout(a: &Observation, b: &Observation) -> bool {
    a.areas == b.areas
}

/// The driver's RESET then OBSERVE.
const RESET_OBSERVE: [WireOp; 2] = [
    WireOp { kind: wire::OP_RESET, area: 0, handle: 0, flags: 0, a: 0, b: 0 },
    WireOp { kind: wire::OP_OBSERVE, area: 0, handle: 0, flags: 0, a: 0, b: 0 },
];

/// How the kernel's state after a reset differs from the expected one: the areas' bitmaps, and
/// the mapping of every page the tables cover (a page a buggy free left uncached stays so
/// through the driver's reset, and every later program would diverge on it). `None`: the same.
pub fn state_difference(want: &Observation, now: &Observation) -> Option<String> {
    for (x, y) in want.areas.iter().zip(&now.areas) {
        if x != y {
            return Some(format!("area {}: {} bits used expected, {} now", x.name, x.used_bits(), y.used_bits()));
        }
    }
    if want.areas.len() != now.areas.len() {
        return Some(format!("{} areas expected, {} now", want.areas.len(), now.areas.len()));
    }
    if now.maps_truncated {
        return None;
    }
    let diffs = crate::oracle::compare::map_differences(want, now, &std::collections::BTreeMap::new());
    diffs.first().map(|(lo, hi, w, n)| {
        format!(
            "pfns {lo:#x}-{:#x}: {} expected, {} now",
            hi - 1,
            crate::oracle::compare::show_page_maps(w),
            crate::oracle::compare::show_page_maps(n)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::program::{AreaId, DmaAttrs, Handle};
    use reference_impl::units::{Bytes, Order};

    #[test]
    fn ops_encode_with_the_fields_the_driver_reads() {
        let w = to_wire(&ResolvedOp::CmaAlloc { area: AreaId(1), h: Handle(5), count: Pages(16), align: Order(4) });
        assert_eq!((w.kind, w.area, w.handle, w.a, w.b), (wire::OP_CMA_ALLOC, 1, 5, 16, 4));
        let w = to_wire(&ResolvedOp::CmaReleaseRaw { area: AreaId(0), off: -3, count: Pages(2) });
        assert_eq!(w.a as i64, -3);
        let w = to_wire(&ResolvedOp::DmaAlloc {
            h: Handle(2),
            size: Bytes(4097),
            attrs: DmaAttrs { wc: true, nokmap: true },
            gfp: Gfp::Atomic,
        });
        assert_eq!(w.flags, wire::ATTR_WC | wire::ATTR_NOKMAP | wire::GFP_ATOMIC);
        assert_eq!(w.a, 4097);
    }

    #[test]
    fn a_status_the_op_cannot_produce_is_inconsistent() {
        let op = WireOp { kind: wire::OP_CMA_ALLOC, ..Default::default() };
        let r = WireResult { status: wire::ST_REFUSED, kind: wire::OP_CMA_ALLOC, pfn: 0, pages: 0, aux: 0 };
        assert!(matches!(to_outcome(0, &op, &r), Err(BackendError::Inconsistent { .. })));
        let r = WireResult { status: wire::ST_OK, kind: wire::OP_DMA_FREE, pfn: 0, pages: 0, aux: 0 };
        assert!(matches!(to_outcome(0, &op, &r), Err(BackendError::Inconsistent { .. })));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let raw = WireOp { kind: wire::OP_CMA_RELEASE_RAW, ..Default::default() };
        let r = |status| WireResult { status, kind: wire::OP_CMA_RELEASE_RAW, pfn: 0, pages: 0, aux: 0 };
        assert_eq!(to_outcome(0, &raw, &r(wire::ST_REFUSED)).ok(), Some(Outcome::Refused));
        assert_eq!(to_outcome(0, &raw, &r(wire::ST_FAILED)).ok(), Some(Outcome::ReleaseRejected));
        assert_eq!(to_outcome(0, &raw, &r(wire::ST_OK)).ok(), Some(Outcome::Released));
    }

    #[test]
    fn pin_and_unpin_encode_area_and_signed_offset() {
        let w = to_wire(&ResolvedOp::Pin { area: AreaId(2), off: 65 });
        assert_eq!((w.kind, w.area, w.handle, w.flags, w.a, w.b), (wire::OP_PIN, 2, 0, 0, 65, 0));
        let w = to_wire(&ResolvedOp::Unpin { area: AreaId(0), off: -1 });
        assert_eq!((w.kind, w.area, w.a as i64, w.b), (wire::OP_UNPIN, 0, -1, 0));
    }

    #[test]
    fn pin_statuses_map_to_pinned_pin_failed_and_refused() {
        let op = WireOp { kind: wire::OP_PIN, ..Default::default() };
        let r = |status| WireResult { status, kind: wire::OP_PIN, pfn: 0x7e041, pages: 1, aux: 0 };
        assert_eq!(to_outcome(0, &op, &r(wire::ST_OK)).ok(), Some(Outcome::Pinned { pfn: Pfn(0x7e041) }));
        assert_eq!(to_outcome(0, &op, &r(wire::ST_FAILED)).ok(), Some(Outcome::PinFailed { pfn: Pfn(0x7e041) }));
        assert_eq!(to_outcome(0, &op, &r(wire::ST_REFUSED)).ok(), Some(Outcome::Refused));
        assert_eq!(to_outcome(0, &op, &r(wire::ST_BADOP)).ok(), Some(Outcome::BadOp));
        assert!(matches!(to_outcome(0, &op, &r(wire::ST_NOOP)), Err(BackendError::Inconsistent { .. })));
    }

    #[test]
    fn unpin_statuses_map_to_unpinned_and_noop() {
        let op = WireOp { kind: wire::OP_UNPIN, ..Default::default() };
        let r = |status| WireResult { status, kind: wire::OP_UNPIN, pfn: 0x7cc61, pages: 1, aux: 0 };
        assert_eq!(to_outcome(0, &op, &r(wire::ST_OK)).ok(), Some(Outcome::Unpinned { pfn: Pfn(0x7cc61) }));
        assert_eq!(to_outcome(0, &op, &r(wire::ST_NOOP)).ok(), Some(Outcome::Noop));
        for status in [wire::ST_FAILED, wire::ST_REFUSED] {
            assert!(matches!(to_outcome(0, &op, &r(status)), Err(BackendError::Inconsistent { .. })), "{status}");
        }
    }

    #[test]
    fn the_model_and_the_wire_format_agree_on_the_pin_limit() {
        assert_eq!(wire::MAX_PINS as usize, reference_impl::program::MAX_PINS);
    }
}
