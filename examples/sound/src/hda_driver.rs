//! `hda_driver`: a native Intel HDA driver PD for QEMU virt's `intel-hda`
//! card, serving the sDDF sound driver queues of the `sound_virt` PD, on
//! `sddf_components::pci`, `sound::hda` and `sound::sddf`.
//!
//! At init it scans PCI bus 0 for a High Definition Audio controller,
//! places its BAR0 in the `hda_regs` region, brings the controller and its
//! codec up (48 kHz, 16-bit stereo, 4 periods of 4 KiB), publishes its one
//! playback stream in the shared state and waits for the virtualiser's
//! commands and buffers. Each interrupt refills the periods that have
//! played and answers the buffers in them; each STOP that drained prints a
//! `hda: stopped` line with the run's numbers.

#![no_std]
#![no_main]

use libvmm::logging::{self, Levels};
use libvmm::microkit::{shared_region, Channel, ChannelSet, Handler, Patched};
use log::{error, info, LevelFilter};
use sddf_bindings::sound::{SoundQueues, SoundSharedStateHandle};
use sddf_bindings::SharedRegion;
use sddf_components::pci::{self, Ecam, IntxMap, Window};
use sddf_components::sound::hda::{Config, Dma, Hda, PcmFormat, Stats};
use sddf_components::sound::sddf::{DataRegion, SddfSound};

libvmm::setvar! {
    static ecam; static ecam_size;
    static regs; static regs_size; static regs_paddr;
    static dma; static dma_size; static dma_paddr;
    static irq_base;
    static snd_cmd_req; static snd_cmd_req_size; static snd_cmd_res; static snd_cmd_res_size;
    static snd_pcm_req; static snd_pcm_req_size; static snd_pcm_res; static snd_pcm_res_size;
    static snd_state; static snd_state_size; static snd_ch;
    static data0; static data0_size; static data0_paddr;
}

/// QEMU virt's `interrupt-map` for its host bridge: slot 0's INTA is SPI 3,
/// and the pins rotate with the slot (system-files/sound.system maps GIC
/// interrupts 35..38 to channels `irq_base`..`irq_base + 3`).
const INTX: IntxMap = IntxMap { first_spi: 3 };
/// PCI class: multimedia (0x04), High Definition Audio (0x03).
const CLASS_HDA: u16 = 0x0403;

const CONFIG: Config = Config {
    format: PcmFormat::S16_STEREO_48K,
    // 12 periods of 256 frames (3072 in all), 4 of them (1024 frames) kept
    // filled ahead of the DMA engine: a freed period further on waits for a
    // whole period of audio, so a client's buffers are played back to back
    // whatever their size, and a client is answered within 256 frames of
    // its buffer's last frame being read (docs/sound.md).
    periods: 12,
    period_bytes: 1024,
    lead_periods: 4,
    // 16 periods of 256 frames: twice the 2048 frames QEMU's codec reads
    // ahead, so nothing sent before a STOP is cut off.
    drain_periods: 16,
    poll_budget: 100_000,
    stream_tag: 1,
};
const _: () = assert!(CONFIG.drain_periods as u32 * CONFIG.period_bytes / 4 >= 2048);

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct Playing {
    hda: Hda<SharedRegion>,
    sound: SddfSound<1>,
    irq: u8,
    virt: Option<Channel>,
}

struct Driver(Option<Playing>);

fn region(
    what: &str,
    vaddr: &'static Patched<u64>,
    size: &'static Patched<u64>,
) -> Option<SharedRegion> {
    let r = shared_region(vaddr, size);
    if r.is_none() {
        error!(target: "hda", "{what} is not mapped");
    }
    r
}

/// Finds the controller on bus 0, places its BAR0 in `hda_regs` and turns
/// on memory decoding and bus mastering; returns its registers and the
/// channel of its interrupt.
fn find_controller() -> Option<(SharedRegion, u8)> {
    let mut cfg = Ecam::new(region("ECAM", &ecam, &ecam_size)?, 0);
    let Some(f) = pci::scan(&mut cfg, 0).find(|f| f.class_subclass() == CLASS_HDA) else {
        error!(target: "hda", "no High Definition Audio controller on PCI bus 0");
        return None;
    };
    info!(target: "hda", "{:04x}:{:04x} at {}, INT{}", f.vendor, f.device, f.bdf,
        (b'A' + f.interrupt_pin.saturating_sub(1)) as char);
    let registers = region("controller registers", &regs, &regs_size)?;
    let mut window = Window::new(regs_paddr.get(), registers.len() as u64);
    let bars = pci::assign_memory_bars(&mut cfg, f.bdf, &mut window)
        .map_err(|e| error!(target: "hda", "{}: {e}", f.bdf))
        .ok()?;
    let Some(bar0) = bars[0].filter(|b| b.address == regs_paddr.get()) else {
        error!(target: "hda", "BAR0 could not be placed at {:#x}", regs_paddr.get());
        return None;
    };
    info!(target: "hda", "BAR0: {} KiB at {:#x}", bar0.bar.size >> 10, bar0.address);
    let Some(interrupt) = INTX.interrupt_id(f.bdf.device, f.interrupt_pin) else {
        error!(target: "hda", "the controller has no INTx pin");
        return None;
    };
    let first = INTX.first_spi + 32;
    let irq =
        u8::try_from(interrupt - first).ok().and_then(|i| (irq_base.get() as u8).checked_add(i))?;
    info!(target: "hda", "interrupt {interrupt} on channel {irq}");
    Some((registers.subregion(0, bar0.bar.size as usize).ok()?, irq))
}

/// The sDDF driver queues, the shared state and client 0's data region.
fn sddf() -> Option<SddfSound<1>> {
    let queues = SoundQueues::from_sddf_names(
        region("cmd_req", &snd_cmd_req, &snd_cmd_req_size)?,
        region("cmd_res", &snd_cmd_res, &snd_cmd_res_size)?,
        region("pcm_req", &snd_pcm_req, &snd_pcm_req_size)?,
        region("pcm_res", &snd_pcm_res, &snd_pcm_res_size)?,
    )
    .map_err(|e| error!(target: "hda", "sound queues: {e}"))
    .ok()?;
    let state = SoundSharedStateHandle::new(region("stream state", &snd_state, &snd_state_size)?)
        .map_err(|e| error!(target: "hda", "stream state: {e}"))
        .ok()?;
    let data = DataRegion {
        region: region("client data", &data0, &data0_size)?,
        io_addr: data0_paddr.get(),
    };
    Some(SddfSound::new(queues, &state, [data], CONFIG.period_bytes))
}

fn start() -> Option<Playing> {
    let (registers, irq) = find_controller()?;
    let memory = Dma { region: region("DMA region", &dma, &dma_size)?, io_addr: dma_paddr.get() };
    let hda = Hda::new(registers, memory, CONFIG)
        .map_err(|e| error!(target: "hda", "controller: {e}"))
        .ok()?;
    let path = hda.path();
    info!(target: "hda", "codec {}: pin {} <- DAC {}, stream {} tag {}", path.cad.get(),
        path.pin().get(), path.dac().get(), hda.stream_index(), CONFIG.stream_tag);
    let sound = sddf()?;
    info!(target: "hda", "serving sDDF sound stream 0: 48 kHz, 16-bit stereo, playback, {} periods of {} bytes",
        CONFIG.periods, CONFIG.period_bytes);
    let virt = Channel::new(snd_ch.get() as u8);
    if let Some(v) = virt {
        v.notify();
    }
    Some(Playing { hda, sound, irq, virt })
}

impl Handler for Driver {
    fn init() -> Self {
        logging::init(&LEVELS);
        Driver(start())
    }

    fn notified(&mut self, channels: ChannelSet) {
        let Some(p) = self.0.as_mut() else { return };
        let mut progress = false;
        for ch in channels.iter() {
            if ch.id() == p.irq {
                let stops = p.sound.stats().stops;
                progress |= p.sound.irq(&mut p.hda);
                let _ = ch.irq_ack();
                if p.sound.stats().stops != stops {
                    report(p.sound.last_run().unwrap_or_default());
                }
            } else if Some(ch) == p.virt {
                progress |= p.sound.handle(&mut p.hda);
            }
        }
        if let (true, Some(v)) = (progress, p.virt) {
            v.notify();
        }
    }
}

fn report(s: Stats) {
    // Nominal length of what played: every period, audio and drain alike.
    let bytes_per_ms = CONFIG.format.rate / 1000 * CONFIG.format.frame_bytes();
    let nominal = s.periods_played * u64::from(CONFIG.period_bytes) / u64::from(bytes_per_ms);
    let took = s.run_ticks.map_or(0, |t| t / 24_000);
    info!(target: "hda", "stopped: {} periods played ({nominal} ms) in {took} ms of wall clock, \
        {} interrupts, {} underruns, {} FIFO errors, {} spurious interrupts, {} bad positions",
        s.periods_played, s.completions, s.underruns, s.fifo_errors, s.spurious_irqs, s.bad_positions);
}

libvmm::protection_domain!(Driver);
