//! Reads system-files/virtio_sound.system into Rust constants and names the
//! guest images to embed (`libvmm_build::linux_vmm`).

fn main() {
    libvmm_build::linux_vmm("../../system-files/virtio_sound.system");
}
