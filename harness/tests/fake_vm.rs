//! The host's side of a hung guest, with a fake VM behind the `vm::Instance` trait (the real
//! kernel's hang is `real_vm.rs`'s): the spine gives a `hang` verdict within the watchdog of the
//! op that stops progressing, and the next program runs on a restarted VM.

use cmafuzz::backend::{Backend, KernelBackend, ModelBackend};
use cmafuzz::diff::{BackendChoice, Executor};
use cmafuzz::oracle::{Suppressions, VerdictKind};
use cmafuzz::targets;
use cmafuzz::vm::fake::{FakeLauncher, HANG_COUNT};
use cmafuzz::vm::VmSpec;
use reference_impl::program::Program;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn spec(watchdog: Duration) -> VmSpec {
    VmSpec {
        qemu: "none".into(),
        machine: "fake".into(),
        cpu: "fake".into(),
        memory_mib: 1024,
        smp: 1,
        kernel: PathBuf::from("/nonexistent"),
        initrd: PathBuf::from("/nonexistent"),
        cmdline: String::new(),
        dtb: None,
        boot_timeout: Duration::from_secs(5),
        watchdog,
    }
}

#[test]
fn a_hung_guest_is_a_hang_verdict_within_the_watchdog_and_the_next_program_runs_on_a_restarted_vm() {
    let watchdog = Duration::from_millis(300);
    let launcher = FakeLauncher::default();
    let kb = KernelBackend::boot_with(spec(watchdog), Box::new(launcher.clone())).expect("fake boots");
    let t = targets::find(Some("arm32-6.1")).expect("target");
    let boot = kb.boot_observation().clone();
    let model = ModelBackend::new(t.profile().expect("profile"), boot.clone()).expect("model");
    let rules = Some(model.alias_rules());
    let mut ex = Executor::new(&t, BackendChoice::Both, Some(model), Some(kb), boot, Suppressions::none(), rules);

    // 200 ops, the third of which hangs; the guest keeps reporting (it schedules), so the
    // verdict names the op it stopped at, not the program's last op.
    let mut text = String::from("cma_alloc area=reserved count=1\ncma_alloc area=reserved count=2\n");
    text.push_str(&format!("cma_alloc area=reserved count={HANG_COUNT}\n"));
    for _ in 0..197 {
        text.push_str("dma_alloc size=4096\n");
    }
    let hangs = Program::parse(&text).expect("program");
    let t0 = Instant::now();
    let e = ex.execute(&hangs).expect("runs");
    let took = t0.elapsed();
    let hang: Vec<_> = e.verdicts.iter().filter(|v| v.kind == VerdictKind::Hang).collect();
    assert_eq!(hang.len(), 1, "{:?}", e.verdicts);
    assert_eq!(hang[0].signature, "hang:cma_alloc");
    assert_eq!(hang[0].op_index, Some(2));
    assert!(took < watchdog * 5, "the hang verdict took {took:?} with a {watchdog:?} watchdog");

    let fine = Program::parse("observe\n").expect("program");
    let e = ex.execute(&fine).expect("runs");
    assert!(e.verdicts.is_empty(), "{:?}", e.verdicts);
    assert!(e.subject.is_some(), "the second program ran on the kernel side");
    assert_eq!(launcher.boots.load(Ordering::SeqCst), 2, "one restart after the hang");
    assert_eq!(ex.subject.as_ref().map(|k| k.restarts()), Some(1));
}
