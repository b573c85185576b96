//! Virtual GIC: distributor emulation and list-register injection.
//!
//! Safe Rust only; tested on the host. The hardware list registers are
//! reached through a trait the VMM implements with seL4 invocations.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
