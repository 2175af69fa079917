//! cmafuzz: runs the same CMA/DMA programs on the reference model and on a
//! real ARM kernel in qemu, and compares what they did.
//!
//! Layers, top down: CLI (`main.rs`) → `replay` → `compare` → `backend`
//! (model, kernel) → `vm` + `guest` + `wire` → `kernel_build`,
//! `guest_build`, `targets`, `cache`. Nothing reaches back up.

pub mod backend;
pub mod bench;
pub mod cache;
pub mod compare;
pub mod console;
pub mod difftest;
pub mod doctor;
pub mod dtb;
pub mod exec;
pub mod fuzz;
pub mod generate;
pub mod guest;
pub mod guest_build;
pub mod kernel_build;
pub mod memtype;
pub mod oracle;
pub mod replay;
pub mod session;
pub mod targets;
pub mod vm;
pub mod wire;

/// The exit-code convention of every command that compares: 2 if anything
/// failed to run (bad input, build failure, dead guest), else 1 if a
/// divergence was found, else 0.
pub fn exit_code(errors: bool, divergences: bool) -> u8 {
    if errors {
        2
    } else if divergences {
        1
    } else {
        0
    }
}
