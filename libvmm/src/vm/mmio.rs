//! The MMIO path: a guest load or store to the emulated GIC distributor or
//! one of the VM's `Devices`; anything else gets an abort.

use super::exception::Exception;
use super::exit::MmioAccess;
use super::irq::Lrs;
use super::{Devices, Hypervisor, Vm, RESUME};
use crate::sel4::user_context::{gpr_index, words_to_cover};
use crate::sel4::{Error, MessageInfo, UserContext};
use vgic::VcpuMask;

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// A load or store to the GIC distributor or one of `Devices`; to
    /// nothing, an abort. One register read and one write-back at most.
    pub(super) fn mmio(
        &mut self,
        vcpu: usize,
        ip: u64,
        a: MmioAccess,
    ) -> Result<Option<MessageInfo>, Error> {
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
