//! vCPU power and the guest's life cycle: boot, PSCI calls (over SMC or
//! HVC), CPU_ON/CPU_OFF, SYSTEM_OFF and SYSTEM_RESET.

use super::psci::{self, Action, PowerState};
use super::reset_stub;
use super::{
    Devices, Hypervisor, SystemOff, VcpuState, Vm, RESUME, SPSR_EL1H_MASKED, VCPU_REGS, VTIMER_IRQ,
};
use crate::guest_memory::{Gpa, GuestRam, OutOfRange};
use crate::linux::boot::{self, BootError};
use crate::sel4::user_context::words_to_cover;
use crate::sel4::{Error, MessageInfo, UserContext, VcpuReg};

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// Loads the images, then runs the [reset stub](super::reset_stub) on
    /// every vCPU; when the last one is done, vCPU 0 starts at the kernel's
    /// entry with x0 = the device tree. Other vCPUs wait for PSCI CPU_ON.
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
        self.layout = Some(layout);
        let mut stub = [0u8; reset_stub::MAX_LEN];
        let len = reset_stub::write_code(&self.config.gic, &mut stub);
        self.ram.write(layout.entry, &stub[..len])?;
        let x0 = reset_stub::argument(&self.config.gic);
        for vcpu in 0..self.config.num_vcpus {
            let ids = self.deactivate[vcpu];
            if let Err(e) = self.start_vcpu_with(vcpu, layout.entry.0, x0, &ids) {
                log::error!(target: "boot", "cannot start vCPU {vcpu}: {e}");
                return Err(BootError::OutOfRange(OutOfRange { gpa: layout.entry, len: 0 }));
            }
            self.in_reset_stub |= 1 << vcpu;
        }
        Ok(())
    }

    /// The reset stub's [`RESET_STUB_DONE`](reset_stub::RESET_STUB_DONE)
    /// call from `vcpu`, which is running it: the vCPU stops; after the
    /// last one, the kernel's first bytes go back and vCPU 0 starts there.
    fn reset_stub_done(&mut self, vcpu: usize) -> Result<Call, Error> {
        self.in_reset_stub &= !(1 << vcpu);
        self.hv.suspend(vcpu)?;
        self.vcpus[vcpu] = VcpuState::Off;
        self.clear_stuck_lrs(vcpu);
        let Some(layout) = self.layout.filter(|_| self.in_reset_stub == 0) else {
            return Ok(Call::Stopped);
        };
        let mut head = [0u8; reset_stub::MAX_LEN];
        let n = self.images.kernel.len().min(head.len());
        head[..n].copy_from_slice(&self.images.kernel[..n]);
        self.ram.write(layout.entry, &head).map_err(|_| Error::RangeError)?;
        self.start_vcpu(0, layout.entry.0, layout.dtb.0)?;
        Ok(Call::Stopped)
    }

    /// Bytes for `/chosen/rng-seed`, new on every boot. They come from the
    /// counter, which is not a secure source: a system that needs real
    /// entropy should patch its own seed in.
    pub(super) fn rng_seed(&self) -> [u8; 32] {
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
    pub(super) fn start_vcpu(&mut self, vcpu: usize, entry: u64, x0: u64) -> Result<(), Error> {
        self.start_vcpu_with(vcpu, entry, x0, &[])
    }

    /// As [`Vm::start_vcpu`], with x1, x2, ... = `args` (the others 0).
    fn start_vcpu_with(
        &mut self,
        vcpu: usize,
        entry: u64,
        x0: u64,
        args: &[u64],
    ) -> Result<(), Error> {
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
        for (n, &arg) in (1u8..).zip(args) {
            regs.set_gpr(n, arg);
        }
        let count = words_to_cover(3.max(args.len() as u8));
        self.give_ptimer();
        if let Err(e) = self.hv.write_regs(vcpu, true, count, &regs) {
            self.take_ptimer_if_idle();
            return Err(e);
        }
        self.vcpus[vcpu] = VcpuState::Running;
        Ok(())
    }

    pub(super) fn smc(&mut self, vcpu: usize, len: u64) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        let count = words_to_cover(7);
        self.hv.read_regs(vcpu, count, &mut regs)?;
        let args = core::array::from_fn(|i| regs.gpr(i as u8));
        let call = self.firmware_call(vcpu, args)?;
        let x0 = match call {
            Call::Return(x0) => x0,
            Call::Stopped => return Ok(None),
            Call::Suspend => psci::ret::SUCCESS,
        };
        regs.set_gpr(0, x0);
        regs.set_pc(regs.pc().wrapping_add(len));
        self.hv.write_regs(vcpu, false, words_to_cover(0), &regs)?;
        if call == Call::Suspend {
            return self.idle(vcpu, regs.pc());
        }
        Ok(RESUME)
    }

    /// A guest HVC arrives as an UnknownSyscall; the reply's registers
    /// MR0-7 become x0-x7 and MR8 the PC.
    pub(super) fn hvc(
        &mut self,
        vcpu: usize,
        args: [u64; 8],
        pc: u64,
    ) -> Result<Option<MessageInfo>, Error> {
        let x0 = match self.firmware_call(vcpu, args)? {
            Call::Return(x0) => x0,
            Call::Stopped => return Ok(None),
            Call::Suspend => {
                // Idle like WFI: the result goes into the registers, as a
                // blocked vCPU is resumed without a reply.
                let mut regs = UserContext::default();
                self.hv.read_regs(vcpu, words_to_cover(0), &mut regs)?;
                regs.set_gpr(0, psci::ret::SUCCESS);
                regs.set_pc(pc.wrapping_add(4));
                self.hv.write_regs(vcpu, false, words_to_cover(0), &regs)?;
                return self.idle(vcpu, pc.wrapping_add(4));
            }
        };
        self.hv.set_mr(0, x0);
        for (i, &arg) in args.iter().enumerate().skip(1) {
            self.hv.set_mr(i, arg);
        }
        self.hv.set_mr(8, pc.wrapping_add(4));
        Ok(Some(MessageInfo::new(0, 9)))
    }

    /// An SMCCC call (SMC or HVC conduit).
    pub(super) fn firmware_call(&mut self, vcpu: usize, args: [u64; 8]) -> Result<Call, Error> {
        let fid = psci::function_id(args[0]);
        if fid == u64::from(reset_stub::RESET_STUB_DONE) && self.in_reset_stub & (1 << vcpu) != 0 {
            return self.reset_stub_done(vcpu);
        }
        if !psci::is_psci(fid) {
            log::debug!(target: "psci", "vCPU {vcpu}: SMCCC call {:#x} not supported", args[0]);
            return Ok(Call::Return(psci::ret::NOT_SUPPORTED));
        }
        let view = PsciView { vm_vcpus: &self.vcpus[..self.config.num_vcpus], ram: &self.ram };
        match psci::handle(args[0], [args[1], args[2], args[3]], &view) {
            Action::Return(value) => Ok(Call::Return(value)),
            Action::CpuSuspend => Ok(Call::Suspend),
            Action::CpuOn { target, entry, context_id } => {
                log::info!(target: "psci", "CPU_ON vCPU {target} at {entry:#x}");
                match self.start_vcpu(target, entry, context_id) {
                    Ok(()) => Ok(Call::Return(psci::ret::SUCCESS)),
                    Err(e) => {
                        log::error!(target: "psci", "CPU_ON vCPU {target}: {e}");
                        Ok(Call::Return(-6i64 as u64)) // INTERNAL_FAILURE
                    }
                }
            }
            Action::CpuOff => {
                log::info!(target: "psci", "CPU_OFF vCPU {vcpu}");
                self.hv.suspend(vcpu)?;
                self.vcpus[vcpu] = VcpuState::Off;
                self.take_ptimer_if_idle();
                Ok(Call::Stopped)
            }
            Action::SystemOff => {
                self.power_off();
                Ok(Call::Stopped)
            }
            Action::SystemReset => {
                self.reset();
                Ok(Call::Stopped)
            }
        }
    }

    pub(super) fn stop_all(&mut self) {
        self.in_reset_stub = 0;
        for vcpu in 0..self.config.num_vcpus {
            if let Err(e) = self.hv.suspend(vcpu) {
                log::error!(target: "cpu", "cannot stop vCPU {vcpu}: {e}");
            }
            self.vcpus[vcpu] = VcpuState::Off;
        }
        // The VMM takes the timer back (saving and disarming the guest's);
        // nothing waits, so no wake-up is programmed.
        if !self.take_ptimer_if_idle() {
            self.rearm();
        }
    }

    /// PSCI SYSTEM_OFF: stop the guest; with [`SystemOff::Firmware`] also
    /// ask the firmware to power the machine off.
    pub fn power_off(&mut self) {
        // Work the devices deferred (console output held back to be sent
        // in batches) goes out before the guest stops.
        self.poll_devices();
        self.stop_all();
        match self.config.system_off {
            SystemOff::StopVm => {
                log::info!(target: "psci", "guest powered off (PSCI SYSTEM_OFF): VM stopped");
            }
            SystemOff::Firmware => {
                log::info!(target: "psci", "guest powered off (PSCI SYSTEM_OFF): powering off");
                self.hv.firmware_power_off();
            }
        }
    }

    /// PSCI SYSTEM_RESET: stop the vCPUs, clear RAM, reset the vGIC and
    /// interrupt sources, load the images again and boot.
    pub fn reset(&mut self) {
        self.poll_devices(); // as in power_off: what the old boot wrote goes out first
        log::info!(target: "psci", "guest reset (PSCI SYSTEM_RESET): rebooting");
        self.stop_all();
        self.clear_list_registers();
        self.gic.reset();
        self.reset_ptimer();
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
}

/// What a firmware call leaves the caller to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Call {
    /// Continue with this in x0.
    Return(u64),
    /// The caller was stopped (CPU_OFF, SYSTEM_OFF) or restarted (reset).
    Stopped,
    /// CPU_SUSPEND: idle like WFI, then continue with SUCCESS.
    Suspend,
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
