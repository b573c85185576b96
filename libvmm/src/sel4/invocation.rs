//! Typed capabilities and the invocations a VMM needs, one method each.
//!
//! Each method encodes its message as the generated libsel4 stub would
//! (non-cap arguments packed low bit first into 64-bit words), performs
//! `seL4_Call`, and turns the reply label into `Result<_, Error>`. The
//! encodings are pure functions, tested on the host.

use super::config::label;
use super::message::{Error, MessageInfo};
use super::syscall::{self, Cptr};
use super::user_context::{UserContext, USER_CONTEXT_WORDS};

/// Corresponds to `seL4_VCPUReg`: registers of an ARM VCPU object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
#[allow(missing_docs)]
pub enum VcpuReg {
    Sctlr = 0,
    Cpacr = 1,
    Ttbr0 = 2,
    Ttbr1 = 3,
    Tcr = 4,
    Mair = 5,
    Amair = 6,
    Cidr = 7,
    Actlr = 8,
    Afsr0 = 9,
    Afsr1 = 10,
    Esr = 11,
    Far = 12,
    Par = 13,
    Vbar = 14,
    TpidrEl1 = 15,
    VmpidrEl2 = 16,
    SpEl1 = 17,
    ElrEl1 = 18,
    SpsrEl1 = 19,
    CntvCtl = 20,
    CntvCval = 21,
    Cntvoff = 22,
    CntkctlEl1 = 23,
}

fn invoke(cap: Cptr, label: u64, args: &[u64]) -> Result<(), Error> {
    for (i, &word) in args.iter().enumerate() {
        syscall::set_mr(i, word);
    }
    let reply = syscall::call(cap, MessageInfo::new(label, args.len()));
    Error::check(reply.label())
}

/// A TCB capability (`seL4_TCB`), e.g. a vCPU's thread at slot 266 + id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tcb(pub Cptr);

impl Tcb {
    /// Corresponds to `seL4_TCB_ReadRegisters`: reads the first `count`
    /// words (1..=36) of the thread's `seL4_UserContext` into `regs`.
    pub fn read_registers(self, count: usize, regs: &mut UserContext) -> Result<(), Error> {
        let count = count.clamp(1, USER_CONTEXT_WORDS);
        invoke(self.0, label::TCB_READ_REGISTERS, &[0, count as u64])?;
        for i in 0..count {
            regs.words[i] = syscall::get_mr(i);
        }
        Ok(())
    }

    /// Corresponds to `seL4_TCB_WriteRegisters`: writes the first `count`
    /// words of `regs` and, if `resume`, restarts the thread (which also
    /// cancels a pending fault reply).
    pub fn write_registers(
        self,
        resume: bool,
        count: usize,
        regs: &UserContext,
    ) -> Result<(), Error> {
        let count = count.clamp(1, USER_CONTEXT_WORDS);
        syscall::set_mr(0, resume as u64);
        syscall::set_mr(1, count as u64);
        for i in 0..count {
            syscall::set_mr(2 + i, regs.words[i]);
        }
        let reply = syscall::call(self.0, MessageInfo::new(label::TCB_WRITE_REGISTERS, 2 + count));
        Error::check(reply.label())
    }

    /// Corresponds to `seL4_TCB_Suspend`.
    pub fn suspend(self) -> Result<(), Error> {
        invoke(self.0, label::TCB_SUSPEND, &[])
    }

    /// Corresponds to `seL4_TCB_Resume`.
    pub fn resume(self) -> Result<(), Error> {
        invoke(self.0, label::TCB_RESUME, &[])
    }
}

/// An ARM VCPU capability (`seL4_ARM_VCPU`), slot 330 + id under Microkit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vcpu(pub Cptr);

/// The single word of `seL4_ARM_VCPU_InjectIRQ`:
/// `virq[15:0] | priority[23:16] | group[31:24] | index[39:32]`.
pub const fn inject_irq_word(virq: u16, priority: u8, group: u8, index: u8) -> u64 {
    virq as u64 | (priority as u64) << 16 | (group as u64) << 24 | (index as u64) << 32
}

impl Vcpu {
    /// Corresponds to `seL4_ARM_VCPU_InjectIRQ`: writes list register
    /// `index` with a pending `virq`. The kernel sets EOI maintenance on it.
    pub fn inject_irq(self, virq: u16, priority: u8, group: u8, index: u8) -> Result<(), Error> {
        self.inject_irq_word(inject_irq_word(virq, priority, group, index))
    }

    /// `seL4_ARM_VCPU_InjectIRQ` with its message word already encoded.
    pub fn inject_irq_word(self, word: u64) -> Result<(), Error> {
        invoke(self.0, label::ARM_VCPU_INJECT_IRQ, &[word])
    }

    /// Corresponds to `seL4_ARM_VCPU_ReadRegs`.
    pub fn read_reg(self, reg: VcpuReg) -> Result<u64, Error> {
        invoke(self.0, label::ARM_VCPU_READ_REG, &[reg as u64])?;
        Ok(syscall::get_mr(0))
    }

    /// Corresponds to `seL4_ARM_VCPU_WriteRegs`.
    pub fn write_reg(self, reg: VcpuReg, value: u64) -> Result<(), Error> {
        invoke(self.0, label::ARM_VCPU_WRITE_REG, &[reg as u64, value])
    }

    /// Corresponds to `seL4_ARM_VCPU_AckVPPI`: unmasks a virtual PPI (27).
    pub fn ack_vppi(self, irq: u64) -> Result<(), Error> {
        invoke(self.0, label::ARM_VCPU_ACK_VPPI, &[irq])
    }
}

/// An IRQ handler capability (`seL4_IRQHandler`), slot 138 + channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IrqHandler(pub Cptr);

impl IrqHandler {
    /// Corresponds to `seL4_IRQHandler_Ack`.
    pub fn ack(self) -> Result<(), Error> {
        invoke(self.0, label::IRQ_ACK_IRQ, &[])
    }
}

/// An ARM SMC capability (`seL4_ARM_SMC`), slot 7 when the PD has
/// `smc="true"`: forwards SMCs to the firmware.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArmSmc(pub Cptr);

impl ArmSmc {
    /// Corresponds to `seL4_ARM_SMC_Call`: x0-x7 in, x0-x7 out.
    pub fn call(self, args: [u64; 8]) -> Result<[u64; 8], Error> {
        invoke(self.0, label::ARM_SMC_CALL, &args)?;
        Ok(core::array::from_fn(syscall::get_mr))
    }
}

/// A notification capability (`seL4_Notification`), slot 10 + channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Notification(pub Cptr);

impl Notification {
    /// Corresponds to `seL4_Signal`.
    pub fn signal(self) {
        syscall::signal(self.0)
    }
}

/// An endpoint capability (`seL4_Endpoint`), slot 74 + channel for a
/// protected procedure call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Endpoint(pub Cptr);

impl Endpoint {
    /// Corresponds to `seL4_Call`.
    pub fn call(self, info: MessageInfo) -> MessageInfo {
        syscall::call(self.0, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_irq_packs_fields_like_the_stub() {
        assert_eq!(inject_irq_word(27, 0, 0, 0), 27);
        assert_eq!(inject_irq_word(0x3ff, 0x1f, 1, 3), 0x0003_011f_03ff);
    }

    #[test]
    fn vcpu_reg_numbers_match_sel4() {
        assert_eq!(VcpuReg::VmpidrEl2 as u64, 16);
        assert_eq!(VcpuReg::CntvCtl as u64, 20);
        assert_eq!(VcpuReg::CntkctlEl1 as u64, 23);
    }
}
