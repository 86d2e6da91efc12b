//! The record layer (PROTOCOL.md §4): every byte after the hellos travels in a record
//! `length(4) ‖ ChaCha20Poly1305(content_type ‖ payload) ‖ tag(16)` whose length is the
//! associated data and whose nonce is a per-direction counter.

use core::ops::Range;

use crate::crypto::{Decryption, RecordCipher, TAG_LEN};
use crate::error::Error;
use crate::opening::OpenWork;
use crate::sealing::{NotHandedOut, SealQueue, SealWork};

/// Bytes in a ChaCha20 keystream block.
const KEYSTREAM_BLOCK: usize = 64;

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

    /// Writes a record's header and content type into `out` (exactly
    /// `sealed_len(payload_len)` bytes) and takes its sequence number, leaving the
    /// encryption to [`crate::sealing::seal_composed`] (here, or on a driver's thread).
    pub(crate) fn compose(&mut self, content: ContentType, out: &mut [u8]) -> Result<u64, Error> {
        let body_len = out
            .len()
            .checked_sub(HEADER_LEN)
            .filter(|len| *len > TAG_LEN)
            .ok_or(Error::Internal("a record shorter than its type and tag"))?;
        // Records are at most 16 MiB + 21 bytes, far below u32::MAX.
        let length =
            u32::try_from(body_len).map_err(|_| Error::Internal("record length over 4 GiB"))?;
        let sequence = self.next_sequence()?;
        out[..HEADER_LEN].copy_from_slice(&length.to_be_bytes());
        out[HEADER_LEN] = content as u8;
        Ok(sequence)
    }

    /// The key records in this direction are sealed with, for a driver's threads.
    pub(crate) fn cipher(&self) -> &RecordCipher {
        &self.cipher
    }

    /// Seals a record in place. `out` is exactly `sealed_len(payload_len)` bytes and holds
    /// the payload at `out[HEADER_LEN + 1..len - TAG_LEN]`, except its last `tail.len()`
    /// bytes, which are encrypted there from `tail` (a part's data, from its segment). On
    /// error `out` may hold plaintext: the caller must discard it.
    pub(crate) fn seal(
        &mut self,
        content: ContentType,
        out: &mut [u8],
        tail: &[u8],
    ) -> Result<(), Error> {
        let sequence = self.compose(content, out)?;
        let (header, rest) = out.split_at_mut(HEADER_LEN);
        let (plaintext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let sealed = self
            .cipher
            .seal_from(sequence, header, plaintext, tail)
            .map_err(|_| Error::Internal("the AEAD refused to seal a record"))?;
        tag.copy_from_slice(&sealed);
        Ok(())
    }
}

/// A record that authenticated: what it carries and where its plaintext sits.
pub(crate) struct Opened {
    pub(crate) content: ContentType,
    /// Where the payload sits in the reader's buffer: all of it, or its head if the
    /// rest was placed.
    pub(crate) payload: Range<usize>,
    /// Bytes of the payload, after its head, that went where a [`Placement`] chose.
    pub(crate) placed: Option<usize>,
}

/// Chooses, from the first bytes of an authenticated data record's payload, where the
/// rest of it is decrypted to, instead of the record buffer.
pub(crate) trait Placement {
    /// Payload bytes the choice reads.
    fn head_len(&self) -> usize;

    /// `head`: the payload's first bytes (up to [`Placement::head_len`]); `len`: the bytes
    /// after them. Where those go, exactly `len` bytes long, or `None` to leave the
    /// record whole in the buffer. Whatever it returns is overwritten.
    fn place(&mut self, head: &[u8], len: usize) -> Option<&mut [u8]>;
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
    ///
    /// With a `placement`, an authenticated data record's first bytes are decrypted here
    /// first, and the rest goes where the placement then chooses, if it does ([`Opened::placed`]):
    /// a part's data straight into its segment, one copy fewer.
    pub(crate) fn take_whole(
        &mut self,
        input: &[u8],
        direction: &mut Direction,
        placement: Option<&mut (dyn Placement + '_)>,
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
        let Ok(mut decryption) = direction
            .cipher
            .open_verified(sequence, header, ciphertext, &tag)
        else {
            return self.opened(sequence, false, None).map(|o| Some((total, o)));
        };
        let (decrypted, placed) =
            decrypt_placing(&mut decryption, Some(ciphertext), plaintext, placement);
        self.opened(sequence, decrypted, placed)
            .map(|o| Some((total, o)))
    }

    /// The length of the record at the start of `input` if none is partly gathered and
    /// `input` holds all of it (as [`RecordReader::take_whole`] would take it).
    pub(crate) fn whole_len(&self, input: &[u8]) -> Result<Option<usize>, Error> {
        if self.filled != 0 || input.len() < HEADER_LEN {
            return Ok(None);
        }
        let total = HEADER_LEN + self.checked_body_len(input)?;
        Ok((input.len() >= total).then_some(total))
    }

    /// Takes the record whose `header` is given (from the input, or gathered here) from
    /// the plaintext a driver's thread opened it to ([`crate::opening`]): its head here,
    /// the rest where `placement` chooses, as [`RecordReader::take_whole`] would decrypt
    /// it. Fails if the work is for another record than the one the stream brings.
    pub(crate) fn take_opened(
        &mut self,
        header: [u8; HEADER_LEN],
        work: &OpenWork,
        direction: &mut Direction,
        placement: Option<&mut (dyn Placement + '_)>,
    ) -> Result<Opened, Error> {
        if work.header() != header {
            return Err(Error::Internal(
                "a record opened on a thread is not the one the stream brings",
            ));
        }
        let sequence = direction.next_sequence()?;
        let plaintext = work.plaintext();
        let total = HEADER_LEN + plaintext.len() + TAG_LEN;
        self.filled = total;
        self.buf[..HEADER_LEN].copy_from_slice(&header);
        let here = &mut self.buf[HEADER_LEN..total - TAG_LEN];
        let len = plaintext.len();
        let head = placement
            .as_ref()
            .map_or(len, |p| 1 + p.head_len())
            .min(len);
        here[..head].copy_from_slice(&plaintext[..head]);
        let is_data = here.first() == Some(&(ContentType::Data as u8));
        let after_head = len - head;
        let chosen = match placement {
            Some(placement) if is_data && after_head > 0 => placement
                .place(&here[1..head], after_head)
                .filter(|out| out.len() == after_head),
            _ => None,
        };
        let placed = chosen.is_some().then_some(after_head);
        match chosen {
            Some(out) => out.copy_from_slice(&plaintext[head..]),
            None => here[head..].copy_from_slice(&plaintext[head..]),
        }
        self.opened(sequence, true, placed)
    }

    /// The header of the record gathered here (complete after [`RecordReader::push`]
    /// said so).
    pub(crate) fn gathered_header(&self) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.buf[..HEADER_LEN]);
        header
    }

    /// The tag of the record gathered here (complete after [`RecordReader::push`] said
    /// so).
    pub(crate) fn gathered_tag(&self) -> [u8; TAG_LEN] {
        let mut tag = [0u8; TAG_LEN];
        let start = self.filled.saturating_sub(TAG_LEN);
        tag.copy_from_slice(&self.buf[start..start + TAG_LEN]);
        tag
    }

    /// The error for record `sequence` failing to authenticate (as the reader reports it).
    pub(crate) fn forged(sequence: u64) -> Error {
        if sequence == 0 {
            Error::AuthenticationFailed
        } else {
            Error::Integrity { record: sequence }
        }
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

    /// Authenticates the complete record gathered here, then decrypts it in place, or,
    /// with a `placement` that chooses, its head here and the rest where the placement
    /// chose (as [`RecordReader::take_whole`] does). On failure nothing of the record is
    /// released.
    pub(crate) fn open(
        &mut self,
        direction: &mut Direction,
        placement: Option<&mut (dyn Placement + '_)>,
    ) -> Result<Opened, Error> {
        let sequence = direction.next_sequence()?;
        let total = self.filled;
        let (header, rest) = self.buf[..total].split_at_mut(HEADER_LEN);
        let (ciphertext, tag_bytes) = rest.split_at_mut(total - HEADER_LEN - TAG_LEN);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_bytes);
        let Ok(mut decryption) = direction
            .cipher
            .open_verified(sequence, header, ciphertext, &tag)
        else {
            return self.opened(sequence, false, None);
        };
        let (decrypted, placed) = decrypt_placing(&mut decryption, None, ciphertext, placement);
        self.opened(sequence, decrypted, placed)
    }

    /// The record gathered, opened (`authentic`) or not: its content type and where its
    /// payload sits (only its head, if the rest was `placed`: that many bytes).
    fn opened(
        &self,
        sequence: u64,
        authentic: bool,
        placed: Option<usize>,
    ) -> Result<Opened, Error> {
        if !authentic {
            return Err(Self::forged(sequence));
        }
        let total = self.filled;
        let content =
            ContentType::from_wire(self.buf[HEADER_LEN]).ok_or(Error::UnexpectedRecord {
                record: sequence,
                why: "unknown content type",
            })?;
        let end = total - TAG_LEN - placed.unwrap_or(0);
        Ok(Opened {
            content,
            payload: HEADER_LEN + 1..end,
            placed,
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

/// Decrypts an authenticated record's ciphertext into `plaintext` (as long), or, with a
/// `placement`, only its head there (the content type and what the placement reads, in
/// whole keystream blocks, so that the rest starts on a block and keeps the keystream on
/// its fast path) and the rest of a data record where the placement chooses, if it does.
/// The ciphertext is `apart`, or already in `plaintext` (a record gathered across reads).
/// Returns whether all of it decrypted, and how many bytes were placed.
fn decrypt_placing(
    decryption: &mut Decryption,
    apart: Option<&[u8]>,
    plaintext: &mut [u8],
    placement: Option<&mut (dyn Placement + '_)>,
) -> (bool, Option<usize>) {
    let len = plaintext.len();
    let head = placement.as_ref().map_or(len, |p| 1 + p.head_len());
    let decrypted_here = head.next_multiple_of(KEYSTREAM_BLOCK).min(len);
    let head = head.min(decrypted_here);
    let (here, rest) = plaintext.split_at_mut(decrypted_here);
    let mut decrypted = match apart {
        Some(ciphertext) => decryption.decrypt_into(&ciphertext[..decrypted_here], here),
        None => decryption.decrypt_in_place(here),
    }
    .is_ok();
    let is_data = here.first() == Some(&(ContentType::Data as u8));
    let after_head = len - head;
    let chosen = match placement {
        Some(placement) if decrypted && is_data && after_head > 0 => placement
            .place(&here[1..head], after_head)
            .filter(|out| out.len() == after_head),
        _ => None,
    };
    let placed = chosen.is_some().then_some(after_head);
    match chosen {
        Some(out) => {
            // What was decrypted here past the head is the start of what is placed.
            let (early, late) = out.split_at_mut(decrypted_here - head);
            early.copy_from_slice(&here[head..]);
            let rest_in = apart.map_or(&*rest, |ciphertext| &ciphertext[decrypted_here..]);
            decrypted &= decryption.decrypt_into(rest_in, late).is_ok();
        }
        None => {
            decrypted &= match apart {
                Some(ciphertext) => decryption.decrypt_into(&ciphertext[decrypted_here..], rest),
                None => decryption.decrypt_in_place(rest),
            }
            .is_ok();
        }
    }
    (decrypted, placed)
}

/// Sealed bytes waiting for the driver, in a buffer sized once from the configuration;
/// and, once a driver seals on its threads, the records composed for them behind it
/// ([`SealQueue`]), counted against the same capacity.
pub(crate) struct TransmitBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    sealing: Option<Box<SealQueue>>,
    /// Whether the last append went to the sealing queue.
    last_queued: bool,
}

impl TransmitBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        TransmitBuffer {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            sealing: None,
            last_queued: false,
        }
    }

    pub(crate) fn pending(&self) -> &[u8] {
        match &self.sealing {
            Some(queue) if self.start == self.end => queue.pending(),
            _ => &self.buf[self.start..self.end],
        }
    }

    pub(crate) fn advance(&mut self, n: usize) {
        if self.start == self.end {
            if let Some(queue) = &mut self.sealing {
                queue.advance(n);
            }
            return;
        }
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
        let queued = self.sealing.as_ref().map_or(0, |queue| queue.queued());
        self.buf.len() - (self.end - self.start) - queued
    }

    /// Drops the last `len` appended bytes (a record that could not be sealed).
    pub(crate) fn truncate_last(&mut self, len: usize) {
        match &mut self.sealing {
            Some(queue) if self.last_queued => queue.truncate_last(len),
            _ => self.end = self.end.saturating_sub(len).max(self.start),
        }
    }

    /// `len` bytes at the end of the pending data, to seal there and then, or `None` if
    /// they do not fit.
    pub(crate) fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.free() < len {
            return None;
        }
        if let Some(queue) = self.sealing.as_mut().filter(|queue| !queue.is_empty()) {
            // Behind records still to be sealed: in wire order, with them.
            self.last_queued = true;
            return Some(queue.append(len));
        }
        self.last_queued = false;
        if self.buf.len() - self.end < len {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let range = self.end..self.end + len;
        self.end += len;
        Some(&mut self.buf[range])
    }

    /// From now on records may be composed for a driver's threads to seal with `cipher`.
    pub(crate) fn offload_sealing(&mut self, cipher: &RecordCipher) {
        if self.sealing.is_none() {
            self.sealing = Some(Box::new(SealQueue::new(cipher.clone(), self.buf.len())));
        }
    }

    /// Whether records may be composed for a driver's threads.
    pub(crate) fn offloading(&self) -> bool {
        self.sealing.is_some()
    }

    /// `len` bytes at the end of the pending data for a record a driver's thread is to
    /// seal ([`TransmitBuffer::defer_last`] once composed); `None` if they do not fit or
    /// sealing is not offloaded.
    pub(crate) fn append_deferred(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.free() < len {
            return None;
        }
        let queue = self.sealing.as_mut()?;
        self.last_queued = true;
        Some(queue.append(len))
    }

    /// The last `len` bytes from [`TransmitBuffer::append_deferred`] are a composed
    /// record for a thread to seal under `sequence`. If they cannot be listed they are
    /// taken back (never left to go out unsealed), and false is returned.
    pub(crate) fn defer_last(&mut self, len: usize, sequence: u64) -> bool {
        let listed = self
            .sealing
            .as_mut()
            .is_some_and(|queue| queue.defer_last(len, sequence));
        if !listed {
            self.truncate_last(len);
        }
        listed
    }

    /// The next batch of composed records for a thread to seal.
    pub(crate) fn poll_seal_work(&mut self) -> Option<SealWork> {
        self.sealing.as_mut()?.poll()
    }

    /// A batch from [`TransmitBuffer::poll_seal_work`] is back: whether every record in
    /// it sealed.
    pub(crate) fn seal_done(&mut self, work: SealWork) -> Result<bool, NotHandedOut> {
        self.sealing.as_mut().ok_or(NotHandedOut)?.done(work)
    }

    /// Records composed and not yet sealed and back: a driver that offloads sealing runs
    /// and returns batches until this is false before it takes [`TransmitBuffer::pending`]
    /// being empty to mean everything went out.
    pub(crate) fn sealing_pending(&self) -> bool {
        self.sealing.as_ref().is_some_and(|queue| queue.unsealed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes the part after a fixed head (`head_len` bytes) when the head starts with
    /// `wanted`, into a destination of its own.
    struct Into {
        head_len: usize,
        wanted: u8,
        out: Vec<u8>,
        heads: Vec<Vec<u8>>,
    }

    impl Placement for Into {
        fn head_len(&self) -> usize {
            self.head_len
        }

        fn place(&mut self, head: &[u8], len: usize) -> Option<&mut [u8]> {
            self.heads.push(head.to_vec());
            if head.first() != Some(&self.wanted) {
                return None;
            }
            self.out = vec![0xEE; len];
            Some(&mut self.out)
        }
    }

    fn sealed(content: ContentType, payload: &[u8], sequence: u64) -> Vec<u8> {
        let mut sender = Direction::new(RecordCipher::new(&[7; 32]));
        sender.sequence = sequence;
        let mut out = vec![0; sealed_len(payload.len())];
        out[HEADER_LEN + 1..HEADER_LEN + 1 + payload.len()].copy_from_slice(payload);
        sender.seal(content, &mut out, &[]).unwrap();
        out
    }

    /// Takes `record` as the channel does: whole out of one read (`split` none), or
    /// gathered across two reads split at `split`, then opened.
    fn take(
        record: &[u8],
        split: Option<usize>,
        placement: &mut Into,
    ) -> (RecordReader, Result<Option<(usize, Opened)>, Error>) {
        let mut reader = RecordReader::new(1 << 16);
        let mut receiver = Direction::new(RecordCipher::new(&[7; 32]));
        let taken = match split {
            None => reader.take_whole(record, &mut receiver, Some(placement)),
            Some(at) => gather(&mut reader, &mut receiver, record, at, placement),
        };
        (reader, taken)
    }

    fn gather(
        reader: &mut RecordReader,
        receiver: &mut Direction,
        record: &[u8],
        at: usize,
        placement: &mut Into,
    ) -> Result<Option<(usize, Opened)>, Error> {
        assert!(reader.take_whole(&record[..at], receiver, None)?.is_none());
        let (first, complete) = reader.push(&record[..at])?;
        assert!(!complete && first == at, "a record gathered at once");
        let (second, complete) = reader.push(&record[at..])?;
        assert!(complete, "the record's second read did not complete it");
        let opened = reader.open(receiver, Some(placement))?;
        Ok(Some((first + second, opened)))
    }

    /// Whole, and split in its header, just after it, and before its last byte.
    fn ways(record: &[u8]) -> [Option<usize>; 4] {
        [None, Some(1), Some(HEADER_LEN + 1), Some(record.len() - 1)]
    }

    #[test]
    fn a_placed_record_leaves_its_head_here_and_the_rest_where_the_placement_chose() {
        // Heads that end before, on and after a keystream block, and payloads shorter
        // than the block the head is decrypted in.
        for head_len in [0, 1, 37, 63, 64, 100] {
            for len in [1, 2, 40, 63, 64, 65, 200, 4096 + 7] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut into = Into {
                    head_len,
                    wanted: payload[0],
                    out: Vec::new(),
                    heads: Vec::new(),
                };
                let record = sealed(ContentType::Data, &payload, 0);
                for split in ways(&record) {
                    into.out.clear();
                    let (reader, taken) = take(&record, split, &mut into);
                    let (n, opened) = taken.unwrap().unwrap();
                    assert_eq!(n, record.len());
                    let head = head_len.min(len);
                    let what = format!("head {head_len}, payload {len}, split {split:?}");
                    if head == 0 || head == len {
                        // Nothing to choose by (the placement declines), or nothing after
                        // the head (it is not asked): the record stays whole here.
                        assert_eq!(opened.placed, None, "{what}");
                        assert_eq!(reader.bytes(opened.payload), &payload[..], "{what}");
                        continue;
                    }
                    assert_eq!(opened.placed, Some(len - head), "{what}");
                    assert_eq!(reader.bytes(opened.payload), &payload[..head], "{what}");
                    assert_eq!(into.out, &payload[head..], "{what}");
                }
            }
        }
    }

    #[test]
    fn a_declined_or_other_record_stays_whole_here() {
        let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
        for content in [ContentType::Data, ContentType::Keepalive] {
            let mut into = Into {
                head_len: 37,
                // Data: declined by its head; a keepalive is never offered.
                wanted: 0xAA,
                out: Vec::new(),
                heads: Vec::new(),
            };
            let record = sealed(content, &payload, 0);
            for split in ways(&record) {
                into.heads.clear();
                let (reader, taken) = take(&record, split, &mut into);
                let (_, opened) = taken.unwrap().unwrap();
                assert_eq!(opened.content, content);
                assert_eq!(opened.placed, None);
                assert_eq!(reader.bytes(opened.payload), &payload[..]);
                assert!(into.out.is_empty());
                let offered = usize::from(content == ContentType::Data);
                assert_eq!(into.heads.len(), offered, "{content:?}, split {split:?}");
            }
        }
    }

    #[test]
    fn a_tampered_record_is_refused_before_anything_is_placed_or_offered() {
        let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let record = sealed(ContentType::Data, &payload, 0);
        for at in [0, HEADER_LEN, HEADER_LEN + 1, 200, record.len() - 1] {
            let mut tampered = record.clone();
            tampered[at] ^= 1;
            for split in ways(&record) {
                let mut into = Into {
                    head_len: 37,
                    wanted: payload[0],
                    out: Vec::new(),
                    heads: Vec::new(),
                };
                let (_, taken) = take(&tampered, split, &mut into);
                let what = format!("byte {at} flipped, split {split:?}");
                assert!(taken.is_err(), "{what}: accepted");
                assert!(into.heads.is_empty() && into.out.is_empty(), "{what}");
            }
        }
        // Under another record number, the same bytes are not authentic either.
        let mut into = Into {
            head_len: 37,
            wanted: payload[0],
            out: Vec::new(),
            heads: Vec::new(),
        };
        let other = sealed(ContentType::Data, &payload, 1);
        for split in ways(&other) {
            let (_, taken) = take(&other, split, &mut into);
            assert!(
                matches!(taken, Err(Error::AuthenticationFailed)),
                "split {split:?}"
            );
            assert!(into.heads.is_empty());
        }
    }
}
