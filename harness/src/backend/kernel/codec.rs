//! The driver's frames in the shared vocabulary and back: resolved ops to `struct cf_op`,
//! `struct cf_result` to outcomes (a status an op cannot produce is a garbled guest), and
//! observation blocks to observations, memory types decoded with the guest CPU's own registers.

use super::memtype::AttrDecoder;
use crate::backend::{BackendError, DriverReply};
use crate::guest::wire::{self, WireObs, WireOp, WireResult};
use reference_impl::observation::{
    AreaObservation, MapKind, MapLevel, MapRun, Observation, PageAddr, RangeObservation,
};
use reference_impl::outcome::Outcome;
use reference_impl::program::{DmaDir, Gfp, ResolvedOp};
use reference_impl::units::{Pages, Pfn};

/// The driver's answer as it gave it.
pub fn to_reply(r: &WireResult) -> DriverReply {
    DriverReply { status: r.status, kind: r.kind, pfn: r.pfn, pages: r.pages, aux: r.aux, stale_refs: r.stale_refs }
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

/// One wire area (its ranges) as the model's area: the one place that maps the driver's
/// `cf_area` + `cf_memrange` blocks onto [`AreaObservation`]. A 6.x area has one range and no
/// `available_count`; an area not activated has ranges without bitmaps.
pub fn to_area(a: &wire::WireArea) -> AreaObservation {
    AreaObservation {
        name: a.name.clone(),
        order_per_bit: a.order_per_bit,
        count: Pages(a.count),
        available: a.available.map(Pages),
        activated: a.activated,
        ranges: a
            .ranges
            .iter()
            .map(|r| RangeObservation { base_pfn: Pfn(r.base_pfn), count: Pages(r.count), bitmap: r.words.clone() })
            .collect(),
    }
}

pub fn to_observation(o: &WireObs, dec: &AttrDecoder) -> Observation {
    Observation {
        areas: o.areas.iter().map(to_area).collect(),
        cma_free: Some(Pages(o.cma_free_pages)),
        maps: o.maps.iter().map(|m| to_map_run(m, dec)).collect(),
        maps_truncated: o.flags & wire::OBS_MAPS_TRUNCATED != 0,
        pkmap_last: (o.pkmap_last != wire::PKMAP_UNKNOWN).then_some(o.pkmap_last),
    }
}

/// The op kind `op` is sent as.
fn wire_kind(op: &ResolvedOp) -> u32 {
    to_wire(op).kind
}

/// What an op kind means, as the driver's boot self-check tests it.
fn meaning(kind: u32) -> &'static str {
    match kind {
        wire::OP_CMA_ALLOC => "cma_alloc() returns pages of the area and sets their bits",
        wire::OP_CMA_RELEASE => "cma_release() of held pages clears their bits",
        wire::OP_CMA_RELEASE_RAW => "releasing part of a held allocation clears exactly those bits",
        wire::OP_DMA_ALLOC => "a blocking dma_alloc_attrs() takes its pages from the default CMA area",
        wire::OP_DMA_FREE => "dma_free_attrs() gives the pages back to the area",
        wire::OP_PIN => "a pinned free CMA page makes a covering cma_alloc() retry past it",
        wire::OP_UNPIN => "an unpinned page is free for cma_alloc() again",
        wire::OP_KMAP => "kmap() of a free highmem CMA page leaves its PKMAP slot behind",
        wire::OP_DMA_MAP => {
            "a streaming map of a held buffer maps its own pages (no bounce buffer) and changes nothing"
        }
        _ => "the op does what it means",
    }
}

/// Every op kind the driver runs: its wire kind and its program name.
const KINDS: [(u32, &str); 10] = [
    (wire::OP_CMA_ALLOC, "cma_alloc"),
    (wire::OP_CMA_RELEASE, "cma_release"),
    (wire::OP_CMA_RELEASE_RAW, "cma_release_raw"),
    (wire::OP_DMA_ALLOC, "dma_alloc"),
    (wire::OP_DMA_FREE, "dma_free"),
    (wire::OP_PIN, "pin"),
    (wire::OP_UNPIN, "unpin"),
    (wire::OP_KMAP, "kmap"),
    (wire::OP_DMA_MAP, "dma_map"),
    (wire::OP_OBSERVE, "observe"),
];

/// The op kinds [`check_ops`] refuses on this kernel, by program name.
pub fn refused_kinds(hello: &wire::Hello) -> Vec<&'static str> {
    KINDS.iter().filter(|(k, _)| !hello.op_works(*k)).map(|(_, n)| *n).collect()
}

/// Refuses a program with an op kind the kernel's boot self-check found not doing what it
/// means (`hello.ops_ok`): such an op is never run as something else.
pub fn check_ops(prog: &[ResolvedOp], hello: &wire::Hello) -> Result<(), BackendError> {
    for (index, op) in prog.iter().enumerate() {
        let kind = wire_kind(op);
        if !hello.op_works(kind) {
            return Err(BackendError::OpUnsupported {
                index,
                op: op.kind(),
                release: hello.release.clone(),
                meaning: meaning(kind),
            });
        }
    }
    Ok(())
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
        ResolvedOp::DmaMap { h, dir } => {
            let a = match dir {
                DmaDir::Bidirectional => wire::DIR_BIDIRECTIONAL,
                DmaDir::ToDevice => wire::DIR_TO_DEVICE,
                DmaDir::FromDevice => wire::DIR_FROM_DEVICE,
            };
            WireOp { kind: wire::OP_DMA_MAP, handle: h.0, a, ..Default::default() }
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
        (wire::OP_DMA_MAP, wire::ST_OK) => Outcome::Mapped { pages: Pages(r.pages) },
        (wire::OP_DMA_MAP, wire::ST_FAILED) => Outcome::MapFailed,
        (wire::OP_DMA_MAP, wire::ST_NOOP) => Outcome::Noop,
        (wire::OP_DMA_MAP, wire::ST_REFUSED) => Outcome::Refused,
        (wire::OP_OBSERVE, wire::ST_OK) => Outcome::Observed,
        _ => return Err(bad()),
    };
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::program::{AreaId, DmaAttrs, Handle};
    use reference_impl::units::{Bytes, Order};

    fn hello_without(kinds: &[u32]) -> wire::Hello {
        let mut ops_ok = u32::MAX;
        for k in kinds {
            ops_ok &= !(1 << k);
        }
        wire::Hello {
            version: wire::VERSION.into(),
            max_frame: wire::MAX_FRAME,
            max_ops: wire::MAX_OPS,
            max_handles: wire::MAX_HANDLES,
            arch: wire::ARCH_ARM32,
            page_shift: 12,
            cma_alignment: 8,
            pageblock_order: 10,
            max_low_pfn: 0x70000,
            max_pfn: 0x80000,
            release: "7.2.13-armmp".into(),
            attr_regs: 0,
            pkmap_slots: 0,
            ops_ok,
            agent_flags: 0,
            max_kcov: 0,
        }
    }

    #[test]
    fn an_op_kind_the_hello_does_not_list_is_refused_by_name_and_release() {
        let alloc = ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(0), count: Pages(4), align: Order(2) };
        let pin = ResolvedOp::Pin { area: AreaId(0), off: 65 };
        let h = hello_without(&[wire::OP_PIN, wire::OP_UNPIN, wire::OP_KMAP]);
        assert!(check_ops(std::slice::from_ref(&alloc), &h).is_ok());
        let e = check_ops(&[alloc, pin], &h).expect_err("pin is not in ops_ok");
        assert!(matches!(e, BackendError::OpUnsupported { index: 1, op: "pin", .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("`pin`") && msg.contains("Linux 7.2.13-armmp"), "{msg}");
        assert_eq!(refused_kinds(&h), vec!["pin", "unpin", "kmap"], "the names programs use");
        assert!(refused_kinds(&hello_without(&[])).is_empty());
    }

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
        let r =
            WireResult { status: wire::ST_REFUSED, kind: wire::OP_CMA_ALLOC, pfn: 0, pages: 0, aux: 0, stale_refs: 0 };
        assert!(matches!(to_outcome(0, &op, &r), Err(BackendError::Inconsistent { .. })));
        let r = WireResult { status: wire::ST_OK, kind: wire::OP_DMA_FREE, pfn: 0, pages: 0, aux: 0, stale_refs: 0 };
        assert!(matches!(to_outcome(0, &op, &r), Err(BackendError::Inconsistent { .. })));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let raw = WireOp { kind: wire::OP_CMA_RELEASE_RAW, ..Default::default() };
        let r = |status| WireResult { status, kind: wire::OP_CMA_RELEASE_RAW, pfn: 0, pages: 0, aux: 0, stale_refs: 0 };
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
        let r = |status| WireResult { status, kind: wire::OP_PIN, pfn: 0x7e041, pages: 1, aux: 0, stale_refs: 0 };
        assert_eq!(to_outcome(0, &op, &r(wire::ST_OK)).ok(), Some(Outcome::Pinned { pfn: Pfn(0x7e041) }));
        assert_eq!(to_outcome(0, &op, &r(wire::ST_FAILED)).ok(), Some(Outcome::PinFailed { pfn: Pfn(0x7e041) }));
        assert_eq!(to_outcome(0, &op, &r(wire::ST_REFUSED)).ok(), Some(Outcome::Refused));
        assert_eq!(to_outcome(0, &op, &r(wire::ST_BADOP)).ok(), Some(Outcome::BadOp));
        assert!(matches!(to_outcome(0, &op, &r(wire::ST_NOOP)), Err(BackendError::Inconsistent { .. })));
    }

    #[test]
    fn unpin_statuses_map_to_unpinned_and_noop() {
        let op = WireOp { kind: wire::OP_UNPIN, ..Default::default() };
        let r = |status| WireResult { status, kind: wire::OP_UNPIN, pfn: 0x7cc61, pages: 1, aux: 0, stale_refs: 0 };
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
