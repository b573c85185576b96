# `virtio_sound`: the sound guest (scripts/sound-guest-images.sh) with its
# console on the passed-through PL011 and a virtio sound card over the sDDF
# sound queues (docs/sound.md). Override without editing files:
#   make EXAMPLE=virtio_sound LINUX=/path/Image INITRD=/path/initrd BOOTARGS="..." qemu
# BOOTARGS="console=ttyAMA0 earlycon sndplay=play,10" makes the guest play; QEMU
# records what the card played into WAV (build/virtio_sound/sound.wav).
CARGO_PACKAGE := virtio-sound-example
DTS ?= $(TOP)/board/$(BOARD)/virtio_sound.dts
LINUX ?= $(TOP)/build/sound-guest/Image
INITRD ?= $(TOP)/build/sound-guest/rootfs.cpio.gz
WAV ?= $(BUILD_DIR)/sound.wav
HDA_SLOT ?= 2
include $(TOP)/scripts/linux-guest.mk

# The card as in examples/sound/example.mk; -icount gives the guest a fixed
# clock, so QEMU's audio and the guest's periods keep step on a busy host
# (docs/sound-guest.md).
QEMU_EXTRA += -icount shift=0,align=off,sleep=off \
	-device intel-hda,addr=$(HDA_SLOT) -device hda-output,audiodev=snd0 \
	-audiodev wav,id=snd0,path=$(WAV),out.frequency=48000,out.channels=2,out.format=s16

$(TOP)/build/sound-guest/Image $(TOP)/build/sound-guest/rootfs.cpio.gz: $(TOP)/guest/sound/init \
		$(TOP)/scripts/sound-guest-images.sh $(TOP)/scripts/guest-lib.sh $(TOP)/guest/sndplay/sndplay.c $(TOP)/guest/include/nolibc.h
	$(TOP)/scripts/sound-guest-images.sh $(TOP)/build/sound-guest
