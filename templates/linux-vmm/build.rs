// Reads vmm.system into $OUT_DIR/sdf.rs (guest RAM, vCPUs, interrupts) and
// names the guest images to embed, from LIBVMM_GUEST_KERNEL, _INITRD, _DTB.
fn main() {
    libvmm_build::linux_vmm("vmm.system");
}
