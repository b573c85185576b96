//! `blk_driver`: the sDDF block driver PD for QEMU's virtio-blk-device
//! (virtio-MMIO, modern), on `sddf_components::blk::virtio`.
//!
//! It maps QEMU virt's whole window of virtio-mmio transports and uses the
//! first that holds a block device, wherever QEMU put it (`-device
//! virtio-blk-device` without `bus=` takes the highest free slot). The
//! system file gives it one IRQ channel per slot, consecutive from
//! `irq_base`.

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{Channel, ChannelSet, Handler};
use log::LevelFilter;
use sddf_bindings::SharedRegion;
use sddf_components::blk::probe::find_block_slot;
use sddf_components::blk::virtio::{Dma, VirtioBlk};

libvmm::setvar! {
    static regs; static regs_size; static regs_paddr; static irq_base; static virt_ch;
    static dma; static dma_size; static dma_paddr;
    static req; static req_size; static resp; static resp_size; static info; static info_size;
}

/// Bytes between two virtio-mmio transports.
const SLOT_SIZE: usize = 0x200;

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

/// The device, the channel of its slot's IRQ, and whether that IRQ is
/// still to be acknowledged.
struct Driver(Option<(VirtioBlk<SharedRegion>, u8, bool)>);

fn start() -> Option<(VirtioBlk<SharedRegion>, u8, bool)> {
    let mut window = pd::region("virtio-mmio registers", (&regs, &regs_size))?;
    let slots = window.len() / SLOT_SIZE;
    let slot = find_block_slot(&mut window, slots, SLOT_SIZE)
        .map_err(|e| log::error!(target: "blk", "{e}"))
        .ok()?;
    let irq = u8::try_from(slot).ok().and_then(|s| pd::channel(&irq_base).checked_add(s))?;
    log::info!(target: "blk", "virtio-blk: slot {slot} of {slots}, at {:#x}, IRQ channel {irq}",
        regs_paddr.get() + (slot * SLOT_SIZE) as u64);
    let device = window.subregion(slot * SLOT_SIZE, SLOT_SIZE).ok()?;
    let dma_region = pd::region("DMA region", (&dma, &dma_size))?;
    let queue = pd::blk_queue("virtualiser queue", (&req, &req_size), (&resp, &resp_size))?;
    let storage = pd::storage_info("storage info", (&info, &info_size))?;
    let memory = Dma { region: dma_region, io_addr: dma_paddr.get() };
    VirtioBlk::new(device, memory, queue, &storage, pd::channel(&virt_ch))
        .map_err(|e| log::error!(target: "blk", "virtio-blk at slot {slot}: {e}"))
        .ok()
        .map(|d| (d, irq, false))
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
        let Some((d, irq, ack_owed)) = self.0.as_mut() else { return };
        for ch in channels.iter() {
            if ch.id() == *irq {
                pd::send(d.handle_irq());
                *ack_owed = true;
            } else {
                pd::send(d.handle_notified());
            }
        }
        // With nothing in flight the device has nothing to interrupt for
        // (a level interrupt raised meanwhile stays pending): the IRQ is
        // re-enabled with the wait after the next submission, not with a
        // system call of its own now. Something else held for that wait
        // (a notification) is sent now instead, as before.
        if *ack_owed && d.in_flight() > 0 {
            *ack_owed = false;
            if let Some(ch) = Channel::new(*irq) {
                let _ = ch.irq_ack_deferred();
            }
        }
    }
}

libvmm::protection_domain!(Driver);
