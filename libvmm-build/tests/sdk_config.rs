//! The build-time SDK reader picks each configuration's own invocation
//! labels. Runs the same code as `build.rs` on sample inputs and, where a
//! Microkit SDK is installed, on its real debug and release files.

use libvmm_build::sdk;

use std::path::PathBuf;

const RELEASE_GEN_CONFIG: &str = r#"{"SEL4_ARCH": "aarch64", "KERNEL_MCS": true,
    "PRINTING": false, "HARDWARE_DEBUG_API": false, "ARM_HYPERVISOR_SUPPORT": true,
    "MAX_NUM_NODES": "1"}"#;

const RELEASE_INVOCATIONS: &str = r#"{"TCBReadRegisters": 2, "TCBWriteRegisters": 3,
    "TCBSuspend": 12, "TCBResume": 13, "IRQAckIRQ": 27, "ARMVCPUInjectIRQ": 56,
    "ARMVCPUReadReg": 57, "ARMVCPUWriteReg": 58, "ARMVCPUAckVPPI": 59}"#;

fn generate(invocations: &str, gen_config: &str) -> Result<String, String> {
    sdk::generate(&sdk::SdkInputs {
        origin: "test",
        invocations_json: invocations,
        gen_config_json: gen_config,
        address_space_json: None,
    })
}

#[test]
fn release_inputs_give_release_labels_and_no_printing() {
    let out = generate(RELEASE_INVOCATIONS, RELEASE_GEN_CONFIG).unwrap();
    assert!(out.contains("pub const IRQ_ACK_IRQ: u64 = 27;"), "{out}");
    assert!(out.contains("pub const ARM_VCPU_INJECT_IRQ: u64 = 56;"), "{out}");
    assert!(out.contains("pub const ARM_VCPU_ACK_VPPI: u64 = 59;"), "{out}");
    assert!(out.contains("pub const PRINTING: bool = false;"), "{out}");
}

#[test]
fn fallback_is_the_debug_configuration() {
    let out = generate(sdk::FALLBACK_INVOCATIONS, sdk::FALLBACK_GEN_CONFIG).unwrap();
    assert!(out.contains("pub const IRQ_ACK_IRQ: u64 = 31;"), "{out}");
    assert!(out.contains("pub const ARM_VCPU_INJECT_IRQ: u64 = 60;"), "{out}");
    assert!(out.contains("pub const PRINTING: bool = true;"), "{out}");
}

#[test]
fn invocations_of_another_configuration_are_rejected() {
    // Debug labels (TCBSetBreakpoint present) with a release gen_config.
    let err = generate(sdk::FALLBACK_INVOCATIONS, RELEASE_GEN_CONFIG).unwrap_err();
    assert!(err.contains("disagree"), "{err}");
}

#[test]
fn missing_label_and_non_mcs_kernel_are_rejected() {
    let err = generate(r#"{"TCBReadRegisters": 2}"#, RELEASE_GEN_CONFIG).unwrap_err();
    assert!(err.contains("has no"), "{err}");
    let err = generate(RELEASE_INVOCATIONS, r#"{"SEL4_ARCH": "aarch64", "KERNEL_MCS": false}"#)
        .unwrap_err();
    assert!(err.contains("not MCS"), "{err}");
}

fn sdk_dir() -> Option<PathBuf> {
    let path = std::env::var_os("MICROKIT_SDK")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/microkit-sdk"));
    path.join("bin/microkit").exists().then_some(path)
}

fn generate_from_sdk(sdk: &std::path::Path, config: &str) -> Option<String> {
    let dir = sdk.join("board/qemu_virt_aarch64").join(config);
    let invocations = std::fs::read_to_string(dir.join("invocations_all.json")).ok()?;
    let gen_config = std::fs::read_to_string(dir.join("include/kernel/gen_config.json")).unwrap();
    let address_space = std::fs::read_to_string(dir.join("address_space_constants.json")).ok();
    Some(
        sdk::generate(&sdk::SdkInputs {
            origin: config,
            invocations_json: &invocations,
            gen_config_json: &gen_config,
            address_space_json: address_space.as_deref(),
        })
        .unwrap(),
    )
}

/// With an SDK on the machine: its release and debug files give different,
/// correct labels. Prints (and passes) when there is no SDK.
#[test]
fn installed_sdk_release_and_debug_labels() {
    let Some(sdk) = sdk_dir() else {
        eprintln!("no Microkit SDK found: the sample-input tests above cover the logic");
        return;
    };
    if let Some(debug) = generate_from_sdk(&sdk, "debug") {
        assert!(debug.contains("pub const IRQ_ACK_IRQ: u64 = 31;"), "{debug}");
        assert!(debug.contains("pub const ARM_VCPU_INJECT_IRQ: u64 = 60;"), "{debug}");
        assert!(debug.contains("pub const VSPACE_USER_TOP: u64 = 0xffffffffff;"), "{debug}");
    }
    if let Some(release) = generate_from_sdk(&sdk, "release") {
        assert!(release.contains("pub const IRQ_ACK_IRQ: u64 = 27;"), "{release}");
        assert!(release.contains("pub const ARM_VCPU_INJECT_IRQ: u64 = 56;"), "{release}");
        assert!(release.contains("pub const PRINTING: bool = false;"), "{release}");
    }
}
