//! Reads a Microkit system description (`.system` XML) at build time and
//! emits the numbers a VMM PD needs as Rust constants, so that addresses,
//! sizes and channel ids are written once, in the XML.
//!
//! Used by [`crate::linux_vmm`]. Conventions:
//! - the VMM PD is the one with a `<virtual_machine>`;
//! - guest RAM is the memory region the VM maps that the VMM also maps with
//!   `setvar_vaddr`; its guest-physical base is the VM's map `vaddr`;
//! - the VMM's `<irq irq="30">` (the EL1 physical timer PPI) is its wake-up
//!   timer (`Timer::Physical`), or else a channel end of the VMM with
//!   `setvar_id="timer_ch"` names a timer PD that serves wake-ups
//!   (`Timer::Service`, sDDF's timer protocol); every other `<irq>` of the
//!   VMM is passed through to the guest
//!   with the same interrupt number.

use std::fmt::Write as _;

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|e| format!("bad number {s:?}: {e}"))
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Result<&'a str, String> {
    node.attribute(name)
        .ok_or_else(|| format!("<{}> has no {name} attribute", node.tag_name().name()))
}

/// The physical timer PPI used for vCPU wake-ups.
pub const TIMER_PPI: u64 = 30;

/// Emits `GUEST_RAM_GPA`, `GUEST_RAM_SIZE`, `GUEST_RAM_VADDR_SYMBOL`,
/// `NUM_VCPUS`, `PASSTHROUGH`, `TIMER_CHANNEL` and `SMC` for the VMM PD, and
/// `VSOCK_CIDS` ([`vsock_cids`]).
///
/// A system may hold several VMM PDs running the same program (the
/// `multi_vm` example: one VMM ELF, two PDs): their numbers must then agree,
/// since one ELF gets one set of constants; what differs between them is
/// found at run time through the PD's name (`VSOCK_CIDS`) or setvar symbols.
pub fn vmm_constants(xml: &str) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let vmms: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("protection_domain")
                && n.children().any(|c| c.has_tag_name("virtual_machine"))
        })
        .collect();
    let first = vmms.first().ok_or("no protection domain with a <virtual_machine>")?;
    let out = pd_constants(&doc, *first)?;
    for other in &vmms[1..] {
        let theirs = pd_constants(&doc, *other)?;
        if theirs != out {
            return Err(format!(
                "VMM PDs {:?} and {:?} differ in guest RAM, vCPUs, interrupts or smc: \
                 one VMM program needs them alike (give each its own program otherwise)",
                first.attribute("name").unwrap_or("?"),
                other.attribute("name").unwrap_or("?")
            ));
        }
    }
    let mut out = out;
    out.push_str(&vsock_cids(&vmms)?);
    Ok(out)
}

/// The memory region that carries a VMM's vsock packets to its peer is
/// named `vsock_<src>_to_<dst>` (guest CIDs, decimal) and mapped by the VMM
/// with `setvar_vaddr="vsock_tx"`; the one it receives from is mapped with
/// `setvar_vaddr="vsock_rx"` and must be `vsock_<dst>_to_<src>`. So the
/// CIDs are written once, in the region names, and checked here. Emits
/// `VSOCK_CIDS: &[(&str, u32, u32)]`: (PD name, own CID, peer CID) for each
/// VMM PD with vsock (empty without).
fn vsock_cids(vmms: &[roxmltree::Node]) -> Result<String, String> {
    let mut table = String::new();
    let mut seen = Vec::new();
    for vmm in vmms {
        let name = attr(*vmm, "name")?;
        let mapped = |symbol: &str| {
            vmm.children()
                .find(|c| c.has_tag_name("map") && c.attribute("setvar_vaddr") == Some(symbol))
                .and_then(|m| m.attribute("mr"))
        };
        let (tx, rx) = match (mapped("vsock_tx"), mapped("vsock_rx")) {
            (None, None) => continue,
            (Some(tx), Some(rx)) => (tx, rx),
            _ => return Err(format!("PD {name}: maps one of vsock_tx / vsock_rx but not both")),
        };
        let (cid, peer) = parse_vsock_region(tx).ok_or_else(|| {
            format!("PD {name}: vsock_tx region {tx:?} is not named vsock_<cid>_to_<peer cid>")
        })?;
        if parse_vsock_region(rx) != Some((peer, cid)) {
            return Err(format!(
                "PD {name}: sends on {tx:?}, so it must receive on \"vsock_{peer}_to_{cid}\", not {rx:?}"
            ));
        }
        for c in [cid, peer] {
            // 0, 1 and 2 are the hypervisor, local and host; u32::MAX is "any".
            if c < 3 || c == u32::MAX {
                return Err(format!(
                    "PD {name}: CID {c} is reserved (guest CIDs are 3 to 2^32 - 2)"
                ));
            }
        }
        if cid == peer {
            return Err(format!("PD {name}: its guest and its peer have the same CID {cid}"));
        }
        if seen.contains(&cid) {
            return Err(format!("CID {cid} is given to two guests"));
        }
        seen.push(cid);
        write!(table, "({name:?}, {cid}, {peer}), ").unwrap();
    }
    Ok(format!(
        "/// vsock: (VMM PD name, its guest's CID, the peer guest's CID), from the\n\
         /// names of the vsock regions.\npub const VSOCK_CIDS: &[(&str, u32, u32)] = &[{table}];\n"
    ))
}

/// `vsock_3_to_4` -> (3, 4).
fn parse_vsock_region(name: &str) -> Option<(u32, u32)> {
    let (a, b) = name.strip_prefix("vsock_")?.split_once("_to_")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The numbers of one VMM PD (see [`vmm_constants`]).
fn pd_constants(doc: &roxmltree::Document, vmm: roxmltree::Node) -> Result<String, String> {
    let vm = vmm.children().find(|c| c.has_tag_name("virtual_machine")).ok_or("no VM")?;
    let region_size = |mr: &str| -> Result<u64, String> {
        let node = doc
            .descendants()
            .find(|n| n.has_tag_name("memory_region") && n.attribute("name") == Some(mr))
            .ok_or_else(|| format!("no memory_region {mr}"))?;
        parse_u64(attr(node, "size")?)
    };
    // Guest RAM: mapped by the VMM with setvar_vaddr and by the VM, writable (a page the
    // VM maps read-only is a device's register page, see MmioDevice::with_register_page).
    let mut ram: Option<(&str, u64, u64)> = None;
    for map in vmm.children().filter(|c| c.has_tag_name("map")) {
        let Some(symbol) = map.attribute("setvar_vaddr") else { continue };
        let mr = attr(map, "mr")?;
        let writable = |m: &roxmltree::Node| m.attribute("perms").is_none_or(|p| p.contains('w'));
        if let Some(vm_map) = vm
            .children()
            .find(|c| c.has_tag_name("map") && c.attribute("mr") == Some(mr) && writable(c))
        {
            if let Some((other, ..)) = ram {
                return Err(format!(
                    "guest RAM is ambiguous: both {other} and {symbol} map a region the VM maps writable"
                ));
            }
            ram = Some((symbol, parse_u64(attr(vm_map, "vaddr")?)?, region_size(mr)?));
        }
    }
    let (symbol, gpa, size) =
        ram.ok_or("no memory region mapped by both the VM and the VMM (with setvar_vaddr)")?;
    let vcpus = vm.children().filter(|c| c.has_tag_name("vcpu")).count();
    let mut passthrough = String::new();
    let mut timer = None;
    for irq in vmm.children().filter(|c| c.has_tag_name("irq")) {
        let number = parse_u64(attr(irq, "irq")?)?;
        let id = parse_u64(attr(irq, "id")?)?;
        if number == TIMER_PPI {
            timer = Some(id);
        } else {
            write!(passthrough, "Passthrough {{ channel: {id}, irq: {number} }}, ").unwrap();
        }
    }
    let name = vmm.attribute("name").unwrap_or("?");
    let service = doc
        .descendants()
        .filter(|n| n.has_tag_name("end") && n.attribute("pd") == Some(name))
        .find(|n| n.attribute("setvar_id") == Some("timer_ch"));
    let timer = match (timer, service) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "PD {name}: both <irq irq=\"{TIMER_PPI}\"> and a timer_ch channel: one wake-up timer only"
            ))
        }
        (Some(id), None) => format!("Physical({id})"),
        (None, Some(end)) => format!("Service({})", parse_u64(attr(end, "id")?)?),
        (None, None) => "None".to_string(),
    };
    let smc = vmm.attribute("smc") == Some("true");
    let mut out = String::new();
    writeln!(
        out,
        "/// Guest-physical base of guest RAM.\npub const GUEST_RAM_GPA: u64 = {gpa:#x};"
    )
    .unwrap();
    writeln!(out, "/// Size of guest RAM.\npub const GUEST_RAM_SIZE: u64 = {size:#x};").unwrap();
    writeln!(out, "/// The setvar symbol of guest RAM in the VMM.\npub const GUEST_RAM_VADDR_SYMBOL: &str = {symbol:?};").unwrap();
    writeln!(out, "/// vCPUs of the VM.\npub const NUM_VCPUS: usize = {vcpus};").unwrap();
    writeln!(out, "/// Interrupts passed through to the guest.\npub const PASSTHROUGH: &[Passthrough] = &[{passthrough}];").unwrap();
    writeln!(
        out,
        "/// The wake-up timer.\npub const TIMER: ::libvmm::vm::Timer = ::libvmm::vm::Timer::{timer};"
    )
    .unwrap();
    writeln!(out, "/// The VMM may make SMC calls (smc=\"true\").\npub const SMC: bool = {smc};")
        .unwrap();
    Ok(out)
}
