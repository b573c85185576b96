//! `virtio_vmm` (the `vmm` PD): boots one Linux guest whose console (hvc0) and disk (/dev/vda)
//! are virtio-MMIO devices backed by sDDF: the console is a client of the
//! serial virtualisers, the disk a client of the block virtualiser.
//! Guest RAM, vCPUs and the timer come from system-files/virtio.system
//! (build.rs); queues and channels from setvar symbols.

#![no_std]
#![no_main]

#[path = "../console_disk.rs"]
mod console_disk;
#[path = "../pd.rs"]
mod pd;

use console_disk::{BlockDev, ConsoleDev};
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

type Devices = (ConsoleDev, BlockDev);

struct Vmm {
    vm: Option<Vm<'static, Sel4, Devices>>,
    /// The channels the devices' backends use.
    console_channels: u64,
    block_channels: u64,
}

fn devices() -> Option<Devices> {
    Some((console_disk::console()?, console_disk::disk()?))
}

impl Handler for Vmm {
    fn init() -> Self {
        logging::init(&LEVELS);
        let (console_channels, block_channels) = console_disk::channels();
        let mut vmm = Vmm { vm: None, console_channels, block_channels };
        log::info!(target: "core", "virtio VMM: {} MiB guest RAM at {:#x}, {} vCPU(s)",
            sdf::GUEST_RAM_SIZE >> 20, sdf::GUEST_RAM_GPA, sdf::NUM_VCPUS);
        let Some(ram) =
            GuestRam::from_microkit_map(sdf::GUEST_RAM_GPA, &guest_ram_vaddr, sdf::GUEST_RAM_SIZE)
        else {
            log::error!(target: "core", "guest RAM is not mapped (guest_ram_vaddr is 0)");
            return vmm;
        };
        let Some(devices) = devices() else {
            log::error!(target: "core", "the sDDF queues of the virtio devices are not all mapped");
            return vmm;
        };
        let images = libvmm::embedded_boot_images!();
        let config = VmConfig {
            num_vcpus: sdf::NUM_VCPUS,
            gic: sdf::GIC,
            num_lrs: Sel4::list_registers(0),
            passthrough: sdf::PASSTHROUGH,
            timer: sdf::TIMER,
            // The only guest on the board: its poweroff powers QEMU off.
            system_off: SystemOff::Firmware,
        };
        let mut vm = Vm::with_devices(Sel4 { smc: sdf::SMC }, devices, ram, images, config);
        if let Err(e) = vm.boot() {
            log::error!(target: "boot", "cannot boot the guest: {e}");
        }
        vmm.vm = Some(vm);
        vmm
    }

    fn notified(&mut self, channels: ChannelSet) {
        let Some(vm) = &mut self.vm else { return };
        log::trace!(target: "irq", "notified {:#x}", channels.0);
        let (devices, ram) = vm.devices();
        let mut irqs = [None, None];
        if channels.0 & self.console_channels != 0 {
            irqs[0] = devices.0.process(ram);
        }
        if channels.0 & self.block_channels != 0 {
            irqs[1] = devices.1.process(ram);
        }
        for irq in irqs.into_iter().flatten() {
            vm.raise_irq(irq);
        }
        let rest = channels.0 & !(self.console_channels | self.block_channels);
        if rest != 0 {
            vm.handle_notified(ChannelSet(rest));
        }
    }

    fn fault(&mut self, child: Child, fault: Fault) -> Option<MessageInfo> {
        self.vm.as_mut()?.handle_fault(child.0 as usize, &fault)
    }
}

libvmm::protection_domain!(Vmm);
