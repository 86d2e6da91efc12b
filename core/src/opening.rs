//! Records opened on a driver's threads: the AEAD pass over what a receiver takes in,
//! spread.
//!
//! A record's length is in clear, so the records in a stream can be told apart before
//! any is opened, and each one's sequence number is its place among them. A receiver
//! that asks for it ([`Session::offload_opening`](crate::transfer::Session::offload_opening))
//! is shown every chunk of its stream as its driver reads it, before the driver gives it
//! to `handle_input` ([`Session::pre_open`](crate::transfer::Session::pre_open)). Each
//! record wholly inside a chunk is copied into an [`OpenWork`] that any thread runs
//! ([`OpenWork::run`]: authenticate, then decrypt in place) and that comes back with
//! [`Session::open_done`](crate::transfer::Session::open_done). When the record reader
//! reaches that record it takes the authenticated plaintext from there instead of opening
//! it itself; a record whose work is not back (or was never made: one split between
//! chunks, or before the keys) is opened as always. What the receiver does therefore
//! depends only on the stream, never on the threads: a record that does not authenticate
//! fails the connection at the same record, with the same error, either way.

use std::collections::VecDeque;

use crate::crypto::{RecordCipher, TAG_LEN};
use crate::record::HEADER_LEN;

/// One record to open: runs on any thread, holds no reference into the session.
pub struct OpenWork {
    sequence: u64,
    cipher: RecordCipher,
    /// The record as it came (header, ciphertext, tag); its plaintext once run.
    bytes: Vec<u8>,
    /// `None` until run; then whether it authenticated.
    opened: Option<bool>,
}

impl OpenWork {
    /// Bytes of the record.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for no bytes (never: a record has at least a header and a tag).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Authenticates the record and, if it is authentic, decrypts it in place. Running
    /// it again does nothing.
    pub fn run(&mut self) {
        if self.opened.is_some() {
            return;
        }
        let Some(body) = self.bytes.len().checked_sub(HEADER_LEN + TAG_LEN) else {
            self.opened = Some(false);
            return;
        };
        let (header, rest) = self.bytes.split_at_mut(HEADER_LEN);
        let (ciphertext, tag_bytes) = rest.split_at_mut(body);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_bytes);
        let authentic = self
            .cipher
            .open(self.sequence, header, ciphertext, &tag)
            .is_ok();
        self.opened = Some(authentic);
    }
}

impl core::fmt::Debug for OpenWork {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpenWork")
            .field("sequence", &self.sequence)
            .field("bytes", &self.bytes.len())
            .field("opened", &self.opened)
            .finish()
    }
}

/// A record handed out, or back.
enum Slot {
    Out { sequence: u64, len: usize },
    Back(OpenWork),
}

impl Slot {
    fn sequence(&self) -> u64 {
        match self {
            Slot::Out { sequence, .. } => *sequence,
            Slot::Back(work) => work.sequence,
        }
    }
}

/// What a record reached by the reader had done for it.
pub(crate) enum Taken {
    /// Nothing: open it here.
    Nothing,
    /// Its work is still out: open it here (the work's result will be dropped).
    StillOut,
    /// Authentic: its plaintext (content type and payload) in the work's buffer.
    Opened(OpenWork),
    /// Not authentic (the work, to check it is the record the stream brings).
    Forged(OpenWork),
    /// Given back without being run (the driver's mistake).
    NotRun,
}

impl OpenWork {
    /// The record's plaintext: its content type and payload.
    pub(crate) fn plaintext(&self) -> &[u8] {
        let end = self.bytes.len().saturating_sub(TAG_LEN);
        self.bytes.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The record's header, as it came.
    pub(crate) fn header(&self) -> &[u8] {
        self.bytes.get(..HEADER_LEN).unwrap_or(&[])
    }

    /// The record's tag, as it came (opening leaves it in place).
    pub(crate) fn tag(&self) -> &[u8] {
        let start = self.bytes.len().saturating_sub(TAG_LEN);
        self.bytes.get(start..).unwrap_or(&[])
    }
}

/// Where the scan of the stream stands.
struct Scan {
    /// Bytes of the peer's hello still to pass (records start after it).
    hello_left: usize,
    /// A record header split between chunks: its bytes so far.
    header: [u8; HEADER_LEN],
    header_have: usize,
    /// Bytes of the current record's body (after its header) still to pass.
    body_left: usize,
    /// The sequence number of the next record to start.
    next_sequence: u64,
    /// The stream broke a rule the reader will report (a length out of bounds): the
    /// scan stops, and every record from there is opened by the reader.
    stopped: bool,
}

/// A receiver's records opened on threads: the scan of its stream ahead of the reader,
/// and the records out or back, in stream order, at most `capacity` bytes of them.
pub(crate) struct OpenQueue {
    scan: Scan,
    slots: VecDeque<Slot>,
    /// Records scanned and copied, waiting to be handed out.
    waiting: VecDeque<OpenWork>,
    queued: usize,
    capacity: usize,
    max_body: usize,
    /// Buffers of records taken, to copy the next ones into (up to `capacity` bytes).
    spare: Vec<Vec<u8>>,
    /// Their capacity in all.
    spare_bytes: usize,
}

impl OpenQueue {
    /// A queue for a stream whose first `hello_len` bytes are the peer's hello, whose
    /// records carry at most `max_payload` bytes, holding at most `capacity` bytes.
    pub(crate) fn new(hello_len: usize, max_payload: usize, capacity: usize) -> Self {
        OpenQueue {
            scan: Scan {
                hello_left: hello_len,
                header: [0; HEADER_LEN],
                header_have: 0,
                body_left: 0,
                next_sequence: 0,
                stopped: false,
            },
            slots: VecDeque::new(),
            waiting: VecDeque::new(),
            queued: 0,
            capacity,
            max_body: 1 + max_payload + TAG_LEN,
            spare: Vec::new(),
            spare_bytes: 0,
        }
    }

    /// The body length a header announces, if within the record layer's bounds (the
    /// reader reports one that is not).
    fn body_len(&self, header: &[u8]) -> Option<usize> {
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(header.get(..HEADER_LEN)?);
        let len = u32::from_be_bytes(bytes) as usize;
        (1 + TAG_LEN..=self.max_body).contains(&len).then_some(len)
    }

    /// Scans the next `input` of the stream, copying each record wholly inside it, from
    /// sequence number `first` on, to be opened with `cipher` (none before the keys).
    pub(crate) fn scan(&mut self, input: &[u8], cipher: Option<&RecordCipher>, first: u64) {
        let mut at = 0;
        let skip = self.scan.hello_left.min(input.len());
        self.scan.hello_left -= skip;
        at += skip;
        while at < input.len() && !self.scan.stopped {
            if self.scan.body_left > 0 {
                let n = self.scan.body_left.min(input.len() - at);
                self.scan.body_left -= n;
                at += n;
                continue;
            }
            if self.scan.header_have > 0 || input.len() - at < HEADER_LEN {
                // A header split between chunks: gather it; its record is split too.
                let n = (HEADER_LEN - self.scan.header_have).min(input.len() - at);
                let have = self.scan.header_have;
                self.scan.header[have..have + n].copy_from_slice(&input[at..at + n]);
                self.scan.header_have += n;
                at += n;
                if self.scan.header_have == HEADER_LEN {
                    self.scan.header_have = 0;
                    match self.body_len(&self.scan.header) {
                        Some(body) => {
                            self.scan.body_left = body;
                            self.scan.next_sequence += 1;
                        }
                        None => self.scan.stopped = true,
                    }
                }
                continue;
            }
            let Some(body) = self.body_len(&input[at..at + HEADER_LEN]) else {
                self.scan.stopped = true;
                return;
            };
            let sequence = self.scan.next_sequence;
            self.scan.next_sequence += 1;
            let total = HEADER_LEN + body;
            if input.len() - at < total {
                // Split between chunks: the reader opens it.
                self.scan.body_left = body - (input.len() - at - HEADER_LEN);
                return;
            }
            if let Some(cipher) = cipher
                && sequence >= first
                && self.queued + total <= self.capacity
            {
                let mut bytes = self.spare.pop().unwrap_or_default();
                self.spare_bytes -= bytes.capacity();
                bytes.clear();
                bytes.extend_from_slice(&input[at..at + total]);
                self.queued += total;
                self.waiting.push_back(OpenWork {
                    sequence,
                    cipher: cipher.clone(),
                    bytes,
                    opened: None,
                });
            }
            at += total;
        }
    }

    /// The next record to open on a thread.
    pub(crate) fn poll(&mut self) -> Option<OpenWork> {
        let work = self.waiting.pop_front()?;
        self.slots.push_back(Slot::Out {
            sequence: work.sequence,
            len: work.len(),
        });
        Some(work)
    }

    /// A record from [`OpenQueue::poll`] is back. One the reader has passed meanwhile is
    /// dropped; one this queue never handed out (another connection's) is refused.
    pub(crate) fn done(&mut self, work: OpenWork, cipher: &RecordCipher) -> Result<(), OpenWork> {
        if !work.cipher.same_key(cipher) {
            return Err(work);
        }
        let slot = self.slots.iter_mut().find(|slot| {
            matches!(slot, Slot::Out { sequence, len }
                if *sequence == work.sequence && *len == work.len())
        });
        match slot {
            Some(slot) => *slot = Slot::Back(work),
            None => self.recycle(work),
        }
        Ok(())
    }

    /// What was done for record `sequence`, which the reader has reached; records
    /// before it are dropped (the reader opened them itself).
    pub(crate) fn take(&mut self, sequence: u64) -> Taken {
        while self
            .slots
            .front()
            .is_some_and(|slot| slot.sequence() < sequence)
        {
            self.pop_front();
        }
        while self
            .waiting
            .front()
            .is_some_and(|work| work.sequence <= sequence)
        {
            if let Some(work) = self.waiting.pop_front() {
                self.queued -= work.len();
                self.recycle(work);
            }
        }
        if self
            .slots
            .front()
            .is_none_or(|slot| slot.sequence() != sequence)
        {
            return Taken::Nothing;
        }
        match self.slots.pop_front() {
            Some(Slot::Back(work)) => {
                self.queued -= work.len();
                match work.opened {
                    Some(true) => Taken::Opened(work),
                    Some(false) => Taken::Forged(work),
                    None => Taken::NotRun,
                }
            }
            Some(Slot::Out { len, .. }) => {
                self.queued -= len;
                Taken::StillOut
            }
            None => Taken::Nothing,
        }
    }

    fn pop_front(&mut self) {
        match self.slots.pop_front() {
            Some(Slot::Back(work)) => {
                self.queued -= work.len();
                self.recycle(work);
            }
            Some(Slot::Out { len, .. }) => self.queued -= len,
            None => {}
        }
    }

    /// Keeps a taken record's buffer for the next copy, up to the queue's capacity.
    pub(crate) fn recycle(&mut self, work: OpenWork) {
        if self.spare_bytes + work.bytes.capacity() <= self.capacity {
            self.spare_bytes += work.bytes.capacity();
            self.spare.push(work.bytes);
        }
    }

    /// Whether the reader, at record `sequence`, should wait: its work is out.
    pub(crate) fn waits_at(&self, sequence: u64) -> bool {
        self.slots
            .iter()
            .find(|slot| slot.sequence() >= sequence)
            .is_some_and(|slot| slot.sequence() == sequence && matches!(slot, Slot::Out { .. }))
    }

    /// Records out with threads, or waiting to be handed out.
    pub(crate) fn pending(&self) -> bool {
        !self.waiting.is_empty() || self.slots.iter().any(|s| matches!(s, Slot::Out { .. }))
    }
}
