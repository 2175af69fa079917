//! Getting from a target name to a booted kernel backend: build (or find)
//! the kernel and the guest, boot, and derive the model's profile from what
//! the kernel says about itself.

use crate::backend::{BackendError, KernelBackend};
use crate::build::agent::{self as guest_build, GuestBuildError};
use crate::build::kernel::{self as kernel_build, BuildError, BuildRequest, KernelArtifacts};
use crate::guest::wire;
use crate::targets::{Target, TargetError};
use crate::vm::VmSpec;
use reference_impl::profile::{Arch, KernelProfile};
use reference_impl::units::Pfn;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("kernel build: {0}")]
    Build(#[from] BuildError),
    #[error("guest build: {0}")]
    Guest(#[from] GuestBuildError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("device tree: {0}")]
    Dtb(#[from] crate::build::dtb::DtbError),
    #[error("target {target} is {want} but the booted kernel reports {got}: wrong image for the target")]
    ArchMismatch { target: String, want: String, got: String },
}

/// Which kernel to boot (the target's default source or the user's, plus patches) and how
/// long it may go without progress before it counts as hung.
#[derive(Debug, Clone, Default)]
pub struct KernelChoice {
    pub src: Option<PathBuf>,
    pub patches: Vec<PathBuf>,
    /// How long a program may run without completing an op (default [`DEFAULT_WATCHDOG`]).
    pub watchdog: Option<Duration>,
}

/// A program that completes no op for this long is a hang (ops are measured, not programs:
/// a 200-op program that hangs at op 3 is judged this long after op 2).
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(30);

/// Builds (or finds in the cache) the kernel for a target.
pub fn build_kernel(
    target: &Target,
    kc: &KernelChoice,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, SessionError> {
    let req = BuildRequest { target: target.clone(), src: kc.src.clone(), patches: kc.patches.clone() };
    Ok(kernel_build::build(&req, progress)?)
}

/// The qemu spec of a target with built artifacts (and its device tree, for targets with pools).
pub fn vm_spec(
    target: &Target,
    kernel: &KernelArtifacts,
    initrd: PathBuf,
    watchdog: Option<Duration>,
) -> Result<VmSpec, SessionError> {
    let mut spec = VmSpec {
        qemu: target.qemu.clone(),
        machine: target.machine.clone(),
        cpu: target.cpu.clone(),
        memory_mib: target.memory_mib,
        smp: target.smp,
        kernel: kernel.image.clone(),
        initrd,
        cmdline: target.cmdline.clone(),
        dtb: None,
        boot_timeout: Duration::from_secs(60),
        watchdog: watchdog.unwrap_or(DEFAULT_WATCHDOG),
    };
    spec.dtb = crate::build::dtb::build(target)?;
    Ok(spec)
}

/// Builds everything needed and boots the target's kernel.
pub fn boot_kernel(
    target: &Target,
    kc: &KernelChoice,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelBackend, SessionError> {
    let k = build_kernel(target, kc, progress)?;
    let g = guest_build::build(target, &[])?;
    let kb = KernelBackend::boot(vm_spec(target, &k, g.initramfs, kc.watchdog)?)?;
    Ok(kb)
}

/// The model's profile: the target's, corrected by what the kernel reports
/// about itself (alignment, pageblock order, memory layout); for a kernel built from `tree`
/// (`--kernel-src`, a bisection's worktree), the version and behaviour that tree's sources show
/// ([`crate::build::tree_profile`]), not the target's.
pub fn profile_from_kernel(
    target: &Target,
    kb: &KernelBackend,
    tree: Option<&Path>,
) -> Result<KernelProfile, SessionError> {
    let mut p = target.profile()?;
    if let Some(dir) = tree {
        let tp = crate::build::tree_profile::read(dir)?;
        p.version = tp.version;
        p.behaviour = tp.behaviour;
    }
    if let Some(h) = kb.hello() {
        let got = match h.arch {
            wire::ARCH_ARM32 => Arch::Arm32,
            wire::ARCH_ARM32_LPAE => Arch::Arm32Lpae,
            _ => Arch::Arm64,
        };
        if got != p.arch {
            return Err(SessionError::ArchMismatch {
                target: target.name.clone(),
                want: format!("{:?}", p.arch),
                got: format!("{got:?}"),
            });
        }
        p.cma_alignment = h.cma_alignment;
        p.pageblock_order = h.pageblock_order;
        p.max_low_pfn = Pfn(h.max_low_pfn);
        p.max_pfn = Pfn(h.max_pfn);
    }
    Ok(p)
}
