# QEMU virt (aarch64) with a GICv3 (-machine gic-version=3): a Microkit SDK
# board qemu_virt_aarch64_gicv3, whose kernel is built with
# QEMU_GIC_VERSION=3 (see docs/porting.md). Read by the Makefile and by
# libvmm-build (libvmm_build::board).

# The guest's GIC: distributor and redistributors, both emulated by the VMM
# (the system description maps neither); the CPU interface is system
# registers. QEMU virt's own layout.
GIC_VERSION := 3
GICD := 0x8000000
GICR := 0x80a0000

QEMU_MACHINE_OPTS := virt,virtualization=on,gic-version=3
QEMU_CPU := cortex-a53
