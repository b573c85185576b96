# `multi_vm`: two Linux guests, one console, one disk split by partitions,
# vsock between them (docs/multi_vm.md). Override without editing files:
#   make EXAMPLE=multi_vm LINUX=/path/Image INITRD=/path/initrd DTS=/path/x.dts \
#        BOOTARGS="..." DISK=/path/disk.img qemu
# Both guests boot the same images. INITRD defaults to the examples' initramfs
# with guest/vsock-test appended. DISK is created if missing: 128 MiB with an
# MBR (DISK_TABLE=gpt for GPT) and two 60 MiB partitions, one per guest.
CARGO_PACKAGE := multi-vm-example
DTS ?= $(TOP)/board/$(BOARD)/multi_vm.dts
INITRD ?= $(BUILD_DIR)/initrd-vsock.cpio.gz
DISK ?= $(BUILD_DIR)/disk.img
DISK_TABLE ?= mbr
include $(TOP)/scripts/linux-guest.mk

QEMU_DEPS := $(DISK)
QEMU_EXTRA += -global virtio-mmio.force-legacy=false \
	-drive file=$(DISK),if=none,format=raw,id=hd \
	-device virtio-blk-device,drive=hd

VSOCK_TEST := $(BUILD_DIR)/vsock-test/vsock-test.cpio.gz
$(VSOCK_TEST): $(TOP)/guest/vsock-test/vsock-test.c $(TOP)/guest/include/nolibc.h $(TOP)/guest/vsock-test/Makefile
	$(MAKE) -s -C $(TOP)/guest/vsock-test O=$(BUILD_DIR)/vsock-test

# The kernel unpacks concatenated (separately compressed) cpio archives.
$(BUILD_DIR)/initrd-vsock.cpio.gz: $(GUEST_DIR)/rootfs.cpio.gz $(VSOCK_TEST)
	cat $^ > $@

$(DISK):
	@mkdir -p $(dir $@)
	python3 $(TOP)/scripts/mkdisk.py $@ --size 128M --table $(DISK_TABLE) --parts 60M,60M
