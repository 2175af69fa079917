//! Running a built kernel: the qemu runner. It takes built artifacts (image, initramfs, device
//! tree) and knows nothing of builds.

pub mod fake;
pub mod qemu;

use crate::guest::wire::Hello;
use crate::guest::Channel;
use std::time::Duration;

pub use qemu::{qemu_command, tail, Vm, VmError, VmSpec, NEW_CONSOLE_MAX};

/// One running VM whose agent has said hello, as the kernel backend uses it (in the spirit of
/// syzkaller's `vmimpl.Instance`): the channel, the hello, and the console. [`Vm`] is the qemu
/// one; host-side fault-injection tests put a fake guest behind this.
pub trait Instance: Send {
    /// The channel to the agent.
    fn chan(&mut self) -> &mut Channel;
    /// What the agent said at boot.
    fn hello(&self) -> &Hello;
    /// From start to the agent's hello.
    fn boot_time(&self) -> Duration;
    /// The VM's host process, if it has one.
    fn pid(&self) -> Option<u32>;
    /// The whole console so far (bounded).
    fn console(&self) -> String;
    /// The last `n` console lines.
    fn console_tail(&self, n: usize) -> String;
    /// Console lines not handed out before (all of them, even a partial last line, if `all`).
    fn new_console(&mut self, all: bool) -> String;
}

/// Boots instances of a spec: qemu ([`QemuLauncher`]) or a fake.
pub trait Launcher: Send {
    fn boot(&self, spec: &VmSpec) -> Result<Box<dyn Instance>, VmError>;
}

/// Boots qemu.
pub struct QemuLauncher;

impl Launcher for QemuLauncher {
    fn boot(&self, spec: &VmSpec) -> Result<Box<dyn Instance>, VmError> {
        Ok(Box::new(Vm::boot(spec)?))
    }
}

impl Instance for Vm {
    fn chan(&mut self) -> &mut Channel {
        &mut self.chan
    }
    fn hello(&self) -> &Hello {
        &self.hello
    }
    fn boot_time(&self) -> Duration {
        self.boot_time
    }
    fn pid(&self) -> Option<u32> {
        Some(Vm::pid(self))
    }
    fn console(&self) -> String {
        Vm::console(self)
    }
    fn console_tail(&self, n: usize) -> String {
        Vm::console_tail(self, n)
    }
    fn new_console(&mut self, all: bool) -> String {
        Vm::new_console(self, all)
    }
}
