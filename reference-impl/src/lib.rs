//! # reference-impl: the cmafuzz reference model of Linux CMA and ARM coherent DMA
//!
//! A pure model (no I/O, no clock, no randomness) of what the in-kernel cmafuzz driver observes
//! when it calls `cma_alloc()`, `cma_release()`, `dma_alloc_attrs()` and `dma_free_attrs()` on
//! Debian's Linux 6.1, 6.12, 7.2 and 7.3 for arm32 (with and without LPAE) and arm64 (7.x
//! differences: [`profile::Behaviour`]). The harness runs the
//! same [`program::Program`] on this model and on a real kernel in qemu and compares the
//! [`outcome::Outcome`]s and [`observation::Observation`]s.
//!
//! * [`units`] — `Pfn`, `Pages`, `Order`, `Bytes`: distinct newtypes, checked arithmetic only.
//! * [`program`] — ops, their text and JSON forms, resolution of area names and handles.
//! * [`observation`] — the per-area bitmaps either side reports.
//! * [`outcome`] — per-op results and how a model prediction is compared with the kernel's.
//! * [`profile`] — the kernel build and machine being imitated.
//! * [`model`] — the state machine: [`model::Model::step`] and [`model::run`]; its observations
//!   include the kernel mappings of the pages of interest (spec §5.5-§5.7, §6.3).
//! * [`alias`] — the alias invariant over a mapping table, for the model's and the kernel's.
//!
//! Kernel facts come from the project's CMA specifications (`shared/cma-spec.md`, and
//! `shared/cma-spec-7x.md` for 7.2/7.3), cited by section (§) and by kernel `file:line` (6.1
//! unless marked).
//!
//! ## Program text format
//!
//! ```text
//! cma_alloc area=reserved count=16 align=4        # align defaults to 0
//! cma_release h=0
//! cma_release_raw area=reserved off=100 count=4
//! dma_alloc size=64K attrs=wc,nokmap gfp=atomic   # attrs default none, gfp default kernel
//! dma_free h=1
//! pin area=reserved off=65                        # make one free page busy
//! unpin area=reserved off=65
//! kmap area=reserved off=64                       # kmap+kunmap a free highmem page
//! observe
//! ```
//!
//! One op per line, `#` to end of line is a comment, `key=value` arguments in any order.
//! Numbers are decimal or `0x` hex; `size` also takes a `K`/`M` suffix. An all-digit `area` is an
//! index into `cma_areas[]`. Every `cma_alloc`/`dma_alloc` defines the next handle `h=0,1,2…`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alias;
mod bitmap;
mod cma;
mod error;
mod genpool;
mod maps;
pub mod model;
pub mod observation;
pub mod outcome;
pub mod placement;
pub mod profile;
pub mod program;
mod runs;
mod slots;
pub mod units;

pub use alias::{Alias, AliasClass, AliasRule, AliasRules};
pub use model::{run, Model, ModelError};
pub use observation::{AreaObservation, Observation};
pub use outcome::Outcome;
pub use profile::{Arch, Behaviour, KernelProfile, Version};
pub use program::{
    AreaId, AreaRef, DmaAttrs, Gfp, Handle, Op, ParseError, Program, ResolveError, ResolvedOp, ResolvedProgram,
};
pub use units::{Bytes, Order, Pages, Pfn};
