# `smp`: the `simple` guest with 4 vCPUs. All four run on the VMM's core
# (seL4 16.0.0 stalls when a vCPU runs on another core than its VMM,
# seL4#1645; docs/smp.md), so the default is the 1-core `debug` kernel,
# where the idle guest costs the least (docs/performance.md). The 4-core
# `smp-debug` kernel works too, with QEMU -smp 4:
#   make EXAMPLE=smp MICROKIT_CONFIG=smp-debug qemu
# Override the guest without editing files, as for simple:
#   make EXAMPLE=smp LINUX=/path/Image INITRD=/path/initrd DTS=/path/x.dts BOOTARGS="..." qemu
ifneq ($(filter smp-%,$(MICROKIT_CONFIG)),)
QEMU_MACHINE += -smp 4
endif
DTS ?= $(TOP)/board/$(BOARD)/smp.dts
include $(TOP)/scripts/linux-guest.mk
