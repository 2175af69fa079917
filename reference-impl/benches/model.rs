//! `cargo bench -p reference-impl`: model throughput, printed as figures (no assertions).
//!
//! * CMA: a `cma_alloc`/`cma_release` mix on the 32 MiB default area (8192 pages, boot bits 0-63
//!   set, as on arm32-6.1) — counts 1..64, aligns 0..4, releases of live handles;
//! * DMA: `dma_alloc`/`dma_free` of 4-64 KiB buffers (blocking and atomic) on arm32 and arm64;
//! * observe: one full observation (areas + mapping table) of a busy model.
//!
//! Each figure is ops per second of wall time on one core, best of 5 rounds.

use reference_impl::model::Model;
use reference_impl::observation::{AreaObservation, Observation};
use reference_impl::outcome::Outcome;
use reference_impl::profile::{Arch, KernelProfile, Version};
use reference_impl::program::{AreaId, DmaAttrs, Gfp, Handle, ResolvedOp};
use reference_impl::units::{Bytes, Order, Pages, Pfn};
use std::hint::black_box;
use std::time::Instant;

/// Ops per program; the model is reset between programs, as the harness resets the kernel.
const PER_PROGRAM: usize = 4000;

fn boot(base: u64, used: u64) -> Observation {
    let mut bitmap = vec![0u32; 8192 / 32];
    for bit in 0..used {
        bitmap[(bit / 32) as usize] |= 1 << (bit % 32);
    }
    Observation {
        areas: vec![AreaObservation::single("reserved", Pfn(base), Pages(8192), 0, bitmap)],
        ..Default::default()
    }
}

/// A deterministic op stream of `n` ops (xorshift from `seed`): an allocation made by `alloc(h,
/// x)` while fewer than `max_live` handles are live and two times in three, else `free(h)` of a
/// random live handle. Handles start again at 0 with every program (the driver has 4096 slots).
fn op_stream(
    n: usize,
    seed: u64,
    max_live: usize,
    alloc: impl Fn(Handle, u64) -> ResolvedOp,
    free: impl Fn(Handle) -> ResolvedOp,
) -> Vec<ResolvedOp> {
    let mut ops = Vec::with_capacity(n);
    let mut live: Vec<u32> = Vec::new();
    let mut next = 0u32;
    let mut x = seed;
    for i in 0..n {
        if i % PER_PROGRAM == 0 {
            live.clear();
            next = 0;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if live.len() < max_live && (live.is_empty() || x % 3 != 0) {
            ops.push(alloc(Handle(next), x));
            live.push(next);
            next += 1;
        } else {
            let h = live.swap_remove(((x >> 32) as usize) % live.len());
            ops.push(free(Handle(h)));
        }
    }
    ops
}

/// Up to 32 live `cma_alloc`s of 1-64 pages, align 0-4, and their releases.
fn cma_ops(n: usize) -> Vec<ResolvedOp> {
    op_stream(
        n,
        0x2545_f491_4f6c_dd1d,
        32,
        |h, x| ResolvedOp::CmaAlloc {
            area: AreaId(0),
            h,
            count: Pages(1 + (x >> 8) % 64),
            align: Order(((x >> 20) % 5) as u32),
        },
        |h| ResolvedOp::CmaRelease { h },
    )
}

/// Up to 16 live `dma_alloc`s of 4-64 KiB (a quarter atomic, half wc) and their frees.
fn dma_ops(n: usize) -> Vec<ResolvedOp> {
    op_stream(
        n,
        0x9e37_79b9_7f4a_7c15,
        16,
        |h, x| ResolvedOp::DmaAlloc {
            h,
            size: Bytes(4096 * (1 + (x >> 8) % 16)),
            attrs: DmaAttrs { wc: x & 1 == 0, nokmap: false },
            gfp: if (x >> 16) % 4 == 0 { Gfp::Atomic } else { Gfp::Kernel },
        },
        |h| ResolvedOp::DmaFree { h },
    )
}

/// Runs `ops` in programs of `PER_PROGRAM` ops with a reset between them (as the harness does);
/// best of 5 rounds, in ops/s, and the share of allocations that succeeded (a sanity check that
/// the mix does real work: a stream of rejected ops would be fast and meaningless).
fn measure(model: &mut Model, ops: &[ResolvedOp]) -> (f64, f64) {
    let mut best = 0f64;
    let (mut allocs, mut ok) = (0u64, 0u64);
    for round in 0..5 {
        let t = Instant::now();
        for chunk in ops.chunks(PER_PROGRAM) {
            for op in chunk {
                let o = black_box(model.step(op));
                if round == 0 && matches!(op, ResolvedOp::CmaAlloc { .. } | ResolvedOp::DmaAlloc { .. }) {
                    allocs += 1;
                    ok += u64::from(matches!(o, Outcome::Allocated { .. } | Outcome::AllocatedOutsideCma { .. }));
                }
            }
            model.reset();
        }
        best = best.max(ops.len() as f64 / t.elapsed().as_secs_f64());
    }
    (best, ok as f64 / allocs.max(1) as f64)
}

fn main() {
    let n = 2_000_000;
    let cma = cma_ops(n);
    let dma = dma_ops(n / 4);
    let a32 = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm32);
    let a64 = KernelProfile::qemu_virt_1g(Version::V6_1, Arch::Arm64);
    let mut m32 = match Model::new(a32, &boot(0x7e000, 64)) {
        Ok(m) => m,
        Err(e) => panic!("arm32 model: {e}"),
    };
    let mut m64 = match Model::new(a64, &boot(0x7cc00, 96)) {
        Ok(m) => m,
        Err(e) => panic!("arm64 model: {e}"),
    };
    let show = |what: &str, (rate, ok): (f64, f64)| {
        println!("model {what}: {:.2} M ops/s ({:.0}% of allocations succeed)", rate / 1e6, ok * 100.0);
    };
    show("cma_alloc/cma_release mix, 32 MiB area, arm32-6.1", measure(&mut m32, &cma));
    show("cma_alloc/cma_release mix, 32 MiB area, arm64-6.1", measure(&mut m64, &cma));
    show("dma_alloc/dma_free mix (4-64 KiB, 1/4 atomic), arm32-6.1", measure(&mut m32, &dma));
    show("dma_alloc/dma_free mix (4-64 KiB, 1/4 atomic), arm64-6.1", measure(&mut m64, &dma));
    // One observation of a busy model: 16 live buffers and 32 live cma allocations.
    for op in dma.iter().take(64).chain(cma.iter().take(64)) {
        black_box(m32.step(op));
    }
    let t = Instant::now();
    let rounds = 20_000;
    for _ in 0..rounds {
        black_box(m32.observe());
    }
    println!(
        "model observe (areas + mapping table), arm32-6.1, busy: {:.0} observations/s",
        rounds as f64 / t.elapsed().as_secs_f64()
    );
}
