//! A virtual machine: its vCPUs, guest RAM, the virtual GIC, and what the
//! VMM does for each exit.
//!
//! `Vm::handle_fault` takes a decoded seL4 fault and returns the reply (or
//! none, to leave the vCPU blocked); `Vm::handle_notified` takes interrupts
//! and the wake-up timer. Guest mistakes are logged (rate-limited) and
//! answered as the architecture says: an injected abort or undefined
//! instruction, never a VMM crash.

pub mod exit;
pub mod hypervisor;
pub mod psci;

use crate::guest_memory::{Gpa, GuestRam};
use crate::linux::boot::{self, BootError, BootImages};
use crate::microkit::ChannelSet;
use crate::sel4::user_context::{gpr_index, words_to_cover};
use crate::sel4::{Error, Fault, MessageInfo, UserContext, VcpuReg};
use exit::{ec, Exit, MmioAccess};
use hypervisor::Hypervisor;
use psci::{Action, PowerState};
use vgic::{GicV2, InjectError, ListRegisters, VcpuMask};

pub use vgic::MAX_VCPUS;

/// QEMU virt's GIC distributor.
pub const QEMU_VIRT_GICD: u64 = 0x0800_0000;
/// The virtual timer's PPI.
pub const VTIMER_IRQ: u32 = 27;
/// PSTATE for a vCPU entering the kernel: EL1h with D, A, I, F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// VCPU system registers saved at power-on and restored at reset.
const VCPU_REGS: usize = 24;

/// A physical interrupt forwarded to the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Passthrough {
    /// The Microkit IRQ channel that delivers it.
    pub channel: u8,
    /// The guest's interrupt id (SPI number + 32).
    pub irq: u32,
}

/// The VM's emulated devices other than the GIC, e.g. virtio-MMIO
/// transports. `()` is a VM without any.
pub trait Devices {
    /// A guest read of `width` bytes at `gpa`: `None` if no device is there,
    /// else the value and the interrupt to raise, if any.
    fn read(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8) -> Option<(u64, Option<u32>)>;
    /// A guest write: `None` if no device is there, else the interrupt to
    /// raise, if any.
    fn write(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8, value: u64)
        -> Option<Option<u32>>;
    /// The guest is being reset: put every device back to its power-on state.
    fn reset(&mut self) {}
}

impl Devices for () {
    fn read(&mut self, _: &mut GuestRam, _: Gpa, _: u8) -> Option<(u64, Option<u32>)> {
        None
    }
    fn write(&mut self, _: &mut GuestRam, _: Gpa, _: u8, _: u64) -> Option<Option<u32>> {
        None
    }
}

/// How a VM is put together.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig<'a> {
    /// vCPUs `0..num_vcpus` (system description `<vcpu id>`s).
    pub num_vcpus: usize,
    /// Guest-physical base of the emulated GIC distributor.
    pub gicd_base: u64,
    /// Hardware list registers per vCPU (4 on QEMU's GICv2).
    pub num_lrs: usize,
    /// Physical interrupts forwarded to the guest.
    pub passthrough: &'a [Passthrough],
    /// IRQ channel of the physical timer (PPI 30) that wakes vCPUs idle in
    /// WFI. Without it, a WFI with the guest's timer armed resumes at once.
    pub timer_channel: Option<u8>,
}

/// Where a vCPU is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum VcpuState {
    Off,
    Running,
    /// Blocked after WFI until an interrupt (or `deadline`, in counter ticks).
    Waiting {
        resume_pc: u64,
        deadline: Option<u64>,
    },
}

/// Counts events so that floods of guest mistakes log only now and then.
#[derive(Default, Clone, Copy, Debug)]
struct RateLimit(u64);

impl RateLimit {
    fn allow(&mut self) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 <= 16 || self.0.is_power_of_two()
    }
}

/// The list registers, as the vGIC sees them.
struct Lrs<'h, H: Hypervisor>(&'h mut H);

impl<H: Hypervisor> ListRegisters for Lrs<'_, H> {
    fn inject(
        &mut self,
        vcpu: usize,
        index: usize,
        virq: u16,
        priority: u8,
        group: u8,
    ) -> Result<(), InjectError> {
        match self.0.inject_irq(vcpu, virq, priority, group, index as u8) {
            Ok(()) => Ok(()),
            Err(Error::DeleteFirst) => Err(InjectError::Busy),
            Err(_) => Err(InjectError::Failed),
        }
    }
}

/// The reply that resumes a vCPU.
const RESUME: Option<MessageInfo> = Some(MessageInfo::new(0, 0));

/// A virtual machine.
pub struct Vm<'a, H: Hypervisor, D: Devices = ()> {
    hv: H,
    devices: D,
    ram: GuestRam<'a>,
    images: BootImages<'a>,
    config: VmConfig<'a>,
    gic: GicV2,
    vcpus: [VcpuState; MAX_VCPUS],
    /// CNTVOFF per vCPU, read once: it only changes when the kernel is
    /// built to move it (`VTIMER_UPDATE_VOFFSET`), then it is read each time.
    cntvoff: [Option<u64>; MAX_VCPUS],
    power_on_regs: Option<[u64; VCPU_REGS]>,
    boots: u32,
    bad_guest: RateLimit,
}

impl<'a, H: Hypervisor> Vm<'a, H, ()> {
    /// A VM without emulated devices besides the GIC. Call [`Vm::boot`] next.
    pub fn new(hv: H, ram: GuestRam<'a>, images: BootImages<'a>, config: VmConfig<'a>) -> Self {
        Vm::with_devices(hv, (), ram, images, config)
    }
}

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// A VM that will boot `images` in `ram`, with `devices` on its
    /// address map. Call [`Vm::boot`] next.
    pub fn with_devices(
        hv: H,
        devices: D,
        ram: GuestRam<'a>,
        images: BootImages<'a>,
        config: VmConfig<'a>,
    ) -> Self {
        let num_vcpus = config.num_vcpus.clamp(1, MAX_VCPUS);
        let config = VmConfig { num_vcpus, ..config };
        Vm {
            hv,
            devices,
            ram,
            images,
            gic: GicV2::new(num_vcpus, config.num_lrs),
            config,
            vcpus: [VcpuState::Off; MAX_VCPUS],
            cntvoff: [None; MAX_VCPUS],
            power_on_regs: None,
            boots: 0,
            bad_guest: RateLimit::default(),
        }
    }

    /// The hypervisor interface (tests inspect their fake through it).
    pub fn hypervisor(&mut self) -> &mut H {
        &mut self.hv
    }

    /// The devices and guest RAM, e.g. to complete device work when a
    /// backend notifies; raise the interrupts it asks for with `raise_irq`.
    pub fn devices(&mut self) -> (&mut D, &mut GuestRam<'a>) {
        (&mut self.devices, &mut self.ram)
    }

    /// How many times the guest has been booted.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Loads the images and starts vCPU 0 at the kernel's entry with x0 =
    /// the device tree. Other vCPUs wait for PSCI CPU_ON.
    pub fn boot(&mut self) -> Result<(), BootError> {
        let seed = self.rng_seed();
        let layout = boot::load(&mut self.ram, &self.images, Some(&seed))?;
        self.boots += 1;
        log::info!(
            target: "boot",
            "booting Linux (boot {}): kernel {} dtb {} initrd {:?}, {} MiB RAM at {}",
            self.boots,
            layout.entry,
            layout.dtb,
            layout.initrd.map(|(s, e)| (s.0, e.0)),
            self.ram.size() >> 20,
            self.ram.base()
        );
        self.start_vcpu(0, layout.entry.0, layout.dtb.0).map_err(|e| {
            log::error!(target: "boot", "cannot start vCPU 0: {e}");
            BootError::OutOfRange(crate::guest_memory::OutOfRange { gpa: layout.entry, len: 0 })
        })
    }

    /// Bytes for `/chosen/rng-seed`, new on every boot. They come from the
    /// counter, which is not a secure source: a system that needs real
    /// entropy should patch its own seed in.
    fn rng_seed(&self) -> [u8; 32] {
        let mut state = self.hv.now() ^ (self.boots as u64).rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            // SplitMix64.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        seed
    }

    /// Starts `vcpu` at `entry` in EL1h, MMU off, x0 = `x0`, x1-x3 = 0.
    fn start_vcpu(&mut self, vcpu: usize, entry: u64, x0: u64) -> Result<(), Error> {
        if self.power_on_regs.is_none() {
            let mut regs = [0u64; VCPU_REGS];
            for (i, r) in regs.iter_mut().enumerate() {
                *r = self.hv.read_reg(vcpu, vcpu_reg(i))?;
            }
            self.power_on_regs = Some(regs);
        } else if let Some(regs) = self.power_on_regs {
            // A vCPU that ran before: back to power-on system registers
            // (MMU off, timer off), except its MPIDR, set below.
            for (i, &value) in regs.iter().enumerate() {
                if vcpu_reg(i) != VcpuReg::VmpidrEl2 {
                    self.hv.write_reg(vcpu, vcpu_reg(i), value)?;
                }
            }
        }
        // MPIDR: bit 31 is RES1; Aff0 is the vCPU index.
        self.hv.write_reg(vcpu, VcpuReg::VmpidrEl2, (1 << 31) | vcpu as u64)?;
        self.cntvoff[vcpu] = None;
        let mut regs = UserContext::default();
        regs.set_pc(entry);
        regs.words[crate::sel4::user_context::SPSR] = SPSR_EL1H_MASKED;
        regs.set_gpr(0, x0);
        let count = words_to_cover(3);
        self.hv.write_regs(vcpu, true, count, &regs)?;
        self.vcpus[vcpu] = VcpuState::Running;
        Ok(())
    }

    /// Handles a fault from `vcpu`; returns the reply, or `None` to leave it
    /// blocked (idle, off, or stopped after an error).
    pub fn handle_fault(&mut self, vcpu: usize, fault: &Fault) -> Option<MessageInfo> {
        if vcpu >= self.config.num_vcpus {
            log::error!(target: "cpu", "fault from unknown vCPU {vcpu}: {fault:x?}");
            return None;
        }
        let exit = Exit::decode(fault);
        let result = match exit {
            Exit::Mmio(access) => self.mmio(vcpu, fault_ip(fault), access),
            Exit::Wait { wfe, instruction_len } => self.wait(vcpu, wfe, instruction_len),
            Exit::Smc { instruction_len } => self.smc(vcpu, instruction_len),
            Exit::Hvc { args, pc } => self.hvc(vcpu, args, pc),
            Exit::VgicMaintenance { lr } => self.maintenance(vcpu, lr),
            Exit::Vppi { irq } => self.vppi(vcpu, irq),
            Exit::SysReg(access) => self.sysreg(vcpu, access),
            Exit::UndecodableAbort { gpa, esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "mmio", "vCPU {vcpu}: access to {gpa} without a valid syndrome (esr {esr:#x}, pc {:#x}): injecting an abort", fault_ip(fault));
                }
                self.inject(vcpu, Exception::DataAbort, gpa.0)
            }
            Exit::PrefetchAbort { gpa, esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "cpu", "vCPU {vcpu}: instruction fetch from {gpa} (esr {esr:#x}): injecting an abort");
                }
                self.inject(vcpu, Exception::PrefetchAbort, gpa.0)
            }
            Exit::Undefined { pc, esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "cpu", "vCPU {vcpu}: undefined instruction at {pc:#x} (esr {esr:#x})");
                }
                self.inject(vcpu, Exception::Undefined, 0)
            }
            Exit::Unhandled { esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "cpu", "vCPU {vcpu}: unhandled exit (class {:#x}, esr {esr:#x}): {fault:x?}", exit::syndrome_ec(esr));
                }
                match fault {
                    Fault::VcpuFault { .. } => self.inject(vcpu, Exception::Undefined, 0),
                    _ => Err(Error::IllegalOperation),
                }
            }
        };
        result.unwrap_or_else(|e| {
            log::error!(target: "cpu", "vCPU {vcpu}: {e} while handling {exit:x?}; stopping it");
            let _ = self.hv.suspend(vcpu);
            self.vcpus[vcpu] = VcpuState::Off;
            None
        })
    }

    /// Handles notifications: passthrough interrupts and the wake-up timer.
    pub fn handle_notified(&mut self, channels: ChannelSet) {
        for ch in channels.iter() {
            if Some(ch.id()) == self.config.timer_channel {
                self.timer_fired();
            } else if let Some(p) = self.config.passthrough.iter().find(|p| p.channel == ch.id()) {
                let woken = self.gic.set_pending(0, p.irq, &mut Lrs(&mut self.hv));
                self.wake(woken);
            } else {
                log::warn!(target: "irq", "notification on channel {} that the VM does not use", ch.id());
            }
        }
    }

    /// Raises interrupt `irq` (SPI) in the guest, e.g. for an emulated device.
    pub fn raise_irq(&mut self, irq: u32) {
        let woken = self.gic.set_pending(0, irq, &mut Lrs(&mut self.hv));
        log::trace!(target: "irq", "raise {irq}: wakes {woken:?}");
        self.wake(woken);
    }

    /// A load or store to the GIC distributor or one of `Devices`; to
    /// nothing, an abort. One register read and one write-back at most.
    fn mmio(&mut self, vcpu: usize, ip: u64, a: MmioAccess) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        let count = words_to_cover(a.reg);
        if a.write && gpr_index(a.reg).is_some() {
            self.hv.read_regs(vcpu, count, &mut regs)?;
        }
        let value = a.store_value(regs.gpr(a.reg));
        let gicd = a.gpa.0.checked_sub(self.config.gicd_base).filter(|&o| o < vgic::GICD_SIZE);
        let (loaded, woken, irq) = match (gicd, a.write) {
            (Some(offset), true) => {
                let woken =
                    self.gic.dist_write(vcpu, offset, a.width, value, &mut Lrs(&mut self.hv));
                (0, woken, None)
            }
            (Some(offset), false) => {
                (self.gic.dist_read(vcpu, offset, a.width), VcpuMask::default(), None)
            }
            (None, true) => match self.devices.write(&mut self.ram, a.gpa, a.width, value) {
                Some(irq) => (0, VcpuMask::default(), irq),
                None => return self.no_device(vcpu, ip, a),
            },
            (None, false) => match self.devices.read(&mut self.ram, a.gpa, a.width) {
                Some((raw, irq)) => (raw, VcpuMask::default(), irq),
                None => return self.no_device(vcpu, ip, a),
            },
        };
        // A store only moves the PC; a load also writes its register, so the
        // words before it are read first to be written back unchanged.
        let write_count = if a.write { 1 } else { count };
        if !a.write {
            if count > 1 {
                self.hv.read_regs(vcpu, count, &mut regs)?;
            }
            regs.set_gpr(a.reg, a.load_value(loaded));
        }
        regs.set_pc(ip.wrapping_add(a.instruction_len));
        self.hv.write_regs(vcpu, false, write_count, &regs)?;
        self.wake(woken);
        if let Some(irq) = irq {
            self.raise_irq(irq);
        }
        Ok(RESUME)
    }

    fn no_device(
        &mut self,
        vcpu: usize,
        ip: u64,
        a: MmioAccess,
    ) -> Result<Option<MessageInfo>, Error> {
        if self.bad_guest.allow() {
            log::warn!(target: "mmio", "vCPU {vcpu}: {} of {} bytes at {}, where no device is (pc {ip:#x}): injecting an abort",
                if a.write { "write" } else { "read" }, a.width, a.gpa);
        }
        self.inject(vcpu, Exception::DataAbort, a.gpa.0)
    }

    /// WFI: block the vCPU until an interrupt is pending for it or its
    /// virtual timer is due. WFE resumes at once (no event tracking).
    fn wait(&mut self, vcpu: usize, wfe: bool, len: u64) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        self.hv.read_regs(vcpu, 1, &mut regs)?;
        let resume_pc = regs.pc().wrapping_add(len);
        let deadline = if wfe { None } else { self.vtimer_deadline(vcpu)? };
        let due = deadline.is_some_and(|d| d <= self.hv.now());
        let no_timer = deadline.is_some() && self.config.timer_channel.is_none();
        if wfe || due || no_timer || self.gic.has_pending(vcpu) {
            regs.set_pc(resume_pc);
            self.hv.write_regs(vcpu, false, 1, &regs)?;
            return Ok(RESUME);
        }
        // Stop it rather than leave its fault unanswered: a pending reply
        // would be cancelled (with a kernel warning) by the VMM's next wait.
        log::trace!(target: "cpu", "vCPU {vcpu}: WFI, wake-up deadline {deadline:?}");
        self.hv.suspend(vcpu)?;
        self.vcpus[vcpu] = VcpuState::Waiting { resume_pc, deadline };
        self.rearm();
        Ok(None)
    }

    /// When the vCPU's virtual timer fires, in physical counter ticks.
    fn vtimer_deadline(&mut self, vcpu: usize) -> Result<Option<u64>, Error> {
        let ctl = self.hv.read_reg(vcpu, VcpuReg::CntvCtl)?;
        // ENABLE set and IMASK clear: the timer will raise its interrupt.
        if ctl & 0b11 != 0b01 {
            return Ok(None);
        }
        let cval = self.hv.read_reg(vcpu, VcpuReg::CntvCval)?;
        let offset = match self.cntvoff[vcpu] {
            Some(offset) if !crate::sel4::config::VTIMER_UPDATE_VOFFSET => offset,
            _ => {
                let offset = self.hv.read_reg(vcpu, VcpuReg::Cntvoff)?;
                self.cntvoff[vcpu] = Some(offset);
                offset
            }
        };
        Ok(Some(cval.wrapping_add(offset)))
    }

    /// Programs the wake-up timer for the earliest waiting vCPU.
    fn rearm(&mut self) {
        let next = self.vcpus[..self.config.num_vcpus]
            .iter()
            .filter_map(|s| match s {
                VcpuState::Waiting { deadline, .. } => *deadline,
                _ => None,
            })
            .min();
        self.hv.set_wakeup(next);
    }

    fn timer_fired(&mut self) {
        self.hv.set_wakeup(None);
        if let Some(ch) = self.config.timer_channel {
            if let Err(e) = self.hv.ack_irq(ch) {
                log::error!(target: "irq", "timer IRQ ack failed: {e}");
            }
        }
        let now = self.hv.now();
        let mut due = VcpuMask::default();
        for (i, s) in self.vcpus[..self.config.num_vcpus].iter().enumerate() {
            if let VcpuState::Waiting { deadline: Some(d), .. } = s {
                if *d <= now {
                    due.insert(i);
                }
            }
        }
        self.wake(due);
        self.rearm();
    }

    /// Resumes every vCPU in `mask` that is waiting in WFI.
    fn wake(&mut self, mask: VcpuMask) {
        let mut any = false;
        for vcpu in mask.iter().filter(|&v| v < self.config.num_vcpus) {
            if let VcpuState::Waiting { resume_pc, .. } = self.vcpus[vcpu] {
                let mut regs = UserContext::default();
                regs.set_pc(resume_pc);
                match self.hv.write_regs(vcpu, true, 1, &regs) {
                    Ok(()) => self.vcpus[vcpu] = VcpuState::Running,
                    Err(e) => log::error!(target: "cpu", "cannot wake vCPU {vcpu}: {e}"),
                }
                any = true;
            }
        }
        if any {
            self.rearm();
        }
    }

    fn smc(&mut self, vcpu: usize, len: u64) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        let count = words_to_cover(7);
        self.hv.read_regs(vcpu, count, &mut regs)?;
        let args = core::array::from_fn(|i| regs.gpr(i as u8));
        let Some(x0) = self.firmware_call(vcpu, args)? else { return Ok(None) };
        regs.set_gpr(0, x0);
        regs.set_pc(regs.pc().wrapping_add(len));
        self.hv.write_regs(vcpu, false, words_to_cover(0), &regs)?;
        Ok(RESUME)
    }

    /// A guest HVC arrives as an UnknownSyscall; the reply's registers
    /// MR0-7 become x0-x7 and MR8 the PC.
    fn hvc(&mut self, vcpu: usize, args: [u64; 8], pc: u64) -> Result<Option<MessageInfo>, Error> {
        let Some(x0) = self.firmware_call(vcpu, args)? else { return Ok(None) };
        self.hv.set_mr(0, x0);
        for (i, &arg) in args.iter().enumerate().skip(1) {
            self.hv.set_mr(i, arg);
        }
        self.hv.set_mr(8, pc.wrapping_add(4));
        Ok(Some(MessageInfo::new(0, 9)))
    }

    /// An SMCCC call (SMC or HVC conduit). `Some(x0)` continues the caller.
    fn firmware_call(&mut self, vcpu: usize, args: [u64; 8]) -> Result<Option<u64>, Error> {
        if !psci::is_psci(args[0]) {
            log::debug!(target: "psci", "vCPU {vcpu}: SMCCC call {:#x} not supported", args[0]);
            return Ok(Some(psci::ret::NOT_SUPPORTED));
        }
        let view = PsciView { vm_vcpus: &self.vcpus[..self.config.num_vcpus], ram: &self.ram };
        match psci::handle(args[0], [args[1], args[2], args[3]], &view) {
            Action::Return(value) => Ok(Some(value)),
            Action::CpuOn { target, entry, context_id } => {
                log::info!(target: "psci", "CPU_ON vCPU {target} at {entry:#x}");
                match self.start_vcpu(target, entry, context_id) {
                    Ok(()) => Ok(Some(psci::ret::SUCCESS)),
                    Err(e) => {
                        log::error!(target: "psci", "CPU_ON vCPU {target}: {e}");
                        Ok(Some(-6i64 as u64)) // INTERNAL_FAILURE
                    }
                }
            }
            Action::CpuOff => {
                log::info!(target: "psci", "CPU_OFF vCPU {vcpu}");
                self.hv.suspend(vcpu)?;
                self.vcpus[vcpu] = VcpuState::Off;
                Ok(None)
            }
            Action::SystemOff => {
                self.power_off();
                Ok(None)
            }
            Action::SystemReset => {
                self.reset();
                Ok(None)
            }
        }
    }

    fn stop_all(&mut self) {
        for vcpu in 0..self.config.num_vcpus {
            if let Err(e) = self.hv.suspend(vcpu) {
                log::error!(target: "cpu", "cannot stop vCPU {vcpu}: {e}");
            }
            self.vcpus[vcpu] = VcpuState::Off;
        }
        self.hv.set_wakeup(None);
    }

    /// PSCI SYSTEM_OFF: stop the guest, and the machine if the firmware can.
    pub fn power_off(&mut self) {
        self.stop_all();
        log::info!(target: "psci", "guest powered off (PSCI SYSTEM_OFF)");
        self.hv.firmware_power_off();
    }

    /// PSCI SYSTEM_RESET: stop the vCPUs, clear RAM, reset the vGIC and
    /// interrupt sources, load the images again and boot.
    pub fn reset(&mut self) {
        log::info!(target: "psci", "guest reset (PSCI SYSTEM_RESET): rebooting");
        self.stop_all();
        self.gic.reset();
        self.devices.reset();
        for p in self.config.passthrough {
            let _ = self.hv.ack_irq(p.channel);
        }
        for vcpu in 0..self.config.num_vcpus {
            let _ = self.hv.ack_vppi(vcpu, VTIMER_IRQ as u64);
        }
        if let Err(e) = self.ram.fill(self.ram.base(), self.ram.size(), 0) {
            log::error!(target: "boot", "cannot clear guest RAM: {e}");
        }
        if let Err(e) = self.boot() {
            log::error!(target: "boot", "reboot failed: {e}");
        }
    }

    fn maintenance(
        &mut self,
        vcpu: usize,
        lr: Option<usize>,
    ) -> Result<Option<MessageInfo>, Error> {
        if let Some(irq) = self.gic.maintenance(vcpu, lr, &mut Lrs(&mut self.hv)) {
            if irq == VTIMER_IRQ {
                self.hv.ack_vppi(vcpu, VTIMER_IRQ as u64)?;
            } else if let Some(p) = self.config.passthrough.iter().find(|p| p.irq == irq) {
                self.hv.ack_irq(p.channel)?;
            }
        }
        Ok(RESUME)
    }

    fn vppi(&mut self, vcpu: usize, irq: u32) -> Result<Option<MessageInfo>, Error> {
        let woken = self.gic.set_pending(vcpu, irq, &mut Lrs(&mut self.hv));
        self.wake(woken);
        Ok(RESUME)
    }

    /// Trapped system registers: reads as zero, writes ignored.
    fn sysreg(
        &mut self,
        vcpu: usize,
        access: exit::SysRegAccess,
    ) -> Result<Option<MessageInfo>, Error> {
        if self.bad_guest.allow() {
            log::warn!(target: "cpu", "vCPU {vcpu}: trapped system register {:?} ({}): RAZ/WI",
                access.encoding, if access.read { "read" } else { "write" });
        }
        let mut regs = UserContext::default();
        let count = if access.read { words_to_cover(access.reg) } else { 1 };
        self.hv.read_regs(vcpu, count, &mut regs)?;
        if access.read {
            regs.set_gpr(access.reg, 0);
        }
        regs.set_pc(regs.pc().wrapping_add(4));
        self.hv.write_regs(vcpu, false, count, &regs)?;
        Ok(RESUME)
    }

    /// Takes a synchronous exception to the guest's EL1 vector table, as
    /// the hardware would (Arm ARM D1.10): ELR/SPSR/ESR/FAR_EL1 set, PC at
    /// VBAR_EL1 + the vector for the current or lower EL, PSTATE EL1h masked.
    fn inject(
        &mut self,
        vcpu: usize,
        kind: Exception,
        far: u64,
    ) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        self.hv.read_regs(vcpu, 3, &mut regs)?;
        let spsr = regs.words[crate::sel4::user_context::SPSR];
        let vbar = self.hv.read_reg(vcpu, VcpuReg::Vbar)?;
        let from_el0 = spsr & 0b1100 == 0;
        let vector = match (from_el0, spsr & 1) {
            (true, _) => 0x400,  // lower EL, AArch64
            (false, 0) => 0x000, // current EL with SP_EL0
            (false, _) => 0x200, // current EL with SP_ELx
        };
        let class = kind.class(from_el0);
        let iss = match kind {
            Exception::Undefined => 0,
            _ => 0x10, // synchronous external abort
        };
        self.hv.write_reg(vcpu, VcpuReg::ElrEl1, regs.pc())?;
        self.hv.write_reg(vcpu, VcpuReg::SpsrEl1, spsr)?;
        self.hv.write_reg(vcpu, VcpuReg::Esr, (class << 26) | (1 << 25) | iss)?;
        if kind != Exception::Undefined {
            self.hv.write_reg(vcpu, VcpuReg::Far, far)?;
        }
        regs.set_pc(vbar.wrapping_add(vector));
        regs.words[crate::sel4::user_context::SPSR] = SPSR_EL1H_MASKED;
        self.hv.write_regs(vcpu, false, 3, &regs)?;
        Ok(RESUME)
    }
}

/// Exceptions the VMM gives a guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Exception {
    DataAbort,
    PrefetchAbort,
    Undefined,
}

impl Exception {
    fn class(self, from_lower: bool) -> u64 {
        match (self, from_lower) {
            (Exception::DataAbort, true) => ec::DABT_LOWER,
            (Exception::DataAbort, false) => ec::DABT_LOWER + 1,
            (Exception::PrefetchAbort, true) => ec::IABT_LOWER,
            (Exception::PrefetchAbort, false) => ec::IABT_LOWER + 1,
            (Exception::Undefined, _) => ec::UNKNOWN,
        }
    }
}

fn fault_ip(fault: &Fault) -> u64 {
    match *fault {
        Fault::VmFault { ip, .. } => ip,
        Fault::UnknownSyscall { fault_ip, .. } | Fault::UserException { fault_ip, .. } => fault_ip,
        _ => 0,
    }
}

fn vcpu_reg(i: usize) -> VcpuReg {
    use VcpuReg::*;
    const ALL: [VcpuReg; VCPU_REGS] = [
        Sctlr, Cpacr, Ttbr0, Ttbr1, Tcr, Mair, Amair, Cidr, Actlr, Afsr0, Afsr1, Esr, Far, Par,
        Vbar, TpidrEl1, VmpidrEl2, SpEl1, ElrEl1, SpsrEl1, CntvCtl, CntvCval, Cntvoff, CntkctlEl1,
    ];
    ALL[i % VCPU_REGS]
}

struct PsciView<'v, 'r> {
    vm_vcpus: &'v [VcpuState],
    ram: &'v GuestRam<'r>,
}

impl psci::VmView for PsciView<'_, '_> {
    fn num_vcpus(&self) -> usize {
        self.vm_vcpus.len()
    }

    fn power_state(&self, vcpu: usize) -> PowerState {
        match self.vm_vcpus.get(vcpu) {
            Some(VcpuState::Off) | None => PowerState::Off,
            Some(_) => PowerState::On,
        }
    }

    fn is_ram(&self, gpa: u64) -> bool {
        self.ram.contains(Gpa(gpa), 4)
    }
}

#[cfg(test)]
mod tests;
