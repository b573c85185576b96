//! VM exit handling against a recording fake of the hypervisor.

use super::*;
use crate::linux::image::IMAGE_MAGIC;
use crate::microkit::ChannelSet;
use crate::sel4::generic_timer::PhysicalTimer;
use crate::sel4::{UserContext, VcpuReg};
use exit::ec;
use std::vec::Vec;

#[derive(Default)]
struct Fake {
    regs: Vec<UserContext>,
    vcpu_regs: Vec<[u64; 24]>,
    running: Vec<bool>,
    injected: Vec<(usize, u16, u8)>,
    /// Every list register write: (vcpu, index, virq, priority).
    lr_writes: Vec<(usize, u8, u16, u8)>,
    acked_irqs: Vec<u8>,
    acked_vppi: Vec<usize>,
    mrs: [u64; 16],
    now: u64,
    /// The core's EL1 physical timer, shared by the guest (tests write it
    /// directly, as a guest's MSR would) and the VMM. ISTATUS is computed.
    cntp: PhysicalTimer,
    /// How many times the VMM wrote the physical timer.
    vmm_cntp_writes: usize,
    powered_off: bool,
    /// List registers (vcpu, index) the guest holds active: InjectIRQ
    /// refuses them with DeleteFirst, as seL4 does.
    active_lrs: Vec<(usize, u8)>,
    /// Timer-service requests: (channel, timeout in ns).
    timeouts: Vec<(u8, u64)>,
    /// Invocations that read registers: TCB (`read_regs`) and VCPU (`read_reg`).
    tcb_reads: usize,
    vcpu_reads: usize,
}

impl Fake {
    fn new(vcpus: usize) -> Fake {
        Fake {
            regs: vec![UserContext::default(); vcpus],
            vcpu_regs: vec![[0; 24]; vcpus],
            running: vec![false; vcpus],
            ..Fake::default()
        }
    }

    /// The VMM's wake-up, as the physical timer stands.
    fn wakeup(&self) -> Option<u64> {
        self.cntp.deadline()
    }
}

impl Hypervisor for Fake {
    fn read_regs(&mut self, v: usize, count: usize, regs: &mut UserContext) -> Result<(), Error> {
        self.tcb_reads += 1;
        regs.words[..count].copy_from_slice(&self.regs[v].words[..count]);
        Ok(())
    }
    fn write_regs(
        &mut self,
        v: usize,
        resume: bool,
        count: usize,
        regs: &UserContext,
    ) -> Result<(), Error> {
        self.regs[v].words[..count].copy_from_slice(&regs.words[..count]);
        if resume {
            self.running[v] = true;
        }
        Ok(())
    }
    fn suspend(&mut self, v: usize) -> Result<(), Error> {
        self.running[v] = false;
        Ok(())
    }
    fn read_reg(&mut self, v: usize, reg: VcpuReg) -> Result<u64, Error> {
        self.vcpu_reads += 1;
        Ok(self.vcpu_regs[v][reg as usize])
    }
    fn write_reg(&mut self, v: usize, reg: VcpuReg, value: u64) -> Result<(), Error> {
        self.vcpu_regs[v][reg as usize] = value;
        Ok(())
    }
    fn inject_irq(&mut self, v: usize, virq: u16, p: u8, _g: u8, index: u8) -> Result<(), Error> {
        if self.active_lrs.contains(&(v, index)) {
            return Err(Error::DeleteFirst);
        }
        self.lr_writes.push((v, index, virq, p));
        if usize::from(virq) < vgic::NUM_IRQS {
            self.injected.push((v, virq, index));
        }
        Ok(())
    }
    fn ack_vppi(&mut self, v: usize, _irq: u64) -> Result<(), Error> {
        self.acked_vppi.push(v);
        Ok(())
    }
    fn ack_irq(&mut self, channel: u8) -> Result<(), Error> {
        self.acked_irqs.push(channel);
        Ok(())
    }
    fn set_mr(&mut self, i: usize, value: u64) {
        self.mrs[i] = value;
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn frequency(&self) -> u64 {
        62_500_000
    }
    fn set_wakeup(&mut self, deadline: Option<u64>) {
        self.vmm_cntp_writes += 1;
        match deadline {
            Some(t) => self.cntp = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: t },
            None => self.cntp.ctl = 0,
        }
    }
    fn request_timeout(&mut self, channel: u8, timeout_ns: u64) {
        self.timeouts.push((channel, timeout_ns));
    }
    fn physical_timer(&mut self) -> PhysicalTimer {
        let mut t = self.cntp;
        if t.ctl & PhysicalTimer::ENABLE != 0 && t.cval <= self.now {
            t.ctl |= PhysicalTimer::ISTATUS;
        }
        t
    }
    fn set_physical_timer(&mut self, timer: PhysicalTimer) {
        self.vmm_cntp_writes += 1;
        self.cntp = PhysicalTimer { ctl: timer.ctl & 3, cval: timer.cval };
    }
    fn firmware_power_off(&mut self) {
        self.powered_off = true;
    }
}

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 16 << 20;
const UART: Passthrough = Passthrough { channel: 1, irq: 33 };
const GICD: u64 = QEMU_VIRT_GICD;

fn kernel() -> Vec<u8> {
    let mut k = vec![0u8; 8192];
    k[16..24].copy_from_slice(&0x10000u64.to_le_bytes()); // image_size
    k[24..32].copy_from_slice(&0xau64.to_le_bytes());
    k[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    k[4096] = 0xaa;
    k
}

/// A minimal device tree: header, an empty root node, no strings.
fn dtb() -> Vec<u8> {
    let mut s = Vec::new();
    for w in [1u32, 0, 2, 9] {
        s.extend_from_slice(&w.to_be_bytes()); // BEGIN_NODE "" END_NODE END
    }
    let mut h = Vec::new();
    let total = 40 + 16 + s.len();
    // magic, totalsize, off_dt_struct, off_dt_strings, off_mem_rsvmap, version,
    // last_comp_version, boot_cpuid_phys, size_dt_strings, size_dt_struct.
    for w in
        [0xd00d_feedu32, total as u32, 56, (56 + s.len()) as u32, 40, 17, 16, 0, 0, s.len() as u32]
    {
        h.extend_from_slice(&w.to_be_bytes());
    }
    h.extend_from_slice(&[0; 16]);
    h.extend_from_slice(&s);
    h
}

struct Setup {
    mem: Vec<u8>,
    kernel: Vec<u8>,
    dtb: Vec<u8>,
}

impl Setup {
    fn new() -> Setup {
        Setup { mem: vec![0u8; RAM_SIZE], kernel: kernel(), dtb: dtb() }
    }

    fn vm(&mut self, vcpus: usize) -> Vm<'_, Fake> {
        self.vm_with_gic(vcpus, GicLayout::QEMU_VIRT_V2)
    }

    fn vm_with_gic(&mut self, vcpus: usize, gic: GicLayout) -> Vm<'_, Fake> {
        let ram = GuestRam::from_slice(RAM_BASE, &mut self.mem);
        let images = BootImages {
            kernel: &self.kernel,
            initrd: b"initrd",
            dtb: &self.dtb,
            bootargs: Some("console=ttyAMA0"),
        };
        let config = VmConfig {
            num_vcpus: vcpus,
            gic,
            num_lrs: 4,
            passthrough: &[UART],
            timer: Timer::Physical(5),
            system_off: SystemOff::StopVm,
        };
        let mut vm = Vm::new(Fake::new(vcpus), ram, images, config);
        vm.boot().expect("boots");
        finish_reset_stub(&mut vm);
        vm
    }
}

/// An HVC from `vcpu` with x0 = `x0`, as seL4 delivers it.
fn hvc(vm: &mut Vm<'_, Fake>, vcpu: usize, x0: u64) -> Option<MessageInfo> {
    let args = [x0, 0, 0, 0, 0, 0, 0, 0];
    let pc = vm.hv.regs[vcpu].pc() + 0x44;
    vm.handle_fault(
        vcpu,
        &Fault::UnknownSyscall { args, fault_ip: pc, sp: 0, elr: pc + 4, spsr: 0x3c5, syscall: 0 },
    )
}

/// Every vCPU runs the reset stub to its end, as after a boot.
fn finish_reset_stub<D: Devices>(vm: &mut Vm<'_, Fake, D>) {
    for vcpu in 0..vm.config.num_vcpus {
        let pc = vm.hv.regs[vcpu].pc() + 0x44;
        let args = [reset_stub::RESET_STUB_DONE as u64, 0, 0, 0, 0, 0, 0, 0];
        let f = Fault::UnknownSyscall { args, fault_ip: pc, sp: 0, elr: 0, spsr: 0, syscall: 0 };
        assert_eq!(vm.handle_fault(vcpu, &f), None, "the stub's call is not answered");
    }
}

fn words_at(vm: &Vm<'_, Fake>, gpa: u64, n: usize) -> Vec<u32> {
    let mut bytes = vec![0u8; n * 4];
    vm.ram.read(Gpa(gpa), &mut bytes).unwrap();
    bytes.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn boot_starts_every_vcpu_at_the_reset_stub_with_the_gicc_in_x0() {
    let mut s = Setup::new();
    let ram = GuestRam::from_slice(RAM_BASE, &mut s.mem);
    let images = BootImages { kernel: &s.kernel, initrd: &[], dtb: &s.dtb, bootargs: None };
    let config = VmConfig {
        num_vcpus: 2,
        gic: GicLayout::QEMU_VIRT_V2,
        num_lrs: 4,
        passthrough: &[],
        timer: Timer::None,
        system_off: SystemOff::StopVm,
    };
    let mut vm = Vm::new(Fake::new(2), ram, images, config);
    vm.boot().unwrap();
    let code = reset_stub::code(&GicLayout::QEMU_VIRT_V2);
    assert_eq!(words_at(&vm, RAM_BASE, code.len()), code);
    // str wzr, [x0]; str wzr, [x0, #4] ... str wzr, [x0, #0xd0]: CTLR, PMR, APR0.
    assert!(code.windows(2).any(|w| w == [0xb900_001f, 0xb900_041f]));
    assert!(code.contains(&0xb900_d01f));
    for vcpu in 0..2 {
        assert!(vm.hv.running[vcpu]);
        assert_eq!(vm.hv.regs[vcpu].pc(), RAM_BASE);
        assert_eq!(vm.hv.regs[vcpu].gpr(0), 0x0801_0000, "x0 = GICC");
        assert_eq!(vm.hv.regs[vcpu].words[2], SPSR_EL1H_MASKED);
    }
}

#[test]
fn reset_stub_done_on_every_vcpu_starts_the_kernel_with_the_dtb_in_x0() {
    let mut s = Setup::new();
    let kernel_head = s.kernel[..reset_stub::MAX_LEN].to_vec();
    let ram = GuestRam::from_slice(RAM_BASE, &mut s.mem);
    let images = BootImages { kernel: &s.kernel, initrd: &[], dtb: &s.dtb, bootargs: None };
    let config = VmConfig {
        num_vcpus: 2,
        gic: GicLayout::QEMU_VIRT_V3,
        num_lrs: 4,
        passthrough: &[],
        timer: Timer::None,
        system_off: SystemOff::StopVm,
    };
    let mut vm = Vm::new(Fake::new(2), ram, images, config);
    vm.boot().unwrap();
    let code = reset_stub::code(&GicLayout::QEMU_VIRT_V3);
    assert_eq!(words_at(&vm, RAM_BASE, code.len()), code);
    assert!(code.contains(&0xd518_461f), "msr ICC_PMR_EL1, xzr");
    assert!(code.contains(&0xd518_c91f), "msr ICC_AP1R0_EL1, xzr");
    // vCPU 0 finishes first: it waits for vCPU 1.
    assert_eq!(hvc(&mut vm, 0, reset_stub::RESET_STUB_DONE as u64), None);
    assert!(!vm.hv.running[0] && vm.hv.running[1]);
    assert_eq!(hvc(&mut vm, 1, reset_stub::RESET_STUB_DONE as u64), None);
    assert!(vm.hv.running[0] && !vm.hv.running[1]);
    let regs = vm.hv.regs[0];
    assert_eq!(regs.pc(), RAM_BASE);
    assert_eq!(regs.gpr(0), RAM_BASE + RAM_SIZE as u64 - (2 << 20), "x0 = DTB");
    assert_eq!(regs.words[2], SPSR_EL1H_MASKED);
    let mut head = vec![0u8; reset_stub::MAX_LEN];
    vm.ram.read(Gpa(RAM_BASE), &mut head).unwrap();
    assert_eq!(head, kernel_head, "the kernel's first bytes are back");
}

#[test]
fn reset_stub_done_outside_the_stub_is_not_supported() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    let boots = vm.boots();
    assert_eq!(hvc(&mut vm, 0, reset_stub::RESET_STUB_DONE as u64), Some(MessageInfo::new(0, 9)));
    assert_eq!(vm.hv.mrs[0], psci::ret::NOT_SUPPORTED);
    assert!(vm.hv.running[0] && !vm.hv.running[1]);
    assert_eq!(smc(&mut vm, 1, [reset_stub::RESET_STUB_DONE as u64, 0, 0, 0]), RESUME);
    assert_eq!(vm.hv.regs[1].gpr(0), psci::ret::NOT_SUPPORTED);
    assert_eq!(vm.boots(), boots);
    assert_eq!(vm.hv.regs[0].pc(), RAM_BASE);
}

#[test]
fn system_reset_runs_the_reset_stub_before_the_kernel() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    assert_eq!(smc(&mut vm, 0, [psci::fid::SYSTEM_RESET as u64, 0, 0, 0]), None);
    assert_eq!(vm.hv.regs[0].pc(), RAM_BASE);
    assert_eq!(vm.hv.regs[0].gpr(0), 0x0801_0000, "at the stub, x0 = GICC");
    let code = reset_stub::code(&GicLayout::QEMU_VIRT_V2);
    assert_eq!(words_at(&vm, RAM_BASE, code.len()), code);
    finish_reset_stub(&mut vm);
    assert_eq!(vm.hv.regs[0].gpr(0), RAM_BASE + RAM_SIZE as u64 - (2 << 20));
}

#[test]
fn system_reset_has_the_stub_deactivate_what_an_lr_holds_active_then_empties_it() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    assert_eq!(smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE + 0x100, 0]), RESUME);
    // The guest enables the distributor and SGI 2 on vCPU 1; vCPU 0 sends
    // SGI 2 to vCPU 1 (GICD_SGIR, CPUTargetList = {1}).
    gicd_write(&mut vm, 0, 0, 4, 1);
    gicd_write(&mut vm, 1, 0x100, 4, 1 << 2);
    gicd_write(&mut vm, 0, 0xf00, 4, (1 << 17) | 2);
    let index = (0..4).find(|&i| vm.gic.lr_irq(1, i) == Some(2)).expect("SGI 2 in an LR of vCPU 1");
    // vCPU 1 acknowledges it and never completes it (IPI_CPU_STOP).
    vm.hv.active_lrs.push((1, index as u8));
    vm.hv.lr_writes.clear();
    assert_eq!(smc(&mut vm, 0, [psci::fid::SYSTEM_RESET as u64, 0, 0, 0]), None);
    // The stub of vCPU 1 gets ID 2 in x1, nothing in x2-x4; vCPU 0 nothing.
    let no = reset_stub::NO_IRQ;
    let args = |vm: &Vm<'_, Fake>, v: usize| [1, 2, 3, 4].map(|r| vm.hv.regs[v].gpr(r));
    assert_eq!(args(&vm, 1), [2, no, no, no]);
    assert_eq!(args(&vm, 0), [no; 4]);
    assert_eq!(vm.hv.regs[1].pc(), RAM_BASE);
    let empty = |v: usize, i: usize| (v, i as u8, vgic::empty_lr_virq(i), vgic::LOWEST_LR_PRIORITY);
    assert!(!vm.hv.lr_writes.contains(&empty(1, index)), "refused while active");
    assert!(vm.hv.lr_writes.contains(&empty(0, index)), "the others are emptied at once");
    // The stub deactivates it; once vCPU 1 is done, the VMM empties the LR.
    vm.hv.active_lrs.clear();
    vm.hv.lr_writes.clear();
    finish_reset_stub(&mut vm);
    assert_eq!(vm.hv.lr_writes, [empty(1, index)]);
    assert_eq!(vm.hv.regs[0].gpr(0), RAM_BASE + RAM_SIZE as u64 - (2 << 20), "kernel started");
    // The next boot's stub has nothing left to deactivate.
    assert_eq!(smc(&mut vm, 0, [psci::fid::SYSTEM_RESET as u64, 0, 0, 0]), None);
    assert_eq!(args(&vm, 1), [no; 4]);
}

/// A data-abort syndrome with a valid ISS.
fn dabt(width: u8, reg: u8, write: bool) -> u64 {
    let sas = width.trailing_zeros() as u64;
    (ec::DABT_LOWER << 26)
        | (1 << 25)
        | (1 << 24)
        | (sas << 22)
        | ((reg as u64) << 16)
        | (1 << 15)
        | ((write as u64) << 6)
}

fn mmio(vm: &mut Vm<'_, Fake>, addr: u64, width: u8, reg: u8, write: bool) -> Option<MessageInfo> {
    vm.hv.regs[0].set_pc(0x4000_1000);
    vm.handle_fault(
        0,
        &Fault::VmFault { ip: 0x4000_1000, addr, prefetch: false, fsr: dabt(width, reg, write) },
    )
}

/// Does what Linux's GIC driver does for `irq`: enables the distributor and
/// the interrupt, and routes an SPI to CPU 0.
fn guest_enables(vm: &mut Vm<'_, Fake>, irq: u32) {
    vm.hv.regs[0].set_gpr(1, 1);
    mmio(vm, GICD, 4, 1, true); // GICD_CTLR
    vm.hv.regs[0].set_gpr(1, 1 << (irq % 32));
    mmio(vm, GICD + 0x100 + 4 * (irq as u64 / 32), 4, 1, true); // GICD_ISENABLERn
    if irq >= 32 {
        vm.hv.regs[0].set_gpr(1, 1);
        mmio(vm, GICD + 0x800 + irq as u64, 1, 1, true); // GICD_ITARGETSRn byte
    }
}

mod gicv3;
mod smp;

#[test]
fn boot_starts_vcpu0_at_the_kernel_with_the_dtb_in_x0() {
    let mut s = Setup::new();
    let vm = s.vm(2);
    let regs = vm.hv.regs[0];
    assert!(vm.hv.running[0] && !vm.hv.running[1]);
    assert_eq!(regs.pc(), RAM_BASE);
    assert_eq!(regs.words[2], SPSR_EL1H_MASKED);
    assert_eq!(regs.gpr(0), RAM_BASE + RAM_SIZE as u64 - (2 << 20));
    assert_eq!((regs.gpr(1), regs.gpr(2), regs.gpr(3)), (0, 0, 0));
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::VmpidrEl2 as usize], 1 << 31);
    drop(vm);
    assert_eq!(s.mem[4096], 0xaa, "kernel copied to RAM base");
}

#[test]
fn mmio_read_of_gicd_typer_writes_the_register_and_steps_pc() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    assert_eq!(mmio(&mut vm, GICD + 4, 4, 7, false), RESUMED);
    assert!(vm.hv.running[0], "resumed with its registers, no reply");
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_1004);
    assert_eq!(vm.hv.regs[0].gpr(7) & 0x1f, (vgic::NUM_IRQS as u64 / 32) - 1);
}

#[test]
fn mmio_write_takes_the_value_from_the_register() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.hv.regs[0].set_gpr(3, 1);
    mmio(&mut vm, GICD, 4, 3, true); // GICD_CTLR = 1
    vm.hv.regs[0].set_gpr(3, 0);
    mmio(&mut vm, GICD, 4, 3, false);
    assert_eq!(vm.hv.regs[0].gpr(3), 1);
    // xzr as the source writes zero.
    mmio(&mut vm, GICD, 4, 31, true);
    mmio(&mut vm, GICD, 4, 4, false);
    assert_eq!(vm.hv.regs[0].gpr(4), 0);
}

#[test]
fn access_where_no_device_is_injects_a_data_abort() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.hv.vcpu_regs[0][VcpuReg::Vbar as usize] = 0xffff_8000_1000_0000;
    vm.hv.regs[0].words[2] = 0x3c5; // EL1h
    assert_eq!(mmio(&mut vm, 0x0a00_0000, 4, 1, true), RESUME);
    let r = &vm.hv.vcpu_regs[0];
    assert_eq!(vm.hv.regs[0].pc(), 0xffff_8000_1000_0200, "current EL, SP_ELx vector");
    assert_eq!(r[VcpuReg::ElrEl1 as usize], 0x4000_1000);
    assert_eq!(r[VcpuReg::Far as usize], 0x0a00_0000);
    assert_eq!(r[VcpuReg::Esr as usize] >> 26, 0x25);
}

#[test]
fn abort_without_syndrome_is_injected_not_fatal() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    let fsr = dabt(4, 1, true) & !(1 << 24);
    let reply =
        vm.handle_fault(0, &Fault::VmFault { ip: 0x4000_1000, addr: GICD, prefetch: false, fsr });
    assert_eq!(reply, RESUME);
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::Esr as usize] >> 26, 0x25);
}

#[test]
fn wfi_with_nothing_pending_blocks_and_arms_the_wakeup() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.hv.regs[0].set_pc(0x4000_2000);
    vm.hv.now = 100;
    vm.hv.vcpu_regs[0][VcpuReg::CntvCtl as usize] = 1;
    vm.hv.vcpu_regs[0][VcpuReg::CntvCval as usize] = 5000;
    vm.hv.vcpu_regs[0][VcpuReg::Cntvoff as usize] = 7;
    vm.hv.running[0] = false; // blocked on the fault
    assert_eq!(vm.handle_fault(0, &Fault::VcpuFault { hsr: 0x07e0_0000 }), None);
    assert_eq!(vm.hv.wakeup(), Some(5007));
    // The timer fires: the vCPU resumes after the WFI.
    vm.hv.now = 5007;
    vm.handle_notified(ChannelSet(1 << 5));
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_2004);
    assert_eq!(vm.hv.acked_irqs, [5]);
    assert_eq!(vm.hv.wakeup(), None);
}

#[test]
fn wfi_wakes_when_a_passthrough_interrupt_arrives() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, UART.irq);
    vm.hv.regs[0].set_pc(0x4000_3000);
    vm.hv.running[0] = false;
    assert_eq!(vm.handle_fault(0, &Fault::VcpuFault { hsr: 0x07e0_0000 }), None);
    assert!(!vm.hv.running[0], "idle vCPU is not resumed");
    vm.handle_notified(ChannelSet(1 << UART.channel));
    assert_eq!(vm.hv.injected, [(0, 33, 0)]);
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_3004);
    // The guest EOIs: maintenance acks the physical IRQ.
    vm.handle_fault(0, &Fault::VgicMaintenance { index: Some(0) });
    assert_eq!(vm.hv.acked_irqs, [UART.channel]);
}

#[test]
fn wfi_with_an_interrupt_pending_resumes_at_once() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, VTIMER_IRQ);
    vm.handle_fault(0, &Fault::VppiEvent { irq: 27 });
    vm.hv.regs[0].set_pc(0x4000_2000);
    assert_eq!(vm.handle_fault(0, &Fault::VcpuFault { hsr: 0x07e0_0000 }), RESUME);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_2004);
}

#[test]
fn vtimer_is_injected_and_acked_after_eoi() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, VTIMER_IRQ);
    assert_eq!(vm.handle_fault(0, &Fault::VppiEvent { irq: 27 }), RESUME);
    assert_eq!(vm.hv.injected, [(0, 27, 0)]);
    assert!(vm.hv.acked_vppi.is_empty());
    vm.handle_fault(0, &Fault::VgicMaintenance { index: Some(0) });
    assert_eq!(vm.hv.acked_vppi, [0]);
}

fn smc(vm: &mut Vm<'_, Fake>, vcpu: usize, args: [u64; 4]) -> Option<MessageInfo> {
    for (i, a) in args.iter().enumerate() {
        vm.hv.regs[vcpu].set_gpr(i as u8, *a);
    }
    vm.hv.regs[vcpu].set_pc(0x4000_5000);
    vm.handle_fault(vcpu, &Fault::VcpuFault { hsr: 0x5e00_0000 })
}

#[test]
fn psci_over_smc_returns_in_x0_and_steps_pc() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    assert_eq!(smc(&mut vm, 0, [psci::fid::VERSION as u64, 0, 0, 0]), RESUME);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::VERSION_1_1);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_5004);
    smc(&mut vm, 0, [0x8000_0000, 0, 0, 0]); // SMCCC_VERSION: not supported
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::NOT_SUPPORTED);
}

#[test]
fn psci_over_hvc_replies_with_registers() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    let args = [psci::fid::MIGRATE_INFO_TYPE as u64, 1, 2, 3, 4, 5, 6, 7];
    let f =
        Fault::UnknownSyscall { args, fault_ip: 0x4000_6000, sp: 0, elr: 0, spsr: 0, syscall: 7 };
    assert_eq!(vm.handle_fault(0, &f), Some(MessageInfo::new(0, 9)));
    assert_eq!(vm.hv.mrs[0], 2);
    assert_eq!(vm.hv.mrs[1..8], [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(vm.hv.mrs[8], 0x4000_6004);
}

#[test]
fn cpu_on_starts_the_target_and_cpu_off_stops_it() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    assert_eq!(smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE + 0x100, 0x55]), RESUME);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::SUCCESS);
    assert!(vm.hv.running[1]);
    assert_eq!(vm.hv.regs[1].pc(), RAM_BASE + 0x100);
    assert_eq!(vm.hv.regs[1].gpr(0), 0x55);
    assert_eq!(vm.hv.vcpu_regs[1][VcpuReg::VmpidrEl2 as usize], (1 << 31) | 1);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::ALREADY_ON);
    assert_eq!(smc(&mut vm, 1, [psci::fid::CPU_OFF as u64, 0, 0, 0]), None);
    assert!(!vm.hv.running[1]);
}

#[test]
fn system_off_stops_everything_and_asks_the_firmware() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.config.system_off = SystemOff::Firmware;
    assert_eq!(smc(&mut vm, 0, [psci::fid::SYSTEM_OFF as u64, 0, 0, 0]), None);
    assert!(!vm.hv.running[0]);
    assert!(vm.hv.powered_off);
}

#[test]
fn system_reset_clears_ram_reloads_and_boots_again() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.hv.vcpu_regs[0][VcpuReg::Sctlr as usize] = 0x3405_d91d; // guest turned the MMU on
    vm.ram.write(Gpa(RAM_BASE + 0x80_0000), &[0x77; 16]).unwrap();
    vm.hv.regs[0].set_gpr(1, 1);
    mmio(&mut vm, GICD, 4, 1, true);
    assert_eq!(smc(&mut vm, 0, [psci::fid::SYSTEM_RESET as u64, 0, 0, 0]), None);
    assert_eq!(vm.boots(), 2);
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.regs[0].pc(), RAM_BASE);
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::Sctlr as usize], 0, "power-on SCTLR restored");
    assert_eq!(vm.hv.acked_irqs, [UART.channel]);
    assert_eq!(vm.hv.acked_vppi, [0]);
    let mut buf = [0u8; 16];
    vm.ram.read(Gpa(RAM_BASE + 0x80_0000), &mut buf).unwrap();
    assert_eq!(buf, [0; 16], "RAM cleared");
    mmio(&mut vm, GICD, 4, 2, false);
    assert_eq!(vm.hv.regs[0].gpr(2), 0, "vGIC reset");
}

#[test]
fn sysreg_reads_zero_and_steps() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.hv.regs[0].set_pc(0x4000_7000);
    vm.hv.regs[0].set_gpr(5, 99);
    let hsr = (ec::SYSREG << 26) | (1 << 25) | (5 << 5) | 1;
    assert_eq!(vm.handle_fault(0, &Fault::VcpuFault { hsr }), RESUME);
    assert_eq!(vm.hv.regs[0].gpr(5), 0);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_7004);
}

#[test]
fn faults_from_unknown_vcpus_are_ignored() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    assert_eq!(vm.handle_fault(5, &Fault::VcpuFault { hsr: 0x07e0_0000 }), None);
}

#[test]
fn random_faults_and_notifications_never_panic() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut next = || rng.u64(..);
    let interesting = [0, 1, 31, 27, 33, GICD, GICD + 0xf00, RAM_BASE, u64::MAX, 0x8400_0009];
    for i in 0..30_000 {
        let pick = |r: u64| {
            if r % 3 == 0 {
                interesting[(r >> 8) as usize % interesting.len()]
            } else {
                r
            }
        };
        let mrs: [u64; 13] = core::array::from_fn(|_| pick(next()));
        let label = next() % 11;
        let fault = Fault::decode(label, &mrs);
        // Keep the SYSTEM_RESET path rare: it clears 16 MiB each time.
        if matches!(fault, Fault::UnknownSyscall { args, .. } if args[0] == 0x8400_0009)
            && i % 64 != 0
        {
            continue;
        }
        for r in vm.hv.regs.iter_mut() {
            for w in r.words.iter_mut().take(12) {
                *w = pick(next());
            }
        }
        let vcpu = (next() % 3) as usize;
        let _ = vm.handle_fault(vcpu, &fault);
        if next() % 8 == 0 {
            vm.handle_notified(ChannelSet(next()));
        }
    }
}

/// One register at 0x0a00_0000 that raises SPI 48 when written.
#[derive(Default)]
struct Register {
    value: u64,
}

impl Devices for Register {
    fn read(&mut self, _: &mut GuestRam, gpa: Gpa, _: u8) -> Option<(u64, Option<u32>)> {
        (gpa.0 == 0x0a00_0000).then_some((self.value, None))
    }
    fn write(&mut self, _: &mut GuestRam, gpa: Gpa, _: u8, value: u64) -> Option<Option<u32>> {
        (gpa.0 == 0x0a00_0000).then(|| {
            self.value = value;
            Some(48)
        })
    }
}

fn access(
    vm: &mut Vm<'_, Fake, Register>,
    addr: u64,
    width: u8,
    reg: u8,
    write: bool,
) -> Option<MessageInfo> {
    vm.hv.regs[0].set_pc(0x4000_1000);
    let fault =
        Fault::VmFault { ip: 0x4000_1000, addr, prefetch: false, fsr: dabt(width, reg, write) };
    vm.handle_fault(0, &fault)
}

/// A booted one-vCPU VM with `devices` whose guest enabled the distributor and
/// SPI 48, routed to CPU 0.
fn vm_with_devices<D: Devices>(s: &mut Setup, devices: D) -> Vm<'_, Fake, D> {
    let ram = GuestRam::from_slice(RAM_BASE, &mut s.mem);
    let images = BootImages { kernel: &s.kernel, initrd: &[], dtb: &s.dtb, bootargs: None };
    let config = VmConfig {
        num_vcpus: 1,
        gic: GicLayout::QEMU_VIRT_V2,
        num_lrs: 4,
        passthrough: &[],
        timer: Timer::None,
        system_off: SystemOff::StopVm,
    };
    let mut vm = Vm::with_devices(Fake::new(1), devices, ram, images, config);
    vm.boot().unwrap();
    finish_reset_stub(&mut vm);
    for (offset, width, value) in [(0, 4, 1), (0x104, 4, 1 << 16), (0x800 + 48, 1, 1)] {
        vm.hv.regs[0].set_gpr(1, value);
        let fault = Fault::VmFault {
            ip: 0x4000_1000,
            addr: GICD + offset,
            prefetch: false,
            fsr: dabt(width, 1, true),
        };
        vm.handle_fault(0, &fault);
    }
    vm
}

#[test]
fn devices_get_accesses_and_raise_their_interrupts() {
    let mut s = Setup::new();
    let mut vm = vm_with_devices(&mut s, Register::default());
    vm.hv.regs[0].set_gpr(2, 0x1234_5678_9abc);
    assert_eq!(access(&mut vm, 0x0a00_0000, 4, 2, true), RESUMED);
    assert_eq!(vm.devices().0.value, 0x5678_9abc, "a 4-byte store takes the low word");
    assert_eq!(vm.hv.injected, [(0, 48, 0)]);
    assert_eq!(access(&mut vm, 0x0a00_0000, 2, 9, false), RESUMED);
    assert_eq!(vm.hv.regs[0].gpr(9), 0x9abc, "a 2-byte load gets the low half");
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_1004);
    // Anything else is still an abort.
    vm.hv.regs[0].words[2] = 0x3c5;
    assert_eq!(access(&mut vm, 0x0a00_1000, 4, 2, true), RESUME);
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::Esr as usize] >> 26, 0x25);
}

/// A doorbell at 0x0a00_0100 that raises SPI 48, and `Register` behind it.
#[derive(Default)]
struct Bell {
    rung: usize,
    reg: Register,
}

impl Devices for Bell {
    fn read(&mut self, ram: &mut GuestRam, gpa: Gpa, w: u8) -> Option<(u64, Option<u32>)> {
        self.reg.read(ram, gpa, w)
    }
    fn write(&mut self, ram: &mut GuestRam, gpa: Gpa, w: u8, value: u64) -> Option<Option<u32>> {
        self.reg.write(ram, gpa, w, value)
    }
    fn doorbell(&mut self, _: &mut GuestRam, gpa: Gpa, width: u8) -> Option<Option<u32>> {
        (gpa.0 == 0x0a00_0100 && width == 4).then(|| {
            self.rung += 1;
            Some(48)
        })
    }
}

#[test]
fn a_doorbell_store_reads_no_register_and_steps_the_pc() {
    let mut s = Setup::new();
    let mut vm = vm_with_devices(&mut s, Bell::default());
    let before = (vm.hv.tcb_reads, vm.hv.vcpu_reads);
    vm.hv.regs[0].set_gpr(5, 0x1234);
    let sp_spsr = (vm.hv.regs[0].words[1], vm.hv.regs[0].words[2]);
    let fault = Fault::VmFault {
        ip: 0x4000_2000,
        addr: 0x0a00_0100,
        prefetch: false,
        fsr: dabt(4, 5, true),
    };
    vm.hv.running[0] = false;
    assert_eq!(vm.handle_fault(0, &fault), RESUMED);
    assert!(vm.hv.running[0], "resumed with the PC written, no reply");
    assert_eq!(vm.devices().0.rung, 1);
    assert_eq!((vm.hv.tcb_reads, vm.hv.vcpu_reads), before, "no register read at all");
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_2004);
    assert_eq!((vm.hv.regs[0].words[1], vm.hv.regs[0].words[2]), sp_spsr, "only the PC written");
    assert_eq!(vm.hv.regs[0].gpr(5), 0x1234);
    assert_eq!(vm.hv.injected, [(0, 48, 0)]);
    // A 2-byte store there is no doorbell: the ordinary path (no device: an abort).
    vm.hv.regs[0].words[2] = 0x3c5;
    let fault = Fault::VmFault {
        ip: 0x4000_2000,
        addr: 0x0a00_0100,
        prefetch: false,
        fsr: dabt(2, 5, true),
    };
    vm.handle_fault(0, &fault);
    assert_eq!(vm.devices().0.rung, 1);
    assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::Esr as usize] >> 26, 0x25);
}

const WFI: Fault = Fault::VcpuFault { hsr: 0x07e0_0000 };

fn gicd_write(vm: &mut Vm<'_, Fake>, vcpu: usize, offset: u64, width: u8, value: u64) {
    vm.hv.regs[vcpu].set_gpr(1, value);
    vm.hv.regs[vcpu].set_pc(0x4000_1000);
    let fault = Fault::VmFault {
        ip: 0x4000_1000,
        addr: GICD + offset,
        prefetch: false,
        fsr: dabt(width, 1, true),
    };
    vm.handle_fault(vcpu, &fault);
}

#[test]
fn injected_abort_uses_the_vector_of_the_interrupted_state() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.hv.vcpu_regs[0][VcpuReg::Vbar as usize] = 0x8000;
    // SPSR.M: EL1 with SP_EL0, EL1 with SP_EL1, EL0 AArch64, EL0 AArch32 (USR).
    for (spsr, vector) in [(0x3c4, 0x000), (0x3c5, 0x200), (0x3c0, 0x400), (0x10, 0x600)] {
        vm.hv.regs[0].words[2] = spsr;
        assert_eq!(mmio(&mut vm, 0x0a00_0000, 4, 1, true), RESUME);
        assert_eq!(vm.hv.regs[0].pc(), 0x8000 + vector, "SPSR {spsr:#x}");
        assert_eq!(vm.hv.vcpu_regs[0][VcpuReg::SpsrEl1 as usize], spsr);
    }
}

#[test]
fn smc32_function_id_ignores_the_upper_half_of_x0() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    smc(&mut vm, 0, [0xdead_beef_0000_0000 | psci::fid::VERSION as u64, 0, 0, 0]);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::VERSION_1_1);
    // SMC64 ids are compared in full.
    smc(&mut vm, 0, [1 << 32 | psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::NOT_SUPPORTED);
}

#[test]
fn cpu_suspend_standby_sleeps_until_an_interrupt_then_returns_success() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, UART.irq);
    vm.hv.running[0] = false;
    assert_eq!(smc(&mut vm, 0, [psci::fid::CPU_SUSPEND_64 as u64, 0, 0, 0]), None);
    assert!(!vm.hv.running[0], "suspended until an interrupt");
    vm.handle_notified(ChannelSet(1 << UART.channel));
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::SUCCESS);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_5004);
    // Something pending: returns at once.
    assert_eq!(smc(&mut vm, 0, [psci::fid::CPU_SUSPEND_32 as u64, 0, 0, 0]), RESUME);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::SUCCESS);
}

#[test]
fn cpu_suspend_powerdown_returns_like_standby_and_bad_states_are_invalid() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, VTIMER_IRQ);
    vm.handle_fault(0, &Fault::VppiEvent { irq: 27 });
    smc(&mut vm, 0, [psci::fid::CPU_SUSPEND_64 as u64, 1 << 16, RAM_BASE, 0]);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::SUCCESS);
    smc(&mut vm, 0, [psci::fid::CPU_SUSPEND_64 as u64, 1 << 31, RAM_BASE, 0]);
    assert_eq!(vm.hv.regs[0].gpr(0), psci::ret::INVALID_PARAMETERS);
}

#[test]
fn big_endian_guest_mmio_is_byte_swapped() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.set_data_endianness(DataEndianness::FromSctlr);
    vm.hv.vcpu_regs[0][VcpuReg::Sctlr as usize] = 1 << 25; // EE
    vm.hv.regs[0].words[2] = 0x3c5; // EL1h
    vm.hv.regs[0].set_gpr(1, 0x0100_0000); // GICD_CTLR = 1, big-endian
    mmio(&mut vm, GICD, 4, 1, true);
    vm.hv.regs[0].words[2] = 0x3c5;
    mmio(&mut vm, GICD + 4, 4, 2, false);
    let typer = (vgic::NUM_IRQS as u32 / 32) - 1;
    assert_eq!(vm.hv.regs[0].gpr(2), typer.swap_bytes() as u64);
    // EL0 data accesses follow E0E, not EE.
    vm.hv.regs[0].words[2] = 0x3c0;
    mmio(&mut vm, GICD, 4, 3, false);
    assert_eq!(vm.hv.regs[0].gpr(3), 1, "EE set, E0E clear: EL0 reads little-endian");
    vm.hv.regs[0].words[2] = 0x3c5;
    mmio(&mut vm, GICD, 4, 3, false);
    assert_eq!(vm.hv.regs[0].gpr(3), 0x0100_0000);
}

#[test]
fn little_endian_data_reads_no_sctlr_and_costs_one_read_and_one_write() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    // Even with EE set (a guest contradicting its Image header), the
    // default takes the data as little-endian and never reads SCTLR_EL1.
    vm.hv.vcpu_regs[0][VcpuReg::Sctlr as usize] = 1 << 25;
    let (tcb, vcpu) = (vm.hv.tcb_reads, vm.hv.vcpu_reads);
    vm.hv.regs[0].set_gpr(1, 1);
    mmio(&mut vm, GICD, 4, 1, true);
    mmio(&mut vm, GICD, 4, 3, false);
    assert_eq!(vm.hv.regs[0].gpr(3), 1, "GICD_CTLR as written, not byte-swapped");
    assert_eq!(vm.hv.vcpu_reads - vcpu, 0, "no SCTLR_EL1 read");
    assert_eq!(vm.hv.tcb_reads - tcb, 2, "one register read per access");
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_1004);
}

#[test]
fn system_off_stops_only_the_vm_unless_forwarding_is_opted_in() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    vm.config.system_off = SystemOff::StopVm;
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    assert_eq!(smc(&mut vm, 0, [psci::fid::SYSTEM_OFF as u64, 0, 0, 0]), None);
    assert!(!vm.hv.running[0] && !vm.hv.running[1]);
    assert!(!vm.hv.powered_off, "the machine stays on");
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.config.system_off = SystemOff::Firmware;
    smc(&mut vm, 0, [psci::fid::SYSTEM_OFF as u64, 0, 0, 0]);
    assert!(vm.hv.powered_off);
}

#[test]
fn spi_moved_to_an_idle_vcpu_by_maintenance_wakes_it() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    guest_enables(&mut vm, UART.irq);
    vm.handle_notified(ChannelSet(1 << UART.channel)); // in vCPU 0's LR 0
    vm.hv.regs[1].set_pc(0x4000_3000);
    vm.hv.running[1] = false;
    assert_eq!(vm.handle_fault(1, &WFI), None);
    gicd_write(&mut vm, 0, 0x800 + UART.irq as u64, 1, 0b10); // ITARGETSR: vCPU 1
    gicd_write(&mut vm, 0, 0x200 + 4, 4, 1 << (UART.irq % 32)); // ISPENDR: again
    assert!(!vm.hv.running[1], "still in vCPU 0's LR");
    vm.handle_fault(0, &Fault::VgicMaintenance { index: Some(0) });
    assert_eq!(vm.hv.injected.last(), Some(&(1, 33, 0)));
    assert!(vm.hv.running[1], "vCPU 1 woken");
    assert_eq!(vm.hv.regs[1].pc(), 0x4000_3004);
}

#[test]
fn reset_clears_every_hardware_list_register() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    guest_enables(&mut vm, UART.irq);
    vm.handle_notified(ChannelSet(1 << UART.channel));
    vm.hv.lr_writes.clear();
    smc(&mut vm, 0, [psci::fid::SYSTEM_RESET as u64, 0, 0, 0]);
    let mut cleared: Vec<(usize, u8)> = vm.hv.lr_writes.iter().map(|w| (w.0, w.1)).collect();
    cleared.sort_unstable();
    assert_eq!(cleared, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]);
    for &(_, _, virq, priority) in &vm.hv.lr_writes {
        assert!(usize::from(virq) >= vgic::NUM_IRQS && priority == 31, "an inert entry");
    }
}

#[test]
fn vtimer_pending_cleared_by_the_guest_is_rearmed() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    gicd_write(&mut vm, 0, 0, 4, 1); // GICD_CTLR; the timer PPI stays disabled
    vm.handle_fault(0, &Fault::VppiEvent { irq: 27 });
    assert!(vm.hv.injected.is_empty() && vm.hv.acked_vppi.is_empty());
    gicd_write(&mut vm, 0, 0x280, 4, 1 << 27); // ICPENDR0
    assert_eq!(vm.hv.acked_vppi, [0], "VPPI re-armed");
}

#[test]
fn passthrough_pending_cleared_by_the_guest_is_acked() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    gicd_write(&mut vm, 0, 0, 4, 1);
    vm.handle_notified(ChannelSet(1 << UART.channel)); // disabled: stays pending
    gicd_write(&mut vm, 0, 0x280 + 4, 4, 1 << (UART.irq % 32)); // ICPENDR1
    assert_eq!(vm.hv.acked_irqs, [UART.channel]);
    // Pending state dropped from a list register: acked too.
    guest_enables(&mut vm, UART.irq);
    vm.handle_notified(ChannelSet(1 << UART.channel));
    assert_eq!(vm.hv.injected, [(0, 33, 0)]);
    gicd_write(&mut vm, 0, 0x280 + 4, 4, 1 << (UART.irq % 32));
    assert_eq!(vm.hv.acked_irqs, [UART.channel, UART.channel]);
}

/// The guest's physical timer interrupt (PPI 30) and the VMM's timer channel.
const PTIMER: u32 = 30;
const TIMER_CH: u8 = 5;

fn timer_irq(vm: &mut Vm<'_, Fake>) {
    vm.handle_notified(ChannelSet(1 << TIMER_CH));
}

fn arm_vtimer(vm: &mut Vm<'_, Fake>, vcpu: usize, cval: u64) {
    vm.hv.vcpu_regs[vcpu][VcpuReg::CntvCtl as usize] = 1;
    vm.hv.vcpu_regs[vcpu][VcpuReg::CntvCval as usize] = cval;
}

fn wfi(vm: &mut Vm<'_, Fake>, vcpu: usize, pc: u64) -> Option<MessageInfo> {
    vm.hv.regs[vcpu].set_pc(pc);
    vm.hv.running[vcpu] = false; // blocked on the fault
    vm.handle_fault(vcpu, &WFI)
}

#[test]
fn guest_physical_timer_interrupt_is_injected_and_left_alone() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, PTIMER);
    let writes = vm.hv.vmm_cntp_writes;
    let armed = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 1000 };
    vm.hv.cntp = armed; // the running guest arms CNTP
    vm.hv.now = 1000;
    timer_irq(&mut vm); // its interrupt reaches the VMM
    assert_eq!(vm.hv.injected, [(0, 30, 0)], "virtual PPI 30 injected");
    assert_eq!(vm.hv.cntp, armed, "the guest's timer is not disabled");
    assert_eq!(vm.hv.vmm_cntp_writes, writes, "the VMM did not touch CNTP");
    assert!(vm.hv.acked_irqs.is_empty(), "acked only once the guest is done");
    vm.hv.cntp.ctl = 0; // the guest's handler stops the timer, then EOIs
    vm.handle_fault(0, &Fault::VgicMaintenance { index: Some(0) });
    assert_eq!(vm.hv.acked_irqs, [TIMER_CH]);
}

#[test]
fn guest_physical_timer_pending_cleared_by_the_guest_is_acked() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, PTIMER);
    vm.hv.cntp = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 0 };
    timer_irq(&mut vm);
    assert_eq!(vm.hv.injected, [(0, 30, 0)]);
    gicd_write(&mut vm, 0, 0x280, 4, 1 << PTIMER); // ICPENDR0
    assert_eq!(vm.hv.acked_irqs, [TIMER_CH]);
    // An EOI of a PPI 30 the guest made pending itself acks nothing.
    gicd_write(&mut vm, 0, 0x200, 4, 1 << PTIMER); // ISPENDR0
    vm.handle_fault(0, &Fault::VgicMaintenance { index: Some(0) });
    assert_eq!(vm.hv.acked_irqs, [TIMER_CH]);
}

#[test]
fn wfi_with_only_the_guest_physical_timer_armed_wakes_at_its_deadline() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, PTIMER);
    let armed = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 3000 };
    vm.hv.cntp = armed;
    vm.hv.now = 100;
    assert_eq!(wfi(&mut vm, 0, 0x4000_2000), None);
    assert_eq!(vm.hv.wakeup(), Some(3000), "the VMM's wake-up is the guest's deadline");
    vm.hv.now = 3000;
    timer_irq(&mut vm);
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_2004);
    assert_eq!(vm.hv.cntp, armed, "the guest's CNTP restored before it runs");
    assert_eq!(vm.hv.acked_irqs, [TIMER_CH]);
    // The restored timer asserts its (level) interrupt again: delivered.
    timer_irq(&mut vm);
    assert_eq!(vm.hv.injected, [(0, 30, 0)]);
    assert_eq!(vm.hv.cntp, armed);
    vm.handle_fault(0, &Fault::VgicMaintenance { index: Some(0) });
    assert_eq!(vm.hv.acked_irqs, [TIMER_CH, TIMER_CH]);
}

#[test]
fn guest_cannot_delay_or_suppress_the_vmm_wakeup() {
    let far = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: u64::MAX };
    let off = PhysicalTimer { ctl: 0, cval: 0 };
    let storm = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 0 };
    let masked = PhysicalTimer { ctl: PhysicalTimer::ENABLE | PhysicalTimer::IMASK, cval: 10 };
    for guest in [far, off, storm, masked] {
        let mut s = Setup::new();
        let mut vm = s.vm(1);
        arm_vtimer(&mut vm, 0, 5000);
        vm.hv.cntp = guest;
        vm.hv.now = 100;
        if guest == storm {
            // Its interrupt (PPI 30, which it left disabled) reaches the VMM.
            timer_irq(&mut vm);
            assert!(vm.hv.acked_irqs.is_empty());
        }
        assert_eq!(wfi(&mut vm, 0, 0x4000_2000), None, "{guest:?}");
        assert!(!vm.hv.running[0]);
        assert_eq!(vm.hv.wakeup(), Some(5000), "{guest:?}: woken at the vtimer deadline");
        if guest == storm {
            assert_eq!(vm.hv.acked_irqs, [TIMER_CH], "unmasked for the VMM's wake-up");
        }
        vm.hv.now = 5000;
        timer_irq(&mut vm);
        assert!(vm.hv.running[0], "{guest:?}");
        assert_eq!(vm.hv.regs[0].pc(), 0x4000_2004);
        assert_eq!(vm.hv.cntp, guest, "the guest's CNTP given back");
    }
}

#[test]
fn waiting_vcpu_is_woken_on_an_exit_while_another_vcpu_owns_the_timer() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    arm_vtimer(&mut vm, 1, 5000);
    vm.hv.now = 100;
    let writes = vm.hv.vmm_cntp_writes;
    assert_eq!(wfi(&mut vm, 1, 0x4000_3000), None);
    assert_eq!(vm.hv.vmm_cntp_writes, writes, "vCPU 0 runs: CNTP is the guest's");
    vm.hv.cntp = PhysicalTimer::default(); // vCPU 0 disables CNTP
    vm.hv.now = 5000;
    mmio(&mut vm, GICD + 4, 4, 1, false); // any exit of vCPU 0
    assert!(vm.hv.running[1], "vCPU 1 woken at its deadline");
    assert_eq!(vm.hv.regs[1].pc(), 0x4000_3004);
}

#[test]
fn vmm_takes_the_timer_when_the_last_running_vcpu_idles() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    arm_vtimer(&mut vm, 1, 5000);
    vm.hv.now = 100;
    assert_eq!(wfi(&mut vm, 1, 0x4000_3000), None);
    let guest = PhysicalTimer { ctl: PhysicalTimer::ENABLE | PhysicalTimer::IMASK, cval: 77 };
    vm.hv.cntp = guest;
    assert_eq!(wfi(&mut vm, 0, 0x4000_2000), None);
    assert_eq!(vm.hv.wakeup(), Some(5000));
    vm.hv.now = 5000;
    timer_irq(&mut vm);
    assert!(vm.hv.running[1] && !vm.hv.running[0]);
    assert_eq!(vm.hv.cntp, guest);
}

#[test]
fn stale_wakeup_after_another_wake_is_not_injected() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    guest_enables(&mut vm, PTIMER);
    guest_enables(&mut vm, UART.irq);
    arm_vtimer(&mut vm, 0, 5000);
    vm.hv.now = 100;
    assert_eq!(wfi(&mut vm, 0, 0x4000_2000), None);
    // The UART and the wake-up arrive together; the UART wakes the vCPU first.
    vm.hv.now = 5000;
    vm.handle_notified(ChannelSet(1 << UART.channel | 1 << TIMER_CH));
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.injected, [(0, 33, 0)], "no PPI 30: the guest's timer is off");
    assert_eq!(vm.hv.acked_irqs, [TIMER_CH]);
    assert_eq!(vm.hv.cntp, PhysicalTimer::default());
}

#[test]
fn reset_gives_the_guest_a_disabled_physical_timer() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.hv.cntp = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 7 };
    smc(&mut vm, 0, [psci::fid::SYSTEM_RESET as u64, 0, 0, 0]);
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.cntp, PhysicalTimer::default());
}

#[test]
fn guest_physical_timer_wakes_vcpu0_while_another_vcpu_runs() {
    let mut s = Setup::new();
    let mut vm = s.vm(2);
    smc(&mut vm, 0, [psci::fid::CPU_ON_64 as u64, 1, RAM_BASE, 0]);
    guest_enables(&mut vm, PTIMER);
    vm.hv.cntp = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 3000 };
    vm.hv.now = 100;
    assert_eq!(wfi(&mut vm, 0, 0x4000_2000), None);
    vm.hv.now = 3000; // vCPU 1 runs: the interrupt is the guest's
    timer_irq(&mut vm);
    assert_eq!(vm.hv.injected, [(0, 30, 0)]);
    assert!(vm.hv.running[0], "vCPU 0 woken by its PPI 30");
    assert!(vm.hv.acked_irqs.is_empty());
}

#[test]
fn without_a_timer_channel_the_vmm_never_touches_the_physical_timer() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.config.timer = Timer::None;
    let writes = vm.hv.vmm_cntp_writes;
    let guest = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 9 };
    vm.hv.cntp = guest;
    guest_enables(&mut vm, UART.irq);
    assert_eq!(wfi(&mut vm, 0, 0x4000_2000), None);
    vm.handle_notified(ChannelSet(1 << UART.channel));
    assert!(vm.hv.running[0]);
    assert_eq!((vm.hv.cntp, vm.hv.vmm_cntp_writes), (guest, writes));
}

/// A device with deferred work: `poll` raises the SPI it owes, once.
#[derive(Default)]
struct Deferred {
    owed: Option<u32>,
    polls: usize,
}

impl Devices for Deferred {
    fn read(&mut self, _: &mut GuestRam, _: Gpa, _: u8) -> Option<(u64, Option<u32>)> {
        None
    }
    fn write(&mut self, _: &mut GuestRam, _: Gpa, _: u8, _: u64) -> Option<Option<u32>> {
        None
    }
    fn poll(&mut self, _: &mut GuestRam, raise: &mut dyn FnMut(u32)) {
        self.polls += 1;
        if let Some(irq) = self.owed.take() {
            raise(irq);
        }
    }
}

#[test]
fn deferred_device_work_runs_when_the_vcpu_idles_and_at_each_timer_tick() {
    let mut s = Setup::new();
    let ram = GuestRam::from_slice(RAM_BASE, &mut s.mem);
    let images = BootImages { kernel: &s.kernel, initrd: &[], dtb: &s.dtb, bootargs: None };
    let config = VmConfig {
        num_vcpus: 1,
        gic: GicLayout::QEMU_VIRT_V2,
        num_lrs: 4,
        passthrough: &[],
        timer: Timer::Physical(5),
        system_off: SystemOff::StopVm,
    };
    let mut vm = Vm::with_devices(Fake::new(1), Deferred::default(), ram, images, config);
    vm.boot().unwrap();
    finish_reset_stub(&mut vm);
    for (offset, width, value) in
        [(0, 4, 1), (0x104, 4, 3 << 16), (0x800 + 48, 1, 1), (0x800 + 49, 1, 1)]
    {
        vm.hv.regs[0].set_gpr(1, value);
        vm.hv.regs[0].set_pc(0x4000_1000);
        let fault = Fault::VmFault {
            ip: 0x4000_1000,
            addr: GICD + offset,
            prefetch: false,
            fsr: dabt(width, 1, true),
        };
        vm.handle_fault(0, &fault);
    }
    let polls = vm.devices().0.polls;
    // WFI with an interrupt owed: the poll raises it, so the vCPU does not sleep.
    vm.devices().0.owed = Some(48);
    assert_eq!(vm.handle_fault(0, &WFI), RESUME);
    assert_eq!(vm.devices().0.polls, polls + 1);
    assert_eq!(vm.hv.injected.last(), Some(&(0, 48, 0)));
    // The virtual timer's tick polls too.
    vm.devices().0.owed = Some(49);
    let injected = vm.hv.injected.len();
    vm.handle_fault(0, &Fault::VppiEvent { irq: 27 });
    assert_eq!(vm.devices().0.polls, polls + 2);
    assert!(vm.hv.injected[injected..].iter().any(|i| i.1 == 49), "{:?}", vm.hv.injected);
    // What the guest left behind goes out before a reset and a power-off.
    vm.reset();
    assert!(vm.devices().0.polls >= polls + 3, "polled before the reset");
    let polls = vm.devices().0.polls;
    vm.power_off();
    assert_eq!(vm.devices().0.polls, polls + 1, "polled before the power-off");
}

/// WFI on vCPU 0 with its virtual timer due at `cval` (offset 0).
fn idle_until(vm: &mut Vm<'_, Fake, ()>, cval: u64) -> Option<MessageInfo> {
    vm.hv.regs[0].set_pc(0x4000_2000);
    vm.hv.vcpu_regs[0][VcpuReg::CntvCtl as usize] = 1;
    vm.hv.vcpu_regs[0][VcpuReg::CntvCval as usize] = cval;
    vm.hv.vcpu_regs[0][VcpuReg::Cntvoff as usize] = 0;
    vm.hv.running[0] = false;
    vm.handle_fault(0, &Fault::VcpuFault { hsr: 0x07e0_0000 })
}

#[test]
fn a_timer_service_wakes_an_idle_vcpu_and_the_physical_timer_is_left_alone() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.config.timer = Timer::Service(7);
    let guest = PhysicalTimer { ctl: PhysicalTimer::ENABLE, cval: 9 };
    vm.hv.cntp = guest;
    let writes = vm.hv.vmm_cntp_writes;
    vm.hv.now = 1000;
    assert_eq!(idle_until(&mut vm, 63_500), None);
    // 62.5 MHz: 62 500 ticks are 1 ms; asked once, rounded up, never early.
    assert_eq!(vm.hv.timeouts, [(7, 1_000_000)]);
    // Early: the vCPU stays idle and the service is asked again.
    vm.hv.now = 50_000;
    vm.handle_notified(ChannelSet(1 << 7));
    assert!(!vm.hv.running[0]);
    assert_eq!(vm.hv.timeouts, [(7, 1_000_000), (7, 216_000)]);
    vm.hv.now = 63_500;
    vm.handle_notified(ChannelSet(1 << 7));
    assert!(vm.hv.running[0]);
    assert_eq!(vm.hv.regs[0].pc(), 0x4000_2004);
    // Not an IRQ: nothing to ack; the guest's CNTP never written.
    assert!(vm.hv.acked_irqs.is_empty());
    assert_eq!((vm.hv.cntp, vm.hv.vmm_cntp_writes), (guest, writes));
}

#[test]
fn a_timer_service_is_asked_again_only_when_the_wakeup_moves_earlier() {
    let mut s = Setup::new();
    let mut vm = s.vm(1);
    vm.config.timer = Timer::Service(7);
    vm.hv.now = 0;
    assert_eq!(idle_until(&mut vm, 625_000), None);
    assert_eq!(vm.hv.timeouts, [(7, 10_000_000)]);
    // Something else wakes it (an interrupt, taken and handled); it idles
    // again with a later deadline: the outstanding (earlier) timeout
    // stands, no new call.
    let mut one = vgic::VcpuMask::default();
    one.insert(0);
    vm.wake(one);
    assert!(vm.hv.running[0]);
    vm.hv.now = 100;
    assert_eq!(idle_until(&mut vm, 1_250_000), None);
    assert_eq!(vm.hv.timeouts.len(), 1);
    vm.wake(one);
    // An earlier deadline: asked again.
    assert_eq!(idle_until(&mut vm, 62_600), None);
    assert_eq!(vm.hv.timeouts.len(), 2);
    assert_eq!(vm.hv.timeouts[1], (7, 1_000_000));
}
