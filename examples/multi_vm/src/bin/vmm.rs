//! `multi_vm_vmm`: the program of both VMM PDs of the multi_vm example
//! (`vmm1`, `vmm2`). Each boots one Linux guest whose console (hvc0), disk
//! (/dev/vda: its partition of the shared disk) and vsock device are
//! virtio-MMIO devices backed by sDDF queues and by the packet rings to the
//! other VMM. What differs between the two PDs comes from the system
//! description: queues and channels through setvar symbols, the guests'
//! CIDs from the vsock regions' names (build.rs, looked up by PD name).

#![no_std]
#![no_main]

#[path = "../../../virtio/src/console_disk.rs"]
mod console_disk;
#[path = "../../../virtio/src/pd.rs"]
mod pd;

use console_disk::{BlockDev, ConsoleDev};
use libvmm::guest_memory::GuestRam;
use libvmm::logging::{self, Levels};
use libvmm::microkit::{pd_name, ChannelSet, Child, Handler};
use libvmm::sddf::vsock::SddfVsock;
use libvmm::sddf::Microkit;
use libvmm::sel4::{Fault, MessageInfo};
use libvmm::virtio::MmioDevice;
use libvmm::vm::hypervisor::Sel4;
use libvmm::vm::{Passthrough, Vm, VmConfig};
use log::LevelFilter;
use sddf_bindings::vsock::VsockChannel;
use virtio::vsock::VsockDevice;

#[allow(dead_code)]
mod sdf {
    use super::Passthrough;
    include!(concat!(env!("OUT_DIR"), "/sdf.rs"));
}

libvmm::setvar! {
    /// Where the Microkit tool mapped guest RAM in this PD.
    static guest_ram_vaddr;
    static vsock_ch;
    /// The timer PD's channel (build.rs turns it into `sdf::TIMER`).
    static timer_ch;
    static vsock_tx; static vsock_tx_size; static vsock_rx; static vsock_rx_size;
}

/// Where board/<board>/multi_vm.dts puts the vsock device (the console and
/// the disk are where console_disk.rs says), and its interrupt (SPI + 32).
const VSOCK_BASE: u64 = 0x0016_0000;
const VSOCK_IRQ: u32 = 32 + 12;

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

type VsockDev = MmioDevice<VsockDevice<SddfVsock<Microkit>>>;
type Devices = (ConsoleDev, (BlockDev, VsockDev));

struct Vmm {
    vm: Option<Vm<'static, Sel4, Devices>>,
    console_channels: u64,
    block_channels: u64,
    vsock_channels: u64,
}

/// This PD's guest CID and its peer's, from the system description.
fn cids() -> Option<(u32, u32)> {
    let name = pd_name();
    sdf::VSOCK_CIDS
        .iter()
        .find(|(pd, _, _)| *pd == name.as_str())
        .map(|&(_, cid, peer)| (cid, peer))
}

fn devices((cid, peer): (u32, u32)) -> Option<Devices> {
    let rings = VsockChannel::new(
        pd::region("vsock TX ring", (&vsock_tx, &vsock_tx_size))?,
        pd::region("vsock RX ring", (&vsock_rx, &vsock_rx_size))?,
    )
    .map_err(|e| log::error!(target: "core", "vsock rings: {e:?}"))
    .ok()?;
    let vsock = SddfVsock::new(rings, pd::channel(&vsock_ch), Microkit);
    let vsock =
        MmioDevice::new(VSOCK_BASE, VSOCK_IRQ, VsockDevice::new(cid.into(), peer.into(), vsock));
    Some((console_disk::console()?, (console_disk::disk()?, vsock)))
}

impl Handler for Vmm {
    fn init() -> Self {
        logging::init(&LEVELS);
        let (console_channels, block_channels) = console_disk::channels();
        let vsock_channels = 1 << vsock_ch.get();
        let mut vmm = Vmm { vm: None, console_channels, block_channels, vsock_channels };
        let Some((cid, peer)) = cids() else {
            log::error!(target: "core", "no vsock CIDs for PD {}: map vsock_<cid>_to_<peer> regions (docs/multi_vm.md)", pd_name());
            return vmm;
        };
        log::info!(target: "core", "multi_vm VMM: {} MiB guest RAM at {:#x}, {} vCPU(s), guest CID {cid}, peer CID {peer}",
            sdf::GUEST_RAM_SIZE >> 20, sdf::GUEST_RAM_GPA, sdf::NUM_VCPUS);
        if sdf::TIMER.channel() != Some(timer_ch.get() as u8) {
            log::error!(target: "core", "the timer channel is {} but the VMM was built for {:?}: rebuild it", timer_ch.get(), sdf::TIMER);
        }
        let Some(ram) =
            GuestRam::from_microkit_map(sdf::GUEST_RAM_GPA, &guest_ram_vaddr, sdf::GUEST_RAM_SIZE)
        else {
            log::error!(target: "core", "guest RAM is not mapped (guest_ram_vaddr is 0)");
            return vmm;
        };
        let Some(devices) = devices((cid, peer)) else {
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
            // One guest among others: its poweroff stops it alone (the
            // default), its reboot reboots it alone.
            system_off: Default::default(),
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
        let (devices, ram) = vm.devices();
        let mut irqs = [None, None, None];
        if channels.0 & self.console_channels != 0 {
            irqs[0] = devices.0.process(ram);
        }
        if channels.0 & self.block_channels != 0 {
            irqs[1] = devices.1 .0.process(ram);
        }
        if channels.0 & self.vsock_channels != 0 {
            irqs[2] = devices.1 .1.process(ram);
        }
        for irq in irqs.into_iter().flatten() {
            vm.raise_irq(irq);
        }
        let rest =
            channels.0 & !(self.console_channels | self.block_channels | self.vsock_channels);
        if rest != 0 {
            vm.handle_notified(ChannelSet(rest));
        }
    }

    fn fault(&mut self, child: Child, fault: Fault) -> Option<MessageInfo> {
        self.vm.as_mut()?.handle_fault(child.0 as usize, &fault)
    }
}

libvmm::protection_domain!(Vmm);
