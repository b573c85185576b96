//! `#[repr(C)]` mirrors of the sdfgen config structs (sddf-abi.md §1.4, §2.4,
//! §3.5; `SD include/sddf/resources/*.h`, `serial/config.h`, `blk/config.h`).
//!
//! sdfgen serialises one struct per component into an ELF section (for
//! example `.serial_client_config`); declare it with [`crate::ConfigCell`]
//! and check the 5-byte magic at init. Each struct derives `zerocopy`'s
//! `FromBytes`, which proves at compile time that whatever bytes a tool
//! writes there are a valid value ([`crate::ConfigCell`] requires it); the
//! `const` assertions pin sizes and offsets to the C layout. Addresses are plain `u64`s here: turn
//! a [`RegionResource`] into memory with [`crate::SharedRegion::from_resource`].

use core::mem::offset_of;

use zerocopy::{FromBytes, Immutable, KnownLayout};

/// Length of the sDDF config magic.
pub const SDDF_MAGIC_LEN: usize = 5;
/// Magic of serial configs (`SDDF_SERIAL_MAGIC`).
pub const SDDF_SERIAL_MAGIC: [u8; SDDF_MAGIC_LEN] = *b"sDDF\x03";
/// Magic of block configs (`SDDF_BLK_MAGIC`).
pub const SDDF_BLK_MAGIC: [u8; SDDF_MAGIC_LEN] = *b"sDDF\x02";
/// Most clients of one serial virtualiser (`SDDF_SERIAL_MAX_CLIENTS`).
pub const SDDF_SERIAL_MAX_CLIENTS: usize = 64;
/// Longest serial `begin_str` (`SDDF_SERIAL_BEGIN_STR_MAX_LEN`).
pub const SDDF_SERIAL_BEGIN_STR_MAX_LEN: usize = 128;
/// Most clients of one block virtualiser (`SDDF_BLK_MAX_CLIENTS`).
pub const SDDF_BLK_MAX_CLIENTS: usize = 64;

/// A memory region mapped into this component (`region_resource_t`, 16 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, KnownLayout, Immutable)]
pub struct RegionResource {
    /// Virtual address in this component (C `void *`); 0 if not connected.
    pub vaddr: u64,
    /// Size in bytes.
    pub size: u64,
}

const _: () = assert!(size_of::<RegionResource>() == 16);
const _: () = assert!(offset_of!(RegionResource, vaddr) == 0);
const _: () = assert!(offset_of!(RegionResource, size) == 8);

/// A region with its IO address (`device_region_resource_t`, 24 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, KnownLayout, Immutable)]
pub struct DeviceRegionResource {
    /// The mapping in this component.
    pub region: RegionResource,
    /// Physical/IO address of the region (C `uintptr_t`).
    pub io_addr: u64,
}

const _: () = assert!(size_of::<DeviceRegionResource>() == 24);
const _: () = assert!(offset_of!(DeviceRegionResource, region) == 0);
const _: () = assert!(offset_of!(DeviceRegionResource, io_addr) == 16);

/// One direction of a serial connection (`serial_connection_resource_t`, 40 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, KnownLayout, Immutable)]
pub struct SerialConnectionResource {
    /// The `serial_queue_t` header.
    pub queue: RegionResource,
    /// The byte ring; its `size` is the queue capacity.
    pub data: RegionResource,
    /// Microkit channel to the peer.
    pub id: u8,
}

const _: () = assert!(size_of::<SerialConnectionResource>() == 40);
const _: () = assert!(offset_of!(SerialConnectionResource, queue) == 0);
const _: () = assert!(offset_of!(SerialConnectionResource, data) == 16);
const _: () = assert!(offset_of!(SerialConnectionResource, id) == 32);

/// Config of a serial client (`serial_client_config_t`, 88 B), in section
/// `.serial_client_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, KnownLayout, Immutable)]
pub struct SerialClientConfig {
    /// [`SDDF_SERIAL_MAGIC`] once sdfgen has filled it in.
    pub magic: [u8; SDDF_MAGIC_LEN],
    /// Characters to us; we consume (peer: `serial_virt_rx`).
    pub rx: SerialConnectionResource,
    /// Characters from us; we produce (peer: `serial_virt_tx`).
    pub tx: SerialConnectionResource,
}

const _: () = assert!(size_of::<SerialClientConfig>() == 88);
const _: () = assert!(offset_of!(SerialClientConfig, magic) == 0);
const _: () = assert!(offset_of!(SerialClientConfig, rx) == 8);
const _: () = assert!(offset_of!(SerialClientConfig, tx) == 48);

/// Config of a serial driver (`serial_driver_config_t`, 104 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, KnownLayout, Immutable)]
pub struct SerialDriverConfig {
    /// [`SDDF_SERIAL_MAGIC`] once sdfgen has filled it in.
    pub magic: [u8; SDDF_MAGIC_LEN],
    /// Received characters; the driver produces.
    pub rx: SerialConnectionResource,
    /// Characters to transmit; the driver consumes.
    pub tx: SerialConnectionResource,
    /// Baud rate to program at init.
    pub default_baud: u64,
    /// C `bool`: whether to enable reception.
    pub rx_enabled: u8,
}

const _: () = assert!(size_of::<SerialDriverConfig>() == 104);
const _: () = assert!(offset_of!(SerialDriverConfig, magic) == 0);
const _: () = assert!(offset_of!(SerialDriverConfig, rx) == 8);
const _: () = assert!(offset_of!(SerialDriverConfig, tx) == 48);
const _: () = assert!(offset_of!(SerialDriverConfig, default_baud) == 88);
const _: () = assert!(offset_of!(SerialDriverConfig, rx_enabled) == 96);

/// A block connection (`blk_connection_resource_t`, 56 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, KnownLayout, Immutable)]
pub struct BlkConnectionResource {
    /// The `blk_storage_info_t` region.
    pub storage_info: RegionResource,
    /// The request ring region.
    pub req_queue: RegionResource,
    /// The response ring region.
    pub resp_queue: RegionResource,
    /// Capacity of both rings.
    pub num_buffers: u16,
    /// Microkit channel to the peer.
    pub id: u8,
}

const _: () = assert!(size_of::<BlkConnectionResource>() == 56);
const _: () = assert!(offset_of!(BlkConnectionResource, storage_info) == 0);
const _: () = assert!(offset_of!(BlkConnectionResource, req_queue) == 16);
const _: () = assert!(offset_of!(BlkConnectionResource, resp_queue) == 32);
const _: () = assert!(offset_of!(BlkConnectionResource, num_buffers) == 48);
const _: () = assert!(offset_of!(BlkConnectionResource, id) == 50);

/// Config of a block client (`blk_client_config_t`, 80 B), in section
/// `.blk_client_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, KnownLayout, Immutable)]
pub struct BlkClientConfig {
    /// [`SDDF_BLK_MAGIC`] once sdfgen has filled it in.
    pub magic: [u8; SDDF_MAGIC_LEN],
    /// The connection to the block virtualiser.
    pub virt: BlkConnectionResource,
    /// The client's DMA-able data region (`io_or_offset` is relative to it).
    pub data: RegionResource,
}

const _: () = assert!(size_of::<BlkClientConfig>() == 80);
const _: () = assert!(offset_of!(BlkClientConfig, magic) == 0);
const _: () = assert!(offset_of!(BlkClientConfig, virt) == 8);
const _: () = assert!(offset_of!(BlkClientConfig, data) == 64);

const ZERO_REGION: RegionResource = RegionResource { vaddr: 0, size: 0 };
const ZERO_SERIAL: SerialConnectionResource =
    SerialConnectionResource { queue: ZERO_REGION, data: ZERO_REGION, id: 0 };
const ZERO_BLK: BlkConnectionResource = BlkConnectionResource {
    storage_info: ZERO_REGION,
    req_queue: ZERO_REGION,
    resp_queue: ZERO_REGION,
    num_buffers: 0,
    id: 0,
};

impl SerialClientConfig {
    /// All zero: the initial value of the config section.
    pub const fn zeroed() -> Self {
        SerialClientConfig { magic: [0; SDDF_MAGIC_LEN], rx: ZERO_SERIAL, tx: ZERO_SERIAL }
    }

    /// Whether sdfgen filled this in (`serial_config_check_magic`).
    pub fn check_magic(&self) -> bool {
        self.magic == SDDF_SERIAL_MAGIC
    }
}

impl SerialDriverConfig {
    /// All zero: the initial value of the config section.
    pub const fn zeroed() -> Self {
        SerialDriverConfig {
            magic: [0; SDDF_MAGIC_LEN],
            rx: ZERO_SERIAL,
            tx: ZERO_SERIAL,
            default_baud: 0,
            rx_enabled: 0,
        }
    }

    /// Whether sdfgen filled this in (`serial_config_check_magic`).
    pub fn check_magic(&self) -> bool {
        self.magic == SDDF_SERIAL_MAGIC
    }

    /// Whether reception is enabled (any non-zero byte counts).
    pub fn is_rx_enabled(&self) -> bool {
        self.rx_enabled != 0
    }
}

impl BlkClientConfig {
    /// All zero: the initial value of the config section.
    pub const fn zeroed() -> Self {
        BlkClientConfig { magic: [0; SDDF_MAGIC_LEN], virt: ZERO_BLK, data: ZERO_REGION }
    }

    /// Whether sdfgen filled this in (`blk_config_check_magic`).
    pub fn check_magic(&self) -> bool {
        self.magic == SDDF_BLK_MAGIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigCell;

    #[test]
    fn layouts_match_the_c_headers() {
        assert_eq!(size_of::<RegionResource>(), 16);
        assert_eq!(size_of::<DeviceRegionResource>(), 24);
        assert_eq!(size_of::<SerialConnectionResource>(), 40);
        assert_eq!(size_of::<SerialClientConfig>(), 88);
        assert_eq!(size_of::<SerialDriverConfig>(), 104);
        assert_eq!(size_of::<BlkConnectionResource>(), 56);
        assert_eq!(size_of::<BlkClientConfig>(), 80);
        assert_eq!(offset_of!(SerialClientConfig, tx), 48);
        assert_eq!(offset_of!(SerialDriverConfig, rx_enabled), 96);
        assert_eq!(offset_of!(BlkConnectionResource, id), 50);
        assert_eq!(offset_of!(BlkClientConfig, data), 64);
    }

    #[test]
    fn magic_is_checked_per_class() {
        let mut serial = SerialClientConfig::zeroed();
        assert!(!serial.check_magic());
        serial.magic = SDDF_SERIAL_MAGIC;
        assert!(serial.check_magic());
        let blk = BlkClientConfig { magic: SDDF_SERIAL_MAGIC, ..BlkClientConfig::zeroed() };
        assert!(!blk.check_magic());
        assert!(BlkClientConfig { magic: *b"sDDF\x02", ..blk }.check_magic());
        let driver =
            SerialDriverConfig { magic: SDDF_SERIAL_MAGIC, ..SerialDriverConfig::zeroed() };
        assert!(driver.check_magic() && !driver.is_rx_enabled());
    }

    #[test]
    fn zeroed_equals_default() {
        assert_eq!(SerialClientConfig::zeroed(), SerialClientConfig::default());
        assert_eq!(SerialDriverConfig::zeroed(), SerialDriverConfig::default());
        assert_eq!(BlkClientConfig::zeroed(), BlkClientConfig::default());
    }

    #[test]
    fn config_cell_holds_a_section_image() {
        static CONFIG: ConfigCell<BlkClientConfig> = ConfigCell::new(BlkClientConfig::zeroed());
        assert!(!CONFIG.get().check_magic());
        assert_eq!(CONFIG.get().virt.num_buffers, 0);
    }
}
