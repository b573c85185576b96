//! Placing a Linux guest in RAM: kernel, initrd and patched device tree.
//!
//! ```text
//!  RAM base (2 MiB aligned)                                        RAM end
//!  | text_offset | kernel Image ... image_size | ... | initrd | DTB (2 MiB) |
//! ```
//!
//! The kernel goes at the 2 MiB-aligned RAM base plus `text_offset`. The DTB
//! gets the last 2 MiB of RAM; the initrd sits page-aligned just below it.
//! The DTB is patched at run time with the real RAM region, the initrd's
//! place and the command line, so no address is written twice by hand.

use super::fdt::{self, FdtError, Patch};
use super::image::{ImageError, ImageHeader};
use crate::guest_memory::{Gpa, GuestRam, OutOfRange};
use core::fmt;

/// Alignment of the kernel's base.
const KERNEL_ALIGN: u64 = 2 << 20;
/// Room kept for the device tree (the boot protocol's maximum size).
pub const DTB_MAX: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// The [`BootImages`] an example's build script named
/// (`libvmm_build::linux_vmm`): the files in LIBVMM_GUEST_KERNEL,
/// LIBVMM_GUEST_INITRD and LIBVMM_GUEST_DTB, embedded in the VMM, and the
/// command line in LIBVMM_GUEST_BOOTARGS. An unset or empty command line
/// keeps the device tree's (the Makefile always sets the variable, so rustc
/// sees it, empty, even when the build script does not pass it on).
///
/// The kernel and initrd are embedded page-aligned ([`PageAligned`]): they
/// land page-aligned in guest RAM, so the copy moves aligned 8-byte words
/// on both sides (with `strict-align`, an unaligned source costs a load per
/// byte).
#[macro_export]
macro_rules! embedded_boot_images {
    () => {
        $crate::linux::BootImages {
            kernel: {
                static KERNEL: &$crate::linux::boot::PageAligned<[u8]> =
                    &$crate::linux::boot::PageAligned(*include_bytes!(env!("LIBVMM_GUEST_KERNEL")));
                &KERNEL.0
            },
            initrd: {
                static INITRD: &$crate::linux::boot::PageAligned<[u8]> =
                    &$crate::linux::boot::PageAligned(*include_bytes!(env!("LIBVMM_GUEST_INITRD")));
                &INITRD.0
            },
            dtb: include_bytes!(env!("LIBVMM_GUEST_DTB")),
            bootargs: match option_env!("LIBVMM_GUEST_BOOTARGS") {
                Some(args) if !args.is_empty() => Some(args),
                _ => None,
            },
        }
    };
}

/// Bytes placed on a 4 KiB boundary: [`embedded_boot_images!`] embeds the
/// images in it, so they start aligned like their places in guest RAM.
#[repr(C, align(4096))]
pub struct PageAligned<T: ?Sized>(pub T);

/// What to boot.
#[derive(Clone, Copy)]
pub struct BootImages<'a> {
    /// The arm64 `Image` (uncompressed).
    pub kernel: &'a [u8],
    /// The initramfs; empty for none.
    pub initrd: &'a [u8],
    /// The guest device tree blob.
    pub dtb: &'a [u8],
    /// Kernel command line; `None` keeps the DTB's `/chosen/bootargs`.
    pub bootargs: Option<&'a str>,
}

/// Where each image went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    /// First byte of the kernel Image.
    pub kernel: Gpa,
    /// Entry point: the first byte of the Image.
    pub entry: Gpa,
    /// Device tree.
    pub dtb: Gpa,
    /// Initrd `[start, end)`, if any.
    pub initrd: Option<(Gpa, Gpa)>,
}

/// Why a guest could not be placed or loaded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootError {
    /// The kernel Image is not bootable.
    Image(ImageError),
    /// The device tree could not be patched.
    Fdt(FdtError),
    /// Guest RAM is too small for kernel + initrd + DTB.
    RamTooSmall {
        /// Bytes of RAM.
        ram: u64,
        /// Bytes the images need at least.
        needed: u64,
    },
    /// The DTB is larger than 2 MiB.
    DtbTooLarge {
        /// Its size.
        len: usize,
    },
    /// A copy fell outside guest RAM (a bug in the layout).
    OutOfRange(OutOfRange),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Image(e) => write!(f, "{e}"),
            BootError::Fdt(e) => write!(f, "guest device tree: {e}"),
            BootError::RamTooSmall { ram, needed } => write!(
                f,
                "guest RAM ({ram:#x} bytes) is too small for the kernel, initrd and device tree \
                 (at least {needed:#x} bytes)"
            ),
            BootError::DtbTooLarge { len } => {
                write!(f, "guest device tree is {len} bytes; at most 2 MiB can be booted")
            }
            BootError::OutOfRange(e) => write!(f, "{e}"),
        }
    }
}

impl From<ImageError> for BootError {
    fn from(e: ImageError) -> Self {
        BootError::Image(e)
    }
}

impl From<FdtError> for BootError {
    fn from(e: FdtError) -> Self {
        BootError::Fdt(e)
    }
}

impl From<OutOfRange> for BootError {
    fn from(e: OutOfRange) -> Self {
        BootError::OutOfRange(e)
    }
}

const fn align_up(x: u64, a: u64) -> Option<u64> {
    match x.checked_add(a - 1) {
        Some(v) => Some(v & !(a - 1)),
        None => None,
    }
}

/// Decides where the images go in RAM `[ram_base, ram_base + ram_size)`.
pub fn plan(
    ram_base: u64,
    ram_size: u64,
    header: &ImageHeader,
    initrd_len: usize,
) -> Result<Layout, BootError> {
    let too_small = |needed: u64| BootError::RamTooSmall { ram: ram_size, needed };
    let ram_end = ram_base.checked_add(ram_size).ok_or(too_small(u64::MAX))?;
    let base = align_up(ram_base, KERNEL_ALIGN).ok_or(too_small(u64::MAX))?;
    let kernel = base + header.text_offset;
    let kernel_end = kernel.checked_add(header.image_size).ok_or(too_small(u64::MAX))?;
    let initrd_len = initrd_len as u64;
    let needed = (kernel_end - ram_base)
        .saturating_add(align_up(initrd_len, PAGE).unwrap_or(u64::MAX))
        .saturating_add(DTB_MAX);
    // The DTB takes the last 2 MiB-aligned 2 MiB of RAM.
    let dtb = (ram_end & !(KERNEL_ALIGN - 1)).checked_sub(DTB_MAX).ok_or(too_small(needed))?;
    let initrd_start = dtb.checked_sub(initrd_len).ok_or(too_small(needed))? & !(PAGE - 1);
    if initrd_start < kernel_end || dtb < ram_base {
        return Err(too_small(needed));
    }
    let initrd = (initrd_len > 0).then_some((Gpa(initrd_start), Gpa(initrd_start + initrd_len)));
    Ok(Layout { kernel: Gpa(kernel), entry: Gpa(kernel), dtb: Gpa(dtb), initrd })
}

/// Copies the kernel and initrd into RAM and writes the patched DTB.
/// `rng_seed` becomes `/chosen/rng-seed`. All vCPUs must be stopped.
pub fn load(
    ram: &mut GuestRam,
    images: &BootImages,
    rng_seed: Option<&[u8]>,
) -> Result<Layout, BootError> {
    let header = ImageHeader::parse(images.kernel)?;
    if images.dtb.len() as u64 > DTB_MAX {
        return Err(BootError::DtbTooLarge { len: images.dtb.len() });
    }
    let layout = plan(ram.base().0, ram.size(), &header, images.initrd.len())?;
    ram.write(layout.kernel, images.kernel)?;
    if let Some((start, _)) = layout.initrd {
        ram.write(start, images.initrd)?;
    }
    let patch = Patch {
        bootargs: images.bootargs,
        initrd: layout.initrd.map(|(s, e)| (s.0, e.0)),
        memory: Some((ram.base().0, ram.size())),
        rng_seed,
    };
    let out = ram.slice_mut(layout.dtb, DTB_MAX)?;
    fdt::patch(images.dtb, out, &patch)?;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::super::image::tests::image;
    use super::*;

    const MIB: u64 = 1 << 20;

    fn header(text_offset: u64, image_size: u64) -> ImageHeader {
        ImageHeader { text_offset, image_size, place_anywhere: true, page_size_code: 1 }
    }

    #[test]
    fn places_kernel_at_base_and_dtb_initrd_at_the_top() {
        let l = plan(0x4000_0000, 256 * MIB, &header(0, 40 * MIB), 5 * MIB as usize + 123).unwrap();
        assert_eq!(l.kernel, Gpa(0x4000_0000));
        assert_eq!(l.entry, l.kernel);
        assert_eq!(l.dtb, Gpa(0x4fe0_0000));
        let (start, end) = l.initrd.unwrap();
        assert_eq!(start.0 % 4096, 0);
        assert!(end.0 <= l.dtb.0);
        assert_eq!(end.0 - start.0, 5 * MIB + 123);
    }

    #[test]
    fn honours_text_offset_and_unaligned_ram_base() {
        let l = plan(0x4010_0000, 256 * MIB, &header(0x8_0000, 20 * MIB), 0).unwrap();
        assert_eq!(l.kernel, Gpa(0x4020_0000 + 0x8_0000));
        assert_eq!(l.initrd, None);
    }

    #[test]
    fn rejects_ram_too_small_for_everything() {
        let err = plan(0x4000_0000, 64 * MIB, &header(0, 60 * MIB), 4 * MIB as usize).unwrap_err();
        assert!(matches!(err, BootError::RamTooSmall { .. }), "{err:?}");
        assert!(plan(0x4000_0000, MIB, &header(0, MIB), 0).is_err());
        assert!(plan(u64::MAX - MIB, 4 * MIB, &header(0, MIB), 0).is_err());
    }

    #[test]
    fn load_rejects_a_bad_kernel_with_its_reason() {
        let mut mem = vec![0u8; 8 * MIB as usize];
        let mut ram = GuestRam::from_slice(0x4000_0000, &mut mem);
        let images = BootImages { kernel: &[0; 100], initrd: &[], dtb: &[], bootargs: None };
        let err = load(&mut ram, &images, None).unwrap_err();
        assert!(matches!(err, BootError::Image(ImageError::BadMagic { .. })), "{err:?}");
        let kernel = image(0, 0x1000, 0xa, 4096);
        let big = vec![0u8; 3 * MIB as usize];
        let images = BootImages { kernel: &kernel, initrd: &[], dtb: &big, bootargs: None };
        assert!(matches!(load(&mut ram, &images, None), Err(BootError::DtbTooLarge { .. })));
    }
}
