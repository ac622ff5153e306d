//! The one decode/encode trait pair every binary format in this crate implements, and the
//! offset-tracking [`Reader`] they decode from.
//!
//! After rustls' `Codec` and der's `Decode`/`Encode`: decoding never panics and never
//! allocates more than the input could justify, every read names its endianness, and every
//! error carries the byte offset at which the input stopped making sense.

use std::fmt;

/// A binary format that decodes from a [`Reader`] and encodes to a byte vector.
pub trait Codec<'a>: Sized {
    /// Decodes one value from `r`, advancing it past the bytes consumed.
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError>;

    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Decodes a value that must span all of `bytes` (trailing bytes are an error).
    fn from_bytes(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.expect_end(std::any::type_name::<Self>())?;
        Ok(v)
    }

    /// The encoding of `self` as a new vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Why bytes failed to decode, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte offset {offset}: {kind}")]
#[non_exhaustive]
pub struct DecodeError {
    /// What was being decoded ("template name length", "signature header", ...).
    pub what: &'static str,
    /// Absolute byte offset (from the start of the outermost input) of the offending item.
    pub offset: usize,
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// An error of `kind` about `what` at the absolute `offset` (for a field judged after it
    /// was read, so that the error points at its start rather than past it).
    pub fn at(what: &'static str, offset: usize, kind: DecodeErrorKind) -> Self {
        Self { what, offset, kind }
    }

    /// An [`DecodeErrorKind::Invalid`] error about `what` at the absolute `offset`.
    pub fn invalid_at(what: &'static str, offset: usize, msg: impl Into<String>) -> Self {
        Self::at(what, offset, DecodeErrorKind::Invalid(msg.into()))
    }
}

/// The kinds of [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended: `needed` more bytes were expected, `available` were left.
    Truncated { needed: usize, available: usize },
    /// A length field exceeds what the format allows.
    TooLong { len: usize, max: usize },
    /// Bytes remain after a value that must span its whole input.
    TrailingBytes { count: usize },
    /// A value is well-framed but not valid here; the text says what was expected.
    Invalid(String),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: needed {needed} bytes, {available} left")
            }
            Self::TooLong { len, max } => write!(f, "length {len} exceeds the maximum {max}"),
            Self::TrailingBytes { count } => write!(f, "{count} unexpected trailing bytes"),
            Self::Invalid(msg) => f.write_str(msg),
        }
    }
}

/// A cursor over a byte slice that knows its absolute offset.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the outermost input, so sub-readers report absolute offsets.
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// A reader over `buf` whose offsets start at `base` (for inputs read in pieces).
    pub fn with_base(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Absolute offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// An error of `kind` at the current offset.
    pub fn error(&self, what: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            what,
            offset: self.offset(),
            kind,
        }
    }

    /// An [`DecodeErrorKind::Invalid`] error at the current offset.
    pub fn invalid(&self, what: &'static str, msg: impl Into<String>) -> DecodeError {
        self.error(what, DecodeErrorKind::Invalid(msg.into()))
    }

    /// Consumes exactly `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error(
                what,
                DecodeErrorKind::Truncated {
                    needed: n,
                    available: self.remaining(),
                },
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Consumes `n` bytes and returns a reader over them that reports absolute offsets.
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        let base = self.offset();
        let buf = self.take(n, what)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// Consumes the rest of the input.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub fn u16_be(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_be_bytes)
    }

    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub fn u32_be(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_le_bytes)
    }

    pub fn u64_be(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_be_bytes)
    }

    /// A `u32` length in the given byte order, checked against `max` and against the bytes
    /// left, so a hostile length can never cause a large allocation.
    pub fn len_u32(
        &mut self,
        order: Endian,
        max: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let at = self.offset();
        let len = match order {
            Endian::Little => self.u32_le(what)?,
            Endian::Big => self.u32_be(what)?,
        } as usize;
        if len > max {
            return Err(DecodeError {
                what,
                offset: at,
                kind: DecodeErrorKind::TooLong { len, max },
            });
        }
        if len > self.remaining() {
            return Err(DecodeError {
                what,
                offset: at,
                kind: DecodeErrorKind::Truncated {
                    needed: len,
                    available: self.remaining(),
                },
            });
        }
        Ok(len)
    }

    /// Fails with [`DecodeErrorKind::TrailingBytes`] unless the input is consumed.
    pub fn expect_end(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(
                what,
                DecodeErrorKind::TrailingBytes {
                    count: self.remaining(),
                },
            ))
        }
    }
}

/// Byte order of multi-byte integers in a format whose order is not fixed (the kernel writes
/// the measurement list in CPU order unless `ima_canonical_fmt` asks for little endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endian {
    #[default]
    Little,
    Big,
}

impl Endian {
    pub fn u32_bytes(self, v: u32) -> [u8; 4] {
        match self {
            Self::Little => v.to_le_bytes(),
            Self::Big => v.to_be_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_absolute_in_sub_readers() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut r = Reader::new(&data);
        r.take(2, "head").unwrap();
        let mut s = r.sub(4, "body").unwrap();
        assert_eq!(s.offset(), 2);
        assert_eq!(s.u16_be("x").unwrap(), 0x0304);
        let e = s.u32_le("y").unwrap_err();
        assert_eq!(e.offset, 4);
        assert_eq!(
            e.kind,
            DecodeErrorKind::Truncated {
                needed: 4,
                available: 2
            }
        );
        assert_eq!(r.offset(), 6);
    }

    #[test]
    fn len_u32_bounds() {
        let data = [0xff, 0xff, 0xff, 0x7f, 0, 0];
        let e = Reader::new(&data)
            .len_u32(Endian::Little, 1 << 20, "len")
            .unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::TooLong { .. }));
        let data = [3, 0, 0, 0, 9, 9];
        let e = Reader::new(&data)
            .len_u32(Endian::Little, 100, "len")
            .unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(matches!(
            e.kind,
            DecodeErrorKind::Truncated {
                needed: 3,
                available: 2
            }
        ));
        assert_eq!(
            e.to_string(),
            "len at byte offset 0: truncated: needed 3 bytes, 2 left"
        );
    }
}
