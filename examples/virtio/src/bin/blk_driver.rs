//! `blk_driver`: the sDDF block driver PD for QEMU's virtio-blk-device
//! (virtio-MMIO, modern), on `sddf_components::blk::virtio`.

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{Channel, ChannelSet, Handler};
use log::LevelFilter;
use sddf_bindings::SharedRegion;
use sddf_components::blk::virtio::{Dma, VirtioBlk};

libvmm::setvar! {
    static regs; static regs_size; static irq_ch; static virt_ch;
    static dma; static dma_size; static dma_paddr;
    static req; static req_size; static resp; static resp_size; static info; static info_size;
}

/// Which of the mapped page's virtio-mmio transports (0x200 bytes each) is
/// the disk: QEMU's `bus=virtio-mmio-bus.1`, at 0xa000200.
const SLOT: usize = 1;
const SLOT_SIZE: usize = 0x200;

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct Driver(Option<VirtioBlk<SharedRegion>>);

fn start() -> Option<VirtioBlk<SharedRegion>> {
    let page = pd::region("virtio-mmio registers", (&regs, &regs_size))?;
    let device = page.subregion(SLOT * SLOT_SIZE, SLOT_SIZE).ok()?;
    let dma_region = pd::region("DMA region", (&dma, &dma_size))?;
    let queue = pd::blk_queue("virtualiser queue", (&req, &req_size), (&resp, &resp_size))?;
    let storage = pd::storage_info("storage info", (&info, &info_size))?;
    let memory = Dma { region: dma_region, io_addr: dma_paddr.get() };
    VirtioBlk::new(device, memory, queue, &storage, pd::channel(&virt_ch))
        .map_err(|e| log::error!(target: "blk", "virtio-blk at slot {SLOT}: {e}"))
        .ok()
}

impl Handler for Driver {
    fn init() -> Self {
        logging::init(&LEVELS);
        let d = start();
        if d.is_some() {
            // The virtualiser waits for the storage info we published.
            if let Some(virt) = Channel::new(pd::channel(&virt_ch)) {
                virt.notify();
            }
        }
        Driver(d)
    }

    fn notified(&mut self, channels: ChannelSet) {
        let Some(d) = self.0.as_mut() else { return };
        for ch in channels.iter() {
            if ch.id() == pd::channel(&irq_ch) {
                pd::send(d.handle_irq());
                let _ = ch.irq_ack();
            } else {
                pd::send(d.handle_notified());
            }
        }
    }
}

libvmm::protection_domain!(Driver);
