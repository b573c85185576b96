//! Symbols the `microkit` tool patches into a PD's ELF.
//!
//! All six built-in symbols are mandatory (the tool panics without any of
//! them, `microkit_ioports` included, even on aarch64). Each is an
//! interior-mutable `#[no_mangle]` static read with a volatile load, so rustc
//! cannot fold the link-time zero into the code.

use core::cell::UnsafeCell;

/// A word the `microkit` tool writes into the ELF before boot (`setvar_*`
/// attributes, or a built-in symbol). Exactly 8 bytes, as the tool requires.
#[repr(transparent)]
pub struct Patched<T: Copy>(UnsafeCell<T>);

// SAFETY: a PD is single-threaded and nothing writes these at run time: the
// value is fixed in the image before the PD starts.
unsafe impl<T: Copy> Sync for Patched<T> {}

impl<T: Copy> Patched<T> {
    /// An unpatched symbol with value `init`.
    pub const fn new(init: T) -> Self {
        Patched(UnsafeCell::new(init))
    }

    /// The value the tool patched in.
    #[inline(always)]
    pub fn get(&self) -> T {
        // SAFETY: the pointer comes from a live static; it is only ever
        // written by the tool before the PD runs, so no write races this read.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
}

/// Declares `setvar` symbols, the way a PD learns where the tool mapped a
/// memory region (`<map setvar_vaddr="guest_ram_vaddr" .../>`):
///
/// ```ignore
/// libvmm::setvar! {
///     /// VMM address of guest RAM.
///     static guest_ram_vaddr;
/// }
/// let ram = guest_ram_vaddr.get();
/// ```
#[macro_export]
macro_rules! setvar {
    ($($(#[$meta:meta])* $vis:vis static $name:ident;)*) => {$(
        $(#[$meta])*
        #[unsafe(no_mangle)]
        #[used]
        #[allow(non_upper_case_globals)]
        $vis static $name: $crate::microkit::Patched<u64> = $crate::microkit::Patched::new(0);
    )*};
}

/// Length of `microkit_name` (the tool truncates longer names).
pub const PD_NAME_LENGTH: usize = 64;

/// The PD's name from the system description (no NUL if it is 64 bytes).
#[unsafe(no_mangle)]
#[used]
pub static microkit_name: Patched<[u8; PD_NAME_LENGTH]> = Patched::new([0; PD_NAME_LENGTH]);
/// 1 if the PD is passive.
#[unsafe(no_mangle)]
#[used]
pub static microkit_passive: Patched<u8> = Patched::new(0);
/// Bit `i` set for each `<irq id="i">`.
#[unsafe(no_mangle)]
#[used]
pub static microkit_irqs: Patched<u64> = Patched::new(0);
/// Bit `i` set for each channel end `i` that may notify.
#[unsafe(no_mangle)]
#[used]
pub static microkit_notifications: Patched<u64> = Patched::new(0);
/// Bit `i` set for each channel end `i` that may make a protected call.
#[unsafe(no_mangle)]
#[used]
pub static microkit_pps: Patched<u64> = Patched::new(0);
/// x86 I/O ports; always 0 on Arm but required by the tool.
#[unsafe(no_mangle)]
#[used]
pub static microkit_ioports: Patched<u64> = Patched::new(0);

/// The PD's name, copied out of `microkit_name`.
#[derive(Clone, Copy)]
pub struct PdName {
    bytes: [u8; PD_NAME_LENGTH],
    len: usize,
}

impl PdName {
    /// The name as text (empty if it is not UTF-8).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl core::fmt::Display for PdName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PD's name from the system description.
pub fn pd_name() -> PdName {
    let bytes = microkit_name.get();
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(PD_NAME_LENGTH);
    PdName { bytes, len }
}

/// The memory region the Microkit tool mapped at `vaddr` (a `setvar_vaddr`
/// symbol) with `size` bytes (a `setvar_size` symbol), as shared memory.
/// `None` if either symbol was not patched (0).
///
/// The system description is trusted here, as everywhere in a Microkit
/// system: the two symbols must come from the same `<map>` of this PD.
pub fn shared_region(
    vaddr: &'static Patched<u64>,
    size: &'static Patched<u64>,
) -> Option<sddf_bindings::SharedRegion> {
    let resource = sddf_bindings::config::RegionResource { vaddr: vaddr.get(), size: size.get() };
    if resource.vaddr == 0 || resource.size == 0 {
        return None;
    }
    // SAFETY: the tool patched `vaddr` and `size` from one read-write `<map>`
    // of this PD (the system description is trusted), so the range is mapped
    // for the PD's whole life, does not wrap (the tool checks mappings fit
    // the address space), and is not Rust memory of this PD.
    unsafe { sddf_bindings::SharedRegion::from_resource(&resource) }.ok()
}
