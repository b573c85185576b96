//! A VMM protection domain that boots one Linux guest, with the PL011 UART
//! passed through. Every number (guest RAM, vCPUs, interrupts, the GIC)
//! comes from the system description and the board, through build.rs.

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

struct MyVmm {
    vm: Option<Vm<'static, Sel4>>,
}

impl Handler for MyVmm {
    fn init() -> Self {
        logging::init(&LEVELS);
        log::info!(target: "core", "VMM: {} MiB guest RAM at {:#x}, {} vCPU(s)",
            sdf::GUEST_RAM_SIZE >> 20, sdf::GUEST_RAM_GPA, sdf::NUM_VCPUS);
        let ram =
            GuestRam::from_microkit_map(sdf::GUEST_RAM_GPA, &guest_ram_vaddr, sdf::GUEST_RAM_SIZE);
        let Some(ram) = ram else {
            log::error!(target: "core", "guest RAM is not mapped");
            return MyVmm { vm: None };
        };
        let config = VmConfig {
            num_vcpus: sdf::NUM_VCPUS,
            gic: sdf::GIC,
            num_lrs: Sel4::list_registers(0),
            passthrough: sdf::PASSTHROUGH,
            timer: sdf::TIMER,
            // The only guest: its poweroff powers the machine (QEMU) off.
            // The default, SystemOff::StopVm, stops only this VM.
            system_off: SystemOff::Firmware,
        };
        let images = libvmm::embedded_boot_images!();
        let mut vm = Vm::new(Sel4 { smc: sdf::SMC }, ram, images, config);
        if let Err(e) = vm.boot() {
            log::error!(target: "boot", "cannot boot the guest: {e}");
        }
        MyVmm { vm: Some(vm) }
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

libvmm::protection_domain!(MyVmm);
