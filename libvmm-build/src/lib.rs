//! Build-script helpers for protection domains built on `libvmm`.
//!
//! A VMM crate names this crate in `[build-dependencies]` and calls it from
//! its `build.rs`; nothing here runs on the target.
//!
//! - [`linux_vmm`]: for a VMM that boots a Linux guest: reads the VMM's
//!   numbers from the `.system` file into `$OUT_DIR/sdf.rs` and names the
//!   guest images to embed (see [`linux_vmm`]).
//! - [`sdf`]: the `.system` reader itself, as a pure function.
//! - [`board`]: the board file (`board/<board>/board.mk`): the guest's GIC.
//! - [`sdk`]: reads a Microkit SDK's kernel configuration (invocation labels,
//!   kernel options) into Rust constants; `libvmm`'s own build script uses it.

pub mod board;
pub mod sdf;
pub mod sdk;

mod linux_vmm;
pub use linux_vmm::linux_vmm;
