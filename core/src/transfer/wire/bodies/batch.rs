//! The batch and its plan: `MANIFEST_BEGIN`, `MANIFEST_ENTRIES`, `PLAN`, `PLAN_RESULT`.

use core::ops::Range;
use std::io::Write;

use crate::msgpack::{self, Reader};
use crate::transfer::TransferError;
use crate::transfer::manifest::{Entry, EntryKind, Manifest};
use crate::transfer::violation::malformed;

use super::decode_error;

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
            return Err(malformed("the manifest header is not a four-element array"));
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
    rmp::encode::write_sint(&mut out, entry.mtime_ns)?;
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
            return Err(malformed("a manifest entry is not a six-element array"));
        }
        let path = reader.str().map_err(&err)?;
        let kind = match reader.uint().map_err(&err)? {
            0 => EntryKind::File,
            1 => EntryKind::Directory,
            _ => return Err(malformed("a manifest entry has an unknown kind")),
        };
        let size = reader.uint().map_err(&err)?;
        let mode = u32::try_from(reader.uint().map_err(&err)?)
            .map_err(|_| malformed("a manifest entry's mode does not fit 32 bits"))?;
        let mtime_ns = reader.sint().map_err(&err)?;
        let sha256 = match reader.optional_bin().map_err(&err)? {
            None => None,
            Some(hash) => Some(
                hash.try_into()
                    .map_err(|_| malformed("a manifest hash is not 32 bytes"))?,
            ),
        };
        each(Entry {
            path,
            kind,
            size,
            mode,
            mtime_ns,
            sha256,
        })?;
    }
    if !reader.is_empty() {
        return Err(malformed("trailing bytes after the manifest entries"));
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
        return Err(malformed("the resume plan is not a five-element array"));
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
            return Err(malformed("a resume claim is not a three-element array"));
        }
        let entry = u32::try_from(reader.uint().map_err(&err)?)
            .map_err(|_| malformed("claim entry out of range"))?;
        let offset = reader.uint().map_err(&err)?;
        let prefix = reader
            .bin()
            .map_err(&err)?
            .try_into()
            .map_err(|_| malformed("a claim's prefix hash is not 32 bytes"))?;
        each(Claim {
            entry,
            offset,
            prefix,
        })?;
    }
    if !reader.is_empty() {
        return Err(malformed("trailing bytes after the resume plan"));
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
        return Err(malformed("the plan result is not a two-element array"));
    }
    let last = reader.bool().map_err(&err)?;
    let count = reader.array_len().map_err(&err)?;
    for _ in 0..count {
        let entry = u32::try_from(reader.uint().map_err(&err)?)
            .map_err(|_| malformed("rejected entry out of range"))?;
        each(entry)?;
    }
    if !reader.is_empty() {
        return Err(malformed("trailing bytes after the plan result"));
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
