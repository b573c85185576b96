//! Reads the Microkit SDK's kernel configuration at build time into
//! `$OUT_DIR/sel4_config.rs`, included by `src/sel4/config.rs`.
//!
//! Inputs (environment): `MICROKIT_SDK` (path; optional), `MICROKIT_BOARD`
//! (default `qemu_virt_aarch64`), `MICROKIT_CONFIG` (default `debug`).
//! Without `MICROKIT_SDK` the debug numbers of qemu_virt_aarch64 are used so
//! the crate still builds and tests on a machine with no SDK. The logic is
//! `libvmm_build::sdk`.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let generated = libvmm_build::sdk::sel4_config_for_build();
    fs::write(out.join("sel4_config.rs"), generated).expect("write sel4_config.rs");
}
