//! Guest-physical memory as a virtio device sees it.
//!
//! [`GuestMemory`] is the seam: the VMM implements it over its mapping of guest RAM, host
//! tests over a byte slice ([`SliceMemory`]). Accesses are byte copies, so a value the guest
//! may change concurrently is copied out once and then only the copy is used.

use core::fmt;

/// An access to guest-physical memory that is not backed by guest RAM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemoryError {
    /// `[gpa, gpa + len)` is not (entirely) inside guest RAM, or wraps around.
    OutOfRange {
        /// First guest-physical address asked for.
        gpa: u64,
        /// Length asked for, in bytes.
        len: u64,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::OutOfRange { gpa, len } => {
                write!(f, "guest range {gpa:#x}+{len:#x} is outside guest RAM")
            }
        }
    }
}

/// Memory shared with another party that bulk data is copied into or out of: a block
/// backend's data buffer. It is only ever copied (with volatile accesses where the other party
/// may write), never lent out as a Rust reference.
pub trait SharedBuffer {
    /// Copies `dst.len()` bytes at `offset` into `dst`.
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), CopyError>;
    /// Copies `src` to `offset`.
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), CopyError>;
    /// The buffer's concrete type, so a [`GuestMemory`] that knows it can copy straight
    /// between guest RAM and the buffer ([`GuestMemory::read_to_shared`]).
    fn as_any(&self) -> &dyn core::any::Any;
}

/// A bulk copy between guest memory and a [`SharedBuffer`] that did not fit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CopyError {
    /// The guest range is not guest RAM (a guest mistake).
    Guest(MemoryError),
    /// The range is outside the shared buffer (a backend fault).
    Buffer,
}

/// Bytes per step of the default copies between guest memory and a [`SharedBuffer`]: a stack
/// bounce buffer, as neither side may be borrowed as a slice.
const BOUNCE: usize = 512;

/// A bounce buffer aligned like the words the volatile copies move.
#[repr(C, align(16))]
struct Bounce([u8; BOUNCE]);

/// [`GuestMemory::read_to_shared`] through a stack bounce buffer (its default).
pub fn bounce_read_to_shared<M: GuestMemory + ?Sized>(
    mem: &M,
    gpa: u64,
    dst: &dyn SharedBuffer,
    offset: usize,
    len: usize,
) -> Result<(), CopyError> {
    let mut bounce = Bounce([0; BOUNCE]);
    let mut at = 0;
    while at < len {
        let n = core::cmp::min(BOUNCE, len - at);
        let part = &mut bounce.0[..n];
        mem.read(gpa.wrapping_add(at as u64), part).map_err(CopyError::Guest)?;
        dst.write(offset.checked_add(at).ok_or(CopyError::Buffer)?, part)?;
        at += n;
    }
    Ok(())
}

/// [`GuestMemory::write_from_shared`] through a stack bounce buffer (its default).
pub fn bounce_write_from_shared<M: GuestMemory + ?Sized>(
    mem: &mut M,
    gpa: u64,
    src: &dyn SharedBuffer,
    offset: usize,
    len: usize,
) -> Result<(), CopyError> {
    let mut bounce = Bounce([0; BOUNCE]);
    let mut at = 0;
    while at < len {
        let n = core::cmp::min(BOUNCE, len - at);
        let part = &mut bounce.0[..n];
        src.read(offset.checked_add(at).ok_or(CopyError::Buffer)?, part)?;
        mem.write(gpa.wrapping_add(at as u64), part).map_err(CopyError::Guest)?;
        at += n;
    }
    Ok(())
}

/// Guest-physical memory as the device sees it. Implemented by the VMM over its mapped guest
/// RAM.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes at guest-physical `gpa` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Copies `data` to guest-physical `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError>;

    /// Checks that `[gpa, gpa + len)` is inside guest RAM without copying it.
    ///
    /// The default probes the first and the last byte with [`GuestMemory::read`], which is
    /// exact for guest RAM that is one contiguous region (this project's model). An
    /// implementation with holes in its guest-physical map must override it.
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        let err = MemoryError::OutOfRange { gpa, len };
        if len == 0 {
            return Ok(());
        }
        let last = gpa.checked_add(len - 1).ok_or(err)?;
        let mut probe = [0u8; 1];
        self.read(gpa, &mut probe).map_err(|_| err)?;
        self.read(last, &mut probe).map_err(|_| err)
    }

    /// Copies `len` bytes at guest-physical `gpa` into `dst` at `offset`. The default goes
    /// through a stack bounce buffer ([`bounce_read_to_shared`]); guest RAM that is mapped
    /// memory copies straight into a buffer type it knows.
    fn read_to_shared(
        &self,
        gpa: u64,
        dst: &dyn SharedBuffer,
        offset: usize,
        len: usize,
    ) -> Result<(), CopyError> {
        bounce_read_to_shared(self, gpa, dst, offset, len)
    }

    /// Copies `len` bytes of `src` at `offset` to guest-physical `gpa`; see
    /// [`GuestMemory::read_to_shared`].
    fn write_from_shared(
        &mut self,
        gpa: u64,
        src: &dyn SharedBuffer,
        offset: usize,
        len: usize,
    ) -> Result<(), CopyError> {
        bounce_write_from_shared(self, gpa, src, offset, len)
    }
}

/// Little-endian helpers over any [`GuestMemory`] (virtio 1.2 §1.4: all fields of modern
/// devices are little-endian).
pub trait GuestMemoryExt: GuestMemory {
    /// Reads a little-endian `u16` at `gpa`.
    fn read_u16(&self, gpa: u64) -> Result<u16, MemoryError> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian `u32` at `gpa`.
    fn read_u32(&self, gpa: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64` at `gpa`.
    fn read_u64(&self, gpa: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes `value` little-endian at `gpa`.
    fn write_u16(&mut self, gpa: u64, value: u16) -> Result<(), MemoryError> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// Writes `value` little-endian at `gpa`.
    fn write_u32(&mut self, gpa: u64, value: u32) -> Result<(), MemoryError> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// Writes `value` little-endian at `gpa`.
    fn write_u64(&mut self, gpa: u64, value: u64) -> Result<(), MemoryError> {
        self.write(gpa, &value.to_le_bytes())
    }
}

impl<M: GuestMemory + ?Sized> GuestMemoryExt for M {}

impl<M: GuestMemory + ?Sized> GuestMemory for &mut M {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(gpa, buf)
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        (**self).write(gpa, data)
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        (**self).check_range(gpa, len)
    }

    fn read_to_shared(
        &self,
        gpa: u64,
        dst: &dyn SharedBuffer,
        offset: usize,
        len: usize,
    ) -> Result<(), CopyError> {
        (**self).read_to_shared(gpa, dst, offset, len)
    }

    fn write_from_shared(
        &mut self,
        gpa: u64,
        src: &dyn SharedBuffer,
        offset: usize,
        len: usize,
    ) -> Result<(), CopyError> {
        (**self).write_from_shared(gpa, src, offset, len)
    }
}

/// Guest RAM backed by a byte slice: guest-physical `[base, base + mem.len())`.
///
/// Used by host tests and fuzzers; a VMM may use it too when it holds guest RAM as a slice.
pub struct SliceMemory<'a> {
    base: u64,
    mem: &'a mut [u8],
}

impl<'a> SliceMemory<'a> {
    /// Guest RAM whose first byte, `mem[0]`, is at guest-physical `base`.
    pub fn new(base: u64, mem: &'a mut [u8]) -> SliceMemory<'a> {
        SliceMemory { base, mem }
    }

    /// Guest-physical address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.mem.len() as u64
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// The whole region as a slice (for test assertions).
    pub fn as_slice(&self) -> &[u8] {
        self.mem
    }

    /// Byte range of `[gpa, gpa + len)` inside the slice, if it is entirely inside.
    fn range(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, MemoryError> {
        let err = MemoryError::OutOfRange { gpa, len: len as u64 };
        let start = gpa.checked_sub(self.base).ok_or(err)?;
        let end = start.checked_add(len as u64).ok_or(err)?;
        if end > self.mem.len() as u64 {
            return Err(err);
        }
        // Both fit in usize: they are at most `mem.len()`.
        Ok(start as usize..end as usize)
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.mem[r]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let r = self.range(gpa, data.len())?;
        self.mem[r].copy_from_slice(data);
        Ok(())
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        let err = MemoryError::OutOfRange { gpa, len };
        if len == 0 {
            return Ok(());
        }
        let start = gpa.checked_sub(self.base).ok_or(err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.mem.len() as u64 {
            return Err(err);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_memory_reads_and_writes_inside() {
        let mut ram = [0u8; 16];
        let mut mem = SliceMemory::new(0x1000, &mut ram);
        mem.write_u32(0x1004, 0xdead_beef).unwrap();
        assert_eq!(mem.read_u32(0x1004).unwrap(), 0xdead_beef);
        assert_eq!(mem.read_u16(0x1004).unwrap(), 0xbeef);
        mem.write_u64(0x1008, u64::MAX).unwrap();
        assert_eq!(mem.read_u64(0x1008).unwrap(), u64::MAX);
    }

    #[test]
    fn slice_memory_rejects_outside_and_wrapping() {
        let mut ram = [0u8; 16];
        let mut mem = SliceMemory::new(0x1000, &mut ram);
        let mut b = [0u8; 4];
        assert!(mem.read(0xfff, &mut b).is_err());
        assert!(mem.read(0x100d, &mut b).is_err());
        assert!(mem.write(u64::MAX - 1, &b).is_err());
        assert!(mem.check_range(0x1000, 17).is_err());
        assert!(mem.check_range(u64::MAX, 2).is_err());
        assert!(mem.check_range(0x1000, 16).is_ok());
    }

    struct Probe<'a>(SliceMemory<'a>);
    impl GuestMemory for Probe<'_> {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.0.read(gpa, buf)
        }
        fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
            self.0.write(gpa, data)
        }
    }

    #[test]
    fn default_check_range_probes_both_ends() {
        let mut ram = [0u8; 16];
        let mem = Probe(SliceMemory::new(0x1000, &mut ram));
        assert!(mem.check_range(0x1000, 16).is_ok());
        assert!(mem.check_range(0x1000, 0).is_ok());
        assert!(mem.check_range(0x1008, 9).is_err());
        assert!(mem.check_range(u64::MAX, 2).is_err());
    }
}
