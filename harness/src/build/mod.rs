//! Build artifacts, cached by a hash of their inputs: the kernel under test with the driver built
//! in, the agent and its initramfs, the device tree of targets with extra pools, and the table of
//! host tools (and the Debian packages that carry them) every build needs.

pub mod agent;
pub mod cache;
pub mod dtb;
pub mod error;
pub mod kernel;
pub mod signature;
pub mod sources;
pub mod tools;
pub mod tree;
pub mod tree_profile;
