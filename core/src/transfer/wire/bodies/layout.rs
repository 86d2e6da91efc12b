//! `LAYOUT`: the file pieces of a segment and the digests of the files that end in it.

use crate::resource::wire::RESOURCE_HASH_LEN;
use crate::transfer::TransferError;
use crate::transfer::violation::malformed;

use super::{DIGEST_LEN, EXTENT_LEN, be};

// ---------------------------------------------------------------- layout

/// One piece of a file inside a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) entry: u32,
    pub(crate) attempt: u8,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// The sender's SHA-256 of one attempt of a file, sent with the segment holding its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileDigest {
    pub(crate) entry: u32,
    pub(crate) attempt: u8,
    /// The sender saw the file change (a short read, or a hash that differs from the
    /// reference); the receiver treats the attempt as failed.
    pub(crate) changed: bool,
    pub(crate) sha256: [u8; 32],
}

/// Bytes of a `LAYOUT` message, kind byte included.
pub(crate) const fn layout_len(extents: usize, digests: usize) -> usize {
    1 + RESOURCE_HASH_LEN + 4 + extents * EXTENT_LEN + 4 + digests * DIGEST_LEN
}

/// Writes one extent (`EXTENT_LEN` bytes) of a `LAYOUT` body. The body is
/// `resource_hash ‖ u32 count ‖ extents ‖ u32 count ‖ digests`.
pub(crate) fn encode_extent(out: &mut [u8], extent: &Extent) {
    out[..4].copy_from_slice(&extent.entry.to_be_bytes());
    out[4] = extent.attempt;
    out[5..13].copy_from_slice(&extent.offset.to_be_bytes());
    out[13..17].copy_from_slice(&extent.len.to_be_bytes());
}

/// Writes one digest (`DIGEST_LEN` bytes) of a `LAYOUT` body.
fn encode_digest(out: &mut [u8], digest: &FileDigest) {
    out[..4].copy_from_slice(&digest.entry.to_be_bytes());
    out[4] = digest.attempt;
    out[5] = u8::from(digest.changed);
    out[6..38].copy_from_slice(&digest.sha256);
}

/// A `LAYOUT` body: received (its counts checked against the bytes present), or a
/// segment's pieces and digests to send.
#[derive(Clone, Debug)]
pub(crate) struct Layout<'a> {
    pub(crate) hash: [u8; 32],
    pieces: Pieces<'a>,
}

#[derive(Clone, Debug)]
enum Pieces<'a> {
    Received {
        extents: &'a [u8],
        digests: &'a [u8],
    },
    /// Extents with their place in the segment's buffer (not sent), and digests.
    Sending {
        extents: &'a [(Extent, usize)],
        digests: &'a [FileDigest],
    },
}

impl<'a> Layout<'a> {
    /// A segment's layout to send.
    pub(crate) fn sending(
        hash: [u8; 32],
        extents: &'a [(Extent, usize)],
        digests: &'a [FileDigest],
    ) -> Self {
        Layout {
            hash,
            pieces: Pieces::Sending { extents, digests },
        }
    }

    pub(crate) fn decode(body: &'a [u8], max_extents: usize) -> Result<Self, TransferError> {
        let hash = be::<32>(body, 0, "layout too short for its resource hash")?;
        let extents =
            u32::from_be_bytes(be::<4>(body, 32, "layout too short for its extent count")?)
                as usize;
        if extents == 0 || extents > max_extents {
            return Err(malformed(
                "a layout has no extents or more than the configured maximum",
            ));
        }
        let digests_at = 36 + extents * EXTENT_LEN;
        let digests = u32::from_be_bytes(be::<4>(
            body,
            digests_at,
            "layout shorter than its extents",
        )?) as usize;
        if digests > extents {
            return Err(malformed("a layout has more digests than extents"));
        }
        if body.len() != digests_at + 4 + digests * DIGEST_LEN {
            return Err(malformed("a layout's length does not match its counts"));
        }
        Ok(Layout {
            hash,
            pieces: Pieces::Received {
                extents: &body[36..digests_at],
                digests: &body[digests_at + 4..],
            },
        })
    }

    fn counts(&self) -> (usize, usize) {
        match &self.pieces {
            Pieces::Received { extents, digests } => {
                (extents.len() / EXTENT_LEN, digests.len() / DIGEST_LEN)
            }
            Pieces::Sending { extents, digests } => (extents.len(), digests.len()),
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        let (extents, digests) = self.counts();
        layout_len(extents, digests) - 1
    }

    pub(crate) fn encode(&self, out: &mut [u8]) {
        let (count, digest_count) = self.counts();
        out[..32].copy_from_slice(&self.hash);
        out[32..36].copy_from_slice(&(count as u32).to_be_bytes());
        let mut at = 36;
        for extent in self.extents() {
            encode_extent(&mut out[at..at + EXTENT_LEN], &extent);
            at += EXTENT_LEN;
        }
        out[at..at + 4].copy_from_slice(&(digest_count as u32).to_be_bytes());
        at += 4;
        for digest in self.digests() {
            encode_digest(&mut out[at..at + DIGEST_LEN], &digest);
            at += DIGEST_LEN;
        }
    }

    pub(crate) fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        let (received, sending): (&[u8], &[(Extent, usize)]) = match &self.pieces {
            Pieces::Received { extents, .. } => (extents, &[]),
            Pieces::Sending { extents, .. } => (&[], extents),
        };
        received
            .chunks_exact(EXTENT_LEN)
            .map(|b| Extent {
                entry: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                attempt: b[4],
                offset: u64::from_be_bytes([b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12]]),
                len: u32::from_be_bytes([b[13], b[14], b[15], b[16]]),
            })
            .chain(sending.iter().map(|(extent, _)| *extent))
    }

    pub(crate) fn digests(&self) -> impl Iterator<Item = FileDigest> + '_ {
        let (received, sending): (&[u8], &[FileDigest]) = match &self.pieces {
            Pieces::Received { digests, .. } => (digests, &[]),
            Pieces::Sending { digests, .. } => (&[], digests),
        };
        received
            .chunks_exact(DIGEST_LEN)
            .map(|b| {
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&b[6..38]);
                FileDigest {
                    entry: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    attempt: b[4],
                    changed: b[5] != 0,
                    sha256,
                }
            })
            .chain(sending.iter().copied())
    }
}
