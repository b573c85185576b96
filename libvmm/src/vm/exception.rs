//! Exceptions the VMM gives the guest (aborts, undefined instructions)
//! and trapped system registers.

use super::exit::{ec, SysRegAccess};
use super::irq::Lrs;
use super::{Devices, Hypervisor, Vm, RESUME, SPSR_EL1H_MASKED};
use crate::sel4::user_context::words_to_cover;
use crate::sel4::{Error, MessageInfo, UserContext, VcpuReg};
use vgic::VcpuMask;

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// Trapped system registers. On GICv3, a write of ICC_SGI1R_EL1 (or
    /// ICC_SGI0R_EL1) sends the SGI and ICC_SRE_EL1 reads SRE set; any other
    /// register reads as zero and ignores writes.
    pub(super) fn sysreg(
        &mut self,
        vcpu: usize,
        access: SysRegAccess,
    ) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        let count = words_to_cover(access.reg);
        self.hv.read_regs(vcpu, count, &mut regs)?;
        let mut woken = VcpuMask::EMPTY;
        let mut known = true;
        if access.read {
            let value = self.gic.sysreg_read(access.encoding);
            known = value.is_some();
            regs.set_gpr(access.reg, value.unwrap_or(0));
        } else {
            let value = regs.gpr(access.reg);
            match self.gic.send_sgi(vcpu, access.encoding, value, &mut Lrs(&mut self.hv)) {
                Some(sent) => woken = sent,
                None => known = self.gic.sysreg_ignores_write(access.encoding),
            }
        }
        if !known && self.bad_guest.allow() {
            log::warn!(target: "cpu", "vCPU {vcpu}: trapped system register {:?} ({}): RAZ/WI",
                access.encoding, if access.read { "read" } else { "write" });
        }
        regs.set_pc(regs.pc().wrapping_add(4));
        self.hv.write_regs(vcpu, false, if access.read { count } else { 1 }, &regs)?;
        self.wake(woken);
        Ok(RESUME)
    }

    /// Takes a synchronous exception to the guest's EL1 vector table, as
    /// the hardware would (Arm ARM D1.10): ELR/SPSR/ESR/FAR_EL1 set, PC at
    /// VBAR_EL1 + the vector for the current or lower EL, PSTATE EL1h masked.
    pub(super) fn inject(
        &mut self,
        vcpu: usize,
        kind: Exception,
        far: u64,
    ) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        self.hv.read_regs(vcpu, 3, &mut regs)?;
        let spsr = regs.words[crate::sel4::user_context::SPSR];
        let vbar = self.hv.read_reg(vcpu, VcpuReg::Vbar)?;
        // SPSR.M[4] set: the guest was in AArch32 (only EL0 can be, under
        // an AArch64 EL1). Otherwise M[3:2] is the EL and M[0] the SP.
        let aarch32 = spsr & 0b1_0000 != 0;
        let from_el0 = aarch32 || spsr & 0b1100 == 0;
        let vector = match (aarch32, from_el0, spsr & 1) {
            (true, _, _) => 0x600,      // lower EL, AArch32
            (false, true, _) => 0x400,  // lower EL, AArch64
            (false, false, 0) => 0x000, // current EL with SP_EL0
            (false, false, _) => 0x200, // current EL with SP_ELx
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
pub(super) enum Exception {
    DataAbort,
    PrefetchAbort,
    Undefined,
}

impl Exception {
    pub(super) fn class(self, from_lower: bool) -> u64 {
        match (self, from_lower) {
            (Exception::DataAbort, true) => ec::DABT_LOWER,
            (Exception::DataAbort, false) => ec::DABT_LOWER + 1,
            (Exception::PrefetchAbort, true) => ec::IABT_LOWER,
            (Exception::PrefetchAbort, false) => ec::IABT_LOWER + 1,
            (Exception::Undefined, _) => ec::UNKNOWN,
        }
    }
}
