//! The MMIO path: a guest load or store to the emulated GIC (distributor,
//! GICv3 redistributors) or one of the VM's `Devices`; anything else gets
//! an abort.

use super::exception::Exception;
use super::exit::MmioAccess;
use super::irq::Lrs;
use super::{DataEndianness, Devices, Hypervisor, Vm, RESUMED};
use crate::sel4::user_context::{gpr_index, words_to_cover, SPSR};
use crate::sel4::{Error, MessageInfo, VcpuReg};
use vgic::VcpuMask;

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// A load or store to the GIC or one of `Devices`; to nothing, an
    /// abort. At most one register read and one write-back (none for a
    /// doorbell's value), plus SCTLR_EL1 under [`DataEndianness::FromSctlr`].
    /// The write-back also resumes the vCPU, last, so no reply is needed and
    /// a notification the devices deferred goes out with the VMM's wait
    /// (`seL4_NBSendRecv`): one system call fewer per doorbell.
    pub(super) fn mmio(
        &mut self,
        vcpu: usize,
        ip: u64,
        a: MmioAccess,
    ) -> Result<Option<MessageInfo>, Error> {
        let gic = self.gic.region(&self.config.gic, a.gpa.0);
        if a.write && gic.is_none() {
            if let Some(irq) = self.devices.doorbell(&mut self.ram, a.gpa, a.width) {
                if let Some(irq) = irq {
                    self.raise_irq(irq);
                }
                self.scratch.set_pc(ip.wrapping_add(a.instruction_len));
                self.hv.write_regs(vcpu, true, 1, &self.scratch)?;
                return Ok(RESUMED);
            }
        }
        // Only words `..count` of `scratch` are read or written below, each
        // loaded from the vCPU first (or the PC, set).
        let count = words_to_cover(a.reg);
        let stored = a.write && gpr_index(a.reg).is_some();
        if stored {
            self.hv.read_regs(vcpu, count, &mut self.scratch)?;
        }
        let big_endian = match self.endianness {
            DataEndianness::Little => false,
            DataEndianness::FromSctlr => self.big_endian(vcpu, if stored { count } else { 0 })?,
        };
        let stored_value = if stored { self.scratch.gpr(a.reg) } else { 0 };
        let value = swap_if(big_endian, a.store_value(stored_value), a.width);
        let (loaded, woken, irq) = match (gic, a.write) {
            (Some(region), true) => {
                let woken = self.gic.write(vcpu, region, a.width, value, &mut Lrs(&mut self.hv));
                (0, woken, None)
            }
            (Some(region), false) => {
                (self.gic.read(vcpu, region, a.width), VcpuMask::default(), None)
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
                self.hv.read_regs(vcpu, count, &mut self.scratch)?;
            }
            self.scratch.set_gpr(a.reg, a.load_value(swap_if(big_endian, loaded, a.width)));
        }
        self.wake(woken);
        if gic.is_some() && a.write {
            self.gic_followup();
        }
        if let Some(irq) = irq {
            self.raise_irq(irq);
        }
        self.scratch.set_pc(ip.wrapping_add(a.instruction_len));
        self.hv.write_regs(vcpu, true, write_count, &self.scratch)?;
        Ok(RESUMED)
    }

    /// Is the guest's data big-endian for this access? SCTLR_EL1.EE for
    /// EL1, E0E for EL0 (Arm ARM D19.2.118). The guest changes SCTLR_EL1
    /// without trapping, so it is read on each MMIO exit; SPSR (words
    /// 0-2 of `scratch`, of which `read` are loaded) only when EE and E0E differ.
    fn big_endian(&mut self, vcpu: usize, read: usize) -> Result<bool, Error> {
        let sctlr = self.hv.read_reg(vcpu, VcpuReg::Sctlr)?;
        let (ee, e0e) = (sctlr & SCTLR_EE != 0, sctlr & SCTLR_E0E != 0);
        if ee == e0e {
            return Ok(ee);
        }
        if read <= SPSR {
            self.hv.read_regs(vcpu, SPSR + 1, &mut self.scratch)?;
        }
        // SPSR.M[4]: AArch32 (EL0 only); else M[3:2] is the EL.
        let spsr = self.scratch.words[SPSR];
        let el0 = spsr & 0b1_0000 != 0 || spsr & 0b1100 == 0;
        Ok(if el0 { e0e } else { ee })
    }

    pub(super) fn no_device(
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
}

/// SCTLR_EL1.EE: EL1 data accesses are big-endian.
const SCTLR_EE: u64 = 1 << 25;
/// SCTLR_EL1.E0E: EL0 data accesses are big-endian.
const SCTLR_E0E: u64 = 1 << 24;

/// `value`'s low `width` bytes in the other byte order if `swap`.
fn swap_if(swap: bool, value: u64, width: u8) -> u64 {
    if !swap || width <= 1 || width > 8 {
        return value;
    }
    value.swap_bytes() >> (64 - 8 * u32::from(width))
}
