# Hardkernel ODROID-C4 (Amlogic S905X3, GICv2): build only (no hardware in CI). Addresses from seL4's
# tools/dts/odroidc4.dts. Read by the Makefile and by libvmm-build
# (libvmm_build::board). No QEMU_MACHINE_OPTS: `make qemu` refuses this board.

GIC_VERSION := 2
GICD := 0xffc01000
# The guest's CPU interface: the hardware GICV (0xffc06000) mapped here by
# the system description.
GICC := 0xffc02000

QEMU_MACHINE_OPTS :=
