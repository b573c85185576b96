//! Reads system-files/simple.system into Rust constants and names the guest
//! images to embed (see libvmm/build_support/linux_vmm.rs).

#[path = "../../libvmm/build_support/linux_vmm.rs"]
mod linux_vmm;
#[path = "../../libvmm/build_support/sdf.rs"]
mod sdf;

fn main() {
    linux_vmm::linux_vmm("../../system-files/simple.system");
}
