# `sound`: a native Intel HDA driver PD plays a 1-second test counter on
# QEMU's intel-hda card; QEMU records it into WAV (docs/hda.md).
#   make EXAMPLE=sound qemu            # records into build/sound/sound.wav
#   scripts/check-wav.py build/sound/sound.wav
# WAV names another output file; HDA_SLOT the PCI slot of the card on bus
# 0 (the driver finds it by scanning; slot 2's INTA is SPI 5, interrupt
# 37, by QEMU virt's interrupt-map swizzle). The audiodev runs at the
# stream's own format (48 kHz, 16-bit stereo), so QEMU neither resamples
# nor converts. -icount: guest time counts instructions and skips idle time,
# and QEMU's codec timer and wav backend run on it, so a loaded host cannot
# make the codec drop a 2048-frame block (docs/sound-guest.md); without it
# a run on a busy host lost one.
CARGO_PACKAGE := sound-example
WAV ?= $(BUILD_DIR)/sound.wav
HDA_SLOT ?= 2

QEMU_EXTRA += -icount shift=0,align=off,sleep=off \
	-device intel-hda,addr=$(HDA_SLOT) -device hda-output,audiodev=snd0 \
	-audiodev wav,id=snd0,path=$(WAV),out.frequency=48000,out.channels=2,out.format=s16
