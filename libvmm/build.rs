//! Reads the Microkit SDK's kernel configuration at build time.
//!
//! Inputs (environment): `MICROKIT_SDK` (path; optional), `MICROKIT_BOARD`
//! (default `qemu_virt_aarch64`), `MICROKIT_CONFIG` (default `debug`).
//! Output: `$OUT_DIR/sel4_config.rs`, included by `src/sel4/config.rs`.
//! Without `MICROKIT_SDK` the debug numbers of qemu_virt_aarch64 are used so
//! the crate still builds and tests on a machine with no SDK.

use std::path::PathBuf;
use std::{env, fs};

#[path = "build_support/sdk.rs"]
mod sdk;

fn main() {
    for var in ["MICROKIT_SDK", "MICROKIT_BOARD", "MICROKIT_CONFIG"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build_support/sdk.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let generated = match env::var_os("MICROKIT_SDK").filter(|s| !s.is_empty()) {
        Some(sdk_path) => from_sdk(PathBuf::from(sdk_path)),
        None => sdk::generate(&sdk::SdkInputs {
            origin: "built-in fallback (no MICROKIT_SDK): qemu_virt_aarch64/debug",
            invocations_json: sdk::FALLBACK_INVOCATIONS,
            gen_config_json: sdk::FALLBACK_GEN_CONFIG,
            address_space_json: None,
        })
        .expect("fallback configuration is valid"),
    };
    fs::write(out.join("sel4_config.rs"), generated).expect("write sel4_config.rs");
}

fn from_sdk(sdk_path: PathBuf) -> String {
    let board = env::var("MICROKIT_BOARD").unwrap_or_else(|_| "qemu_virt_aarch64".into());
    let config = env::var("MICROKIT_CONFIG").unwrap_or_else(|_| "debug".into());
    let dir = sdk_path.join("board").join(&board).join(&config);
    let read = |rel: &str| -> String {
        let path = dir.join(rel);
        println!("cargo:rerun-if-changed={}", path.display());
        fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "libvmm: cannot read {} ({e}). Is MICROKIT_SDK a Microkit 2.3.0 SDK with board \
                 {board} and config {config}?",
                path.display()
            )
        })
    };
    let invocations = read("invocations_all.json");
    let gen_config = read("include/kernel/gen_config.json");
    let address_space_path = dir.join("address_space_constants.json");
    let address_space = fs::read_to_string(&address_space_path).ok();
    let origin = format!("{}/board/{board}/{config}", sdk_path.display());
    sdk::generate(&sdk::SdkInputs {
        origin: &origin,
        invocations_json: &invocations,
        gen_config_json: &gen_config,
        address_space_json: address_space.as_deref(),
    })
    .unwrap_or_else(|e| panic!("libvmm: SDK at {origin} does not fit: {e}"))
}
