# `virtio_sound`: the sound guest (scripts/sound-guest-images.sh) with its
# console on the passed-through PL011 and a virtio sound card over the sDDF
# sound queues (docs/sound.md). Override without editing files:
#   make EXAMPLE=virtio_sound LINUX=/path/Image INITRD=/path/initrd BOOTARGS="..." qemu
# BOOTARGS="console=ttyAMA0 earlycon sndplay=play,10" makes the guest play.
CARGO_PACKAGE := virtio-sound-example
DTS ?= $(TOP)/board/$(BOARD)/virtio_sound.dts
LINUX ?= $(TOP)/build/sound-guest/Image
INITRD ?= $(TOP)/build/sound-guest/rootfs.cpio.gz
include $(TOP)/scripts/linux-guest.mk

$(TOP)/build/sound-guest/Image $(TOP)/build/sound-guest/rootfs.cpio.gz: $(TOP)/guest/sound/init \
		$(TOP)/scripts/sound-guest-images.sh $(TOP)/scripts/guest-lib.sh $(TOP)/guest/sndplay/sndplay.c
	$(TOP)/scripts/sound-guest-images.sh $(TOP)/build/sound-guest
