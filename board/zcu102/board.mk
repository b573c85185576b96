# Xilinx ZCU102 (Zynq UltraScale+ MPSoC, GIC-400 = GICv2): build only (no hardware in CI). Addresses from seL4's
# tools/dts/zynqmp.dts. Read by the Makefile and by libvmm-build
# (libvmm_build::board). No QEMU_MACHINE_OPTS: `make qemu` refuses this board.

GIC_VERSION := 2
GICD := 0xf9010000
# The guest's CPU interface: the hardware GICV (0xf9060000) mapped here by
# the system description.
GICC := 0xf9020000

QEMU_MACHINE_OPTS :=
