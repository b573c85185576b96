//! Shadow list registers, per-vCPU overflow queues and the delivery logic.
//!
//! A pending interrupt stays pending in the distributor while it is queued;
//! the queue only records the order in which interrupts are to be moved into
//! LRs once one is free. Moving an interrupt into an LR consumes its pending
//! state (the LR owns it) until the guest EOIs it and `maintenance` frees
//! the shadow again.

use crate::fifo::Fifo;
use crate::irq_regs::{IrqFrame, Sgis, V3_SGI_SOURCE};
use crate::regs::{NUM_SGIS, SPI_BASE};
use crate::state::{BitReg, IRQ_WORDS, LOWEST_PRIORITY};
use crate::{GicV2, InjectError, ListRegisters, VcpuMask, MAX_LRS, MAX_VCPUS, NUM_IRQS};

/// Interrupts whose pending state was dropped without an EOI: one bit per
/// interrupt, banked per vCPU for IDs 0-31.
#[derive(Clone)]
pub(crate) struct Released {
    any: bool,
    banked: [u32; MAX_VCPUS],
    spis: [u32; IRQ_WORDS],
}

impl Released {
    /// Nothing released.
    pub(crate) const NONE: Released =
        Released { any: false, banked: [0; MAX_VCPUS], spis: [0; IRQ_WORDS] };

    fn insert(&mut self, vcpu: usize, irq: usize) {
        let word =
            if irq < SPI_BASE { self.banked.get_mut(vcpu) } else { self.spis.get_mut(irq / 32) };
        if let Some(w) = word {
            *w |= 1 << (irq % 32);
            self.any = true;
        }
    }

    /// Removes and returns one entry: (vcpu, irq), vcpu 0 for an SPI.
    pub(crate) fn take(&mut self) -> Option<(usize, u32)> {
        if !self.any {
            return None;
        }
        let banked = self.banked.iter_mut().enumerate().map(|(v, w)| (v, 0, w));
        let spis = self.spis.iter_mut().enumerate().skip(1).map(|(n, w)| (0, n, w));
        for (vcpu, n, w) in banked.chain(spis) {
            if *w != 0 {
                let bit = w.trailing_zeros();
                *w &= *w - 1;
                return Some((vcpu, n as u32 * 32 + bit));
            }
        }
        self.any = false;
        None
    }
}

/// Shadow LRs and overflow queue of one vCPU.
#[derive(Clone)]
pub(crate) struct VcpuLrs {
    /// Interrupt held by each LR (None = free).
    pub(crate) shadow: [Option<u16>; MAX_LRS],
    /// The priority field each LR was written with.
    prio: [u8; MAX_LRS],
    /// For an SGI, the source vCPU of the pending instance each LR took
    /// (GICv2 keeps an SGI pending per source): where it goes back to if
    /// the LR gives it up unacknowledged.
    source: [u8; MAX_LRS],
    /// Interrupts waiting for a free LR, oldest first.
    pub(crate) queue: Fifo,
    /// The queue overflowed: some deliverable interrupt is neither queued
    /// nor in an LR, so scan the distributor once there is room again.
    rescan: bool,
}

impl VcpuLrs {
    /// Nothing in the LRs, nothing queued.
    pub(crate) const EMPTY: VcpuLrs = VcpuLrs {
        shadow: [None; MAX_LRS],
        prio: [0; MAX_LRS],
        source: [0; MAX_LRS],
        queue: Fifo::EMPTY,
        rescan: false,
    };
}

/// Result of trying to put an interrupt into a free LR.
enum Placed {
    /// It is in an LR now.
    Injected,
    /// Every LR is taken (or reported busy).
    NoFreeLr,
    /// The invocation failed.
    Failed,
}

impl GicV2 {
    fn vcpu_lrs(&self, vcpu: usize) -> Option<&VcpuLrs> {
        self.lrs.get(vcpu).filter(|_| vcpu < self.num_vcpus)
    }

    /// Is `irq` held by one of the LRs of `vcpu`?
    pub(crate) fn in_lr(&self, vcpu: usize, irq: usize) -> bool {
        self.vcpu_lrs(vcpu).is_some_and(|vl| {
            vl.shadow.iter().take(self.num_lrs).any(|s| s.map(usize::from) == Some(irq))
        })
    }

    /// Is `irq` queued on `vcpu`?
    fn is_queued(&self, vcpu: usize, irq: usize) -> bool {
        let Ok(id) = u16::try_from(irq) else { return false };
        self.vcpu_lrs(vcpu).is_some_and(|vl| vl.queue.contains(id))
    }

    /// The vCPUs whose state for `irq` is relevant: `vcpu` for IDs 0-31,
    /// every vCPU for an SPI.
    fn owners(&self, vcpu: usize, irq: usize) -> core::ops::Range<usize> {
        if irq < SPI_BASE {
            vcpu..vcpu.saturating_add(1)
        } else {
            0..self.num_vcpus
        }
    }

    /// Is `irq` (as seen by `vcpu`) sitting in an LR of any relevant vCPU?
    pub(crate) fn in_any_lr(&self, vcpu: usize, irq: usize) -> bool {
        self.owners(vcpu, irq).any(|v| self.in_lr(v, irq))
    }

    /// Is `irq` already on its way: in an LR or queued?
    fn owned(&self, vcpu: usize, irq: usize) -> bool {
        self.owners(vcpu, irq).any(|v| self.in_lr(v, irq) || self.is_queued(v, irq))
    }

    /// Removes `irq` (as seen by `vcpu`) from every queue it is in.
    pub(crate) fn unqueue(&mut self, vcpu: usize, irq: usize) {
        let Ok(id) = u16::try_from(irq) else { return };
        for v in self.owners(vcpu, irq) {
            if let Some(vl) = self.lrs.get_mut(v) {
                vl.queue.remove(id);
            }
        }
    }

    /// A bit per interrupt of word `n` held in an LR (as `vcpu` sees them).
    pub(crate) fn lr_word(&self, vcpu: usize, n: usize) -> u32 {
        let range = if n == 0 { vcpu..vcpu.saturating_add(1) } else { 0..self.num_vcpus };
        let mut word = 0;
        for vl in range.filter_map(|v| self.vcpu_lrs(v)) {
            for irq in vl.shadow.iter().take(self.num_lrs).flatten().map(|&i| usize::from(i)) {
                if irq / 32 == n {
                    word |= 1 << (irq % 32);
                }
            }
        }
        word
    }

    /// Writes `irq` into the first free LR of `vcpu` that is not busy.
    fn inject_free(&mut self, vcpu: usize, irq: usize, lrs: &mut impl ListRegisters) -> Placed {
        let Ok(virq) = u16::try_from(irq) else { return Placed::Failed };
        let priority = self.priority(vcpu, irq) >> 3;
        let group = u8::from(self.bit(vcpu, BitReg::Group, irq));
        for index in 0..self.num_lrs {
            let free = self.vcpu_lrs(vcpu).and_then(|vl| vl.shadow.get(index)) == Some(&None);
            if !free {
                continue;
            }
            match lrs.fill(vcpu, index, virq, priority, group) {
                Ok(()) => {
                    let source = self.consume_pending(vcpu, irq);
                    self.hold(vcpu, index, virq, priority, source);
                    return Placed::Injected;
                }
                Err(InjectError::Busy) => {
                    log::warn!(target: "irq", "vgic: vcpu {vcpu} LR {index} busy in hardware");
                }
                Err(InjectError::Failed) => {
                    log::warn!(target: "irq", "vgic: vcpu {vcpu} inject of irq {irq} failed");
                    return Placed::Failed;
                }
            }
        }
        Placed::NoFreeLr
    }

    /// Records that LR `index` of `vcpu` holds `virq` at `priority`, taken
    /// from `source` if it is an SGI.
    fn hold(&mut self, vcpu: usize, index: usize, virq: u16, priority: u8, source: u8) {
        if let Some(vl) = self.lrs.get_mut(vcpu) {
            if let (Some(s), Some(p), Some(src)) =
                (vl.shadow.get_mut(index), vl.prio.get_mut(index), vl.source.get_mut(index))
            {
                *s = Some(virq);
                *p = priority;
                *src = source;
            }
        }
    }

    /// The source vCPU of the instance of SGI `irq` an LR of `vcpu` holds.
    pub(crate) fn held_source(&self, vcpu: usize, irq: usize) -> Option<usize> {
        let index = self.lr_index(vcpu, irq)?;
        self.vcpu_lrs(vcpu)?.source.get(index).map(|&s| usize::from(s))
    }

    /// The LR of `vcpu` that holds `irq`.
    fn lr_index(&self, vcpu: usize, irq: usize) -> Option<usize> {
        let vl = self.vcpu_lrs(vcpu)?;
        vl.shadow.iter().take(self.num_lrs).position(|s| s.map(usize::from) == Some(irq))
    }

    /// Records that the pending state of `irq` (as `vcpu` sees it) was
    /// dropped without an EOI: the VMM must re-arm its source.
    pub(crate) fn release(&mut self, vcpu: usize, irq: usize) {
        self.released.insert(if irq < SPI_BASE { vcpu } else { 0 }, irq);
    }

    /// Takes `irq` (as `vcpu` sees it) out of the LR holding it, as the
    /// distributor no longer forwards it, unless the guest has acknowledged
    /// it (the LR is active: `Busy`; its EOI will come). Returns the vCPU
    /// whose LR was emptied.
    pub(crate) fn withdraw(
        &mut self,
        vcpu: usize,
        irq: usize,
        lrs: &mut impl ListRegisters,
    ) -> Option<usize> {
        for v in self.owners(vcpu, irq) {
            let Some(index) = self.lr_index(v, irq) else { continue };
            return match lrs.clear(v, index) {
                Ok(()) => {
                    if let Some(s) = self.lrs.get_mut(v).and_then(|vl| vl.shadow.get_mut(index)) {
                        *s = None;
                    }
                    Some(v)
                }
                Err(InjectError::Busy) => None,
                Err(InjectError::Failed) => {
                    log::warn!(target: "irq", "vgic: vcpu {v} cannot clear LR {index} (irq {irq})");
                    None
                }
            };
        }
        None
    }

    /// Takes `irq` out of its LR but leaves it pending in the distributor
    /// (disabled, or no longer active, or never signalled). A GICv2 SGI
    /// goes back to pending from the source its LR instance came from; a
    /// GICv3 one to its single pending bit (the SGI rule of frame `F`).
    /// SGIs get no exception: an LR the distributor no longer backs would
    /// survive the guest's ICENABLER and ICACTIVER writes (and its IGROUPR
    /// and CPENDSGIR ones), and keep being signalled or read as active.
    /// Returns vCPUs woken.
    pub(crate) fn withdraw_to_pending<F: IrqFrame>(
        &mut self,
        vcpu: usize,
        irq: usize,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let source = match F::VIEW.sgis {
            Sgis::PerSource if irq < NUM_SGIS => {
                let Some(source) = self.held_source(vcpu, irq) else { return VcpuMask::EMPTY };
                source
            }
            Sgis::PerSource => vcpu,
            Sgis::SingleBit => V3_SGI_SOURCE,
        };
        match self.withdraw(vcpu, irq, lrs) {
            Some(v) => {
                self.make_pending(vcpu, irq, source);
                self.refill(v, lrs) | self.deliver(vcpu, irq, lrs)
            }
            None => VcpuMask::EMPTY,
        }
    }

    /// The priority or the group of `irq` changed: an LR holding it is
    /// rewritten (unless the guest has it active), so the CPU interface
    /// signals it as the distributor now says, and one now at the lowest
    /// priority or in a group the distributor does not forward goes back to
    /// the distributor; one that was held back is delivered.
    pub(crate) fn reprioritize<F: IrqFrame>(
        &mut self,
        vcpu: usize,
        irq: usize,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let priority = self.priority(vcpu, irq);
        if priority == LOWEST_PRIORITY || !self.forwarded(vcpu, irq) {
            return self.withdraw_to_pending::<F>(vcpu, irq, lrs);
        }
        let group = u8::from(self.bit(vcpu, BitReg::Group, irq));
        let Ok(virq) = u16::try_from(irq) else { return VcpuMask::EMPTY };
        for v in self.owners(vcpu, irq) {
            let Some(index) = self.lr_index(v, irq) else { continue };
            match lrs.inject(v, index, virq, priority >> 3, group) {
                Ok(()) => {
                    let source = self.held_source(v, irq).unwrap_or(0) as u8;
                    self.hold(v, index, virq, priority >> 3, source);
                }
                Err(InjectError::Busy) => {}
                Err(InjectError::Failed) => {
                    log::warn!(target: "irq", "vgic: vcpu {v} cannot rewrite LR {index} (irq {irq})");
                }
            }
            return VcpuMask::EMPTY;
        }
        self.deliver(vcpu, irq, lrs)
    }

    /// No LR of `target` is free: puts `irq` in place of the LR entry of
    /// the lowest priority below its own, if the guest has not acknowledged
    /// that one, which goes back to pending and queued. Without this, LRs
    /// full of interrupts the guest masks (GICV_PMR) would hold back
    /// higher-priority ones for good.
    fn preempt(&mut self, target: usize, irq: usize, lrs: &mut impl ListRegisters) -> Placed {
        let Ok(virq) = u16::try_from(irq) else { return Placed::Failed };
        let priority = self.priority(target, irq) >> 3;
        let group = u8::from(self.bit(target, BitReg::Group, irq));
        let Some(vl) = self.vcpu_lrs(target) else { return Placed::Failed };
        let mut candidates = [None; MAX_LRS];
        for (index, c) in candidates.iter_mut().enumerate().take(self.num_lrs) {
            let (held, p) = (vl.shadow[index], vl.prio[index]);
            *c =
                held.filter(|&h| usize::from(h) >= NUM_SGIS && p > priority).map(|h| (p, index, h));
        }
        // Lowest priority first.
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        for (_, index, evicted) in candidates.iter().flatten().copied() {
            match lrs.inject(target, index, virq, priority, group) {
                Ok(()) => {
                    let source = self.consume_pending(target, irq);
                    self.hold(target, index, virq, priority, source);
                    let evicted = usize::from(evicted);
                    self.make_pending(target, evicted, target);
                    if let Some(vl) = self.lrs.get_mut(target) {
                        if !vl.queue.push_back(evicted as u16) {
                            vl.rescan = true;
                        }
                    }
                    return Placed::Injected;
                }
                Err(InjectError::Busy) => continue,
                Err(InjectError::Failed) => return Placed::Failed,
            }
        }
        Placed::NoFreeLr
    }

    /// Delivers `irq` (as raised for `vcpu`) if it is deliverable and not
    /// already in an LR or queued. Returns the vCPU it went to.
    pub(crate) fn deliver(
        &mut self,
        vcpu: usize,
        irq: usize,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let Some(target) = self.route(vcpu, irq) else { return VcpuMask::EMPTY };
        if !self.deliverable(target, irq) || self.owned(target, irq) {
            return VcpuMask::EMPTY;
        }
        self.place(target, irq, lrs)
    }

    /// Puts a deliverable `irq` into a free LR of `target`, or queues it.
    fn place(&mut self, target: usize, irq: usize, lrs: &mut impl ListRegisters) -> VcpuMask {
        let Some(vl) = self.vcpu_lrs(target) else { return VcpuMask::EMPTY };
        let placed =
            if vl.queue.is_empty() { self.inject_free(target, irq, lrs) } else { Placed::NoFreeLr };
        let placed = match placed {
            Placed::NoFreeLr => self.preempt(target, irq, lrs),
            other => other,
        };
        if let Placed::Injected = placed {
            return VcpuMask::single(target);
        }
        let Ok(id) = u16::try_from(irq) else { return VcpuMask::EMPTY };
        let Some(vl) = self.lrs.get_mut(target) else { return VcpuMask::EMPTY };
        if vl.queue.push_back(id) {
            VcpuMask::single(target)
        } else {
            vl.rescan = true;
            log::warn!(target: "irq", "vgic: vcpu {target} queue full, irq {irq} stays pending");
            VcpuMask::EMPTY
        }
    }

    /// Moves queued interrupts of `vcpu` into its free LRs, oldest first.
    /// Entries no longer deliverable are dropped (they stay pending in the
    /// distributor if they still are); a retargeted SPI moves to its new
    /// target. Returns the vCPUs that received interrupts.
    pub(crate) fn refill(&mut self, vcpu: usize, lrs: &mut impl ListRegisters) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        while let Some(front) = self.vcpu_lrs(vcpu).and_then(|vl| vl.queue.front()) {
            if !self.has_free_lr(vcpu) {
                break;
            }
            let irq = usize::from(front);
            let ok = self.route(vcpu, irq) == Some(vcpu)
                && self.deliverable(vcpu, irq)
                && !self.in_any_lr(vcpu, irq);
            if ok {
                match self.inject_free(vcpu, irq, lrs) {
                    Placed::Injected => woken.insert(vcpu),
                    Placed::NoFreeLr | Placed::Failed => break,
                }
            }
            if let Some(vl) = self.lrs.get_mut(vcpu) {
                vl.queue.pop_front();
            }
            if !ok && irq >= SPI_BASE {
                woken |= self.deliver(vcpu, irq, lrs);
            }
        }
        let needs_scan = self.vcpu_lrs(vcpu).is_some_and(|vl| vl.rescan && !vl.queue.is_full());
        if needs_scan {
            woken |= self.rescan(vcpu, lrs);
        }
        woken
    }

    /// After a queue overflow: delivers every deliverable interrupt routed to
    /// `vcpu` that is neither in an LR nor queued.
    fn rescan(&mut self, vcpu: usize, lrs: &mut impl ListRegisters) -> VcpuMask {
        if let Some(vl) = self.lrs.get_mut(vcpu) {
            vl.rescan = false;
        }
        let mut woken = VcpuMask::EMPTY;
        for irq in 0..NUM_IRQS {
            if self.route(vcpu, irq) == Some(vcpu) {
                woken |= self.deliver(vcpu, irq, lrs);
            }
        }
        woken
    }

    fn has_free_lr(&self, vcpu: usize) -> bool {
        self.vcpu_lrs(vcpu)
            .is_some_and(|vl| vl.shadow.iter().take(self.num_lrs).any(Option::is_none))
    }

    /// Refills every vCPU that has a free LR and queued (or lost) work.
    pub(crate) fn settle(&mut self, lrs: &mut impl ListRegisters) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        for vcpu in 0..self.num_vcpus {
            let waiting = self.vcpu_lrs(vcpu).is_some_and(|vl| !vl.queue.is_empty() || vl.rescan);
            if waiting && self.has_free_lr(vcpu) {
                woken |= self.refill(vcpu, lrs);
            }
        }
        woken
    }

    /// The targets of SPI `irq` changed: takes it off queues of vCPUs it no
    /// longer goes to and delivers it to its new target.
    pub(crate) fn retarget(&mut self, irq: usize, lrs: &mut impl ListRegisters) -> VcpuMask {
        let Ok(id) = u16::try_from(irq) else { return VcpuMask::EMPTY };
        let route = self.route(0, irq);
        for v in 0..self.num_vcpus {
            if Some(v) != route {
                if let Some(vl) = self.lrs.get_mut(v) {
                    vl.queue.remove(id);
                }
            }
        }
        self.deliver(0, irq, lrs)
    }

    /// Delivers everything deliverable (after the distributor was enabled).
    pub(crate) fn deliver_all(&mut self, lrs: &mut impl ListRegisters) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        for vcpu in 0..self.num_vcpus {
            for irq in 0..SPI_BASE {
                woken |= self.deliver(vcpu, irq, lrs);
            }
        }
        for irq in SPI_BASE..NUM_IRQS {
            woken |= self.deliver(0, irq, lrs);
        }
        woken
    }

    /// `set_pending`: raises `irq` and delivers it.
    pub(crate) fn raise(
        &mut self,
        vcpu: usize,
        irq: u32,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let irq = match usize::try_from(irq) {
            Ok(i) if i < NUM_IRQS => i,
            _ => {
                log::warn!(target: "irq", "vgic: set_pending of irq {irq} out of range");
                return VcpuMask::EMPTY;
            }
        };
        if irq < SPI_BASE && vcpu >= self.num_vcpus {
            log::warn!(target: "irq", "vgic: set_pending of irq {irq} on absent vcpu {vcpu}");
            return VcpuMask::EMPTY;
        }
        let target = if irq < SPI_BASE { vcpu } else { 0 };
        self.make_pending(target, irq, vcpu);
        self.deliver(target, irq, lrs)
    }

    /// `maintenance`: frees LR `index` of `vcpu` and refills it.
    pub(crate) fn complete(
        &mut self,
        vcpu: usize,
        index: Option<usize>,
        lrs: &mut impl ListRegisters,
    ) -> Option<u32> {
        if vcpu >= self.num_vcpus {
            log::warn!(target: "irq", "vgic: maintenance for absent vcpu {vcpu}");
            return None;
        }
        let done = match index {
            Some(i) if i < self.num_lrs => {
                let slot = self.lrs.get_mut(vcpu).and_then(|vl| vl.shadow.get_mut(i));
                let done = slot.and_then(Option::take);
                if done.is_none() {
                    log::warn!(target: "irq", "vgic: vcpu {vcpu} maintenance for empty LR {i}");
                }
                done
            }
            Some(i) => {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} maintenance for LR {i} out of range");
                None
            }
            None => None,
        };
        let mut woken = VcpuMask::EMPTY;
        if let Some(irq) = done {
            // Raised again while it was in the LR: queue it behind the others.
            woken |= self.deliver(vcpu, usize::from(irq), lrs);
        }
        woken |= self.refill(vcpu, lrs);
        self.deferred_wake.0 |= woken.0 & !VcpuMask::single(vcpu).0;
        done.map(u32::from)
    }

    /// `has_pending`: an LR is taken or a deliverable interrupt is queued
    /// (or was dropped by an overflowing queue).
    pub(crate) fn vcpu_has_pending(&self, vcpu: usize) -> bool {
        let Some(vl) = self.vcpu_lrs(vcpu) else { return false };
        if vl.shadow.iter().take(self.num_lrs).any(Option::is_some) {
            return true;
        }
        let deliverable =
            |irq: usize| self.route(vcpu, irq) == Some(vcpu) && self.deliverable(vcpu, irq);
        if (0..vl.queue.len()).filter_map(|i| vl.queue.get(i)).any(|i| deliverable(usize::from(i)))
        {
            return true;
        }
        vl.rescan && (0..NUM_IRQS).any(deliverable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::{
        GICD_CPENDSGIR, GICD_CTLR, GICD_ICACTIVER, GICD_ICENABLER, GICD_ICPENDR, GICD_IGROUPR,
        GICD_IPRIORITYR, GICD_ISACTIVER, GICD_ITARGETSR, GICD_SGIR, GICD_SPENDSGIR,
    };
    use crate::testutil::{enable_irq, on, FakeLrs};
    use crate::QUEUE_LEN;

    #[test]
    fn overflow_queue_refills_in_fifo_order() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        for irq in 40..46 {
            enable_irq(&mut g, 0, irq, &mut f);
        }
        for irq in 40..46 {
            assert_eq!(g.set_pending(0, irq, &mut f), VcpuMask::single(0));
        }
        assert_eq!(f.virqs(0), vec![40, 41, 42, 43]);
        assert_eq!(g.queued(0), 2);
        assert_eq!(g.maintenance(0, Some(2), &mut f), Some(42));
        assert_eq!(f.last(), Some((0, 2, 44)));
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(40));
        assert_eq!(f.last(), Some((0, 0, 45)));
        assert_eq!(g.queued(0), 0);
        assert_eq!(g.lr_irq(0, 0), Some(45));
    }

    #[test]
    fn maintenance_none_frees_nothing_but_refills() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        for irq in 40..45 {
            enable_irq(&mut g, 0, irq, &mut f);
        }
        f.busy.push((0, 1));
        for irq in 40..45 {
            g.set_pending(0, irq, &mut f);
        }
        // LR 1 was busy in hardware, so 3 went in and 2 are queued.
        assert_eq!(f.virqs(0), vec![40, 41, 42]);
        assert_eq!(g.queued(0), 2);
        f.busy.clear();
        assert_eq!(g.maintenance(0, None, &mut f), None);
        assert_eq!(f.last(), Some((0, 1, 43)));
        assert_eq!((0..4).filter_map(|i| g.lr_irq(0, i)).count(), 4);
        assert_eq!(g.queued(0), 1);
    }

    #[test]
    fn maintenance_skips_disabled_and_cleared_entries() {
        let mut g = on(1, 1);
        let mut f = FakeLrs::new();
        for irq in 40..44 {
            enable_irq(&mut g, 0, irq, &mut f);
            g.set_pending(0, irq, &mut f);
        }
        assert_eq!(g.queued(0), 3);
        g.dist_write(0, GICD_ICENABLER + 4, 4, 1 << (41 - 32), &mut f);
        g.dist_write(0, GICD_ICPENDR + 4, 4, 1 << (42 - 32), &mut f);
        assert_eq!(g.queued(0), 2); // ICPENDR removed 42 from the queue
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(40));
        assert_eq!(f.last(), Some((0, 0, 43)));
        assert!(g.pending(0, 41) && !g.pending(0, 42));
        assert_eq!(g.queued(0), 0);
    }

    #[test]
    fn maintenance_redelivers_interrupt_raised_while_in_lr() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 27, &mut f);
        g.set_pending(0, 27, &mut f);
        g.set_pending(0, 27, &mut f);
        assert_eq!(f.virqs(0), vec![27]);
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(27));
        assert_eq!(f.virqs(0), vec![27, 27]);
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(27));
        assert!(!g.has_pending(0));
    }

    #[test]
    fn maintenance_out_of_range_is_harmless() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        assert_eq!(g.maintenance(0, Some(4), &mut f), None);
        assert_eq!(g.maintenance(0, Some(usize::MAX), &mut f), None);
        assert_eq!(g.maintenance(7, Some(0), &mut f), None);
        assert_eq!(g.maintenance(0, Some(1), &mut f), None);
    }

    #[test]
    fn has_pending_reports_lrs_and_queue() {
        let mut g = on(2, 1);
        let mut f = FakeLrs::new();
        assert!(!g.has_pending(0));
        enable_irq(&mut g, 0, 40, &mut f);
        enable_irq(&mut g, 0, 41, &mut f);
        g.set_pending(0, 40, &mut f);
        g.set_pending(0, 41, &mut f);
        assert!(g.has_pending(0) && !g.has_pending(1) && !g.has_pending(9));
        g.maintenance(0, Some(0), &mut f);
        assert!(g.has_pending(0)); // 41 moved into the LR
        g.maintenance(0, Some(0), &mut f);
        assert!(!g.has_pending(0));
    }

    #[test]
    fn has_pending_ignores_queued_entries_disabled_meanwhile() {
        let mut g = on(1, 1);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        enable_irq(&mut g, 0, 41, &mut f);
        g.set_pending(0, 40, &mut f);
        g.set_pending(0, 41, &mut f);
        g.dist_write(0, GICD_ICENABLER + 4, 4, 0b11 << 8, &mut f);
        g.maintenance(0, Some(0), &mut f);
        assert_eq!(g.queued(0), 0);
        assert!(!g.has_pending(0));
    }

    #[test]
    fn inject_failure_keeps_interrupt_queued() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        f.fail = true;
        assert_eq!(g.set_pending(0, 40, &mut f), VcpuMask::single(0));
        assert!(f.injected.is_empty());
        assert_eq!(g.queued(0), 1);
        assert!(g.pending(0, 40) && g.has_pending(0));
        f.fail = false;
        assert_eq!(g.retry(&mut f), VcpuMask::single(0));
        assert_eq!(f.virqs(0), vec![40]);
        assert_eq!(g.queued(0), 0);
    }

    #[test]
    fn all_lrs_busy_queues_interrupt() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        f.busy_all = true;
        g.set_pending(0, 40, &mut f);
        assert_eq!(g.queued(0), 1);
        f.busy_all = false;
        g.maintenance(0, None, &mut f);
        assert_eq!(f.virqs(0), vec![40]);
    }

    #[test]
    fn full_queue_keeps_interrupt_pending_and_rescans() {
        let mut g = on(1, 1);
        let mut f = FakeLrs::new();
        let n = QUEUE_LEN as u32 + 3;
        for irq in 32..32 + n {
            enable_irq(&mut g, 0, irq, &mut f);
            g.set_pending(0, irq, &mut f);
        }
        assert_eq!(g.queued(0), QUEUE_LEN);
        let last = 32 + n - 1;
        assert!(g.pending(0, last as usize));
        // Drain: every interrupt eventually reaches the LR, none is lost.
        let mut seen = vec![];
        while let Some(irq) = g.maintenance(0, Some(0), &mut f) {
            seen.push(irq);
        }
        assert_eq!(seen, (32..32 + n).collect::<Vec<_>>());
        assert!(!g.has_pending(0));
    }

    #[test]
    fn retargeted_spi_moves_to_new_target_on_refill() {
        let mut g = on(2, 1);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        enable_irq(&mut g, 0, 41, &mut f);
        g.set_pending(0, 40, &mut f);
        g.set_pending(0, 41, &mut f);
        assert_eq!(g.queued(0), 1);
        let woken = g.dist_write(0, GICD_ITARGETSR + 41, 1, 0b10, &mut f);
        assert_eq!(woken, VcpuMask::single(1));
        assert_eq!(f.last(), Some((1, 0, 41)));
        assert_eq!(g.queued(0), 0);
    }

    #[test]
    fn spi_in_lr_redelivered_to_new_target_after_eoi() {
        let mut g = on(2, 1);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        g.dist_write(0, GICD_ITARGETSR + 40, 1, 0b10, &mut f);
        g.set_pending(0, 40, &mut f);
        assert_eq!(f.virqs(1), Vec::<u16>::new());
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(40));
        assert_eq!(f.last(), Some((1, 0, 40)));
        assert_eq!(g.take_deferred_wakeups(), VcpuMask::single(1));
        assert_eq!(g.take_deferred_wakeups(), VcpuMask::EMPTY);
    }

    #[test]
    fn zero_lrs_queue_everything() {
        let mut g = on(1, 0);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        assert!(f.injected.is_empty());
        assert_eq!(g.queued(0), 1);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 1);
    }

    #[test]
    fn set_pending_rejects_bad_irq_and_vcpu() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        assert!(g.set_pending(0, NUM_IRQS as u32, &mut f).is_empty());
        assert!(g.set_pending(0, u32::MAX, &mut f).is_empty());
        assert!(g.set_pending(2, 20, &mut f).is_empty());
        assert!(f.injected.is_empty());
    }

    #[test]
    fn set_pending_disabled_irq_waits_for_enable() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        assert!(g.set_pending(0, 40, &mut f).is_empty());
        assert!(f.injected.is_empty() && !g.has_pending(0));
        assert_eq!(enable_irq(&mut g, 0, 40, &mut f), VcpuMask::single(0));
        assert_eq!(f.virqs(0), vec![40]);
    }

    fn set_priority(g: &mut GicV2, irq: u64, prio: u64, f: &mut FakeLrs) -> VcpuMask {
        g.dist_write(0, GICD_IPRIORITYR + irq, 1, prio, f)
    }

    #[test]
    fn lowest_priority_stays_pending_until_its_priority_rises() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        set_priority(&mut g, 40, 0xff, &mut f);
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        assert!(f.injected.is_empty(), "never signalled: not put in an LR");
        assert!(!g.has_pending(0), "WFI may sleep");
        assert_eq!(set_priority(&mut g, 40, 0xa0, &mut f), VcpuMask::single(0));
        assert_eq!(f.injected, [(0, 0, 40, 0xa0 >> 3, 0)]);
    }

    #[test]
    fn priority_change_rewrites_the_list_register() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        set_priority(&mut g, 40, 0x80, &mut f);
        assert_eq!(f.injected.last(), Some(&(0, 0, 40, 0x10, 0)));
        // Now at the lowest priority: out of the LR, still pending.
        set_priority(&mut g, 40, 0xff, &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        assert!(g.pending(0, 40) && g.lr_irq(0, 0).is_none() && !g.has_pending(0));
    }

    #[test]
    fn icpendr_empties_an_unacknowledged_lr_and_releases_the_source() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        g.dist_write(0, GICD_ICPENDR + 4, 4, 1 << 8, &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        assert_eq!(g.lr_irq(0, 0), None);
        assert!(!g.has_pending(0) && !g.pending(0, 40));
        assert_eq!(g.take_released(), Some((0, 40)));
        assert_eq!(g.take_released(), None);
    }

    #[test]
    fn icpendr_leaves_an_acknowledged_lr_to_its_eoi() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        f.busy.push((0, 0)); // the guest acknowledged it: active in hardware
        g.dist_write(0, GICD_ICPENDR + 4, 4, 1 << 8, &mut f);
        assert_eq!(g.lr_irq(0, 0), Some(40));
        assert_eq!(g.take_released(), None, "the EOI will re-arm it");
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(40));
    }

    #[test]
    fn icpendr_of_a_disabled_pending_interrupt_releases_it() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        g.set_pending(1, 27, &mut f);
        g.dist_write(1, GICD_ICPENDR, 4, 1 << 27, &mut f);
        assert_eq!(g.take_released(), Some((1, 27)));
        g.dist_write(1, GICD_ICPENDR, 4, 1 << 27, &mut f);
        assert_eq!(g.take_released(), None, "nothing was pending");
    }

    #[test]
    fn icenabler_empties_the_lr_and_keeps_the_interrupt_pending() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        g.dist_write(0, GICD_ICENABLER + 4, 4, 1 << 8, &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        assert!(g.pending(0, 40) && !g.has_pending(0));
        assert_eq!(g.take_released(), None);
        enable_irq(&mut g, 0, 40, &mut f);
        assert_eq!(f.virqs(0), vec![40, 40]);
    }

    /// vCPU 1 sends SGI `sgi` to vCPU 0, which has it enabled: it goes
    /// into LR 0 of vCPU 0.
    fn sgi_in_lr(g: &mut GicV2, f: &mut FakeLrs, sgi: u32) {
        enable_irq(g, 0, sgi, f);
        g.dist_write(1, GICD_SGIR, 4, (1 << 16) | u64::from(sgi), f);
        assert_eq!(g.lr_irq(0, 0), Some(sgi));
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + u64::from(sgi), 1), 0, "the LR took it");
    }

    #[test]
    fn icenabler_takes_an_sgi_out_of_its_lr_back_to_its_source() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        sgi_in_lr(&mut g, &mut f, 7);
        g.dist_write(0, GICD_ICENABLER, 4, 1 << 7, &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        assert_eq!(g.lr_irq(0, 0), None);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER, 4), 0);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 7, 1), 0b10, "pending from vCPU 1 again");
        assert!(!g.has_pending(0), "disabled: WFI may sleep");
        enable_irq(&mut g, 0, 7, &mut f);
        assert_eq!(f.virqs(0), vec![7, 7]);
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(7));
        assert!(!g.has_pending(0) && g.dist_read(0, GICD_SPENDSGIR + 4, 4) == 0);
    }

    #[test]
    fn icactiver_empties_the_lr_of_an_unacknowledged_sgi() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        sgi_in_lr(&mut g, &mut f, 8);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER, 4), 1 << 8);
        g.dist_write(0, GICD_ICACTIVER, 4, 1 << 8, &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        // Still enabled and pending from vCPU 1: delivered again.
        assert_eq!(f.virqs(0), vec![8, 8]);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 8, 1), 0);
        g.dist_write(0, GICD_CPENDSGIR + 8, 1, 0b10, &mut f);
        assert_eq!(g.lr_irq(0, 0), None);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER, 4), 0);
        assert!(!g.has_pending(0));
    }

    #[test]
    fn icactiver_leaves_an_acknowledged_sgi_to_its_eoi() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        sgi_in_lr(&mut g, &mut f, 1);
        f.busy.push((0, 0));
        g.dist_write(0, GICD_ICACTIVER, 4, 1 << 1, &mut f);
        assert_eq!(g.lr_irq(0, 0), Some(1));
        assert_eq!(g.maintenance(0, Some(0), &mut f), Some(1));
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR, 4), 0, "not made pending twice");
    }

    #[test]
    fn cpendsgir_empties_the_lr_only_for_the_source_it_holds() {
        let mut g = on(3, 4);
        let mut f = FakeLrs::new();
        sgi_in_lr(&mut g, &mut f, 3);
        g.dist_write(2, GICD_SGIR, 4, (1 << 16) | 3, &mut f);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 3, 1), 0b100);
        // Clearing vCPU 2's instance leaves vCPU 1's in the LR.
        g.dist_write(0, GICD_CPENDSGIR + 3, 1, 0b100, &mut f);
        assert_eq!(g.lr_irq(0, 0), Some(3));
        assert!(f.cleared.is_empty());
        // Clearing vCPU 1's empties the LR; nothing is left to deliver.
        g.dist_write(0, GICD_CPENDSGIR + 3, 1, 0b010, &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        assert_eq!(g.lr_irq(0, 0), None);
        assert!(!g.has_pending(0));
        assert_eq!(f.virqs(0), vec![3]);
    }

    #[test]
    fn cpendsgir_of_the_held_source_delivers_the_other_sources() {
        let mut g = on(3, 4);
        let mut f = FakeLrs::new();
        sgi_in_lr(&mut g, &mut f, 3);
        g.dist_write(2, GICD_SGIR, 4, (1 << 16) | 3, &mut f);
        g.dist_write(0, GICD_CPENDSGIR + 3, 1, 0b010, &mut f);
        // vCPU 2's instance takes the LR.
        assert_eq!(f.virqs(0), vec![3, 3]);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 3, 1), 0);
        g.dist_write(0, GICD_CPENDSGIR + 3, 1, 0b100, &mut f);
        assert_eq!(g.lr_irq(0, 0), None);
    }

    #[test]
    fn igroupr_rewrites_the_group_of_a_held_interrupt() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 3, &mut f);
        g.dist_write(0, GICD_IGROUPR, 4, 1 << 7, &mut f);
        sgi_in_lr(&mut g, &mut f, 7);
        enable_irq(&mut g, 0, 40, &mut f);
        g.dist_write(0, GICD_IGROUPR + 4, 4, 1 << 8, &mut f);
        g.set_pending(0, 40, &mut f);
        assert_eq!(f.injected, [(0, 0, 7, 0, 1), (0, 1, 40, 0, 1)]);
        assert_eq!(f.fills, 2, "empty LRs are filled (the VMM may defer those)");
        g.dist_write(0, GICD_IGROUPR, 4, 0, &mut f);
        g.dist_write(0, GICD_IGROUPR + 4, 4, 0, &mut f);
        assert_eq!(f.injected[2..], [(0, 0, 7, 0, 0), (0, 1, 40, 0, 0)]);
        assert_eq!(f.fills, 2, "a held LR is rewritten at once, never deferred");
        assert_eq!((g.lr_irq(0, 0), g.lr_irq(0, 1)), (Some(7), Some(40)));
        // The SGI keeps its source.
        g.dist_write(0, GICD_CPENDSGIR + 7, 1, 0b10, &mut f);
        assert_eq!(g.lr_irq(0, 0), None);
    }

    #[test]
    fn igroupr_to_a_disabled_group_takes_the_interrupt_out_of_its_lr() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        g.dist_write(0, GICD_IGROUPR + 4, 4, 1 << 8, &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        assert!(g.pending(0, 40) && !g.has_pending(0));
        g.dist_write(0, GICD_CTLR, 4, 3, &mut f);
        assert_eq!(f.injected.last(), Some(&(0, 0, 40, 0, 1)));
    }

    #[test]
    fn lrs_held_by_masked_interrupts_do_not_block_higher_priorities() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        for irq in 40..45 {
            set_priority(&mut g, irq, if irq < 44 { 0xf0 } else { 0x80 }, &mut f);
            enable_irq(&mut g, 0, irq as u32, &mut f);
            g.set_pending(0, irq as u32, &mut f);
        }
        // 44 took the place of one of the 0xf0 entries, which waits again.
        assert_eq!(f.injected.last().map(|i| (i.2, i.3)), Some((44, 0x10)));
        assert_eq!((0..4).filter_map(|i| g.lr_irq(0, i)).filter(|&i| i == 44).count(), 1);
        assert_eq!(g.queued(0), 1);
        let evicted = g.lrs[0].queue.front().unwrap();
        assert!(g.pending(0, usize::from(evicted)));
    }
}
