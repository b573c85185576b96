//! Native-endian field codecs for fixed-size slot images.
//!
//! Slots are copied out of shared memory once into a local byte array and
//! decoded from there (and encoded the same way before one copy in), so the
//! peer cannot change a value between our check and our use. Offsets are
//! compile-time constants within the array, so the slicing cannot fail.

/// The `N` bytes at `offset` of `buf`.
pub(crate) fn array<const N: usize>(buf: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[offset..offset + N]);
    out
}

/// The native-endian `u16` at `offset`.
pub(crate) fn get_u16(buf: &[u8], offset: usize) -> u16 {
    u16::from_ne_bytes(array(buf, offset))
}

/// The native-endian `u32` at `offset`.
pub(crate) fn get_u32(buf: &[u8], offset: usize) -> u32 {
    u32::from_ne_bytes(array(buf, offset))
}

/// The native-endian `u64` at `offset`.
pub(crate) fn get_u64(buf: &[u8], offset: usize) -> u64 {
    u64::from_ne_bytes(array(buf, offset))
}

/// Stores `bytes` at `offset` of `buf`.
pub(crate) fn put<const N: usize>(buf: &mut [u8], offset: usize, bytes: [u8; N]) {
    buf[offset..offset + N].copy_from_slice(&bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_round_trips() {
        let mut buf = [0u8; 16];
        put(&mut buf, 2, 0xbeef_u16.to_ne_bytes());
        put(&mut buf, 4, 0x1234_5678_u32.to_ne_bytes());
        put(&mut buf, 8, u64::MAX.to_ne_bytes());
        assert_eq!(get_u16(&buf, 2), 0xbeef);
        assert_eq!(get_u32(&buf, 4), 0x1234_5678);
        assert_eq!(get_u64(&buf, 8), u64::MAX);
        assert_eq!(buf[..2], [0, 0]);
    }
}
