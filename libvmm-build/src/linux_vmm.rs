//! The build script of a VMM crate whose VMM boots a Linux guest.

use std::path::{Path, PathBuf};
use std::{env, fs};

use crate::{board, sdf};

/// The whole build script of a VMM that boots a Linux guest, for the system
/// description `system` (a path relative to the crate's directory;
/// `LIBVMM_SYSTEM_FILE`, which the Makefile sets to the board's file, wins).
///
/// - Writes `$OUT_DIR/sdf.rs` with the VMM's numbers from the `.system` file
///   ([`sdf::vmm_constants`]) and the guest's GIC, `GIC`, from the board file
///   named by `LIBVMM_BOARD_FILE` ([`board::gic_constant`]; QEMU virt with
///   GICv2 without it); the VMM `include!`s it.
/// - Names the guest images that `libvmm::embedded_boot_images!` embeds,
///   from the environment: `LIBVMM_GUEST_KERNEL`, `LIBVMM_GUEST_INITRD`,
///   `LIBVMM_GUEST_DTB` (paths) and `LIBVMM_GUEST_BOOTARGS`. Without them
///   (clippy, a plain `cargo build`) empty images are embedded and the VMM
///   says so at boot.
///
/// Panics (which fails the build with the message) when the file cannot be
/// read or does not describe a VMM.
pub fn linux_vmm(system: impl AsRef<Path>) {
    println!("cargo:rerun-if-env-changed=LIBVMM_SYSTEM_FILE");
    let system = match env::var("LIBVMM_SYSTEM_FILE") {
        Ok(path) if !path.is_empty() => path,
        _ => system.as_ref().display().to_string(),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={system}");
    let xml = fs::read_to_string(&system).unwrap_or_else(|e| panic!("{system}: {e}"));
    let mut constants = sdf::vmm_constants(&xml).unwrap_or_else(|e| panic!("{system}: {e}"));
    println!("cargo:rerun-if-env-changed=LIBVMM_BOARD_FILE");
    let (board_file, board_text) = match env::var("LIBVMM_BOARD_FILE") {
        Ok(path) if !path.is_empty() => {
            println!("cargo:rerun-if-changed={path}");
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            (path, text)
        }
        _ => ("(built-in QEMU virt GICv2)".to_string(), board::DEFAULT.to_string()),
    };
    let gic = board::gic_constant(&board_text).unwrap_or_else(|e| panic!("{board_file}: {e}"));
    constants.push_str(&gic);
    assert!(
        constants.contains("GUEST_RAM_VADDR_SYMBOL: &str = \"guest_ram_vaddr\""),
        "{system}: the VMM must map guest RAM with setvar_vaddr=\"guest_ram_vaddr\""
    );
    fs::write(out.join("sdf.rs"), constants).unwrap();

    for (var, name) in [
        ("LIBVMM_GUEST_KERNEL", "kernel"),
        ("LIBVMM_GUEST_INITRD", "initrd"),
        ("LIBVMM_GUEST_DTB", "dtb"),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
        let path = match env::var(var) {
            Ok(p) if !p.is_empty() => {
                let p = fs::canonicalize(&p).unwrap_or_else(|e| panic!("{var}={p}: {e}"));
                println!("cargo:rerun-if-changed={}", p.display());
                p
            }
            _ => {
                let empty = out.join(format!("empty-{name}"));
                fs::write(&empty, []).unwrap();
                empty
            }
        };
        println!("cargo:rustc-env={var}={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=LIBVMM_GUEST_BOOTARGS");
    if let Ok(args) = env::var("LIBVMM_GUEST_BOOTARGS") {
        if !args.is_empty() {
            println!("cargo:rustc-env=LIBVMM_GUEST_BOOTARGS={args}");
        }
    }
}
