//! Target `fdt_patch`: device-tree patching (`libvmm::linux::fdt`) on arbitrary blobs.
//!
//! Input: a patch (bootargs, initrd, memory, rng-seed, output buffer size), chosen from the
//! first bytes, then the blob. Checks: no panic; `patch` never claims more bytes than the
//! output holds; a patched blob passes `check`, its `/chosen` (read by a walker of its own)
//! parser, the `fdt` crate) and patching it again with the same patch gives the same bytes.

use arbitrary::{Arbitrary, Unstructured};
use libvmm::linux::fdt::{check, patch, Patch};

/// The patch half of an input.
#[derive(Arbitrary, Debug)]
pub struct Params {
    bootargs: Option<String>,
    initrd: Option<(u64, u64)>,
    memory: Option<(u64, u64)>,
    rng_seed: Option<Vec<u8>>,
    /// Output buffer: the input's length plus this much (or 0 for a tiny buffer).
    out_extra: u16,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(p) = Params::arbitrary(&mut u) else { return };
    let blob = u.take_rest();
    let _ = check(blob);
    let pa = Patch {
        bootargs: p.bootargs.as_deref(),
        initrd: p.initrd,
        memory: p.memory,
        rng_seed: p.rng_seed.as_deref(),
    };
    let out_len = if p.out_extra == 0 { 64 } else { blob.len() + usize::from(p.out_extra) };
    let mut out = vec![0u8; out_len];
    let Ok(n) = patch(blob, &mut out, &pa) else { return };
    assert!(n <= out.len(), "patch claims {n} bytes of {}", out.len());
    let new = &out[..n];
    assert_eq!(check(new), Ok(n), "patched blob fails its own check");
    // The same patch again changes nothing.
    let mut again = vec![0u8; n + 4096];
    let m = patch(new, &mut again, &pa).expect("patched blob cannot be patched again");
    assert!(new == &again[..m], "patching is not idempotent");
    independent_view(new, &pa);
}

/// Reads the patched blob's `/chosen` with the walker below (independent of the patcher's
/// parser) and checks it says what the patch set.
fn independent_view(blob: &[u8], pa: &Patch) {
    let props = chosen(blob).expect("patched blob has no readable /chosen");
    let get = |name: &[u8]| props.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    if let Some(args) = pa.bootargs {
        let value = get(b"bootargs").expect("bootargs missing");
        let mut want = args.as_bytes().to_vec();
        want.push(0);
        assert_eq!(value, want, "bootargs differ");
    }
    match pa.initrd {
        Some((s, e)) => {
            assert_eq!(get(b"linux,initrd-start"), Some(&s.to_be_bytes()[..]));
            assert_eq!(get(b"linux,initrd-end"), Some(&e.to_be_bytes()[..]));
        }
        None => {
            assert_eq!(get(b"linux,initrd-start"), None, "initrd-start kept");
            assert_eq!(get(b"linux,initrd-end"), None, "initrd-end kept");
        }
    }
    if let Some(seed) = pa.rng_seed {
        assert_eq!(get(b"rng-seed"), Some(seed), "rng-seed differs");
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// The properties (name, value) of the first root child named `chosen`, by a plain walk of
/// the structure block (devicetree spec v0.4, 5.4).
fn chosen(blob: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let off_struct = be32(blob, 8)? as usize;
    let off_strings = be32(blob, 12)? as usize;
    let strings = blob.get(off_strings..)?;
    let cstr = |b: &'_ [u8]| -> Option<usize> { b.iter().position(|&c| c == 0) };
    let mut at = off_struct;
    let mut depth = 0usize;
    let mut in_chosen = false;
    let mut props = Vec::new();
    loop {
        let token = be32(blob, at)?;
        at += 4;
        match token {
            1 => {
                let name_len = cstr(blob.get(at..)?)?;
                let name = &blob[at..at + name_len];
                at = (at + name_len + 1 + 3) & !3;
                depth += 1;
                if depth == 2 && name == b"chosen" && props.is_empty() && !in_chosen {
                    in_chosen = true;
                }
            }
            2 => {
                if depth == 2 && in_chosen {
                    return Some(props);
                }
                depth = depth.checked_sub(1)?;
            }
            3 => {
                let len = be32(blob, at)? as usize;
                let nameoff = be32(blob, at + 4)? as usize;
                let value = blob.get(at + 8..at + 8 + len)?;
                at = (at + 8 + len + 3) & !3;
                if depth == 2 && in_chosen {
                    let name = strings.get(nameoff..)?;
                    props.push((&name[..cstr(name)?], value));
                }
            }
            4 => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run() {
        for seed in crate::seeds::fdt_patch() {
            run(&seed);
        }
    }
}
