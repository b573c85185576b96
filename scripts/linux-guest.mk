# A Linux guest's images and device tree, for an example's example.mk:
# set DTS (default device tree) first, then include this file. Overrides:
#   make EXAMPLE=<name> LINUX=/path/Image INITRD=/path/initrd DTS=/path/x.dts BOOTARGS="..." qemu
GUEST_DIR := $(TOP)/build/guest
LINUX ?= $(GUEST_DIR)/Image
INITRD ?= $(GUEST_DIR)/rootfs.cpio.gz
BOOTARGS ?=
GUEST_DTB := $(BUILD_DIR)/guest.dtb

CARGO_ENV := LIBVMM_GUEST_KERNEL=$(abspath $(LINUX)) LIBVMM_GUEST_INITRD=$(abspath $(INITRD)) \
	LIBVMM_GUEST_DTB=$(GUEST_DTB) LIBVMM_GUEST_BOOTARGS="$(BOOTARGS)"
PDS_DEPS := $(LINUX) $(INITRD) $(GUEST_DTB)

$(GUEST_DIR)/Image $(GUEST_DIR)/rootfs.cpio.gz: $(TOP)/guest/init $(TOP)/scripts/guest-images.sh \
		$(TOP)/scripts/guest-lib.sh
	$(TOP)/scripts/guest-images.sh $(GUEST_DIR)

# Compiled every time (DTS= may name another file), replaced only if changed.
$(GUEST_DTB): FORCE
	@mkdir -p $(dir $@)
	@command -v dtc >/dev/null || { echo "error: dtc not found: run scripts/setup.sh"; exit 1; }
	@dtc -q -I dts -O dtb -o $@.new $(DTS)
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@
