//! Our virtio constants and guest-memory layouts against an independent transcription of
//! the specification, the `virtio-spec` crate (rust-osdev). A value typed in twice by two
//! projects and equal in both is unlikely to be a typo. docs/dependencies.md says why
//! `virtio-spec` is a test-only dependency.

use core::mem::size_of;

use virtio::block::request::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio::block::{
    BLOCK_DEVICE_ID, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
};
use virtio::console::CONSOLE_DEVICE_ID;
use virtio::features::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1};
use virtio::layout::{
    VirtioBlkGeometry, VirtioBlkTopology, VirtioConsoleConfig, VirtqDesc, VirtqUsedElem,
};
use virtio::queue::{
    avail_ring_size, used_ring_size, DESCRIPTOR_SIZE, VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
use virtio::sound::SOUND_DEVICE_ID;
use virtio::status;
use virtio_spec as spec;

/// The low 64 bits of a `virtio-spec` feature set.
fn bits<F: spec::FeatureBits>(f: F) -> u64 {
    let v: u128 = f.bits().to_ne();
    v as u64
}

#[test]
fn device_independent_feature_bits_match() {
    assert_eq!(VIRTIO_F_INDIRECT_DESC, bits(spec::F::INDIRECT_DESC));
    assert_eq!(VIRTIO_F_EVENT_IDX, bits(spec::F::EVENT_IDX));
    assert_eq!(VIRTIO_F_VERSION_1, bits(spec::F::VERSION_1));
}

#[test]
fn block_feature_bits_match() {
    use spec::blk::F;
    assert_eq!(VIRTIO_BLK_F_SIZE_MAX, bits(F::SIZE_MAX));
    assert_eq!(VIRTIO_BLK_F_SEG_MAX, bits(F::SEG_MAX));
    assert_eq!(VIRTIO_BLK_F_RO, bits(F::RO));
    assert_eq!(VIRTIO_BLK_F_BLK_SIZE, bits(F::BLK_SIZE));
    assert_eq!(VIRTIO_BLK_F_FLUSH, bits(F::FLUSH));
    assert_eq!(VIRTIO_BLK_F_TOPOLOGY, bits(F::TOPOLOGY));
}

#[test]
fn device_ids_and_status_bits_match() {
    assert_eq!(BLOCK_DEVICE_ID, u32::from(u8::from(spec::Id::Block)));
    assert_eq!(CONSOLE_DEVICE_ID, u32::from(u8::from(spec::Id::Console)));
    assert_eq!(SOUND_DEVICE_ID, u32::from(u8::from(spec::Id::Sound)));
    use spec::DeviceStatus as S;
    assert_eq!(status::ACKNOWLEDGE, u32::from(S::ACKNOWLEDGE.bits()));
    assert_eq!(status::DRIVER, u32::from(S::DRIVER.bits()));
    assert_eq!(status::DRIVER_OK, u32::from(S::DRIVER_OK.bits()));
    assert_eq!(status::FEATURES_OK, u32::from(S::FEATURES_OK.bits()));
    assert_eq!(status::DEVICE_NEEDS_RESET, u32::from(S::DEVICE_NEEDS_RESET.bits()));
    assert_eq!(status::FAILED, u32::from(S::FAILED.bits()));
}

#[test]
fn block_request_types_and_statuses_match() {
    use spec::blk::{S, T};
    assert_eq!(VIRTIO_BLK_T_IN, u32::from(T::In));
    assert_eq!(VIRTIO_BLK_T_OUT, u32::from(T::Out));
    assert_eq!(VIRTIO_BLK_T_FLUSH, u32::from(T::Flush));
    assert_eq!(VIRTIO_BLK_T_GET_ID, u32::from(T::GetId));
    assert_eq!(VIRTIO_BLK_S_OK, u8::from(S::Ok));
    assert_eq!(VIRTIO_BLK_S_IOERR, u8::from(S::Ioerr));
    assert_eq!(VIRTIO_BLK_S_UNSUPP, u8::from(S::Unsupp));
    assert_eq!(VIRTIO_BLK_ID_BYTES, 20);
}

#[test]
fn descriptor_flags_match() {
    use spec::virtq::{AvailF, DescF};
    assert_eq!(VIRTQ_DESC_F_NEXT, DescF::NEXT.bits().to_ne());
    assert_eq!(VIRTQ_DESC_F_WRITE, DescF::WRITE.bits().to_ne());
    assert_eq!(VIRTQ_DESC_F_INDIRECT, DescF::INDIRECT.bits().to_ne());
    assert_eq!(VIRTQ_AVAIL_F_NO_INTERRUPT, AvailF::NO_INTERRUPT.bits().to_ne());
}

#[test]
fn layout_sizes_match() {
    assert_eq!(size_of::<VirtqDesc>(), size_of::<spec::virtq::Desc>());
    assert_eq!(DESCRIPTOR_SIZE as usize, size_of::<spec::virtq::Desc>());
    assert_eq!(size_of::<VirtqUsedElem>(), size_of::<spec::virtq::UsedElem>());
    assert_eq!(size_of::<VirtioConsoleConfig>(), size_of::<spec::console::Config>());
    assert_eq!(size_of::<VirtioBlkGeometry>(), size_of::<spec::blk::Geometry>());
    assert_eq!(size_of::<VirtioBlkTopology>(), size_of::<spec::blk::Topology>());
}

#[test]
fn ring_sizes_match() {
    for n in [1u16, 2, 128, 256, 32768] {
        // With EVENT_IDX both rings end in an event index; `virtio-spec` pads the used ring
        // to its 4-byte alignment, we count only the bytes the device touches.
        let avail = spec::virtq::Avail::layout(n, true).size() as u64;
        assert_eq!(avail_ring_size(n), avail, "avail ring of {n}");
        let used = spec::virtq::Used::layout(n, true).size() as u64;
        assert_eq!(used_ring_size(n).next_multiple_of(4), used, "used ring of {n}");
    }
}

#[test]
fn vsock_constants_and_header_layout_match() {
    use core::mem::offset_of;
    use spec::vsock::{EventId, Hdr, Op, Type, F};
    use virtio::layout::{VirtioVsockConfig, VirtioVsockEvent, VsockHeader};
    use virtio::vsock::packet::*;
    assert_eq!(virtio::vsock::VSOCK_DEVICE_ID, u32::from(u8::from(spec::Id::Vsock)));
    assert_eq!(virtio::vsock::VIRTIO_VSOCK_F_STREAM, bits(F::STREAM));
    let ops = [
        (VIRTIO_VSOCK_OP_INVALID, Op::Invalid),
        (VIRTIO_VSOCK_OP_REQUEST, Op::Request),
        (VIRTIO_VSOCK_OP_RESPONSE, Op::Response),
        (VIRTIO_VSOCK_OP_RST, Op::Rst),
        (VIRTIO_VSOCK_OP_SHUTDOWN, Op::Shutdown),
        (VIRTIO_VSOCK_OP_RW, Op::Rw),
        (VIRTIO_VSOCK_OP_CREDIT_UPDATE, Op::CreditUpdate),
        (VIRTIO_VSOCK_OP_CREDIT_REQUEST, Op::CreditRequest),
    ];
    for (ours, theirs) in ops {
        assert_eq!(ours, u16::from(theirs));
    }
    assert_eq!(VIRTIO_VSOCK_TYPE_STREAM, u16::from(Type::Stream));
    assert_eq!(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, u32::from(EventId::TransportReset));
    assert_eq!(HEADER_SIZE, size_of::<Hdr>());
    assert_eq!(size_of::<VsockHeader>(), size_of::<Hdr>());
    let offsets = [
        (offset_of!(VsockHeader, src_cid), offset_of!(Hdr, src_cid)),
        (offset_of!(VsockHeader, dst_cid), offset_of!(Hdr, dst_cid)),
        (offset_of!(VsockHeader, src_port), offset_of!(Hdr, src_port)),
        (offset_of!(VsockHeader, dst_port), offset_of!(Hdr, dst_port)),
        (offset_of!(VsockHeader, len), offset_of!(Hdr, len)),
        (offset_of!(VsockHeader, socket_type), offset_of!(Hdr, type_)),
        (offset_of!(VsockHeader, op), offset_of!(Hdr, op)),
        (offset_of!(VsockHeader, flags), offset_of!(Hdr, flags)),
        (offset_of!(VsockHeader, buf_alloc), offset_of!(Hdr, buf_alloc)),
        (offset_of!(VsockHeader, fwd_cnt), offset_of!(Hdr, fwd_cnt)),
    ];
    for (ours, theirs) in offsets {
        assert_eq!(ours, theirs);
    }
    assert_eq!(size_of::<VirtioVsockConfig>(), size_of::<spec::vsock::Config>());
    assert_eq!(size_of::<VirtioVsockEvent>(), size_of::<spec::vsock::Event>());
}
