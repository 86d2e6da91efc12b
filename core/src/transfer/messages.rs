//! Ferry's transfer messages (PROTOCOL.md §6): one kind byte, then the body. The RNS
//! Resource messages keep their RNS bytes after the kind byte.

use std::io::Write;

use crate::msgpack::{self, DecodeError, Reader};
use crate::resource::wire::RESOURCE_HASH_LEN;
use crate::transfer::manifest::{Entry, EntryKind};
use crate::transfer::{TransferError, Unreadable};

/// Message kinds.
pub(crate) mod kind {
    pub(crate) const MANIFEST_BEGIN: u8 = 0x01;
    pub(crate) const MANIFEST_ENTRIES: u8 = 0x02;
    pub(crate) const PLAN: u8 = 0x03;
    pub(crate) const PLAN_RESULT: u8 = 0x04;
    pub(crate) const DECLINE: u8 = 0x05;
    pub(crate) const LAYOUT: u8 = 0x10;
    pub(crate) const ADV: u8 = 0x11;
    pub(crate) const REQ: u8 = 0x12;
    pub(crate) const PART: u8 = 0x13;
    pub(crate) const HMU: u8 = 0x14;
    pub(crate) const PRF: u8 = 0x15;
    pub(crate) const ICL: u8 = 0x16;
    pub(crate) const RCL: u8 = 0x17;
    pub(crate) const RETRY: u8 = 0x20;
    pub(crate) const DONE: u8 = 0x21;
    pub(crate) const CANCEL: u8 = 0x22;
    pub(crate) const UPDATE: u8 = 0x23;
    pub(crate) const ABANDON: u8 = 0x24;
}

/// Kind, resource hash and part index in front of a part's data.
pub(crate) const PART_HEADER_LEN: usize = 1 + RESOURCE_HASH_LEN + 4;
/// Room an advertisement needs besides its hashmap (kind byte, keys, fixed fields).
pub(crate) const ADV_OVERHEAD: usize = 160;
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
pub(crate) fn encode_entries<'a>(
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
pub(crate) fn decode_entries(
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

/// `PLAN` body: `[final, segments_in_flight, max_extents, segment_size, [[entry, offset,
/// prefix], ...]]`.
pub(crate) fn encode_plan(
    out: &mut [u8],
    last: bool,
    limits: ReceiverLimits,
    claims: &[Claim],
) -> usize {
    msgpack::encode_into(out, |mut w| {
        rmp::encode::write_array_len(&mut w, 5)?;
        rmp::encode::write_bool(&mut w, last)?;
        rmp::encode::write_uint(&mut w, limits.segments_in_flight)?;
        rmp::encode::write_uint(&mut w, limits.max_extents)?;
        rmp::encode::write_uint(&mut w, limits.segment_size)?;
        rmp::encode::write_array_len(&mut w, claims.len() as u32)?;
        for claim in claims {
            rmp::encode::write_array_len(&mut w, 3)?;
            rmp::encode::write_uint(&mut w, u64::from(claim.entry))?;
            rmp::encode::write_uint(&mut w, claim.offset)?;
            rmp::encode::write_bin(&mut w, &claim.prefix)?;
        }
        Ok(())
    })
    .unwrap_or(0)
}

/// Reads a `PLAN` body: returns `final` and the receiver's limits, and hands each claim
/// to `each`.
pub(crate) fn decode_plan(
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

/// Bytes one rejected entry takes in a `PLAN_RESULT` message (at most).
pub(crate) const REJECTION_MAX_LEN: usize = 5;

/// `PLAN_RESULT` body: `[final, [rejected entry, ...]]`.
pub(crate) fn encode_plan_result(out: &mut [u8], last: bool, rejected: &[u32]) -> usize {
    msgpack::encode_into(out, |mut w| {
        rmp::encode::write_array_len(&mut w, 2)?;
        rmp::encode::write_bool(&mut w, last)?;
        rmp::encode::write_array_len(&mut w, rejected.len() as u32)?;
        for &entry in rejected {
            rmp::encode::write_uint(&mut w, u64::from(entry))?;
        }
        Ok(())
    })
    .unwrap_or(0)
}

/// Reads a `PLAN_RESULT` body; hands each rejected entry to `each`; returns `final`.
pub(crate) fn decode_plan_result(
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
pub(crate) fn encode_digest(out: &mut [u8], digest: &FileDigest) {
    out[..4].copy_from_slice(&digest.entry.to_be_bytes());
    out[4] = digest.attempt;
    out[5] = u8::from(digest.changed);
    out[6..38].copy_from_slice(&digest.sha256);
}

/// A `LAYOUT` body whose counts have been checked against the bytes present.
pub(crate) struct Layout<'a> {
    pub(crate) hash: [u8; 32],
    extents: &'a [u8],
    digests: &'a [u8],
}

impl<'a> Layout<'a> {
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
            extents: &body[36..digests_at],
            digests: &body[digests_at + 4..],
        })
    }

    pub(crate) fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.extents.chunks_exact(EXTENT_LEN).map(|b| Extent {
            entry: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            attempt: b[4],
            offset: u64::from_be_bytes([b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12]]),
            len: u32::from_be_bytes([b[13], b[14], b[15], b[16]]),
        })
    }

    pub(crate) fn digests(&self) -> impl Iterator<Item = FileDigest> + '_ {
        self.digests.chunks_exact(DIGEST_LEN).map(|b| {
            let mut sha256 = [0u8; 32];
            sha256.copy_from_slice(&b[6..38]);
            FileDigest {
                entry: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                attempt: b[4],
                changed: b[5] != 0,
                sha256,
            }
        })
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

pub(crate) fn encode_retry(entry: u32, attempt: u8) -> [u8; 5] {
    let e = entry.to_be_bytes();
    [e[0], e[1], e[2], e[3], attempt]
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

pub(crate) fn encode_done(committed: u64, failed: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&committed.to_be_bytes());
    out[8..].copy_from_slice(&failed.to_be_bytes());
    out
}

/// A reason text (`CANCEL`, `DECLINE`), cut to `MAX_REASON_LEN` on a character boundary.
pub(crate) fn reason_bytes(reason: &str) -> &[u8] {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason.as_bytes()[..end]
}

/// A reason text from the peer, made safe to show ([`crate::text::shown`]).
pub(crate) fn decode_reason(body: &[u8]) -> String {
    crate::text::shown(&String::from_utf8_lossy(
        &body[..body.len().min(MAX_REASON_LEN)],
    ))
}
