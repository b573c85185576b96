//! Where Microkit 2.3.0 puts each capability in a PD's CSpace
//! (`libmicrokit/include/microkit.h`, `tool/microkit/src/capdl/builder.rs`).

/// The PD's endpoint (or notification, if it has no PPC, children or VM).
pub const INPUT_CAP: u64 = 1;
/// The MCS reply object.
pub const REPLY_CAP: u64 = 4;
/// The monitor's endpoint, for passive PDs.
pub const MONITOR_EP: u64 = 5;
/// The ARM SMC capability, for PDs with `smc="true"`.
pub const ARM_SMC_CAP: u64 = 7;
/// Notification to the peer of channel `ch`: `10 + ch`.
pub const BASE_OUTPUT_NOTIFICATION_CAP: u64 = 10;
/// PPC endpoint of the peer of channel `ch`: `74 + ch`.
pub const BASE_ENDPOINT_CAP: u64 = 74;
/// IRQ handler of IRQ channel `id`: `138 + id`.
pub const BASE_IRQ_CAP: u64 = 138;
/// TCB of child PD `id`: `202 + id`.
pub const BASE_TCB_CAP: u64 = 202;
/// TCB of vCPU `id` of the PD's virtual machine: `266 + id`.
pub const BASE_VM_TCB_CAP: u64 = 266;
/// ARM VCPU object of vCPU `id`: `330 + id`.
pub const BASE_VCPU_CAP: u64 = 330;

/// Badge bit of a protected procedure call.
pub const BADGE_PPC: u64 = 1 << 63;
/// Badge bit of a fault from a child PD or a vCPU.
pub const BADGE_FAULT: u64 = 1 << 62;

/// Channel, IRQ and vCPU ids are below this (`PD_MAX_ID = 61`).
pub const MAX_CHANNELS: u8 = 62;
