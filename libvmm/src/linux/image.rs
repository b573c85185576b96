//! The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst).
//!
//! ```text
//! 0x00 code0, code1   0x08 text_offset   0x10 image_size   0x18 flags
//! 0x20 res2, res3, res4                  0x38 magic "ARM\x64"   0x3c res5
//! ```

use core::fmt;

/// `ARM\x64`, little-endian, at offset 0x38.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Size of the header.
pub const HEADER_SIZE: usize = 64;
/// text_offset assumed for kernels older than 3.17 (image_size 0).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// Why an Image cannot be booted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageError {
    /// Shorter than the 64-byte header.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// No `ARM\x64` at 0x38: not an arm64 Image (maybe compressed, or a
    /// 32-bit zImage).
    BadMagic {
        /// What was found.
        found: u32,
    },
    /// flags bit 0: a big-endian kernel.
    BigEndian,
    /// `text_offset` is not 4 KiB aligned or is absurdly large.
    BadTextOffset {
        /// The value.
        text_offset: u64,
    },
    /// `image_size` is smaller than the file.
    BadImageSize {
        /// The header's image_size.
        image_size: u64,
        /// The file length.
        file_len: usize,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImageError::TooShort { len } => {
                write!(f, "kernel is {len} bytes, shorter than the 64-byte arm64 Image header")
            }
            ImageError::BadMagic { found } => write!(
                f,
                "kernel has magic {found:#010x} at 0x38, not ARM\\x64 ({IMAGE_MAGIC:#010x}): \
                 give an uncompressed arm64 Image"
            ),
            ImageError::BigEndian => write!(f, "kernel is big-endian (flags bit 0)"),
            ImageError::BadTextOffset { text_offset } => {
                write!(f, "kernel text_offset {text_offset:#x} is not a 4 KiB multiple below 2 MiB")
            }
            ImageError::BadImageSize { image_size, file_len } => write!(
                f,
                "kernel image_size {image_size:#x} is smaller than the file ({file_len:#x} bytes)"
            ),
        }
    }
}

/// A validated Image header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageHeader {
    /// Offset from a 2 MiB-aligned base where the Image must be placed.
    pub text_offset: u64,
    /// Bytes the kernel occupies once running (file plus BSS etc.).
    pub image_size: u64,
    /// flags bit 3: any 2 MiB-aligned base works (else: near RAM start).
    pub place_anywhere: bool,
    /// flags bits 2:1: 0 unspecified, 1 4K, 2 16K, 3 64K pages.
    pub page_size_code: u8,
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl ImageHeader {
    /// Parses and checks the header of `image`.
    pub fn parse(image: &[u8]) -> Result<ImageHeader, ImageError> {
        if image.len() < HEADER_SIZE {
            return Err(ImageError::TooShort { len: image.len() });
        }
        let magic = u32::from_le_bytes([image[56], image[57], image[58], image[59]]);
        if magic != IMAGE_MAGIC {
            return Err(ImageError::BadMagic { found: magic });
        }
        let mut text_offset = le64(image, 8);
        let mut image_size = le64(image, 16);
        let flags = le64(image, 24);
        if image_size == 0 {
            // Before 3.17 the header had no size and the offset was fixed.
            text_offset = LEGACY_TEXT_OFFSET;
            image_size = image.len() as u64;
        }
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        if text_offset % 4096 != 0 || text_offset >= 2 << 20 {
            return Err(ImageError::BadTextOffset { text_offset });
        }
        if image_size < image.len() as u64 {
            return Err(ImageError::BadImageSize { image_size, file_len: image.len() });
        }
        Ok(ImageHeader {
            text_offset,
            image_size,
            place_anywhere: flags & (1 << 3) != 0,
            page_size_code: ((flags >> 1) & 3) as u8,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal Image: header plus `len - 64` bytes of body.
    pub(crate) fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len.max(HEADER_SIZE)];
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&flags.to_le_bytes());
        b[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        b
    }

    #[test]
    fn parses_a_debian_style_header() {
        // Debian 6.1 arm64: text_offset 0, flags 0xa (LE, 4K, anywhere).
        let h = ImageHeader::parse(&image(0, 0x200_0000, 0xa, 4096)).unwrap();
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.image_size, 0x200_0000);
        assert!(h.place_anywhere);
        assert_eq!(h.page_size_code, 1);
    }

    #[test]
    fn names_each_fault() {
        assert_eq!(ImageHeader::parse(&[0; 10]), Err(ImageError::TooShort { len: 10 }));
        let mut gz = image(0, 0x1000, 0, 4096);
        gz[56..60].copy_from_slice(&[0x1f, 0x8b, 8, 0]);
        assert!(matches!(ImageHeader::parse(&gz), Err(ImageError::BadMagic { .. })));
        assert_eq!(ImageHeader::parse(&image(0, 0x1000, 1, 4096)), Err(ImageError::BigEndian));
        assert_eq!(
            ImageHeader::parse(&image(0x123, 0x1000, 0, 4096)),
            Err(ImageError::BadTextOffset { text_offset: 0x123 })
        );
        assert_eq!(
            ImageHeader::parse(&image(0, 0x100, 0, 4096)),
            Err(ImageError::BadImageSize { image_size: 0x100, file_len: 4096 })
        );
    }

    #[test]
    fn pre_3_17_kernels_get_the_fixed_offset() {
        let h = ImageHeader::parse(&image(0, 0, 0, 8192)).unwrap();
        assert_eq!(h.text_offset, LEGACY_TEXT_OFFSET);
        assert_eq!(h.image_size, 8192);
    }

    #[test]
    fn error_messages_name_the_problem() {
        let msg = format!("{}", ImageError::BadMagic { found: 0x0008_8b1f });
        assert!(msg.contains("uncompressed arm64 Image"), "{msg}");
    }
}
