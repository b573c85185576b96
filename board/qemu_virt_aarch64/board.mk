# QEMU virt (aarch64) with a GICv2: the Microkit SDK's qemu_virt_aarch64.
# Read by the Makefile (QEMU line) and by libvmm-build (the guest's GIC,
# libvmm_build::board). The guest DTS of each example is <example>.dts here;
# the system description is <example>.system here if the board has its own,
# else system-files/<example>.system.

# The guest's GIC: the distributor (emulated by the VMM) and the CPU
# interface, QEMU's GICV (0x8040000) mapped at GICC by the system description.
GIC_VERSION := 2
GICD := 0x8000000
GICC := 0x8010000

# QEMU: -machine and -cpu.
QEMU_MACHINE_OPTS := virt,virtualization=on
QEMU_CPU := cortex-a53
