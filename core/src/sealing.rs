//! Records sealed on a driver's threads: the AEAD pass over a part's bytes, spread.
//!
//! Sealing a record needs nothing of the session but the direction's key, the record's
//! sequence number and its bytes. A sender that asks for it
//! ([`Session::offload_sealing`](crate::transfer::Session::offload_sealing)) composes its
//! parts' records in plaintext, header and sequence number fixed, in batches of about
//! [`SEAL_BATCH`] bytes; [`Session::poll_seal_work`](crate::transfer::Session::poll_seal_work)
//! hands each batch out as a [`SealWork`], which any thread runs ([`SealWork::run`]), and
//! [`Session::seal_done`](crate::transfer::Session::seal_done) takes it back. Batches are
//! independent, so any number of threads may run them at once.
//!
//! The order stays the session's: a batch's bytes go to the wire only once it and every
//! batch before it are back, and the records in them carry the sequence numbers they were
//! composed with. The bytes on the wire are therefore the same, to the bit, as if every
//! record had been sealed inline; only when they become ready to send depends on the
//! threads.

use std::collections::VecDeque;

use crate::crypto::{RecordCipher, TAG_LEN};
use crate::record::HEADER_LEN;

/// Bytes of records a batch gathers before the next record starts another (it may pass
/// them by one record): small enough that a few threads share a send buffer's worth,
/// large enough that handing a batch over costs little beside sealing it (two 64 KiB
/// parts).
pub const SEAL_BATCH: usize = 128 << 10;

/// One record in a batch: where it starts, how long it is, its sequence number.
#[derive(Clone, Copy, Debug)]
struct Composed {
    at: usize,
    len: usize,
    sequence: u64,
}

/// A batch of composed records to seal: runs on any thread, holds no reference into the
/// session.
pub struct SealWork {
    /// The lane whose records these are (`None`: the session's own connection).
    pub(crate) lane: Option<u8>,
    /// Its place among its connection's batches, checked when it comes back.
    pub(crate) number: u64,
    cipher: RecordCipher,
    bytes: Vec<u8>,
    /// Records to seal; records sealed already when composed (a close, a keepalive
    /// behind batches still out) are not listed.
    records: Vec<Composed>,
    /// `None` until run; then whether every record sealed.
    sealed: Option<bool>,
}

impl SealWork {
    /// An empty batch, in the buffers of `spare` (a batch sent) if given.
    fn new(cipher: RecordCipher, number: u64, spare: Option<SealWork>) -> Self {
        let (mut bytes, mut records) =
            spare.map_or_else(Default::default, |s| (s.bytes, s.records));
        bytes.clear();
        records.clear();
        SealWork {
            lane: None,
            number,
            cipher,
            bytes,
            records,
            sealed: None,
        }
    }

    /// Bytes of records in the batch.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when it holds no records.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Seals every record the batch lists, in place. Running it again does nothing.
    pub fn run(&mut self) {
        if self.sealed.is_some() {
            return;
        }
        let mut all = true;
        for record in &self.records {
            let Some(bytes) = self.bytes.get_mut(record.at..record.at + record.len) else {
                all = false;
                break;
            };
            all &= seal_composed(&self.cipher, record.sequence, bytes);
        }
        self.sealed = Some(all);
    }
}

impl core::fmt::Debug for SealWork {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SealWork")
            .field("lane", &self.lane)
            .field("number", &self.number)
            .field("bytes", &self.bytes.len())
            .field("records", &self.records.len())
            .field("sealed", &self.sealed)
            .finish()
    }
}

/// Seals a composed record (`header ‖ plaintext ‖ room for the tag`) in place under
/// `sequence`; false if the AEAD refused.
pub(crate) fn seal_composed(cipher: &RecordCipher, sequence: u64, record: &mut [u8]) -> bool {
    let Some(body_len) = record.len().checked_sub(HEADER_LEN + TAG_LEN) else {
        return false;
    };
    let (header, rest) = record.split_at_mut(HEADER_LEN);
    let (plaintext, tag) = rest.split_at_mut(body_len);
    match cipher.seal_from(sequence, header, plaintext, &[]) {
        Ok(sealed) => {
            tag.copy_from_slice(&sealed);
            true
        }
        Err(_) => false,
    }
}

/// A batch in the queue, in wire order.
enum Batch {
    /// Still gathering records; the last in the queue if any is.
    Composing(SealWork),
    /// With a thread.
    Out { number: u64, len: usize },
    /// Sealed; `sent` of its bytes went to the wire.
    Back { work: SealWork, sent: usize },
}

impl Batch {
    /// Its bytes not yet sent.
    fn unsent(&self) -> usize {
        match self {
            Batch::Composing(work) => work.len(),
            Batch::Out { len, .. } => *len,
            Batch::Back { work, sent } => work.len() - sent,
        }
    }
}

/// What came back that the queue did not hand out.
#[derive(Debug)]
pub(crate) struct NotHandedOut;

/// The records a connection composed for threads to seal, behind its sealed bytes.
pub(crate) struct SealQueue {
    cipher: RecordCipher,
    batches: VecDeque<Batch>,
    next_number: u64,
    /// Bytes in all batches, not yet sent.
    queued: usize,
    /// Batches sent, whose buffers compose the next ones; their capacity in all
    /// (`spare_bytes`) is at most the send buffer's.
    spare: Vec<SealWork>,
    spare_bytes: usize,
    /// The send buffer's capacity, which bounds what is queued and what is kept spare.
    capacity: usize,
}

impl SealQueue {
    /// A queue behind a send buffer of `capacity` bytes, for records sealed with `cipher`.
    pub(crate) fn new(cipher: RecordCipher, capacity: usize) -> Self {
        SealQueue {
            cipher,
            batches: VecDeque::new(),
            next_number: 0,
            queued: 0,
            spare: Vec::new(),
            spare_bytes: 0,
            capacity,
        }
    }

    /// Nothing queued: a record sealed inline may go straight behind the sealed bytes.
    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Bytes queued and not yet sent.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// `len` bytes at the end of the batch being composed (a new one if there is none,
    /// or if the current one is full).
    pub(crate) fn append(&mut self, len: usize) -> &mut [u8] {
        let full = match self.batches.back() {
            Some(Batch::Composing(work)) => work.bytes.len() >= SEAL_BATCH,
            _ => true,
        };
        if full {
            let spare = self.spare.pop();
            self.spare_bytes -= spare.as_ref().map_or(0, |s| s.bytes.capacity());
            let work = SealWork::new(self.cipher.clone(), self.next_number, spare);
            self.next_number += 1;
            self.batches.push_back(Batch::Composing(work));
        }
        self.queued += len;
        match self.batches.back_mut() {
            Some(Batch::Composing(work)) => {
                let at = work.bytes.len();
                // Exactly what it needs: a batch's buffer never holds twice its bytes.
                work.bytes.reserve_exact(len);
                work.bytes.resize(at + len, 0);
                &mut work.bytes[at..]
            }
            // A batch being composed was just ensured at the back.
            _ => &mut [],
        }
    }

    /// The last `len` appended bytes are a record a thread is to seal under `sequence`.
    /// False if they are not there (then the caller must take them back: unlisted, they
    /// would go out as they are).
    #[must_use]
    pub(crate) fn defer_last(&mut self, len: usize, sequence: u64) -> bool {
        if let Some(Batch::Composing(work)) = self.batches.back_mut()
            && let Some(at) = work.bytes.len().checked_sub(len)
        {
            work.records.push(Composed { at, len, sequence });
            return true;
        }
        false
    }

    /// Drops the last `len` appended bytes (a record that could not be composed, or room
    /// a record did not use), and the record listed there, if any.
    pub(crate) fn truncate_last(&mut self, len: usize) {
        if let Some(Batch::Composing(work)) = self.batches.back_mut() {
            let len = len.min(work.bytes.len());
            let end = work.bytes.len() - len;
            work.bytes.truncate(end);
            work.records.retain(|record| record.at + record.len <= end);
            self.queued -= len;
        }
    }

    /// The oldest batch still gathering records, to be sealed by a thread. A batch with
    /// nothing to seal (records sealed as they were composed) is ready at once instead.
    pub(crate) fn poll(&mut self) -> Option<SealWork> {
        for slot in self.batches.iter_mut() {
            if !matches!(slot, Batch::Composing(_)) {
                continue;
            }
            let Batch::Composing(mut work) =
                core::mem::replace(slot, Batch::Out { number: 0, len: 0 })
            else {
                continue;
            };
            // A reused buffer much larger than the batch goes: what is queued is never
            // more than twice what it holds.
            if work.bytes.capacity() > 2 * work.bytes.len() {
                work.bytes.shrink_to_fit();
            }
            if work.records.is_empty() {
                work.sealed = Some(true);
                *slot = Batch::Back { work, sent: 0 };
                continue;
            }
            *slot = Batch::Out {
                number: work.number,
                len: work.len(),
            };
            return Some(work);
        }
        self.tidy();
        None
    }

    /// A batch from [`SealQueue::poll`] is back; false if it came back unsealed, and then
    /// neither it nor anything queued behind it will go to the wire.
    pub(crate) fn done(&mut self, work: SealWork) -> Result<bool, NotHandedOut> {
        if !work.cipher.same_key(&self.cipher) {
            return Err(NotHandedOut);
        }
        let at = self
            .batches
            .iter()
            .position(|batch| {
                matches!(batch, Batch::Out { number, len }
                    if *number == work.number && *len == work.len())
            })
            .ok_or(NotHandedOut)?;
        if work.sealed != Some(true) {
            let dropped: usize = self.batches.drain(at..).map(|batch| batch.unsent()).sum();
            self.queued -= dropped;
            return Ok(false);
        }
        self.batches[at] = Batch::Back { work, sent: 0 };
        self.tidy();
        Ok(true)
    }

    /// Recycles the sent (or empty) batches at the front.
    fn tidy(&mut self) {
        while let Some(Batch::Back { work, sent }) = self.batches.front()
            && *sent == work.bytes.len()
        {
            if let Some(Batch::Back { work, .. }) = self.batches.pop_front()
                && self.spare_bytes + work.bytes.capacity() <= self.capacity
            {
                self.spare_bytes += work.bytes.capacity();
                self.spare.push(work);
            }
        }
    }

    /// Batches out with threads, or waiting to be handed out.
    pub(crate) fn unsealed(&self) -> bool {
        self.batches
            .iter()
            .any(|batch| !matches!(batch, Batch::Back { .. }))
    }

    /// The sealed bytes at the front, ready for the wire.
    pub(crate) fn pending(&self) -> &[u8] {
        match self.batches.front() {
            Some(Batch::Back { work, sent }) => &work.bytes[*sent..],
            _ => &[],
        }
    }

    /// `n` bytes of [`SealQueue::pending`] were written.
    pub(crate) fn advance(&mut self, n: usize) {
        let Some(Batch::Back { work, sent }) = self.batches.front_mut() else {
            return;
        };
        let n = n.min(work.bytes.len() - *sent);
        *sent += n;
        self.queued -= n;
        self.tidy();
    }
}
