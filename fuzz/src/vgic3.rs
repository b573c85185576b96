//! Target `vgic_v3`: the GICv3 distributor and redistributors (`vgic::GicV3`) driven like
//! `vgic_mmio` drives the GICv2 one: guest accesses to the distributor (64 KiB) and the
//! redistributors (128 KiB per vCPU), ICC_SGI0R/SGI1R writes, raised interrupts, guest acks
//! and EOIs with their maintenance, busy or failing LRs, resets, against the same model of
//! the hardware list registers.
//!
//! Checks after every operation: every occupied hardware LR is known to the vGIC with its
//! interrupt; no interrupt in two LRs. At the end, once the guest has EOIed everything until
//! nothing moves: no vCPU has queued or pending work left with all its LRs free.

use arbitrary::{Arbitrary, Unstructured};
use vgic::{GicV3, MAX_LRS, MAX_VCPUS, NUM_IRQS};

use crate::vgic::{check_lrs, Hw};

/// Redistributor frames per vCPU (RD_base + SGI_base).
const GICR_STRIDE: u64 = 0x2_0000;

/// One step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Distributor read (any offset in the 64 KiB, any width).
    DistRead { vcpu: u8, offset: u16, width: u8 },
    /// Distributor write.
    DistWrite { vcpu: u8, offset: u16, width: u8, value: u64 },
    /// 4-byte distributor write to a word of the first 4 KiB (the interrupt registers).
    DistWord { vcpu: u8, word: u16, value: u32 },
    /// Redistributor read: frame `rd`, offset in the 128 KiB.
    RedistRead { vcpu: u8, rd: u8, offset: u32, width: u8 },
    /// Redistributor write.
    RedistWrite { vcpu: u8, rd: u8, offset: u32, width: u8, value: u64 },
    /// ICC_SGI1R_EL1 (or SGI0R) write.
    Sgi { vcpu: u8, value: u64, group1: bool },
    /// A device, timer or passthrough interrupt.
    Raise { vcpu: u8, irq: u16 },
    /// The guest acknowledges LR `lr`.
    Ack { vcpu: u8, lr: u8 },
    /// The guest EOIs LR `lr`; the maintenance names it unless `anonymous`.
    Eoi { vcpu: u8, lr: u8, anonymous: bool },
    /// Hardware reports LR busy (or not).
    Busy { vcpu: u8, lr: u8, on: bool },
    /// Injections fail (or not).
    Fail(bool),
    /// `GicV3::retry`.
    Retry,
    /// Guest reboot.
    Reset,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(vcpus), Ok(lrs)) = (u.int_in_range(1..=MAX_VCPUS), u.int_in_range(0..=MAX_LRS)) else {
        return;
    };
    let mut gic = GicV3::new(vcpus, lrs);
    let mut hw = Hw::new(vcpus, lrs);
    let mut steps = 0;
    while !u.is_empty() {
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        steps += 1;
        if steps > 256 {
            break;
        }
        apply(&mut gic, &mut hw, op);
        check_lrs(|v, i| gic.lr_irq(v, i), &hw);
    }
    drain(&mut gic, &mut hw);
}

fn apply(gic: &mut GicV3, hw: &mut Hw, op: Op) {
    let v = |raw: u8| usize::from(raw) % (hw.vcpus + 1);
    let real = |h: Option<(u16, bool)>| h.is_some_and(|(x, _)| usize::from(x) < NUM_IRQS);
    match op {
        Op::DistRead { vcpu, offset, width } => {
            gic.dist_read(v(vcpu), u64::from(offset), width);
        }
        Op::DistWrite { vcpu, offset, width, value } => {
            gic.dist_write(v(vcpu), u64::from(offset), width, value, hw);
        }
        Op::DistWord { vcpu, word, value } => {
            let offset = 4 * u64::from(word % 0x400);
            gic.dist_write(v(vcpu), offset, 4, u64::from(value), hw);
        }
        Op::RedistRead { vcpu, rd, offset, width } => {
            let offset = u64::from(rd % 9) * GICR_STRIDE + u64::from(offset) % GICR_STRIDE;
            gic.redist_read(v(vcpu), offset, width);
        }
        Op::RedistWrite { vcpu, rd, offset, width, value } => {
            let offset = u64::from(rd % 9) * GICR_STRIDE + u64::from(offset) % GICR_STRIDE;
            gic.redist_write(v(vcpu), offset, width, value, hw);
        }
        Op::Sgi { vcpu, value, group1 } => {
            if group1 {
                gic.send_sgi1r(v(vcpu), value, hw);
            } else {
                gic.send_sgi0r(v(vcpu), value, hw);
            }
        }
        Op::Raise { vcpu, irq } => {
            gic.set_pending(v(vcpu), u32::from(irq) % (NUM_IRQS as u32 + 8), hw);
        }
        Op::Ack { vcpu, lr } => {
            let (vcpu, lr) = (v(vcpu), usize::from(lr) % MAX_LRS);
            if let Some((x, active)) = hw.held.get_mut(vcpu).and_then(|h| h[lr].as_mut()) {
                if usize::from(*x) < NUM_IRQS {
                    *active = true;
                }
            }
        }
        Op::Eoi { vcpu, lr, anonymous } => {
            let (vcpu, lr) = (v(vcpu), usize::from(lr) % MAX_LRS);
            if vcpu < hw.vcpus && real(hw.held[vcpu][lr]) {
                hw.held[vcpu][lr] = None;
                let done = gic.maintenance(vcpu, (!anonymous).then_some(lr), hw);
                assert!(anonymous || done.is_some(), "EOI of LR {lr} frees nothing");
            }
        }
        Op::Busy { vcpu, lr, on } => {
            hw.busy[usize::from(vcpu) % MAX_VCPUS][usize::from(lr) % MAX_LRS] = on;
        }
        Op::Fail(on) => hw.fail = on,
        Op::Retry => {
            gic.retry(hw);
        }
        Op::Reset => {
            gic.reset();
            hw.held = [[None; MAX_LRS]; MAX_VCPUS];
        }
    }
    gic.take_deferred_wakeups();
    while gic.take_released().is_some() {}
}

/// The guest EOIs every LR until nothing is left in them; then no vCPU may have work left.
fn drain(gic: &mut GicV3, hw: &mut Hw) {
    if hw.lrs == 0 {
        return;
    }
    hw.fail = false;
    hw.busy = [[false; MAX_LRS]; MAX_VCPUS];
    gic.retry(hw);
    check_lrs(|v, i| gic.lr_irq(v, i), hw);
    for round in 0.. {
        assert!(round < 10_000, "the LRs never empty");
        let mut any = false;
        for v in 0..hw.vcpus {
            for i in 0..hw.lrs {
                if gic.lr_irq(v, i).is_some() {
                    hw.held[v][i] = None;
                    gic.maintenance(v, Some(i), hw);
                    any = true;
                }
            }
        }
        check_lrs(|v, i| gic.lr_irq(v, i), hw);
        if !any {
            break;
        }
    }
    for v in 0..hw.vcpus {
        assert_eq!(gic.queued(v), 0, "vCPU {v} has queued work and free LRs");
        assert!(!gic.has_pending(v), "vCPU {v} has pending work and free LRs");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run() {
        for seed in crate::seeds::noise(13, 8, 512) {
            super::run(&seed);
        }
    }
}
