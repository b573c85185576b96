//! The virtio console (hvc0) and disk (/dev/vda) of a VMM whose guest sits
//! behind the sDDF serial and block virtualisers: their setvar symbols and
//! their construction. Shared by the `virtio` and `multi_vm` VMMs
//! (`#[path]`); the guest device tree puts them at these addresses.

use super::pd;
use libvmm::sddf::blk::SddfBlock;
use libvmm::sddf::serial::SddfSerial;
use libvmm::sddf::{Microkit, MicrokitDeferred};
use libvmm::virtio::MmioDevice;
use virtio::block::BlockDevice;
use virtio::console::Console;

libvmm::setvar! {
    pub static serial_tx_ch; pub static serial_rx_ch; pub static blk_ch;
    static serial_tx_queue; static serial_tx_queue_size; static serial_tx_data; static serial_tx_data_size;
    static serial_rx_queue; static serial_rx_queue_size; static serial_rx_data; static serial_rx_data_size;
    static blk_req; static blk_req_size; static blk_resp; static blk_resp_size;
    static blk_info; static blk_info_size; static blk_data; static blk_data_size;
    static console_regs; static console_regs_size; static blk_regs; static blk_regs_size;
}

/// Where the guest's device tree puts the console and the disk, and their
/// interrupts (SPI + 32).
pub const CONSOLE_BASE: u64 = 0x0013_0000;
pub const CONSOLE_IRQ: u32 = 32 + 10;
pub const BLOCK_BASE: u64 = 0x0015_0000;
pub const BLOCK_IRQ: u32 = 32 + 11;

/// Virtio-blk requests in flight at most (each holds up to its size in
/// 4 KiB data cells).
pub const BLOCK_REQUESTS: usize = 16;

pub type ConsoleDev = MmioDevice<Console<SddfSerial<Microkit>>>;
pub type BlockDev = MmioDevice<BlockDevice<SddfBlock<MicrokitDeferred>, BLOCK_REQUESTS>>;

/// The channels whose notifications concern the console, and the disk.
pub fn channels() -> (u64, u64) {
    (1 << serial_tx_ch.get() | 1 << serial_rx_ch.get(), 1 << blk_ch.get())
}

/// The console over the serial virtualisers' queues; `None` (logged) if
/// they are not mapped.
pub fn console() -> Option<ConsoleDev> {
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
    let mut con = MmioDevice::new(CONSOLE_BASE, CONSOLE_IRQ, Console::new(serial));
    con.transport().set_defer_notify_interrupts(true);
    Some(with_page(con, "console registers", (&console_regs, &console_regs_size)))
}

/// The disk over the block virtualiser's queues.
pub fn disk() -> Option<BlockDev> {
    let queue = pd::blk_queue("block", (&blk_req, &blk_req_size), (&blk_resp, &blk_resp_size))?;
    let info = pd::storage_info("block", (&blk_info, &blk_info_size))?;
    if !info.is_ready() {
        log::warn!(target: "virtio", "the block virtualiser is not ready yet: the disk reads as empty until it is");
    }
    let data = pd::region("block data", (&blk_data, &blk_data_size))?;
    let block = SddfBlock::new(queue, info, data, pd::channel(&blk_ch), MicrokitDeferred);
    let disk = MmioDevice::new(BLOCK_BASE, BLOCK_IRQ, BlockDevice::new(block));
    Some(with_page(disk, "disk registers", (&blk_regs, &blk_regs_size)))
}

/// The device with its register page if the system file maps one (the guest then reads
/// its registers without a trap), else as it is.
fn with_page<D: virtio::VirtioDevice>(
    dev: MmioDevice<D>,
    what: &str,
    page: pd::Symbols,
) -> MmioDevice<D> {
    match pd::region(what, page) {
        Some(region) => dev.with_register_page(region),
        None => dev,
    }
}
