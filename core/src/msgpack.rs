//! The few msgpack operations Ferry's messages need, on borrowed slices: decoding never
//! allocates and never trusts a length it has not checked against what is left.

use std::io::Write;

use rmp::Marker;

/// A msgpack value was not what the message format requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed msgpack: expected {expected}")]
pub struct DecodeError {
    /// What the decoder was looking for.
    pub expected: &'static str,
}

const fn expected(expected: &'static str) -> DecodeError {
    DecodeError { expected }
}

/// Reads msgpack values from the front of a borrowed slice.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<Marker> {
        self.rest.first().map(|&b| Marker::from_u8(b))
    }

    pub(crate) fn map_len(&mut self) -> Result<u32, DecodeError> {
        rmp::decode::read_map_len(&mut self.rest).map_err(|_| expected("a map"))
    }

    pub(crate) fn array_len(&mut self) -> Result<u32, DecodeError> {
        rmp::decode::read_array_len(&mut self.rest).map_err(|_| expected("an array"))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        rmp::decode::read_bool(&mut self.rest).map_err(|_| expected("a boolean"))
    }

    pub(crate) fn sint(&mut self) -> Result<i64, DecodeError> {
        rmp::decode::read_int(&mut self.rest).map_err(|_| expected("an integer"))
    }

    pub(crate) fn uint(&mut self) -> Result<u64, DecodeError> {
        rmp::decode::read_int(&mut self.rest).map_err(|_| expected("an unsigned integer"))
    }

    /// Takes `len` bytes, or fails if fewer remain (the length came from the peer).
    fn take(&mut self, len: u32, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = len as usize;
        if len > self.rest.len() {
            return Err(expected(what));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    pub(crate) fn bin(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = rmp::decode::read_bin_len(&mut self.rest).map_err(|_| expected("binary data"))?;
        self.take(len, "binary data as long as its header says")
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = rmp::decode::read_str_len(&mut self.rest).map_err(|_| expected("a string"))?;
        let bytes = self.take(len, "a string as long as its header says")?;
        core::str::from_utf8(bytes).map_err(|_| expected("UTF-8 text"))
    }

    /// `nil`, or binary data.
    pub(crate) fn optional_bin(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        if self.peek() == Some(Marker::Null) {
            self.rest = &self.rest[1..];
            return Ok(None);
        }
        self.bin().map(Some)
    }

    /// Skips one scalar value of any kind (an unknown key's value). Containers are refused,
    /// so a hostile nesting depth cannot cost anything.
    pub(crate) fn skip_scalar(&mut self) -> Result<(), DecodeError> {
        match self.peek() {
            Some(Marker::Null | Marker::True | Marker::False) => {
                self.rest = &self.rest[1..];
                Ok(())
            }
            Some(Marker::Bin8 | Marker::Bin16 | Marker::Bin32) => self.bin().map(drop),
            Some(Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32) => {
                self.str().map(drop)
            }
            Some(
                Marker::FixPos(_)
                | Marker::U8
                | Marker::U16
                | Marker::U32
                | Marker::U64
                | Marker::FixNeg(_)
                | Marker::I8
                | Marker::I16
                | Marker::I32
                | Marker::I64,
            ) => rmp::decode::read_int::<i128, _>(&mut self.rest)
                .map(drop)
                .map_err(|_| expected("an integer")),
            _ => Err(expected("a scalar value")),
        }
    }
}

/// Counts bytes instead of storing them, to size a message before sealing it.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The output buffer was shorter than the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("output buffer too small: {needed} bytes needed")]
pub struct BufferTooSmall {
    /// Bytes the whole message needs.
    pub needed: usize,
}

/// Runs `encode` once to size it and once into `out`; returns the bytes written.
pub(crate) fn encode_into(
    out: &mut [u8],
    encode: impl Fn(&mut dyn Write) -> std::io::Result<()>,
) -> Result<usize, BufferTooSmall> {
    let needed = encoded_len(&encode);
    if needed > out.len() {
        return Err(BufferTooSmall { needed });
    }
    let mut cursor = &mut out[..needed];
    encode(&mut cursor).map_err(|_| BufferTooSmall { needed })?;
    Ok(needed)
}

/// The number of bytes `encode` writes.
pub(crate) fn encoded_len(encode: impl Fn(&mut dyn Write) -> std::io::Result<()>) -> usize {
    let mut counter = Counter::default();
    // Writing to a counter cannot fail.
    let _ = encode(&mut counter);
    counter.0
}

/// Writes `key` then an unsigned integer in the smallest form, as umsgpack does.
pub(crate) fn write_uint_field(
    mut out: &mut dyn Write,
    key: &str,
    value: u64,
) -> std::io::Result<()> {
    rmp::encode::write_str(&mut out, key)?;
    rmp::encode::write_uint(&mut out, value)?;
    Ok(())
}

/// Writes `key` then binary data in the smallest bin form, as umsgpack does.
pub(crate) fn write_bin_field(
    mut out: &mut dyn Write,
    key: &str,
    value: &[u8],
) -> std::io::Result<()> {
    rmp::encode::write_str(&mut out, key)?;
    rmp::encode::write_bin(&mut out, value)?;
    Ok(())
}
