//! libvmm: build virtual machine monitors as seL4 Microkit protection domains.
//!
//! - [`sel4`]: thin bindings (syscalls, invocations, fault decoding), with
//!   numbers read from the Microkit SDK at build time.
//! - [`microkit`]: the PD runtime (entry, event loop, [`microkit::Handler`]).
//! - [`logging`]: `log` output through the debug console, per component.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod guest_memory;
pub mod linux;
pub mod logging;
pub mod microkit;
pub mod sddf;
pub mod sel4;
pub mod virtio;
pub mod vm;
