# Avnet MaaXBoard (i.MX 8M Quad, GICv3): build only (no hardware in CI). Addresses from seL4's
# tools/dts/maaxboard.dts. Read by the Makefile and by libvmm-build
# (libvmm_build::board). No QEMU_MACHINE_OPTS: `make qemu` refuses this board.

GIC_VERSION := 3
GICD := 0x38800000
# Redistributors: emulated by the VMM (one 128 KiB frame per vCPU).
GICR := 0x38880000

QEMU_MACHINE_OPTS :=
