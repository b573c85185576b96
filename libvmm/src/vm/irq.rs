//! Interrupts into the guest: passthrough IRQs, emulated devices' SPIs,
//! the virtual timer's PPI, and list-register maintenance.

use super::ptimer::{PTIMER_IRQ, PTIMER_VCPU};
use super::{reset_stub, Devices, Hypervisor, Vm, RESUME, VTIMER_IRQ};
use crate::microkit::ChannelSet;
use crate::sel4::{Error, MessageInfo};
use vgic::{InjectError, ListRegisters};

/// The list registers, as the vGIC sees them.
pub(super) struct Lrs<'h, H: Hypervisor>(pub(super) &'h mut H);

impl<H: Hypervisor> ListRegisters for Lrs<'_, H> {
    fn inject(
        &mut self,
        vcpu: usize,
        index: usize,
        virq: u16,
        priority: u8,
        group: u8,
    ) -> Result<(), InjectError> {
        lr_result(self.0.inject_irq(vcpu, virq, priority, group, index as u8))
    }

    fn fill(
        &mut self,
        vcpu: usize,
        index: usize,
        virq: u16,
        priority: u8,
        group: u8,
    ) -> Result<(), InjectError> {
        lr_result(self.0.inject_irq_deferred(vcpu, virq, priority, group, index as u8))
    }
}

/// An InjectIRQ's answer as the vGIC takes it: `DeleteFirst` (the LR is
/// active) is `Busy`, anything else `Failed`.
fn lr_result(answer: Result<(), Error>) -> Result<(), InjectError> {
    match answer {
        Ok(()) => Ok(()),
        Err(Error::DeleteFirst) => Err(InjectError::Busy),
        Err(_) => Err(InjectError::Failed),
    }
}

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// Handles notifications: passthrough interrupts and the wake-up timer.
    pub fn handle_notified(&mut self, channels: ChannelSet) {
        self.poll_wakeups();
        for ch in channels.iter() {
            if Some(ch.id()) == self.config.timer.channel() {
                self.timer_fired();
            } else if let Some(p) = self.config.passthrough.iter().find(|p| p.channel == ch.id()) {
                let woken = self.gic.set_pending(0, p.irq, &mut Lrs(&mut self.hv));
                self.wake(woken);
            } else {
                log::warn!(target: "irq", "notification on channel {} that the VM does not use", ch.id());
            }
        }
    }

    /// Runs the devices' deferred work and raises what it owes.
    pub(super) fn poll_devices(&mut self) {
        let (mut irqs, mut n) = ([0u32; 4], 0);
        self.devices.poll(&mut self.ram, &mut |irq| {
            if let Some(slot) = irqs.get_mut(n) {
                *slot = irq;
                n += 1;
            }
        });
        for &irq in irqs.get(..n).unwrap_or(&[]) {
            self.raise_irq(irq);
        }
    }

    /// Raises interrupt `irq` (SPI) in the guest, e.g. for an emulated device.
    pub fn raise_irq(&mut self, irq: u32) {
        let woken = self.gic.set_pending(0, irq, &mut Lrs(&mut self.hv));
        log::trace!(target: "irq", "raise {irq}: wakes {woken:?}");
        self.wake(woken);
    }

    pub(super) fn maintenance(
        &mut self,
        vcpu: usize,
        lr: Option<usize>,
    ) -> Result<Option<MessageInfo>, Error> {
        if let Some(irq) = self.gic.maintenance(vcpu, lr, &mut Lrs(&mut self.hv)) {
            self.rearm_source(vcpu, irq)?;
        }
        self.gic_followup();
        Ok(RESUME)
    }

    /// Re-arms the source of `irq` once the guest is done with it: AckVPPI
    /// for the virtual timer, the seL4 IRQ ack for a passthrough IRQ and
    /// for the guest's physical timer (if its IRQ went to the guest).
    fn rearm_source(&mut self, vcpu: usize, irq: u32) -> Result<(), Error> {
        if irq == VTIMER_IRQ {
            self.hv.ack_vppi(vcpu, VTIMER_IRQ as u64)
        } else if irq == PTIMER_IRQ {
            if vcpu == PTIMER_VCPU {
                self.ack_guest_ptimer();
            }
            Ok(())
        } else if let Some(p) = self.config.passthrough.iter().find(|p| p.irq == irq) {
            self.hv.ack_irq(p.channel)
        } else {
            Ok(())
        }
    }

    /// Does what the vGIC left to the VMM: re-arms the sources of
    /// interrupts whose pending state the guest dropped without an EOI, and
    /// wakes vCPUs that got an interrupt while another vCPU was handled.
    pub(super) fn gic_followup(&mut self) {
        while let Some((vcpu, irq)) = self.gic.take_released() {
            log::debug!(target: "irq", "vCPU {vcpu}: irq {irq} cleared without EOI: re-arming");
            if let Err(e) = self.rearm_source(vcpu, irq) {
                log::error!(target: "irq", "cannot re-arm irq {irq}: {e}");
            }
        }
        let woken = self.gic.take_deferred_wakeups();
        if !woken.is_empty() {
            self.wake(woken);
        }
    }

    /// Empties every hardware list register of every vCPU (guest reset):
    /// nothing of the previous boot may reach the next one. An LR whose
    /// interrupt the guest still holds active cannot be emptied (seL4
    /// refuses it): its ID goes to the vCPU's reset stub, which deactivates
    /// it, and [`Vm::clear_stuck_lrs`] empties it when the stub is done.
    /// Call before the vGIC is reset (it knows what each LR held).
    pub(super) fn clear_list_registers(&mut self) {
        for vcpu in 0..self.config.num_vcpus {
            let (mut stuck, mut ids) = (0u16, [reset_stub::NO_IRQ; reset_stub::MAX_DEACTIVATE]);
            let mut n = 0;
            for index in 0..self.gic.num_lrs() {
                match Lrs(&mut self.hv).clear(vcpu, index) {
                    Ok(()) => {}
                    Err(InjectError::Busy) => {
                        let irq = self.gic.lr_irq(vcpu, index);
                        match (irq, ids.get_mut(n)) {
                            (Some(irq), Some(slot)) => {
                                log::debug!(target: "irq", "vCPU {vcpu}: LR {index} holds irq {irq} active: the reset stub deactivates it");
                                *slot = u64::from(irq);
                                n += 1;
                                stuck |= 1 << index;
                            }
                            _ => {
                                log::warn!(target: "irq", "vCPU {vcpu}: LR {index} stays active ({irq:?})")
                            }
                        }
                    }
                    Err(e) => {
                        log::warn!(target: "irq", "vCPU {vcpu}: cannot clear LR {index}: {e:?}")
                    }
                }
            }
            self.stuck_lrs[vcpu] = stuck;
            self.deactivate[vcpu] = ids;
        }
    }

    /// After `vcpu`'s reset stub deactivated them: empties the LRs that
    /// [`Vm::clear_list_registers`] could not.
    pub(super) fn clear_stuck_lrs(&mut self, vcpu: usize) {
        let stuck = core::mem::take(&mut self.stuck_lrs[vcpu]);
        self.deactivate[vcpu] = [reset_stub::NO_IRQ; reset_stub::MAX_DEACTIVATE];
        for index in (0..self.gic.num_lrs()).filter(|i| stuck & (1 << i) != 0) {
            if let Err(e) = Lrs(&mut self.hv).clear(vcpu, index) {
                log::warn!(target: "irq", "vCPU {vcpu}: LR {index} still busy after the reset stub: {e:?}");
            }
        }
    }

    pub(super) fn vppi(&mut self, vcpu: usize, irq: u32) -> Result<Option<MessageInfo>, Error> {
        self.poll_devices();
        let woken = self.gic.set_pending(vcpu, irq, &mut Lrs(&mut self.hv));
        self.wake(woken);
        Ok(RESUME)
    }
}
