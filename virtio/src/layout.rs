//! Byte layouts of the virtio structures that cross guest memory (virtio 1.2).
//!
//! Each struct is the specification's C struct with explicit little-endian fields
//! (`zerocopy`'s byte-order types, alignment 1), so a value is copied out of guest memory
//! once into a local and decoded there, whatever the guest's alignment. The `zerocopy`
//! derives check at compile time that a struct has no padding (`IntoBytes`) and that every
//! byte pattern is a valid value (`FromBytes`); the `const` assertions pin each size and
//! offset to the one the specification gives. Nothing here adds code: field reads compile to
//! the loads a hand-written decoder would make.
//!
//! The ring offsets used by [`crate::queue`] are taken from these structs, and
//! `tests/spec_crosscheck.rs` checks sizes and constants against the independent
//! `virtio-spec` crate.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct virtq_desc`: one descriptor of a split virtqueue (virtio 1.2 §2.7.5).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtqDesc {
    /// Guest-physical address of the buffer.
    pub addr: U64,
    /// Length of the buffer in bytes.
    pub len: U32,
    /// `VIRTQ_DESC_F_*` flags.
    pub flags: U16,
    /// Next descriptor when `flags` has `VIRTQ_DESC_F_NEXT`.
    pub next: U16,
}

const _: () = assert!(size_of::<VirtqDesc>() == 16);
const _: () = assert!(offset_of!(VirtqDesc, len) == 8);
const _: () = assert!(offset_of!(VirtqDesc, flags) == 12);
const _: () = assert!(offset_of!(VirtqDesc, next) == 14);

/// The fixed head of `struct virtq_avail` and `struct virtq_used` (virtio 1.2 §2.7.6,
/// §2.7.8): `flags` and `idx`, then the ring entries and the trailing event index.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtqRingHeader {
    /// `VIRTQ_AVAIL_F_*` (driver area) or `VIRTQ_USED_F_*` (device area) flags.
    pub flags: U16,
    /// Where the writer of the ring puts its next entry.
    pub idx: U16,
}

const _: () = assert!(size_of::<VirtqRingHeader>() == 4);
const _: () = assert!(offset_of!(VirtqRingHeader, idx) == 2);

/// One available-ring entry: the head index of a chain (`le16 ring[]`, virtio 1.2 §2.7.6).
pub type VirtqAvailElem = U16;

/// `struct virtq_used_elem`: one used-ring entry (virtio 1.2 §2.7.8).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtqUsedElem {
    /// Head index of the used chain (a `le32` for padding reasons, the spec says).
    pub id: U32,
    /// Bytes written into the chain's device-writable buffers.
    pub len: U32,
}

const _: () = assert!(size_of::<VirtqUsedElem>() == 8);
const _: () = assert!(offset_of!(VirtqUsedElem, len) == 4);

/// The header of a virtio-blk request, `struct virtio_blk_req` up to `data`
/// (virtio 1.2 §5.2.6).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioBlkReqHeader {
    /// `VIRTIO_BLK_T_*`.
    pub type_: U32,
    /// Reserved (was `ioprio` in legacy devices); ignored.
    pub reserved: U32,
    /// First 512-byte sector.
    pub sector: U64,
}

const _: () = assert!(size_of::<VirtioBlkReqHeader>() == 16);
const _: () = assert!(offset_of!(VirtioBlkReqHeader, sector) == 8);

/// `struct virtio_blk_geometry` inside the block configuration (virtio 1.2 §5.2.4).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioBlkGeometry {
    /// Cylinders.
    pub cylinders: U16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

/// `struct virtio_blk_topology` inside the block configuration (virtio 1.2 §5.2.4).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioBlkTopology {
    /// log2 of logical blocks per physical block.
    pub physical_block_exp: u8,
    /// Offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Suggested minimum I/O size, in logical blocks.
    pub min_io_size: U16,
    /// Optimal (suggested maximum) I/O size, in logical blocks.
    pub opt_io_size: U32,
}

/// The part of `struct virtio_blk_config` this device offers: up to and including the
/// topology (virtio 1.2 §5.2.4). The fields after it belong to features not offered, so they
/// read as zero.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioBlkConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: U64,
    /// Largest segment (VIRTIO_BLK_F_SIZE_MAX).
    pub size_max: U32,
    /// Most segments in a request (VIRTIO_BLK_F_SEG_MAX).
    pub seg_max: U32,
    /// Disk geometry (VIRTIO_BLK_F_GEOMETRY).
    pub geometry: VirtioBlkGeometry,
    /// Logical block size (VIRTIO_BLK_F_BLK_SIZE).
    pub blk_size: U32,
    /// I/O topology (VIRTIO_BLK_F_TOPOLOGY).
    pub topology: VirtioBlkTopology,
}

const _: () = assert!(size_of::<VirtioBlkConfig>() == 32);
const _: () = assert!(offset_of!(VirtioBlkConfig, size_max) == 8);
const _: () = assert!(offset_of!(VirtioBlkConfig, seg_max) == 12);
const _: () = assert!(offset_of!(VirtioBlkConfig, geometry) == 16);
const _: () = assert!(offset_of!(VirtioBlkConfig, blk_size) == 20);
const _: () = assert!(offset_of!(VirtioBlkConfig, topology) == 24);
const _: () = assert!(offset_of!(VirtioBlkTopology, opt_io_size) == 4);

/// `struct virtio_console_config` (virtio 1.2 §5.3.4).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioConsoleConfig {
    /// Columns (VIRTIO_CONSOLE_F_SIZE).
    pub cols: U16,
    /// Rows (VIRTIO_CONSOLE_F_SIZE).
    pub rows: U16,
    /// Most ports (VIRTIO_CONSOLE_F_MULTIPORT).
    pub max_nr_ports: U32,
    /// Emergency write register (VIRTIO_CONSOLE_F_EMERG_WRITE).
    pub emerg_wr: U32,
}

const _: () = assert!(size_of::<VirtioConsoleConfig>() == 12);
const _: () = assert!(offset_of!(VirtioConsoleConfig, max_nr_ports) == 4);
const _: () = assert!(offset_of!(VirtioConsoleConfig, emerg_wr) == 8);

/// `struct virtio_vsock_hdr`: the header before every vsock packet's payload (virtio 1.2
/// §5.10.6). 44 bytes, packed in the specification; here every field has alignment 1, so
/// the struct has no padding without `packed`.
#[doc(alias = "virtio_vsock_hdr")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VsockHeader {
    /// Source CID (upper 32 bits reserved, zero).
    pub src_cid: U64,
    /// Destination CID.
    pub dst_cid: U64,
    /// Source port.
    pub src_port: U32,
    /// Destination port.
    pub dst_port: U32,
    /// Payload length in bytes (RW only; 0 for every other op).
    pub len: U32,
    /// `type`: VIRTIO_VSOCK_TYPE_STREAM.
    pub socket_type: U16,
    /// `op`: one of `VIRTIO_VSOCK_OP_*`.
    pub op: U16,
    /// Op-specific flags (SHUTDOWN: bit 0 receive, bit 1 send).
    pub flags: U32,
    /// The sender's receive buffer space for this socket (virtio 1.2 §5.10.6.3).
    pub buf_alloc: U32,
    /// The sender's free-running count of payload bytes consumed.
    pub fwd_cnt: U32,
}

const _: () = assert!(size_of::<VsockHeader>() == 44);
const _: () = assert!(offset_of!(VsockHeader, dst_cid) == 8);
const _: () = assert!(offset_of!(VsockHeader, src_port) == 16);
const _: () = assert!(offset_of!(VsockHeader, dst_port) == 20);
const _: () = assert!(offset_of!(VsockHeader, len) == 24);
const _: () = assert!(offset_of!(VsockHeader, socket_type) == 28);
const _: () = assert!(offset_of!(VsockHeader, op) == 30);
const _: () = assert!(offset_of!(VsockHeader, flags) == 32);
const _: () = assert!(offset_of!(VsockHeader, buf_alloc) == 36);
const _: () = assert!(offset_of!(VsockHeader, fwd_cnt) == 40);

/// `struct virtio_vsock_config` (virtio 1.2 §5.10.4).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioVsockConfig {
    /// The guest's CID.
    pub guest_cid: U64,
}

const _: () = assert!(size_of::<VirtioVsockConfig>() == 8);

/// `struct virtio_vsock_event`: one event-queue entry (virtio 1.2 §5.10.6.6).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioVsockEvent {
    /// `VIRTIO_VSOCK_EVENT_*`.
    pub id: U32,
}

const _: () = assert!(size_of::<VirtioVsockEvent>() == 4);

/// `struct virtio_snd_config` of virtio 1.2 (§5.14.4); virtio 1.3 appends `controls`, valid
/// only with VIRTIO_SND_F_CTLS.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioSndConfig {
    /// Jacks.
    pub jacks: U32,
    /// PCM streams.
    pub streams: U32,
    /// Channel maps.
    pub chmaps: U32,
}

const _: () = assert!(size_of::<VirtioSndConfig>() == 12);
const _: () = assert!(offset_of!(VirtioSndConfig, streams) == 4);
const _: () = assert!(offset_of!(VirtioSndConfig, chmaps) == 8);

/// `struct virtio_snd_query_info`: an item information request (virtio 1.2 §5.14.6.1).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioSndQueryInfo {
    /// `hdr.code`: VIRTIO_SND_R_*_INFO.
    pub code: U32,
    /// The first item.
    pub start_id: U32,
    /// How many items.
    pub count: U32,
    /// Bytes of one item in the response.
    pub size: U32,
}

const _: () = assert!(size_of::<VirtioSndQueryInfo>() == 16);
const _: () = assert!(offset_of!(VirtioSndQueryInfo, start_id) == 4);
const _: () = assert!(offset_of!(VirtioSndQueryInfo, count) == 8);
const _: () = assert!(offset_of!(VirtioSndQueryInfo, size) == 12);

/// `struct virtio_snd_pcm_hdr`: the head of every PCM control request (virtio 1.2
/// §5.14.6.6).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioSndPcmHdr {
    /// `hdr.code`: VIRTIO_SND_R_PCM_*.
    pub code: U32,
    /// The stream.
    pub stream_id: U32,
}

const _: () = assert!(size_of::<VirtioSndPcmHdr>() == 8);
const _: () = assert!(offset_of!(VirtioSndPcmHdr, stream_id) == 4);

/// `struct virtio_snd_pcm_set_params` (virtio 1.2 §5.14.6.6.3).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioSndPcmSetParams {
    /// `code` VIRTIO_SND_R_PCM_SET_PARAMS and the stream.
    pub hdr: VirtioSndPcmHdr,
    /// Size of the driver's buffer.
    pub buffer_bytes: U32,
    /// Size of one period.
    pub period_bytes: U32,
    /// `1 << VIRTIO_SND_PCM_F_*` selected.
    pub features: U32,
    /// Channels.
    pub channels: u8,
    /// VIRTIO_SND_PCM_FMT_*.
    pub format: u8,
    /// VIRTIO_SND_PCM_RATE_*.
    pub rate: u8,
    /// Zero.
    pub padding: u8,
}

const _: () = assert!(size_of::<VirtioSndPcmSetParams>() == 24);
const _: () = assert!(offset_of!(VirtioSndPcmSetParams, buffer_bytes) == 8);
const _: () = assert!(offset_of!(VirtioSndPcmSetParams, period_bytes) == 12);
const _: () = assert!(offset_of!(VirtioSndPcmSetParams, features) == 16);
const _: () = assert!(offset_of!(VirtioSndPcmSetParams, channels) == 20);
const _: () = assert!(offset_of!(VirtioSndPcmSetParams, format) == 21);
const _: () = assert!(offset_of!(VirtioSndPcmSetParams, rate) == 22);

/// `struct virtio_snd_pcm_info`: one stream in a PCM_INFO response (virtio 1.2 §5.14.6.6.2).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioSndPcmInfo {
    /// `hdr.hda_fn_nid`: the function group the stream belongs to.
    pub hda_fn_nid: U32,
    /// `1 << VIRTIO_SND_PCM_F_*` supported.
    pub features: U32,
    /// `1 << VIRTIO_SND_PCM_FMT_*` supported.
    pub formats: U64,
    /// `1 << VIRTIO_SND_PCM_RATE_*` supported.
    pub rates: U64,
    /// VIRTIO_SND_D_OUTPUT or VIRTIO_SND_D_INPUT.
    pub direction: u8,
    /// Fewest channels.
    pub channels_min: u8,
    /// Most channels.
    pub channels_max: u8,
    /// Zero.
    pub padding: [u8; 5],
}

const _: () = assert!(size_of::<VirtioSndPcmInfo>() == 32);
const _: () = assert!(offset_of!(VirtioSndPcmInfo, features) == 4);
const _: () = assert!(offset_of!(VirtioSndPcmInfo, formats) == 8);
const _: () = assert!(offset_of!(VirtioSndPcmInfo, rates) == 16);
const _: () = assert!(offset_of!(VirtioSndPcmInfo, direction) == 24);
const _: () = assert!(offset_of!(VirtioSndPcmInfo, channels_max) == 26);

/// `struct virtio_snd_pcm_xfer`: the header of a PCM I/O message (virtio 1.2 §5.14.6.8).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioSndPcmXfer {
    /// The stream.
    pub stream_id: U32,
}

const _: () = assert!(size_of::<VirtioSndPcmXfer>() == 4);

/// `struct virtio_snd_pcm_status`: the end of a PCM I/O message (virtio 1.2 §5.14.6.8).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioSndPcmStatus {
    /// VIRTIO_SND_S_OK, or VIRTIO_SND_S_IO_ERR (or BAD_MSG for a malformed message).
    pub status: U32,
    /// The device's latency in bytes.
    pub latency_bytes: U32,
}

const _: () = assert!(size_of::<VirtioSndPcmStatus>() == 8);
const _: () = assert!(offset_of!(VirtioSndPcmStatus, latency_bytes) == 4);
