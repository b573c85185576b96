//! A VM with 4 vCPUs (the `smp` example): PSCI CPU_ON, CPU_OFF and
//! AFFINITY_INFO across vCPUs, SGIs between vCPUs (GICD_SGIR) and device
//! interrupts waking a vCPU idle in WFI.

use super::*;

/// GICD_SGIR and its fields (IHI 0048B 4.3.15).
const GICD_SGIR: u64 = 0xf00;
const SGIR_OTHERS: u64 = 1 << 24;
/// AFFINITY_INFO's answers (PSCI 1.1, 5.1.8).
const AFF_ON: u64 = 0;
const AFF_OFF: u64 = 1;

/// A booted 4-vCPU VM whose secondaries were brought up with CPU_ON.
fn smp_vm(s: &mut Setup) -> Vm<'_, Fake> {
    let mut vm = s.vm(4);
    for target in 1..4 {
        let entry = RAM_BASE + 0x2000;
        assert_eq!(smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, target, entry, target]), RESUME);
        assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::SUCCESS);
    }
    vm
}

/// What Linux's GIC driver does on each CPU: the distributor on, and every
/// SGI enabled in each vCPU's banked GICD_ISENABLER0.
fn enable_sgis(vm: &mut Vm<'_, Fake>) {
    gicd_write(vm, 0, 0, 4, 1); // GICD_CTLR
    for v in 0..4 {
        gicd_write(vm, v, 0x100, 4, 0xffff);
    }
}

fn affinity_info(vm: &mut Vm<'_, Fake>, from: usize, target: u64) -> u64 {
    assert_eq!(smc(vm, from, [psci::fid::AFFINITY_INFO_64 as u64, target, 0, 0]), RESUME);
    vm.hv.regs[from].gpr(0)
}

#[test]
fn cpu_on_starts_vcpus_1_to_3_each_with_its_mpidr_and_context() {
    let mut s = Setup::new();
    let vm = smp_vm(&mut s);
    for v in 1..4 {
        assert!(vm.hv.running[v], "vCPU {v} runs");
        assert_eq!(vm.hv.regs[v].pc(), RAM_BASE + 0x2000);
        assert_eq!(vm.hv.regs[v].gpr(0), v as u64, "x0 = context_id");
        assert_eq!(vm.hv.regs[v].words[2], SPSR_EL1H_MASKED);
        assert_eq!(vm.hv.vcpu_regs[v][VcpuReg::VmpidrEl2 as usize], (1 << 31) | v as u64);
    }
}

#[test]
fn affinity_info_follows_cpu_on_and_cpu_off_from_any_vcpu() {
    let mut s = Setup::new();
    let mut vm = s.vm(4);
    assert_eq!(affinity_info(&mut vm, 0, 2), AFF_OFF);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 2, RAM_BASE, 0]);
    assert_eq!(affinity_info(&mut vm, 0, 2), AFF_ON);
    assert_eq!(affinity_info(&mut vm, 2, 0), AFF_ON);
    assert_eq!(affinity_info(&mut vm, 2, 3), AFF_OFF);
    assert_eq!(smc(&mut vm, 2, [psci::fid::CPU_OFF as u64, 0, 0, 0]), None);
    assert!(!vm.hv.running[2]);
    assert_eq!(affinity_info(&mut vm, 0, 2), AFF_OFF);
    assert_eq!(affinity_info(&mut vm, 0, 4), psci::ret::INVALID_PARAMETERS, "no vCPU 4");
}

#[test]
fn cpu_on_after_cpu_off_restarts_the_vcpu_with_power_on_registers() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    let power_on_sctlr = vm.hv.vcpu_regs[3][VcpuReg::Sctlr as usize];
    vm.hv.vcpu_regs[3][VcpuReg::Sctlr as usize] = 0x3050_19bd; // MMU on
    assert_eq!(smc(&mut vm, 3, [psci::fid::CPU_OFF as u64, 0, 0, 0]), None);
    assert!(!vm.hv.running[3]);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 3, RAM_BASE + 0x3000, 7]);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::SUCCESS);
    assert!(vm.hv.running[3]);
    assert_eq!(vm.hv.regs[3].pc(), RAM_BASE + 0x3000);
    assert_eq!(vm.hv.regs[3].gpr(0), 7);
    assert_eq!(vm.hv.vcpu_regs[3][VcpuReg::Sctlr as usize], power_on_sctlr, "MMU off again");
    assert_eq!(vm.hv.vcpu_regs[3][VcpuReg::VmpidrEl2 as usize], (1 << 31) | 3);
}

#[test]
fn sgi_from_vcpu0_to_vcpu2_wakes_vcpu2_from_wfi() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    enable_sgis(&mut vm);
    assert_eq!(wfi(&mut vm, 2, 0x4000_3000), None);
    assert!(!vm.hv.running[2], "vCPU 2 idles");
    // SGI 1 (Linux's IPI_CALL_FUNC), target list = vCPU 2.
    gicd_write(&mut vm, 0, GICD_SGIR, 4, (1 << 2) << 16 | 1);
    assert!(vm.hv.injected.contains(&(2, 1, 0)), "SGI 1 in vCPU 2's LR 0");
    assert!(vm.hv.running[2], "vCPU 2 woken");
    assert_eq!(vm.hv.regs[2].pc(), 0x4000_3004, "after the WFI");
    assert!(!vm.hv.injected.iter().any(|&(v, ..)| v == 1 || v == 3), "no other vCPU got it");
}

#[test]
fn sgi_to_all_others_wakes_every_idle_vcpu_but_the_sender() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    enable_sgis(&mut vm);
    for v in 0..3 {
        assert_eq!(wfi(&mut vm, v, 0x4000_3000 + 0x100 * v as u64), None);
    }
    gicd_write(&mut vm, 3, GICD_SGIR, 4, SGIR_OTHERS | 2);
    for v in 0..3 {
        assert!(vm.hv.injected.contains(&(v, 2, 0)), "SGI 2 for vCPU {v}");
        assert!(vm.hv.running[v], "vCPU {v} woken");
        assert_eq!(vm.hv.regs[v].pc(), 0x4000_3004 + 0x100 * v as u64);
    }
    assert!(!vm.hv.injected.iter().any(|&(v, ..)| v == 3), "not to the sender");
}

#[test]
fn sgi_to_a_running_vcpu_is_injected_without_a_wake_up() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    enable_sgis(&mut vm);
    let pc = vm.hv.regs[1].pc();
    gicd_write(&mut vm, 0, GICD_SGIR, 4, (1 << 1) << 16);
    assert!(vm.hv.injected.contains(&(1, 0, 0)));
    assert!(vm.hv.running[1]);
    assert_eq!(vm.hv.regs[1].pc(), pc, "a running vCPU's PC is left alone");
}

#[test]
fn sgi_to_an_off_vcpu_does_not_start_it() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    enable_sgis(&mut vm);
    assert_eq!(smc(&mut vm, 2, [psci::fid::CPU_OFF as u64, 0, 0, 0]), None);
    gicd_write(&mut vm, 0, GICD_SGIR, 4, (1 << 2) << 16 | 3);
    assert!(!vm.hv.running[2], "CPU_OFF stays off until CPU_ON");
    assert_eq!(affinity_info(&mut vm, 0, 2), AFF_OFF);
}

#[test]
fn device_interrupt_routed_to_vcpu3_wakes_it_from_wfi() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    guest_enables(&mut vm, UART.irq);
    gicd_write(&mut vm, 0, 0x800 + UART.irq as u64, 1, 1 << 3); // ITARGETSR: vCPU 3
    assert_eq!(wfi(&mut vm, 3, 0x4000_4000), None);
    assert_eq!(wfi(&mut vm, 0, 0x4000_5000), None);
    vm.handle_notified(ChannelSet(1 << UART.channel));
    assert!(vm.hv.injected.contains(&(3, UART.irq as u16, 0)));
    assert!(vm.hv.running[3], "vCPU 3 woken");
    assert_eq!(vm.hv.regs[3].pc(), 0x4000_4004);
    assert!(!vm.hv.running[0], "vCPU 0 keeps idling");
}

#[test]
fn idle_vcpus_wake_each_at_its_own_virtual_timer_deadline() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    for v in 0..4 {
        arm_vtimer(&mut vm, v, 1000 * (v as u64 + 1));
        assert_eq!(wfi(&mut vm, v, 0x4000_3000), None);
    }
    assert_eq!(vm.hv.wakeup(), Some(1000), "the earliest deadline is programmed");
    vm.hv.now = 2500;
    timer_irq(&mut vm);
    assert_eq!(vm.hv.running[..4], [true, true, false, false]);
    assert_eq!(vm.hv.wakeup(), None, "a vCPU runs: CNTP is the guest's again");
}

#[test]
fn reset_with_four_vcpus_stops_all_and_boots_again() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    let boots = vm.boots();
    assert_eq!(smc(&mut vm, 2, [psci::fid::SYSTEM_RESET as u64, 0, 0, 0]), None);
    assert_eq!(vm.boots(), boots + 1);
    finish_reset_stub(&mut vm);
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.running[1..4], [false, false, false], "secondaries wait for CPU_ON");
    for v in 1..4 {
        assert_eq!(affinity_info(&mut vm, 0, v), AFF_OFF);
    }
}

const WFE: Fault = Fault::VcpuFault { hsr: 0x07e0_0001 };

fn wfe(vm: &mut Vm<'_, Fake>, vcpu: usize, pc: u64) -> Option<MessageInfo> {
    vm.hv.regs[vcpu].set_pc(pc);
    vm.hv.running[vcpu] = false; // blocked on the fault
    vm.handle_fault(vcpu, &WFE)
}

#[test]
fn wfe_while_another_vcpu_runs_yields_until_a_later_vmm_entry() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    vm.hv.now = 1000;
    assert_eq!(wfe(&mut vm, 1, 0x4000_6000), None, "vCPU 1 waits for the others");
    assert!(!vm.hv.running[1]);
    assert_eq!(vm.hv.regs[1].pc(), 0x4000_6004);
    vm.hv.now += 62_500_000 / 20_000; // 50 us later vCPU 0 exits
    mmio(&mut vm, GICD + 4, 4, 1, false);
    assert!(vm.hv.running[1], "resumed after the WFE");
    assert_eq!(vm.hv.regs[1].pc(), 0x4000_6004);
}

#[test]
fn wfe_with_no_other_vcpu_running_resumes_at_once() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    for v in [0, 2, 3] {
        assert_eq!(wfi(&mut vm, v, 0x4000_3000), None);
    }
    assert_eq!(wfe(&mut vm, 1, 0x4000_6000), RESUME);
    assert_eq!(vm.hv.regs[1].pc(), 0x4000_6004);
}

#[test]
fn wfe_yield_ends_when_the_last_other_vcpu_idles() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    for v in [2, 3] {
        assert_eq!(wfi(&mut vm, v, 0x4000_3000), None);
    }
    vm.hv.now = 1000;
    assert_eq!(wfe(&mut vm, 1, 0x4000_6000), None);
    assert_eq!(wfi(&mut vm, 0, 0x4000_3000), None);
    assert_eq!(vm.hv.wakeup(), Some(1000 + 62_500_000 / 20_000), "the VMM's timer ends the yield");
    vm.hv.now = vm.hv.wakeup().unwrap();
    timer_irq(&mut vm);
    assert!(vm.hv.running[1] && !vm.hv.running[0]);
}

#[test]
fn wfe_yield_ends_at_an_sgi_for_the_waiter() {
    let mut s = Setup::new();
    let mut vm = smp_vm(&mut s);
    enable_sgis(&mut vm);
    assert_eq!(wfe(&mut vm, 2, 0x4000_6000), None);
    gicd_write(&mut vm, 0, GICD_SGIR, 4, (1 << 2) << 16 | 1);
    assert!(vm.hv.running[2]);
    assert_eq!(vm.hv.regs[2].pc(), 0x4000_6004);
}
