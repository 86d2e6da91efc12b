//! RNS 1.2.4 Resource messages, byte-compatible where Ferry and RNS overlap (PROTOCOL.md
//! §7): the advertisement (msgpack map, keys in RNS order t,d,n,h,r,o,i,l,q,f,m), the
//! request, the hashmap update, the proof and the two cancels. Decoding borrows from the
//! message and allocates nothing; every length is checked before it is used.

use std::io::Write;

use crate::msgpack::{self, BufferTooSmall, DecodeError, Reader};

/// Bytes in a map hash.
pub const MAP_HASH_LEN: usize = 4;
/// Bytes in a resource's random hash (`r`).
pub const RANDOM_HASH_LEN: usize = 4;
/// Bytes in a resource hash (`h`, `o`).
pub const RESOURCE_HASH_LEN: usize = 32;
/// The request flag saying the receiver has run out of map hashes.
pub const HASHMAP_EXHAUSTED: u8 = 0xff;
/// The request flag saying it has not.
pub const HASHMAP_NOT_EXHAUSTED: u8 = 0x00;

/// Advertisement flag bits (`f`), as RNS defines them.
pub mod flags {
    /// The parts are encrypted at the Resource level (RNS link encryption). Ferry's parts
    /// travel inside encrypted records instead, so Ferry leaves this bit clear.
    pub const ENCRYPTED: u8 = 1 << 0;
    /// The segment is bz2-compressed.
    pub const COMPRESSED: u8 = 1 << 1;
    /// The resource is split into several segments.
    pub const SPLIT: u8 = 1 << 2;
    /// The resource is a request (RNS request/response; unused by Ferry).
    pub const IS_REQUEST: u8 = 1 << 3;
    /// The resource is a response (unused by Ferry).
    pub const IS_RESPONSE: u8 = 1 << 4;
    /// The first segment starts with a metadata blob (unused by Ferry).
    pub const HAS_METADATA: u8 = 1 << 5;
}

/// Why a Resource message could not be decoded. Names the message and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not valid msgpack of the expected shape.
    #[error("{message}: {source}")]
    Msgpack {
        /// Which message.
        message: &'static str,
        /// What was wrong.
        source: DecodeError,
    },
    /// A required advertisement key is missing.
    #[error("advertisement lacks the {0:?} key")]
    MissingKey(char),
    /// A key appears twice.
    #[error("advertisement repeats the {0:?} key")]
    RepeatedKey(char),
    /// A field has the wrong length or an impossible value.
    #[error("{message}: {why}")]
    Invalid {
        /// Which message.
        message: &'static str,
        /// Which rule it broke.
        why: &'static str,
    },
    /// Too many map hashes in one message for the configured bound.
    #[error("{message} carries {count} map hashes, more than the limit of {max}")]
    TooManyMapHashes {
        /// Which message.
        message: &'static str,
        /// How many it carries.
        count: usize,
        /// The bound.
        max: usize,
    },
}

fn invalid(message: &'static str, why: &'static str) -> WireError {
    WireError::Invalid { message, why }
}

fn fixed<const N: usize>(
    bytes: &[u8],
    message: &'static str,
    why: &'static str,
) -> Result<[u8; N], WireError> {
    bytes.try_into().map_err(|_| invalid(message, why))
}

/// Checks that `hashmap` is whole map hashes and at most `max` of them.
fn check_hashmap(hashmap: &[u8], max: usize, message: &'static str) -> Result<(), WireError> {
    if !hashmap.len().is_multiple_of(MAP_HASH_LEN) {
        return Err(invalid(message, "hashmap length is not a multiple of 4"));
    }
    let count = hashmap.len() / MAP_HASH_LEN;
    if count > max {
        return Err(WireError::TooManyMapHashes {
            message,
            count,
            max,
        });
    }
    Ok(())
}

/// A resource advertisement (`RESOURCE_ADV`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertisement<'a> {
    /// `t`: bytes transferred (after compression).
    pub transfer_size: u64,
    /// `d`: bytes of data before compression.
    pub data_size: u64,
    /// `n`: number of parts.
    pub parts: u64,
    /// `h`: SHA-256(data ‖ random_hash).
    pub hash: [u8; RESOURCE_HASH_LEN],
    /// `r`: the random hash that salts map hashes and `h`.
    pub random_hash: [u8; RANDOM_HASH_LEN],
    /// `o`: the hash of the first segment of the same resource.
    pub original_hash: [u8; RESOURCE_HASH_LEN],
    /// `i`: 1-based segment index.
    pub segment_index: u64,
    /// `l`: total segments.
    pub total_segments: u64,
    /// `q`: RNS request id; Ferry sends `nil`.
    pub request_id: Option<&'a [u8]>,
    /// `f`: [`flags`].
    pub flags: u8,
    /// `m`: the first map hashes of the hashmap, 4 bytes each.
    pub hashmap: &'a [u8],
}

impl<'a> Advertisement<'a> {
    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut out = out;
        rmp::encode::write_map_len(&mut out, 11)?;
        msgpack::write_uint_field(out, "t", self.transfer_size)?;
        msgpack::write_uint_field(out, "d", self.data_size)?;
        msgpack::write_uint_field(out, "n", self.parts)?;
        msgpack::write_bin_field(out, "h", &self.hash)?;
        msgpack::write_bin_field(out, "r", &self.random_hash)?;
        msgpack::write_bin_field(out, "o", &self.original_hash)?;
        msgpack::write_uint_field(out, "i", self.segment_index)?;
        msgpack::write_uint_field(out, "l", self.total_segments)?;
        rmp::encode::write_str(&mut out, "q")?;
        match self.request_id {
            Some(id) => rmp::encode::write_bin(&mut out, id)?,
            None => rmp::encode::write_nil(&mut out)?,
        }
        msgpack::write_uint_field(out, "f", u64::from(self.flags))?;
        msgpack::write_bin_field(out, "m", self.hashmap)
    }

    /// Bytes [`Advertisement::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        msgpack::encoded_len(|out| self.write(out))
    }

    /// Writes the advertisement exactly as RNS 1.2.4 packs it.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        msgpack::encode_into(out, |w| self.write(w))
    }

    /// Reads an advertisement, accepting keys in any order (as RNS does) and refusing a
    /// hashmap of more than `max_map_hashes` entries.
    pub fn decode(bytes: &'a [u8], max_map_hashes: usize) -> Result<Self, WireError> {
        const MESSAGE: &str = "advertisement";
        let msgpack = |source| WireError::Msgpack {
            message: MESSAGE,
            source,
        };
        let mut reader = Reader::new(bytes);
        let entries = reader.map_len().map_err(msgpack)?;
        if entries > 32 {
            return Err(invalid(MESSAGE, "more than 32 keys"));
        }
        let mut seen = [false; 11];
        let mut adv = Advertisement {
            transfer_size: 0,
            data_size: 0,
            parts: 0,
            hash: [0; RESOURCE_HASH_LEN],
            random_hash: [0; RANDOM_HASH_LEN],
            original_hash: [0; RESOURCE_HASH_LEN],
            segment_index: 0,
            total_segments: 0,
            request_id: None,
            flags: 0,
            hashmap: &[],
        };
        for _ in 0..entries {
            let key = reader.str().map_err(msgpack)?;
            let slot = match key {
                "t" => 0,
                "d" => 1,
                "n" => 2,
                "h" => 3,
                "r" => 4,
                "o" => 5,
                "i" => 6,
                "l" => 7,
                "q" => 8,
                "f" => 9,
                "m" => 10,
                _ => {
                    // A later RNS may add keys; skip them rather than refuse the transfer.
                    reader.skip_scalar().map_err(msgpack)?;
                    continue;
                }
            };
            let name = key.chars().next().unwrap_or('?');
            if seen[slot] {
                return Err(WireError::RepeatedKey(name));
            }
            seen[slot] = true;
            match slot {
                0 => adv.transfer_size = reader.uint().map_err(msgpack)?,
                1 => adv.data_size = reader.uint().map_err(msgpack)?,
                2 => adv.parts = reader.uint().map_err(msgpack)?,
                3 => {
                    adv.hash = fixed(reader.bin().map_err(msgpack)?, MESSAGE, "h is not 32 bytes")?
                }
                4 => {
                    adv.random_hash =
                        fixed(reader.bin().map_err(msgpack)?, MESSAGE, "r is not 4 bytes")?
                }
                5 => {
                    adv.original_hash =
                        fixed(reader.bin().map_err(msgpack)?, MESSAGE, "o is not 32 bytes")?
                }
                6 => adv.segment_index = reader.uint().map_err(msgpack)?,
                7 => adv.total_segments = reader.uint().map_err(msgpack)?,
                8 => adv.request_id = reader.optional_bin().map_err(msgpack)?,
                9 => {
                    adv.flags = u8::try_from(reader.uint().map_err(msgpack)?)
                        .map_err(|_| invalid(MESSAGE, "f does not fit in a byte"))?
                }
                _ => adv.hashmap = reader.bin().map_err(msgpack)?,
            }
        }
        if !reader.is_empty() {
            return Err(invalid(MESSAGE, "trailing bytes after the map"));
        }
        const KEYS: [char; 11] = ['t', 'd', 'n', 'h', 'r', 'o', 'i', 'l', 'q', 'f', 'm'];
        if let Some(missing) = seen.iter().position(|&s| !s) {
            return Err(WireError::MissingKey(KEYS[missing]));
        }
        check_hashmap(adv.hashmap, max_map_hashes, MESSAGE)?;
        Ok(adv)
    }

    /// True when the segment was compressed before it was cut into parts.
    pub fn is_compressed(&self) -> bool {
        self.flags & flags::COMPRESSED != 0
    }
}

/// A request for parts (`RESOURCE_REQ`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Set when the receiver has used every map hash it knows: the last one it has, so the
    /// sender can answer with the next hashmap segment.
    pub exhausted: Option<[u8; MAP_HASH_LEN]>,
    /// Which resource.
    pub resource_hash: [u8; RESOURCE_HASH_LEN],
    /// The map hashes of the parts wanted, 4 bytes each.
    pub map_hashes: &'a [u8],
}

impl<'a> Request<'a> {
    /// Bytes [`Request::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        1 + self.exhausted.map_or(0, |_| MAP_HASH_LEN) + RESOURCE_HASH_LEN + self.map_hashes.len()
    }

    /// `exhausted_flag ‖ [last_map_hash] ‖ resource_hash ‖ map_hashes`.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let needed = self.encoded_len();
        let out = out.get_mut(..needed).ok_or(BufferTooSmall { needed })?;
        let mut at = 1;
        match self.exhausted {
            Some(last) => {
                out[0] = HASHMAP_EXHAUSTED;
                out[1..5].copy_from_slice(&last);
                at += MAP_HASH_LEN;
            }
            None => out[0] = HASHMAP_NOT_EXHAUSTED,
        }
        out[at..at + RESOURCE_HASH_LEN].copy_from_slice(&self.resource_hash);
        out[at + RESOURCE_HASH_LEN..].copy_from_slice(self.map_hashes);
        Ok(needed)
    }

    /// Reads a request of at most `max_map_hashes` wanted parts.
    pub fn decode(bytes: &'a [u8], max_map_hashes: usize) -> Result<Self, WireError> {
        const MESSAGE: &str = "request";
        let (&flag, rest) = bytes.split_first().ok_or(invalid(MESSAGE, "empty"))?;
        let (exhausted, rest) = match flag {
            HASHMAP_NOT_EXHAUSTED => (None, rest),
            HASHMAP_EXHAUSTED => {
                let (last, rest) = rest
                    .split_at_checked(MAP_HASH_LEN)
                    .ok_or(invalid(MESSAGE, "too short for the last map hash"))?;
                (Some(fixed(last, MESSAGE, "last map hash")?), rest)
            }
            _ => {
                return Err(invalid(
                    MESSAGE,
                    "the exhausted flag is neither 0x00 nor 0xff",
                ));
            }
        };
        let (hash, map_hashes) = rest
            .split_at_checked(RESOURCE_HASH_LEN)
            .ok_or(invalid(MESSAGE, "too short for the resource hash"))?;
        check_hashmap(map_hashes, max_map_hashes, MESSAGE)?;
        Ok(Request {
            exhausted,
            resource_hash: fixed(hash, MESSAGE, "resource hash")?,
            map_hashes,
        })
    }
}

/// More of the hashmap (`RESOURCE_HMU`): `resource_hash ‖ msgpack([segment, hashmap])`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashmapUpdate<'a> {
    /// Which resource.
    pub resource_hash: [u8; RESOURCE_HASH_LEN],
    /// Which hashmap segment (0 is the one in the advertisement).
    pub segment: u64,
    /// Its map hashes, 4 bytes each.
    pub hashmap: &'a [u8],
}

impl<'a> HashmapUpdate<'a> {
    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut out = out;
        out.write_all(&self.resource_hash)?;
        rmp::encode::write_array_len(&mut out, 2)?;
        rmp::encode::write_uint(&mut out, self.segment)?;
        rmp::encode::write_bin(&mut out, self.hashmap)?;
        Ok(())
    }

    /// Bytes [`HashmapUpdate::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        msgpack::encoded_len(|out| self.write(out))
    }

    /// Writes the update exactly as RNS 1.2.4 does.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        msgpack::encode_into(out, |w| self.write(w))
    }

    /// Reads an update of at most `max_map_hashes` entries.
    pub fn decode(bytes: &'a [u8], max_map_hashes: usize) -> Result<Self, WireError> {
        const MESSAGE: &str = "hashmap update";
        let msgpack = |source| WireError::Msgpack {
            message: MESSAGE,
            source,
        };
        let (hash, body) = bytes
            .split_at_checked(RESOURCE_HASH_LEN)
            .ok_or(invalid(MESSAGE, "too short for the resource hash"))?;
        let mut reader = Reader::new(body);
        if reader.array_len().map_err(msgpack)? != 2 {
            return Err(invalid(MESSAGE, "the body is not a two-element array"));
        }
        let segment = reader.uint().map_err(msgpack)?;
        let hashmap = reader.bin().map_err(msgpack)?;
        if !reader.is_empty() {
            return Err(invalid(MESSAGE, "trailing bytes after the array"));
        }
        check_hashmap(hashmap, max_map_hashes, MESSAGE)?;
        Ok(HashmapUpdate {
            resource_hash: fixed(hash, MESSAGE, "resource hash")?,
            segment,
            hashmap,
        })
    }
}

/// Proof that a segment arrived whole (`RESOURCE_PRF`): `resource_hash ‖ proof`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    /// Which resource.
    pub resource_hash: [u8; RESOURCE_HASH_LEN],
    /// SHA-256(data ‖ resource_hash).
    pub proof: [u8; 32],
}

impl Proof {
    /// Bytes in a proof message.
    pub const LEN: usize = RESOURCE_HASH_LEN + 32;

    /// The 64 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..32].copy_from_slice(&self.resource_hash);
        out[32..].copy_from_slice(&self.proof);
        out
    }

    /// Reads a proof; it is exactly 64 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() != Self::LEN {
            return Err(invalid("proof", "not 64 bytes"));
        }
        Ok(Proof {
            resource_hash: fixed(&bytes[..32], "proof", "resource hash")?,
            proof: fixed(&bytes[32..], "proof", "proof")?,
        })
    }
}

/// A cancel (`RESOURCE_ICL` from the sender, `RESOURCE_RCL` from the receiver): the
/// resource hash alone.
pub fn decode_cancel(bytes: &[u8]) -> Result<[u8; RESOURCE_HASH_LEN], WireError> {
    fixed(bytes, "cancel", "not a 32-byte resource hash")
}
