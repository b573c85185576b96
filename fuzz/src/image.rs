//! Target `image_header`: the arm64 Image header parser and the boot planner on arbitrary
//! bytes. Input: 16 bytes of RAM base and size (little-endian), then the Image.
//!
//! Checks: no panic; an accepted header obeys what `ImageHeader` documents (text_offset a
//! 4 KiB multiple below 2 MiB, image_size at least the file); an accepted plan puts kernel,
//! initrd and DTB inside RAM, in that order, without overlap.

use libvmm::linux::boot::{plan, DTB_MAX};
use libvmm::linux::image::ImageHeader;

/// Runs one input.
pub fn run(data: &[u8]) {
    let (ram, image) = data.split_at(data.len().min(16));
    let mut word = [0u8; 8];
    let mut take = |at: usize| {
        word = [0; 8];
        let src = ram.get(at..).unwrap_or(&[]);
        let n = src.len().min(8);
        word[..n].copy_from_slice(&src[..n]);
        u64::from_le_bytes(word)
    };
    let ram_base = take(0);
    let ram_size = take(8);
    let Ok(h) = ImageHeader::parse(image) else { return };
    assert!(h.text_offset % 4096 == 0 && h.text_offset < 2 << 20, "{h:?}");
    assert!(h.image_size >= image.len() as u64, "{h:?}");
    assert!(h.page_size_code < 4);
    // Also plan an initrd of a fuzz-chosen length (a little above the RAM size word).
    let initrd_len = (ram_size >> 3) as usize;
    let Ok(l) = plan(ram_base, ram_size, &h, initrd_len) else { return };
    let ram_end = ram_base.checked_add(ram_size).expect("plan accepted RAM that wraps");
    assert!(l.kernel.0 >= ram_base && l.entry == l.kernel, "{l:?}");
    assert_eq!(l.kernel.0 % (2 << 20), h.text_offset, "kernel not at 2 MiB + text_offset");
    let kernel_end = l.kernel.0.checked_add(h.image_size).expect("kernel wraps");
    let dtb_end = l.dtb.0.checked_add(DTB_MAX).expect("DTB wraps");
    assert!(dtb_end <= ram_end && l.dtb.0 % (2 << 20) == 0, "{l:?} ram end {ram_end:#x}");
    match l.initrd {
        Some((s, e)) => {
            assert!(initrd_len > 0 && kernel_end <= s.0 && s.0 % 4096 == 0, "{l:?}");
            assert_eq!(e.0 - s.0, initrd_len as u64);
            assert!(e.0 <= l.dtb.0, "{l:?}");
        }
        None => assert!(initrd_len == 0 && kernel_end <= l.dtb.0, "{l:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run() {
        for seed in crate::seeds::image_header() {
            run(&seed);
        }
    }
}
