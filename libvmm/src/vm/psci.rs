//! PSCI 1.1 (Arm DEN0022) for the guest, over SMC or HVC: the call is
//! checked here and turned into an [`Action`] the VMM carries out.

/// Function ids (SMC32 `0x84..`, SMC64 `0xC4..`; DEN0022 table 5.1).
pub mod fid {
    /// PSCI_VERSION.
    pub const VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND (SMC32).
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// CPU_SUSPEND (SMC64).
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON (SMC32).
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// CPU_ON (SMC64).
    pub const CPU_ON_64: u32 = 0xc400_0003;
    /// AFFINITY_INFO (SMC32).
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// AFFINITY_INFO (SMC64).
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const FEATURES: u32 = 0x8400_000a;
}

/// Return codes (DEN0022 table 5.2), as the 64-bit x0 value.
pub mod ret {
    /// SUCCESS.
    pub const SUCCESS: u64 = 0;
    /// NOT_SUPPORTED (-1).
    pub const NOT_SUPPORTED: u64 = -1i64 as u64;
    /// INVALID_PARAMETERS (-2).
    pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
    /// ALREADY_ON (-4).
    pub const ALREADY_ON: u64 = -4i64 as u64;
    /// ON_PENDING (-5).
    pub const ON_PENDING: u64 = -5i64 as u64;
    /// INVALID_ADDRESS (-9).
    pub const INVALID_ADDRESS: u64 = -9i64 as u64;
}

/// Version 1.1: major in bits 31:16, minor in 15:0.
pub const VERSION_1_1: u64 = 0x0001_0001;

/// MIGRATE_INFO_TYPE 2: no trusted OS, or one that needs no migration.
pub const MIGRATE_NOT_REQUIRED: u64 = 2;

/// Power state of a vCPU as PSCI reports it (AFFINITY_INFO values).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PowerState {
    /// Running (AFFINITY_INFO 0).
    On = 0,
    /// Off (1).
    Off = 1,
    /// Being turned on (2).
    OnPending = 2,
}

/// What the VMM must know about the VM to check a call.
pub trait VmView {
    /// Number of vCPUs; vCPU `i` has MPIDR affinity `i` (Aff0).
    fn num_vcpus(&self) -> usize;
    /// Power state of vCPU `i` (`i < num_vcpus`).
    fn power_state(&self, vcpu: usize) -> PowerState;
    /// True if `gpa` is in guest RAM (a valid entry point).
    fn is_ram(&self, gpa: u64) -> bool;
}

/// What the VMM does for a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Put this in x0 and step over the call.
    Return(u64),
    /// Start vCPU `target` at `entry` (EL1h, MMU off) with x0 = `context_id`,
    /// then return SUCCESS to the caller.
    CpuOn {
        /// The vCPU to start.
        target: usize,
        /// Entry point (guest-physical).
        entry: u64,
        /// Passed in the target's x0.
        context_id: u64,
    },
    /// Stop the calling vCPU (no return).
    CpuOff,
    /// CPU_SUSPEND: idle the caller like WFI until an interrupt is pending
    /// for it, then return SUCCESS. A powerdown state is treated as standby,
    /// which DEN0022 allows (5.4.2: the call may return as from standby):
    /// `entry` and the context id go unused.
    CpuSuspend,
    /// Power the VM off.
    SystemOff,
    /// Restart the VM.
    SystemReset,
}

/// The function id of an SMCCC call from x0: for an SMC32/HVC32 call
/// (bit 30 of W0 clear) only W0 counts (SMCCC 1.4, 2.6: the upper half of
/// x0 is ignored); an SMC64 id is the whole register.
pub const fn function_id(x0: u64) -> u64 {
    if x0 & (1 << 30) == 0 {
        x0 & 0xffff_ffff
    } else {
        x0
    }
}

/// True if `function` is a PSCI function id (standard service, 0x00-0x1f).
/// Pass it through [`function_id`] first.
pub const fn is_psci(function: u64) -> bool {
    let f = function as u32;
    (f & 0xbfff_ffe0) == 0x8400_0000 && function >> 32 == 0
}

/// Handles PSCI call `function` with arguments `args` (x1-x3).
pub fn handle(function: u64, args: [u64; 3], vm: &impl VmView) -> Action {
    let function = function_id(function);
    if function >> 32 != 0 {
        return Action::Return(ret::NOT_SUPPORTED);
    }
    let smc64 = function & (1 << 30) != 0;
    // SMC32 calls pass 32-bit arguments: the upper halves are ignored.
    let arg = |i: usize| if smc64 { args[i] } else { args[i] & 0xffff_ffff };
    match function as u32 {
        fid::VERSION => Action::Return(VERSION_1_1),
        fid::FEATURES => Action::Return(features(arg(0))),
        fid::MIGRATE_INFO_TYPE => Action::Return(MIGRATE_NOT_REQUIRED),
        fid::CPU_OFF => Action::CpuOff,
        fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => cpu_suspend(arg(0), arg(1), vm),
        fid::CPU_ON_32 | fid::CPU_ON_64 => cpu_on(arg(0), arg(1), arg(2), vm),
        fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => affinity_info(arg(0), arg(1), vm),
        fid::SYSTEM_OFF => Action::SystemOff,
        fid::SYSTEM_RESET => Action::SystemReset,
        _ => Action::Return(ret::NOT_SUPPORTED),
    }
}

/// PSCI_FEATURES: 0 for implemented functions, NOT_SUPPORTED otherwise.
fn features(function: u64) -> u64 {
    if function >> 32 != 0 {
        return ret::NOT_SUPPORTED;
    }
    match function as u32 {
        fid::VERSION
        | fid::FEATURES
        | fid::MIGRATE_INFO_TYPE
        | fid::CPU_OFF
        | fid::CPU_SUSPEND_32
        | fid::CPU_SUSPEND_64
        | fid::CPU_ON_32
        | fid::CPU_ON_64
        | fid::AFFINITY_INFO_32
        | fid::AFFINITY_INFO_64
        | fid::SYSTEM_OFF
        | fid::SYSTEM_RESET => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
    }
}

/// The vCPU an MPIDR value names: Aff0 = index, higher levels zero.
fn target_vcpu(mpidr: u64, vm: &impl VmView) -> Option<usize> {
    // Aff3 (39:32), Aff2 (23:16), Aff1 (15:8) must be 0.
    if mpidr & 0xff_00ff_ff00 != 0 {
        return None;
    }
    let index = (mpidr & 0xff) as usize;
    (index < vm.num_vcpus()).then_some(index)
}

fn cpu_on(mpidr: u64, entry: u64, context_id: u64, vm: &impl VmView) -> Action {
    let Some(target) = target_vcpu(mpidr, vm) else {
        return Action::Return(ret::INVALID_PARAMETERS);
    };
    match vm.power_state(target) {
        PowerState::On => return Action::Return(ret::ALREADY_ON),
        PowerState::OnPending => return Action::Return(ret::ON_PENDING),
        PowerState::Off => {}
    }
    if !vm.is_ram(entry) || entry & 3 != 0 {
        return Action::Return(ret::INVALID_ADDRESS);
    }
    Action::CpuOn { target, entry, context_id }
}

/// CPU_SUSPEND `power_state`, original format (PSCI_FEATURES reports 0:
/// no extended StateID, DEN0022 5.4.2.2): StateID 15:0, StateType 16
/// (1 = powerdown), PowerLevel 25:24; the other bits are reserved, zero.
const POWER_STATE_RESERVED: u64 = !0x0301_ffff;
const POWER_STATE_POWERDOWN: u64 = 1 << 16;

fn cpu_suspend(power_state: u64, entry: u64, vm: &impl VmView) -> Action {
    if power_state & POWER_STATE_RESERVED != 0 {
        return Action::Return(ret::INVALID_PARAMETERS);
    }
    if power_state & POWER_STATE_POWERDOWN != 0 && (!vm.is_ram(entry) || entry & 3 != 0) {
        return Action::Return(ret::INVALID_ADDRESS);
    }
    Action::CpuSuspend
}

fn affinity_info(mpidr: u64, lowest_level: u64, vm: &impl VmView) -> Action {
    if lowest_level != 0 {
        return Action::Return(ret::INVALID_PARAMETERS);
    }
    match target_vcpu(mpidr, vm) {
        Some(target) => Action::Return(vm.power_state(target) as u64),
        None => Action::Return(ret::INVALID_PARAMETERS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vm {
        states: [PowerState; 2],
    }

    impl VmView for Vm {
        fn num_vcpus(&self) -> usize {
            2
        }
        fn power_state(&self, vcpu: usize) -> PowerState {
            self.states[vcpu]
        }
        fn is_ram(&self, gpa: u64) -> bool {
            (0x4000_0000..0x5000_0000).contains(&gpa)
        }
    }

    const VM: Vm = Vm { states: [PowerState::On, PowerState::Off] };

    #[test]
    fn version_features_and_migrate_info() {
        assert_eq!(handle(0x8400_0000, [0; 3], &VM), Action::Return(VERSION_1_1));
        let feat = |f: u64| handle(fid::FEATURES as u64, [f, 0, 0], &VM);
        assert_eq!(feat(fid::CPU_ON_64 as u64), Action::Return(ret::SUCCESS));
        assert_eq!(feat(fid::SYSTEM_RESET as u64), Action::Return(ret::SUCCESS));
        assert_eq!(feat(fid::CPU_SUSPEND_64 as u64), Action::Return(ret::SUCCESS));
        assert_eq!(feat(fid::CPU_SUSPEND_32 as u64), Action::Return(ret::SUCCESS));
        assert_eq!(feat(0x8400_0005), Action::Return(ret::NOT_SUPPORTED));
        assert_eq!(feat(0x8000_0000), Action::Return(ret::NOT_SUPPORTED));
        // PSCI_FEATURES is an SMC32 call: the argument's upper half is ignored.
        assert_eq!(feat(1 << 40 | fid::VERSION as u64), Action::Return(ret::SUCCESS));
        assert_eq!(handle(fid::MIGRATE_INFO_TYPE as u64, [0; 3], &VM), Action::Return(2));
    }

    #[test]
    fn cpu_on_checks_target_state_and_entry() {
        let on = |t: u64, e: u64| handle(fid::CPU_ON_64 as u64, [t, e, 7], &VM);
        assert_eq!(
            on(1, 0x4008_0000),
            Action::CpuOn { target: 1, entry: 0x4008_0000, context_id: 7 }
        );
        assert_eq!(on(0, 0x4008_0000), Action::Return(ret::ALREADY_ON));
        assert_eq!(on(2, 0x4008_0000), Action::Return(ret::INVALID_PARAMETERS));
        assert_eq!(on(0x100, 0x4008_0000), Action::Return(ret::INVALID_PARAMETERS));
        assert_eq!(on(1, 0x1000), Action::Return(ret::INVALID_ADDRESS));
        assert_eq!(on(1, 0x4008_0002), Action::Return(ret::INVALID_ADDRESS));
    }

    #[test]
    fn smc32_calls_ignore_upper_argument_bits() {
        let action = handle(fid::CPU_ON_32 as u64, [0xffff_ffff_0000_0001, 0x1_4008_0000, 0], &VM);
        assert_eq!(action, Action::CpuOn { target: 1, entry: 0x4008_0000, context_id: 0 });
    }

    #[test]
    fn affinity_info_reports_power_state() {
        let info = |t: u64, l: u64| handle(fid::AFFINITY_INFO_64 as u64, [t, l, 0], &VM);
        assert_eq!(info(0, 0), Action::Return(0));
        assert_eq!(info(1, 0), Action::Return(1));
        assert_eq!(info(1, 1), Action::Return(ret::INVALID_PARAMETERS));
        assert_eq!(info(9, 0), Action::Return(ret::INVALID_PARAMETERS));
    }

    #[test]
    fn power_calls_become_actions_and_unknown_ids_are_not_supported() {
        assert_eq!(handle(fid::CPU_OFF as u64, [0; 3], &VM), Action::CpuOff);
        assert_eq!(handle(fid::SYSTEM_OFF as u64, [0; 3], &VM), Action::SystemOff);
        assert_eq!(handle(fid::SYSTEM_RESET as u64, [0; 3], &VM), Action::SystemReset);
        assert_eq!(handle(0x8400_001f, [0; 3], &VM), Action::Return(ret::NOT_SUPPORTED));
        assert_eq!(handle(u64::MAX, [0; 3], &VM), Action::Return(ret::NOT_SUPPORTED));
    }

    #[test]
    fn psci_ids_are_recognised() {
        assert!(is_psci(0x8400_0000));
        assert!(is_psci(0xc400_0003));
        assert!(!is_psci(0x8600_0000));
        assert!(!is_psci(0x1_c400_0003));
    }

    #[test]
    fn smc32_function_ids_are_w0_only() {
        assert_eq!(function_id(0xffff_ffff_8400_0000), 0x8400_0000);
        assert!(is_psci(function_id(0x1_8400_0009)));
        assert_eq!(function_id(0x1_c400_0003), 0x1_c400_0003);
    }

    #[test]
    fn cpu_suspend_checks_power_state() {
        let suspend =
            |state: u64, entry: u64| handle(fid::CPU_SUSPEND_64 as u64, [state, entry, 0], &VM);
        assert_eq!(suspend(0, 0), Action::CpuSuspend);
        assert_eq!(suspend(0x0100_0001, 0), Action::CpuSuspend);
        assert_eq!(suspend(1 << 16, 0x4000_0000), Action::CpuSuspend);
        assert_eq!(suspend(1 << 16, 0x1000), Action::Return(ret::INVALID_ADDRESS));
        assert_eq!(suspend(1 << 30, 0), Action::Return(ret::INVALID_PARAMETERS));
        assert_eq!(suspend(1 << 20, 0), Action::Return(ret::INVALID_PARAMETERS));
        assert_eq!(suspend(1 << 32, 0), Action::Return(ret::INVALID_PARAMETERS));
        // SMC32: the upper half of power_state is ignored.
        let smc32 = handle(fid::CPU_SUSPEND_32 as u64, [1 << 32, 0, 0], &VM);
        assert_eq!(smc32, Action::CpuSuspend);
    }
}
