//! KCOV on a real kernel: the agent traces its own task around each RUN and the fuzzer's
//! `Execution::coverage` gets the distinct kernel PCs. Boots `arm32-6.1` and `arm64-6.1` (built
//! with `kcov.config`) from the build cache.

use cmafuzz::diff::Executor;
use cmafuzz::oracle::Suppressions;
use cmafuzz::diff::BackendChoice;
use cmafuzz::backend::kernel::boot::KernelChoice;
use cmafuzz::targets;
use reference_impl::program::Program;
use std::collections::BTreeSet;

fn start(target: &str) -> Executor {
    let t = targets::find(Some(target)).expect("target");
    Executor::start(
        &t,
        BackendChoice::Both,
        &KernelChoice::default(),
        Suppressions::builtin().expect("builtin suppressions"),
        &mut |l| eprintln!("{l}"),
    )
    .expect("kernel boots")
}

fn coverage(ex: &mut Executor, text: &str) -> Vec<u64> {
    let p = Program::parse(text).expect("program parses");
    let e = ex.execute(&p).expect("program runs");
    assert!(!e.finding() && !e.harness_error(), "{text}: {:?}", e.verdicts);
    e.coverage
}

const OBSERVE: &str = "observe\n";
const CMA: &str = "cma_alloc area=reserved count=16 align=0\n\
                   cma_alloc area=reserved count=64 align=4\n\
                   cma_release h=0\n\
                   observe\n";
const DMA: &str = "dma_alloc size=12288\n\
                   dma_alloc size=1 attrs=nokmap\n\
                   dma_free h=0\n\
                   observe\n";

#[test]
fn cma_allocations_cover_more_kernel_code_than_observing_and_programs_differ_on_arm32() {
    coverage_follows_the_program("arm32-6.1");
}

#[test]
fn cma_allocations_cover_more_kernel_code_than_observing_and_programs_differ_on_arm64() {
    coverage_follows_the_program("arm64-6.1");
}

fn coverage_follows_the_program(target: &str) {
    let mut ex = start(target);
    let hello = ex.kernel.as_ref().and_then(|k| k.hello()).expect("a kernel runs").clone();
    assert!(hello.kcov(), "{target} is built with kcov.config, its agent must offer KCOV: {hello:?}");

    // Off (replay, difftest): no coverage is asked for and none comes back.
    assert!(!ex.kcov());
    assert!(coverage(&mut ex, CMA).is_empty());

    ex.set_kcov(true);
    assert!(ex.kcov());
    let observe = coverage(&mut ex, OBSERVE);
    let cma = coverage(&mut ex, CMA);
    let dma = coverage(&mut ex, DMA);
    for (name, c) in [("observe", &observe), ("cma", &cma), ("dma", &dma)] {
        assert!(!c.is_empty(), "{name}: no coverage");
        assert!(c.windows(2).all(|w| w[0] < w[1]), "{name}: coverage is not sorted and distinct");
    }
    let (observe, cma, dma): (BTreeSet<u64>, BTreeSet<u64>, BTreeSet<u64>) =
        (observe.into_iter().collect(), cma.into_iter().collect(), dma.into_iter().collect());
    println!("{target}: distinct PCs: observe {}, cma {}, dma {}", observe.len(), cma.len(), dma.len());
    assert!(cma.len() > observe.len(), "cma_alloc ran no more code ({}) than observe ({})", cma.len(), observe.len());
    assert!(cma.difference(&observe).count() > 0);
    assert_ne!(cma, dma, "two different programs gave the same coverage");
    assert!(dma.difference(&cma).count() > 0, "the DMA program reached no code the CMA program did not");

    // The same program again reaches the code it reached before (coverage is of the run, not
    // of whatever the task did in between).
    let again: BTreeSet<u64> = coverage(&mut ex, CMA).into_iter().collect();
    let shared = again.intersection(&cma).count();
    assert!(shared * 10 >= cma.len() * 9, "rerun shares only {shared} of {} PCs", cma.len());
}
