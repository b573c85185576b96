//! `vmm` of the `virtio_sound` example: boots one Linux guest (the sound guest,
//! docs/sound-guest.md) with the PL011 passed through as its console and a
//! virtio sound card whose backend is an sDDF sound client
//! ([`SddfSound`]) of the sound virtualiser. Guest RAM, vCPUs, the
//! passed-through UART and the timer come from system-files/virtio_sound.system
//! (build.rs); the sound queues, state, data region and channel from setvar
//! symbols.

#![no_std]
#![no_main]

use libvmm::guest_memory::GuestRam;
use libvmm::logging::{self, Levels};
use libvmm::microkit::{shared_region, ChannelSet, Child, Handler, Patched};
use libvmm::sddf::sound::SddfSound;
use libvmm::sddf::Microkit;
use libvmm::sel4::{Fault, MessageInfo};
use libvmm::virtio::MmioDevice;
use libvmm::vm::hypervisor::Sel4;
use libvmm::vm::{Passthrough, SystemOff, Vm, VmConfig};
use log::LevelFilter;
use sddf_bindings::sound::{SoundQueues, SoundSharedStateHandle};
use sddf_bindings::SharedRegion;
use virtio::sound::SoundDevice;

#[allow(dead_code)]
mod sdf {
    use super::Passthrough;
    include!(concat!(env!("OUT_DIR"), "/sdf.rs"));
}

libvmm::setvar! {
    /// Where the Microkit tool mapped guest RAM in this PD.
    static guest_ram_vaddr;
    /// The channel to the sound virtualiser.
    static snd_ch;
    static snd_cmd_req; static snd_cmd_req_size; static snd_cmd_res; static snd_cmd_res_size;
    static snd_pcm_req; static snd_pcm_req_size; static snd_pcm_res; static snd_pcm_res_size;
    static snd_state; static snd_state_size; static snd_data; static snd_data_size;
}

/// Where the guest's device tree puts the sound card
/// (board/qemu_virt_aarch64/virtio_sound.dts), and its interrupt (SPI 12 + 32).
const SOUND_BASE: u64 = 0x0016_0000;
const SOUND_IRQ: u32 = 32 + 12;

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

type SoundDev = MmioDevice<SoundDevice<SddfSound<Microkit>>>;

struct Vmm {
    vm: Option<Vm<'static, Sel4, SoundDev>>,
    /// The channel of the sound virtualiser, as a set.
    sound_channels: u64,
}

/// A mapped region, or `None` (logged).
fn region(
    what: &str,
    vaddr: &'static Patched<u64>,
    size: &'static Patched<u64>,
) -> Option<SharedRegion> {
    let r = shared_region(vaddr, size);
    if r.is_none() {
        log::error!(target: "core", "{what} is not mapped");
    }
    r
}

/// The sound card over the client-0 connection of the sound virtualiser.
fn sound() -> Option<SoundDev> {
    // The rings as the system file names them; `from_sddf_names` swaps the PCM
    // ones as every C component does (docs/sound.md).
    let queues = SoundQueues::from_sddf_names(
        region("snd_cmd_req", &snd_cmd_req, &snd_cmd_req_size)?,
        region("snd_cmd_res", &snd_cmd_res, &snd_cmd_res_size)?,
        region("snd_pcm_req", &snd_pcm_req, &snd_pcm_req_size)?,
        region("snd_pcm_res", &snd_pcm_res, &snd_pcm_res_size)?,
    )
    .map_err(|e| log::error!(target: "core", "sound queues: {e}"))
    .ok()?;
    let state = SoundSharedStateHandle::new(region("snd_state", &snd_state, &snd_state_size)?)
        .map_err(|e| log::error!(target: "core", "sound state: {e}"))
        .ok()?;
    let data = region("snd_data", &snd_data, &snd_data_size)?;
    let backend = SddfSound::new(queues, state, data, snd_ch.get() as u8, Microkit);
    if backend.streams().is_empty() {
        log::info!(target: "virtio", "sound: the driver has not published its streams yet");
    }
    Some(MmioDevice::new(SOUND_BASE, SOUND_IRQ, SoundDevice::new(backend)))
}

use virtio::sound::SoundBackend as _;

impl Handler for Vmm {
    fn init() -> Self {
        logging::init(&LEVELS);
        let mut vmm = Vmm { vm: None, sound_channels: 1 << snd_ch.get() };
        log::info!(target: "core", "virtio_sound VMM: {} MiB guest RAM at {:#x}, {} vCPU(s)",
            sdf::GUEST_RAM_SIZE >> 20, sdf::GUEST_RAM_GPA, sdf::NUM_VCPUS);
        let Some(ram) =
            GuestRam::from_microkit_map(sdf::GUEST_RAM_GPA, &guest_ram_vaddr, sdf::GUEST_RAM_SIZE)
        else {
            log::error!(target: "core", "guest RAM is not mapped (guest_ram_vaddr is 0)");
            return vmm;
        };
        let Some(sound) = sound() else { return vmm };
        let config = VmConfig {
            num_vcpus: sdf::NUM_VCPUS,
            gic: sdf::GIC,
            num_lrs: Sel4::list_registers(0),
            passthrough: sdf::PASSTHROUGH,
            timer: sdf::TIMER,
            // The only guest on the board: its poweroff powers QEMU off.
            system_off: SystemOff::Firmware,
        };
        let images = libvmm::embedded_boot_images!();
        let mut vm = Vm::with_devices(Sel4 { smc: sdf::SMC }, sound, ram, images, config);
        if let Err(e) = vm.boot() {
            log::error!(target: "boot", "cannot boot the guest: {e}");
        }
        vmm.vm = Some(vm);
        vmm
    }

    fn notified(&mut self, channels: ChannelSet) {
        let Some(vm) = &mut self.vm else { return };
        if channels.0 & self.sound_channels != 0 {
            let (sound, ram) = vm.devices();
            // The virtualiser publishes the driver's streams once it has them.
            sound.device().backend_mut().refresh();
            if let Some(irq) = sound.process(ram) {
                vm.raise_irq(irq);
            }
        }
        let rest = channels.0 & !self.sound_channels;
        if rest != 0 {
            vm.handle_notified(ChannelSet(rest));
        }
    }

    fn fault(&mut self, child: Child, fault: Fault) -> Option<MessageInfo> {
        self.vm.as_mut()?.handle_fault(child.0 as usize, &fault)
    }
}

libvmm::protection_domain!(Vmm);
