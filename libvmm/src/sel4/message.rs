//! `seL4_MessageInfo` and `seL4_Error`.

use core::fmt;

/// Corresponds to `seL4_MessageInfo_t`: `label[63:12] | capsUnwrapped[11:9] |
/// extraCaps[8:7] | length[6:0]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MessageInfo(u64);

/// The most message registers one message can carry (`seL4_MsgMaxLength`).
pub const MSG_MAX_LENGTH: usize = 120;

impl MessageInfo {
    /// A message with `label` and `length` message registers, no caps.
    pub const fn new(label: u64, length: usize) -> Self {
        let length = if length > MSG_MAX_LENGTH { MSG_MAX_LENGTH } else { length };
        MessageInfo((label << 12) | length as u64)
    }

    /// The raw word as passed in x1.
    pub const fn from_word(word: u64) -> Self {
        MessageInfo(word)
    }

    /// The raw word as passed in x1.
    pub const fn word(self) -> u64 {
        self.0
    }

    /// The label: the invocation label, fault type or error code.
    pub const fn label(self) -> u64 {
        self.0 >> 12
    }

    /// Number of message registers, clamped to `MSG_MAX_LENGTH`.
    pub const fn length(self) -> usize {
        let len = (self.0 & 0x7f) as usize;
        if len > MSG_MAX_LENGTH {
            MSG_MAX_LENGTH
        } else {
            len
        }
    }
}

/// Corresponds to `seL4_Error` (nonzero values).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum Error {
    /// `seL4_InvalidArgument`.
    InvalidArgument = 1,
    /// `seL4_InvalidCapability`.
    InvalidCapability = 2,
    /// `seL4_IllegalOperation`.
    IllegalOperation = 3,
    /// `seL4_RangeError`.
    RangeError = 4,
    /// `seL4_AlignmentError`.
    AlignmentError = 5,
    /// `seL4_FailedLookup`.
    FailedLookup = 6,
    /// `seL4_TruncatedMessage`.
    TruncatedMessage = 7,
    /// `seL4_DeleteFirst`.
    DeleteFirst = 8,
    /// `seL4_RevokeFirst`.
    RevokeFirst = 9,
    /// `seL4_NotEnoughMemory`.
    NotEnoughMemory = 10,
    /// A label the kernel does not define; kept rather than trusted.
    Unknown = u64::MAX,
}

impl Error {
    /// Turns a reply label into a result: 0 is success.
    pub const fn check(label: u64) -> Result<(), Error> {
        Err(match label {
            0 => return Ok(()),
            1 => Error::InvalidArgument,
            2 => Error::InvalidCapability,
            3 => Error::IllegalOperation,
            4 => Error::RangeError,
            5 => Error::AlignmentError,
            6 => Error::FailedLookup,
            7 => Error::TruncatedMessage,
            8 => Error::DeleteFirst,
            9 => Error::RevokeFirst,
            10 => Error::NotEnoughMemory,
            _ => Error::Unknown,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seL4 error {:?}", self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_info_packs_like_libsel4() {
        // seL4_MessageInfo_new(0x123, 1, 2, 5) == 0x123305 (shared_types.bf),
        // built here by hand since `new` sets no caps.
        let word = (0x123 << 12) | (1 << 9) | (2 << 7) | 5;
        assert_eq!(word, 0x123305);
        let info = MessageInfo::from_word(word);
        assert_eq!(info.label(), 0x123);
        assert_eq!(info.length(), 5);
        assert_eq!(MessageInfo::new(0x123, 5).word(), 0x123005);
    }

    #[test]
    fn length_is_clamped() {
        assert_eq!(MessageInfo::from_word(0x7f).length(), MSG_MAX_LENGTH);
        assert_eq!(MessageInfo::new(0, 500).length(), MSG_MAX_LENGTH);
    }

    #[test]
    fn error_labels_map_to_errors() {
        assert_eq!(Error::check(0), Ok(()));
        assert_eq!(Error::check(4), Err(Error::RangeError));
        assert_eq!(Error::check(8), Err(Error::DeleteFirst));
        assert_eq!(Error::check(77), Err(Error::Unknown));
    }
}
