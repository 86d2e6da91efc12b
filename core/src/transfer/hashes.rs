//! The one pass of SHA-256 each side makes over the data: each file's running hash as
//! its pieces pass in stream order, absorbed into the segment hash.

use sha2::{Digest, Sha256};

use crate::resource::SegmentHasher;
use crate::transfer::TransferError;
use crate::transfer::violation::segment_rule;
use crate::transfer::wire::Extent;
use crate::transfer::wire::bodies::{EXTENT_LEN, encode_extent};

/// The SHA-256 of a file's bytes up to the end of one piece of a segment.
pub(crate) struct PieceDigest {
    pub(crate) prefix: [u8; 32],
    /// The piece ends the file: `prefix` is the file's digest.
    pub(crate) ends_file: bool,
}

/// Where the hash of a piece's file starts, decided as pieces are handed to their passes
/// in stream order.
pub(crate) enum PieceStart {
    /// It continues the file of the piece before it, in the chain.
    Continue,
    /// The file starts here.
    Fresh,
    /// A resumed file: from the state after its verified prefix.
    Resumed(Box<Sha256>),
}

/// The session's side of the per-file hashes: the states left after the verified
/// prefixes of resumed files (each continues from there), and the file of the last piece
/// handed to a pass, which is the file the chain's running hash is on when the next pass
/// runs (passes run in the order they were handed out).
#[derive(Default)]
pub(crate) struct FileHashes {
    resumed: Vec<(u32, Sha256)>,
    last: Option<(u32, u8)>,
}

impl FileHashes {
    /// Keeps the state after a verified prefix of `entry`, for when its data arrives.
    pub(crate) fn resume_from(&mut self, entry: u32, prefix: Sha256) {
        self.resumed.push((entry, prefix));
    }

    /// Forgets a prefix that will not be used (its claim was rejected).
    pub(crate) fn drop_resumed(&mut self, entry: u32) {
        self.resumed.retain(|(e, _)| *e != entry);
    }

    /// The next piece of the stream, `extent`, goes to a pass: where its file's hash
    /// starts.
    pub(crate) fn start(
        &mut self,
        extent: &Extent,
        ends_file: bool,
    ) -> Result<PieceStart, TransferError> {
        let Extent {
            entry,
            attempt,
            offset,
            ..
        } = *extent;
        let start = match self.last {
            Some((e, a)) if e == entry && a == attempt => PieceStart::Continue,
            _ if offset == 0 => PieceStart::Fresh,
            _ => match self.resumed.iter().position(|(e, _)| *e == entry) {
                Some(at) => PieceStart::Resumed(Box::new(self.resumed.swap_remove(at).1)),
                None => {
                    self.last = None;
                    return Err(segment_rule(
                        "a file resumed at an offset the plan did not settle",
                    ));
                }
            },
        };
        self.last = (!ends_file).then_some((entry, attempt));
        Ok(start)
    }
}

/// The running SHA-256 of the file whose bytes are passing, carried from one pass to the
/// next: a session's passes run on one chain, in the order the session handed them out
/// (a chain checks it). A driver that runs the passes keeps one chain per session.
#[derive(Default)]
pub struct HashChain {
    current: Option<Sha256>,
    /// The number of the next pass to run.
    pub(crate) next: u64,
}

impl HashChain {
    /// A chain for a session whose passes have not begun.
    pub fn new() -> Self {
        HashChain::default()
    }

    /// One piece of a segment passes, in stream order: its file's hash advances over
    /// `data`, and `segment` absorbs the piece (its extent and the SHA-256 of the file's
    /// bytes up to the piece's end, PROTOCOL.md §6.3). This is the only pass either side
    /// makes over the data with SHA-256.
    pub(crate) fn absorb(
        &mut self,
        segment: &mut SegmentHasher,
        extent: &Extent,
        start: &PieceStart,
        data: &[u8],
        ends_file: bool,
    ) -> Result<PieceDigest, TransferError> {
        let mut hasher = match start {
            PieceStart::Continue => self.current.take().ok_or(TransferError::Hashing(
                "a pass ran out of its session's order",
            ))?,
            PieceStart::Fresh => Sha256::new(),
            PieceStart::Resumed(prefix) => (**prefix).clone(),
        };
        hasher.update(data);
        let prefix: [u8; 32] = if ends_file {
            self.current = None;
            hasher.finalize().into()
        } else {
            let prefix = hasher.clone().finalize().into();
            self.current = Some(hasher);
            prefix
        };
        let mut piece = [0u8; EXTENT_LEN + 32];
        encode_extent(&mut piece[..EXTENT_LEN], extent);
        piece[EXTENT_LEN..].copy_from_slice(&prefix);
        segment.update(&piece);
        Ok(PieceDigest { prefix, ends_file })
    }
}
