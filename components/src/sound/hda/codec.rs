//! Codec commands (Intel HDA 1.0a §7.3) and the walk from a codec's root
//! node to an output path: a pin complex that can drive a jack, and the
//! output converter (DAC) behind it.
//!
//! Every number here comes from the codec: node counts, widget types and
//! connection lists are checked (node IDs are 7 bits, lists are bounded)
//! before they are used, so a broken or hostile codec ends the walk with an
//! error, never with an out-of-range access or a loop.

use super::PcmFormat;

/// A codec address on the link, 0..15 (the SDIN line it answers on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cad(u8);

impl Cad {
    /// The address, if it is below 15 (15 is reserved for broadcast).
    pub const fn new(cad: u8) -> Option<Cad> {
        if cad < 15 {
            Some(Cad(cad))
        } else {
            None
        }
    }

    /// The address as a number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A node ID within a codec, 0..127 (7 bits: direct addressing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nid(u8);

impl Nid {
    /// The root node.
    pub const ROOT: Nid = Nid(0);

    /// The node ID, if it fits 7 bits.
    pub const fn new(nid: u32) -> Option<Nid> {
        if nid < 128 {
            Some(Nid(nid as u8))
        } else {
            None
        }
    }

    /// The ID as a number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// One command to a codec node (§7.3.1): codec address in bits 31:28, node
/// ID in 26:20 (bit 27, indirect addressing, is never set), then either a
/// 12-bit verb with an 8-bit payload or a 4-bit verb with a 16-bit payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verb(u32);

impl Verb {
    fn head(cad: Cad, nid: Nid) -> u32 {
        u32::from(cad.0) << 28 | u32::from(nid.0) << 20
    }

    /// A 12-bit verb (0x7xx sets, 0xfxx gets) with an 8-bit payload.
    pub fn short(cad: Cad, nid: Nid, verb: u16, payload: u8) -> Verb {
        Verb(Verb::head(cad, nid) | u32::from(verb & 0xfff) << 8 | u32::from(payload))
    }

    /// A 4-bit verb (0x2 format, 0x3 amplifier) with a 16-bit payload.
    pub fn long(cad: Cad, nid: Nid, verb: u8, payload: u16) -> Verb {
        Verb(Verb::head(cad, nid) | u32::from(verb & 0xf) << 16 | u32::from(payload))
    }

    /// The 32-bit command word written into the CORB.
    pub const fn word(self) -> u32 {
        self.0
    }

    /// The codec it is for.
    pub const fn cad(self) -> Cad {
        Cad((self.0 >> 28) as u8)
    }

    /// Get Parameter (F00h, §7.3.3.1... §7.3.4).
    pub fn get_parameter(cad: Cad, nid: Nid, param: u8) -> Verb {
        Verb::short(cad, nid, 0xf00, param)
    }

    /// Get Connection List Entry (F02h, §7.3.3.3) from `index` on.
    pub fn get_connection_list(cad: Cad, nid: Nid, index: u8) -> Verb {
        Verb::short(cad, nid, 0xf02, index)
    }

    /// Connection Select Control (701h, §7.3.3.2).
    pub fn set_connection_select(cad: Cad, nid: Nid, index: u8) -> Verb {
        Verb::short(cad, nid, 0x701, index)
    }

    /// Power State (705h, §7.3.3.10): 0 = D0.
    pub fn set_power_state(cad: Cad, nid: Nid, state: u8) -> Verb {
        Verb::short(cad, nid, 0x705, state)
    }

    /// Converter Stream, Channel (706h, §7.3.3.11).
    pub fn set_stream_channel(cad: Cad, nid: Nid, stream: u8, channel: u8) -> Verb {
        Verb::short(cad, nid, 0x706, (stream & 0xf) << 4 | (channel & 0xf))
    }

    /// Pin Widget Control (707h, §7.3.3.13).
    pub fn set_pin_control(cad: Cad, nid: Nid, control: u8) -> Verb {
        Verb::short(cad, nid, 0x707, control)
    }

    /// EAPD/BTL Enable (70Ch, §7.3.3.16).
    pub fn set_eapd(cad: Cad, nid: Nid, value: u8) -> Verb {
        Verb::short(cad, nid, 0x70c, value)
    }

    /// Configuration Default (F1Ch, §7.3.3.31).
    pub fn get_config_default(cad: Cad, nid: Nid) -> Verb {
        Verb::short(cad, nid, 0xf1c, 0)
    }

    /// Converter Format (2h, §7.3.3.8).
    pub fn set_format(cad: Cad, nid: Nid, format: u16) -> Verb {
        Verb::long(cad, nid, 0x2, format)
    }

    /// Amplifier Gain/Mute (3h, §7.3.3.7).
    pub fn set_amp(cad: Cad, nid: Nid, amp: AmpSet) -> Verb {
        Verb::long(cad, nid, 0x3, amp.payload())
    }
}

/// The payload of a Set Amplifier Gain/Mute verb (§7.3.3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmpSet {
    /// The output amplifier (else an input amplifier).
    pub output: bool,
    /// Input index (which connection's amplifier), 0..15.
    pub index: u8,
    /// Muted.
    pub mute: bool,
    /// Gain step, 0..127.
    pub gain: u8,
}

impl AmpSet {
    /// Both channels of the amplifier, unmuted, at 0 dB (the step the
    /// capabilities' offset names, §7.3.4.10), clamped to the steps there are.
    pub fn unmuted_0db(output: bool, index: u8, caps: u32) -> AmpSet {
        let offset = (caps & 0x7f) as u8;
        let steps = (caps >> 8 & 0x7f) as u8;
        AmpSet { output, index, mute: false, gain: offset.min(steps) }
    }

    fn payload(self) -> u16 {
        let dir = if self.output { 1 << 15 } else { 1 << 14 };
        dir | 1 << 13 | 1 << 12 // left and right
            | u16::from(self.index & 0xf) << 8
            | u16::from(self.mute) << 7
            | u16::from(self.gain & 0x7f)
    }
}

// Parameters (§7.3.4).
/// Vendor ID.
pub const PARAM_VENDOR_ID: u8 = 0x00;
/// Subordinate Node Count: first node in bits 23:16, count in 7:0.
pub const PARAM_NODE_COUNT: u8 = 0x04;
/// Function Group Type: bits 7:0, 1 = audio.
pub const PARAM_FUNCTION_TYPE: u8 = 0x05;
/// Audio Widget Capabilities.
pub const PARAM_WIDGET_CAPS: u8 = 0x09;
/// Supported PCM Size, Rates.
pub const PARAM_PCM: u8 = 0x0a;
/// Supported Stream Formats: bit 0 PCM.
pub const PARAM_STREAM_FORMATS: u8 = 0x0b;
/// Pin Capabilities.
pub const PARAM_PIN_CAPS: u8 = 0x0c;
/// Connection List Length: bit 7 long form, 6:0 length.
pub const PARAM_CONN_LIST_LEN: u8 = 0x0e;
/// Output Amplifier Capabilities.
pub const PARAM_OUT_AMP_CAPS: u8 = 0x12;
/// Input Amplifier Capabilities.
pub const PARAM_IN_AMP_CAPS: u8 = 0x0d;

/// Function group type of an audio function group.
const FUNCTION_AUDIO: u32 = 0x01;

// Audio widget capabilities (§7.3.4.6).
const WCAP_IN_AMP: u32 = 1 << 1;
const WCAP_OUT_AMP: u32 = 1 << 2;
const WCAP_AMP_OVERRIDE: u32 = 1 << 3;
const WCAP_FORMAT_OVERRIDE: u32 = 1 << 4;
const WCAP_CONN_LIST: u32 = 1 << 8;

/// A widget's type (§7.3.4.6, bits 23:20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WidgetType {
    /// Audio output converter (DAC).
    Output,
    /// Audio input converter (ADC).
    Input,
    /// Mixer (sums its inputs).
    Mixer,
    /// Selector (passes one input).
    Selector,
    /// Pin complex (a jack or a fixed device).
    Pin,
    /// Anything else (power, volume knob, beep, vendor).
    Other,
}

impl WidgetType {
    fn of(caps: u32) -> WidgetType {
        match caps >> 20 & 0xf {
            0 => WidgetType::Output,
            1 => WidgetType::Input,
            2 => WidgetType::Mixer,
            3 => WidgetType::Selector,
            4 => WidgetType::Pin,
            _ => WidgetType::Other,
        }
    }
}

// Pin capabilities (§7.3.4.9) and control (§7.3.3.13).
const PINCAP_HP_DRIVE: u32 = 1 << 3;
const PINCAP_OUTPUT: u32 = 1 << 4;
const PINCAP_EAPD: u32 = 1 << 16;
/// Pin Widget Control: output enable.
pub const PIN_OUT_ENABLE: u8 = 1 << 6;
/// Pin Widget Control: headphone amplifier enable.
pub const PIN_HP_ENABLE: u8 = 1 << 7;

/// Sends one command and waits for its response; the CORB/RIRB rings on
/// hardware, a fake codec in tests.
pub trait Commands {
    /// The codec's 32-bit response to `verb`.
    fn command(&mut self, verb: Verb) -> Result<u32, CommandError>;
}

/// Why a command got no usable response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// No response within the poll budget: the codec is absent or hung.
    Timeout,
    /// The controller's RIRB write pointer pointed outside the ring.
    BadWritePointer(u16),
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommandError::Timeout => f.write_str("no response from the codec"),
            CommandError::BadWritePointer(wp) => write!(f, "RIRB write pointer {wp} out of range"),
        }
    }
}

/// Why a codec offers no usable output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// A command failed.
    Command(CommandError),
    /// No audio function group.
    NoAudioFunction,
    /// A node count names IDs past 127.
    BadNodeRange,
    /// A connection list is malformed (a range running backwards, an entry
    /// past 127).
    BadConnectionList(u8),
    /// No output pin is connected to a DAC that can play the format.
    NoOutputPath,
}

impl From<CommandError> for CodecError {
    fn from(e: CommandError) -> CodecError {
        CodecError::Command(e)
    }
}

impl core::fmt::Display for CodecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CodecError::Command(e) => write!(f, "{e}"),
            CodecError::NoAudioFunction => f.write_str("no audio function group"),
            CodecError::BadNodeRange => f.write_str("a node count runs past node 127"),
            CodecError::BadConnectionList(n) => write!(f, "node {n}: malformed connection list"),
            CodecError::NoOutputPath => f.write_str("no output pin connected to a suitable DAC"),
        }
    }
}

/// Connections a list may hold before the rest are ignored.
pub const MAX_CONNECTIONS: usize = 16;
/// Widgets on a path, pin and DAC included.
pub const MAX_HOPS: usize = 4;

/// A widget's connection list, ranges expanded (§7.3.3.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    nids: [u8; MAX_CONNECTIONS],
    len: u8,
}

impl Connections {
    /// The connected node IDs, in list order (the index is what Connection
    /// Select and input amplifiers take).
    pub fn as_slice(&self) -> &[u8] {
        &self.nids[..usize::from(self.len)]
    }

    fn push(&mut self, nid: u8) {
        if usize::from(self.len) < MAX_CONNECTIONS {
            self.nids[usize::from(self.len)] = nid;
            self.len += 1;
        }
    }
}

/// Reads a widget's connection list: short form (four 8-bit entries per
/// response) or long form (two 16-bit entries); an entry with its top bit
/// set closes a range that starts at the entry before it.
pub fn connections(
    bus: &mut impl Commands,
    cad: Cad,
    nid: Nid,
    caps: u32,
) -> Result<Connections, CodecError> {
    let mut list = Connections::default();
    if caps & WCAP_CONN_LIST == 0 {
        return Ok(list);
    }
    let info = bus.command(Verb::get_parameter(cad, nid, PARAM_CONN_LIST_LEN))?;
    let long = info & 0x80 != 0;
    let len = info & 0x7f;
    let (per, bits) = if long { (2, 16) } else { (4, 8) };
    let bad = CodecError::BadConnectionList(nid.0);
    let mut prev: Option<u32> = None;
    let mut index = 0;
    while index < len {
        let word = bus.command(Verb::get_connection_list(cad, nid, index as u8))?;
        for k in 0..per.min(len - index) {
            let entry = word >> (k * bits) & ((1 << bits) - 1);
            let range = entry >> (bits - 1) != 0;
            let id = entry & ((1 << (bits - 1)) - 1);
            if id > 127 {
                return Err(bad);
            }
            match (range, prev) {
                (true, Some(first)) if first < id => {
                    for n in first + 1..=id.min(first + MAX_CONNECTIONS as u32) {
                        list.push(n as u8);
                    }
                }
                (true, _) => return Err(bad),
                (false, _) => list.push(id as u8),
            }
            prev = Some(id);
        }
        index += per;
    }
    Ok(list)
}

/// What the walk found: a pin, the DAC feeding it and what lies between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputPath {
    /// The codec.
    pub cad: Cad,
    /// Its audio function group.
    pub afg: Nid,
    /// Widgets from the pin (first) to the DAC (last).
    hops: [Hop; MAX_HOPS],
    len: u8,
    /// The pin's Configuration Default (§7.3.3.31).
    pub pin_config: u32,
    /// The pin's capabilities.
    pub pin_caps: u32,
}

/// One widget of a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hop {
    /// Its node ID.
    pub nid: u8,
    /// Its audio widget capabilities.
    pub caps: u32,
    /// Index, in its connection list, of the next widget towards the DAC.
    pub select: u8,
    /// Length of its connection list.
    pub connections: u8,
}

impl OutputPath {
    /// The widgets, pin first, DAC last.
    pub fn hops(&self) -> &[Hop] {
        &self.hops[..usize::from(self.len)]
    }

    /// The pin complex.
    pub fn pin(&self) -> Nid {
        Nid(self.hops[0].nid)
    }

    /// The output converter.
    pub fn dac(&self) -> Nid {
        Nid(self.hops[usize::from(self.len) - 1].nid)
    }
}

/// The nodes `parent` says it has, checked to lie within 0..128.
fn subnodes(
    bus: &mut impl Commands,
    cad: Cad,
    parent: Nid,
) -> Result<core::ops::Range<u8>, CodecError> {
    let count = bus.command(Verb::get_parameter(cad, parent, PARAM_NODE_COUNT))?;
    let (first, n) = (count >> 16 & 0xff, count & 0xff);
    if first + n > 128 {
        return Err(CodecError::BadNodeRange);
    }
    Ok(first as u8..(first + n) as u8)
}

/// The first audio function group of codec `cad`.
pub fn audio_function(bus: &mut impl Commands, cad: Cad) -> Result<Nid, CodecError> {
    for fg in subnodes(bus, cad, Nid::ROOT)? {
        let kind = bus.command(Verb::get_parameter(cad, Nid(fg), PARAM_FUNCTION_TYPE))?;
        if kind & 0xff == FUNCTION_AUDIO {
            return Ok(Nid(fg));
        }
    }
    Err(CodecError::NoAudioFunction)
}

/// Walks codec `cad` for an output path whose DAC plays `format`. Pins
/// that can output and are connected to something (Configuration Default
/// port connectivity is not "none") are tried line-out first, then speaker,
/// then headphone, then the rest; for each, the connection graph is searched
/// depth-first through mixers and selectors, at most [`MAX_HOPS`] widgets.
pub fn find_output_path(
    bus: &mut impl Commands,
    cad: Cad,
    format: PcmFormat,
) -> Result<OutputPath, CodecError> {
    let afg = audio_function(bus, cad)?;
    let widgets = subnodes(bus, cad, afg)?;
    let mut caps = [0u32; 128];
    for nid in widgets.clone() {
        caps[usize::from(nid)] =
            bus.command(Verb::get_parameter(cad, Nid(nid), PARAM_WIDGET_CAPS))?;
    }
    let mut walk = Walk { cad, afg, caps: &caps, widgets, format };
    // Default device (bits 23:20): 0 line out, 1 speaker, 2 headphone out.
    for wanted in [Some(0), Some(1), Some(2), None] {
        for pin in walk.widgets.clone() {
            let c = caps[usize::from(pin)];
            if WidgetType::of(c) != WidgetType::Pin {
                continue;
            }
            let pin_caps = bus.command(Verb::get_parameter(cad, Nid(pin), PARAM_PIN_CAPS))?;
            let config = bus.command(Verb::get_config_default(cad, Nid(pin)))?;
            let device = config >> 20 & 0xf;
            let unconnected = config >> 30 == 1;
            if pin_caps & PINCAP_OUTPUT == 0 || unconnected {
                continue;
            }
            if wanted.is_some_and(|w| w != device) || (wanted.is_none() && device <= 2) {
                continue;
            }
            let mut path = OutputPath {
                cad,
                afg,
                hops: [Hop::default(); MAX_HOPS],
                len: 0,
                pin_config: config,
                pin_caps,
            };
            if walk.search(bus, Nid(pin), &mut path)? {
                return Ok(path);
            }
        }
    }
    Err(CodecError::NoOutputPath)
}

struct Walk<'a> {
    cad: Cad,
    afg: Nid,
    caps: &'a [u32; 128],
    widgets: core::ops::Range<u8>,
    format: PcmFormat,
}

impl Walk<'_> {
    /// Depth-first from `nid` (already checked to be a widget) to a DAC that
    /// plays the format; on success `path` holds the hops.
    fn search(
        &mut self,
        bus: &mut impl Commands,
        nid: Nid,
        path: &mut OutputPath,
    ) -> Result<bool, CodecError> {
        let caps = self.caps[usize::from(nid.0)];
        let depth = usize::from(path.len);
        if depth == MAX_HOPS || path.hops().iter().any(|h| h.nid == nid.0) {
            return Ok(false);
        }
        let kind = WidgetType::of(caps);
        path.hops[depth] = Hop { nid: nid.0, caps, select: 0, connections: 0 };
        path.len += 1;
        if kind == WidgetType::Output {
            if self.plays_format(bus, nid, caps)? {
                return Ok(true);
            }
        } else if depth == 0 || matches!(kind, WidgetType::Mixer | WidgetType::Selector) {
            let list = connections(bus, self.cad, nid, caps)?;
            path.hops[depth].connections = list.len;
            for (i, &next) in list.as_slice().iter().enumerate() {
                if !self.widgets.contains(&next) {
                    continue;
                }
                path.hops[depth].select = i as u8;
                if self.search(bus, Nid(next), path)? {
                    return Ok(true);
                }
            }
        }
        path.len -= 1;
        Ok(false)
    }

    /// Whether the DAC takes the format: its own PCM parameters where it
    /// overrides the function group's, else the group's (§7.3.4.7).
    fn plays_format(
        &self,
        bus: &mut impl Commands,
        dac: Nid,
        caps: u32,
    ) -> Result<bool, CodecError> {
        let node = if caps & WCAP_FORMAT_OVERRIDE != 0 { dac } else { self.afg };
        let pcm = bus.command(Verb::get_parameter(self.cad, node, PARAM_PCM))?;
        let formats = bus.command(Verb::get_parameter(self.cad, node, PARAM_STREAM_FORMATS))?;
        Ok(formats & 1 != 0 && self.format.supported_by(pcm))
    }
}

/// Amplifier capabilities of `nid` (its own where it overrides the
/// function group's, §7.3.4.10).
fn amp_caps(
    bus: &mut impl Commands,
    path: &OutputPath,
    nid: Nid,
    caps: u32,
    param: u8,
) -> Result<u32, CommandError> {
    let node = if caps & WCAP_AMP_OVERRIDE != 0 { nid } else { path.afg };
    bus.command(Verb::get_parameter(path.cad, node, param))
}

/// Sets the path up to play a stream: everything powered to D0; the DAC
/// given the format and the stream tag (channel 0); mixers' inputs on the
/// path and every output amplifier unmuted at 0 dB; selectors and the pin
/// pointed along the path; the pin's output (and headphone amplifier, for a
/// headphone jack) and EAPD enabled.
pub fn configure_output(
    bus: &mut impl Commands,
    path: &OutputPath,
    format: u16,
    stream_tag: u8,
) -> Result<(), CommandError> {
    let cad = path.cad;
    bus.command(Verb::set_power_state(cad, path.afg, 0))?;
    let dac = path.dac();
    for (i, hop) in path.hops().iter().enumerate() {
        let nid = Nid(hop.nid);
        bus.command(Verb::set_power_state(cad, nid, 0))?;
        let kind = WidgetType::of(hop.caps);
        let towards_dac = i + 1 < path.hops().len();
        if towards_dac && hop.connections > 1 && kind != WidgetType::Mixer {
            bus.command(Verb::set_connection_select(cad, nid, hop.select))?;
        }
        if towards_dac && kind == WidgetType::Mixer && hop.caps & WCAP_IN_AMP != 0 {
            let amp = amp_caps(bus, path, nid, hop.caps, PARAM_IN_AMP_CAPS)?;
            bus.command(Verb::set_amp(cad, nid, AmpSet::unmuted_0db(false, hop.select, amp)))?;
        }
        if hop.caps & WCAP_OUT_AMP != 0 {
            let amp = amp_caps(bus, path, nid, hop.caps, PARAM_OUT_AMP_CAPS)?;
            bus.command(Verb::set_amp(cad, nid, AmpSet::unmuted_0db(true, 0, amp)))?;
        }
    }
    bus.command(Verb::set_format(cad, dac, format))?;
    bus.command(Verb::set_stream_channel(cad, dac, stream_tag, 0))?;
    let headphone = path.pin_config >> 20 & 0xf == 2 && path.pin_caps & PINCAP_HP_DRIVE != 0;
    let control = PIN_OUT_ENABLE | if headphone { PIN_HP_ENABLE } else { 0 };
    bus.command(Verb::set_pin_control(cad, path.pin(), control))?;
    if path.pin_caps & PINCAP_EAPD != 0 {
        bus.command(Verb::set_eapd(cad, path.pin(), 0x02))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeCodec, NodeSpec};
    use super::*;

    fn cad0() -> Cad {
        Cad::new(0).unwrap()
    }

    #[test]
    fn verb_words_follow_the_spec_layout() {
        let (cad, nid) = (Cad::new(2).unwrap(), Nid::new(0x14).unwrap());
        assert_eq!(Verb::get_parameter(cad, nid, PARAM_NODE_COUNT).word(), 0x214f_0004);
        assert_eq!(Verb::set_stream_channel(cad, nid, 1, 0).word(), 0x2147_0610);
        assert_eq!(Verb::set_pin_control(cad, nid, PIN_OUT_ENABLE).word(), 0x2147_0740);
        assert_eq!(Verb::set_format(cad, nid, 0x0011).word(), 0x2142_0011);
        let amp = AmpSet { output: true, index: 0, mute: false, gain: 0x4a };
        assert_eq!(Verb::set_amp(cad, nid, amp).word(), 0x2143_b04a);
        let amp = AmpSet { output: false, index: 3, mute: true, gain: 0 };
        assert_eq!(Verb::set_amp(cad, nid, amp).word(), 0x2143_7380);
        assert_eq!(Verb::get_config_default(cad, nid).word(), 0x214f_1c00);
        assert_eq!(Verb::set_power_state(cad, nid, 0).cad(), cad);
        assert_eq!((Cad::new(15), Nid::new(128)), (None, None));
    }

    #[test]
    fn amp_at_0db_is_the_offset_step_clamped_to_the_steps() {
        // QEMU's DAC: offset 0x4a, 0x4a steps, step size 3, mute capable.
        assert_eq!(AmpSet::unmuted_0db(true, 0, 0x8003_4a4a).gain, 0x4a);
        assert_eq!(AmpSet::unmuted_0db(true, 0, 0x0000_1f7f).gain, 0x1f);
    }

    #[test]
    fn walks_qemus_hda_output_codec() {
        let mut codec = FakeCodec::qemu_output(0);
        let path = find_output_path(&mut codec, cad0(), PcmFormat::S16_STEREO_48K).unwrap();
        assert_eq!((path.afg.get(), path.pin().get(), path.dac().get()), (1, 3, 2));
        assert_eq!(path.hops().len(), 2);
        configure_output(&mut codec, &path, 0x0011, 1).unwrap();
        let dac = codec.node(2);
        assert_eq!((dac.format, dac.stream, dac.power), (Some(0x0011), Some(0x10), Some(0)));
        assert_eq!(dac.out_amp, Some((false, 0x4a)), "unmuted at 0 dB");
        let pin = codec.node(3);
        assert_eq!((pin.pin_control, pin.power, pin.select), (Some(0x40), Some(0), None));
        assert_eq!(pin.out_amp, None, "the pin has no amplifier");
        assert_eq!(codec.node(1).power, Some(0), "the function group is powered");
    }

    #[test]
    fn prefers_line_out_and_goes_through_a_mixer_and_selector() {
        let mut codec = FakeCodec::realtek_like(0);
        let path = find_output_path(&mut codec, cad0(), PcmFormat::S16_STEREO_48K).unwrap();
        let nids: std::vec::Vec<u8> = path.hops().iter().map(|h| h.nid).collect();
        // 0x14 line out -> selector 0x0f (2nd input) -> mixer 0x0c (input 1) -> DAC 0x03.
        assert_eq!(nids, [0x14, 0x0f, 0x0c, 0x03]);
        configure_output(&mut codec, &path, 0x0011, 3).unwrap();
        assert_eq!(codec.node(0x0f).select, Some(1));
        assert_eq!(codec.node(0x0c).in_amps, [(1, false, 0x1f)], "only the path's input");
        assert_eq!(codec.node(0x03).stream, Some(0x30));
        assert_eq!(codec.node(0x14).eapd, Some(2));
        assert_eq!(codec.node(0x14).pin_control, Some(PIN_OUT_ENABLE));
    }

    #[test]
    fn headphone_only_codec_gets_the_headphone_amplifier() {
        let mut codec = FakeCodec::new(0, 1);
        codec.add(NodeSpec::dac(2));
        codec.add(NodeSpec::pin(3, 2, &[2]).hp_capable());
        let path = find_output_path(&mut codec, cad0(), PcmFormat::S16_STEREO_48K).unwrap();
        configure_output(&mut codec, &path, 0x0011, 1).unwrap();
        assert_eq!(codec.node(3).pin_control, Some(PIN_OUT_ENABLE | PIN_HP_ENABLE));
    }

    #[test]
    fn expands_ranges_and_long_form_connection_lists() {
        let mut codec = FakeCodec::new(0, 1);
        // Short form: 2, then a range 5..=8, then 0x20.
        codec.add(NodeSpec::mixer(0x10, &[2, 5, 0x88, 0x20]));
        codec.add(NodeSpec::mixer(0x11, &[0x0003, 0x8006, 0x0009]).long_form());
        let caps = WCAP_CONN_LIST | 2 << 20;
        let (cad, n10, n11) = (cad0(), Nid::new(0x10).unwrap(), Nid::new(0x11).unwrap());
        let list = connections(&mut codec, cad, n10, caps).unwrap();
        assert_eq!(list.as_slice(), [2, 5, 6, 7, 8, 0x20]);
        let list = connections(&mut codec, cad, n11, caps).unwrap();
        assert_eq!(list.as_slice(), [3, 4, 5, 6, 9]);
    }

    #[test]
    fn malformed_connection_lists_are_errors() {
        let mut codec = FakeCodec::new(0, 1);
        codec.add(NodeSpec::mixer(0x10, &[0x85])); // a range with no start
        codec.add(NodeSpec::mixer(0x11, &[6, 0x83])); // a range running backwards
        codec.add(NodeSpec::mixer(0x12, &[0x0100]).long_form()); // node 256
        let caps = WCAP_CONN_LIST | 2 << 20;
        for n in [0x10, 0x11, 0x12] {
            let got = connections(&mut codec, cad0(), Nid::new(n).unwrap(), caps);
            assert_eq!(got, Err(CodecError::BadConnectionList(n as u8)));
        }
    }

    #[test]
    fn a_huge_connection_list_is_cut_at_the_bound() {
        let mut codec = FakeCodec::new(0, 1);
        codec.add(NodeSpec::mixer(0x10, &[1, 0xff])); // 1..=127
        let list =
            connections(&mut codec, cad0(), Nid::new(0x10).unwrap(), WCAP_CONN_LIST).unwrap();
        assert_eq!(list.as_slice().len(), MAX_CONNECTIONS);
    }

    #[test]
    fn a_loop_in_the_graph_ends_the_search() {
        let mut codec = FakeCodec::new(0, 1);
        codec.add(NodeSpec::pin(3, 0, &[4]));
        codec.add(NodeSpec::mixer(4, &[5]));
        codec.add(NodeSpec::mixer(5, &[4]));
        let got = find_output_path(&mut codec, cad0(), PcmFormat::S16_STEREO_48K);
        assert_eq!(got, Err(CodecError::NoOutputPath));
    }

    #[test]
    fn unconnected_and_input_only_pins_and_wrong_format_dacs_are_skipped() {
        let mut codec = FakeCodec::new(0, 1);
        codec.add(NodeSpec::dac(2).pcm(1 << 17 | 1 << 5)); // 44.1 kHz only
        codec.add(NodeSpec::dac(3));
        codec.add(NodeSpec::pin(4, 0, &[3]).config(0x4000_0000)); // port: no connection
        codec.add(NodeSpec::pin(5, 0, &[3]).input_only());
        codec.add(NodeSpec::pin(6, 1, &[2]));
        codec.add(NodeSpec::pin(7, 5, &[2, 3]));
        let path = find_output_path(&mut codec, cad0(), PcmFormat::S16_STEREO_48K).unwrap();
        assert_eq!((path.pin().get(), path.dac().get(), path.hops()[0].select), (7, 3, 1));
        configure_output(&mut codec, &path, 0x0011, 1).unwrap();
        assert_eq!(codec.node(7).select, Some(1), "a pin with two inputs is pointed at the DAC");
    }

    #[test]
    fn node_counts_past_127_and_missing_function_groups_are_errors() {
        let mut codec = FakeCodec::new(0, 1);
        codec.set_param(1, PARAM_NODE_COUNT, 0x0070_0020);
        let got = find_output_path(&mut codec, cad0(), PcmFormat::S16_STEREO_48K);
        assert_eq!(got, Err(CodecError::BadNodeRange));
        let mut codec = FakeCodec::new(0, 1);
        codec.set_param(1, PARAM_FUNCTION_TYPE, 0x02); // a modem function group
        assert_eq!(audio_function(&mut codec, cad0()), Err(CodecError::NoAudioFunction));
    }

    #[test]
    fn a_silent_codec_is_a_timeout() {
        let mut codec = FakeCodec::qemu_output(0);
        codec.silent = true;
        let got = find_output_path(&mut codec, cad0(), PcmFormat::S16_STEREO_48K);
        assert_eq!(got, Err(CodecError::Command(CommandError::Timeout)));
    }
}
