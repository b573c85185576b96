//! Reads a board description, `board/<board>/board.mk`, at build time.
//!
//! The file is a Makefile fragment (the top-level Makefile includes it for
//! the QEMU command line) of `NAME := value` lines; this module reads the
//! GIC's: `GIC_VERSION` (2 or 3), `GICD`, and `GICC` (GICv2: the guest's CPU
//! interface, which the system description maps to the hardware GICV) or
//! `GICR` (GICv3: the redistributors). Other names are the Makefile's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The `NAME := value` (also `=`, `?=`) assignments of a Makefile fragment;
/// comments and other lines are skipped.
pub fn variables(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((name, value)) = line.split_once('=') else { continue };
        let name = name.trim_end_matches([':', '?', '+']).trim();
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            vars.insert(name.to_string(), value.trim().to_string());
        }
    }
    vars
}

fn number(vars: &BTreeMap<String, String>, name: &str) -> Result<u64, String> {
    let value = vars.get(name).ok_or_else(|| format!("no {name}"))?;
    let hex = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X"));
    match hex {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => value.replace('_', "").parse(),
    }
    .map_err(|e| format!("{name} = {value:?}: {e}"))
}

/// The Rust source of `GIC: libvmm::vm::GicLayout` for a board file's text.
pub fn gic_constant(text: &str) -> Result<String, String> {
    let vars = variables(text);
    let gicd = number(&vars, "GICD")?;
    let layout = match vars.get("GIC_VERSION").map(String::as_str) {
        Some("2") => format!("V2 {{ gicd: {gicd:#x}, gicc: {:#x} }}", number(&vars, "GICC")?),
        Some("3") => format!("V3 {{ gicd: {gicd:#x}, gicr: {:#x} }}", number(&vars, "GICR")?),
        other => return Err(format!("GIC_VERSION must be 2 or 3, not {other:?}")),
    };
    let mut out = String::new();
    writeln!(out, "/// The guest's GIC: version and addresses (the board file).").unwrap();
    writeln!(out, "pub const GIC: ::libvmm::vm::GicLayout = ::libvmm::vm::GicLayout::{layout};")
        .unwrap();
    Ok(out)
}

/// The board file of QEMU virt with GICv2, used when the build names none
/// (clippy, a plain `cargo build`).
pub const DEFAULT: &str = "GIC_VERSION := 2\nGICD := 0x8000000\nGICC := 0x8010000\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_gicv3_board() {
        let text = "# QEMU virt, GICv3\nGIC_VERSION := 3\nGICD := 0x8000000\nGICR ?= 0x80a_0000\n\
                    QEMU_MACHINE_OPTS := virt,virtualization=on,gic-version=3\n";
        let out = gic_constant(text).unwrap();
        assert!(out.contains("GicLayout::V3 { gicd: 0x8000000, gicr: 0x80a0000 }"), "{out}");
    }

    #[test]
    fn reads_a_gicv2_board_and_the_default() {
        let out = gic_constant(DEFAULT).unwrap();
        assert!(out.contains("GicLayout::V2 { gicd: 0x8000000, gicc: 0x8010000 }"), "{out}");
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(
            gic_constant("GICD := 1\n").unwrap_err(),
            "GIC_VERSION must be 2 or 3, not None"
        );
        assert_eq!(gic_constant("GIC_VERSION := 3\nGICD := 1\n").unwrap_err(), "no GICR");
        assert!(gic_constant("GIC_VERSION := 2\nGICD := x\nGICC := 0\n").is_err());
    }
}
