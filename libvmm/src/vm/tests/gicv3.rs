//! A VM with a GICv3 (QEMU virt's layout): distributor and redistributor
//! MMIO, and the trapped ICC_SGI1R_EL1 and ICC_SRE_EL1.

use super::*;
use crate::vm::gic::{ICC_SGI1R_EL1, ICC_SRE_EL1};
use vgic::v3::regs::{GICD_PIDR2, GICR_SGI_BASE, GICR_STRIDE};

const GICR: u64 = 0x080a_0000;
/// GICR_TYPER (RD_base), GICR_IGROUPR0 and GICR_ISENABLER0 (SGI_base).
const GICR_TYPER: u64 = 0x8;
const GICR_IGROUPR0: u64 = GICR_SGI_BASE + 0x80;
const GICR_ISENABLER0: u64 = GICR_SGI_BASE + 0x100;

/// A trapped MSR (write) or MRS (read) of `reg` with transfer register `rt`.
fn sysreg_hsr((op0, op1, crn, crm, op2): (u8, u8, u8, u8, u8), rt: u8, read: bool) -> u64 {
    let field = |v: u8, shift: u32| u64::from(v) << shift;
    (ec::SYSREG << 26)
        | (1 << 25)
        | field(op0, 20)
        | field(op2, 17)
        | field(op1, 14)
        | field(crn, 10)
        | field(rt, 5)
        | field(crm, 1)
        | u64::from(read)
}

fn msr(vm: &mut Vm<'_, Fake>, vcpu: usize, reg: (u8, u8, u8, u8, u8), value: u64) {
    vm.hv.regs[vcpu].set_gpr(2, value);
    vm.hv.regs[vcpu].set_pc(0x4000_2000);
    let hsr = sysreg_hsr(reg, 2, false);
    assert_eq!(vm.handle_fault(vcpu, &Fault::VcpuFault { hsr }), RESUME);
    assert_eq!(vm.hv.regs[vcpu].pc(), 0x4000_2004);
}

fn read(vm: &mut Vm<'_, Fake>, vcpu: usize, gpa: u64, width: u8) -> u64 {
    vm.hv.regs[vcpu].set_pc(0x4000_1000);
    let f =
        Fault::VmFault { ip: 0x4000_1000, addr: gpa, prefetch: false, fsr: dabt(width, 3, false) };
    // Resumed with its registers, or (no device there) replied to after an abort.
    let r = vm.handle_fault(vcpu, &f);
    assert!(r == RESUMED || r == RESUME, "{r:?}");
    vm.hv.regs[vcpu].gpr(3)
}

/// What Linux's GICv3 driver does for SGIs on `vcpu`: distributor Group 1
/// on, the SGIs in Group 1 and enabled in the vCPU's redistributor.
fn enable_sgis(vm: &mut Vm<'_, Fake>, vcpu: usize) {
    gicd_write(vm, 0, 0, 4, 0x13);
    let rd = GICR + vcpu as u64 * GICR_STRIDE - GICD;
    gicd_write(vm, 0, rd + GICR_IGROUPR0, 4, u64::from(u32::MAX));
    gicd_write(vm, 0, rd + GICR_ISENABLER0, 4, 0xffff);
}

#[test]
fn redistributor_mmio_reaches_each_vcpus_redistributor() {
    let mut s = Setup::new();
    let mut vm = s.vm_with_gic(2, GicLayout::QEMU_VIRT_V3);
    let typer0 = read(&mut vm, 0, GICR + GICR_TYPER, 8);
    let typer1 = read(&mut vm, 1, GICR + GICR_STRIDE + GICR_TYPER, 8);
    assert_eq!(typer0 >> 32, 0, "vCPU 0 has affinity 0.0.0.0");
    assert_eq!(typer1 >> 32, 1, "vCPU 1 has affinity 0.0.0.1");
    assert_eq!((typer0 >> 8) & 0xffff, 0, "Processor_Number");
    assert_eq!((typer1 >> 8) & 0xffff, 1);
    assert_eq!((typer0 >> 4) & 1, 0, "Last only on the last redistributor");
    assert_eq!((typer1 >> 4) & 1, 1);
    assert_eq!(read(&mut vm, 0, GICD + GICD_PIDR2, 4) >> 4 & 0xf, 3, "ArchRev 3");
}

#[test]
fn beyond_the_last_redistributor_is_no_device() {
    let mut s = Setup::new();
    let mut vm = s.vm_with_gic(2, GicLayout::QEMU_VIRT_V3);
    vm.hv.regs[0].words[2] = 0x3c5;
    read(&mut vm, 0, GICR + 2 * GICR_STRIDE + GICR_TYPER, 8);
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::Esr as usize] >> 26, 0x25, "a data abort");
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::Far as usize], GICR + 2 * GICR_STRIDE + GICR_TYPER);
}

#[test]
fn icc_sgi1r_write_sends_the_sgi_to_the_target_list() {
    let mut s = Setup::new();
    let mut vm = s.vm_with_gic(2, GicLayout::QEMU_VIRT_V3);
    enable_sgis(&mut vm, 1);
    // INTID 3, Aff1 0, TargetList {1}.
    msr(&mut vm, 0, ICC_SGI1R_EL1, (3 << 24) | 0b10);
    assert_eq!(vm.hv.injected, [(1, 3, 0)]);
}

#[test]
fn icc_sgi1r_irm_wakes_the_other_vcpu_idle_in_wfi() {
    let mut s = Setup::new();
    let mut vm = s.vm_with_gic(2, GicLayout::QEMU_VIRT_V3);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    enable_sgis(&mut vm, 1);
    vm.hv.regs[1].set_pc(0x4000_3000);
    assert_eq!(vm.handle_fault(1, &WFI), None, "vCPU 1 idles");
    msr(&mut vm, 0, ICC_SGI1R_EL1, (1 << 40) | (5 << 24)); // IRM: all but self
    assert_eq!(vm.hv.injected, [(1, 5, 0)]);
    assert!(vm.hv.running[1], "vCPU 1 woken");
    assert_eq!(vm.hv.regs[1].pc(), 0x4000_3004);
}

#[test]
fn icc_sre_el1_reads_sre_set_and_ignores_writes() {
    let mut s = Setup::new();
    let mut vm = s.vm_with_gic(1, GicLayout::QEMU_VIRT_V3);
    msr(&mut vm, 0, ICC_SRE_EL1, 0);
    vm.hv.regs[0].set_pc(0x4000_2000);
    let hsr = sysreg_hsr(ICC_SRE_EL1, 7, true);
    assert_eq!(vm.handle_fault(0, &Fault::VcpuFault { hsr }), RESUME);
    assert_eq!(vm.hv.regs[0].gpr(7) & 1, 1, "SRE");
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_2004);
}

#[test]
fn on_gicv2_icc_sgi1r_is_raz_wi_and_gicr_is_no_device() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    msr(&mut vm, 0, ICC_SGI1R_EL1, (1 << 40) | (5 << 24));
    assert!(vm.hv.injected.is_empty());
    vm.hv.regs[0].words[2] = 0x3c5;
    read(&mut vm, 0, GICR + GICR_TYPER, 8);
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::Esr as usize] >> 26, 0x25);
}
