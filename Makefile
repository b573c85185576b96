# Build and boot the example systems.
#
#   make BOARD=qemu_virt_aarch64 EXAMPLE=hello            # build build/hello/loader.img
#   make BOARD=qemu_virt_aarch64 EXAMPLE=hello qemu       # ... and boot it in QEMU
#   make test                                             # everything CI runs
#
# Variables: MICROKIT_SDK (default /opt/microkit-sdk), MICROKIT_CONFIG (debug),
# BOARD (qemu_virt_aarch64), EXAMPLE (hello), BUILD_DIR (build/$(EXAMPLE): the
# images; another one keeps two builds of one example apart). An example may add steps and
# QEMU arguments in examples/<name>/example.mk. Everything board-specific is in
# board/$(BOARD)/ (docs/porting.md): board.mk (the guest's GIC, the QEMU line),
# the guest device trees, and the board's own <example>.system if it needs one.

BOARD ?= qemu_virt_aarch64
EXAMPLE ?= hello
MICROKIT_CONFIG ?= debug
MICROKIT_SDK ?= /opt/microkit-sdk
QEMU ?= qemu-system-aarch64

TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD_DIR ?= $(TOP)/build/$(EXAMPLE)
CARGO_TARGET_DIR := $(TOP)/build/cargo/$(BOARD)-$(MICROKIT_CONFIG)
RUST_TARGET := aarch64-unknown-none-softfloat
BOARD_DIR := $(TOP)/board/$(BOARD)
BOARD_FILE := $(BOARD_DIR)/board.mk
-include $(BOARD_FILE)
# The board's own system description if it has one, else the common one.
SYSTEM_FILE := $(firstword $(wildcard $(BOARD_DIR)/$(EXAMPLE).system) $(TOP)/system-files/$(EXAMPLE).system)
IMAGE := $(BUILD_DIR)/loader.img
REPORT := $(BUILD_DIR)/report.txt

# Which binaries of the example's crate become which PD images; an
# example.mk may set PD_ELFS itself. Default: every [[bin]] of the crate.
PD_BINS ?= $(shell sed -n '/^\[\[bin\]\]/,/^$$/s/^name = "\(.*\)"/\1/p' $(TOP)/examples/$(EXAMPLE)/Cargo.toml)
# -nic none: no default PCI NIC, whose boot ROM (efi-virtio.rom) is in a
# package (ipxe-qemu) that scripts/setup.sh does not install.
QEMU_MACHINE := -machine $(QEMU_MACHINE_OPTS) -cpu $(QEMU_CPU) -m 2G -nographic -nic none \
	-serial mon:stdio -device loader,file=$(IMAGE),addr=0x70000000,cpu-num=0
QEMU_EXTRA ?=
IMAGE_DEPS ?=
QEMU_DEPS ?=
CARGO_ENV ?=
PDS_DEPS ?=

.DEFAULT_GOAL := all
-include $(TOP)/examples/$(EXAMPLE)/example.mk
# The example's cargo package (an example.mk may name another).
CARGO_PACKAGE ?= $(EXAMPLE)

.PHONY: all image qemu test clean check-sdk check-example FORCE

all: image

image: $(IMAGE)

check-example:
	@test -f $(BOARD_FILE) || { \
	  echo "error: no board '$(BOARD)' (no $(BOARD_FILE); have: $$(ls $(TOP)/board | tr '\n' ' '))"; exit 1; }
	@test -f $(TOP)/examples/$(EXAMPLE)/Cargo.toml || { \
	  echo "error: no example '$(EXAMPLE)' (have: $$(ls $(TOP)/examples | tr '\n' ' '))"; exit 1; }
	@test -f $(SYSTEM_FILE) || { echo "error: missing $(SYSTEM_FILE)"; exit 1; }

check-sdk:
	@test -x $(MICROKIT_SDK)/bin/microkit || { \
	  echo "error: no Microkit SDK at '$(MICROKIT_SDK)': download Microkit SDK 2.3.0 (see README.md, 'The Microkit SDK') and pass MICROKIT_SDK=/path/to/microkit-sdk-2.3.0"; exit 1; }
	@test -d $(MICROKIT_SDK)/board/$(BOARD)/$(MICROKIT_CONFIG) || { \
	  echo "error: the SDK at $(MICROKIT_SDK) has no board '$(BOARD)' config '$(MICROKIT_CONFIG)' (have: $$(ls $(MICROKIT_SDK)/board/$(BOARD) 2>/dev/null | tr '\n' ' '))"; exit 1; }
	@v3=$$(grep -c '"ARM_GIC_V3_SUPPORT": true' $(MICROKIT_SDK)/board/$(BOARD)/$(MICROKIT_CONFIG)/include/kernel/gen_config.json); \
	  case "$(GIC_VERSION)$$v3" in 20|31) ;; *) \
	  echo "error: $(BOARD_FILE) says GIC_VERSION $(GIC_VERSION) but the SDK's $(BOARD) kernel is built for GICv$$((v3 + 2))"; exit 1;; esac
	@command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (rustup), then run scripts/setup.sh"; exit 1; }
	@rustup target list --installed 2>/dev/null | grep -qx $(RUST_TARGET) || { \
	  echo "error: Rust target $(RUST_TARGET) missing: run scripts/setup.sh"; exit 1; }

# cargo decides what to rebuild, so it always runs.
$(BUILD_DIR)/.pds: FORCE check-example check-sdk $(PDS_DEPS)
	@mkdir -p $(BUILD_DIR)
	$(CARGO_ENV) MICROKIT_SDK=$(MICROKIT_SDK) MICROKIT_BOARD=$(BOARD) MICROKIT_CONFIG=$(MICROKIT_CONFIG) \
	  LIBVMM_BOARD_FILE=$(BOARD_FILE) LIBVMM_SYSTEM_FILE=$(SYSTEM_FILE) \
	  cargo build --release --target $(RUST_TARGET) --target-dir $(CARGO_TARGET_DIR) \
	  --manifest-path $(TOP)/Cargo.toml -p $(CARGO_PACKAGE)
	@for bin in $(PD_BINS); do \
	  cp $(CARGO_TARGET_DIR)/$(RUST_TARGET)/release/$$bin $(BUILD_DIR)/$$bin.elf.new; \
	  cmp -s $(BUILD_DIR)/$$bin.elf.new $(BUILD_DIR)/$$bin.elf && rm $(BUILD_DIR)/$$bin.elf.new \
	    || mv $(BUILD_DIR)/$$bin.elf.new $(BUILD_DIR)/$$bin.elf; \
	done
	@touch $@

$(IMAGE): $(BUILD_DIR)/.pds $(SYSTEM_FILE) $(IMAGE_DEPS)
	$(MICROKIT_SDK)/bin/microkit $(SYSTEM_FILE) --search-path $(BUILD_DIR) \
	  --board $(BOARD) --config $(MICROKIT_CONFIG) -o $(IMAGE) -r $(REPORT)

qemu: $(IMAGE) $(QEMU_DEPS)
	@test -n "$(QEMU_MACHINE_OPTS)" || { echo "error: board $(BOARD) does not run in QEMU (no QEMU_MACHINE_OPTS in $(BOARD_FILE))"; exit 1; }
	@command -v $(QEMU) >/dev/null || { echo "error: $(QEMU) not found: run scripts/setup.sh"; exit 1; }
	$(QEMU) $(QEMU_MACHINE) $(QEMU_EXTRA)

# The test command of the README (and of CI): host checks, then, where an SDK
# is found, every example built and booted in QEMU.
test:
	$(TOP)/scripts/test.sh

clean:
	rm -rf $(TOP)/build

FORCE:
