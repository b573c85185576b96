//! Line labels for a shared console: the text `virt_tx` puts before each
//! line of a client's output, optionally in an ANSI colour.
//!
//! A label in colour is `ESC [ 3 n m`, the text, then `ESC [ 0 m` (SGR
//! "foreground colour n", then "reset"): only the label is coloured, the
//! client's own bytes pass untouched, so a harness that strips SGR
//! sequences, or that looks for the label and the line content apart, still
//! matches.

/// The longest label text, in bytes.
pub const MAX_TEXT: usize = 16;

/// `ESC [ 3 n m`: 5 bytes.
const COLOUR_ON_LEN: usize = 5;
/// `ESC [ 0 m`: SGR reset.
const COLOUR_OFF: &[u8] = b"\x1b[0m";
/// The longest label, colour included.
const MAX_LABEL: usize = COLOUR_ON_LEN + MAX_TEXT + COLOUR_OFF.len();
/// The line break `virt_tx` writes to end a line another client cut.
pub const LINE_BREAK: &[u8] = b"\r\n";
/// The longest header `virt_tx` writes before a line: a break and a label.
pub const MAX_HEADER: usize = LINE_BREAK.len() + MAX_LABEL;

/// An ANSI foreground colour (SGR 31 to 36).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// SGR 31.
    Red = 1,
    /// SGR 32.
    Green,
    /// SGR 33.
    Yellow,
    /// SGR 34.
    Blue,
    /// SGR 35.
    Magenta,
    /// SGR 36.
    Cyan,
}

/// The bytes written before each line of one client's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    bytes: [u8; MAX_LABEL],
    len: u8,
}

impl Label {
    /// `text` in `colour` (or plain). `None` if `text` is empty, longer than
    /// [`MAX_TEXT`], or holds a control byte (one would break the line
    /// structure the label marks).
    pub fn new(text: &[u8], colour: Option<Colour>) -> Option<Label> {
        if text.is_empty() || text.len() > MAX_TEXT || text.iter().any(u8::is_ascii_control) {
            return None;
        }
        let mut label = Label { bytes: [0; MAX_LABEL], len: 0 };
        if let Some(c) = colour {
            label.push(&[0x1b, b'[', b'3', b'0' + c as u8, b'm']);
        }
        label.push(text);
        if colour.is_some() {
            label.push(COLOUR_OFF);
        }
        Some(label)
    }

    /// The label's bytes, colour sequences included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.len);
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        // At most MAX_LABEL (26) bytes in all: the checks in `new`.
        self.len += bytes.len() as u8;
    }
}

/// What goes on the wire before a line: an optional line break, then an
/// optional label. At most [`MAX_HEADER`] bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl Header {
    pub(crate) fn new(line_break: bool, label: Option<&Label>) -> Header {
        let mut h = Header { bytes: [0; MAX_HEADER], len: 0 };
        let mut push = |b: &[u8]| {
            h.bytes[h.len..h.len + b.len()].copy_from_slice(b);
            h.len += b.len();
        };
        if line_break {
            push(LINE_BREAK);
        }
        if let Some(l) = label {
            push(l.as_bytes());
        }
        h
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coloured_label_wraps_only_its_text() {
        let l = Label::new(b"[vm1] ", Some(Colour::Green)).unwrap();
        assert_eq!(l.as_bytes(), b"\x1b[32m[vm1] \x1b[0m");
        assert_eq!(Label::new(b"[vm1] ", None).unwrap().as_bytes(), b"[vm1] ");
        let cyan = Label::new(b"x", Some(Colour::Cyan)).unwrap();
        assert_eq!(cyan.as_bytes(), b"\x1b[36mx\x1b[0m");
    }

    #[test]
    fn empty_long_or_control_texts_are_refused() {
        assert!(Label::new(b"", None).is_none());
        assert!(Label::new(&[b'a'; MAX_TEXT + 1], None).is_none());
        assert!(Label::new(&[b'a'; MAX_TEXT], Some(Colour::Red)).is_some());
        assert!(Label::new(b"a\nb", None).is_none());
        assert!(Label::new(b"\x1b[31m", None).is_none());
    }

    #[test]
    fn the_longest_header_fits() {
        let l = Label::new(&[b'a'; MAX_TEXT], Some(Colour::Magenta)).unwrap();
        let h = Header::new(true, Some(&l));
        assert_eq!(h.as_bytes().len(), MAX_HEADER);
        assert!(h.as_bytes().starts_with(b"\r\n\x1b[35maaaa"));
        assert!(Header::new(false, None).as_bytes().is_empty());
    }
}
