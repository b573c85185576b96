//! Reads system-files/multi_vm.system into Rust constants (both VMM PDs run
//! one program, so their numbers must agree) and names the guest images to
//! embed (`libvmm_build::linux_vmm`).

fn main() {
    libvmm_build::linux_vmm("../../system-files/multi_vm.system");
}
