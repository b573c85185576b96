//! Host-test models: a codec that answers verbs from a node table, and an
//! HDA controller (registers, CORB/RIRB DMA, one output stream's DMA) that
//! hosts such codecs. Written from the Intel HDA 1.0a specification, with
//! QEMU `intel-hda`'s deviations switchable (see [`FakeHda`]'s knobs).

use super::codec::{CommandError, Commands, Verb};
use super::regs::*;
use sddf_bindings::SharedRegion;
use std::collections::VecDeque;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

const T_OUTPUT: u32 = 0;
const T_MIXER: u32 = 2;
const T_PIN: u32 = 4;
const W_STEREO: u32 = 1;
const W_IN_AMP: u32 = 1 << 1;
const W_OUT_AMP: u32 = 1 << 2;
const W_AMP_OVRD: u32 = 1 << 3;
const W_FMT_OVRD: u32 = 1 << 4;
const W_CONN: u32 = 1 << 8;
/// QEMU's PCM parameter: 16 bits, 16 to 96 kHz.
pub const QEMU_PCM: u32 = 1 << 17 | 0x1fc;

/// A node of a fake codec, as the codec describes it.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    nid: u8,
    params: Vec<(u8, u32)>,
    conns: Vec<u16>,
    long: bool,
    config: u32,
}

impl NodeSpec {
    fn new(nid: u8, caps: u32) -> NodeSpec {
        NodeSpec { nid, params: vec![(0x09, caps)], conns: vec![], long: false, config: 0 }
    }

    fn param(mut self, id: u8, value: u32) -> NodeSpec {
        self.params.retain(|p| p.0 != id);
        self.params.push((id, value));
        self
    }

    /// QEMU's DAC: stereo, own format and amplifier (0x4a steps, 0 dB at 0x4a).
    pub fn dac(nid: u8) -> NodeSpec {
        NodeSpec::new(nid, T_OUTPUT << 20 | W_FMT_OVRD | W_AMP_OVRD | W_OUT_AMP | W_STEREO)
            .param(0x0a, QEMU_PCM)
            .param(0x0b, 1)
            .param(0x12, 0x8003_4a4a)
    }

    /// An output pin with default device `device` (0 line out, 1 speaker,
    /// 2 headphone), connected to `conns`.
    pub fn pin(nid: u8, device: u32, conns: &[u8]) -> NodeSpec {
        let mut n = NodeSpec::new(nid, T_PIN << 20 | W_CONN | W_STEREO).param(0x0c, 1 << 4);
        n.conns = conns.iter().map(|&c| u16::from(c)).collect();
        n.config = device << 20 | 0x10;
        n
    }

    /// A mixer with input amplifiers, connected to `conns` (raw list entries).
    pub fn mixer(nid: u8, conns: &[u16]) -> NodeSpec {
        let mut n = NodeSpec::new(nid, T_MIXER << 20 | W_CONN | W_IN_AMP | W_AMP_OVRD | W_STEREO)
            .param(0x0d, 0x8005_1f1f);
        n.conns = conns.to_vec();
        n
    }

    /// A selector connected to `conns`.
    pub fn selector(nid: u8, conns: &[u8]) -> NodeSpec {
        let mut n = NodeSpec::new(nid, 3 << 20 | W_CONN | W_STEREO);
        n.conns = conns.iter().map(|&c| u16::from(c)).collect();
        n
    }

    /// Replaces the PCM sizes/rates parameter.
    pub fn pcm(self, pcm: u32) -> NodeSpec {
        self.param(0x0a, pcm)
    }

    /// Replaces the Configuration Default.
    pub fn config(mut self, config: u32) -> NodeSpec {
        self.config = config;
        self
    }

    /// A pin that can only take input.
    pub fn input_only(self) -> NodeSpec {
        self.param(0x0c, 1 << 5)
    }

    /// A pin that can drive headphones.
    pub fn hp_capable(self) -> NodeSpec {
        self.param(0x0c, 1 << 4 | 1 << 3)
    }

    /// A pin with an EAPD control.
    pub fn eapd(self) -> NodeSpec {
        self.param(0x0c, 1 << 4 | 1 << 16)
    }

    /// The connection list in long form (16-bit entries).
    pub fn long_form(mut self) -> NodeSpec {
        self.long = true;
        self
    }
}

/// What the driver set on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// Converter format.
    pub format: Option<u16>,
    /// Converter stream/channel byte.
    pub stream: Option<u8>,
    /// Power state.
    pub power: Option<u8>,
    /// Pin widget control.
    pub pin_control: Option<u8>,
    /// Connection select.
    pub select: Option<u8>,
    /// EAPD/BTL.
    pub eapd: Option<u8>,
    /// Output amplifier (mute, gain), both channels set together.
    pub out_amp: Option<(bool, u8)>,
    /// Input amplifiers set: (index, mute, gain).
    pub in_amps: Vec<(u8, bool, u8)>,
}

/// A codec answering verbs from its node table. Root is node 0, the audio
/// function group node 1.
#[derive(Clone, Debug)]
pub struct FakeCodec {
    /// Its address on the link.
    pub cad: u8,
    nodes: Vec<NodeSpec>,
    state: Vec<(u8, NodeState)>,
    overrides: Vec<(u8, u8, u32)>,
    /// Answers nothing.
    pub silent: bool,
    /// Every verb word it received.
    pub verbs: Vec<u32>,
}

impl FakeCodec {
    /// A codec with only a root and an audio function group `afg`.
    pub fn new(cad: u8, afg: u8) -> FakeCodec {
        let root =
            NodeSpec::new(0, 0).param(0x00, 0x1af4_0012).param(0x04, u32::from(afg) << 16 | 1);
        let fg = NodeSpec::new(afg, 0).param(0x05, 1).param(0x0a, QEMU_PCM).param(0x0b, 1);
        FakeCodec {
            cad,
            nodes: vec![root, fg],
            state: vec![],
            overrides: vec![],
            silent: false,
            verbs: vec![],
        }
    }

    /// QEMU's `hda-output`: function group 1, DAC 2, line-out pin 3 (a
    /// fixed speaker) connected to the DAC.
    pub fn qemu_output(cad: u8) -> FakeCodec {
        let mut c = FakeCodec::new(cad, 1);
        c.add(NodeSpec::dac(2));
        c.add(NodeSpec::pin(3, 1, &[2]).config(0x8011_4010));
        c
    }

    /// A larger codec: headphone pin 0x15 -> DAC 2; line-out pin 0x14
    /// (EAPD) -> selector 0x0f -> [mixer 0x0d -> input pin 0x18, mixer
    /// 0x0c -> [mixer 0x0b (empty), DAC 3]]; an input pin 0x18.
    pub fn realtek_like(cad: u8) -> FakeCodec {
        let mut c = FakeCodec::new(cad, 1);
        c.add(NodeSpec::dac(2));
        c.add(NodeSpec::dac(3));
        c.add(NodeSpec::mixer(0x0b, &[]));
        c.add(NodeSpec::mixer(0x0c, &[0x0b, 0x03]));
        c.add(NodeSpec::mixer(0x0d, &[0x18]));
        c.add(NodeSpec::selector(0x0f, &[0x0d, 0x0c]));
        c.add(NodeSpec::pin(0x14, 0, &[0x0f]).eapd());
        c.add(NodeSpec::pin(0x15, 2, &[0x02]).hp_capable());
        c.add(NodeSpec::pin(0x18, 0xa, &[]).input_only());
        c
    }

    /// Adds a widget to the function group.
    pub fn add(&mut self, node: NodeSpec) {
        self.nodes.push(node);
    }

    /// Makes `nid` answer `value` for parameter `param`.
    pub fn set_param(&mut self, nid: u8, param: u8, value: u32) {
        self.overrides.push((nid, param, value));
    }

    /// What the driver set on `nid`.
    pub fn node(&self, nid: u8) -> NodeState {
        self.state.iter().find(|s| s.0 == nid).map(|s| s.1.clone()).unwrap_or_default()
    }

    fn state_mut(&mut self, nid: u8) -> &mut NodeState {
        if !self.state.iter().any(|s| s.0 == nid) {
            self.state.push((nid, NodeState::default()));
        }
        &mut self.state.iter_mut().find(|s| s.0 == nid).unwrap().1
    }

    fn param(&self, nid: u8, id: u8) -> u32 {
        if let Some(o) = self.overrides.iter().rev().find(|o| o.0 == nid && o.1 == id) {
            return o.2;
        }
        if nid == 1 && id == 0x04 {
            let widgets: Vec<u8> = self.nodes.iter().map(|n| n.nid).filter(|&n| n > 1).collect();
            let (lo, hi) = (widgets.iter().min(), widgets.iter().max());
            return match (lo, hi) {
                (Some(&lo), Some(&hi)) => u32::from(lo) << 16 | u32::from(hi - lo + 1),
                _ => 0,
            };
        }
        let node = self.nodes.iter().find(|n| n.nid == nid);
        let value = node.and_then(|n| n.params.iter().find(|p| p.0 == id)).map(|p| p.1);
        match (id, node) {
            (0x0e, Some(n)) if !n.conns.is_empty() => {
                n.conns.len() as u32 | if n.long { 0x80 } else { 0 }
            }
            _ => value.unwrap_or(0),
        }
    }

    /// The response to `word`, or `None` if the codec stays silent. Decodes
    /// 12-bit verbs (7xxh, Fxxh) and 4-bit ones as QEMU's codec does.
    pub fn respond(&mut self, word: u32) -> Option<u32> {
        self.verbs.push(word);
        if self.silent {
            return None;
        }
        let nid = (word >> 20 & 0x7f) as u8;
        let data = word & 0xf_ffff;
        if data >> 16 & 7 == 7 {
            let (verb, payload) = (data >> 8 & 0xfff, (data & 0xff) as u8);
            return Some(self.short_verb(nid, verb, payload));
        }
        let payload = (data & 0xffff) as u16;
        match data >> 16 {
            0x2 => self.state_mut(nid).format = Some(payload),
            0x3 => {
                let (mute, gain, index) =
                    (payload & 0x80 != 0, (payload & 0x7f) as u8, (payload >> 8 & 0xf) as u8);
                assert_eq!(payload & 0x3000, 0x3000, "both channels set together");
                let s = self.state_mut(nid);
                if payload & 0x8000 != 0 {
                    s.out_amp = Some((mute, gain));
                }
                if payload & 0x4000 != 0 {
                    s.in_amps.push((index, mute, gain));
                }
            }
            _ => {}
        }
        Some(0)
    }

    fn short_verb(&mut self, nid: u8, verb: u32, payload: u8) -> u32 {
        let node = self.nodes.iter().find(|n| n.nid == nid).cloned();
        match verb {
            0xf00 => self.param(nid, payload),
            0xf02 => node.map_or(0, |n| {
                let (per, bits) = if n.long { (2, 16) } else { (4, 8) };
                (0..per).fold(0, |acc, k| {
                    let e = n.conns.get(usize::from(payload) + k).copied().unwrap_or(0);
                    acc | u32::from(e) << (k * bits)
                })
            }),
            0xf1c => node.map_or(0, |n| n.config),
            0x701 => {
                self.state_mut(nid).select = Some(payload);
                0
            }
            0x705 => {
                self.state_mut(nid).power = Some(payload);
                0
            }
            0x706 => {
                self.state_mut(nid).stream = Some(payload);
                0
            }
            0x707 => {
                self.state_mut(nid).pin_control = Some(payload);
                0
            }
            0x70c => {
                self.state_mut(nid).eapd = Some(payload);
                0
            }
            _ => 0,
        }
    }
}

impl Commands for FakeCodec {
    fn command(&mut self, verb: Verb) -> Result<u32, CommandError> {
        assert_eq!(verb.word() >> 28, u32::from(self.cad), "verb for another codec");
        self.respond(verb.word()).ok_or(CommandError::Timeout)
    }
}

/// One modelled stream descriptor.
#[derive(Clone, Debug, Default)]
pub struct FakeStream {
    /// SDnCTL (bits 23:0) and SDnSTS (31:24).
    pub ctl: u32,
    /// SDnLPIB.
    pub lpib: u32,
    /// SDnCBL.
    pub cbl: u32,
    /// SDnLVI.
    pub lvi: u16,
    /// SDnFMT.
    pub fmt: u16,
    /// SDnBDPL, SDnBDPU.
    pub bdp: (u32, u32),
    /// The BDL as fetched at RUN: (address, length, IOC).
    pub bdl: Vec<(u64, u32, bool)>,
    entry: usize,
    offset: u32,
}

/// A modelled HDA controller: 4 input and 4 output streams (as QEMU), a
/// 256-entry CORB and RIRB, codecs by address, DMA into one region.
///
/// Knobs: `srst_visible` (the spec's SRST handshake; QEMU's SRST reads 0 at
/// once), `bcis_stalls_dma` (QEMU: the stream fetches nothing while BCIS is
/// set), `response_delay` (RIRBWP reads before a response shows),
/// `inject` (extra RIRB entries written before the next response),
/// `rirb_wp_override`, `crst_stuck`.
pub struct FakeHda {
    /// The DMA region and its I/O address.
    pub dma: SharedRegion,
    /// I/O address of the DMA region.
    pub dma_io: u64,
    /// Codecs on the link.
    pub codecs: Vec<FakeCodec>,
    /// GCAP.
    pub gcap: u16,
    /// GCTL.
    pub gctl: u32,
    /// STATESTS.
    pub statests: u16,
    /// INTCTL.
    pub intctl: u32,
    corb: (u32, u32),
    corb_wp: u16,
    corb_rp: u16,
    /// CORBCTL.
    pub corbctl: u8,
    /// Knob: ring sizes offered (CORBSIZE/RIRBSIZE bits 7:4; QEMU 256 only).
    pub ring_caps: u8,
    ring_code: u8,
    rirb: (u32, u32),
    rirb_wp: u16,
    /// RINTCNT.
    pub rintcnt: u16,
    /// RIRBCTL.
    pub rirbctl: u8,
    rirbsts: u8,
    rirb_count: u16,
    /// Stream descriptors.
    pub streams: Vec<FakeStream>,
    /// Knob: SRST reads back 1 while in reset (the spec), not 0 (QEMU).
    pub srst_visible: bool,
    /// Knob: DMA stops while BCIS is set (QEMU).
    pub bcis_stalls_dma: bool,
    /// Knob: RIRBWP reads before a response appears.
    pub response_delay: u32,
    /// Knob: RIRB entries (response, extended) written ahead of the next
    /// real response.
    pub inject: Vec<(u32, u32)>,
    /// Knob: what RIRBWP reads as.
    pub rirb_wp_override: Option<u16>,
    /// Knob: GCTL.CRST never clears.
    pub crst_stuck: bool,
    /// WALCLK.
    pub walclk: u32,
    /// Knob: a codec (address) whose STATESTS bit shows only after this
    /// many STATESTS reads since the reset.
    pub late_codec: Option<(u8, u32)>,
    statests_reads: u32,
    pending: VecDeque<(u32, u32, u32)>,
    /// Controller resets seen.
    pub resets: u32,
    /// RIRBWP reads.
    pub rirbwp_reads: u64,
    /// What the output stream played, byte for byte.
    pub played: Vec<u8>,
    /// DMA accesses outside the region, and other protocol violations.
    pub errors: Vec<String>,
}

impl FakeHda {
    /// A controller with `codecs`, DMA through `dma` at I/O address `dma_io`.
    pub fn new(dma: SharedRegion, dma_io: u64, codecs: Vec<FakeCodec>) -> FakeHda {
        FakeHda {
            dma,
            dma_io,
            codecs,
            gcap: 0x4401,
            gctl: 0,
            statests: 0,
            intctl: 0,
            corb: (0, 0),
            corb_wp: 0,
            corb_rp: 0,
            corbctl: 0,
            ring_caps: 0x40,
            ring_code: 2,
            rirb: (0, 0),
            rirb_wp: 0,
            rintcnt: 0,
            rirbctl: 0,
            rirbsts: 0,
            rirb_count: 0,
            streams: vec![FakeStream::default(); 8],
            srst_visible: false,
            bcis_stalls_dma: true,
            response_delay: 0,
            inject: vec![],
            rirb_wp_override: None,
            crst_stuck: false,
            walclk: 0,
            late_codec: None,
            statests_reads: 0,
            pending: VecDeque::new(),
            resets: 0,
            rirbwp_reads: 0,
            played: vec![],
            errors: vec![],
        }
    }

    /// Entries per ring, from the size written.
    pub fn ring_entries(&self) -> u16 {
        [2, 16, 256, 256][usize::from(self.ring_code & 3)]
    }

    fn reset(&mut self) {
        let keep = (self.gcap, self.crst_stuck);
        self.gctl = if keep.1 { GCTL_CRST } else { 0 };
        self.intctl = 0;
        self.corb = (0, 0);
        (self.corb_wp, self.corb_rp, self.corbctl) = (0, 0, 0);
        (self.rirb, self.rirb_wp, self.rintcnt, self.rirbctl, self.rirbsts) = ((0, 0), 0, 0, 0, 0);
        self.rirb_count = 0;
        self.streams = vec![FakeStream::default(); 8];
        self.pending.clear();
        self.resets += 1;
        let late = self.late_codec.map(|l| l.0);
        let present = self.codecs.iter().filter(|c| Some(c.cad) != late);
        self.statests = present.fold(0, |m, c| m | 1 << c.cad);
        self.statests_reads = 0;
    }

    /// The DMA region offset of `len` bytes at I/O address `io`.
    fn at(&mut self, io: u64, len: usize) -> Option<usize> {
        let off = io.checked_sub(self.dma_io).filter(|o| o + len as u64 <= self.dma.len() as u64);
        if off.is_none() {
            self.errors.push(format!("DMA at {io:#x}+{len} outside the region"));
        }
        off.map(|o| o as usize)
    }

    fn run_corb(&mut self) {
        while self.corbctl & CORBCTL_RUN != 0
            && self.corb_rp & 0xff != self.corb_wp
            && self.rirb_count != self.rintcnt
        {
            let rp = (self.corb_rp + 1) % self.ring_entries();
            self.corb_rp = rp;
            let io = u64::from(self.corb.1) << 32 | u64::from(self.corb.0);
            let Some(at) = self.at(io + 4 * u64::from(rp), 4) else { return };
            let word = self.dma.load::<u32>(at).unwrap();
            let cad = word >> 28;
            if word & 1 << 27 != 0 {
                self.errors.push(format!("indirect node addressing in {word:#x}"));
            }
            let answer = self
                .codecs
                .iter_mut()
                .find(|c| u32::from(c.cad) == cad)
                .and_then(|c| c.respond(word));
            if let Some(response) = answer {
                for (r, ex) in std::mem::take(&mut self.inject) {
                    self.pending.push_back((r, ex, 0));
                }
                self.pending.push_back((response, cad, self.response_delay));
                self.deliver();
            }
        }
    }

    /// Writes the responses whose delay has run out into the RIRB.
    fn deliver(&mut self) {
        while let Some(&(response, ex, delay)) = self.pending.front() {
            if delay > 0 || self.rirbctl & RIRBCTL_DMAEN == 0 {
                return;
            }
            self.pending.pop_front();
            self.rirb_wp = (self.rirb_wp + 1) % self.ring_entries();
            let io = u64::from(self.rirb.1) << 32 | u64::from(self.rirb.0);
            if let Some(at) = self.at(io + 8 * u64::from(self.rirb_wp), 8) {
                self.dma.store::<u32>(at, response).unwrap();
                self.dma.store::<u32>(at + 4, ex).unwrap();
            }
            self.rirb_count += 1;
            let empty = self.corb_rp & 0xff == self.corb_wp;
            if (self.rirb_count == self.rintcnt || empty) && self.rirbctl & RIRBCTL_RINTCTL != 0 {
                self.rirbsts |= RIRBSTS_RINTFL;
            }
        }
    }

    /// INTSTS as the controller computes it.
    pub fn intsts(&self) -> u32 {
        let mut sts = 0;
        if self.rirbsts & (RIRBSTS_RINTFL | RIRBSTS_RIRBOIS) != 0 {
            sts |= INTSTS_CIS;
        }
        for (i, s) in self.streams.iter().enumerate() {
            if s.ctl >> 24 & u32::from(SD_STS_BCIS | SD_STS_FIFOE | SD_STS_DESE) != 0 {
                sts |= 1 << i;
            }
        }
        if sts & self.intctl != 0 {
            sts |= INTSTS_GIS;
        }
        sts
    }

    /// Whether the interrupt line is asserted.
    pub fn irq_line(&self) -> bool {
        self.intsts() & INTSTS_GIS != 0 && self.intctl & INTCTL_GIE != 0
    }

    fn stream_ctl_write(&mut self, i: usize, value: u32) {
        let old = self.streams[i].ctl;
        let s = &mut self.streams[i];
        s.ctl = (old & 0xff00_0000) | (value & 0x00ff_ffff);
        if value & SD_CTL_SRST != 0 {
            let keep = s.ctl & 0x00ff_ffff;
            *s = FakeStream::default();
            s.ctl = if self.srst_visible { keep & SD_CTL_SRST } else { 0 };
            return;
        }
        if value & SD_CTL_RUN != 0 && old & SD_CTL_RUN == 0 {
            self.start_stream(i);
        }
    }

    fn start_stream(&mut self, i: usize) {
        let (bdp, lvi) = (self.streams[i].bdp, self.streams[i].lvi);
        let base = u64::from(bdp.1) << 32 | u64::from(bdp.0);
        let mut bdl = vec![];
        for e in 0..=u64::from(lvi) {
            let Some(at) = self.at(base + 16 * e, 16) else { break };
            let address = self.dma.load::<u64>(at).unwrap();
            let len = self.dma.load::<u32>(at + 8).unwrap();
            let ioc = self.dma.load::<u32>(at + 12).unwrap() & 1 != 0;
            bdl.push((address, len, ioc));
        }
        let s = &mut self.streams[i];
        (s.bdl, s.entry, s.offset, s.lpib) = (bdl, 0, 0, 0);
        if s.bdl.iter().map(|e| e.1).sum::<u32>() != s.cbl {
            self.errors.push(format!("stream {i}: BDL lengths do not add up to CBL {}", s.cbl));
        }
    }

    /// Runs the first running output stream's DMA for up to `bytes` bytes
    /// (as a codec pulling data would); returns how many moved.
    pub fn play(&mut self, bytes: u32) -> u32 {
        let first_out = usize::from(gcap_iss(self.gcap));
        let Some(i) = (first_out..8).find(|&i| self.streams[i].ctl & SD_CTL_RUN != 0) else {
            return 0;
        };
        let mut moved = 0;
        while moved < bytes {
            let s = &self.streams[i];
            let bcis = s.ctl & u32::from(SD_STS_BCIS) << 24 != 0;
            if (bcis && self.bcis_stalls_dma) || s.bdl.is_empty() {
                break;
            }
            let (address, len, ioc) = s.bdl[s.entry];
            let chunk = (len - s.offset).min(bytes - moved);
            let Some(at) = self.at(address + u64::from(s.offset), chunk as usize) else {
                self.streams[i].ctl |= u32::from(SD_STS_DESE) << 24;
                self.streams[i].ctl &= !SD_CTL_RUN;
                break;
            };
            let mut data = vec![0u8; chunk as usize];
            self.dma.read(at, &mut data).unwrap();
            self.played.extend_from_slice(&data);
            moved += chunk;
            let s = &mut self.streams[i];
            s.offset += chunk;
            s.lpib += chunk;
            if s.offset == len {
                (s.offset, s.entry) = (0, s.entry + 1);
                if s.entry == s.bdl.len() {
                    (s.entry, s.lpib) = (0, 0);
                }
                if ioc {
                    s.ctl |= u32::from(SD_STS_BCIS) << 24;
                }
            }
        }
        moved
    }

    /// The register named at `offset` must be accessed `width` bytes wide.
    fn check_width(&mut self, offset: usize, width: usize) {
        let expected = match offset {
            GCAP | WAKEEN | STATESTS | CORBWP | CORBRP | RIRBWP | RINTCNT => 2,
            VMIN | VMAJ | CORBCTL | CORBSTS | CORBSIZE | RIRBCTL | RIRBSTS | RIRBSIZE => 1,
            o if (SD_BASE..SD_BASE + 8 * SD_STRIDE).contains(&o) => match (o - SD_BASE) % SD_STRIDE
            {
                SD_STS | 0x02 => 1,
                SD_LVI | SD_FMT | 0x10 => 2,
                _ => 4,
            },
            _ => 4,
        };
        assert_eq!(width, expected, "{width}-byte access to the register at {offset:#x}");
    }

    fn stream_of(offset: usize) -> Option<(usize, usize)> {
        (SD_BASE..SD_BASE + 8 * SD_STRIDE)
            .contains(&offset)
            .then(|| ((offset - SD_BASE) / SD_STRIDE, (offset - SD_BASE) % SD_STRIDE))
    }

    fn read(&mut self, offset: usize, width: usize) -> u32 {
        self.check_width(offset, width);
        if let Some((i, reg)) = FakeHda::stream_of(offset) {
            let s = &self.streams[i];
            return match reg {
                SD_CTL => s.ctl,
                SD_STS => s.ctl >> 24,
                SD_LPIB => s.lpib,
                SD_CBL => s.cbl,
                SD_LVI => u32::from(s.lvi),
                SD_FMT => u32::from(s.fmt),
                SD_BDPL => s.bdp.0,
                SD_BDPU => s.bdp.1,
                _ => 0,
            };
        }
        match offset {
            GCAP => u32::from(self.gcap),
            VMAJ => 1,
            GCTL => self.gctl,
            STATESTS => {
                self.statests_reads += 1;
                if let Some((cad, after)) = self.late_codec {
                    if self.statests_reads == after {
                        self.statests |= 1 << cad;
                    }
                }
                u32::from(self.statests)
            }
            INTCTL => self.intctl,
            INTSTS => self.intsts(),
            WALCLK => self.walclk,
            CORBLBASE => self.corb.0,
            CORBUBASE => self.corb.1,
            CORBWP => u32::from(self.corb_wp),
            CORBRP => u32::from(self.corb_rp),
            CORBCTL => u32::from(self.corbctl),
            CORBSIZE | RIRBSIZE => u32::from(self.ring_caps | self.ring_code),
            RIRBWP => {
                self.rirbwp_reads += 1;
                for p in self.pending.iter_mut() {
                    p.2 = p.2.saturating_sub(1);
                }
                self.deliver();
                u32::from(self.rirb_wp_override.unwrap_or(self.rirb_wp))
            }
            RINTCNT => u32::from(self.rintcnt),
            RIRBCTL => u32::from(self.rirbctl),
            RIRBSTS => u32::from(self.rirbsts),
            _ => 0,
        }
    }

    fn write(&mut self, offset: usize, width: usize, value: u32) {
        self.check_width(offset, width);
        if let Some((i, reg)) = FakeHda::stream_of(offset) {
            match reg {
                SD_CTL => self.stream_ctl_write(i, value),
                SD_STS => self.streams[i].ctl &= !((value & 0x1c) << 24),
                SD_CBL => self.streams[i].cbl = value,
                SD_LVI => self.streams[i].lvi = value as u16 & 0xff,
                SD_FMT => self.streams[i].fmt = value as u16,
                SD_BDPL => self.streams[i].bdp.0 = value & !0x7f,
                SD_BDPU => self.streams[i].bdp.1 = value,
                _ => {}
            }
            return;
        }
        match offset {
            GCTL => {
                self.gctl = value & 0x103;
                if value & GCTL_CRST == 0 {
                    self.reset();
                }
            }
            STATESTS => self.statests &= !(value as u16),
            WAKEEN => {}
            INTCTL => self.intctl = value & 0xc000_00ff,
            INTSTS => {}
            CORBLBASE => self.corb.0 = value & !0x7f,
            CORBUBASE => self.corb.1 = value,
            CORBWP => {
                self.corb_wp = value as u16 & 0xff;
                if self.corb_wp >= self.ring_entries() {
                    self.errors.push(format!("CORBWP {} past the ring", self.corb_wp));
                }
                self.run_corb();
            }
            CORBRP => self.corb_rp = value as u16 & 0x80ff,
            CORBCTL => {
                self.corbctl = value as u8 & 3;
                self.run_corb();
            }
            CORBSIZE | RIRBSIZE => {
                let code = value as u8 & 3;
                if self.ring_caps >> 4 & 1 << code == 0 {
                    self.errors.push(format!("ring size {code} not offered, at {offset:#x}"));
                }
                self.ring_code = code;
            }
            RIRBLBASE => self.rirb.0 = value & !0x7f,
            RIRBUBASE => self.rirb.1 = value,
            RIRBWP => {
                if value & u32::from(RIRBWP_RST) != 0 {
                    self.rirb_wp = 0;
                }
            }
            RINTCNT => self.rintcnt = value as u16 & 0xff,
            RIRBCTL => {
                self.rirbctl = value as u8 & 7;
                self.deliver();
            }
            RIRBSTS => {
                let old = self.rirbsts;
                self.rirbsts &= !(value as u8 & 5);
                if old & RIRBSTS_RINTFL != 0 && self.rirbsts & RIRBSTS_RINTFL == 0 {
                    self.rirb_count = 0;
                    self.run_corb();
                }
            }
            _ => self.errors.push(format!("write to unknown register {offset:#x}")),
        }
    }
}

/// The controller model shared between the driver (as its registers) and
/// the test.
#[derive(Clone)]
pub struct Shared(pub std::rc::Rc<std::cell::RefCell<FakeHda>>);

impl HdaRegisters for Shared {
    fn read8(&mut self, offset: usize) -> u8 {
        self.0.borrow_mut().read(offset, 1) as u8
    }
    fn read16(&mut self, offset: usize) -> u16 {
        self.0.borrow_mut().read(offset, 2) as u16
    }
    fn read32(&mut self, offset: usize) -> u32 {
        self.0.borrow_mut().read(offset, 4)
    }
    fn write8(&mut self, offset: usize, value: u8) {
        self.0.borrow_mut().write(offset, 1, value.into())
    }
    fn write16(&mut self, offset: usize, value: u16) {
        self.0.borrow_mut().write(offset, 2, value.into())
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.0.borrow_mut().write(offset, 4, value)
    }
}
