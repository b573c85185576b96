//! Booting a Linux arm64 guest: the Image header, device-tree patching, and
//! image placement in guest RAM.

pub mod boot;
pub mod fdt;
pub mod image;

pub use boot::{BootError, BootImages, Layout};
