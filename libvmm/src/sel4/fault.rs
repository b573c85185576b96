//! Fault messages, decoded once into an enum.
//!
//! Labels and message-register layouts of seL4 16.0.0 on aarch64 with MCS and
//! hypervisor support (`shared_types.bf`, `src/arch/arm/api/faults.c`).

/// Fault type labels (`seL4_FaultType`).
pub mod fault_label {
    /// `seL4_Fault_CapFault`.
    pub const CAP_FAULT: u64 = 1;
    /// `seL4_Fault_UnknownSyscall`.
    pub const UNKNOWN_SYSCALL: u64 = 2;
    /// `seL4_Fault_UserException`.
    pub const USER_EXCEPTION: u64 = 3;
    /// `seL4_Fault_DebugException`.
    pub const DEBUG_EXCEPTION: u64 = 4;
    /// `seL4_Fault_Timeout`.
    pub const TIMEOUT: u64 = 5;
    /// `seL4_Fault_VMFault`.
    pub const VM_FAULT: u64 = 6;
    /// `seL4_Fault_VGICMaintenance`.
    pub const VGIC_MAINTENANCE: u64 = 7;
    /// `seL4_Fault_VCPUFault`.
    pub const VCPU_FAULT: u64 = 8;
    /// `seL4_Fault_VPPIEvent`.
    pub const VPPI_EVENT: u64 = 9;
}

/// A decoded fault message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// A capability lookup failed.
    CapFault {
        /// Faulting instruction.
        ip: u64,
        /// The cap address that failed.
        addr: u64,
    },
    /// A syscall number the kernel does not know; a guest `hvc` lands here.
    UnknownSyscall {
        /// x0-x7 at the time of the call.
        args: [u64; 8],
        /// Address of the `svc`/`hvc` instruction.
        fault_ip: u64,
        /// SP.
        sp: u64,
        /// ELR: the address of the next instruction.
        elr: u64,
        /// SPSR.
        spsr: u64,
        /// The syscall number (x7).
        syscall: u64,
    },
    /// An exception the kernel passes on, e.g. an undefined instruction.
    UserException {
        /// Faulting instruction.
        fault_ip: u64,
        /// SP.
        sp: u64,
        /// SPSR.
        spsr: u64,
        /// ESR on aarch64.
        number: u64,
        /// Always 0 on aarch64.
        code: u64,
    },
    /// A hardware debug event (debug configurations only).
    DebugException {
        /// Faulting instruction.
        fault_ip: u64,
        /// Why.
        reason: u64,
    },
    /// A scheduling-context timeout.
    Timeout {
        /// The timeout badge.
        data: u64,
    },
    /// A stage-2 fault: for a guest, an access to guest-physical memory that
    /// is not mapped.
    VmFault {
        /// Faulting instruction.
        ip: u64,
        /// Faulting (intermediate) physical address.
        addr: u64,
        /// True for an instruction fetch.
        prefetch: bool,
        /// The syndrome: ESR_EL2 for a guest.
        fsr: u64,
    },
    /// The guest EOIed a list register with maintenance set.
    VgicMaintenance {
        /// The list register, or `None` when the kernel could not tell.
        index: Option<u64>,
    },
    /// A trap to EL2 that is not a stage-2 fault (WFI, SMC, sysreg, ...).
    VcpuFault {
        /// The syndrome (ESR_EL2).
        hsr: u64,
    },
    /// A virtual PPI fired (27 = the virtual timer); masked until acked.
    VppiEvent {
        /// The interrupt number.
        irq: u64,
    },
    /// A label this decoder does not know.
    Unknown {
        /// The fault label.
        label: u64,
    },
}

impl Fault {
    /// Decodes a fault from its label and message registers. Missing
    /// registers read as 0; the kernel always sends them all.
    pub fn decode(label: u64, mrs: &[u64]) -> Fault {
        let mr = |i: usize| mrs.get(i).copied().unwrap_or(0);
        use fault_label::*;
        match label {
            CAP_FAULT => Fault::CapFault { ip: mr(0), addr: mr(1) },
            UNKNOWN_SYSCALL => Fault::UnknownSyscall {
                args: core::array::from_fn(mr),
                fault_ip: mr(8),
                sp: mr(9),
                elr: mr(10),
                spsr: mr(11),
                syscall: mr(12),
            },
            USER_EXCEPTION => Fault::UserException {
                fault_ip: mr(0),
                sp: mr(1),
                spsr: mr(2),
                number: mr(3),
                code: mr(4),
            },
            DEBUG_EXCEPTION => Fault::DebugException { fault_ip: mr(0), reason: mr(1) },
            TIMEOUT => Fault::Timeout { data: mr(0) },
            VM_FAULT => Fault::VmFault { ip: mr(0), addr: mr(1), prefetch: mr(2) != 0, fsr: mr(3) },
            VGIC_MAINTENANCE => {
                Fault::VgicMaintenance { index: if mr(0) == u64::MAX { None } else { Some(mr(0)) } }
            }
            VCPU_FAULT => Fault::VcpuFault { hsr: mr(0) },
            VPPI_EVENT => Fault::VppiEvent { irq: mr(0) },
            _ => Fault::Unknown { label },
        }
    }

    /// How many message registers the fault of `label` carries.
    pub const fn length(label: u64) -> usize {
        use fault_label::*;
        match label {
            CAP_FAULT => 7,
            UNKNOWN_SYSCALL => 13,
            USER_EXCEPTION => 5,
            DEBUG_EXCEPTION => 4,
            TIMEOUT => 2,
            VM_FAULT => 4,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_probed_guest_store_fault() {
        let f = Fault::decode(6, &[0x4000_0010, 0x0a00_0000, 0, 0x9381_0046]);
        assert_eq!(
            f,
            Fault::VmFault {
                ip: 0x4000_0010,
                addr: 0x0a00_0000,
                prefetch: false,
                fsr: 0x9381_0046
            }
        );
    }

    #[test]
    fn decodes_unknown_syscall_registers() {
        let mrs: [u64; 13] = core::array::from_fn(|i| i as u64 + 100);
        let Fault::UnknownSyscall { args, fault_ip, elr, syscall, .. } = Fault::decode(2, &mrs)
        else {
            panic!("wrong variant");
        };
        assert_eq!(args, [100, 101, 102, 103, 104, 105, 106, 107]);
        assert_eq!((fault_ip, elr, syscall), (108, 110, 112));
    }

    #[test]
    fn maintenance_without_index_is_none() {
        assert_eq!(Fault::decode(7, &[u64::MAX]), Fault::VgicMaintenance { index: None });
        assert_eq!(Fault::decode(7, &[2]), Fault::VgicMaintenance { index: Some(2) });
    }

    #[test]
    fn short_or_unknown_messages_do_not_panic() {
        assert_eq!(
            Fault::decode(6, &[]),
            Fault::VmFault { ip: 0, addr: 0, prefetch: false, fsr: 0 }
        );
        assert_eq!(Fault::decode(99, &[1, 2]), Fault::Unknown { label: 99 });
        assert_eq!(Fault::decode(8, &[0x5e00_0000]), Fault::VcpuFault { hsr: 0x5e00_0000 });
        assert_eq!(Fault::decode(9, &[27]), Fault::VppiEvent { irq: 27 });
    }
}
