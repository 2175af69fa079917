//! Where the kernel put its CMA areas at boot: against the target's record, and the default
//! area against the model's prediction (`reference_impl::placement`, spec §1.6). A finding about
//! the kernel, not about one program.

use super::{Suppressions, Verdict, VerdictKind};
use crate::targets::Target;
use reference_impl::observation::Observation;
use reference_impl::profile::KernelProfile;

/// A note when the kernel placed its areas differently from the layout the
/// target records (the full model turns this into a finding). The record is read as the
/// profile's kernel keeps it (7.x's `available_count`), else as the target's own version.
pub fn placement_note(target: &Target, boot: &Observation, profile: Option<&KernelProfile>) -> Option<String> {
    let expect = match profile {
        Some(p) => target.boot_observation_as(p.behaviour().cma_ranges),
        None => target.boot_observation(),
    };
    let show = |o: &Observation| {
        o.areas
            .iter()
            .map(|a| format!("{} {} ({} used)", a.name, a.extent_text(), a.used_bits()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if expect.areas == boot.areas {
        None
    } else {
        Some(format!(
            "boot CMA layout differs from the one recorded for {}: kernel [{}], recorded [{}]",
            target.name,
            show(boot),
            show(&expect)
        ))
    }
}

/// The placement verdict of a booted kernel: its areas differ from the target's record, or its
/// default area from the model's prediction for `profile`.
pub fn verdict(
    target: &Target,
    boot: &Observation,
    profile: Option<&KernelProfile>,
    sup: &Suppressions,
) -> Option<Verdict> {
    let mut notes = Vec::new();
    if let Some(note) = placement_note(target, boot, profile) {
        notes.push(note);
    }
    if let (Some(p), Some(def)) = (profile, boot.areas.iter().find(|a| a.name == "reserved")) {
        // Device-tree regions are reserved before the default area is placed.
        let reserved: Vec<_> =
            boot.areas.iter().filter(|a| a.name != "reserved").flat_map(|a| a.pfn_ranges()).collect();
        if let Some(want) = reference_impl::placement::predict_default_area(p, def.count, &reserved) {
            if want != def.base_pfn() {
                notes.push(format!(
                    "the default area is at pfn {:#x}, the model predicts {:#x} (top-down, highmem first)",
                    def.base_pfn().0,
                    want.0
                ));
            }
        }
    }
    if notes.is_empty() {
        return None;
    }
    Some(Verdict {
        kind: VerdictKind::Placement,
        signature: "placement:boot".into(),
        op_index: None,
        detail: notes.join("; "),
        excerpt: None,
        suppressed: sup.find(&target.name, "placement:boot"),
    })
}
