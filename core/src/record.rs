//! The record layer (PROTOCOL.md §4): every byte after the hellos travels in a record
//! `length(4) ‖ ChaCha20Poly1305(content_type ‖ payload) ‖ tag(16)` whose length is the
//! associated data and whose nonce is a per-direction counter.

use core::ops::Range;

use crate::crypto::{RecordCipher, TAG_LEN};
use crate::error::Error;

/// Bytes in a record header (the big-endian length of what follows it).
pub const HEADER_LEN: usize = 4;

/// Bytes on the wire for a record carrying `payload` bytes.
pub const fn sealed_len(payload: usize) -> usize {
    HEADER_LEN + 1 + payload + TAG_LEN
}

/// What a record carries; the first plaintext byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentType {
    /// Proof of the derived key; first record each way, and only there.
    Confirm = 0,
    /// An application message.
    Data = 1,
    /// Keeps the peer's idle timer from firing; no payload.
    Keepalive = 2,
    /// The sender of this record will send nothing more (a clean end of stream).
    Close = 3,
}

impl ContentType {
    fn from_wire(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => ContentType::Confirm,
            1 => ContentType::Data,
            2 => ContentType::Keepalive,
            3 => ContentType::Close,
            _ => return None,
        })
    }
}

/// One direction's AEAD and record counter.
pub(crate) struct Direction {
    cipher: RecordCipher,
    sequence: u64,
}

impl Direction {
    pub(crate) fn new(cipher: RecordCipher) -> Self {
        Direction {
            cipher,
            sequence: 0,
        }
    }

    /// The sequence number the next record will use.
    pub(crate) fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Fails once the counter would reach 2^64 − 1, which is never used.
    pub(crate) fn check_sequence(&self) -> Result<(), Error> {
        if self.sequence == u64::MAX {
            return Err(Error::SequenceExhausted);
        }
        Ok(())
    }

    fn next_sequence(&mut self) -> Result<u64, Error> {
        self.check_sequence()?;
        let sequence = self.sequence;
        self.sequence += 1;
        Ok(sequence)
    }

    /// Seals a record in place. `out` is exactly `sealed_len(payload_len)` bytes and holds
    /// the payload at `out[HEADER_LEN + 1..len - TAG_LEN]`. On error `out` may hold
    /// plaintext: the caller must discard it.
    pub(crate) fn seal(&mut self, content: ContentType, out: &mut [u8]) -> Result<(), Error> {
        let body_len = out.len() - HEADER_LEN;
        // Records are at most 16 MiB + 21 bytes, far below u32::MAX.
        let length =
            u32::try_from(body_len).map_err(|_| Error::Internal("record length over 4 GiB"))?;
        let sequence = self.next_sequence()?;
        let (header, rest) = out.split_at_mut(HEADER_LEN);
        header.copy_from_slice(&length.to_be_bytes());
        let (plaintext, tag) = rest.split_at_mut(body_len - TAG_LEN);
        plaintext[0] = content as u8;
        let sealed = self
            .cipher
            .seal(sequence, header, plaintext)
            .map_err(|_| Error::Internal("the AEAD refused to seal a record"))?;
        tag.copy_from_slice(&sealed);
        Ok(())
    }
}

/// A record that authenticated: what it carries and where its plaintext sits.
pub(crate) struct Opened {
    pub(crate) content: ContentType,
    /// Where the payload sits in the reader's buffer.
    pub(crate) payload: Range<usize>,
}

/// Gathers one record at a time from a byte stream split anywhere, into a buffer sized
/// once from the configured maximum.
pub(crate) struct RecordReader {
    buf: Vec<u8>,
    filled: usize,
    max_payload: usize,
}

impl RecordReader {
    pub(crate) fn new(max_payload: usize) -> Self {
        RecordReader {
            buf: vec![0; sealed_len(max_payload)],
            filled: 0,
            max_payload,
        }
    }

    /// Bytes of the current record received so far.
    pub(crate) fn partial_len(&self) -> usize {
        self.filled
    }

    /// The length of what follows the header, once the header is in; checked against the
    /// bound before a single body byte is accepted.
    fn body_len(&self) -> Result<Option<usize>, Error> {
        if self.filled < HEADER_LEN {
            return Ok(None);
        }
        self.checked_body_len(&self.buf[..HEADER_LEN]).map(Some)
    }

    /// The body length a record's `header` (its first four bytes) announces, if within
    /// the bounds.
    fn checked_body_len(&self, header: &[u8]) -> Result<usize, Error> {
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(&header[..HEADER_LEN]);
        let len = u32::from_be_bytes(bytes) as usize;
        let max = 1 + self.max_payload + TAG_LEN;
        if len > max {
            return Err(Error::RecordTooLarge {
                len: len as u64,
                max: max as u64,
            });
        }
        if len < 1 + TAG_LEN {
            return Err(Error::RecordTooShort { len: len as u64 });
        }
        Ok(len)
    }

    /// Takes a whole record straight out of `input` when none is partly gathered and
    /// `input` holds all of it, opening it as it comes in: the decryption writes the
    /// plaintext here, one pass over the bytes fewer than gathering and then opening in
    /// place. `None`: gather it with [`RecordReader::push`] instead. On failure nothing
    /// of the record is released.
    pub(crate) fn take_whole(
        &mut self,
        input: &[u8],
        direction: &mut Direction,
    ) -> Result<Option<(usize, Opened)>, Error> {
        if self.filled != 0 || input.len() < HEADER_LEN {
            return Ok(None);
        }
        let total = HEADER_LEN + self.checked_body_len(input)?;
        if input.len() < total {
            return Ok(None);
        }
        let sequence = direction.next_sequence()?;
        self.filled = total;
        let (header, rest) = self.buf[..total].split_at_mut(HEADER_LEN);
        header.copy_from_slice(&input[..HEADER_LEN]);
        let ciphertext = &input[HEADER_LEN..total - TAG_LEN];
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&input[total - TAG_LEN..total]);
        let plaintext = &mut rest[..ciphertext.len()];
        let opened = direction
            .cipher
            .open_into(sequence, header, ciphertext, plaintext, &tag);
        self.opened(sequence, opened.is_ok())
            .map(|o| Some((total, o)))
    }

    /// Takes bytes from `input` up to the end of the current record. Returns how many were
    /// taken and whether the record is now complete.
    pub(crate) fn push(&mut self, input: &[u8]) -> Result<(usize, bool), Error> {
        let mut taken = 0;
        if self.filled < HEADER_LEN {
            let n = (HEADER_LEN - self.filled).min(input.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&input[..n]);
            self.filled += n;
            taken = n;
        }
        let Some(body) = self.body_len()? else {
            return Ok((taken, false));
        };
        let total = HEADER_LEN + body;
        let n = (total - self.filled).min(input.len() - taken);
        self.buf[self.filled..self.filled + n].copy_from_slice(&input[taken..taken + n]);
        self.filled += n;
        Ok((taken + n, self.filled == total))
    }

    /// Authenticates and decrypts the complete record in place. On failure nothing of the
    /// record is released.
    pub(crate) fn open(&mut self, direction: &mut Direction) -> Result<Opened, Error> {
        let sequence = direction.next_sequence()?;
        let total = self.filled;
        let (header, rest) = self.buf[..total].split_at_mut(HEADER_LEN);
        let (ciphertext, tag_bytes) = rest.split_at_mut(total - HEADER_LEN - TAG_LEN);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_bytes);
        let opened = direction.cipher.open(sequence, header, ciphertext, &tag);
        self.opened(sequence, opened.is_ok())
    }

    /// The record gathered, opened (`authentic`) or not: its content type and where its
    /// payload sits.
    fn opened(&self, sequence: u64, authentic: bool) -> Result<Opened, Error> {
        if !authentic {
            return Err(if sequence == 0 {
                Error::AuthenticationFailed
            } else {
                Error::Integrity { record: sequence }
            });
        }
        let total = self.filled;
        let content =
            ContentType::from_wire(self.buf[HEADER_LEN]).ok_or(Error::UnexpectedRecord {
                record: sequence,
                why: "unknown content type",
            })?;
        Ok(Opened {
            content,
            payload: HEADER_LEN + 1..total - TAG_LEN,
        })
    }

    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Forgets the current record so the next one can be gathered.
    pub(crate) fn clear(&mut self) {
        self.filled = 0;
    }
}

/// Sealed bytes waiting for the driver, in a buffer sized once from the configuration.
pub(crate) struct TransmitBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl TransmitBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        TransmitBuffer {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(
            n <= self.end - self.start,
            "advanced past the pending bytes"
        );
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space, counting what compaction would reclaim.
    pub(crate) fn free(&self) -> usize {
        self.buf.len() - (self.end - self.start)
    }

    /// Drops the last `len` appended bytes (a record that could not be sealed).
    pub(crate) fn truncate_last(&mut self, len: usize) {
        self.end = self.end.saturating_sub(len).max(self.start);
    }

    /// `len` bytes at the end of the pending data, or `None` if they do not fit.
    pub(crate) fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.free() < len {
            return None;
        }
        if self.buf.len() - self.end < len {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let range = self.end..self.end + len;
        self.end += len;
        Some(&mut self.buf[range])
    }
}
