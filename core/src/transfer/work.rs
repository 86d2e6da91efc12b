//! Work a session can hand to its driver to run beside it: each segment's SHA-256 pass.
//!
//! Hashing is half of what either side spends per byte (one SHA-256 pass and one AEAD
//! pass, PROTOCOL.md §6.3), and it needs nothing of the session but the segment's bytes
//! and the running hash of the file in progress. A driver that asks for it
//! ([`Session::offload_hashing`](crate::transfer::Session::offload_hashing)) takes each
//! segment's pass from [`Session::poll_work`](crate::transfer::Session::poll_work), runs
//! it on a thread of its own ([`HashWork::run`]) while the session goes on opening or
//! sealing records, and gives it back with
//! [`Session::work_done`](crate::transfer::Session::work_done).
//!
//! The order stays the session's. The running file hash lives in a [`HashChain`] that
//! the driver keeps for the session and runs every pass on, in the order the passes were
//! handed out (the chain refuses any other); a session hands out a few passes ahead, so
//! a worker goes from one to the next without waiting for the session, and it applies
//! the results in that same order whenever they come back. What the session sends
//! therefore depends only on when results come back, never on where they ran.

use std::collections::VecDeque;

use crate::resource::SegmentHasher;
use crate::transfer::TransferError;
use crate::transfer::hashes::{FileHashes, HashChain, PieceDigest, PieceStart};
use crate::transfer::manifest::Manifest;
use crate::transfer::violation::{misuse, segment_rule};
use crate::transfer::wire::Extent;

/// Passes a session may have handed out and not yet had back: enough that a worker
/// always has the next one while the session takes the last one's result.
pub(crate) const PASSES_AHEAD: usize = 4;

/// One piece of a pass: its extent, its place in the segment's bytes, whether it ends
/// its file, and where its file's hash starts.
pub(crate) struct Piece {
    pub(crate) extent: Extent,
    pub(crate) at: usize,
    pub(crate) ends_file: bool,
    pub(crate) start: PieceStart,
}

/// One segment's SHA-256 pass: its pieces through their files' running hashes and into
/// the segment hash. Runs on any thread; holds no reference into the session.
pub struct HashWork {
    /// Its place among the session's passes (the order of the chain).
    pub(crate) number: u64,
    /// The segment slot it belongs to and the slot's place in the stream, checked when
    /// it comes back.
    pub(crate) slot: usize,
    pub(crate) seq: u64,
    /// The segment's bytes, lent by its slot for the pass.
    pub(crate) data: Vec<u8>,
    pub(crate) pieces: Vec<Piece>,
    pub(crate) segment: SegmentHasher,
    /// Per piece, in order: the file's hash up to the piece's end.
    pub(crate) digests: Vec<PieceDigest>,
    /// `None` until run; then the outcome.
    pub(crate) outcome: Option<Result<(), TransferError>>,
}

impl HashWork {
    fn new(max_pieces: usize) -> Self {
        HashWork {
            number: 0,
            slot: 0,
            seq: 0,
            data: Vec::new(),
            pieces: Vec::with_capacity(max_pieces),
            segment: SegmentHasher::new(),
            digests: Vec::with_capacity(max_pieces),
            outcome: None,
        }
    }

    /// The slot among `slots` this pass was loaded from, which must still be waiting for
    /// it: `waiting(slot, seq)` says whether a slot holds segment `seq` and waits for its
    /// pass. A pass the session did not give (or took back already) is misuse.
    pub(crate) fn slot_in<'a, S>(
        &self,
        slots: &'a mut [S],
        waiting: impl Fn(&S, u64) -> bool,
    ) -> Result<&'a mut S, TransferError> {
        slots
            .get_mut(self.slot)
            .filter(|slot| waiting(slot, self.seq))
            .ok_or_else(|| misuse("hashing work came back that the session did not give"))
    }

    /// The segment's bytes this pass covers, in all.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.extent.len as usize).sum()
    }

    /// True when it covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs the pass on its session's `chain`. The same passes, run in their order on a
    /// chain, give the same results on any thread; one run out of order fails (and the
    /// session with it, when it comes back).
    pub fn run(&mut self, chain: &mut HashChain) {
        if self.outcome.is_some() {
            return;
        }
        if self.number != chain.next {
            self.outcome = Some(Err(TransferError::Hashing(
                "a pass ran out of its session's order",
            )));
            return;
        }
        chain.next += 1;
        self.segment = SegmentHasher::new();
        self.digests.clear();
        let mut outcome = Ok(());
        for piece in &self.pieces {
            let end = piece.at + piece.extent.len as usize;
            let Some(data) = self.data.get(piece.at..end) else {
                outcome = Err(segment_rule("a piece beyond its segment's bytes"));
                break;
            };
            let digest = chain.absorb(
                &mut self.segment,
                &piece.extent,
                &piece.start,
                data,
                piece.ends_file,
            );
            match digest {
                Ok(digest) => self.digests.push(digest),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        self.outcome = Some(outcome);
    }
}

impl core::fmt::Debug for HashWork {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HashWork")
            .field("number", &self.number)
            .field("seq", &self.seq)
            .field("pieces", &self.pieces.len())
            .field("bytes", &self.len())
            .field("done", &self.outcome.is_some())
            .finish()
    }
}

/// A session's SHA-256 passes: loaded in stream order, run inline or by the driver, and
/// their results taken back in the same order.
pub(crate) struct Hashing {
    /// The session's side of the file hashes (resumed prefixes; the last file loaded).
    files: FileHashes,
    /// The chain passes run on when the session runs them itself.
    chain: HashChain,
    offload: bool,
    /// Passes free for the next segments, and how many exist (at most `ahead()`).
    spare: Vec<HashWork>,
    made: usize,
    max_pieces: usize,
    /// Loaded, for the driver to take.
    queued: VecDeque<HashWork>,
    /// Back before a pass handed out earlier: held until that one is back.
    early: Vec<HashWork>,
    /// Passes handed out, and passes whose results were taken.
    loaded: u64,
    taken: u64,
}

impl Hashing {
    pub(crate) fn new(files: FileHashes, max_pieces: usize) -> Self {
        Hashing {
            files,
            chain: HashChain::new(),
            offload: false,
            spare: Vec::new(),
            made: 0,
            max_pieces,
            queued: VecDeque::new(),
            early: Vec::new(),
            loaded: 0,
            taken: 0,
        }
    }

    /// From now on the driver runs the passes, on a chain of its own: only before the
    /// first pass (after it, the chain is the session's).
    pub(crate) fn offload(&mut self) {
        if self.loaded == 0 {
            self.offload = true;
        }
    }

    /// Passes that may be out at once: a few for a driver, so that its thread goes from
    /// one to the next; one inline, where each is run as it is loaded.
    fn ahead(&self) -> usize {
        if self.offload { PASSES_AHEAD } else { 1 }
    }

    /// True if another pass may be loaded now.
    pub(crate) fn has_free(&self) -> bool {
        !self.spare.is_empty() || self.made < self.ahead()
    }

    /// True while the driver holds the stream up: a pass is waiting for it to take it.
    pub(crate) fn waiting(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Loads the pass over the segment in slot `slot` (stream place `seq`), whose bytes
    /// it takes from `data` until it comes back, and whose pieces are `extents` (each
    /// with its place in the bytes), files of `manifest`. Inline, it is run and returned
    /// at once, to be taken with [`Hashing::take`]; offloaded, it waits for the driver.
    /// `None` if no pass is free (see [`Hashing::has_free`]).
    pub(crate) fn load(
        &mut self,
        slot: usize,
        seq: u64,
        data: &mut Vec<u8>,
        extents: &[(Extent, usize)],
        manifest: &Manifest,
    ) -> Result<(), TransferError> {
        let mut work = match self.spare.pop() {
            Some(work) => work,
            None if self.made < self.ahead() => {
                self.made += 1;
                HashWork::new(self.max_pieces)
            }
            None => return Err(misuse("a hashing pass loaded with none free")),
        };
        work.pieces.clear();
        for &(extent, at) in extents {
            let size = manifest.get(extent.entry as usize).map_or(0, |e| e.size);
            let ends_file = extent.offset + u64::from(extent.len) == size;
            match self.files.start(&extent, ends_file) {
                Ok(start) => work.pieces.push(Piece {
                    extent,
                    at,
                    ends_file,
                    start,
                }),
                Err(error) => {
                    self.spare.push(work);
                    return Err(error);
                }
            }
        }
        work.number = self.loaded;
        self.loaded += 1;
        work.slot = slot;
        work.seq = seq;
        core::mem::swap(&mut work.data, data);
        work.outcome = None;
        if !self.offload {
            work.run(&mut self.chain);
        }
        self.queued.push_back(work);
        Ok(())
    }

    /// The next pass for the driver, if one is waiting.
    pub(crate) fn poll(&mut self) -> Option<HashWork> {
        if self.offload {
            self.queued.pop_front()
        } else {
            None
        }
    }

    /// A pass is back from the driver: held until every pass handed out before it is
    /// back too.
    pub(crate) fn back(&mut self, work: HashWork) -> Result<(), TransferError> {
        let ours = self.offload
            && work.number >= self.taken
            && work.number < self.loaded
            && !self.early.iter().any(|w| w.number == work.number)
            && !self.queued.iter().any(|w| w.number == work.number);
        if !ours {
            return Err(misuse(
                "hashing work came back that the session did not give",
            ));
        }
        if work.outcome.is_none() {
            return Err(TransferError::Hashing("a pass came back without being run"));
        }
        self.early.push(work);
        Ok(())
    }

    /// The next pass whose result is to be taken, in the order they were loaded: run
    /// inline, or back from the driver.
    pub(crate) fn take(&mut self) -> Option<HashWork> {
        let work = if self.offload {
            let at = self.early.iter().position(|w| w.number == self.taken)?;
            self.early.swap_remove(at)
        } else {
            self.queued.pop_front()?
        };
        self.taken += 1;
        Some(work)
    }

    /// A pass whose result was taken is free again.
    pub(crate) fn recycle(&mut self, work: HashWork) {
        self.spare.push(work);
    }
}
