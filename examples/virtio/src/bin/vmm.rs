//! `virtio_vmm` (the `vmm` PD): boots one Linux guest whose console (hvc0) and disk (/dev/vda)
//! are virtio-MMIO devices backed by sDDF: the console is a client of the
//! serial virtualisers, the disk a client of the block virtualiser.
//! Guest RAM, vCPUs and the timer come from system-files/virtio.system
//! (build.rs); queues and channels from setvar symbols.

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;

use libvmm::guest_memory::GuestRam;
use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Child, Handler};
use libvmm::sddf::blk::SddfBlock;
use libvmm::sddf::serial::SddfSerial;
use libvmm::sddf::Microkit;
use libvmm::sel4::{Fault, MessageInfo};
use libvmm::virtio::MmioDevice;
use libvmm::vm::hypervisor::Sel4;
use libvmm::vm::{Passthrough, SystemOff, Vm, VmConfig};
use log::LevelFilter;
use virtio::block::BlockDevice;
use virtio::console::Console;

#[allow(dead_code)]
mod sdf {
    use super::Passthrough;
    include!(concat!(env!("OUT_DIR"), "/sdf.rs"));
}

libvmm::setvar! {
    /// Where the Microkit tool mapped guest RAM in this PD.
    static guest_ram_vaddr;
    static serial_tx_ch; static serial_rx_ch; static blk_ch;
    static serial_tx_queue; static serial_tx_queue_size; static serial_tx_data; static serial_tx_data_size;
    static serial_rx_queue; static serial_rx_queue_size; static serial_rx_data; static serial_rx_data_size;
    static blk_req; static blk_req_size; static blk_resp; static blk_resp_size;
    static blk_info; static blk_info_size; static blk_data; static blk_data_size;
}

/// Where the guest's device tree puts the virtio-MMIO devices
/// (board/qemu_virt_aarch64/virtio.dts), and their interrupts (SPI + 32).
const CONSOLE_BASE: u64 = 0x0013_0000;
const CONSOLE_IRQ: u32 = 32 + 10;
const BLOCK_BASE: u64 = 0x0015_0000;
const BLOCK_IRQ: u32 = 32 + 11;

/// Virtio-blk requests in flight at most (each holds up to its size in
/// 4 KiB data cells).
const BLOCK_REQUESTS: usize = 16;

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

type ConsoleDev = MmioDevice<Console<SddfSerial<Microkit>>>;
type BlockDev = MmioDevice<BlockDevice<SddfBlock<Microkit>, BLOCK_REQUESTS>>;
type Devices = (ConsoleDev, BlockDev);

struct Vmm {
    vm: Option<Vm<'static, Sel4, Devices>>,
    /// The channels the devices' backends use.
    console_channels: u64,
    block_channels: u64,
}

fn devices() -> Option<Devices> {
    let tx = pd::serial_queue(
        "serial TX",
        (&serial_tx_queue, &serial_tx_queue_size),
        (&serial_tx_data, &serial_tx_data_size),
    )?;
    let rx = pd::serial_queue(
        "serial RX",
        (&serial_rx_queue, &serial_rx_queue_size),
        (&serial_rx_data, &serial_rx_data_size),
    )?;
    let serial =
        SddfSerial::new(tx, rx, pd::channel(&serial_tx_ch), pd::channel(&serial_rx_ch), Microkit)
            .with_coalescing(4096);
    let queue = pd::blk_queue("block", (&blk_req, &blk_req_size), (&blk_resp, &blk_resp_size))?;
    let info = pd::storage_info("block", (&blk_info, &blk_info_size))?;
    if !info.is_ready() {
        log::warn!(target: "virtio", "the block virtualiser is not ready yet: the disk reads as empty until it is");
    }
    let data = pd::region("block data", (&blk_data, &blk_data_size))?;
    let block = SddfBlock::new(queue, info, data, pd::channel(&blk_ch), Microkit);
    Some((
        {
            let mut con = MmioDevice::new(CONSOLE_BASE, CONSOLE_IRQ, Console::new(serial));
            con.transport().set_defer_notify_interrupts(true);
            con
        },
        MmioDevice::new(BLOCK_BASE, BLOCK_IRQ, BlockDevice::new(block)),
    ))
}

impl Handler for Vmm {
    fn init() -> Self {
        logging::init(&LEVELS);
        let console_channels = 1 << serial_tx_ch.get() | 1 << serial_rx_ch.get();
        let block_channels = 1 << blk_ch.get();
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
