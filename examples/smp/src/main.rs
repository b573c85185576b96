//! `smp`: a VMM PD that boots one Linux guest with 4 vCPUs, with QEMU's
//! PL011 passed through. The same VMM as `simple`: all numbers, the vCPU
//! count included, come from the system description (system-files/smp.system
//! or the board's own, see build.rs), and the GIC from the board; docs/smp.md
//! says where the vCPUs run and why.

#![no_std]
#![no_main]

use libvmm::guest_memory::GuestRam;
use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Child, Handler};
use libvmm::sel4::{Fault, MessageInfo};
use libvmm::vm::hypervisor::Sel4;
use libvmm::vm::{Passthrough, SystemOff, Vm, VmConfig};
use log::LevelFilter;

#[allow(dead_code)]
mod sdf {
    use super::Passthrough;
    include!(concat!(env!("OUT_DIR"), "/sdf.rs"));
}

libvmm::setvar! {
    /// Where the Microkit tool mapped guest RAM in this PD.
    static guest_ram_vaddr;
}

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct Vmm {
    vm: Option<Vm<'static, Sel4>>,
}

impl Handler for Vmm {
    fn init() -> Self {
        logging::init(&LEVELS);
        log::info!(target: "core", "smp VMM: {} MiB guest RAM at {:#x}, {} vCPU(s)",
            sdf::GUEST_RAM_SIZE >> 20, sdf::GUEST_RAM_GPA, sdf::NUM_VCPUS);
        let Some(ram) =
            GuestRam::from_microkit_map(sdf::GUEST_RAM_GPA, &guest_ram_vaddr, sdf::GUEST_RAM_SIZE)
        else {
            log::error!(target: "core", "guest RAM is not mapped (guest_ram_vaddr is 0)");
            return Vmm { vm: None };
        };
        let images = libvmm::embedded_boot_images!();
        let config = VmConfig {
            num_vcpus: sdf::NUM_VCPUS,
            gic: sdf::GIC,
            num_lrs: Sel4::list_registers(0),
            passthrough: sdf::PASSTHROUGH,
            timer_channel: sdf::TIMER_CHANNEL,
            // The only guest on the board: its poweroff powers QEMU off.
            system_off: SystemOff::Firmware,
        };
        let mut vm = Vm::new(Sel4 { smc: sdf::SMC }, ram, images, config);
        if let Err(e) = vm.boot() {
            log::error!(target: "boot", "cannot boot the guest: {e}");
        }
        Vmm { vm: Some(vm) }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if let Some(vm) = &mut self.vm {
            vm.handle_notified(channels);
        }
    }

    fn fault(&mut self, child: Child, fault: Fault) -> Option<MessageInfo> {
        self.vm.as_mut()?.handle_fault(child.0 as usize, &fault)
    }
}

libvmm::protection_domain!(Vmm);
