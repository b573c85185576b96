//! Decoding a vCPU exit: the seL4 fault becomes an [`Exit`], once.
//!
//! Syndrome layouts are those of ESR_EL2 (Arm ARM D17.2.37 "ESR_EL2").

use crate::guest_memory::Gpa;
use crate::sel4::Fault;

/// Exception classes (ESR_EL2.EC, bits 31:26) a VMM sees.
pub mod ec {
    /// Unknown reason (seL4 turns it into a UserException).
    pub const UNKNOWN: u64 = 0x00;
    /// WFI or WFE.
    pub const WFX: u64 = 0x01;
    /// HVC from AArch64 (seL4 delivers it as UnknownSyscall).
    pub const HVC64: u64 = 0x16;
    /// SMC from AArch64.
    pub const SMC64: u64 = 0x17;
    /// MSR, MRS or system instruction from AArch64.
    pub const SYSREG: u64 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u64 = 0x20;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u64 = 0x24;
}

/// Exception class of a syndrome.
pub const fn syndrome_ec(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

/// Length of the trapped instruction: 4, or 2 for a 16-bit T32 one (IL).
pub const fn instruction_len(esr: u64) -> u64 {
    if esr & (1 << 25) != 0 {
        4
    } else {
        2
    }
}

/// A guest load or store to an address no memory backs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioAccess {
    /// Guest-physical address.
    pub gpa: Gpa,
    /// Bytes: 1, 2, 4 or 8.
    pub width: u8,
    /// True for a store.
    pub write: bool,
    /// The transfer register (31 = XZR).
    pub reg: u8,
    /// Loads: sign-extend the value (SSE).
    pub sign_extend: bool,
    /// Loads: the register is 64-bit (SF); otherwise a W register.
    pub reg64: bool,
    /// Bytes to add to the PC to step over the instruction.
    pub instruction_len: u64,
}

impl MmioAccess {
    /// Decodes a data abort syndrome. `None` when ISV is clear: the
    /// instruction (e.g. a load pair or writeback form) is not described.
    pub const fn decode(gpa: u64, esr: u64) -> Option<MmioAccess> {
        if esr & (1 << 24) == 0 {
            return None;
        }
        Some(MmioAccess {
            gpa: Gpa(gpa),
            width: 1 << ((esr >> 22) & 3),
            write: esr & (1 << 6) != 0,
            reg: ((esr >> 16) & 0x1f) as u8,
            sign_extend: esr & (1 << 21) != 0,
            reg64: esr & (1 << 15) != 0,
            instruction_len: instruction_len(esr),
        })
    }

    /// The value a load writes to its register, from the `width`-byte value
    /// the device returned: masked, sign-extended if SSE, and cut to 32 bits
    /// for a W register.
    pub const fn load_value(&self, raw: u64) -> u64 {
        let bits = self.width as u32 * 8;
        let mut value = if bits >= 64 { raw } else { raw & ((1 << bits) - 1) };
        if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            value = (((value << shift) as i64) >> shift) as u64;
        }
        if !self.reg64 {
            value &= 0xffff_ffff;
        }
        value
    }

    /// The bytes a store writes, from its register's value.
    pub const fn store_value(&self, reg_value: u64) -> u64 {
        let bits = self.width as u32 * 8;
        if bits >= 64 {
            reg_value
        } else {
            reg_value & ((1 << bits) - 1)
        }
    }
}

/// A trapped MSR/MRS (EC 0x18), ISS decoded (Arm ARM D17.2.37, ISS for EC 0x18).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegAccess {
    /// Op0, Op1, CRn, CRm, Op2 packed as in the instruction: the register.
    pub encoding: (u8, u8, u8, u8, u8),
    /// True for MRS (a read).
    pub read: bool,
    /// The transfer register.
    pub reg: u8,
}

/// Why a vCPU stopped, decoded once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exit {
    /// A load or store the VMM must emulate.
    Mmio(MmioAccess),
    /// A data abort the VMM cannot emulate (no valid syndrome).
    UndecodableAbort {
        /// Faulting address.
        gpa: Gpa,
        /// The syndrome.
        esr: u64,
    },
    /// An instruction fetch from guest-physical memory that is not mapped.
    PrefetchAbort {
        /// Faulting address.
        gpa: Gpa,
        /// The syndrome.
        esr: u64,
    },
    /// WFI (`wfe` false) or WFE: idle until an interrupt.
    Wait {
        /// True for WFE.
        wfe: bool,
        /// Bytes to step over the instruction.
        instruction_len: u64,
    },
    /// SMC: a firmware call (PSCI); arguments are in x0-x7.
    Smc {
        /// Bytes to step over the instruction.
        instruction_len: u64,
    },
    /// HVC: a firmware call over the hypervisor conduit, args from the fault.
    Hvc {
        /// x0-x7.
        args: [u64; 8],
        /// Address of the HVC instruction.
        pc: u64,
    },
    /// A trapped system register access.
    SysReg(SysRegAccess),
    /// The guest EOIed a list register.
    VgicMaintenance {
        /// Its index, when the kernel knows it.
        lr: Option<usize>,
    },
    /// A virtual PPI fired (27: the virtual timer).
    Vppi {
        /// Interrupt id.
        irq: u32,
    },
    /// An instruction the hardware could not run (EC 0): undefined.
    Undefined {
        /// Faulting PC.
        pc: u64,
        /// The syndrome.
        esr: u64,
    },
    /// Anything else: an exception class the VMM does not handle.
    Unhandled {
        /// The syndrome or fault label.
        esr: u64,
    },
}

impl Exit {
    /// Decodes a fault from a vCPU.
    pub fn decode(fault: &Fault) -> Exit {
        match *fault {
            Fault::VmFault { addr, fsr, prefetch: true, .. } => {
                Exit::PrefetchAbort { gpa: Gpa(addr), esr: fsr }
            }
            Fault::VmFault { addr, fsr, .. } => match MmioAccess::decode(addr, fsr) {
                Some(access) if syndrome_ec(fsr) == ec::DABT_LOWER => Exit::Mmio(access),
                _ => Exit::UndecodableAbort { gpa: Gpa(addr), esr: fsr },
            },
            Fault::VcpuFault { hsr } => Self::decode_vcpu_fault(hsr),
            Fault::UnknownSyscall { args, fault_ip, .. } => Exit::Hvc { args, pc: fault_ip },
            Fault::VgicMaintenance { index } => {
                Exit::VgicMaintenance { lr: index.and_then(|i| usize::try_from(i).ok()) }
            }
            Fault::VppiEvent { irq } => Exit::Vppi { irq: irq as u32 },
            Fault::UserException { fault_ip, number, .. } => {
                Exit::Undefined { pc: fault_ip, esr: number }
            }
            Fault::Unknown { label } => Exit::Unhandled { esr: label },
            Fault::CapFault { .. } | Fault::DebugException { .. } | Fault::Timeout { .. } => {
                Exit::Unhandled { esr: 0 }
            }
        }
    }

    fn decode_vcpu_fault(hsr: u64) -> Exit {
        let len = instruction_len(hsr);
        match syndrome_ec(hsr) {
            // ISS bits 1:0 (TI): 0 WFI, 1 WFE, 2 WFIT, 3 WFET.
            ec::WFX => Exit::Wait { wfe: hsr & 1 != 0, instruction_len: len },
            ec::SMC64 => Exit::Smc { instruction_len: len },
            ec::SYSREG => Exit::SysReg(SysRegAccess {
                encoding: (
                    ((hsr >> 20) & 3) as u8,
                    ((hsr >> 14) & 7) as u8,
                    ((hsr >> 10) & 0xf) as u8,
                    ((hsr >> 1) & 0xf) as u8,
                    ((hsr >> 17) & 7) as u8,
                ),
                read: hsr & 1 != 0,
                reg: ((hsr >> 5) & 0x1f) as u8,
            }),
            _ => Exit::Unhandled { esr: hsr },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data-abort syndrome: ISV, SAS, SSE, SRT, SF, WnR, IL set.
    fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, write: bool) -> u64 {
        (ec::DABT_LOWER << 26)
            | (1 << 25)
            | (1 << 24)
            | (sas << 22)
            | ((sse as u64) << 21)
            | (srt << 16)
            | ((sf as u64) << 15)
            | ((write as u64) << 6)
            | 0x06
    }

    #[test]
    fn probed_store_and_load_syndromes_decode() {
        // `str w1, [x0]` and `ldr w3, [x0, #4]` seen by the seL4 probe.
        let store = MmioAccess::decode(0x0a00_0000, 0x9381_0046).unwrap();
        assert_eq!((store.width, store.write, store.reg), (4, true, 1));
        let load = MmioAccess::decode(0x0a00_0004, 0x9383_0006).unwrap();
        assert_eq!((load.width, load.write, load.reg), (4, false, 3));
        assert_eq!(load.instruction_len, 4);
    }

    #[test]
    fn every_width_and_register_decodes() {
        for sas in 0..4 {
            for srt in 0..32 {
                for write in [false, true] {
                    let a = MmioAccess::decode(0x1000, dabt(sas, false, srt, true, write)).unwrap();
                    assert_eq!(a.width, 1 << sas);
                    assert_eq!(a.reg as u64, srt);
                    assert_eq!(a.write, write);
                    assert_eq!(a.gpa, Gpa(0x1000));
                }
            }
        }
    }

    #[test]
    fn loads_are_masked_and_sign_extended() {
        let ldrb = MmioAccess::decode(0, dabt(0, false, 0, false, false)).unwrap();
        assert_eq!(ldrb.load_value(0x1234_5680), 0x80);
        let ldrsb_x = MmioAccess::decode(0, dabt(0, true, 0, true, false)).unwrap();
        assert_eq!(ldrsb_x.load_value(0x80), 0xffff_ffff_ffff_ff80);
        let ldrsb_w = MmioAccess::decode(0, dabt(0, true, 0, false, false)).unwrap();
        assert_eq!(ldrsb_w.load_value(0x80), 0xffff_ff80);
        let ldrsh_x = MmioAccess::decode(0, dabt(1, true, 0, true, false)).unwrap();
        assert_eq!(ldrsh_x.load_value(0x8001), 0xffff_ffff_ffff_8001);
        let ldrsw = MmioAccess::decode(0, dabt(2, true, 0, true, false)).unwrap();
        assert_eq!(ldrsw.load_value(0x8000_0000), 0xffff_ffff_8000_0000);
        let ldrsh_positive = MmioAccess::decode(0, dabt(1, true, 0, true, false)).unwrap();
        assert_eq!(ldrsh_positive.load_value(0x7fff), 0x7fff);
        let ldr_x = MmioAccess::decode(0, dabt(3, false, 0, true, false)).unwrap();
        assert_eq!(ldr_x.load_value(u64::MAX), u64::MAX);
        let ldr_w = MmioAccess::decode(0, dabt(2, false, 0, false, false)).unwrap();
        assert_eq!(ldr_w.load_value(u64::MAX), 0xffff_ffff);
    }

    #[test]
    fn stores_take_only_the_access_width() {
        let strh = MmioAccess::decode(0, dabt(1, false, 2, false, true)).unwrap();
        assert_eq!(strh.store_value(0x1122_3344_5566_7788), 0x7788);
        let str_x = MmioAccess::decode(0, dabt(3, false, 2, true, true)).unwrap();
        assert_eq!(str_x.store_value(0x1122_3344_5566_7788), 0x1122_3344_5566_7788);
    }

    #[test]
    fn abort_without_valid_syndrome_is_undecodable() {
        let esr = dabt(2, false, 1, false, true) & !(1 << 24);
        let fault = Fault::VmFault { ip: 0, addr: 0x900_0000, prefetch: false, fsr: esr };
        assert_eq!(Exit::decode(&fault), Exit::UndecodableAbort { gpa: Gpa(0x900_0000), esr });
    }

    #[test]
    fn prefetch_aborts_are_not_mmio() {
        let fault = Fault::VmFault { ip: 0, addr: 0x100, prefetch: true, fsr: 0x8200_0006 };
        assert!(matches!(Exit::decode(&fault), Exit::PrefetchAbort { .. }));
    }

    #[test]
    fn vcpu_faults_decode_by_class() {
        let wfi = Fault::VcpuFault { hsr: 0x07e0_0000 };
        assert_eq!(Exit::decode(&wfi), Exit::Wait { wfe: false, instruction_len: 4 });
        let wfe = Fault::VcpuFault { hsr: 0x07e0_0001 };
        assert_eq!(Exit::decode(&wfe), Exit::Wait { wfe: true, instruction_len: 4 });
        let smc = Fault::VcpuFault { hsr: 0x5e00_0000 };
        assert_eq!(Exit::decode(&smc), Exit::Smc { instruction_len: 4 });
        let other = Fault::VcpuFault { hsr: 0x2c << 26 };
        assert_eq!(Exit::decode(&other), Exit::Unhandled { esr: 0x2c << 26 });
    }

    #[test]
    fn sysreg_trap_names_register_and_direction() {
        // MRS x5, CNTPCT_EL0: op0=3 op1=3 CRn=14 CRm=0 op2=1, direction read.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (5 << 5) | 1;
        let hsr = (ec::SYSREG << 26) | (1 << 25) | iss;
        let Exit::SysReg(access) = Exit::decode(&Fault::VcpuFault { hsr }) else { panic!() };
        assert_eq!(access.encoding, (3, 3, 14, 0, 1));
        assert!(access.read);
        assert_eq!(access.reg, 5);
    }

    #[test]
    fn other_faults_decode() {
        assert_eq!(Exit::decode(&Fault::VppiEvent { irq: 27 }), Exit::Vppi { irq: 27 });
        assert_eq!(
            Exit::decode(&Fault::VgicMaintenance { index: Some(2) }),
            Exit::VgicMaintenance { lr: Some(2) }
        );
        let args = [0x8400_0000, 0, 0, 0, 0, 0, 0, 0];
        let hvc =
            Fault::UnknownSyscall { args, fault_ip: 0x40, sp: 0, elr: 0x44, spsr: 0, syscall: 0 };
        assert_eq!(Exit::decode(&hvc), Exit::Hvc { args, pc: 0x40 });
    }
}
