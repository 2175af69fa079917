//! `cmafuzz boot`: boot a target and print what its kernel reports.

use super::{progress, KernelArgs};
use crate::backend::kernel::boot as session;
use crate::targets;
use clap::Args;

#[derive(Args)]
pub struct BootArgs {
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

pub fn run(a: BootArgs) -> anyhow::Result<u8> {
    let BootArgs { target, kernel } = a;
    let t = targets::find(target.as_deref())?;
    let kb = session::boot_kernel(&t, &kernel.choice(), &mut progress)?;
    if let Some(h) = kb.hello() {
        outln!("{}: Linux {} ready in {:.3} s", t.name, h.release, kb.boot_times[0].as_secs_f64());
        outln!(
            "  page_shift {} cma_alignment {} pageblock_order {} max_low_pfn {:#x} max_pfn {:#x}",
            h.page_shift,
            h.cma_alignment,
            h.pageblock_order,
            h.max_low_pfn,
            h.max_pfn
        );
    }
    use crate::backend::Backend;
    for a in &kb.boot_observation().areas {
        outln!("  area {} {} order_per_bit {}: {} bits used", a.name, a.extent_text(), a.order_per_bit, a.used_bits());
    }
    let profile = session::profile_from_kernel(&t, &kb, kernel.kernel_src.as_deref())?;
    if let Some(note) = crate::oracle::placement::placement_note(&t, kb.boot_observation(), Some(&profile)) {
        outln!("  note: {note}");
    }
    Ok(0)
}
