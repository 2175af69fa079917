//! Running a built kernel: the qemu runner. It takes built artifacts (image, initramfs, device
//! tree) and knows nothing of builds.

pub mod qemu;

pub use qemu::{qemu_command, tail, Vm, VmError, VmSpec, NEW_CONSOLE_MAX};
