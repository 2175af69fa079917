//! The real kernel in qemu as a backend: booting a target (`boot`), and decoding the driver's
//! memory-type indices with the guest CPU's own attribute registers (`memtype`).

pub mod boot;
pub mod memtype;
