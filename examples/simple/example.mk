# `simple`: a Linux guest with the PL011 passed through. Override without editing files:
#   make EXAMPLE=simple LINUX=/path/Image INITRD=/path/initrd DTS=/path/x.dts BOOTARGS="..." qemu
DTS ?= $(TOP)/board/$(BOARD)/simple.dts
include $(TOP)/scripts/linux-guest.mk
