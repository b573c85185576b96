//! Target `exit_decode`: seL4 fault decoding (`Fault::decode` from a label and message
//! registers), exit decoding (`Exit::decode`) and `Vm::handle_fault` on a booted two-vCPU VM
//! with a virtio console and a virtio block device on its map, over a fake hypervisor.
//!
//! The fake keeps registers and list registers like the kernel: InjectIRQ into an LR the
//! guest has not EOIed answers DeleteFirst. Steps: a fault from a vCPU (any label and
//! registers; often a data abort aimed at the GIC distributor or a device), the guest
//! changing its registers, EOIing an LR (then the maintenance fault), a passthrough or timer
//! notification, a device interrupt. Checks: no panic; the VMM never names an absent vCPU
//! or list register, nor writes an LR field out of range; a vCPU answered with a reply was
//! not stopped while handling it.

use arbitrary::{Arbitrary, Unstructured};
use libvmm::guest_memory::GuestRam;
use libvmm::linux::boot::BootImages;
use libvmm::linux::image::IMAGE_MAGIC;
use libvmm::microkit::ChannelSet;
use libvmm::sel4::generic_timer::PhysicalTimer;
use libvmm::sel4::{Error, Fault, UserContext, VcpuReg};
use libvmm::virtio::MmioDevice;
use libvmm::vm::exit::Exit;
use libvmm::vm::hypervisor::Hypervisor;
use libvmm::vm::{GicLayout, Passthrough, Timer, Vm, VmConfig};
use virtio::block::BlockDevice;
use virtio::console::Console;

use crate::devices::{Disk, Serial};

const VCPUS: usize = 2;
const LRS: usize = 4;
const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 4 << 20;
const CONSOLE: u64 = 0x0a00_0000;
const BLOCK: u64 = 0x0a00_0200;

/// The kernel, as the VMM sees it.
struct Fake {
    regs: [UserContext; VCPUS],
    vcpu_regs: [[u64; 64]; VCPUS],
    running: [bool; VCPUS],
    suspended: [bool; VCPUS],
    lrs: [[Option<u16>; LRS]; VCPUS],
    now: u64,
    ptimer: (u64, u64),
}

impl Fake {
    fn vcpu(&self, v: usize) -> usize {
        assert!(v < VCPUS, "VMM names absent vCPU {v}");
        v
    }
}

impl Hypervisor for Fake {
    fn read_regs(&mut self, v: usize, count: usize, regs: &mut UserContext) -> Result<(), Error> {
        let v = self.vcpu(v);
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
        let v = self.vcpu(v);
        self.regs[v].words[..count].copy_from_slice(&regs.words[..count]);
        if resume {
            self.running[v] = true;
        }
        Ok(())
    }
    fn suspend(&mut self, v: usize) -> Result<(), Error> {
        let v = self.vcpu(v);
        self.running[v] = false;
        self.suspended[v] = true;
        Ok(())
    }
    fn read_reg(&mut self, v: usize, reg: VcpuReg) -> Result<u64, Error> {
        Ok(self.vcpu_regs[self.vcpu(v)][reg as usize])
    }
    fn write_reg(&mut self, v: usize, reg: VcpuReg, value: u64) -> Result<(), Error> {
        self.vcpu_regs[self.vcpu(v)][reg as usize] = value;
        Ok(())
    }
    fn inject_irq(
        &mut self,
        v: usize,
        virq: u16,
        prio: u8,
        group: u8,
        index: u8,
    ) -> Result<(), Error> {
        let v = self.vcpu(v);
        assert!(usize::from(index) < LRS, "InjectIRQ into LR {index}");
        assert!(virq < 1020 && prio < 32 && group < 2, "bad LR {virq} {prio} {group}");
        let lr = &mut self.lrs[v][usize::from(index)];
        if lr.is_some() {
            return Err(Error::DeleteFirst);
        }
        *lr = Some(virq);
        Ok(())
    }
    fn ack_vppi(&mut self, v: usize, _irq: u64) -> Result<(), Error> {
        self.vcpu(v);
        Ok(())
    }
    fn ack_irq(&mut self, _channel: u8) -> Result<(), Error> {
        Ok(())
    }
    fn set_mr(&mut self, i: usize, _value: u64) {
        assert!(i < 120, "message register {i}");
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn frequency(&self) -> u64 {
        62_500_000
    }
    fn set_wakeup(&mut self, _deadline: Option<u64>) {}
    fn request_timeout(&mut self, _channel: u8, _timeout_ns: u64) {}
    fn physical_timer(&mut self) -> PhysicalTimer {
        PhysicalTimer { ctl: self.ptimer.0, cval: self.ptimer.1 }
    }
    fn set_physical_timer(&mut self, timer: PhysicalTimer) {
        self.ptimer = (timer.ctl, timer.cval);
    }
    fn firmware_power_off(&mut self) {}
}

/// A data abort syndrome with a valid ISS.
fn dabt(sas: u8, reg: u8, write: bool, sse: bool, sf: bool) -> u64 {
    (0x24 << 26)
        | (1 << 25)
        | (1 << 24)
        | (u64::from(sas & 3) << 22)
        | (u64::from(sse) << 21)
        | (u64::from(reg & 31) << 16)
        | (u64::from(sf) << 15)
        | (u64::from(write) << 6)
}

/// One step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Any fault: a label and message registers, decoded as the kernel's message.
    Raw { vcpu: u8, label: u8, mrs: [u64; 6] },
    /// A well-formed MMIO access to the GIC distributor, the console or the block device.
    Mmio { vcpu: u8, target: u8, offset: u16, sas: u8, reg: u8, write: bool, sse: bool, sf: bool },
    /// A trap (WFI/WFE/SMC/sysreg/other) with this syndrome's low bits.
    Trap { vcpu: u8, class: u8, iss: u32 },
    /// An HVC (PSCI and others).
    Hvc { vcpu: u8, function: u32, args: [u64; 3] },
    /// The guest sets a register.
    SetReg { vcpu: u8, index: u8, value: u64 },
    /// The guest sets a VCPU system register (e.g. the timer).
    SetVcpuReg { vcpu: u8, index: u8, value: u64 },
    /// The guest EOIs an LR; the kernel reports it (or not).
    Eoi { vcpu: u8, lr: u8, report: bool },
    /// Notifications on these channels.
    Notified(u64),
    /// A device interrupt.
    Raise(u16),
    /// Time passes.
    Tick(u32),
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut mem = vec![0u8; RAM_SIZE];
    let kernel = kernel();
    let dtb = crate::seeds::dtb(true, 2, 1);
    let ram = GuestRam::from_slice(RAM_BASE, &mut mem);
    let images = BootImages {
        kernel: &kernel,
        initrd: b"initrd",
        dtb: &dtb,
        bootargs: Some("console=hvc0"),
    };
    let passthrough = [Passthrough { channel: 1, irq: 33 }];
    // The first byte picks the GIC: v2 (distributor emulated, CPU interface in hardware)
    // or v3 (distributor and redistributors emulated).
    let v3 = u.arbitrary::<bool>().unwrap_or(false);
    let gic = if v3 { GicLayout::QEMU_VIRT_V3 } else { GicLayout::QEMU_VIRT_V2 };
    let config = VmConfig {
        num_vcpus: VCPUS,
        gic,
        num_lrs: LRS,
        passthrough: &passthrough,
        timer: Timer::Physical(5),
        system_off: Default::default(),
    };
    let disk = Disk::default();
    let devices = (
        MmioDevice::new(CONSOLE, 48, Console::new(Serial::default())),
        MmioDevice::new(BLOCK, 49, BlockDevice::<Disk, 4>::new(disk)),
    );
    let hv = Fake {
        regs: [UserContext::default(); VCPUS],
        vcpu_regs: [[0; 64]; VCPUS],
        running: [false; VCPUS],
        suspended: [false; VCPUS],
        lrs: [[None; LRS]; VCPUS],
        now: 1000,
        ptimer: (0, 0),
    };
    let mut vm = Vm::with_devices(hv, devices, ram, images, config);
    vm.boot().expect("the fuzz VM boots");
    let mut steps = 0;
    while !u.is_empty() {
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        steps += 1;
        if steps > 128 {
            break;
        }
        step(&mut vm, gic, op);
    }
}

type FuzzVm<'a> = Vm<'a, Fake, (MmioDevice<Console<Serial>>, MmioDevice<BlockDevice<Disk, 4>>)>;

/// Handles `f`; returns whether the vCPU was answered.
fn fault(vm: &mut FuzzVm<'_>, vcpu: usize, f: &Fault) -> bool {
    let _ = Exit::decode(f);
    vm.hypervisor().suspended = [false; VCPUS];
    let reply = vm.handle_fault(vcpu, f);
    if reply.is_some() && vcpu < VCPUS {
        assert!(!vm.hypervisor().suspended[vcpu], "vCPU {vcpu} stopped and answered: {f:x?}");
    }
    reply.is_some() && vcpu < VCPUS
}

/// An answered MMIO access either stepped over the instruction (a load also wrote its
/// register, masked to the access and register width) or took the guest to its exception
/// vector.
#[allow(clippy::too_many_arguments)]
fn check_mmio_result(
    vm: &mut FuzzVm<'_>,
    vcpu: usize,
    before: UserContext,
    sas: u8,
    reg: u8,
    write: bool,
    sse: bool,
    sf: bool,
) {
    let hv = vm.hypervisor();
    let after = hv.regs[vcpu];
    let vbar = hv.vcpu_regs[vcpu][VcpuReg::Vbar as usize];
    if after.pc() == before.pc().wrapping_add(4) {
        for r in 0..31u8 {
            if r != reg || write {
                assert_eq!(after.gpr(r), before.gpr(r), "MMIO access changed x{r}");
            }
        }
        if !write && reg != 31 {
            let value = after.gpr(reg);
            let bits = 8u32 << (sas & 3);
            if !sf {
                assert_eq!(value >> 32, 0, "W-register load left upper bits: {value:#x}");
            }
            if !sse && bits < 64 {
                assert_eq!(value >> bits, 0, "{bits}-bit load not zero-extended: {value:#x}");
            }
        }
    } else {
        let vector = after.pc().wrapping_sub(vbar);
        assert!(
            matches!(vector, 0 | 0x200 | 0x400 | 0x600),
            "MMIO answered with PC {:#x}",
            after.pc()
        );
    }
}

fn step(vm: &mut FuzzVm<'_>, gic: GicLayout, op: Op) {
    // Mostly valid vCPUs, sometimes one that does not exist.
    let v = |raw: u8| usize::from(raw) % (VCPUS + 1);
    match op {
        Op::Raw { vcpu, label, mrs } => {
            let f = Fault::decode(u64::from(label % 12), &mrs);
            fault(vm, v(vcpu), &f);
        }
        Op::Mmio { vcpu, target, offset, sas, reg, write, sse, sf } => {
            let other_gic = match gic {
                GicLayout::V2 { gicc, .. } => gicc,
                GicLayout::V3 { gicr, .. } => gicr,
            };
            let (base, span) = [
                (gic.gicd(), 0x1_0000),
                (CONSOLE, 0x200),
                (BLOCK, 0x200),
                (RAM_BASE - 0x1000, 0x1000),
                (other_gic, 0x4_0000),
            ][usize::from(target % 5)];
            let addr = base + u64::from(offset) * 4 % span + u64::from(offset & 3);
            let vcpu = v(vcpu);
            let ip = vm.hypervisor().regs[vcpu % VCPUS].pc();
            let f =
                Fault::VmFault { ip, addr, prefetch: false, fsr: dabt(sas, reg, write, sse, sf) };
            let before = vm.hypervisor().regs.get(vcpu).copied();
            if fault(vm, vcpu, &f) {
                check_mmio_result(
                    vm,
                    vcpu,
                    before.unwrap_or_default(),
                    sas,
                    reg & 31,
                    write,
                    sse,
                    sf,
                );
            }
        }
        Op::Trap { vcpu, class, iss } => {
            let class = [0x01, 0x17, 0x18, 0x00, u64::from(class & 0x3f)][usize::from(class % 5)];
            let f =
                Fault::VcpuFault { hsr: (class << 26) | (1 << 25) | u64::from(iss & 0x1ff_ffff) };
            fault(vm, v(vcpu), &f);
        }
        Op::Hvc { vcpu, function, args } => {
            // PSCI (SMC32/SMC64 ids), the reset stub's RESET_STUB_DONE, or anything.
            let function = match function & 3 {
                0 => 0x8400_0000 | u64::from(function >> 2 & 0x1f),
                1 => 0xc400_0000 | u64::from(function >> 2 & 0x1f),
                2 => 0xc600_0001,
                _ => u64::from(function),
            };
            let mut all = [0u64; 8];
            all[0] = function;
            all[1..4].copy_from_slice(&args);
            let f = Fault::UnknownSyscall {
                args: all,
                fault_ip: 0x4000_1000,
                sp: 0,
                elr: 0x4000_1004,
                spsr: 0x3c5,
                syscall: 0,
            };
            fault(vm, v(vcpu), &f);
        }
        Op::SetReg { vcpu, index, value } => {
            let words = &mut vm.hypervisor().regs[usize::from(vcpu) % VCPUS].words;
            let n = words.len();
            words[usize::from(index) % n] = value;
        }
        Op::SetVcpuReg { vcpu, index, value } => {
            vm.hypervisor().vcpu_regs[usize::from(vcpu) % VCPUS][usize::from(index) % 24] = value;
        }
        Op::Eoi { vcpu, lr, report } => {
            let (vcpu, lr) = (usize::from(vcpu) % VCPUS, usize::from(lr) % LRS);
            if vm.hypervisor().lrs[vcpu][lr].take().is_some() {
                let f = Fault::VgicMaintenance { index: report.then_some(lr as u64) };
                fault(vm, vcpu, &f);
            }
        }
        Op::Notified(set) => vm.handle_notified(ChannelSet(set & 0x3f)),
        Op::Raise(irq) => vm.raise_irq(u32::from(irq) % 300),
        Op::Tick(t) => vm.hypervisor().now += u64::from(t),
    }
}

/// A minimal Image: the 64-byte header, image_size 64 KiB (small, so each run copies little).
fn kernel() -> Vec<u8> {
    let mut k = vec![0u8; 64];
    k[16..24].copy_from_slice(&0x10000u64.to_le_bytes());
    k[24..32].copy_from_slice(&0xau64.to_le_bytes());
    k[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    k
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run() {
        for seed in crate::seeds::noise(9, 8, 1000) {
            super::run(&seed);
        }
    }
}
