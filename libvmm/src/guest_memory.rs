//! Bounds-checked access to the guest RAM region the VMM has mapped.
//!
//! Guest RAM is one contiguous region: guest-physical `[base, base + size)`
//! mapped at `vaddr` in the VMM (a `<map setvar_vaddr=...>` of the same
//! memory region the VM maps). Every access is checked against the region
//! with overflow-safe arithmetic. The guest may change the memory at any time
//! (another vCPU runs meanwhile), so every access is volatile, never a Rust
//! reference or a plain `memcpy` (a data race under Rust's memory model), and
//! callers copy values out once and use the copy. Bulk copies go 8 bytes at a
//! time where guest RAM is aligned (`sddf_bindings::shared::volatile_copy_*`,
//! shaped like rust-vmm vm-memory's), so a naturally aligned `u16`, `u32` or
//! `u64` is read or written in one access, not torn.

use crate::sddf::blk::DataRegion;
use core::fmt;
use core::marker::PhantomData;
use sddf_bindings::shared::{volatile_copy_from, volatile_copy_to, volatile_fill};

/// A guest-physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct Gpa(pub u64);

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// An access outside guest RAM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutOfRange {
    /// First byte asked for.
    pub gpa: Gpa,
    /// Length asked for.
    pub len: u64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest range {}+{:#x} is outside guest RAM", self.gpa, self.len)
    }
}

/// Guest RAM: guest-physical `[base, base + size)` at host pointer `ptr`.
pub struct GuestRam<'a> {
    base: u64,
    size: u64,
    ptr: *mut u8,
    _region: PhantomData<&'a mut [u8]>,
}

impl<'a> GuestRam<'a> {
    /// Guest RAM backed by a slice (host tests, or any memory the caller
    /// owns). `base` is the guest-physical address of `mem[0]`.
    pub fn from_slice(base: u64, mem: &'a mut [u8]) -> GuestRam<'a> {
        GuestRam { base, size: mem.len() as u64, ptr: mem.as_mut_ptr(), _region: PhantomData }
    }

    /// Guest RAM mapped at `vaddr` in this PD.
    ///
    /// # Safety
    /// `[vaddr, vaddr + size)` must be mapped read-write in this address space
    /// for `'a`, be used by nothing else in this PD as Rust memory, and
    /// `base + size` must not overflow. The guest may write it concurrently:
    /// every access here is volatile. While a slice from
    /// [`GuestRam::slice_mut`] is alive, no vCPU may run (the VMM only takes
    /// one at boot, with all vCPUs stopped).
    pub unsafe fn from_raw(base: u64, vaddr: u64, size: u64) -> GuestRam<'a> {
        GuestRam { base, size, ptr: vaddr as *mut u8, _region: PhantomData }
    }

    /// Guest RAM that the Microkit tool mapped in this PD: `vaddr` is the
    /// `setvar_vaddr` symbol of a `<map>` of the region, `size` its size.
    /// `None` if the symbol was not patched (0) or the range wraps.
    pub fn from_microkit_map(
        base: u64,
        vaddr: &'static crate::microkit::Patched<u64>,
        size: u64,
    ) -> Option<GuestRam<'static>> {
        let va = vaddr.get();
        if va == 0 || va.checked_add(size).is_none() || base.checked_add(size).is_none() {
            return None;
        }
        // SAFETY: the tool patches a setvar_vaddr symbol with the address of
        // a read-write mapping of the region it names, which exists for the
        // PD's whole life and is not Rust memory of this PD; the guest is the
        // only other party, and the VMM boots it only through `Vm`, which
        // stops every vCPU before it takes a `slice_mut`.
        Some(unsafe { GuestRam::from_raw(base, va, size) })
    }

    /// Guest-physical address of the first byte.
    pub fn base(&self) -> Gpa {
        Gpa(self.base)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// One past the last guest-physical address.
    pub fn end(&self) -> Gpa {
        Gpa(self.base + self.size)
    }

    /// True if `[gpa, gpa + len)` lies inside guest RAM (empty ranges at
    /// the end included).
    pub fn contains(&self, gpa: Gpa, len: u64) -> bool {
        self.offset_of(gpa, len).is_ok()
    }

    /// Offset of `gpa` into the region, checking that `len` bytes fit.
    fn offset_of(&self, gpa: Gpa, len: u64) -> Result<usize, OutOfRange> {
        let err = OutOfRange { gpa, len };
        let offset = gpa.0.checked_sub(self.base).ok_or(err)?;
        let end = offset.checked_add(len).ok_or(err)?;
        if end > self.size {
            return Err(err);
        }
        usize::try_from(offset).map_err(|_| err)
    }

    /// Copies guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let offset = self.offset_of(gpa, buf.len() as u64)?;
        // SAFETY: `offset..offset + buf.len()` is inside the region (checked
        // above), which is mapped for 'a and never a Rust reference while a
        // vCPU may run (the constructors' contracts); the guest's concurrent
        // writes meet volatile loads only.
        unsafe { volatile_copy_from(self.ptr.add(offset), buf) }
        Ok(())
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), OutOfRange> {
        let offset = self.offset_of(gpa, data.len() as u64)?;
        // SAFETY: as in `read`, with the region mapped writable and volatile
        // stores.
        unsafe { volatile_copy_to(data, self.ptr.add(offset)) }
        Ok(())
    }

    /// Sets `len` bytes at `gpa` to `value`.
    pub fn fill(&mut self, gpa: Gpa, len: u64, value: u8) -> Result<(), OutOfRange> {
        let offset = self.offset_of(gpa, len)?;
        // SAFETY: `offset..offset + len` is inside the region (checked), and
        // `len` fits in usize because the region's size does; volatile stores
        // as in `write`.
        unsafe { volatile_fill(self.ptr.add(offset), len as usize, value) }
        Ok(())
    }

    /// A mutable view of `[gpa, gpa + len)`, for building data in place
    /// (the boot device tree). Only while every vCPU is stopped: see
    /// [`GuestRam::from_raw`].
    pub fn slice_mut(&mut self, gpa: Gpa, len: u64) -> Result<&mut [u8], OutOfRange> {
        let offset = self.offset_of(gpa, len)?;
        // SAFETY: the range is inside the region (checked) and `len` fits in
        // usize because the region's size does; `&mut self` keeps every other
        // accessor of this `GuestRam` away for the slice's life, and the
        // constructor's contract keeps the vCPUs stopped meanwhile.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.ptr.add(offset), len as usize) })
    }

    /// Reads a little-endian `u16`, `u32` or `u64` (by `N` = 2, 4, 8).
    pub fn read_le<const N: usize>(&self, gpa: Gpa) -> Result<u64, OutOfRange> {
        let mut bytes = [0u8; 8];
        self.read(gpa, &mut bytes[..N.min(8)])?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Writes the low `N` bytes of `value` little-endian.
    pub fn write_le<const N: usize>(&mut self, gpa: Gpa, value: u64) -> Result<(), OutOfRange> {
        self.write(gpa, &value.to_le_bytes()[..N.min(8)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_inside_the_region() {
        let mut mem = [0u8; 64];
        let mut ram = GuestRam::from_slice(0x4000_0000, &mut mem);
        ram.write(Gpa(0x4000_0010), &[1, 2, 3]).unwrap();
        let mut buf = [0u8; 3];
        ram.read(Gpa(0x4000_0010), &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3]);
        ram.write_le::<4>(Gpa(0x4000_003c), 0xdead_beef).unwrap();
        assert_eq!(ram.read_le::<4>(Gpa(0x4000_003c)).unwrap(), 0xdead_beef);
    }

    #[test]
    fn rejects_ranges_that_leave_the_region() {
        let mut mem = [0u8; 64];
        let mut ram = GuestRam::from_slice(0x4000_0000, &mut mem);
        let mut buf = [0u8; 4];
        assert!(ram.read(Gpa(0x3fff_fffe), &mut buf).is_err(), "below base");
        assert!(ram.read(Gpa(0x4000_003e), &mut buf).is_err(), "crosses the end");
        assert!(ram.write(Gpa(0x4000_0040), &[0]).is_err(), "at the end");
        assert!(ram.write(Gpa(u64::MAX), &[0, 0]).is_err(), "wraps");
        assert!(ram.fill(Gpa(0x4000_0000), 65, 0).is_err());
        assert!(ram.contains(Gpa(0x4000_0040), 0));
        assert!(!ram.contains(Gpa(0x4000_0000), u64::MAX));
    }

    #[test]
    fn copies_are_exact_at_every_alignment_and_length() {
        let mut mem = [0u8; 96];
        let mut ram = GuestRam::from_slice(0x1000, &mut mem);
        let pattern: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(29) ^ 0xa5);
        for offset in 0..16u64 {
            for len in 0..=64 {
                ram.fill(Gpa(0x1000), 96, 0xee).unwrap();
                ram.write(Gpa(0x1000 + offset), &pattern[..len]).unwrap();
                let mut all = [0u8; 96];
                ram.read(Gpa(0x1000), &mut all).unwrap();
                let (o, end) = (offset as usize, offset as usize + len);
                assert!(all[..o].iter().chain(&all[end..]).all(|&b| b == 0xee), "{o}+{len}");
                assert_eq!(&all[o..end], &pattern[..len], "{o}+{len}");
            }
        }
    }

    #[test]
    fn fill_clears_the_whole_region() {
        let mut mem = [0xaau8; 32];
        let mut ram = GuestRam::from_slice(0, &mut mem);
        ram.fill(Gpa(0), 32, 0).unwrap();
        assert_eq!(mem, [0; 32]);
    }
}

/// Guest RAM as the virtio devices see it.
impl virtio::GuestMemory for GuestRam<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), virtio::MemoryError> {
        GuestRam::read(self, Gpa(gpa), buf)
            .map_err(|e| virtio::MemoryError::OutOfRange { gpa, len: e.len })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), virtio::MemoryError> {
        GuestRam::write(self, Gpa(gpa), data)
            .map_err(|e| virtio::MemoryError::OutOfRange { gpa, len: e.len })
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), virtio::MemoryError> {
        if self.contains(Gpa(gpa), len) {
            Ok(())
        } else {
            Err(virtio::MemoryError::OutOfRange { gpa, len })
        }
    }

    /// Straight into an sDDF data region ([`DataRegion`]) with one volatile
    /// copy; any other buffer through the default bounce buffer.
    fn read_to_shared(
        &self,
        gpa: u64,
        dst: &dyn virtio::SharedBuffer,
        offset: usize,
        len: usize,
    ) -> Result<(), virtio::CopyError> {
        let Some(region) = dst.as_any().downcast_ref::<DataRegion>() else {
            return virtio::memory::bounce_read_to_shared(self, gpa, dst, offset, len);
        };
        let at = self.virtio_offset(gpa, len)?;
        // SAFETY: `at..at + len` is inside guest RAM (checked), mapped and
        // only ever accessed volatile (the constructors' contracts); the
        // data region is another mapping, so the two do not overlap.
        unsafe { region.0.write_from_raw(offset, self.ptr.add(at), len) }
            .map_err(|_| virtio::CopyError::Buffer)
    }

    /// The other way round from [`read_to_shared`](Self::read_to_shared).
    fn write_from_shared(
        &mut self,
        gpa: u64,
        src: &dyn virtio::SharedBuffer,
        offset: usize,
        len: usize,
    ) -> Result<(), virtio::CopyError> {
        let Some(region) = src.as_any().downcast_ref::<DataRegion>() else {
            return virtio::memory::bounce_write_from_shared(self, gpa, src, offset, len);
        };
        let at = self.virtio_offset(gpa, len)?;
        // SAFETY: as in `read_to_shared`, with guest RAM mapped writable.
        unsafe { region.0.read_to_raw(offset, self.ptr.add(at), len) }
            .map_err(|_| virtio::CopyError::Buffer)
    }
}

impl GuestRam<'_> {
    /// [`GuestRam::offset_of`] with the virtio crate's error.
    fn virtio_offset(&self, gpa: u64, len: usize) -> Result<usize, virtio::CopyError> {
        self.offset_of(Gpa(gpa), len as u64).map_err(|e| {
            virtio::CopyError::Guest(virtio::MemoryError::OutOfRange { gpa, len: e.len })
        })
    }
}

#[cfg(test)]
mod virtio_tests {
    use super::*;
    use virtio::GuestMemory;

    #[test]
    fn virtio_sees_the_same_bounds() {
        let mut mem = [0u8; 32];
        let mut ram = GuestRam::from_slice(0x1000, &mut mem);
        GuestMemory::write(&mut ram, 0x1010, &[9, 8]).unwrap();
        let mut b = [0u8; 2];
        GuestMemory::read(&ram, 0x1010, &mut b).unwrap();
        assert_eq!(b, [9, 8]);
        assert!(GuestMemory::check_range(&ram, 0x1000, 32).is_ok());
        assert!(GuestMemory::check_range(&ram, 0x1000, 33).is_err());
        assert!(GuestMemory::read(&ram, 0xfff, &mut b).is_err());
    }

    #[test]
    fn copies_straight_between_guest_ram_and_an_sddf_data_region() {
        let mut mem = [0u8; 256];
        let mut ram = GuestRam::from_slice(0x1000, &mut mem);
        let region = DataRegion(sddf_bindings::SharedRegion::leak_zeroed(128));
        let pattern: [u8; 100] = core::array::from_fn(|i| i as u8 ^ 0x5c);
        GuestMemory::write(&mut ram, 0x1003, &pattern).unwrap();
        ram.read_to_shared(0x1003, &region, 9, 100).unwrap();
        let mut b = [0u8; 100];
        region.0.read(9, &mut b).unwrap();
        assert_eq!(b, pattern);
        ram.write_from_shared(0x1080, &region, 9, 100).unwrap();
        GuestMemory::read(&ram, 0x1080, &mut b).unwrap();
        assert_eq!(b, pattern);
        let guest = ram.read_to_shared(0x10f0, &region, 0, 17);
        assert!(matches!(guest, Err(virtio::CopyError::Guest(_))), "{guest:?}");
        assert_eq!(ram.write_from_shared(0x1000, &region, 120, 9), Err(virtio::CopyError::Buffer));
    }
}
