//! Work a session can hand to its driver to run beside it: each segment's SHA-256 pass.
//!
//! Hashing is half of what either side spends per byte (one SHA-256 pass and one AEAD
//! pass, PROTOCOL.md §6.3), and it needs nothing of the session but the segment's bytes
//! and the running file hashes. A driver that asks for it
//! ([`Session::offload_hashing`](crate::transfer::Session::offload_hashing)) takes each
//! segment's pass from [`Session::poll_work`](crate::transfer::Session::poll_work), runs
//! it on a thread of its own ([`HashWork::run`]) while the session goes on opening and
//! sealing records, and gives it back with
//! [`Session::work_done`](crate::transfer::Session::work_done).
//!
//! The order stays the session's: there is one [`HashWork`] per session, and it carries
//! the running file hashes with it, so segments are hashed one after another in stream
//! order whichever thread runs them, and what the session sends does not depend on
//! where or when the pass ran, only on when it came back (as with a deferred write).

use crate::resource::SegmentHasher;
use crate::transfer::TransferError;
use crate::transfer::hashes::{FileHashes, PieceDigest};
use crate::transfer::violation::segment_rule;
use crate::transfer::wire::Extent;

/// One segment's SHA-256 pass: its pieces through their files' running hashes and into
/// the segment hash. Runs on any thread; holds no reference into the session.
pub struct HashWork {
    /// The segment slot it belongs to and the slot's place in the stream, checked when
    /// it comes back.
    pub(crate) slot: usize,
    pub(crate) seq: u64,
    /// The segment's bytes, lent by its slot for the pass.
    pub(crate) data: Vec<u8>,
    /// Each piece, its place in `data`, and its file's size.
    pub(crate) pieces: Vec<(Extent, usize, u64)>,
    /// The running SHA-256 of each file as the stream passes: it travels with the work,
    /// which is what keeps the passes in stream order.
    pub(crate) hashes: FileHashes,
    pub(crate) segment: SegmentHasher,
    /// Per piece, in order: the file's hash up to the piece's end.
    pub(crate) digests: Vec<PieceDigest>,
    /// `None` until run; then the outcome.
    pub(crate) outcome: Option<Result<(), TransferError>>,
}

impl HashWork {
    pub(crate) fn new(hashes: FileHashes, max_pieces: usize) -> Self {
        HashWork {
            slot: 0,
            seq: 0,
            data: Vec::new(),
            pieces: Vec::with_capacity(max_pieces),
            hashes,
            segment: SegmentHasher::new(),
            digests: Vec::with_capacity(max_pieces),
            outcome: None,
        }
    }

    /// Makes it the pass over segment slot `slot` (stream place `seq`), whose bytes it
    /// takes from `data` until it comes back.
    pub(crate) fn load(
        &mut self,
        slot: usize,
        seq: u64,
        data: &mut Vec<u8>,
        pieces: impl Iterator<Item = (Extent, usize, u64)>,
    ) {
        self.slot = slot;
        self.seq = seq;
        core::mem::swap(&mut self.data, data);
        self.pieces.clear();
        self.pieces.extend(pieces);
        self.outcome = None;
    }

    /// The segment's bytes this pass covers, in all.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|(e, _, _)| e.len as usize).sum()
    }

    /// True when it covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs the pass. Pure: the same work gives the same result on any thread.
    pub fn run(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        self.segment = SegmentHasher::new();
        self.digests.clear();
        let mut outcome = Ok(());
        for &(extent, at, size) in &self.pieces {
            let Some(data) = self.data.get(at..at + extent.len as usize) else {
                outcome = Err(segment_rule("a piece beyond its segment's bytes"));
                break;
            };
            match self.hashes.absorb(&mut self.segment, &extent, data, size) {
                Ok(digest) => self.digests.push(digest),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        self.outcome = Some(outcome);
    }

    /// Runs it if the driver did not (a session hashing inline), and gives the outcome.
    pub(crate) fn outcome(&mut self) -> Result<(), TransferError> {
        self.run();
        self.outcome.clone().unwrap_or(Ok(()))
    }
}

impl core::fmt::Debug for HashWork {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HashWork")
            .field("seq", &self.seq)
            .field("pieces", &self.pieces.len())
            .field("bytes", &self.len())
            .field("done", &self.outcome.is_some())
            .finish()
    }
}

/// Where a session's one [`HashWork`] is.
pub(crate) enum WorkPlace {
    /// With the session, free for the next segment.
    Home(HashWork),
    /// Loaded, waiting for the driver to take it ([`Session::poll_work`]).
    Queued(HashWork),
    /// With the driver.
    Out,
}

/// A session's hashing: inline, or handed to the driver.
pub(crate) struct Hashing {
    place: WorkPlace,
    offload: bool,
}

impl Hashing {
    pub(crate) fn new(hashes: FileHashes, max_pieces: usize) -> Self {
        Hashing {
            place: WorkPlace::Home(HashWork::new(hashes, max_pieces)),
            offload: false,
        }
    }

    /// From now on the driver runs the passes.
    pub(crate) fn offload(&mut self) {
        self.offload = true;
    }

    /// The work, if it is free for the next segment.
    pub(crate) fn free(&mut self) -> Option<&mut HashWork> {
        match &mut self.place {
            WorkPlace::Home(work) => Some(work),
            _ => None,
        }
    }

    /// The loaded work is ready: run inline, it is returned at once to be applied;
    /// offloaded, it waits for the driver.
    pub(crate) fn start(&mut self) -> Option<HashWork> {
        let WorkPlace::Home(work) = core::mem::replace(&mut self.place, WorkPlace::Out) else {
            return None;
        };
        if self.offload {
            self.place = WorkPlace::Queued(work);
            None
        } else {
            Some(work)
        }
    }

    /// The work for the driver, if one is waiting.
    pub(crate) fn poll(&mut self) -> Option<HashWork> {
        match core::mem::replace(&mut self.place, WorkPlace::Out) {
            WorkPlace::Queued(work) => Some(work),
            other => {
                self.place = other;
                None
            }
        }
    }

    /// True while the work is out (run inline, or with the driver): only then may it
    /// come back.
    pub(crate) fn is_out(&self) -> bool {
        matches!(self.place, WorkPlace::Out)
    }

    /// The work is home again, free for the next segment.
    pub(crate) fn home(&mut self, work: HashWork) {
        self.place = WorkPlace::Home(work);
    }
}
