//! The bodies of Ferry's own transfer messages (PROTOCOL.md §6), after the kind byte.
//! The batch messages (entries, plan, plan result, layout) are views: of a received body,
//! read as they are walked (nothing is allocated for them), or of the state they are sent
//! from.

use core::ops::Range;
use std::io::Write;

use crate::msgpack::{self, DecodeError, Reader};
use crate::resource::wire::RESOURCE_HASH_LEN;
use crate::transfer::manifest::{Entry, EntryKind, Manifest};
use crate::transfer::{TransferError, Unreadable};

/// Bytes per extent in a layout.
pub(crate) const EXTENT_LEN: usize = 4 + 1 + 8 + 4;
/// Bytes per digest in a layout.
pub(crate) const DIGEST_LEN: usize = 4 + 1 + 1 + 32;
/// Longest reason text carried by a cancel or decline.
pub(crate) const MAX_REASON_LEN: usize = 512;

fn decode_error(what: &'static str) -> impl Fn(DecodeError) -> TransferError {
    move |source| TransferError::Decode { what, source }
}

fn protocol(why: &'static str) -> TransferError {
    TransferError::Protocol(why)
}

/// Reads a big-endian integer of `N` bytes at `at`, or fails naming `what`.
fn be<const N: usize>(
    body: &[u8],
    at: usize,
    what: &'static str,
) -> Result<[u8; N], TransferError> {
    body.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(TransferError::Protocol(what))
}

// ---------------------------------------------------------------- manifest

/// `MANIFEST_BEGIN`: how much the receiver must make room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ManifestBegin {
    pub(crate) entries: u64,
    pub(crate) path_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) part_size: u64,
}

impl ManifestBegin {
    fn write(&self, mut out: &mut dyn Write) -> std::io::Result<()> {
        rmp::encode::write_array_len(&mut out, 4)?;
        for value in [
            self.entries,
            self.path_bytes,
            self.total_bytes,
            self.part_size,
        ] {
            rmp::encode::write_uint(&mut out, value)?;
        }
        Ok(())
    }

    pub(crate) fn encoded_len(&self) -> usize {
        msgpack::encoded_len(|out| self.write(out))
    }

    pub(crate) fn encode(&self, out: &mut [u8]) -> usize {
        msgpack::encode_into(out, |w| self.write(w)).unwrap_or(0)
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, TransferError> {
        let err = decode_error("manifest header");
        let mut reader = Reader::new(body);
        if reader.array_len().map_err(&err)? != 4 {
            return Err(protocol("the manifest header is not a four-element array"));
        }
        Ok(ManifestBegin {
            entries: reader.uint().map_err(&err)?,
            path_bytes: reader.uint().map_err(&err)?,
            total_bytes: reader.uint().map_err(&err)?,
            part_size: reader.uint().map_err(&err)?,
        })
    }
}

fn write_entry(mut out: &mut dyn Write, entry: &Entry<'_>) -> std::io::Result<()> {
    rmp::encode::write_array_len(&mut out, 6)?;
    rmp::encode::write_str(&mut out, entry.path)?;
    rmp::encode::write_uint(&mut out, matches!(entry.kind, EntryKind::Directory) as u64)?;
    rmp::encode::write_uint(&mut out, entry.size)?;
    rmp::encode::write_uint(&mut out, u64::from(entry.mode))?;
    rmp::encode::write_sint(&mut out, entry.mtime)?;
    match &entry.sha256 {
        Some(hash) => rmp::encode::write_bin(&mut out, hash)?,
        None => rmp::encode::write_nil(&mut out)?,
    }
    Ok(())
}

/// Bytes one entry takes in a `MANIFEST_ENTRIES` message.
pub(crate) fn entry_len(entry: &Entry<'_>) -> usize {
    msgpack::encoded_len(|out| write_entry(out, entry))
}

/// Writes `MANIFEST_ENTRIES` body: an array of entries.
fn encode_entries<'a>(
    out: &mut [u8],
    entries: impl Iterator<Item = Entry<'a>> + Clone,
    count: usize,
) -> usize {
    msgpack::encode_into(out, |mut w| {
        rmp::encode::write_array_len(&mut w, count as u32)?;
        for entry in entries.clone() {
            write_entry(w, &entry)?;
        }
        Ok(())
    })
    .unwrap_or(0)
}

/// Reads a `MANIFEST_ENTRIES` body, handing each entry to `each`.
fn decode_entries(
    body: &[u8],
    mut each: impl FnMut(Entry<'_>) -> Result<(), TransferError>,
) -> Result<(), TransferError> {
    let err = decode_error("manifest entry");
    let mut reader = Reader::new(body);
    let count = reader.array_len().map_err(&err)?;
    for _ in 0..count {
        if reader.array_len().map_err(&err)? != 6 {
            return Err(protocol("a manifest entry is not a six-element array"));
        }
        let path = reader.str().map_err(&err)?;
        let kind = match reader.uint().map_err(&err)? {
            0 => EntryKind::File,
            1 => EntryKind::Directory,
            _ => return Err(protocol("a manifest entry has an unknown kind")),
        };
        let size = reader.uint().map_err(&err)?;
        let mode = u32::try_from(reader.uint().map_err(&err)?)
            .map_err(|_| protocol("a manifest entry's mode does not fit 32 bits"))?;
        let mtime = reader.sint().map_err(&err)?;
        let sha256 = match reader.optional_bin().map_err(&err)? {
            None => None,
            Some(hash) => Some(
                hash.try_into()
                    .map_err(|_| protocol("a manifest hash is not 32 bytes"))?,
            ),
        };
        each(Entry {
            path,
            kind,
            size,
            mode,
            mtime,
            sha256,
        })?;
    }
    if !reader.is_empty() {
        return Err(protocol("trailing bytes after the manifest entries"));
    }
    Ok(())
}

/// `MANIFEST_ENTRIES`: received (read as walked), or entries of a manifest to send.
#[derive(Clone, Debug)]
pub(crate) enum Entries<'a> {
    Received(&'a [u8]),
    Listed {
        manifest: &'a Manifest,
        range: Range<usize>,
    },
}

impl<'a> Entries<'a> {
    pub(crate) fn received(body: &'a [u8]) -> Self {
        Entries::Received(body)
    }

    /// Entries `range` of `manifest`, to send.
    pub(crate) fn listed(manifest: &'a Manifest, range: Range<usize>) -> Self {
        Entries::Listed { manifest, range }
    }

    fn listed_entries(&self) -> impl Iterator<Item = Entry<'a>> + Clone + 'a {
        let (manifest, range) = match self {
            Entries::Listed { manifest, range } => (Some(*manifest), range.clone()),
            Entries::Received(_) => (None, 0..0),
        };
        range.filter_map(move |i| manifest?.get(i))
    }

    pub(crate) fn encoded_len(&self) -> usize {
        let count = self.listed_entries().count();
        msgpack::encoded_len(|mut out| {
            rmp::encode::write_array_len(&mut out, count as u32)?;
            Ok(())
        }) + self.listed_entries().map(|e| entry_len(&e)).sum::<usize>()
    }

    pub(crate) fn encode(&self, out: &mut [u8]) {
        let count = self.listed_entries().count();
        encode_entries(out, self.listed_entries(), count);
    }

    /// Hands each received entry to `each`.
    pub(crate) fn for_each(
        &self,
        each: impl FnMut(Entry<'_>) -> Result<(), TransferError>,
    ) -> Result<(), TransferError> {
        match self {
            Entries::Received(body) => decode_entries(body, each),
            Entries::Listed { .. } => Ok(()),
        }
    }
}

// ---------------------------------------------------------------- plan

/// One resume claim: the receiver holds `offset` bytes of the entry whose SHA-256 is
/// `prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) entry: u32,
    pub(crate) offset: u64,
    pub(crate) prefix: [u8; 32],
}

/// Bytes one claim takes in a `PLAN` message (at most).
pub(crate) const CLAIM_MAX_LEN: usize = 1 + 5 + 9 + 2 + 32;

/// The receiver's limits the sender must respect, sent with every `PLAN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReceiverLimits {
    pub(crate) segments_in_flight: u64,
    pub(crate) max_extents: u64,
    pub(crate) segment_size: u64,
}

/// Reads a `PLAN` body: returns `final` and the receiver's limits, and hands each claim
/// to `each`.
fn decode_plan(
    body: &[u8],
    mut each: impl FnMut(Claim) -> Result<(), TransferError>,
) -> Result<(bool, ReceiverLimits), TransferError> {
    let err = decode_error("resume plan");
    let mut reader = Reader::new(body);
    if reader.array_len().map_err(&err)? != 5 {
        return Err(protocol("the resume plan is not a five-element array"));
    }
    let last = reader.bool().map_err(&err)?;
    let limits = ReceiverLimits {
        segments_in_flight: reader.uint().map_err(&err)?,
        max_extents: reader.uint().map_err(&err)?,
        segment_size: reader.uint().map_err(&err)?,
    };
    let count = reader.array_len().map_err(&err)?;
    for _ in 0..count {
        if reader.array_len().map_err(&err)? != 3 {
            return Err(protocol("a resume claim is not a three-element array"));
        }
        let entry = u32::try_from(reader.uint().map_err(&err)?)
            .map_err(|_| protocol("claim entry out of range"))?;
        let offset = reader.uint().map_err(&err)?;
        let prefix = reader
            .bin()
            .map_err(&err)?
            .try_into()
            .map_err(|_| protocol("a claim's prefix hash is not 32 bytes"))?;
        each(Claim {
            entry,
            offset,
            prefix,
        })?;
    }
    if !reader.is_empty() {
        return Err(protocol("trailing bytes after the resume plan"));
    }
    Ok((last, limits))
}

/// `PLAN`: received (read as walked), or claims to send.
#[derive(Clone, Debug)]
pub(crate) enum Plan<'a> {
    Received(&'a [u8]),
    Claims {
        last: bool,
        limits: ReceiverLimits,
        claims: &'a [Claim],
    },
}

impl<'a> Plan<'a> {
    pub(crate) fn received(body: &'a [u8]) -> Self {
        Plan::Received(body)
    }

    pub(crate) fn encoded_len(&self) -> usize {
        msgpack::encoded_len(|out| self.write(out))
    }

    fn write(&self, mut out: &mut dyn Write) -> std::io::Result<()> {
        if let Plan::Claims {
            last,
            limits,
            claims,
        } = self
        {
            rmp::encode::write_array_len(&mut out, 5)?;
            rmp::encode::write_bool(&mut out, *last)?;
            rmp::encode::write_uint(&mut out, limits.segments_in_flight)?;
            rmp::encode::write_uint(&mut out, limits.max_extents)?;
            rmp::encode::write_uint(&mut out, limits.segment_size)?;
            rmp::encode::write_array_len(&mut out, claims.len() as u32)?;
            for claim in *claims {
                rmp::encode::write_array_len(&mut out, 3)?;
                rmp::encode::write_uint(&mut out, u64::from(claim.entry))?;
                rmp::encode::write_uint(&mut out, claim.offset)?;
                rmp::encode::write_bin(&mut out, &claim.prefix)?;
            }
        }
        Ok(())
    }

    pub(crate) fn encode(&self, out: &mut [u8]) {
        let _ = msgpack::encode_into(out, |w| self.write(w));
    }

    /// Reads a received plan: returns `final` and the receiver's limits, and hands each
    /// claim to `each`.
    pub(crate) fn read(
        &self,
        each: impl FnMut(Claim) -> Result<(), TransferError>,
    ) -> Result<(bool, ReceiverLimits), TransferError> {
        match self {
            Plan::Received(body) => decode_plan(body, each),
            Plan::Claims { last, limits, .. } => Ok((*last, *limits)),
        }
    }
}

/// Bytes one rejected entry takes in a `PLAN_RESULT` message (at most).
pub(crate) const REJECTION_MAX_LEN: usize = 5;

/// Reads a `PLAN_RESULT` body; hands each rejected entry to `each`; returns `final`.
fn decode_plan_result(
    body: &[u8],
    mut each: impl FnMut(u32) -> Result<(), TransferError>,
) -> Result<bool, TransferError> {
    let err = decode_error("resume plan result");
    let mut reader = Reader::new(body);
    if reader.array_len().map_err(&err)? != 2 {
        return Err(protocol("the plan result is not a two-element array"));
    }
    let last = reader.bool().map_err(&err)?;
    let count = reader.array_len().map_err(&err)?;
    for _ in 0..count {
        let entry = u32::try_from(reader.uint().map_err(&err)?)
            .map_err(|_| protocol("rejected entry out of range"))?;
        each(entry)?;
    }
    if !reader.is_empty() {
        return Err(protocol("trailing bytes after the plan result"));
    }
    Ok(last)
}

/// `PLAN_RESULT`: received (read as walked), or rejected claims to send.
#[derive(Clone, Debug)]
pub(crate) enum PlanResult<'a> {
    Received(&'a [u8]),
    Rejected { last: bool, rejected: &'a [u32] },
}

impl<'a> PlanResult<'a> {
    pub(crate) fn received(body: &'a [u8]) -> Self {
        PlanResult::Received(body)
    }

    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            PlanResult::Rejected { last, rejected } => {
                msgpack::encoded_len(|out| write_plan_result(out, *last, rejected))
            }
            PlanResult::Received(body) => body.len(),
        }
    }

    pub(crate) fn encode(&self, out: &mut [u8]) {
        if let PlanResult::Rejected { last, rejected } = self {
            let _ = msgpack::encode_into(out, |w| write_plan_result(w, *last, rejected));
        }
    }

    /// Reads a received result: hands each rejected entry to `each`; returns `final`.
    pub(crate) fn read(
        &self,
        each: impl FnMut(u32) -> Result<(), TransferError>,
    ) -> Result<bool, TransferError> {
        match self {
            PlanResult::Received(body) => decode_plan_result(body, each),
            PlanResult::Rejected { last, .. } => Ok(*last),
        }
    }
}

fn write_plan_result(mut w: &mut dyn Write, last: bool, rejected: &[u32]) -> std::io::Result<()> {
    rmp::encode::write_array_len(&mut w, 2)?;
    rmp::encode::write_bool(&mut w, last)?;
    rmp::encode::write_array_len(&mut w, rejected.len() as u32)?;
    for &entry in rejected {
        rmp::encode::write_uint(&mut w, u64::from(entry))?;
    }
    Ok(())
}

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
            return Err(protocol(
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
            return Err(protocol("a layout has more digests than extents"));
        }
        if body.len() != digests_at + 4 + digests * DIGEST_LEN {
            return Err(protocol("a layout's length does not match its counts"));
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

// ---------------------------------------------------------------- small messages

/// A `PART` body: resource hash, part index, data.
pub(crate) fn decode_part(body: &[u8]) -> Result<([u8; 32], u32, &[u8]), TransferError> {
    let hash = be::<32>(body, 0, "a part too short for its resource hash")?;
    let index = u32::from_be_bytes(be::<4>(body, 32, "a part too short for its index")?);
    Ok((hash, index, &body[36..]))
}

/// `RETRY`: entry and the attempt about to start.
pub(crate) fn decode_retry(body: &[u8]) -> Result<(u32, u8), TransferError> {
    if body.len() != 5 {
        return Err(protocol("a retry request is not 5 bytes"));
    }
    Ok((
        u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
        body[4],
    ))
}

/// `UPDATE`: a file about to be sent again, as the sender now finds it (PROTOCOL.md §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) entry: u32,
    pub(crate) attempt: u8,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
}

impl Update {
    pub(crate) const LEN: usize = 4 + 1 + 8 + 8;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.entry.to_be_bytes());
        out[4] = self.attempt;
        out[5..13].copy_from_slice(&self.size.to_be_bytes());
        out[13..].copy_from_slice(&self.mtime.to_be_bytes());
        out
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, TransferError> {
        const WHY: &str = "an update is not 21 bytes";
        if body.len() != Self::LEN {
            return Err(protocol(WHY));
        }
        Ok(Update {
            entry: u32::from_be_bytes(be::<4>(body, 0, WHY)?),
            attempt: body[4],
            size: u64::from_be_bytes(be::<8>(body, 5, WHY)?),
            mtime: i64::from_be_bytes(be::<8>(body, 13, WHY)?),
        })
    }
}

/// Why the sender stopped sending an attempt before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The file changed while it was read: the receiver asks for it again.
    Changed,
    /// The sender cannot read it: the file fails now.
    Unreadable(Unreadable),
}

impl Trouble {
    fn code(self) -> u8 {
        match self {
            Trouble::Changed => 0,
            Trouble::Unreadable(Unreadable::Gone) => 1,
            Trouble::Unreadable(Unreadable::PermissionDenied) => 2,
            Trouble::Unreadable(_) => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Trouble::Changed,
            1 => Trouble::Unreadable(Unreadable::Gone),
            2 => Trouble::Unreadable(Unreadable::PermissionDenied),
            3 => Trouble::Unreadable(Unreadable::ReadError),
            _ => return None,
        })
    }
}

/// `ABANDON`: the sender ends an attempt before its end (PROTOCOL.md §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Abandon {
    pub(crate) entry: u32,
    pub(crate) attempt: u8,
    pub(crate) trouble: Trouble,
}

impl Abandon {
    pub(crate) const LEN: usize = 4 + 1 + 1;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let e = self.entry.to_be_bytes();
        [e[0], e[1], e[2], e[3], self.attempt, self.trouble.code()]
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, TransferError> {
        if body.len() != Self::LEN {
            return Err(protocol("an abandon is not 6 bytes"));
        }
        Ok(Abandon {
            entry: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            attempt: body[4],
            trouble: Trouble::from_code(body[5])
                .ok_or(protocol("an abandon with an unknown cause"))?,
        })
    }
}

/// `DONE`: committed and failed counts.
pub(crate) fn decode_done(body: &[u8]) -> Result<(u64, u64), TransferError> {
    let committed = u64::from_be_bytes(be::<8>(body, 0, "a done message is not 16 bytes")?);
    let failed = u64::from_be_bytes(be::<8>(body, 8, "a done message is not 16 bytes")?);
    if body.len() != 16 {
        return Err(protocol("a done message is not 16 bytes"));
    }
    Ok((committed, failed))
}

/// A reason text (`CANCEL`, `DECLINE`) as received: at most `MAX_REASON_LEN` bytes of it.
pub(crate) fn reason(body: &[u8]) -> &[u8] {
    &body[..body.len().min(MAX_REASON_LEN)]
}
