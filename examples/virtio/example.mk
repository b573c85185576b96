# `virtio`: a Linux guest with a virtio console and a virtio disk over sDDF.
# Override without editing files:
#   make EXAMPLE=virtio LINUX=/path/Image INITRD=/path/initrd DTS=/path/x.dts \
#        BOOTARGS="..." DISK=/path/disk.img qemu
# DISK is the raw disk image behind the guest's /dev/vda; it is created
# (64 MiB of zeros) if missing.
CARGO_PACKAGE := virtio-example
DTS ?= $(TOP)/board/$(BOARD)/virtio.dts
DISK ?= $(BUILD_DIR)/disk.img
include $(TOP)/scripts/linux-guest.mk

QEMU_DEPS := $(DISK)
QEMU_EXTRA += -global virtio-mmio.force-legacy=false \
	-drive file=$(DISK),if=none,format=raw,id=hd \
	-device virtio-blk-device,drive=hd

$(DISK):
	@mkdir -p $(dir $@)
	truncate -s 64M $@
