# `smp`: the `simple` guest with 4 vCPUs, each on its own core. It needs an
# SMP kernel, so MICROKIT_CONFIG defaults to smp-debug (4 cores) here, and
# QEMU gets -smp 4. Override without editing files, as for simple:
#   make EXAMPLE=smp LINUX=/path/Image INITRD=/path/initrd DTS=/path/x.dts BOOTARGS="..." qemu
ifeq ($(origin MICROKIT_CONFIG),file)
MICROKIT_CONFIG := smp-debug
# The Makefile named the cargo directory after the default configuration.
CARGO_TARGET_DIR := $(TOP)/build/cargo/$(BOARD)-$(MICROKIT_CONFIG)
endif
QEMU_MACHINE += -smp 4
DTS ?= $(TOP)/board/$(BOARD)/smp.dts
include $(TOP)/scripts/linux-guest.mk
