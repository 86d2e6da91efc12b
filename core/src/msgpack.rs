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

/// The subset against `rmpv`, rmp's generic decoder: for every input, each of the
/// [`Reader`]'s operations succeeds exactly when `rmpv` reads a value of that kind from the
/// same bytes, with the same value and the same number of bytes consumed.
#[cfg(test)]
mod differential {
    use super::Reader;
    use crate::entropy::{Entropy, SeededEntropy};
    use rmpv::Value;

    /// What `rmpv` reads from the front of `bytes`, and how many bytes that took.
    /// One difference is by design: `rmpv` reads the byte the spec reserves as "never
    /// used" (0xc1) as nil; the subset refuses it, as the spec says.
    fn generic(bytes: &[u8]) -> Option<(Value, usize)> {
        if bytes.first() == Some(&0xc1) {
            return None;
        }
        let mut rest = bytes;
        let value = rmpv::decode::read_value_with_max_depth(&mut rest, 8).ok()?;
        Some((value, bytes.len() - rest.len()))
    }

    /// Runs one subset operation; returns its result and the bytes it consumed.
    fn subset<'a, T>(
        bytes: &'a [u8],
        op: impl FnOnce(&mut Reader<'a>) -> Result<T, super::DecodeError>,
    ) -> Option<(T, usize)> {
        let mut reader = Reader::new(bytes);
        let value = op(&mut reader).ok()?;
        Some((value, bytes.len() - reader.rest.len()))
    }

    /// Binary data only (`rmpv`'s `as_slice` takes strings too).
    fn binary(value: &Value) -> Option<&[u8]> {
        match value {
            Value::Binary(bytes) => Some(bytes),
            _ => None,
        }
    }

    fn compare(bytes: &[u8]) {
        let generic = generic(bytes);
        let kind = |f: fn(&Value) -> bool| generic.as_ref().filter(|(v, _)| f(v));
        let int_as = |f: fn(&rmpv::Integer) -> bool| {
            generic.as_ref().and_then(|(v, n)| match v {
                Value::Integer(i) if f(i) => Some((*i, *n)),
                _ => None,
            })
        };
        let hex = hex::encode(bytes);
        // Integers: as unsigned and as signed, by value.
        assert_eq!(
            subset(bytes, Reader::uint),
            int_as(|i| i.as_u64().is_some()).and_then(|(i, n)| Some((i.as_u64()?, n))),
            "uint of {hex}"
        );
        assert_eq!(
            subset(bytes, Reader::sint),
            int_as(|i| i.as_i64().is_some()).and_then(|(i, n)| Some((i.as_i64()?, n))),
            "sint of {hex}"
        );
        assert_eq!(
            subset(bytes, Reader::bool),
            kind(Value::is_bool).map(|(v, n)| (v.as_bool() == Some(true), *n)),
            "bool of {hex}"
        );
        assert_eq!(
            subset(bytes, |r| r.bin().map(<[u8]>::to_vec)),
            generic
                .as_ref()
                .and_then(|(v, n)| Some((binary(v)?.to_vec(), *n))),
            "bin of {hex}"
        );
        assert_eq!(
            subset(bytes, |r| r.str().map(str::to_owned)),
            kind(|v| v.as_str().is_some())
                .map(|(v, n)| (v.as_str().unwrap_or_default().to_owned(), *n)),
            "str of {hex}"
        );
        assert_eq!(
            subset(bytes, |r| r.optional_bin().map(|b| b.map(<[u8]>::to_vec))),
            kind(|v| v.is_nil() || binary(v).is_some())
                .map(|(v, n)| (binary(v).map(<[u8]>::to_vec), *n)),
            "optional bin of {hex}"
        );
        // A scalar of the kinds a message may carry under an unknown key: floats and
        // extensions are refused, and a string must be text.
        let scalar = kind(|v| {
            v.is_nil()
                || v.is_bool()
                || v.is_i64()
                || v.is_u64()
                || binary(v).is_some()
                || v.as_str().is_some()
        });
        assert_eq!(
            subset(bytes, Reader::skip_scalar),
            scalar.map(|(_, n)| ((), *n)),
            "scalar of {hex}"
        );
        // Containers: the subset reads only the header, so where the generic decoder reads
        // the whole container their lengths must agree.
        if let Some((Value::Map(entries), _)) = &generic {
            assert_eq!(
                subset(bytes, Reader::map_len).map(|(n, _)| n as usize),
                Some(entries.len()),
                "map of {hex}"
            );
        }
        if let Some((Value::Array(items), _)) = &generic {
            assert_eq!(
                subset(bytes, Reader::array_len).map(|(n, _)| n as usize),
                Some(items.len()),
                "array of {hex}"
            );
        }
        if generic.as_ref().is_some_and(|(v, _)| !v.is_map()) {
            assert!(subset(bytes, Reader::map_len).is_none(), "map of {hex}");
        }
        if generic.as_ref().is_some_and(|(v, _)| !v.is_array()) {
            assert!(subset(bytes, Reader::array_len).is_none(), "array of {hex}");
        }
    }

    /// A random value of the kinds msgpack has, written by `rmpv` in whatever form it
    /// chooses, then cut or flipped now and then.
    fn random_input(entropy: &mut SeededEntropy) -> Vec<u8> {
        let mut b = [0u8; 16];
        entropy.fill(&mut b);
        let int = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let len = usize::from(b[9]) % 40;
        let mut blob = vec![0u8; len];
        entropy.fill(&mut blob);
        // Lengths near the format's boundaries: 31 / 32 (fixstr), 255 / 256 (8-bit).
        let edge = [0usize, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536][usize::from(b[10]) % 10];
        let value = match b[8] % 12 {
            0 => Value::Nil,
            1 => Value::Boolean(int & 1 == 1),
            2 => Value::from(int >> (b[11] % 64)),
            3 => Value::from(-((int >> (b[11] % 63 + 1)) as i64) - 1),
            4 => Value::Binary(blob.clone()),
            5 => Value::Binary(vec![7; edge]),
            6 => Value::from(String::from_utf8_lossy(&blob).into_owned()),
            7 => Value::from("é".repeat(edge / 2)),
            8 => Value::F64(f64::from_bits(int)),
            9 => Value::Ext(b[11] as i8, blob.clone()),
            10 => Value::Map(vec![(Value::from("n"), Value::from(int)); len % 5]),
            _ => Value::Array(vec![Value::from(int); len % 5]),
        };
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).unwrap_or_default();
        match b[12] % 8 {
            0 if !out.is_empty() => out.truncate(usize::from(b[13]) % out.len()),
            1 if !out.is_empty() => {
                let at = usize::from(b[13]) % out.len();
                out[at] ^= b[14] | 1;
            }
            2 => {
                // Raw bytes whose first is any marker.
                out = blob;
                out.insert(0, b[13]);
            }
            _ => {}
        }
        out
    }

    #[test]
    fn the_subset_agrees_with_rmps_generic_decoder() {
        let mut entropy = SeededEntropy::new(0x3C);
        for _ in 0..20_000 {
            compare(&random_input(&mut entropy));
        }
        // Every marker byte, alone and with what might follow.
        for marker in 0..=255u8 {
            compare(&[marker]);
            compare(&[marker, 0, 0, 0, 1, 0x61, 0x62, 0x63, 0x64, 0, 0]);
        }
        // Non-minimal forms the peer may use: a small number as u64, a short bin as bin16.
        compare(&[0xcf, 0, 0, 0, 0, 0, 0, 0, 5]);
        compare(&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        compare(&[0xc5, 0, 2, 1, 2]);
        compare(&[0xda, 0, 1, b'x']);
    }
}
