//! The driver against the controller model of `fake.rs` (which also checks
//! that every register is accessed at its own width).

use super::codec::{Cad, Nid, Verb, PARAM_NODE_COUNT, PARAM_VENDOR_ID};
use super::fake::{FakeCodec, FakeHda, Shared};
use super::*;
use crate::sound::CounterSource;
use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

const IO: u64 = 0x4000_0000;
const OUT: usize = 4; // QEMU's first output stream (GCAP: 4 input streams)

fn config() -> Config {
    Config {
        format: PcmFormat::S16_STEREO_48K,
        periods: 4,
        period_bytes: 1024,
        lead_periods: 1,
        drain_periods: 4,
        poll_budget: 100,
        stream_tag: 1,
    }
}

fn model_with(codecs: Vec<FakeCodec>) -> (Shared, Dma) {
    let region = SharedRegion::leak_zeroed(dma_bytes(&config()));
    let model = FakeHda::new(region.clone(), IO, codecs);
    (Shared(Rc::new(RefCell::new(model))), Dma { region, io_addr: IO })
}

fn bring_up(codecs: Vec<FakeCodec>) -> (Shared, Hda<Shared>) {
    let (model, dma) = model_with(codecs);
    let hda = Hda::new(model.clone(), dma, config()).unwrap();
    (model, hda)
}

/// Lets the model's DMA move `chunk` bytes at a time, the driver handling
/// each interrupt, until the driver reports the end; returns the number of
/// interrupts.
fn play_to_end(
    model: &Shared,
    hda: &mut Hda<Shared>,
    src: &mut impl PeriodSource,
    chunk: u32,
) -> u64 {
    let mut irqs = 0;
    for _ in 0..100_000 {
        let moved = model.0.borrow_mut().play(chunk);
        if model.0.borrow().irq_line() {
            irqs += 1;
            match hda.handle_irq(src) {
                Event::Finished => return irqs,
                Event::Failed(e) => panic!("stream failed: {e}"),
                _ => {}
            }
        } else {
            assert!(moved > 0, "the DMA engine stalled with no interrupt pending");
        }
    }
    panic!("the stream never finished");
}

/// `played` is the counter's `frames` frames, then only silence.
fn assert_counter_then_silence(played: &[u8], frames: u32) {
    let audio = frames as usize * 4;
    assert!(played.len() >= audio, "only {} of {audio} bytes played", played.len());
    for (n, frame) in played[..audio].chunks_exact(4).enumerate() {
        assert_eq!(frame, CounterSource::frame(n as u32), "frame {n}");
    }
    assert!(played[audio..].iter().all(|&b| b == 0), "something other than silence after the end");
}

#[test]
fn bring_up_resets_the_controller_and_sets_up_the_rings() {
    let (model, hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let m = model.0.borrow();
    assert_eq!(m.resets, 1);
    assert_eq!((m.statests, hda.codecs()), (0, 1), "STATESTS read, then cleared");
    assert_eq!(m.corbctl, CORBCTL_RUN);
    assert_eq!(m.rirbctl, RIRBCTL_DMAEN | RIRBCTL_RINTCTL);
    assert_eq!((m.rintcnt, m.ring_entries(), m.intctl), (1, 256, 0));
    assert_eq!((hda.path().pin().get(), hda.path().dac().get(), hda.stream_index()), (3, 2, 4));
    let dac = m.codecs[0].node(2);
    assert_eq!(
        (dac.format, dac.stream, dac.out_amp),
        (Some(0x0011), Some(0x10), Some((false, 0x4a)))
    );
    assert_eq!(m.codecs[0].node(3).pin_control, Some(0x40));
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert!(!hda.running());
}

#[test]
fn start_programs_the_stream_descriptor_and_its_bdl() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    hda.start(&mut CounterSource::new(48000)).unwrap();
    let m = model.0.borrow();
    let s = &m.streams[OUT];
    assert_eq!(s.bdp, (IO as u32 + 0x1000, 0));
    assert_eq!((s.cbl, s.lvi, s.fmt), (4096, 3, 0x0011));
    let ctl = 1 << 20 | SD_CTL_IOCE | SD_CTL_FEIE | SD_CTL_DEIE | SD_CTL_RUN;
    assert_eq!(s.ctl & 0xff_ffff, ctl);
    let bdl: Vec<_> = (0..4).map(|k| (IO + 0x2000 + 1024 * k, 1024, true)).collect();
    assert_eq!(s.bdl, bdl);
    assert_eq!(m.intctl, INTCTL_GIE | 1 << OUT);
    assert!(hda.running());
}

#[test]
fn plays_the_counter_whole_and_in_order() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let mut src = CounterSource::new(48000);
    model.0.borrow_mut().walclk = u32::MAX - 10;
    hda.start(&mut src).unwrap();
    model.0.borrow_mut().walclk = 26_000_000; // wraps: 26 M + 11 ticks later
    play_to_end(&model, &mut hda, &mut src, 512);
    assert_eq!(hda.stats().run_ticks, Some(26_000_011));
    let m = model.0.borrow();
    assert_counter_then_silence(&m.played, 48000);
    // 192000 bytes: 187.5 periods of audio, the half period padded, then
    // the 4 drain periods.
    assert_eq!(m.played.len(), 188 * 1024 + 4 * 1024);
    assert_eq!(m.streams[OUT].ctl & SD_CTL_RUN, 0, "stopped by itself");
    assert_eq!(m.intctl, 0);
    let stats = hda.stats();
    assert_eq!((stats.underruns, stats.fifo_errors, stats.bad_positions), (0, 0, 0));
    assert!(m.errors.is_empty(), "{:?}", m.errors);
}

#[test]
fn one_interrupt_per_period() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let mut src = CounterSource::new(256 * 10);
    hda.start(&mut src).unwrap();
    let irqs = play_to_end(&model, &mut hda, &mut src, 1024);
    let stats = hda.stats();
    // 10 periods of audio, the End period, then 4 drain periods - 1 (the
    // end period counts as the first of them).
    assert_eq!(stats.periods_played, 14);
    assert_eq!((irqs, stats.completions), (14, 14));
    assert_counter_then_silence(&model.0.borrow().played, 2560);
}

#[test]
fn a_late_driver_still_gets_every_period_in_order() {
    // Per the spec the engine runs on while BCIS is set: three periods go
    // by before the driver looks, and only one interrupt is seen for them.
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    model.0.borrow_mut().bcis_stalls_dma = false;
    let mut src = CounterSource::new(256 * 20);
    hda.start(&mut src).unwrap();
    let irqs = play_to_end(&model, &mut hda, &mut src, 3 * 1024);
    assert!(irqs < hda.stats().periods_played, "interrupts were coalesced");
    assert_counter_then_silence(&model.0.borrow().played, 256 * 20);
}

/// Audio, an underrun, audio, end; counts what it is told has played.
struct Gappy {
    script: Vec<Fill>,
    played: u32,
}

impl PeriodSource for Gappy {
    fn fill(&mut self, period: &mut [u8]) -> Fill {
        let next = if self.script.is_empty() { Fill::End } else { self.script.remove(0) };
        period.fill(if next == Fill::Audio { 0x11 } else { 0xee });
        next
    }
    fn played(&mut self, count: u32) {
        self.played += count;
    }
}

#[test]
fn underruns_play_silence_and_the_source_hears_what_played() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let mut src = Gappy { script: vec![Fill::Audio, Fill::Silence, Fill::Audio], played: 0 };
    hda.start(&mut src).unwrap();
    play_to_end(&model, &mut hda, &mut src, 1024);
    let played = model.0.borrow().played.clone();
    assert!(played[..1024].iter().all(|&b| b == 0x11));
    assert!(
        played[1024..2048].iter().all(|&b| b == 0),
        "the underrun is silence, not the source's bytes"
    );
    assert!(played[2048..3072].iter().all(|&b| b == 0x11));
    assert!(played[3072..].iter().all(|&b| b == 0));
    assert_eq!(hda.stats().underruns, 1);
    assert_eq!(src.played, 4, "three periods and the end period came from the source");
}

#[test]
fn stop_then_restart_plays_the_new_source_from_the_start() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let mut first = CounterSource::new(100_000);
    hda.start(&mut first).unwrap();
    for _ in 0..2 {
        model.0.borrow_mut().play(1024);
        assert_eq!(hda.handle_irq(&mut first), Event::Playing);
    }
    hda.stop().unwrap();
    {
        let mut m = model.0.borrow_mut();
        assert_eq!((m.streams[OUT].ctl & SD_CTL_RUN, m.intctl), (0, 0));
        assert_eq!(m.play(1024), 0, "nothing plays while stopped");
        m.played.clear();
    }
    assert_eq!(hda.handle_irq(&mut first), Event::Idle);
    let mut second = CounterSource::new(600);
    hda.start(&mut second).unwrap();
    assert_eq!(model.0.borrow().streams[OUT].lpib, 0);
    play_to_end(&model, &mut hda, &mut second, 1024);
    assert_counter_then_silence(&model.0.borrow().played, 600);
}

#[test]
fn no_codec_answering_the_reset_is_an_error() {
    let (model, dma) = model_with(vec![]);
    assert_eq!(Hda::new(model, dma, config()).err(), Some(InitError::NoCodec));
}

#[test]
fn a_codec_that_announces_itself_late_is_still_found() {
    let (model, dma) = model_with(vec![FakeCodec::qemu_output(0), FakeCodec::qemu_output(1)]);
    model.0.borrow_mut().late_codec = Some((1, 4));
    let hda = Hda::new(model.clone(), dma, config()).unwrap();
    assert_eq!(hda.codecs(), 0b11);
    assert_eq!(model.0.borrow().statests, 0, "both bits cleared");
}

#[test]
fn a_controller_stuck_in_reset_is_an_error() {
    let (model, dma) = model_with(vec![FakeCodec::qemu_output(0)]);
    model.0.borrow_mut().crst_stuck = true;
    let got = Hda::new(model, dma, config()).err();
    assert_eq!(got, Some(InitError::ResetStuck("entering reset")));
}

#[test]
fn a_silent_codec_times_out_after_the_poll_budget() {
    let mut codec = FakeCodec::qemu_output(0);
    codec.silent = true;
    let (model, dma) = model_with(vec![codec]);
    let got = Hda::new(model.clone(), dma, config()).err();
    assert_eq!(got, Some(InitError::NoOutputPath(CodecError::Command(CommandError::Timeout))));
    // One read when the rings start, one for stale responses, then the
    // budget: a bound in polls, not in time.
    assert_eq!(model.0.borrow().rirbwp_reads, 2 + 100);
}

#[test]
fn a_codec_that_does_not_answer_is_skipped_for_the_next() {
    let mut dead = FakeCodec::qemu_output(0);
    dead.silent = true;
    let (model, hda) = bring_up(vec![dead, FakeCodec::qemu_output(2)]);
    assert_eq!((hda.codecs(), hda.path().cad.get()), (0b101, 2));
    assert_eq!(model.0.borrow().codecs[1].node(2).stream, Some(0x10));
}

#[test]
fn slow_responses_are_waited_for_within_the_budget() {
    let (model, dma) = model_with(vec![FakeCodec::qemu_output(0)]);
    model.0.borrow_mut().response_delay = 90;
    assert!(Hda::new(model, dma, config()).is_ok());
    let (model, dma) = model_with(vec![FakeCodec::qemu_output(0)]);
    model.0.borrow_mut().response_delay = 150;
    assert!(Hda::new(model, dma, config()).is_err());
}

#[test]
fn unsolicited_and_foreign_responses_are_skipped() {
    let (model, dma) = model_with(vec![FakeCodec::qemu_output(0)]);
    model.0.borrow_mut().inject = vec![(0xdead, 1 << 4), (0xbeef, 3)];
    let hda = Hda::new(model, dma, config()).unwrap();
    let ring = hda.stats().ring;
    assert_eq!((ring.unsolicited, ring.wrong_codec), (1, 1));
    assert_eq!(hda.path().dac().get(), 2, "the walk got the real answers");
}

/// The rings alone over the model, for verb-level tests.
fn rings(codec: FakeCodec) -> (Shared, SharedRegion, CommandRing) {
    let (model, dma) = model_with(vec![codec]);
    let mut regs = model.clone();
    reset_controller(&mut regs, 100).unwrap();
    let ring = CommandRing::init(&mut regs, IO, CORB_AT, RIRB_AT, 100).unwrap();
    (model, dma.region, ring)
}

#[test]
fn a_late_response_is_dropped_before_the_next_verb() {
    let (model, dma, mut ring) = rings(FakeCodec::qemu_output(0));
    let mut regs = model.clone();
    let (cad, root) = (Cad::new(0).unwrap(), Nid::ROOT);
    model.0.borrow_mut().response_delay = 150;
    let vendor = Verb::get_parameter(cad, root, PARAM_VENDOR_ID);
    assert_eq!(ring.command(&mut regs, &dma, vendor), Err(CommandError::Timeout));
    model.0.borrow_mut().response_delay = 0;
    for _ in 0..60 {
        regs.read16(RIRBWP); // time passes; the late answer arrives
    }
    let count = Verb::get_parameter(cad, root, PARAM_NODE_COUNT);
    assert_eq!(ring.command(&mut regs, &dma, count), Ok(0x0001_0001));
    assert_eq!(ring.stats.stale, 1);
}

#[test]
fn sixteen_entry_rings_wrap_and_a_bad_write_pointer_is_an_error() {
    let (model, dma) = model_with(vec![FakeCodec::realtek_like(0)]);
    model.0.borrow_mut().ring_caps = 0x30; // 2 and 16 entries
    let hda = Hda::new(model.clone(), dma, config()).unwrap();
    assert_eq!(model.0.borrow().ring_entries(), 16);
    assert!(model.0.borrow().codecs[0].verbs.len() > 40, "the ring wrapped several times");
    assert_eq!(hda.path().pin().get(), 0x14);
    assert!(model.0.borrow().errors.is_empty(), "{:?}", model.0.borrow().errors);

    let (model, dma) = model_with(vec![FakeCodec::qemu_output(0)]);
    model.0.borrow_mut().ring_caps = 0x20;
    model.0.borrow_mut().rirb_wp_override = Some(20);
    let got = Hda::new(model, dma, config()).err();
    let e = CodecError::Command(CommandError::BadWritePointer(20));
    assert_eq!(got, Some(InitError::NoOutputPath(e)));
}

#[test]
fn a_descriptor_error_stops_the_stream() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let mut src = CounterSource::new(48000);
    hda.start(&mut src).unwrap();
    model.0.borrow_mut().streams[OUT].bdl[0].0 = 0x10; // outside the DMA region
    model.0.borrow_mut().play(2048);
    assert!(model.0.borrow().irq_line());
    assert_eq!(hda.handle_irq(&mut src), Event::Failed(StreamError::DescriptorError));
    let m = model.0.borrow();
    assert_eq!((m.streams[OUT].ctl & SD_CTL_RUN, m.intctl), (0, 0));
    assert!(!hda.running());
}

#[test]
fn a_position_past_the_buffer_is_ignored() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let mut src = CounterSource::new(48000);
    hda.start(&mut src).unwrap();
    model.0.borrow_mut().play(1024);
    model.0.borrow_mut().streams[OUT].lpib = 4096;
    assert_eq!(hda.handle_irq(&mut src), Event::Playing);
    assert_eq!((hda.stats().bad_positions, hda.stats().periods_played), (1, 0));
    assert_eq!(src.remaining(), 48000 - 4 * 256, "nothing refilled");
    model.0.borrow_mut().streams[OUT].lpib = 1024;
    hda.service(&mut src);
    assert_eq!(src.remaining(), 48000 - 5 * 256);
}

#[test]
fn spurious_interrupts_and_foreign_streams_are_counted_and_cleared() {
    let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
    let mut src = CounterSource::new(48000);
    hda.start(&mut src).unwrap();
    assert_eq!(hda.handle_irq(&mut src), Event::Playing);
    assert_eq!(hda.stats().spurious_irqs, 1);
    model.0.borrow_mut().streams[0].ctl |= u32::from(SD_STS_BCIS) << 24;
    hda.handle_irq(&mut src);
    assert_eq!(hda.stats().spurious_irqs, 2);
    assert_eq!(model.0.borrow().streams[0].ctl >> 24, 0, "an input stream's status is cleared");
}

#[test]
fn the_stream_reset_handshake_works_as_the_spec_and_as_qemu_do_it() {
    for (visible, unseen) in [(true, 0), (false, 1)] {
        let (model, mut hda) = bring_up(vec![FakeCodec::qemu_output(0)]);
        model.0.borrow_mut().srst_visible = visible;
        hda.start(&mut CounterSource::new(10)).unwrap();
        assert_eq!(hda.stats().srst_unseen, unseen);
        assert_eq!(hda.stats().ring.rp_reset_unseen, 0, "the model shows CORBRPRST");
    }
}

#[test]
fn configuration_and_dma_are_checked() {
    let bad = [
        Config { periods: 1, ..config() },
        Config { period_bytes: 1000, ..config() },
        Config { period_bytes: 32 * 1024, ..config() },
        Config { stream_tag: 0, ..config() },
        Config { lead_periods: 0, ..config() },
        Config { lead_periods: config().periods, ..config() },
        Config { format: PcmFormat { rate: 12345, bits: 16, channels: 2 }, ..config() },
    ];
    for c in bad {
        let (model, dma) = model_with(vec![FakeCodec::qemu_output(0)]);
        assert!(matches!(Hda::new(model, dma, c).err(), Some(InitError::Config(_))), "{c:?}");
    }
    let (model, dma) = model_with(vec![FakeCodec::qemu_output(0)]);
    let small = Dma { region: dma.region.subregion(0, 0x2000).unwrap(), io_addr: IO };
    assert_eq!(Hda::new(model.clone(), small, config()).err(), Some(InitError::Dma));
    let odd = Dma { region: dma.region.clone(), io_addr: IO + 64 };
    assert_eq!(Hda::new(model.clone(), odd, config()).err(), Some(InitError::Dma));
    model.0.borrow_mut().gcap = 0x4400; // no 64OK
    let high = Dma { region: dma.region.clone(), io_addr: 0x1_0000_0000 };
    assert_eq!(Hda::new(model.clone(), high, config()).err(), Some(InitError::Dma));
    model.0.borrow_mut().gcap = 0x0401; // no output stream
    assert_eq!(Hda::new(model, dma, config()).err(), Some(InitError::NoOutputStream(0x0401)));
}

#[test]
fn format_words_and_capabilities() {
    let f = |rate, bits, channels| PcmFormat { rate, bits, channels };
    assert_eq!(PcmFormat::S16_STEREO_48K.word(), Some(0x0011));
    assert_eq!(f(44100, 16, 2).word(), Some(0x4011));
    assert_eq!(f(96000, 24, 2).word(), Some(0x0831));
    assert_eq!(f(8000, 16, 1).word(), Some(0x0510));
    assert_eq!(f(11025, 8, 1).word(), Some(0x4300));
    assert_eq!(f(192000, 32, 8).word(), Some(0x1847));
    assert_eq!(
        (f(48000, 12, 2).word(), f(48000, 16, 0).word(), f(48000, 16, 17).word()),
        (None, None, None)
    );
    let qemu = fake::QEMU_PCM;
    assert!(PcmFormat::S16_STEREO_48K.supported_by(qemu));
    assert!(!f(192000, 16, 2).supported_by(qemu), "QEMU stops at 96 kHz");
    assert!(!f(48000, 24, 2).supported_by(qemu), "QEMU has 16-bit samples only");
    assert_eq!((PcmFormat::S16_STEREO_48K.frame_bytes(), f(48000, 24, 2).frame_bytes()), (4, 8));
}
