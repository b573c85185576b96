//! Bounds-checked access to memory shared with another protection domain.
//!
//! This module holds every `unsafe` block of the crate. A [`SharedRegion`] is
//! created once from a trusted address and size (the sdfgen config), with the
//! one `unsafe` promise that the range is mapped; after that every access is
//! checked against the region and done with volatile or atomic operations, so
//! a peer that writes concurrently (or maliciously) cannot make us touch
//! memory outside the region. Queue logic elsewhere is safe code over this.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU8};

use zerocopy::FromBytes;

use crate::config::RegionResource;
use crate::Error;

/// A contiguous range of memory shared with another protection domain.
///
/// Cloning gives another handle on the same memory. All accesses are
/// bounds-checked; bytes are copied with volatile operations and indices and
/// flags are accessed through atomics ([`SharedRegion::atomic_u32`]).
#[derive(Clone)]
pub struct SharedRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a `SharedRegion` is a bounds-checked pointer to memory that `new`'s
// caller promised stays mapped while any handle exists. Every access through
// it is volatile or atomic, the same kinds of access the peer makes from
// another core, so using it from another thread adds nothing new.
unsafe impl Send for SharedRegion {}
// SAFETY: as for `Send`: all methods take `&self` and only do volatile or
// atomic accesses, which are meant to happen concurrently.
unsafe impl Sync for SharedRegion {}

impl fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion").field("base", &self.base).field("len", &self.len).finish()
    }
}

impl SharedRegion {
    /// Wraps `len` bytes of shared memory starting at `base`.
    ///
    /// # Safety
    ///
    /// - `base..base + len` must be mapped readable and writable, and stay so
    ///   while the returned region, any clone, sub-region or [`SharedAtomic`]
    ///   taken from it exists (in a protection domain: forever).
    /// - `base + len` must not wrap around the address space.
    /// - Nothing may hold a Rust reference to non-atomic data in that range;
    ///   other accesses (the peer, other handles) must be volatile or atomic.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        SharedRegion { base, len }
    }

    /// Wraps the region described by an sdfgen `region_resource_t`.
    ///
    /// Returns [`Error::NullRegion`] for a zero address (an unused connection)
    /// and [`Error::OutOfBounds`] for a size that does not fit in `usize`.
    ///
    /// # Safety
    ///
    /// The same as [`SharedRegion::new`], for `resource.vaddr` and
    /// `resource.size`: the system description must map that range into this
    /// protection domain, read-write.
    pub unsafe fn from_resource(resource: &RegionResource) -> Result<Self, Error> {
        let len = usize::try_from(resource.size).map_err(|_| Error::OutOfBounds)?;
        let addr = usize::try_from(resource.vaddr).map_err(|_| Error::OutOfBounds)?;
        let base = NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(addr))
            .ok_or(Error::NullRegion)?;
        // SAFETY: the caller upholds `new`'s contract for this address and size.
        Ok(unsafe { SharedRegion::new(base, len) })
    }

    /// Allocates `len` zeroed bytes, 8-byte aligned, and leaks them.
    ///
    /// For host tests, which stand in for the memory the system description
    /// would share. Each call leaks its allocation for good.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn leak_zeroed(len: usize) -> Self {
        let words = alloc::vec![0u64; len.div_ceil(8)];
        let words: &'static mut [u64] = alloc::boxed::Box::leak(words.into_boxed_slice());
        let base = NonNull::new(words.as_mut_ptr().cast::<u8>()).unwrap_or(NonNull::dangling());
        // SAFETY: the allocation is at least `len` bytes, leaked (so it lives
        // forever) and from here on only reached through this region.
        unsafe { SharedRegion::new(base, len) }
    }

    /// The size of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at `offset`, as a region of their own.
    pub fn subregion(&self, offset: usize, len: usize) -> Result<SharedRegion, Error> {
        let start = self.checked_ptr(offset, len)?;
        // SAFETY: `start..start + len` lies inside this region (checked above),
        // so `new`'s contract, upheld for the whole region, covers it.
        Ok(unsafe { SharedRegion::new(start, len) })
    }

    /// Copies `dst.len()` bytes at `offset` into `dst` with volatile loads,
    /// 8 bytes at a time where the shared side is aligned
    /// ([`volatile_copy_from`]).
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Error> {
        let src = self.checked_ptr(offset, dst.len())?;
        // SAFETY: `src..src + dst.len()` is inside the region (checked) and
        // `new`'s contract keeps it mapped and free of Rust references.
        unsafe { volatile_copy_from(src.as_ptr(), dst) };
        Ok(())
    }

    /// Copies `src` to `offset` with volatile stores, 8 bytes at a time where
    /// the shared side is aligned ([`volatile_copy_to`]).
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), Error> {
        let dst = self.checked_ptr(offset, src.len())?;
        // SAFETY: as in `read`: in bounds, mapped, no Rust references.
        unsafe { volatile_copy_to(src, dst.as_ptr()) };
        Ok(())
    }

    /// Copies `len` bytes from `src`, memory outside the region that others
    /// may write too (guest RAM), to `offset`: one volatile copy, no bounce
    /// buffer ([`volatile_copy`]).
    ///
    /// # Safety
    ///
    /// `src..src + len` must be mapped readable, and nothing may hold a Rust
    /// reference to it (other accesses must be volatile or atomic).
    pub unsafe fn write_from_raw(
        &self,
        offset: usize,
        src: *const u8,
        len: usize,
    ) -> Result<(), Error> {
        let dst = self.checked_ptr(offset, len)?;
        // SAFETY: the destination is in bounds, mapped and free of Rust
        // references (`new`); the source is the caller's promise.
        unsafe { volatile_copy(src, dst.as_ptr(), len) };
        Ok(())
    }

    /// Copies `len` bytes at `offset` to `dst`, memory outside the region;
    /// see [`SharedRegion::write_from_raw`].
    ///
    /// # Safety
    ///
    /// `dst..dst + len` must be mapped writable, and nothing may hold a Rust
    /// reference to it (other accesses must be volatile or atomic).
    pub unsafe fn read_to_raw(&self, offset: usize, dst: *mut u8, len: usize) -> Result<(), Error> {
        let src = self.checked_ptr(offset, len)?;
        // SAFETY: as in `write_from_raw`, the other way round.
        unsafe { volatile_copy(src.as_ptr(), dst, len) };
        Ok(())
    }

    /// A single naturally aligned volatile load of a `u8`, `u16`, `u32` or
    /// `u64` at `offset`: device registers and fields of rings shared with a
    /// device, which must be read in one access of their own width.
    pub fn load<T: Word>(&self, offset: usize) -> Result<T, Error> {
        let ptr = self.word_ptr::<T>(offset)?;
        // SAFETY: in bounds and aligned (checked), mapped by `new`'s contract;
        // a volatile load of a plain integer tolerates concurrent writers.
        Ok(unsafe { ptr.read_volatile() })
    }

    /// A single naturally aligned volatile store; see [`SharedRegion::load`].
    pub fn store<T: Word>(&self, offset: usize, value: T) -> Result<(), Error> {
        let ptr = self.word_ptr::<T>(offset)?;
        // SAFETY: as in `load`: in bounds, aligned, mapped, volatile.
        unsafe { ptr.write_volatile(value) };
        Ok(())
    }

    /// `N` consecutive naturally aligned volatile loads from `offset` (one
    /// bounds check for all): a ring slot copied out once, a word at a time.
    pub fn load_array<T: Word, const N: usize>(&self, offset: usize) -> Result<[T; N], Error> {
        let ptr = self.words_ptr::<T>(offset, N)?;
        // SAFETY: `ptr..ptr + N` is in bounds and aligned (checked), mapped
        // by `new`'s contract; volatile loads of plain integers tolerate
        // concurrent writers.
        Ok(core::array::from_fn(|k| unsafe { ptr.add(k).read_volatile() }))
    }

    /// `N` consecutive naturally aligned volatile stores from `offset`, in
    /// order; see [`SharedRegion::load_array`].
    pub fn store_array<T: Word, const N: usize>(
        &self,
        offset: usize,
        values: [T; N],
    ) -> Result<(), Error> {
        let ptr = self.words_ptr::<T>(offset, N)?;
        for (k, value) in values.into_iter().enumerate() {
            // SAFETY: as in `load_array`: in bounds, aligned, mapped, volatile.
            unsafe { ptr.add(k).write_volatile(value) };
        }
        Ok(())
    }

    fn word_ptr<T: Word>(&self, offset: usize) -> Result<*mut T, Error> {
        self.words_ptr(offset, 1)
    }

    /// `count` aligned `T`s at `offset`, checked to lie in the region.
    fn words_ptr<T: Word>(&self, offset: usize, count: usize) -> Result<*mut T, Error> {
        let len = size_of::<T>().checked_mul(count).ok_or(Error::OutOfBounds)?;
        let ptr = self.checked_ptr(offset, len)?.cast::<T>().as_ptr();
        if !ptr.is_aligned() {
            return Err(Error::Misaligned);
        }
        Ok(ptr)
    }

    /// The naturally aligned `u32` at `offset`, for atomic access.
    pub fn atomic_u32(&self, offset: usize) -> Result<SharedAtomic<AtomicU32>, Error> {
        self.atomic(offset)
    }

    /// The byte at `offset`, for atomic access (C `bool` flags).
    pub fn atomic_u8(&self, offset: usize) -> Result<SharedAtomic<AtomicU8>, Error> {
        self.atomic(offset)
    }

    fn atomic<A>(&self, offset: usize) -> Result<SharedAtomic<A>, Error> {
        let ptr = self.checked_ptr(offset, size_of::<A>())?.cast::<A>();
        if !ptr.as_ptr().is_aligned() {
            return Err(Error::Misaligned);
        }
        Ok(SharedAtomic { ptr, _region: self.clone() })
    }

    /// The address of `offset`, if `offset..offset + len` lies in the region.
    fn checked_ptr(&self, offset: usize, len: usize) -> Result<NonNull<u8>, Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: `offset <= len` of the region, and `new`'s caller
                // promised the region does not wrap the address space.
                Ok(unsafe { self.base.add(offset) })
            }
            _ => Err(Error::OutOfBounds),
        }
    }
}

/// Bytes per wide access of the volatile copies.
const WORD: usize = size_of::<u64>();

/// Copies `dst.len()` bytes from shared memory at `src` into `dst`.
///
/// Every load from `src` is volatile: byte loads up to the first 8-byte
/// boundary of `src` and after the last, naturally aligned `u64` loads in
/// between (as rust-vmm vm-memory's `volatile_memory.rs` copies by the
/// widest aligned width). A peer writing concurrently makes the bytes read a
/// mix of old and new values, never undefined behaviour; aligned words are
/// single accesses, so a naturally aligned `u16`/`u32`/`u64` is not torn.
///
/// # Safety
///
/// `src..src + dst.len()` must be mapped readable, and nothing may hold a
/// Rust reference to it (other accesses must be volatile or atomic).
///
/// The small copies (ring indices, descriptors, request headers) are inlined
/// into the caller; the rest is one call.
#[inline(always)]
pub unsafe fn volatile_copy_from(src: *const u8, dst: &mut [u8]) {
    // SAFETY: the caller's contract, for a range of `dst.len()` bytes.
    if unsafe { small_from(src, dst) } {
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { volatile_copy_from_any(src, dst) }
}

/// [`volatile_copy_from`] for any length and alignment.
///
/// # Safety
///
/// As [`volatile_copy_from`].
#[inline(never)]
unsafe fn volatile_copy_from_any(src: *const u8, dst: &mut [u8]) {
    let head = src.align_offset(WORD).min(dst.len());
    let (edge, rest) = dst.split_at_mut(head);
    for (i, byte) in edge.iter_mut().enumerate() {
        // SAFETY: `i < head <= dst.len()`: in the range the caller vouches for.
        *byte = unsafe { src.add(i).read_volatile() };
    }
    // SAFETY: `head <= dst.len()`, so `src + head` is in (or at the end of) the range.
    let src = unsafe { src.add(head) };
    // SAFETY: every bit pattern is a valid `u64`, and `align_to_mut` only
    // reinterprets the aligned middle of `rest`.
    let (pre, words, _) = unsafe { rest.align_to_mut::<u64>() };
    let done = if pre.is_empty() {
        // SAFETY: `words` covers the start of the range; `src` is aligned.
        unsafe { copy_words_from(src, words) };
        words.len() * WORD
    } else {
        // SAFETY: the range is `rest.len()` bytes from `src`, which is aligned.
        unsafe { copy_words_unaligned_from(src, rest) }
    };
    let rest = &mut dst[head + done..];
    for (i, byte) in rest.iter_mut().enumerate() {
        // SAFETY: `head + done + i < dst.len()`: in the range.
        *byte = unsafe { src.add(done + i).read_volatile() };
    }
}

/// The copies of ring indices, descriptors and request headers: a naturally
/// aligned 2, 4 or 8 bytes is one load (so it is not torn either), 16 bytes
/// on an 8-byte boundary two. Returns false for anything else.
///
/// # Safety
///
/// As [`volatile_copy_from`].
#[inline(always)]
unsafe fn small_from(src: *const u8, dst: &mut [u8]) -> bool {
    match dst.len() {
        2 if src.cast::<u16>().is_aligned() => {
            // SAFETY: 2 readable bytes at `src` (the caller's contract), aligned (checked).
            let v = unsafe { src.cast::<u16>().read_volatile() };
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        4 if src.cast::<u32>().is_aligned() => {
            // SAFETY: 4 readable bytes at `src`, aligned (checked).
            let v = unsafe { src.cast::<u32>().read_volatile() };
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        8 | 16 if src.cast::<u64>().is_aligned() => {
            for (k, chunk) in dst.chunks_exact_mut(WORD).enumerate() {
                // SAFETY: word `k` (of 1 or 2) is readable at `src`, aligned (checked).
                let v = unsafe { src.cast::<u64>().add(k).read_volatile() };
                chunk.copy_from_slice(&v.to_ne_bytes());
            }
        }
        _ => return false,
    }
    true
}

/// [`small_from`] the other way.
///
/// # Safety
///
/// As [`volatile_copy_to`].
#[inline(always)]
unsafe fn small_to(src: &[u8], dst: *mut u8) -> bool {
    match *src {
        [a, b] if dst.cast::<u16>().is_aligned() => {
            // SAFETY: 2 writable bytes at `dst` (the caller's contract), aligned (checked).
            unsafe { dst.cast::<u16>().write_volatile(u16::from_ne_bytes([a, b])) };
        }
        [a, b, c, d] if dst.cast::<u32>().is_aligned() => {
            // SAFETY: 4 writable bytes at `dst`, aligned (checked).
            unsafe { dst.cast::<u32>().write_volatile(u32::from_ne_bytes([a, b, c, d])) };
        }
        _ if matches!(src.len(), 8 | 16) && dst.cast::<u64>().is_aligned() => {
            for (k, chunk) in src.chunks_exact(WORD).enumerate() {
                let mut w = [0u8; WORD];
                w.copy_from_slice(chunk);
                // SAFETY: word `k` (of 1 or 2) is writable at `dst`, aligned (checked).
                unsafe { dst.cast::<u64>().add(k).write_volatile(u64::from_ne_bytes(w)) };
            }
        }
        _ => return false,
    }
    true
}

/// Words per iteration of the aligned copies: 64 bytes, so the loop's own
/// instructions are few beside the loads and stores.
const UNROLL: usize = 8;

/// Two words as one `u128` in memory order: a volatile `u128` access is a
/// load or store pair (LDP/STP), whose two 8-byte halves are each single
/// aligned accesses, so words are still not torn.
fn pair(lo: u64, hi: u64) -> u128 {
    if cfg!(target_endian = "little") {
        u128::from(lo) | u128::from(hi) << 64
    } else {
        u128::from(hi) | u128::from(lo) << 64
    }
}

/// The two words of [`pair`], in memory order.
fn unpair(v: u128) -> (u64, u64) {
    let (low, high) = (v as u64, (v >> 64) as u64);
    if cfg!(target_endian = "little") {
        (low, high)
    } else {
        (high, low)
    }
}

/// How many leading words to move singly before `ptr` is 16-byte aligned.
fn words_to_pair_alignment(ptr: *const u64, words: usize) -> usize {
    usize::from(!ptr.cast::<u128>().is_aligned()).min(words)
}

/// Aligned volatile loads from `src` into `words`: pairs of words where
/// `src` is 16-byte aligned, 64 bytes per iteration.
///
/// # Safety
///
/// `src` is 8-byte aligned and `src..src + 8 * words.len()` is readable
/// shared memory as for [`volatile_copy_from`].
unsafe fn copy_words_from(src: *const u8, words: &mut [u64]) {
    let src = src.cast::<u64>();
    let lead = words_to_pair_alignment(src, words.len());
    let (first, body) = words.split_at_mut(lead);
    for (j, w) in first.iter_mut().enumerate() {
        // SAFETY: word `j` is in the range; `src` is aligned.
        *w = unsafe { src.add(j).read_volatile() };
    }
    // SAFETY: `lead <= words.len()`: in (or at the end of) the range.
    let pairs = unsafe { src.add(lead) }.cast::<u128>();
    let mut blocks = body.chunks_exact_mut(UNROLL);
    let mut k = 0;
    for block in &mut blocks {
        for (j, two) in block.chunks_exact_mut(2).enumerate() {
            // SAFETY: words `lead + 2 * (k + j)` and the next are in the
            // range; `pairs` is 16-byte aligned.
            (two[0], two[1]) = unpair(unsafe { pairs.add(k + j).read_volatile() });
        }
        k += UNROLL / 2;
    }
    let words_done = lead + 2 * k;
    for (j, w) in blocks.into_remainder().iter_mut().enumerate() {
        // SAFETY: word `words_done + j` is in the range; aligned.
        *w = unsafe { src.add(words_done + j).read_volatile() };
    }
}

/// Aligned volatile `u64` loads from `src` into a `dst` that is not 8-byte
/// aligned; returns the bytes copied (a multiple of 8).
///
/// # Safety
///
/// As for [`copy_words_from`], for `src..src + dst.len()`.
unsafe fn copy_words_unaligned_from(src: *const u8, dst: &mut [u8]) -> usize {
    let mut chunks = dst.chunks_exact_mut(WORD);
    for (k, chunk) in (&mut chunks).enumerate() {
        // SAFETY: word `k` is in the range; `src` is aligned.
        let word = unsafe { src.cast::<u64>().add(k).read_volatile() };
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    dst.len() / WORD * WORD
}

/// Copies `src` into shared memory at `dst`, with volatile stores shaped as
/// in [`volatile_copy_from`].
///
/// # Safety
///
/// `dst..dst + src.len()` must be mapped writable, and nothing may hold a
/// Rust reference to it (other accesses must be volatile or atomic).
///
/// Small copies are inlined into the caller, as in [`volatile_copy_from`].
#[inline(always)]
pub unsafe fn volatile_copy_to(src: &[u8], dst: *mut u8) {
    // SAFETY: the caller's contract, for a range of `src.len()` bytes.
    if unsafe { small_to(src, dst) } {
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { volatile_copy_to_any(src, dst) }
}

/// [`volatile_copy_to`] for any length and alignment.
///
/// # Safety
///
/// As [`volatile_copy_to`].
#[inline(never)]
unsafe fn volatile_copy_to_any(src: &[u8], dst: *mut u8) {
    let head = dst.align_offset(WORD).min(src.len());
    let (edge, rest) = src.split_at(head);
    for (i, &byte) in edge.iter().enumerate() {
        // SAFETY: `i < head <= src.len()`: in the range the caller vouches for.
        unsafe { dst.add(i).write_volatile(byte) };
    }
    // SAFETY: `head <= src.len()`, so `dst + head` is in (or at the end of) the range.
    let dst = unsafe { dst.add(head) };
    // SAFETY: every bit pattern is a valid `u64`.
    let (pre, words, _) = unsafe { rest.align_to::<u64>() };
    let done = if pre.is_empty() {
        // SAFETY: `words` covers the start of the range; `dst` is aligned.
        unsafe { copy_words_to(words, dst) };
        words.len() * WORD
    } else {
        // SAFETY: the range is `rest.len()` bytes from `dst`, which is aligned.
        unsafe { copy_words_unaligned_to(rest, dst) }
    };
    for (i, &byte) in rest[done..].iter().enumerate() {
        // SAFETY: `head + done + i < src.len()`: in the range.
        unsafe { dst.add(done + i).write_volatile(byte) };
    }
}

/// Aligned volatile stores of `words` at `dst`: pairs of words where `dst`
/// is 16-byte aligned, 64 bytes per iteration.
///
/// # Safety
///
/// `dst` is 8-byte aligned and `dst..dst + 8 * words.len()` is writable
/// shared memory as for [`volatile_copy_to`].
unsafe fn copy_words_to(words: &[u64], dst: *mut u8) {
    let dst = dst.cast::<u64>();
    let lead = words_to_pair_alignment(dst, words.len());
    let (first, body) = words.split_at(lead);
    for (j, &w) in first.iter().enumerate() {
        // SAFETY: word `j` is in the range; `dst` is aligned.
        unsafe { dst.add(j).write_volatile(w) };
    }
    // SAFETY: `lead <= words.len()`: in (or at the end of) the range.
    let pairs = unsafe { dst.add(lead) }.cast::<u128>();
    let mut blocks = body.chunks_exact(UNROLL);
    let mut k = 0;
    for block in &mut blocks {
        for (j, two) in block.chunks_exact(2).enumerate() {
            // SAFETY: words `lead + 2 * (k + j)` and the next are in the
            // range; `pairs` is 16-byte aligned.
            unsafe { pairs.add(k + j).write_volatile(pair(two[0], two[1])) };
        }
        k += UNROLL / 2;
    }
    let words_done = lead + 2 * k;
    for (j, &w) in blocks.remainder().iter().enumerate() {
        // SAFETY: word `words_done + j` is in the range; aligned.
        unsafe { dst.add(words_done + j).write_volatile(w) };
    }
}

/// Aligned volatile `u64` stores at `dst` of a `src` that is not 8-byte
/// aligned; returns the bytes copied (a multiple of 8).
///
/// # Safety
///
/// As for [`copy_words_to`], for `dst..dst + src.len()`.
unsafe fn copy_words_unaligned_to(src: &[u8], dst: *mut u8) -> usize {
    for (k, chunk) in src.chunks_exact(WORD).enumerate() {
        let mut word = [0u8; WORD];
        word.copy_from_slice(chunk);
        // SAFETY: word `k` is in the range; `dst` is aligned.
        unsafe { dst.cast::<u64>().add(k).write_volatile(u64::from_ne_bytes(word)) };
    }
    src.len() / WORD * WORD
}

/// Copies `len` bytes between two ranges of shared memory, with volatile
/// loads and stores: bytes up to the first 8-byte boundary of `dst`, then
/// aligned words (pairs of words where both sides are 16-byte aligned) if
/// `src` is aligned there too, else bytes.
///
/// # Safety
///
/// `src..src + len` must be mapped readable and `dst..dst + len` writable,
/// the two must not overlap, and nothing may hold a Rust reference to either
/// (other accesses must be volatile or atomic).
pub unsafe fn volatile_copy(src: *const u8, dst: *mut u8, len: usize) {
    let head = dst.align_offset(WORD).min(len);
    for i in 0..head {
        // SAFETY: `i < len`: in both ranges.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    // SAFETY: `head <= len`: in (or at the end of) both ranges.
    let (src, dst) = unsafe { (src.add(head), dst.add(head)) };
    let words = (len - head) / WORD;
    let done = if src.cast::<u64>().is_aligned() {
        // SAFETY: `words` words from both (8-byte aligned) pointers are in range.
        unsafe { copy_words_between(src.cast(), dst.cast(), words) };
        words * WORD
    } else {
        0
    };
    for i in done..len - head {
        // SAFETY: `head + i < len`: in both ranges.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

/// Words per iteration of [`copy_words_between`], the bulk copy of block
/// data: 256 bytes, so the loop's own instructions are about an eighth.
const BULK_UNROLL: usize = 32;

/// `words` aligned volatile words from `src` to `dst`, in pairs (LDP/STP)
/// where both are 16-byte aligned, 256 bytes per iteration.
///
/// # Safety
///
/// Both 8-byte aligned; the ranges as for [`volatile_copy`].
unsafe fn copy_words_between(src: *const u64, dst: *mut u64, words: usize) {
    let lead = words_to_pair_alignment(dst, words);
    for j in 0..lead {
        // SAFETY: word `j < words`: in both ranges, both aligned.
        unsafe { dst.add(j).write_volatile(src.add(j).read_volatile()) };
    }
    let mut k = lead;
    // SAFETY: `lead <= words`: in (or at the end of) both ranges.
    let (s2, d2) = unsafe { (src.add(lead).cast::<u128>(), dst.add(lead).cast::<u128>()) };
    if s2.is_aligned() {
        let (bulk, pairs) = ((words - lead) / BULK_UNROLL * (BULK_UNROLL / 2), (words - lead) / 2);
        let mut p = 0;
        while p < bulk {
            for j in 0..BULK_UNROLL / 2 {
                // SAFETY: pair `p + j < bulk <= pairs` covers words below
                // `words`; both pointers are 16-byte aligned.
                unsafe { d2.add(p + j).write_volatile(s2.add(p + j).read_volatile()) };
            }
            p += BULK_UNROLL / 2;
        }
        while p < pairs {
            // SAFETY: as above, `p < pairs`.
            unsafe { d2.add(p).write_volatile(s2.add(p).read_volatile()) };
            p += 1;
        }
        k += 2 * pairs;
    }
    for j in k..words {
        // SAFETY: word `j < words`: in both ranges, both aligned.
        unsafe { dst.add(j).write_volatile(src.add(j).read_volatile()) };
    }
}

/// Sets `len` bytes of shared memory at `dst` to `value`, with volatile
/// stores shaped as in [`volatile_copy_to`].
///
/// # Safety
///
/// As for [`volatile_copy_to`], for `dst..dst + len`.
pub unsafe fn volatile_fill(dst: *mut u8, len: usize, value: u8) {
    let block = [value; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(block.len());
        // SAFETY: `done + n <= len`: in the range the caller vouches for.
        unsafe { volatile_copy_to(&block[..n], dst.add(done)) };
        done += n;
    }
}

/// The integer types [`SharedRegion::load`] and [`SharedRegion::store`]
/// access: every bit pattern is a valid value.
pub trait Word: Copy + sealed::Sealed {}
impl Word for u8 {}
impl Word for u16 {}
impl Word for u32 {}
impl Word for u64 {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// An aligned atomic (`AtomicU32` or `AtomicU8`) inside a [`SharedRegion`].
///
/// Dereferences to the atomic type; bounds and alignment were checked when it
/// was taken from the region, so every later access is free of checks.
pub struct SharedAtomic<A> {
    ptr: NonNull<A>,
    /// Keeps the region's provenance (and documents the dependency).
    _region: SharedRegion,
}

// SAFETY: the pointee is an atomic inside a `SharedRegion`, which is itself
// `Send`/`Sync`; atomics are made for access from several threads.
unsafe impl<A: Sync> Send for SharedAtomic<A> {}
// SAFETY: as for `Send`.
unsafe impl<A: Sync> Sync for SharedAtomic<A> {}

impl<A> Deref for SharedAtomic<A> {
    type Target = A;

    fn deref(&self) -> &A {
        // SAFETY: `ptr` is in bounds and aligned (checked in
        // `SharedRegion::atomic`), the region stays mapped (`new`'s contract),
        // and the atomic types allow shared mutation through `&A`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<A: fmt::Debug> fmt::Debug for SharedAtomic<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A config struct that tools patch into the ELF file after linking.
///
/// sdfgen's data is spliced into a named section with `objcopy
/// --update-section`, so the compiler must not fold the zeroed initial value
/// into the code. Declare the static as
/// `#[link_section = ".serial_client_config"] #[used] static CONFIG:
/// ConfigCell<SerialClientConfig> = ConfigCell::new(SerialClientConfig::zeroed());`
/// and read it with [`ConfigCell::get`], which copies it out with a volatile
/// load. `T` must be `zerocopy::FromBytes`: any bytes the tool writes are then
/// a valid `T` (no `bool`, enum or reference field whose invalid values would
/// be undefined behaviour), checked at compile time.
#[repr(transparent)]
pub struct ConfigCell<T>(UnsafeCell<T>);

// SAFETY: `ConfigCell` offers no way to mutate its contents; the value only
// changes before the program runs (objcopy). Reads copy a `Sync + Copy` value.
unsafe impl<T: Copy + Sync + FromBytes> Sync for ConfigCell<T> {}

impl<T: Copy + FromBytes> ConfigCell<T> {
    /// Wraps the initial (usually zeroed) value.
    pub const fn new(value: T) -> Self {
        ConfigCell(UnsafeCell::new(value))
    }

    /// A copy of the current contents, read with a volatile load.
    pub fn get(&self) -> T {
        // SAFETY: the pointer comes from a live `UnsafeCell` so it is valid
        // and aligned, and no `&mut` to the contents ever exists. `T:
        // FromBytes`, so whatever bytes objcopy put there are a valid `T`.
        unsafe { self.0.get().read_volatile() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering;

    #[test]
    fn word_arrays_are_checked_once_and_copied_in_order() {
        let r = SharedRegion::leak_zeroed(32);
        r.store_array(8, [1u64, 2, 3]).unwrap();
        assert_eq!(r.load_array::<u64, 3>(8), Ok([1, 2, 3]));
        assert_eq!(r.store_array(16, [0u64; 3]), Err(Error::OutOfBounds));
        assert_eq!(r.load_array::<u64, 2>(4), Err(Error::Misaligned));
        assert_eq!(r.load_array::<u8, 0>(32), Ok([]));
        assert_eq!(r.load_array::<u64, 3>(8), Ok([1, 2, 3]), "a refused store writes nothing");
    }

    #[test]
    fn read_write_round_trip() {
        let region = SharedRegion::leak_zeroed(16);
        region.write(3, &[1, 2, 3]).unwrap();
        let mut out = [0u8; 5];
        region.read(2, &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 3, 0]);
    }

    #[test]
    fn wide_copies_are_exact_at_every_alignment_and_length() {
        let region = SharedRegion::leak_zeroed(96);
        let pattern: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for offset in 0..16 {
            for len in 0..=64 {
                region.write(0, &[0xee; 96]).unwrap();
                region.write(offset, &pattern[..len]).unwrap();
                let mut all = [0u8; 96];
                region.read(0, &mut all).unwrap();
                assert!(all[..offset].iter().all(|&b| b == 0xee), "before, {offset}+{len}");
                assert_eq!(&all[offset..offset + len], &pattern[..len], "{offset}+{len}");
                assert!(all[offset + len..].iter().all(|&b| b == 0xee), "after, {offset}+{len}");
                let mut part = vec![0u8; len];
                region.read(offset, &mut part).unwrap();
                assert_eq!(part, &pattern[..len]);
            }
        }
    }

    #[test]
    fn aligned_words_are_copied_in_one_access_so_never_torn() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        use std::sync::Arc;
        let region = SharedRegion::leak_zeroed(64);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (region, stop) = (region.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut v = 0u64;
                while !stop.load(Relaxed) {
                    v = !v;
                    region.store(16, v).unwrap();
                }
            })
        };
        for _ in 0..200_000 {
            let mut b = [0u8; 24];
            region.read(8, &mut b).unwrap();
            let w = u64::from_ne_bytes(b[8..16].try_into().unwrap());
            assert!(w == 0 || w == u64::MAX, "torn word {w:#x}");
        }
        stop.store(true, Relaxed);
        writer.join().unwrap();
    }

    #[test]
    fn copies_are_exact_for_every_alignment_of_both_sides() {
        #[repr(align(8))]
        struct Aligned([u8; 320]);
        let region = SharedRegion::leak_zeroed(256);
        let pattern: [u8; 200] = core::array::from_fn(|i| (i as u8).wrapping_mul(77) ^ 0x3c);
        for so in 0..8 {
            for ro in 0..8 {
                for len in [0, 1, 7, 8, 9, 63, 64, 65, 130, 191] {
                    let mut buf = Aligned([0; 320]);
                    let bytes = &mut buf.0;
                    bytes[so..so + len].copy_from_slice(&pattern[..len]);
                    region.write(0, &[0xee; 256]).unwrap();
                    region.write(ro, &bytes[so..so + len]).unwrap();
                    let mut all = [0u8; 256];
                    region.read(0, &mut all).unwrap();
                    assert!(all[..ro].iter().chain(&all[ro + len..]).all(|&b| b == 0xee));
                    assert_eq!(&all[ro..ro + len], &pattern[..len], "{so} {ro} {len}");
                    bytes.fill(0);
                    region.read(ro, &mut bytes[so..so + len]).unwrap();
                    assert_eq!(&bytes[so..so + len], &pattern[..len], "{so} {ro} {len}");
                    assert!(bytes[..so].iter().chain(&bytes[so + len..]).all(|&b| b == 0));
                }
            }
        }
    }

    #[test]
    fn raw_copies_are_exact_for_every_alignment_of_both_sides() {
        let region = SharedRegion::leak_zeroed(256);
        let other = SharedRegion::leak_zeroed(320);
        let pattern: [u8; 200] = core::array::from_fn(|i| (i as u8).wrapping_mul(53) ^ 0x5a);
        for so in 0..16 {
            for ro in 0..16 {
                for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 130, 191] {
                    other.write(0, &[0; 320]).unwrap();
                    other.write(so, &pattern[..len]).unwrap();
                    region.write(0, &[0xee; 256]).unwrap();
                    let src = other.checked_ptr(so, len).unwrap().as_ptr();
                    // SAFETY: `other` owns `so..so + len`, accessed volatile only.
                    unsafe { region.write_from_raw(ro, src, len) }.unwrap();
                    let mut all = [0u8; 256];
                    region.read(0, &mut all).unwrap();
                    assert!(all[..ro].iter().chain(&all[ro + len..]).all(|&b| b == 0xee));
                    assert_eq!(&all[ro..ro + len], &pattern[..len], "{so} {ro} {len}");
                    other.write(0, &[0; 320]).unwrap();
                    let dst = other.checked_ptr(so, len).unwrap().as_ptr();
                    // SAFETY: as above.
                    unsafe { region.read_to_raw(ro, dst, len) }.unwrap();
                    let mut back = [0u8; 320];
                    other.read(0, &mut back).unwrap();
                    assert_eq!(&back[so..so + len], &pattern[..len], "{so} {ro} {len}");
                    assert!(back[..so].iter().chain(&back[so + len..]).all(|&b| b == 0));
                }
            }
        }
        // SAFETY: a range outside the region is refused before any access.
        let outside = unsafe { region.write_from_raw(250, pattern.as_ptr(), 7) };
        assert_eq!(outside, Err(Error::OutOfBounds));
    }

    #[test]
    fn fill_sets_exactly_the_range() {
        let region = SharedRegion::leak_zeroed(600);
        // SAFETY: 3..3 + 590 is inside the 600 bytes the region owns.
        unsafe { volatile_fill(region.checked_ptr(3, 590).unwrap().as_ptr(), 590, 0xab) };
        let mut all = [0u8; 600];
        region.read(0, &mut all).unwrap();
        assert_eq!(all[..3], [0; 3]);
        assert!(all[3..593].iter().all(|&b| b == 0xab));
        assert_eq!(all[593..], [0; 7]);
    }

    #[test]
    fn accesses_outside_the_region_fail() {
        let region = SharedRegion::leak_zeroed(16);
        assert_eq!(region.write(15, &[1, 2]), Err(Error::OutOfBounds));
        assert_eq!(region.read(usize::MAX, &mut [0u8; 2]), Err(Error::OutOfBounds));
        assert_eq!(region.write(16, &[]), Ok(()));
        assert_eq!(region.atomic_u32(16).err(), Some(Error::OutOfBounds));
        assert_eq!(region.atomic_u8(usize::MAX).err(), Some(Error::OutOfBounds));
    }

    #[test]
    fn subregion_is_bounded_by_its_parent() {
        let region = SharedRegion::leak_zeroed(32);
        let sub = region.subregion(8, 8).unwrap();
        assert_eq!(sub.len(), 8);
        sub.write(0, &[7]).unwrap();
        let mut byte = [0u8];
        region.read(8, &mut byte).unwrap();
        assert_eq!(byte, [7]);
        assert_eq!(sub.write(8, &[1]), Err(Error::OutOfBounds));
        assert_eq!(region.subregion(30, 3).err(), Some(Error::OutOfBounds));
        assert_eq!(region.subregion(usize::MAX, 2).err(), Some(Error::OutOfBounds));
    }

    #[test]
    fn words_are_loaded_and_stored_in_place_and_checked() {
        let region = SharedRegion::leak_zeroed(16);
        region.store(8, 0x0102_0304_0506_0708_u64).unwrap();
        region.store(2, 0xabcd_u16).unwrap();
        assert_eq!(region.load::<u32>(8).unwrap(), 0x0506_0708);
        assert_eq!(region.load::<u8>(3).unwrap(), 0xab);
        let mut bytes = [0u8; 2];
        region.read(2, &mut bytes).unwrap();
        assert_eq!(bytes, 0xabcd_u16.to_ne_bytes());
        assert_eq!(region.load::<u32>(2), Err(Error::Misaligned));
        assert_eq!(region.store(12, 0u64), Err(Error::OutOfBounds));
        assert_eq!(region.load::<u16>(usize::MAX), Err(Error::OutOfBounds));
    }

    #[test]
    fn misaligned_atomics_are_refused() {
        let region = SharedRegion::leak_zeroed(16);
        assert_eq!(region.atomic_u32(2).err(), Some(Error::Misaligned));
        assert!(region.atomic_u8(3).is_ok());
    }

    #[test]
    fn atomics_see_byte_writes() {
        let region = SharedRegion::leak_zeroed(8);
        region.write(4, &0xdead_beef_u32.to_ne_bytes()).unwrap();
        assert_eq!(region.atomic_u32(4).unwrap().load(Ordering::Acquire), 0xdead_beef);
        region.atomic_u8(0).unwrap().store(9, Ordering::Release);
        let mut byte = [0u8];
        region.read(0, &mut byte).unwrap();
        assert_eq!(byte, [9]);
    }

    #[test]
    fn from_resource_rejects_null() {
        let resource = RegionResource { vaddr: 0, size: 4096 };
        // SAFETY: a null address is refused before anything is accessed.
        let result = unsafe { SharedRegion::from_resource(&resource) };
        assert_eq!(result.err(), Some(Error::NullRegion));
    }

    #[test]
    fn config_cell_returns_its_value() {
        static CELL: ConfigCell<[u8; 5]> = ConfigCell::new(*b"sDDF\x03");
        assert_eq!(CELL.get(), *b"sDDF\x03");
    }
}
