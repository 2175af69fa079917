//! cmafuzz: runs the same CMA/DMA programs on the reference model and on a
//! real ARM kernel in qemu, and compares what they did.
//!
//! The folders are the layers (ARCHITECTURE.md, "Layers"), top down; a module imports only
//! from layers below its own (`tests/layers.rs` fails otherwise):
//! `cli` → `validate` → `campaign` / `replay` / `difftest` / `bench` / `bisect` / `report` → `findings` / `coverage` → `diff` → `oracle` →
//! `backend` → `vm` → `guest` → `build` → `targets` → `generate` → `disk`.

pub mod backend;
pub mod bench;
pub mod bisect;
pub mod build;
pub mod campaign;
pub mod cli;
pub mod coverage;
pub mod diff;
pub mod difftest;
pub mod disk;
pub mod findings;
pub mod generate;
pub mod guest;
pub mod oracle;
pub mod replay;
pub mod report;
pub mod targets;
pub mod validate;
pub mod vm;
