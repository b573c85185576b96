//! Reads a Microkit SDK's kernel configuration and turns it into Rust constants.
//!
//! [`generate`] is a pure function (tested without an SDK in
//! `tests/sdk_config.rs`); [`sel4_config_for_build`] is the build-script
//! side that reads the files named by the environment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

/// Invocation labels the bindings use, as `(seL4 name, Rust constant name)`.
///
/// The numbers differ between configurations (debug adds the hardware debug
/// API's four TCB methods, which moves every later label by four), so they are
/// always taken from the SDK's `invocations_all.json`.
pub const LABELS: &[(&str, &str)] = &[
    ("TCBReadRegisters", "TCB_READ_REGISTERS"),
    ("TCBWriteRegisters", "TCB_WRITE_REGISTERS"),
    ("TCBSuspend", "TCB_SUSPEND"),
    ("TCBResume", "TCB_RESUME"),
    ("IRQAckIRQ", "IRQ_ACK_IRQ"),
    ("ARMVCPUInjectIRQ", "ARM_VCPU_INJECT_IRQ"),
    ("ARMVCPUReadReg", "ARM_VCPU_READ_REG"),
    ("ARMVCPUWriteReg", "ARM_VCPU_WRITE_REG"),
    ("ARMVCPUAckVPPI", "ARM_VCPU_ACK_VPPI"),
];

/// Labels that exist only in some configurations; 0 (`InvalidInvocation`,
/// which the kernel refuses) when absent.
pub const OPTIONAL_LABELS: &[(&str, &str)] = &[("ARMSMCCall", "ARM_SMC_CALL")];

/// Boolean kernel options exported as constants: `(gen_config key, Rust name)`.
pub const BOOL_OPTIONS: &[(&str, &str)] = &[
    ("KERNEL_MCS", "MCS"),
    ("PRINTING", "PRINTING"),
    ("DEBUG_BUILD", "DEBUG_BUILD"),
    ("HARDWARE_DEBUG_API", "HARDWARE_DEBUG_API"),
    ("ARM_HYPERVISOR_SUPPORT", "HYPERVISOR"),
    ("ENABLE_SMP_SUPPORT", "SMP"),
    ("ARM_GIC_V3_SUPPORT", "GIC_V3"),
    ("EXPORT_PTMR_USER", "EXPORT_PTMR_USER"),
    ("EXPORT_PCNT_USER", "EXPORT_PCNT_USER"),
    ("VTIMER_UPDATE_VOFFSET", "VTIMER_UPDATE_VOFFSET"),
    ("ALLOW_SMC_CALLS", "ALLOW_SMC_CALLS"),
];

/// What the build found: where the numbers came from and the parsed inputs.
pub struct SdkInputs<'a> {
    /// Human-readable origin, e.g. the SDK path and config, for the generated file.
    pub origin: &'a str,
    /// Contents of `invocations_all.json`.
    pub invocations_json: &'a str,
    /// Contents of `include/kernel/gen_config.json`.
    pub gen_config_json: &'a str,
    /// Contents of `address_space_constants.json`, if the SDK has it.
    pub address_space_json: Option<&'a str>,
}

/// Parses a flat JSON object of label name to number.
fn parse_labels(json: &str) -> Result<BTreeMap<String, u64>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invocations_all.json: {e}"))?;
    let object = value.as_object().ok_or("invocations_all.json: not a JSON object")?;
    let mut labels = BTreeMap::new();
    for (name, number) in object {
        if let Some(n) = number.as_u64() {
            labels.insert(name.clone(), n);
        }
    }
    Ok(labels)
}

/// A kernel option from `gen_config.json`: booleans are JSON booleans,
/// numbers and choices are strings.
fn option_bool(config: &serde_json::Map<String, serde_json::Value>, key: &str) -> bool {
    config.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
}

fn option_str<'a>(
    config: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a str> {
    config.get(key).and_then(|v| v.as_str())
}

/// Finds `vspace_user_top` in `address_space_constants.json`, which is a list
/// of `{ "name": ..., "value": ... }` or a flat object depending on the tool.
fn vspace_user_top(json: &str) -> Result<u64, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("address_space_constants.json: {e}"))?;
    let find = |v: &serde_json::Value| -> Option<u64> {
        v.get("vspace_user_top").and_then(|n| n.as_u64())
    };
    if let Some(top) = find(&value) {
        return Ok(top);
    }
    if let Some(list) = value.as_array() {
        for entry in list {
            if let Some(top) = find(entry) {
                return Ok(top);
            }
        }
    }
    Err("address_space_constants.json: no vspace_user_top".into())
}

/// Produces the Rust source of `sel4_config.rs` from an SDK's files.
///
/// Fails with a message naming the problem when the SDK does not fit the
/// bindings (not MCS, not aarch64, a label missing, or an invocation file that
/// disagrees with the kernel configuration).
pub fn generate(inputs: &SdkInputs) -> Result<String, String> {
    let labels = parse_labels(inputs.invocations_json)?;
    let config_value: serde_json::Value = serde_json::from_str(inputs.gen_config_json)
        .map_err(|e| format!("gen_config.json: {e}"))?;
    let config = config_value.as_object().ok_or("gen_config.json: not a JSON object")?;

    if option_str(config, "SEL4_ARCH") != Some("aarch64") {
        return Err(format!(
            "this SDK's kernel is for {:?}; libvmm supports aarch64 only",
            option_str(config, "SEL4_ARCH")
        ));
    }
    if !option_bool(config, "KERNEL_MCS") {
        return Err("this SDK's kernel is not MCS; Microkit 2.x kernels always are".into());
    }
    // The invocation list must belong to the same configuration as gen_config:
    // the hardware debug API adds TCBSetBreakpoint and moves later labels.
    let debug_api = option_bool(config, "HARDWARE_DEBUG_API");
    if labels.contains_key("TCBSetBreakpoint") != debug_api {
        return Err(format!(
            "invocations_all.json and gen_config.json disagree: HARDWARE_DEBUG_API is {debug_api} \
             but TCBSetBreakpoint is {}",
            if debug_api { "absent" } else { "present" }
        ));
    }

    let mut out = String::new();
    writeln!(out, "// Generated by libvmm/build.rs from {}. Do not edit.", inputs.origin).unwrap();
    writeln!(out, "/// Where these numbers came from.").unwrap();
    writeln!(out, "pub const ORIGIN: &str = {:?};", inputs.origin).unwrap();
    writeln!(out, "/// Invocation labels of this kernel configuration.").unwrap();
    writeln!(out, "pub mod label {{").unwrap();
    for (sel4_name, rust_name) in LABELS {
        let number = labels
            .get(*sel4_name)
            .ok_or_else(|| format!("invocations_all.json has no {sel4_name}"))?;
        writeln!(out, "    /// `{sel4_name}`.").unwrap();
        writeln!(out, "    pub const {rust_name}: u64 = {number};").unwrap();
    }
    for (sel4_name, rust_name) in OPTIONAL_LABELS {
        let number = labels.get(*sel4_name).copied().unwrap_or(0);
        writeln!(out, "    /// `{sel4_name}` (0 if this configuration lacks it).").unwrap();
        writeln!(out, "    pub const {rust_name}: u64 = {number};").unwrap();
    }
    writeln!(out, "}}").unwrap();
    for (key, rust_name) in BOOL_OPTIONS {
        writeln!(out, "/// Kernel option `CONFIG_{key}`.").unwrap();
        writeln!(out, "pub const {rust_name}: bool = {};", option_bool(config, key)).unwrap();
    }
    let nodes: u64 = option_str(config, "MAX_NUM_NODES").and_then(|s| s.parse().ok()).unwrap_or(1);
    writeln!(out, "/// Kernel option `CONFIG_MAX_NUM_NODES` (cores).").unwrap();
    writeln!(out, "pub const MAX_NUM_NODES: usize = {nodes};").unwrap();
    let top = match inputs.address_space_json {
        Some(json) => vspace_user_top(json)?,
        None => DEFAULT_VSPACE_USER_TOP,
    };
    writeln!(out, "/// `seL4_UserVSpaceTop`: the IPC buffer is the page below it.").unwrap();
    writeln!(out, "pub const VSPACE_USER_TOP: u64 = {top:#x};").unwrap();
    Ok(out)
}

/// `seL4_UserVSpaceTop` for a 40-bit physical address space (QEMU virt, hyp).
pub const DEFAULT_VSPACE_USER_TOP: u64 = 0xff_ffff_ffff;

/// The numbers used when no SDK is given: those of Microkit 2.3.0's `debug`
/// configuration for `qemu_virt_aarch64`, so that host tests and the
/// cross-build of the crates work on a machine without an SDK. Images are only
/// ever built with an SDK (the Makefile requires one).
pub const FALLBACK_INVOCATIONS: &str = r#"{
    "TCBReadRegisters": 2, "TCBWriteRegisters": 3, "TCBSuspend": 12, "TCBResume": 13,
    "TCBSetBreakpoint": 16, "IRQAckIRQ": 31, "ARMSMCCall": 47, "ARMVCPUInjectIRQ": 60,
    "ARMVCPUReadReg": 61, "ARMVCPUWriteReg": 62, "ARMVCPUAckVPPI": 63
}"#;

/// Kernel options of the fallback (debug, qemu_virt_aarch64) configuration.
pub const FALLBACK_GEN_CONFIG: &str = r#"{
    "SEL4_ARCH": "aarch64", "KERNEL_MCS": true, "PRINTING": true, "DEBUG_BUILD": true,
    "HARDWARE_DEBUG_API": true, "ARM_HYPERVISOR_SUPPORT": true, "ENABLE_SMP_SUPPORT": false,
    "ARM_GIC_V3_SUPPORT": false, "EXPORT_PTMR_USER": true, "EXPORT_PCNT_USER": true,
    "VTIMER_UPDATE_VOFFSET": false, "ALLOW_SMC_CALLS": true, "MAX_NUM_NODES": "1"
}"#;

/// What `libvmm`'s build script runs: the Rust source of `sel4_config.rs`
/// for the SDK, board and configuration named by the environment
/// (`MICROKIT_SDK`, `MICROKIT_BOARD`, default `qemu_virt_aarch64`,
/// `MICROKIT_CONFIG`, default `debug`), or the [fallback](FALLBACK_INVOCATIONS)
/// numbers without `MICROKIT_SDK`. Prints the `cargo:rerun-if-*` lines.
///
/// Panics with a message naming the file or the mismatch when the SDK cannot
/// be read or does not fit the bindings.
pub fn sel4_config_for_build() -> String {
    for var in ["MICROKIT_SDK", "MICROKIT_BOARD", "MICROKIT_CONFIG"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Some(sdk_path) = env::var_os("MICROKIT_SDK").filter(|s| !s.is_empty()) else {
        return generate(&SdkInputs {
            origin: "built-in fallback (no MICROKIT_SDK): qemu_virt_aarch64/debug",
            invocations_json: FALLBACK_INVOCATIONS,
            gen_config_json: FALLBACK_GEN_CONFIG,
            address_space_json: None,
        })
        .expect("fallback configuration is valid");
    };
    let sdk_path = PathBuf::from(sdk_path);
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
    let address_space = fs::read_to_string(dir.join("address_space_constants.json")).ok();
    let origin = format!("{}/board/{board}/{config}", sdk_path.display());
    generate(&SdkInputs {
        origin: &origin,
        invocations_json: &invocations,
        gen_config_json: &gen_config,
        address_space_json: address_space.as_deref(),
    })
    .unwrap_or_else(|e| panic!("libvmm: SDK at {origin} does not fit: {e}"))
}
