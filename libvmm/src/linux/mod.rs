//! Booting a Linux arm64 guest: the Image header, device-tree patching, and
//! image placement in guest RAM.

pub mod fdt;
