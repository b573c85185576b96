//! Finding the virtio block device among a window of virtio-MMIO
//! transports (QEMU virt has 32, 0x200 bytes apart). Virtio 1.2 §4.2.2:
//! MagicValue at 0x000, Version at 0x004 (2: modern), DeviceID at 0x008
//! (0: no device, 2: block).

use crate::Registers;

const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"
const BLOCK_DEVICE: u32 = 2;

/// Why no slot was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    /// No transport of the window holds a block device.
    NoBlockDevice {
        /// Slots looked at.
        slots: usize,
    },
    /// Only legacy (version 1) block transports were found.
    LegacyOnly {
        /// The first of them.
        slot: usize,
    },
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProbeError::NoBlockDevice { slots } => write!(
                f,
                "no virtio block device in the {slots} virtio-mmio slots \
                 (QEMU: -drive ...,id=hd -device virtio-blk-device,drive=hd)"
            ),
            ProbeError::LegacyOnly { slot } => write!(
                f,
                "the block device in virtio-mmio slot {slot} is a legacy transport: \
                 run QEMU with -global virtio-mmio.force-legacy=false"
            ),
        }
    }
}

/// The first slot of `slots` transports, `slot_size` bytes apart in `window`,
/// that holds a modern virtio block device.
pub fn find_block_slot<R: Registers>(
    window: &mut R,
    slots: usize,
    slot_size: usize,
) -> Result<usize, ProbeError> {
    let mut legacy = None;
    for slot in 0..slots {
        let base = slot * slot_size;
        if window.read(base + MAGIC) != MAGIC_VALUE || window.read(base + DEVICE_ID) != BLOCK_DEVICE
        {
            continue;
        }
        if window.read(base + VERSION) == 2 {
            return Ok(slot);
        }
        legacy.get_or_insert(slot);
    }
    Err(match legacy {
        Some(slot) => ProbeError::LegacyOnly { slot },
        None => ProbeError::NoBlockDevice { slots },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sddf_bindings::SharedRegion;

    const SLOT: usize = 0x200;

    fn transport(w: &SharedRegion, slot: usize, version: u32, id: u32) {
        w.store(slot * SLOT + MAGIC, MAGIC_VALUE).unwrap();
        w.store(slot * SLOT + VERSION, version).unwrap();
        w.store(slot * SLOT + DEVICE_ID, id).unwrap();
    }

    #[test]
    fn finds_the_block_device_in_any_slot() {
        for want in [0usize, 1, 17, 31] {
            let mut w = SharedRegion::leak_zeroed(32 * SLOT);
            for slot in 0..32 {
                transport(&w, slot, 2, 0); // QEMU: every empty transport says device 0
            }
            if want > 0 {
                transport(&w, want - 1, 2, 3); // a console before it
            }
            transport(&w, want, 2, BLOCK_DEVICE);
            assert_eq!(find_block_slot(&mut w, 32, SLOT), Ok(want));
        }
    }

    #[test]
    fn no_device_and_legacy_only_are_told_apart() {
        let mut w = SharedRegion::leak_zeroed(32 * SLOT);
        assert_eq!(find_block_slot(&mut w, 32, SLOT), Err(ProbeError::NoBlockDevice { slots: 32 }));
        transport(&w, 3, 1, BLOCK_DEVICE);
        assert_eq!(find_block_slot(&mut w, 32, SLOT), Err(ProbeError::LegacyOnly { slot: 3 }));
        transport(&w, 9, 2, BLOCK_DEVICE);
        assert_eq!(find_block_slot(&mut w, 32, SLOT), Ok(9));
    }

    #[test]
    fn a_short_window_is_not_read_past_its_end() {
        // Reads outside the region are 0 (logged), never out of bounds.
        let mut w = SharedRegion::leak_zeroed(SLOT);
        assert_eq!(find_block_slot(&mut w, 4, SLOT), Err(ProbeError::NoBlockDevice { slots: 4 }));
    }
}
