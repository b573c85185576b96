//! A virtual machine: its vCPUs, guest RAM, the virtual GIC, and what the
//! VMM does for each exit.
//!
//! `Vm::handle_fault` takes a decoded seL4 fault and returns the reply (or
//! none, to leave the vCPU blocked); `Vm::handle_notified` takes interrupts
//! and the wake-up timer. Guest mistakes are logged (rate-limited) and
//! answered as the architecture says: an injected abort or undefined
//! instruction, never a VMM crash.

mod exception;
pub mod exit;
pub mod gic;
pub mod hypervisor;
mod idle;
mod irq;
mod mmio;
mod power;
pub mod psci;
mod ptimer;
pub mod reset_stub;

use crate::guest_memory::{Gpa, GuestRam};
use crate::linux::boot::{BootImages, Layout};
use crate::sel4::{Error, Fault, MessageInfo, UserContext};
use exception::Exception;
use exit::Exit;
use gic::Gic;
use hypervisor::Hypervisor;
use ptimer::GuestPtimer;

pub use ptimer::PTIMER_IRQ;
pub use vgic::MAX_VCPUS;

/// QEMU virt's GIC distributor.
pub const QEMU_VIRT_GICD: u64 = 0x0800_0000;

/// Which GIC the guest has and where (board data): the guest device tree's
/// GIC node says the same.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GicLayout {
    /// GICv2: the distributor (emulated) and the CPU interface, which is the
    /// hardware GIC virtual CPU interface (GICV) that the system description
    /// maps at `gicc`.
    V2 {
        /// Guest-physical base of the distributor (4 KiB).
        gicd: u64,
        /// Guest-physical base of the CPU interface (8 KiB).
        gicc: u64,
    },
    /// GICv3: the distributor and one redistributor per vCPU (both
    /// emulated); the CPU interface is system registers.
    V3 {
        /// Guest-physical base of the distributor (64 KiB).
        gicd: u64,
        /// Guest-physical base of the redistributors (128 KiB each).
        gicr: u64,
    },
}

impl GicLayout {
    /// QEMU virt with `gic-version=2`.
    pub const QEMU_VIRT_V2: GicLayout = GicLayout::V2 { gicd: QEMU_VIRT_GICD, gicc: 0x0801_0000 };
    /// QEMU virt with `gic-version=3`.
    pub const QEMU_VIRT_V3: GicLayout = GicLayout::V3 { gicd: QEMU_VIRT_GICD, gicr: 0x080a_0000 };

    /// Guest-physical base of the distributor.
    pub const fn gicd(&self) -> u64 {
        match *self {
            GicLayout::V2 { gicd, .. } | GicLayout::V3 { gicd, .. } => gicd,
        }
    }
}
/// The virtual timer's PPI.
pub const VTIMER_IRQ: u32 = 27;
/// PSTATE for a vCPU entering the kernel: EL1h with D, A, I, F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// VCPU system registers saved at power-on and restored at reset.
const VCPU_REGS: usize = 24;

/// A physical interrupt forwarded to the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Passthrough {
    /// The Microkit IRQ channel that delivers it.
    pub channel: u8,
    /// The guest's interrupt id (SPI number + 32).
    pub irq: u32,
}

/// The VM's emulated devices other than the GIC, e.g. virtio-MMIO
/// transports. `()` is a VM without any.
pub trait Devices {
    /// A guest read of `width` bytes at `gpa`: `None` if no device is there,
    /// else the value and the interrupt to raise, if any.
    fn read(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8) -> Option<(u64, Option<u32>)>;
    /// A guest write: `None` if no device is there, else the interrupt to
    /// raise, if any.
    fn write(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8, value: u64)
        -> Option<Option<u32>>;
    /// A store to a doorbell, a register where the value written does not
    /// matter (a virtio-MMIO QueueNotify: every queue is looked at): `None`
    /// if `gpa` is not one, else the interrupt to raise, if any. The VMM
    /// asks before it reads the guest's register, and saves that read.
    fn doorbell(&mut self, _ram: &mut GuestRam, _gpa: Gpa, _width: u8) -> Option<Option<u32>> {
        None
    }
    /// The guest is being reset: put every device back to its power-on state.
    fn reset(&mut self) {}
    /// Deferred work, when a vCPU idles and at each virtual timer interrupt: `raise` the
    /// interrupts it owes.
    fn poll(&mut self, _ram: &mut GuestRam, _raise: &mut dyn FnMut(u32)) {}
}

impl Devices for () {
    fn read(&mut self, _: &mut GuestRam, _: Gpa, _: u8) -> Option<(u64, Option<u32>)> {
        None
    }
    fn write(&mut self, _: &mut GuestRam, _: Gpa, _: u8, _: u64) -> Option<Option<u32>> {
        None
    }
}

/// How a VM is put together.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig<'a> {
    /// vCPUs `0..num_vcpus` (system description `<vcpu id>`s).
    pub num_vcpus: usize,
    /// The guest's GIC: version and addresses.
    pub gic: GicLayout,
    /// Hardware list registers per vCPU (4 on QEMU's GICv2).
    pub num_lrs: usize,
    /// Physical interrupts forwarded to the guest.
    pub passthrough: &'a [Passthrough],
    /// What wakes vCPUs idle in WFI at their timer deadline ([`Timer`]).
    pub timer: Timer,
    /// What the guest's PSCI SYSTEM_OFF does.
    pub system_off: SystemOff,
}

/// The VMM's wake-up timer: what resumes a vCPU idle in WFI when its
/// virtual timer is due (seL4 masks the virtual timer of a vCPU that is not
/// running, so it cannot wake itself).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timer {
    /// None: a WFI with the guest's timer armed resumes at once (the vCPU
    /// spins while idle); the VMM never touches the physical timer.
    None,
    /// The VMM owns the EL1 physical timer's IRQ (PPI 30) on this channel.
    /// CNTP is shared with the guest (ptimer.rs): the guest's while a vCPU
    /// runs, the VMM's wake-up while none does.
    Physical(u8),
    /// A timer PD serves wake-ups over this channel with sDDF's timer
    /// protocol (protected call label 1, SET_TIMEOUT, relative nanoseconds
    /// in MR 0; a notification on the same channel when it is due). For
    /// several VMMs on one core: Microkit gives PPI 30 to one PD only. The
    /// guest's physical timer is then not virtualised (Linux uses the
    /// virtual timer): see docs/multi_vm.md.
    Service(u8),
}

impl Timer {
    /// The channel its events arrive on.
    pub fn channel(self) -> Option<u8> {
        match self {
            Timer::None => None,
            Timer::Physical(ch) | Timer::Service(ch) => Some(ch),
        }
    }
}

/// What a guest's PSCI SYSTEM_OFF does. Isolation first: by default it
/// only stops this VM; powering the machine off is something the VMM
/// opts into (e.g. a board that runs one guest).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum SystemOff {
    /// Stop every vCPU of this VM; the rest of the system runs on.
    #[default]
    StopVm,
    /// Stop the VM, then ask the firmware to power the machine off (needs
    /// the PD's `smc="true"`, see [`hypervisor::Sel4`]).
    Firmware,
}

/// The byte order of the guest's data in MMIO accesses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum DataEndianness {
    /// Little-endian, as a Linux arm64 Image's header must declare (the
    /// loader refuses big-endian kernels) and a little-endian kernel keeps:
    /// `SCTLR_EL1` is not read. The default.
    #[default]
    Little,
    /// Whatever `SCTLR_EL1.EE` (EL1) or `E0E` (EL0) says at each access:
    /// for guests that switch to big-endian data. The guest changes
    /// `SCTLR_EL1` without a trap, so it is read on every MMIO exit (one
    /// more invocation each).
    FromSctlr,
}

/// Where a vCPU is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum VcpuState {
    Off,
    Running,
    /// Blocked after WFI until an interrupt (or `deadline`, in counter ticks).
    Waiting {
        resume_pc: u64,
        deadline: Option<u64>,
    },
}

/// Counts events so that floods of guest mistakes log only now and then.
#[derive(Default, Clone, Copy, Debug)]
struct RateLimit(u64);

impl RateLimit {
    fn allow(&mut self) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 <= 16 || self.0.is_power_of_two()
    }
}

/// The reply that resumes a vCPU.
const RESUME: Option<MessageInfo> = Some(MessageInfo::new(0, 0));
/// No reply: the vCPU was resumed with its registers (`write_regs` with
/// `resume`, seL4's TCB WriteRegisters resuming a thread blocked on its
/// fault), as MMIO exits do.
const RESUMED: Option<MessageInfo> = None;

/// A virtual machine.
pub struct Vm<'a, H: Hypervisor, D: Devices = ()> {
    hv: H,
    devices: D,
    ram: GuestRam<'a>,
    images: BootImages<'a>,
    config: VmConfig<'a>,
    gic: Gic,
    vcpus: [VcpuState; MAX_VCPUS],
    /// CNTVOFF per vCPU, read once: it only changes when the kernel is
    /// built to move it (`VTIMER_UPDATE_VOFFSET`), then it is read each time.
    cntvoff: [Option<u64>; MAX_VCPUS],
    /// The EL1 physical timer, shared with the guest (ptimer.rs).
    ptimer: GuestPtimer,
    power_on_regs: Option<[u64; VCPU_REGS]>,
    /// vCPUs running the reset stub (bit per vCPU); the kernel starts when
    /// the last one is done (reset_stub.rs).
    in_reset_stub: u64,
    /// Per vCPU, the list registers that held an interrupt at the last
    /// SYSTEM_RESET (bit per LR): the reset stub deactivates their
    /// interrupts, then the VMM empties them (reset_stub.rs).
    stuck_lrs: [u16; MAX_VCPUS],
    /// Per vCPU, the interrupt IDs the reset stub deactivates (x1-x4).
    deactivate: [[u64; reset_stub::MAX_DEACTIVATE]; MAX_VCPUS],
    /// Where the images of this boot went.
    layout: Option<Layout>,
    boots: u32,
    bad_guest: RateLimit,
    endianness: DataEndianness,
    /// The MMIO path's register words: only the words an exit reads or sets
    /// are used, so it is not cleared per exit.
    scratch: UserContext,
}

impl<'a, H: Hypervisor> Vm<'a, H, ()> {
    /// A VM without emulated devices besides the GIC. Call [`Vm::boot`] next.
    pub fn new(hv: H, ram: GuestRam<'a>, images: BootImages<'a>, config: VmConfig<'a>) -> Self {
        Vm::with_devices(hv, (), ram, images, config)
    }
}

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// A VM that will boot `images` in `ram`, with `devices` on its
    /// address map. Call [`Vm::boot`] next.
    pub fn with_devices(
        hv: H,
        devices: D,
        ram: GuestRam<'a>,
        images: BootImages<'a>,
        config: VmConfig<'a>,
    ) -> Self {
        let num_vcpus = config.num_vcpus.clamp(1, MAX_VCPUS);
        let config = VmConfig { num_vcpus, ..config };
        Vm {
            hv,
            devices,
            ram,
            images,
            gic: Gic::new(&config.gic, num_vcpus, config.num_lrs),
            config,
            vcpus: [VcpuState::Off; MAX_VCPUS],
            cntvoff: [None; MAX_VCPUS],
            ptimer: GuestPtimer::RESET,
            power_on_regs: None,
            in_reset_stub: 0,
            stuck_lrs: [0; MAX_VCPUS],
            deactivate: [[reset_stub::NO_IRQ; reset_stub::MAX_DEACTIVATE]; MAX_VCPUS],
            layout: None,
            boots: 0,
            bad_guest: RateLimit::default(),
            endianness: DataEndianness::default(),
            scratch: UserContext::default(),
        }
    }

    /// Sets how the guest's MMIO data is ordered ([`DataEndianness`];
    /// little-endian unless set).
    pub fn set_data_endianness(&mut self, endianness: DataEndianness) {
        self.endianness = endianness;
    }

    /// The hypervisor interface (tests inspect their fake through it).
    pub fn hypervisor(&mut self) -> &mut H {
        &mut self.hv
    }

    /// The devices and guest RAM, e.g. to complete device work when a
    /// backend notifies; raise the interrupts it asks for with `raise_irq`.
    pub fn devices(&mut self) -> (&mut D, &mut GuestRam<'a>) {
        (&mut self.devices, &mut self.ram)
    }

    /// How many times the guest has been booted.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Handles a fault from `vcpu`; returns the reply, or `None` when none
    /// is due: the vCPU was resumed already (MMIO exits resume it with its
    /// registers), or stays blocked (idle, off, or stopped after an error).
    pub fn handle_fault(&mut self, vcpu: usize, fault: &Fault) -> Option<MessageInfo> {
        if vcpu >= self.config.num_vcpus {
            log::error!(target: "cpu", "fault from unknown vCPU {vcpu}: {fault:x?}");
            return None;
        }
        self.poll_wakeups();
        let exit = Exit::decode(fault);
        let result = match exit {
            Exit::Mmio(access) => self.mmio(vcpu, fault_ip(fault), access),
            Exit::Wait { wfe, instruction_len } => self.wait(vcpu, wfe, instruction_len),
            Exit::Smc { instruction_len } => self.smc(vcpu, instruction_len),
            Exit::Hvc { args, pc } => self.hvc(vcpu, args, pc),
            Exit::VgicMaintenance { lr } => self.maintenance(vcpu, lr),
            Exit::Vppi { irq } => self.vppi(vcpu, irq),
            Exit::SysReg(access) => self.sysreg(vcpu, access),
            Exit::UndecodableAbort { gpa, esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "mmio", "vCPU {vcpu}: access to {gpa} without a valid syndrome (esr {esr:#x}, pc {:#x}): injecting an abort", fault_ip(fault));
                }
                self.inject(vcpu, Exception::DataAbort, gpa.0)
            }
            Exit::PrefetchAbort { gpa, esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "cpu", "vCPU {vcpu}: instruction fetch from {gpa} (esr {esr:#x}): injecting an abort");
                }
                self.inject(vcpu, Exception::PrefetchAbort, gpa.0)
            }
            Exit::Undefined { pc, esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "cpu", "vCPU {vcpu}: undefined instruction at {pc:#x} (esr {esr:#x})");
                }
                self.inject(vcpu, Exception::Undefined, 0)
            }
            Exit::Unhandled { esr } => {
                if self.bad_guest.allow() {
                    log::warn!(target: "cpu", "vCPU {vcpu}: unhandled exit (class {:#x}, esr {esr:#x}): {fault:x?}", exit::syndrome_ec(esr));
                }
                match fault {
                    Fault::VcpuFault { .. } => self.inject(vcpu, Exception::Undefined, 0),
                    _ => Err(Error::IllegalOperation),
                }
            }
        };
        result.unwrap_or_else(|e| {
            log::error!(target: "cpu", "vCPU {vcpu}: {e} while handling {exit:x?}; stopping it");
            let _ = self.hv.suspend(vcpu);
            self.vcpus[vcpu] = VcpuState::Off;
            self.take_ptimer_if_idle();
            None
        })
    }
}

fn fault_ip(fault: &Fault) -> u64 {
    match *fault {
        Fault::VmFault { ip, .. } => ip,
        Fault::UnknownSyscall { fault_ip, .. } | Fault::UserException { fault_ip, .. } => fault_ip,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
