//! The virtio-MMIO transport, version 2 ("modern") only (virtio 1.2 §4.2.2).
//!
//! [`MmioTransport`] decodes the guest's register accesses, owns the device status machine
//! (virtio 1.2 §2.1, §3.1.1), feature negotiation, queue configuration and the interrupt
//! status, and calls into a [`VirtioDevice`] only for what is device specific. A bad access
//! (wrong width or alignment, unknown offset, a write to a read-only register, a write in the
//! wrong state) is logged and ignored: reads as zero, writes have no effect.

use core::ops::{BitOr, BitOrAssign};

use crate::device::{DeviceContext, VirtioDevice};
use crate::features::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1};
use crate::memory::GuestMemory;
use crate::queue::Queue;
use crate::status::{ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK};

/// 0x000 MagicValue (R): 0x74726976, "virt" in little-endian ASCII (virtio 1.2 §4.2.2).
pub const MAGIC_VALUE: u64 = 0x000;
/// 0x004 Version (R): 2 for the modern interface (virtio 1.2 §4.2.2).
pub const VERSION: u64 = 0x004;
/// 0x008 DeviceID (R): the virtio device type (virtio 1.2 §4.2.2, §5).
pub const DEVICE_ID: u64 = 0x008;
/// 0x00c VendorID (R) (virtio 1.2 §4.2.2).
pub const VENDOR_ID: u64 = 0x00c;
/// 0x010 DeviceFeatures (R): 32 feature bits selected by DeviceFeaturesSel (virtio 1.2
/// §4.2.2).
pub const DEVICE_FEATURES: u64 = 0x010;
/// 0x014 DeviceFeaturesSel (W): which 32-bit half of the device features to read.
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
/// 0x020 DriverFeatures (W): 32 accepted feature bits selected by DriverFeaturesSel
/// (virtio 1.2 §4.2.2).
pub const DRIVER_FEATURES: u64 = 0x020;
/// 0x024 DriverFeaturesSel (W).
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
/// 0x030 QueueSel (W): the queue the Queue* registers refer to (virtio 1.2 §4.2.2).
pub const QUEUE_SEL: u64 = 0x030;
/// 0x034 QueueNumMax (R): largest size of the selected queue; 0 if it does not exist.
pub const QUEUE_NUM_MAX: u64 = 0x034;
/// 0x038 QueueNum (W): size of the selected queue.
pub const QUEUE_NUM: u64 = 0x038;
/// 0x044 QueueReady (RW): the selected queue is enabled (virtio 1.2 §4.2.2).
pub const QUEUE_READY: u64 = 0x044;
/// 0x050 QueueNotify (W): the driver has new buffers in the queue whose index is written.
pub const QUEUE_NOTIFY: u64 = 0x050;
/// 0x060 InterruptStatus (R): bit 0 used buffer, bit 1 configuration change (virtio 1.2
/// §4.2.2).
pub const INTERRUPT_STATUS: u64 = 0x060;
/// 0x064 InterruptACK (W): clears the written InterruptStatus bits.
pub const INTERRUPT_ACK: u64 = 0x064;
/// 0x070 Status (RW): the device status (virtio 1.2 §2.1); writing 0 resets the device.
pub const STATUS: u64 = 0x070;
/// 0x080 QueueDescLow (W): descriptor table address, low 32 bits (virtio 1.2 §4.2.2).
pub const QUEUE_DESC_LOW: u64 = 0x080;
/// 0x084 QueueDescHigh (W): descriptor table address, high 32 bits.
pub const QUEUE_DESC_HIGH: u64 = 0x084;
/// 0x090 QueueDriverLow (W): available ring (driver area) address, low 32 bits.
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
/// 0x094 QueueDriverHigh (W): available ring address, high 32 bits.
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
/// 0x0a0 QueueDeviceLow (W): used ring (device area) address, low 32 bits.
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
/// 0x0a4 QueueDeviceHigh (W): used ring address, high 32 bits.
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
/// 0x0ac SHMSel (W): shared memory region selector (virtio 1.2 §4.2.2).
pub const SHM_SEL: u64 = 0x0ac;
/// 0x0b0 SHMLenLow (R): selected region's length; all ones when there is no such region.
pub const SHM_LEN_LOW: u64 = 0x0b0;
/// 0x0b4 SHMLenHigh (R).
pub const SHM_LEN_HIGH: u64 = 0x0b4;
/// 0x0b8 SHMBaseLow (R): selected region's address; all ones when there is no such region.
pub const SHM_BASE_LOW: u64 = 0x0b8;
/// 0x0bc SHMBaseHigh (R).
pub const SHM_BASE_HIGH: u64 = 0x0bc;
/// 0x0fc ConfigGeneration (R): changes whenever the configuration space changes
/// (virtio 1.2 §4.2.2, §2.5.1).
pub const CONFIG_GENERATION: u64 = 0x0fc;
/// 0x100 Config: start of the device-specific configuration space (virtio 1.2 §4.2.2).
pub const CONFIG: u64 = 0x100;

/// The MagicValue register's value: "virt".
pub const MAGIC: u32 = 0x7472_6976;
/// The Version register's value: 2, the modern (non-legacy) interface.
pub const MMIO_VERSION: u32 = 2;
/// The VendorID register's value: "Mkvm" (little-endian ASCII, for "Microkit VMM"). Linux
/// does not match on it; it only tells a curious driver who emulates the device.
pub const VENDOR: u32 = 0x6d76_6b4d;
/// Most queues a device behind this transport may have.
pub const MAX_QUEUES: usize = 8;

/// Interrupt causes, as in InterruptStatus (virtio 1.2 §4.2.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Interrupt(u32);

impl Interrupt {
    /// Nothing to signal.
    pub const NONE: Interrupt = Interrupt(0);
    /// Bit 0: the device used a buffer in at least one queue.
    pub const USED_BUFFER: Interrupt = Interrupt(1);
    /// Bit 1: the configuration space changed (or the device needs a reset).
    pub const CONFIG_CHANGE: Interrupt = Interrupt(2);

    /// The InterruptStatus bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether the VMM should raise the device's interrupt line.
    pub fn is_raised(self) -> bool {
        self.0 != 0
    }

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: Interrupt) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Interrupt {
    type Output = Interrupt;
    fn bitor(self, rhs: Interrupt) -> Interrupt {
        Interrupt(self.0 | rhs.0)
    }
}

impl BitOrAssign for Interrupt {
    fn bitor_assign(&mut self, rhs: Interrupt) {
        self.0 |= rhs.0;
    }
}

/// A page the guest reads the registers from without a trap: mapped read-only into the guest
/// at the transport's base (the guest's stores still trap, and reach [`MmioTransport::write`]).
/// [`MmioTransport::sync_registers`] keeps it equal to what [`MmioTransport::read`] returns, so
/// a driver's InterruptStatus, Status and configuration reads cost no exit. Implemented by the
/// VMM over the shared page.
pub trait RegisterPage {
    /// Stores `value`, the 4 bytes a 32-bit little-endian read at `offset` (a multiple of 4
    /// below [`REGION_SIZE`]) returns.
    fn store(&mut self, offset: u64, value: u32);
}

/// Bytes of the virtio-MMIO register window: registers below [`CONFIG`], the device's
/// configuration space from there.
pub const REGION_SIZE: u64 = 0x200;

/// Status values the driver walks through during initialisation (virtio 1.2 §3.1.1),
/// without FAILED and DEVICE_NEEDS_RESET.
const STATUS_TRANSITIONS: [(u32, u32); 5] = [
    (0, ACKNOWLEDGE),
    // Some drivers set ACKNOWLEDGE and DRIVER in one write.
    (0, ACKNOWLEDGE | DRIVER),
    (ACKNOWLEDGE, ACKNOWLEDGE | DRIVER),
    (ACKNOWLEDGE | DRIVER, ACKNOWLEDGE | DRIVER | FEATURES_OK),
    (ACKNOWLEDGE | DRIVER | FEATURES_OK, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
];

/// A virtio device behind the virtio-MMIO register interface.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    queues: [Queue; MAX_QUEUES],
    num_queues: usize,
    status: u32,
    activated: bool,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
    defer_notify_interrupts: bool,
    /// Whether a [`RegisterPage`] needs every register again (anything but InterruptStatus and
    /// Status may have changed since the last [`MmioTransport::sync_registers`]).
    page_stale: bool,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// The transport for `device`, in the reset state. A device with more than
    /// [`MAX_QUEUES`] queues gets only the first `MAX_QUEUES`.
    pub fn new(device: D) -> MmioTransport<D> {
        let mut queues = [const { Queue::new(0) }; MAX_QUEUES];
        let sizes = device.queue_max_sizes();
        if sizes.len() > MAX_QUEUES {
            log::warn!(target: "virtio", "mmio: device has {} queues; using {}", sizes.len(), MAX_QUEUES);
        }
        let num_queues = core::cmp::min(sizes.len(), MAX_QUEUES);
        for (q, &max) in queues.iter_mut().zip(sizes) {
            *q = Queue::new(max);
        }
        MmioTransport {
            device,
            queues,
            num_queues,
            status: 0,
            activated: false,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
            defer_notify_interrupts: false,
            page_stale: true,
        }
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, mutably (for example to reach its backend).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The device status (virtio 1.2 §2.1).
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Pending interrupt causes (InterruptStatus). The line is asserted while non-zero.
    pub fn interrupt_status(&self) -> Interrupt {
        Interrupt(self.interrupt_status)
    }

    /// Queue `index`, if the device has it.
    pub fn queue(&self, index: usize) -> Option<&Queue> {
        self.queues.get(..self.num_queues)?.get(index)
    }

    /// All feature bits offered: the device's plus VERSION_1 and the ring features.
    pub fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX
    }

    /// The driver's accepted features (final once FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Resets the device (as if the driver wrote 0 to Status).
    pub fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.activated = false;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.page_stale = true;
    }

    /// Brings `page` up to date with what [`MmioTransport::read`] returns at every 4-byte
    /// offset: all of it after a change other than an interrupt (a register write, a
    /// configuration change, a reset), else InterruptStatus, Status and DeviceFeatures only.
    /// Call it after every access and every [`MmioTransport::process`], before the guest
    /// runs again. A device's configuration space is refreshed when the device signals a
    /// change (as the specification asks it to).
    pub fn sync_registers(&mut self, page: &mut dyn RegisterPage) {
        if !self.page_stale {
            page.store(INTERRUPT_STATUS, self.interrupt_status);
            page.store(STATUS, self.status);
            // A backend may change what the device offers (a disk turning read-only).
            page.store(DEVICE_FEATURES, self.register_value(DEVICE_FEATURES).unwrap_or(0));
            return;
        }
        for offset in (0..CONFIG).step_by(4) {
            page.store(offset, self.register_value(offset).unwrap_or(0));
        }
        for offset in (CONFIG..REGION_SIZE).step_by(4) {
            let mut bytes = [0u8; 4];
            self.device.read_config(offset - CONFIG, &mut bytes);
            page.store(offset, u32::from_le_bytes(bytes));
        }
        self.page_stale = false;
    }

    /// A guest read of `width` bytes at `offset` in the device's MMIO region.
    pub fn read(&self, offset: u64, width: u8) -> u64 {
        if offset >= CONFIG {
            return self.read_config(offset - CONFIG, width);
        }
        if width != 4 || offset % 4 != 0 {
            guest_warn!("mmio: {}-byte read at {:#x} (registers are 32-bit)", width, offset);
            return 0;
        }
        u64::from(self.read_register(offset))
    }

    fn read_register(&self, offset: u64) -> u32 {
        self.register_value(offset).unwrap_or_else(|| {
            guest_warn!("mmio: read of a write-only or unknown register {:#x}", offset);
            0
        })
    }

    /// What a read of register `offset` returns; `None` for a write-only or unknown one.
    fn register_value(&self, offset: u64) -> Option<u32> {
        Some(match offset {
            MAGIC_VALUE => MAGIC,
            VERSION => MMIO_VERSION,
            DEVICE_ID => self.device.device_id(),
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size())),
            QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready())),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH => u32::MAX,
            CONFIG_GENERATION => self.config_generation,
            _ => return None,
        })
    }

    fn read_config(&self, offset: u64, width: u8) -> u64 {
        if !matches!(width, 1 | 2 | 4 | 8) || offset % u64::from(width) != 0 {
            guest_warn!("mmio: bad config read: {} bytes at config {:#x}", width, offset);
            return 0;
        }
        let mut bytes = [0u8; 8];
        self.device.read_config(offset, &mut bytes[..usize::from(width)]);
        u64::from_le_bytes(bytes)
    }

    /// A guest write of `width` bytes at `offset`. Returns the interrupt causes this access
    /// raised: when [`Interrupt::is_raised`], the VMM should inject the device's interrupt.
    pub fn write<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        offset: u64,
        width: u8,
        value: u64,
    ) -> Interrupt {
        if offset != QUEUE_NOTIFY && offset != INTERRUPT_ACK {
            self.page_stale = true;
        }
        if offset >= CONFIG {
            self.write_config(offset - CONFIG, width, value);
            return Interrupt::NONE;
        }
        if width != 4 || offset % 4 != 0 {
            guest_warn!("mmio: {}-byte write at {:#x} (registers are 32-bit)", width, offset);
            return Interrupt::NONE;
        }
        // A 4-byte access carries 32 bits.
        self.write_register(mem, offset, value as u32)
    }

    fn write_register<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        offset: u64,
        value: u32,
    ) -> Interrupt {
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES => self.write_driver_features(value),
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_NUM => self.with_queue_config(|q| q.set_size(value)),
            QUEUE_READY => self.write_queue_ready(mem, value),
            QUEUE_NOTIFY => return self.notify(mem, value),
            INTERRUPT_ACK => self.interrupt_status &= !value,
            STATUS => return self.write_status(mem, value),
            QUEUE_DESC_LOW => {
                self.with_queue_config(|q| q.set_desc_table(low(q.desc_table(), value)))
            }
            QUEUE_DESC_HIGH => {
                self.with_queue_config(|q| q.set_desc_table(high(q.desc_table(), value)))
            }
            QUEUE_DRIVER_LOW => {
                self.with_queue_config(|q| q.set_avail_ring(low(q.avail_ring(), value)))
            }
            QUEUE_DRIVER_HIGH => {
                self.with_queue_config(|q| q.set_avail_ring(high(q.avail_ring(), value)))
            }
            QUEUE_DEVICE_LOW => {
                self.with_queue_config(|q| q.set_used_ring(low(q.used_ring(), value)))
            }
            QUEUE_DEVICE_HIGH => {
                self.with_queue_config(|q| q.set_used_ring(high(q.used_ring(), value)))
            }
            SHM_SEL => {}
            MAGIC_VALUE | VERSION | DEVICE_ID | VENDOR_ID | DEVICE_FEATURES | QUEUE_NUM_MAX
            | INTERRUPT_STATUS | SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH
            | CONFIG_GENERATION => {
                guest_warn!("mmio: write of read-only register {:#x}", offset);
            }
            _ => guest_warn!("mmio: write of unknown register {:#x}", offset),
        }
        Interrupt::NONE
    }

    fn write_config(&mut self, offset: u64, width: u8, value: u64) {
        if !matches!(width, 1 | 2 | 4 | 8) || offset % u64::from(width) != 0 {
            guest_warn!("mmio: bad config write: {} bytes at config {:#x}", width, offset);
            return;
        }
        let bytes = value.to_le_bytes();
        self.device.write_config(offset, &bytes[..usize::from(width)]);
    }

    /// The selected queue, if it exists.
    fn selected(&self) -> Option<&Queue> {
        self.queue(usize::try_from(self.queue_sel).ok()?)
    }

    /// Applies `f` to the selected queue if the driver may configure it now: after
    /// FEATURES_OK, before DRIVER_OK (virtio 1.2 §3.1.1 step 7), while it is not enabled.
    fn with_queue_config(&mut self, f: impl FnOnce(&mut Queue)) {
        let sel = self.queue_sel;
        if self.status & FEATURES_OK == 0 || self.status & (DRIVER_OK | FAILED) != 0 {
            guest_warn!("mmio: queue {} configured in status {:#x}", sel, self.status);
            return;
        }
        let Some(q) = self
            .queues
            .get_mut(..self.num_queues)
            .and_then(|qs| qs.get_mut(usize::try_from(sel).ok()?))
        else {
            guest_warn!("mmio: queue {} does not exist", sel);
            return;
        };
        if q.ready() {
            guest_warn!("mmio: queue {} configured while enabled", sel);
            return;
        }
        f(q);
    }

    fn write_queue_ready<M: GuestMemory + ?Sized>(&mut self, mem: &M, value: u32) {
        let features = self.driver_features;
        let sel = self.queue_sel;
        if value == 0 {
            // Disabling needs VIRTIO_F_RING_RESET once DRIVER_OK is set; not offered.
            if self.status & DRIVER_OK == 0 {
                if let Some(q) = self
                    .queues
                    .get_mut(..self.num_queues)
                    .and_then(|qs| qs.get_mut(usize::try_from(sel).ok()?))
                {
                    q.disable();
                }
            }
            return;
        }
        self.with_queue_config(|q| {
            if let Err(e) = q.enable(mem, features) {
                guest_warn!("mmio: queue {} not enabled: {}", sel, e);
            }
        });
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status & DRIVER == 0 || self.status & FEATURES_OK != 0 {
            guest_warn!("mmio: DriverFeatures written in status {:#x}", self.status);
            return;
        }
        let v = u64::from(value);
        self.driver_features = match self.driver_features_sel {
            0 => (self.driver_features & !0xffff_ffff) | v,
            1 => (self.driver_features & 0xffff_ffff) | (v << 32),
            sel => {
                if value != 0 {
                    guest_warn!("mmio: features {:#x} in DriverFeatures word {}", value, sel);
                }
                self.driver_features
            }
        };
    }

    /// Applies a Status write: 0 resets, otherwise one step of [`STATUS_TRANSITIONS`] or
    /// setting FAILED. DEVICE_NEEDS_RESET is the device's bit: the driver cannot change it.
    fn write_status<M: GuestMemory + ?Sized>(&mut self, mem: &mut M, value: u32) -> Interrupt {
        if value == 0 {
            self.reset();
            return Interrupt::NONE;
        }
        let sticky = self.status & DEVICE_NEEDS_RESET;
        let old = self.status & !DEVICE_NEEDS_RESET;
        let new = value & !DEVICE_NEEDS_RESET;
        if new == old {
            return Interrupt::NONE;
        }
        if new == old | FAILED {
            guest_warn!("mmio: driver set FAILED (status {:#x})", old);
            self.status = new | sticky;
            return Interrupt::NONE;
        }
        if old & FAILED != 0 || !STATUS_TRANSITIONS.contains(&(old, new)) {
            guest_warn!("mmio: status {:#x} -> {:#x} not allowed", old, new);
            return Interrupt::NONE;
        }
        if new & FEATURES_OK != 0 && old & FEATURES_OK == 0 && !self.features_acceptable() {
            // virtio 1.2 §3.1.1 step 6: FEATURES_OK stays clear on read-back.
            return Interrupt::NONE;
        }
        self.status = new | sticky;
        if new & DRIVER_OK != 0 && old & DRIVER_OK == 0 {
            return self.activate(mem);
        }
        Interrupt::NONE
    }

    fn features_acceptable(&self) -> bool {
        let unknown = self.driver_features & !self.offered_features();
        if unknown != 0 {
            guest_warn!("mmio: driver accepted features {:#x} not offered", unknown);
            return false;
        }
        if self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            guest_warn!("mmio: driver did not accept VIRTIO_F_VERSION_1");
            return false;
        }
        true
    }

    fn activate<M: GuestMemory + ?Sized>(&mut self, mem: &mut M) -> Interrupt {
        let queues = self.queues.get(..self.num_queues).unwrap_or(&[]);
        match self.device.activate(self.driver_features, queues) {
            Ok(()) => {
                self.activated = true;
                // Buffers made available before DRIVER_OK are picked up now.
                self.process(mem)
            }
            Err(e) => {
                guest_warn!("mmio: device not activated: {}; device needs reset", e);
                self.status |= DEVICE_NEEDS_RESET;
                self.raise(Interrupt::CONFIG_CHANGE)
            }
        }
    }

    /// A QueueNotify whose value the VMM did not read (it saves reading the guest's
    /// register): every usable queue with new available buffers counts as notified. A device may look at its queues at
    /// any time, so this is what a notification of any one of them may do. `None` (nothing
    /// done) until the driver is DRIVER_OK: then the VMM takes the write's usual path, which
    /// checks and logs it.
    pub fn notify_all<M: GuestMemory + ?Sized>(&mut self, mem: &mut M) -> Option<Interrupt> {
        if !self.activated {
            return None;
        }
        // Only the queues with new buffers: a device with several queues (sound has four)
        // need not look at the others for every transmit.
        let mut usable = 0u64;
        for (i, q) in self.queues.iter_mut().take(self.num_queues.min(64)).enumerate() {
            if q.has_new_available(mem) {
                usable |= 1 << i;
            }
        }
        let notify = |dev: &mut D, ctx: &mut DeviceContext<'_, M>| {
            if usable != 0 {
                dev.queues_notify(usable, ctx);
            }
        };
        Some(self.run_with(mem, !self.defer_notify_interrupts, notify))
    }

    fn notify<M: GuestMemory + ?Sized>(&mut self, mem: &mut M, value: u32) -> Interrupt {
        let usable = usize::try_from(value)
            .ok()
            .and_then(|i| self.queue(i))
            .is_some_and(|q| q.ready() && !q.needs_reset());
        if !self.activated || !usable {
            guest_warn!("mmio: notify of queue {} ignored (status {:#x})", value, self.status);
            return Interrupt::NONE;
        }
        // `value` indexes an existing queue, so it fits in u16.
        let index = value as u16;
        if self.defer_notify_interrupts {
            return self.run_with(mem, false, |dev, ctx| dev.queue_notify(index, ctx));
        }
        self.run(mem, |dev, ctx| dev.queue_notify(index, ctx))
    }

    /// Used-buffer interrupts owed after a queue notification are decided at the next
    /// [`MmioTransport::process`], not at once: a driver that polls for used buffers (Linux's
    /// hvc) has consumed them and moved `used_event` past them by then, so it gets no
    /// interrupt at all. The VMM must call `process` when the vCPU idles and at each timer
    /// tick, or interrupts are late.
    pub fn set_defer_notify_interrupts(&mut self, defer: bool) {
        self.defer_notify_interrupts = defer;
    }

    /// Lets the device make progress without a notification: backend completions, space or
    /// data that arrived asynchronously. Returns the interrupt causes raised.
    ///
    /// The device is polled in every state (so it can drain backend completions that were
    /// in flight across a reset); it only touches its queues while active.
    pub fn process<M: GuestMemory + ?Sized>(&mut self, mem: &mut M) -> Interrupt {
        self.run(mem, |dev, ctx| dev.poll(ctx))
    }

    /// Runs `f` on the device, then collects queue errors and interrupt causes.
    fn run<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        f: impl FnOnce(&mut D, &mut DeviceContext<'_, M>),
    ) -> Interrupt {
        self.run_with(mem, true, f)
    }

    fn run_with<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        used: bool,
        f: impl FnOnce(&mut D, &mut DeviceContext<'_, M>),
    ) -> Interrupt {
        let queues = self.queues.get_mut(..self.num_queues).unwrap_or(&mut []);
        let mut ctx = DeviceContext::new(mem, queues);
        f(&mut self.device, &mut ctx);
        let mut irq = Interrupt::NONE;
        if ctx.config_changed() {
            self.config_generation = self.config_generation.wrapping_add(1);
            self.page_stale = true;
            irq |= Interrupt::CONFIG_CHANGE;
        }
        let mut broken = false;
        for q in ctx.queues.iter_mut() {
            broken |= q.needs_reset();
            if used && q.needs_interrupt(&*ctx.mem) {
                irq |= Interrupt::USED_BUFFER;
            }
        }
        if broken && self.status & DEVICE_NEEDS_RESET == 0 {
            // virtio 1.2 §2.1.2: set DEVICE_NEEDS_RESET and send a config change notification.
            self.status |= DEVICE_NEEDS_RESET;
            irq |= Interrupt::CONFIG_CHANGE;
        }
        self.raise(irq)
    }

    fn raise(&mut self, irq: Interrupt) -> Interrupt {
        self.interrupt_status |= irq.bits();
        irq
    }
}

/// `old` with its low 32 bits replaced by `value`.
fn low(old: u64, value: u32) -> u64 {
    (old & !0xffff_ffff) | u64::from(value)
}

/// `old` with its high 32 bits replaced by `value`.
fn high(old: u64, value: u32) -> u64 {
    (old & 0xffff_ffff) | (u64::from(value) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{read_config_bytes, ActivateError};
    use crate::memory::SliceMemory;
    use crate::testing::DriverQueue;

    const BASE: u64 = 0x4000_0000;
    const DATA: u64 = BASE + 0x8000;
    const DEV_FEATURE: u64 = 1 << 5;

    #[derive(Default)]
    struct Dummy {
        notified: Vec<u16>,
        polls: usize,
        activated: Option<u64>,
        resets: usize,
        config: [u8; 8],
        fail_activate: bool,
        config_change: bool,
    }

    impl Dummy {
        fn complete_all<M: GuestMemory + ?Sized>(ctx: &mut DeviceContext<'_, M>, q: u16) {
            if let Some((queue, mem)) = ctx.queue(q) {
                while let Some(c) = queue.pop(mem) {
                    queue.add_used(mem, c.head(), 7);
                }
            }
        }
    }

    impl VirtioDevice for Dummy {
        fn device_id(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            DEV_FEATURE
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            read_config_bytes(&self.config, offset, data);
        }
        fn write_config(&mut self, offset: u64, data: &[u8]) {
            let start = offset as usize;
            if let Some(dst) = self.config.get_mut(start..start + data.len()) {
                dst.copy_from_slice(data);
            }
        }
        fn activate(&mut self, features: u64, queues: &[Queue]) -> Result<(), ActivateError> {
            if self.fail_activate || !queues[0].ready() {
                return Err(ActivateError::QueueNotReady(0));
            }
            self.activated = Some(features);
            Ok(())
        }
        fn reset(&mut self) {
            self.resets += 1;
            self.activated = None;
        }
        fn queue_notify<M: GuestMemory + ?Sized>(
            &mut self,
            queue: u16,
            ctx: &mut DeviceContext<'_, M>,
        ) {
            self.notified.push(queue);
            Dummy::complete_all(ctx, queue);
        }
        fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
            self.polls += 1;
            if core::mem::take(&mut self.config_change) {
                ctx.signal_config_change();
            }
            Dummy::complete_all(ctx, 0);
        }
    }

    type T = MmioTransport<Dummy>;

    fn w(t: &mut T, mem: &mut SliceMemory<'_>, offset: u64, v: u32) -> Interrupt {
        t.write(mem, offset, 4, u64::from(v))
    }

    fn r(t: &T, offset: u64) -> u32 {
        t.read(offset, 4) as u32
    }

    fn negotiate(t: &mut T, mem: &mut SliceMemory<'_>, features: u64) {
        w(t, mem, STATUS, ACKNOWLEDGE);
        w(t, mem, STATUS, ACKNOWLEDGE | DRIVER);
        w(t, mem, DRIVER_FEATURES_SEL, 0);
        w(t, mem, DRIVER_FEATURES, features as u32);
        w(t, mem, DRIVER_FEATURES_SEL, 1);
        w(t, mem, DRIVER_FEATURES, (features >> 32) as u32);
        w(t, mem, STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    }

    fn setup_queue(t: &mut T, mem: &mut SliceMemory<'_>, index: u32, drv: &DriverQueue) {
        w(t, mem, QUEUE_SEL, index);
        w(t, mem, QUEUE_NUM, u32::from(drv.size));
        w(t, mem, QUEUE_DESC_LOW, drv.desc as u32);
        w(t, mem, QUEUE_DESC_HIGH, (drv.desc >> 32) as u32);
        w(t, mem, QUEUE_DRIVER_LOW, drv.avail as u32);
        w(t, mem, QUEUE_DRIVER_HIGH, (drv.avail >> 32) as u32);
        w(t, mem, QUEUE_DEVICE_LOW, drv.used as u32);
        w(t, mem, QUEUE_DEVICE_HIGH, (drv.used >> 32) as u32);
        w(t, mem, QUEUE_READY, 1);
    }

    const RUNNING: u32 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;

    /// A transport whose driver negotiated VERSION_1 and enabled queue 0 (size 8 at BASE).
    fn running(mem: &mut SliceMemory<'_>) -> (T, DriverQueue) {
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, mem, VIRTIO_F_VERSION_1);
        let drv = DriverQueue::at(BASE, 8);
        setup_queue(&mut t, mem, 0, &drv);
        w(&mut t, mem, STATUS, RUNNING);
        assert_eq!(r(&t, STATUS), RUNNING);
        (t, drv)
    }

    fn ram() -> Vec<u8> {
        vec![0u8; 0x10000]
    }

    #[test]
    fn identification_registers() {
        let t = T::new(Dummy::default());
        assert_eq!(r(&t, MAGIC_VALUE), 0x7472_6976);
        assert_eq!(r(&t, VERSION), 2);
        assert_eq!(r(&t, DEVICE_ID), 42);
        assert_eq!(r(&t, VENDOR_ID), VENDOR);
        assert_eq!(r(&t, STATUS), 0);
        assert_eq!(r(&t, INTERRUPT_STATUS), 0);
        assert_eq!(r(&t, CONFIG_GENERATION), 0);
    }

    #[test]
    fn device_features_are_read_in_halves() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        let low = DEV_FEATURE | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;
        assert_eq!(u64::from(r(&t, DEVICE_FEATURES)), low);
        w(&mut t, &mut mem, DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&t, DEVICE_FEATURES), 1, "VIRTIO_F_VERSION_1 is bit 32");
        w(&mut t, &mut mem, DEVICE_FEATURES_SEL, 2);
        assert_eq!(r(&t, DEVICE_FEATURES), 0);
    }

    #[test]
    fn features_ok_accepted_for_offered_features() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1 | DEV_FEATURE);
        assert_eq!(r(&t, STATUS), ACKNOWLEDGE | DRIVER | FEATURES_OK);
        assert_eq!(t.driver_features(), VIRTIO_F_VERSION_1 | DEV_FEATURE);
    }

    #[test]
    fn features_ok_rejected_for_features_not_offered() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1 | 1 << 3);
        assert_eq!(r(&t, STATUS), ACKNOWLEDGE | DRIVER, "FEATURES_OK not set on read-back");
        w(&mut t, &mut mem, STATUS, ACKNOWLEDGE | DRIVER | FAILED);
        assert_eq!(r(&t, STATUS), ACKNOWLEDGE | DRIVER | FAILED);
    }

    #[test]
    fn features_ok_rejected_without_version_1() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, DEV_FEATURE);
        assert_eq!(r(&t, STATUS), ACKNOWLEDGE | DRIVER);
    }

    #[test]
    fn driver_features_only_written_while_negotiating() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        w(&mut t, &mut mem, DRIVER_FEATURES, DEV_FEATURE as u32);
        assert_eq!(t.driver_features(), 0, "before DRIVER");
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1);
        w(&mut t, &mut mem, DRIVER_FEATURES_SEL, 0);
        w(&mut t, &mut mem, DRIVER_FEATURES, DEV_FEATURE as u32);
        assert_eq!(t.driver_features(), VIRTIO_F_VERSION_1, "after FEATURES_OK");
    }

    #[test]
    fn status_steps_cannot_be_skipped() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        w(&mut t, &mut mem, STATUS, RUNNING);
        assert_eq!(r(&t, STATUS), 0);
        w(&mut t, &mut mem, STATUS, ACKNOWLEDGE);
        w(&mut t, &mut mem, STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        assert_eq!(r(&t, STATUS), ACKNOWLEDGE);
        w(&mut t, &mut mem, STATUS, ACKNOWLEDGE | DRIVER);
        w(&mut t, &mut mem, STATUS, ACKNOWLEDGE);
        assert_eq!(r(&t, STATUS), ACKNOWLEDGE | DRIVER, "bits cannot be cleared");
    }

    #[test]
    fn driver_ok_activates_the_device() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (t, _) = running(&mut mem);
        assert_eq!(t.device().activated, Some(VIRTIO_F_VERSION_1));
        assert_eq!(t.device().polls, 1, "activation looks at the queues once");
    }

    #[test]
    fn failed_activation_sets_needs_reset() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1);
        let irq = w(&mut t, &mut mem, STATUS, RUNNING);
        assert_eq!(irq, Interrupt::CONFIG_CHANGE);
        assert_eq!(r(&t, STATUS), RUNNING | DEVICE_NEEDS_RESET);
        assert_eq!(r(&t, INTERRUPT_STATUS), 2);
        assert_eq!(t.device().activated, None);
    }

    #[test]
    fn reset_clears_queues_features_and_interrupts() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut t, mut drv) = running(&mut mem);
        drv.add_chain(&mut mem, &[(DATA, 4, true)]);
        w(&mut t, &mut mem, QUEUE_NOTIFY, 0);
        assert_ne!(r(&t, INTERRUPT_STATUS), 0);
        w(&mut t, &mut mem, STATUS, 0);
        assert_eq!(r(&t, STATUS), 0);
        assert_eq!(r(&t, INTERRUPT_STATUS), 0);
        assert_eq!(r(&t, QUEUE_READY), 0);
        assert_eq!(t.driver_features(), 0);
        assert_eq!(t.device().resets, 1);
        assert_eq!(t.queue(0).unwrap().desc_table(), 0);
        assert_eq!(w(&mut t, &mut mem, QUEUE_NOTIFY, 0), Interrupt::NONE);
        assert_eq!(t.device().notified, vec![0], "no notify after reset");
    }

    /// After every access, process and reset, the page synced holds what a trapped read
    /// returns at each offset (random driver behaviour, well-formed or not).
    #[test]
    fn a_synced_register_page_reads_like_the_registers() {
        // The writable registers, a misaligned config write and the last words of each area.
        let regs: Vec<u64> = crate::testing::WRITABLE_REGISTERS
            .iter()
            .copied()
            .chain([CONFIG + 2, 0x0fc, 0x1fc])
            .collect();
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..200 {
            let mut ram = ram();
            let mut mem = SliceMemory::new(BASE, &mut ram);
            let (mut t, mut drv) = if round % 2 == 0 {
                running(&mut mem)
            } else {
                (T::new(Dummy::default()), DriverQueue::at(BASE, 8))
            };
            let mut page = crate::testing::RegisterBuf::new(0xdead_beef);
            t.sync_registers(&mut page);
            for step in 0..100 {
                match rng.u32(0..10) {
                    0..=4 => {
                        let off = regs[rng.usize(..regs.len())];
                        let value = match rng.u32(0..4) {
                            0 => rng.u32(..),
                            1 => rng.u32(0..4),
                            _ => [0, ACKNOWLEDGE, ACKNOWLEDGE | DRIVER, RUNNING, 1, 3]
                                [rng.usize(..6)],
                        };
                        let width = if off >= CONFIG { [1, 2, 4][rng.usize(..3)] } else { 4 };
                        t.write(
                            &mut mem,
                            off,
                            width,
                            u64::from(value) & (u64::MAX >> (64 - 8 * width)),
                        );
                    }
                    5 => {
                        drv.add_chain(&mut mem, &[(DATA, 4, true)]);
                        let _ = t.notify_all(&mut mem);
                    }
                    6 => {
                        t.device_mut().config_change = true;
                        t.device_mut().config[0] = rng.u8(..);
                        t.process(&mut mem);
                    }
                    7 => {
                        t.process(&mut mem);
                    }
                    8 => {
                        let isr = t.read(INTERRUPT_STATUS, 4);
                        t.write(&mut mem, INTERRUPT_ACK, 4, isr);
                    }
                    _ => {
                        if rng.u32(0..8) == 0 {
                            t.reset();
                        }
                    }
                }
                t.sync_registers(&mut page);
                for off in (0..REGION_SIZE).step_by(4) {
                    assert_eq!(
                        u64::from(page.at(off)),
                        t.read(off, 4),
                        "round {round} step {step}: offset {off:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn notify_all_notifies_every_usable_queue_and_nothing_before_driver_ok() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1);
        assert_eq!(t.notify_all(&mut mem), None, "not DRIVER_OK: the ordinary path checks it");
        // Queue 0 only: queue 1 is never made ready.
        let mut drv = DriverQueue::at(BASE, 8);
        setup_queue(&mut t, &mut mem, 0, &drv);
        w(&mut t, &mut mem, STATUS, RUNNING);
        drv.add_chain(&mut mem, &[(DATA, 4, true)]);
        assert_eq!(t.notify_all(&mut mem), Some(Interrupt::USED_BUFFER));
        assert_eq!(t.device().notified, vec![0]);
        assert_eq!(r(&t, INTERRUPT_STATUS), 1);
        // Both queues ready: only those with new buffers are notified, in order.
        let mut ram2 = vec![0u8; 0x10000];
        let mut mem = SliceMemory::new(BASE, &mut ram2);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1);
        let (mut q0, mut q1) = (DriverQueue::at(BASE, 8), DriverQueue::at(BASE + 0x1000, 8));
        setup_queue(&mut t, &mut mem, 0, &q0);
        setup_queue(&mut t, &mut mem, 1, &q1);
        w(&mut t, &mut mem, STATUS, RUNNING);
        assert_eq!(t.notify_all(&mut mem), Some(Interrupt::NONE), "nothing new: nothing to do");
        assert_eq!(t.device().notified, vec![]);
        q1.add_chain(&mut mem, &[(DATA, 4, true)]);
        assert!(t.notify_all(&mut mem).is_some());
        assert_eq!(t.device().notified, vec![1]);
        q0.add_chain(&mut mem, &[(DATA, 4, true)]);
        q1.add_chain(&mut mem, &[(DATA + 8, 4, true)]);
        assert!(t.notify_all(&mut mem).is_some());
        assert_eq!(t.device().notified, vec![1, 0, 1]);
    }

    #[test]
    fn queue_registers_select_and_assemble_addresses() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        assert_eq!(r(&t, QUEUE_NUM_MAX), 16);
        w(&mut t, &mut mem, QUEUE_SEL, 1);
        assert_eq!(r(&t, QUEUE_NUM_MAX), 8);
        w(&mut t, &mut mem, QUEUE_SEL, 2);
        assert_eq!(r(&t, QUEUE_NUM_MAX), 0, "queue 2 does not exist");
        assert_eq!(r(&t, QUEUE_READY), 0);
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1);
        let drv = DriverQueue::at(BASE + 0x1000, 8);
        setup_queue(&mut t, &mut mem, 1, &drv);
        assert_eq!(r(&t, QUEUE_READY), 1);
        let q = t.queue(1).unwrap();
        assert_eq!(
            (q.desc_table(), q.avail_ring(), q.used_ring()),
            (drv.desc, drv.avail, drv.used)
        );
        assert_eq!(q.size(), 8);
        w(&mut t, &mut mem, QUEUE_SEL, 0);
        assert_eq!(r(&t, QUEUE_READY), 0);
    }

    #[test]
    fn queue_high_halves_are_kept() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1);
        w(&mut t, &mut mem, QUEUE_DESC_HIGH, 0x12);
        w(&mut t, &mut mem, QUEUE_DESC_LOW, 0x3400_0000);
        w(&mut t, &mut mem, QUEUE_DRIVER_HIGH, 1);
        w(&mut t, &mut mem, QUEUE_DEVICE_LOW, 0x40);
        let q = t.queue(0).unwrap();
        assert_eq!(q.desc_table(), 0x12_3400_0000);
        assert_eq!(q.avail_ring(), 1 << 32);
        assert_eq!(q.used_ring(), 0x40);
        assert_eq!(r(&t, QUEUE_DESC_LOW), 0, "write-only registers read as zero");
    }

    #[test]
    fn queue_ready_refuses_bad_rings() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        negotiate(&mut t, &mut mem, VIRTIO_F_VERSION_1);
        let mut drv = DriverQueue::at(BASE + 8, 8);
        setup_queue(&mut t, &mut mem, 0, &drv);
        assert_eq!(r(&t, QUEUE_READY), 0, "misaligned descriptor table");
        drv = DriverQueue::at(BASE + 0x10000, 8);
        setup_queue(&mut t, &mut mem, 0, &drv);
        assert_eq!(r(&t, QUEUE_READY), 0, "outside guest RAM");
        drv = DriverQueue::at(BASE, 8);
        setup_queue(&mut t, &mut mem, 0, &drv);
        w(&mut t, &mut mem, QUEUE_READY, 0);
        w(&mut t, &mut mem, QUEUE_NUM, 6);
        w(&mut t, &mut mem, QUEUE_READY, 1);
        assert_eq!(r(&t, QUEUE_READY), 0, "size not a power of two");
        w(&mut t, &mut mem, QUEUE_NUM, 32);
        w(&mut t, &mut mem, QUEUE_READY, 1);
        assert_eq!(r(&t, QUEUE_READY), 0, "size above QueueNumMax");
    }

    #[test]
    fn queue_config_only_between_features_ok_and_driver_ok() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        let drv = DriverQueue::at(BASE, 8);
        setup_queue(&mut t, &mut mem, 0, &drv);
        assert_eq!(r(&t, QUEUE_READY), 0, "before FEATURES_OK");
        let (mut t, _) = running(&mut mem);
        w(&mut t, &mut mem, QUEUE_SEL, 0);
        w(&mut t, &mut mem, QUEUE_DESC_LOW, 0x5000);
        w(&mut t, &mut mem, QUEUE_READY, 0);
        assert_eq!(t.queue(0).unwrap().desc_table(), BASE, "after DRIVER_OK");
        assert_eq!(r(&t, QUEUE_READY), 1);
    }

    #[test]
    fn notify_runs_the_device_and_raises_used_buffer() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut t, mut drv) = running(&mut mem);
        let h = drv.add_chain(&mut mem, &[(DATA, 4, true)]);
        let irq = w(&mut t, &mut mem, QUEUE_NOTIFY, 0);
        assert_eq!(irq, Interrupt::USED_BUFFER);
        assert_eq!(t.device().notified, vec![0]);
        assert_eq!(drv.pop_used(&mem), Some((u32::from(h), 7)));
        assert_eq!(r(&t, INTERRUPT_STATUS), 1);
        w(&mut t, &mut mem, INTERRUPT_ACK, 1);
        assert_eq!(r(&t, INTERRUPT_STATUS), 0);
    }

    #[test]
    fn deferred_notify_interrupt_is_decided_at_the_next_process() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut t, mut drv) = running(&mut mem);
        t.set_defer_notify_interrupts(true);
        let h = drv.add_chain(&mut mem, &[(DATA, 4, true)]);
        assert_eq!(w(&mut t, &mut mem, QUEUE_NOTIFY, 0), Interrupt::NONE, "not yet");
        assert_eq!(drv.pop_used(&mem), Some((u32::from(h), 7)), "the chain is done at once");
        assert_eq!(t.process(&mut mem), Interrupt::USED_BUFFER, "owed, and the driver wants it");
        assert_eq!(t.process(&mut mem), Interrupt::NONE, "raised once");
    }

    #[test]
    fn deferred_notify_interrupt_follows_the_drivers_later_suppression() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut t, mut drv) = running(&mut mem);
        t.set_defer_notify_interrupts(true);
        drv.add_chain(&mut mem, &[(DATA, 4, true)]);
        assert_eq!(w(&mut t, &mut mem, QUEUE_NOTIFY, 0), Interrupt::NONE);
        // The driver polled the used ring meanwhile and wants no interrupt.
        drv.pop_used(&mem).unwrap();
        drv.set_avail_flags(&mut mem, crate::queue::VIRTQ_AVAIL_F_NO_INTERRUPT);
        assert_eq!(t.process(&mut mem), Interrupt::NONE);
    }

    #[test]
    fn notify_of_unready_or_missing_queue_is_ignored() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut t, _) = running(&mut mem);
        assert_eq!(w(&mut t, &mut mem, QUEUE_NOTIFY, 1), Interrupt::NONE);
        assert_eq!(w(&mut t, &mut mem, QUEUE_NOTIFY, 9), Interrupt::NONE);
        assert_eq!(w(&mut t, &mut mem, QUEUE_NOTIFY, u32::MAX), Interrupt::NONE);
        assert!(t.device().notified.is_empty());
    }

    #[test]
    fn avail_idx_jump_sets_needs_reset_with_config_interrupt() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut t, mut drv) = running(&mut mem);
        drv.set_avail_idx(&mut mem, 9);
        let irq = w(&mut t, &mut mem, QUEUE_NOTIFY, 0);
        assert!(irq.contains(Interrupt::CONFIG_CHANGE));
        assert_eq!(r(&t, STATUS), RUNNING | DEVICE_NEEDS_RESET);
        w(&mut t, &mut mem, STATUS, RUNNING | FAILED);
        assert_eq!(r(&t, STATUS), RUNNING | FAILED | DEVICE_NEEDS_RESET, "sticky");
        assert_eq!(w(&mut t, &mut mem, QUEUE_NOTIFY, 0), Interrupt::NONE);
        w(&mut t, &mut mem, STATUS, 0);
        assert_eq!(r(&t, STATUS), 0);
    }

    #[test]
    fn process_polls_and_reports_config_changes() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut t, _) = running(&mut mem);
        assert_eq!(t.process(&mut mem), Interrupt::NONE);
        t.device_mut().config_change = true;
        assert_eq!(t.process(&mut mem), Interrupt::CONFIG_CHANGE);
        assert_eq!(r(&t, CONFIG_GENERATION), 1);
        assert_eq!(r(&t, INTERRUPT_STATUS), 2);
        assert_eq!(t.device().polls, 3);
    }

    #[test]
    fn process_before_driver_ok_raises_nothing() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        assert_eq!(t.process(&mut mem), Interrupt::NONE);
        assert_eq!(r(&t, INTERRUPT_STATUS), 0);
    }

    #[test]
    fn registers_need_aligned_32_bit_accesses() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        assert_eq!(t.read(MAGIC_VALUE, 2), 0);
        assert_eq!(t.read(MAGIC_VALUE, 8), 0);
        assert_eq!(t.read(MAGIC_VALUE + 1, 4), 0);
        t.write(&mut mem, STATUS, 1, u64::from(ACKNOWLEDGE));
        t.write(&mut mem, STATUS + 2, 4, u64::from(ACKNOWLEDGE));
        assert_eq!(r(&t, STATUS), 0);
        assert_eq!(r(&t, 0x0f0), 0, "unknown register");
        w(&mut t, &mut mem, 0x0f0, 1);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        for reg in [MAGIC_VALUE, VERSION, DEVICE_ID, QUEUE_NUM_MAX, INTERRUPT_STATUS] {
            w(&mut t, &mut mem, reg, 0x55);
        }
        assert_eq!(r(&t, MAGIC_VALUE), MAGIC);
        assert_eq!(r(&t, DEVICE_ID), 42);
        assert_eq!(r(&t, QUEUE_NUM_MAX), 16);
        assert_eq!(r(&t, INTERRUPT_STATUS), 0);
    }

    #[test]
    fn shared_memory_regions_do_not_exist() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        w(&mut t, &mut mem, SHM_SEL, 0);
        for reg in [SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH] {
            assert_eq!(r(&t, reg), u32::MAX);
        }
    }

    #[test]
    fn config_space_allows_1_2_4_8_byte_aligned_accesses() {
        let mut ram = ram();
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut t = T::new(Dummy::default());
        t.device_mut().config = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(t.read(CONFIG + 1, 1), 2);
        assert_eq!(t.read(CONFIG + 2, 2), 0x0403);
        assert_eq!(t.read(CONFIG + 4, 4), 0x0807_0605);
        assert_eq!(t.read(CONFIG, 8), 0x0807_0605_0403_0201);
        assert_eq!(t.read(CONFIG + 1, 2), 0, "misaligned");
        assert_eq!(t.read(CONFIG, 3), 0, "bad width");
        assert_eq!(t.read(CONFIG + 8, 4), 0, "past the end");
        t.write(&mut mem, CONFIG + 2, 2, 0xbbaa);
        assert_eq!(t.device().config[2..4], [0xaa, 0xbb]);
        t.write(&mut mem, CONFIG + 3, 2, 0xffff);
        assert_eq!(t.device().config[2..4], [0xaa, 0xbb]);
    }
}
