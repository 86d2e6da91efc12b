//! The bodies of Ferry's own transfer messages (PROTOCOL.md §6), after the kind byte:
//! the batch and its plan ([`batch`]), segment layouts ([`layout`]), and the small
//! per-file messages here. The batch messages (entries, plan, plan result, layout) are
//! views: of a received body, read as they are walked (nothing is allocated for them), or
//! of the state they are sent from.

mod batch;
mod layout;

pub(crate) use batch::*;
pub(crate) use layout::*;

use crate::msgpack::DecodeError;
use crate::transfer::violation::malformed;
use crate::transfer::{TransferError, Unreadable};

/// Bytes per extent in a layout.
pub(crate) const EXTENT_LEN: usize = 4 + 1 + 8 + 4;
/// Bytes per digest in a layout.
pub(crate) const DIGEST_LEN: usize = 4 + 1 + 1 + 32;
/// Longest reason text carried by a cancel or decline.
pub(crate) const MAX_REASON_LEN: usize = 512;

pub(super) fn decode_error(what: &'static str) -> impl Fn(DecodeError) -> TransferError {
    move |source| TransferError::Decode { what, source }
}

/// Reads a big-endian integer of `N` bytes at `at`, or fails naming `what`.
pub(super) fn be<const N: usize>(
    body: &[u8],
    at: usize,
    what: &'static str,
) -> Result<[u8; N], TransferError> {
    body.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(malformed(what))
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
        return Err(malformed("a retry request is not 5 bytes"));
    }
    Ok((
        u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
        body[4],
    ))
}

/// `GRANT`: the segments the sender may have advertised and not yet proven; at least one.
pub(crate) fn decode_grant(body: &[u8]) -> Result<u32, TransferError> {
    let segments: [u8; 4] = body
        .try_into()
        .map_err(|_| malformed("a grant is not 4 bytes"))?;
    match u32::from_be_bytes(segments) {
        0 => Err(malformed("a grant of no segments")),
        segments => Ok(segments),
    }
}

/// `LANE_LOST`: the lane closed at the receiver after it had taken this many parts from
/// it (PROTOCOL.md §8.3); lanes are numbered 1 to 7.
pub(crate) fn decode_lane_lost(body: &[u8]) -> Result<(u8, u64), TransferError> {
    let body: [u8; 9] = body
        .try_into()
        .map_err(|_| malformed("a lane loss is not 9 bytes"))?;
    let [lane, parts @ ..] = body;
    if !(1..crate::lane::MAX_LANES as u8).contains(&lane) {
        return Err(malformed("a lane loss names no lane"));
    }
    Ok((lane, u64::from_be_bytes(parts)))
}

/// `LANE_DOWN`: the sender lost this lane (PROTOCOL.md §8.3).
pub(crate) fn decode_lane_down(body: &[u8]) -> Result<u8, TransferError> {
    match *body {
        [lane] if (1..crate::lane::MAX_LANES as u8).contains(&lane) => Ok(lane),
        _ => Err(malformed("a lane down is not one lane number")),
    }
}

/// `UPDATE`: a file about to be sent again, as the sender now finds it (PROTOCOL.md §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) entry: u32,
    pub(crate) attempt: u8,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
}

impl Update {
    pub(crate) const LEN: usize = 4 + 1 + 8 + 8;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.entry.to_be_bytes());
        out[4] = self.attempt;
        out[5..13].copy_from_slice(&self.size.to_be_bytes());
        out[13..].copy_from_slice(&self.mtime_ns.to_be_bytes());
        out
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, TransferError> {
        const WHY: &str = "an update is not 21 bytes";
        if body.len() != Self::LEN {
            return Err(malformed(WHY));
        }
        Ok(Update {
            entry: u32::from_be_bytes(be::<4>(body, 0, WHY)?),
            attempt: body[4],
            size: u64::from_be_bytes(be::<8>(body, 5, WHY)?),
            mtime_ns: i64::from_be_bytes(be::<8>(body, 13, WHY)?),
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
            return Err(malformed("an abandon is not 6 bytes"));
        }
        Ok(Abandon {
            entry: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            attempt: body[4],
            trouble: Trouble::from_code(body[5])
                .ok_or(malformed("an abandon with an unknown cause"))?,
        })
    }
}

/// `DONE`: committed and failed counts.
pub(crate) fn decode_done(body: &[u8]) -> Result<(u64, u64), TransferError> {
    let committed = u64::from_be_bytes(be::<8>(body, 0, "a done message is not 16 bytes")?);
    let failed = u64::from_be_bytes(be::<8>(body, 8, "a done message is not 16 bytes")?);
    if body.len() != 16 {
        return Err(malformed("a done message is not 16 bytes"));
    }
    Ok((committed, failed))
}

/// A reason text (`CANCEL`, `DECLINE`) as received: at most `MAX_REASON_LEN` bytes of it.
pub(crate) fn reason(body: &[u8]) -> &[u8] {
    &body[..body.len().min(MAX_REASON_LEN)]
}
