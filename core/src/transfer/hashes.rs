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

/// The running SHA-256 of the file whose bytes are passing in stream order, and the
/// states left after the verified prefixes of resumed files (each continues from there).
#[derive(Default)]
pub(crate) struct FileHashes {
    current: Option<(u32, u8, Sha256)>,
    resumed: Vec<(u32, Sha256)>,
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

    /// One piece of a segment passes, in stream order: its file's hash advances over
    /// `data`, and `segment` absorbs the piece (its extent and the SHA-256 of the file's
    /// bytes up to the piece's end, PROTOCOL.md §6.3). This is the only pass either side
    /// makes over the data with SHA-256.
    pub(crate) fn absorb(
        &mut self,
        segment: &mut SegmentHasher,
        extent: &Extent,
        data: &[u8],
        size: u64,
    ) -> Result<PieceDigest, TransferError> {
        let Extent {
            entry,
            attempt,
            offset,
            ..
        } = *extent;
        let mut hasher = match self.current.take() {
            Some((e, a, hasher)) if e == entry && a == attempt => hasher,
            _ if offset == 0 => Sha256::new(),
            _ => match self.resumed.iter().position(|(e, _)| *e == entry) {
                Some(at) => self.resumed.swap_remove(at).1,
                None => {
                    return Err(segment_rule(
                        "a file resumed at an offset the plan did not settle",
                    ));
                }
            },
        };
        hasher.update(data);
        let ends_file = offset + data.len() as u64 == size;
        let prefix: [u8; 32] = if ends_file {
            hasher.finalize().into()
        } else {
            let prefix = hasher.clone().finalize().into();
            self.current = Some((entry, attempt, hasher));
            prefix
        };
        let mut piece = [0u8; EXTENT_LEN + 32];
        encode_extent(&mut piece[..EXTENT_LEN], extent);
        piece[EXTENT_LEN..].copy_from_slice(&prefix);
        segment.update(&piece);
        Ok(PieceDigest { prefix, ends_file })
    }
}
