//! Test helpers: a fake list-register backend and setup shortcuts.

use crate::regs::{GICD_CTLR, GICD_ISENABLER, GICD_ITARGETSR, SPI_BASE};
use crate::{GicV2, InjectError, ListRegisters, VcpuMask, NUM_IRQS};

/// One recorded injection: (vcpu, index, virq, priority, group).
pub(crate) type Injection = (usize, usize, u16, u8, u8);

/// Records injects; can be told LRs are busy or that invocations fail.
#[derive(Default)]
pub(crate) struct FakeLrs {
    /// Successful injects, in order.
    pub(crate) injected: Vec<Injection>,
    /// (vcpu, index) pairs that report `Busy`.
    pub(crate) busy: Vec<(usize, usize)>,
    /// Every LR reports `Busy`.
    pub(crate) busy_all: bool,
    /// Every inject reports `Failed`.
    pub(crate) fail: bool,
    /// Successful injects ever (not cleared).
    pub(crate) total: usize,
    /// LRs emptied with `clear`: (vcpu, index).
    pub(crate) cleared: Vec<(usize, usize)>,
    /// Injects that came through `fill` (into an LR the guest cannot hold).
    pub(crate) fills: usize,
}

impl FakeLrs {
    pub(crate) fn new() -> FakeLrs {
        FakeLrs::default()
    }

    /// The virqs injected into `vcpu`, in order.
    pub(crate) fn virqs(&self, vcpu: usize) -> Vec<u16> {
        self.injected.iter().filter(|i| i.0 == vcpu).map(|i| i.2).collect()
    }

    /// (vcpu, index, virq) of the last inject.
    pub(crate) fn last(&self) -> Option<(usize, usize, u16)> {
        self.injected.last().map(|i| (i.0, i.1, i.2))
    }
}

impl ListRegisters for FakeLrs {
    fn inject(
        &mut self,
        vcpu: usize,
        index: usize,
        virq: u16,
        priority: u8,
        group: u8,
    ) -> Result<(), InjectError> {
        assert!(priority < 32 && group < 2, "bad LR fields");
        if self.fail {
            return Err(InjectError::Failed);
        }
        if self.busy_all || self.busy.contains(&(vcpu, index)) {
            return Err(InjectError::Busy);
        }
        // Keep the fuzz test's memory bounded.
        if self.injected.len() > 10_000 {
            self.injected.clear();
        }
        self.injected.push((vcpu, index, virq, priority, group));
        self.total += 1;
        Ok(())
    }

    fn fill(
        &mut self,
        vcpu: usize,
        index: usize,
        virq: u16,
        priority: u8,
        group: u8,
    ) -> Result<(), InjectError> {
        self.inject(vcpu, index, virq, priority, group)?;
        self.fills += 1;
        Ok(())
    }

    fn clear(&mut self, vcpu: usize, index: usize) -> Result<(), InjectError> {
        if self.fail {
            return Err(InjectError::Failed);
        }
        if self.busy_all || self.busy.contains(&(vcpu, index)) {
            return Err(InjectError::Busy);
        }
        if self.cleared.len() > 10_000 {
            self.cleared.clear();
        }
        self.cleared.push((vcpu, index));
        Ok(())
    }
}

/// A distributor with `vcpus` vCPUs and `lrs` LRs, enabled, every SPI
/// targeting vCPU 0 (what Linux sets up at boot).
pub(crate) fn on(vcpus: usize, lrs: usize) -> GicV2 {
    let mut g = GicV2::new(vcpus, lrs);
    let mut f = FakeLrs::new();
    g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
    for irq in (SPI_BASE..NUM_IRQS).step_by(4) {
        g.dist_write(0, GICD_ITARGETSR + irq as u64, 4, 0x0101_0101, &mut f);
    }
    g
}

/// Guest write to GICD_ISENABLERn enabling `irq` as `vcpu`.
pub(crate) fn enable_irq(g: &mut GicV2, vcpu: usize, irq: u32, f: &mut FakeLrs) -> VcpuMask {
    g.dist_write(vcpu, GICD_ISENABLER + u64::from(irq / 32) * 4, 4, 1 << (irq % 32), f)
}
