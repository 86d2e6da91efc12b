//! Every transfer message (PROTOCOL.md §6): one kind byte, then its body. [`Message`]
//! is the one type for them in both directions: [`Message::decode`] reads a record's
//! plaintext, [`Message::encode_head`] writes one (a part's data, its [`Message::tail`], is sealed
//! from where it is), and [`send`] seals it on a channel. Nothing
//! outside this module frames a message by hand. The bodies are in [`bodies`] (Ferry's
//! own) and [`crate::resource::wire`] (the RNS Resource ones, byte-compatible with RNS).

pub(crate) mod bodies;

use crate::channel::{Channel, SendError};
use crate::resource::wire::{Advertisement, HashmapUpdate, Proof, RESOURCE_HASH_LEN, Request};
use crate::transfer::TransferError;
use crate::transfer::violation::malformed;

pub(crate) use bodies::{
    Abandon, Claim, Entries, Extent, FileDigest, Layout, ManifestBegin, Plan, PlanResult,
    ReceiverLimits, Trouble, Update,
};

/// Message kinds: the first byte of every transfer message.
mod kind {
    pub(super) const MANIFEST_BEGIN: u8 = 0x01;
    pub(super) const MANIFEST_ENTRIES: u8 = 0x02;
    pub(super) const PLAN: u8 = 0x03;
    pub(super) const PLAN_RESULT: u8 = 0x04;
    pub(super) const DECLINE: u8 = 0x05;
    pub(super) const LAYOUT: u8 = 0x10;
    pub(super) const ADV: u8 = 0x11;
    pub(super) const REQ: u8 = 0x12;
    pub(super) const PART: u8 = 0x13;
    pub(super) const HMU: u8 = 0x14;
    pub(super) const PRF: u8 = 0x15;
    pub(super) const ICL: u8 = 0x16;
    pub(super) const RCL: u8 = 0x17;
    pub(super) const GRANT: u8 = 0x18;
    pub(super) const LANE_LOST: u8 = 0x19;
    pub(super) const LANE_DOWN: u8 = 0x1a;
    pub(super) const RETRY: u8 = 0x20;
    pub(super) const DONE: u8 = 0x21;
    pub(super) const CANCEL: u8 = 0x22;
    pub(super) const UPDATE: u8 = 0x23;
    pub(super) const ABANDON: u8 = 0x24;
}

/// Bytes of a `PART` message besides its data: kind, resource hash, part index.
pub(crate) const PART_HEADER_LEN: usize = 1 + RESOURCE_HASH_LEN + 4;
/// Room an advertisement needs besides its hashmap (kind byte, keys, fixed fields).
pub(crate) const ADV_OVERHEAD: usize = 160;
/// Longest reason text carried by a cancel or decline.
pub(crate) const MAX_REASON_LEN: usize = bodies::MAX_REASON_LEN;

/// What a message may hold at most, by the decoding side's configuration: checked before
/// anything of it is used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Pieces in one layout.
    pub(crate) max_extents: usize,
    /// Parts (map hashes) of one segment.
    pub(crate) max_parts: usize,
}

/// One transfer message, in either direction. Bodies borrow the record they came in (or
/// the state they are sent from).
#[derive(Clone, Debug)]
pub(crate) enum Message<'a> {
    ManifestBegin(ManifestBegin),
    ManifestEntries(Entries<'a>),
    Plan(Plan<'a>),
    PlanResult(PlanResult<'a>),
    Decline(&'a [u8]),
    Layout(Layout<'a>),
    Adv(Advertisement<'a>),
    Req(Request<'a>),
    Part {
        hash: [u8; RESOURCE_HASH_LEN],
        index: u32,
        data: &'a [u8],
    },
    Hmu(HashmapUpdate<'a>),
    Prf(Proof),
    /// The sender cancels a segment (right before CANCEL).
    Icl([u8; RESOURCE_HASH_LEN]),
    /// The receiver rejects a segment (right before CANCEL).
    Rcl([u8; RESOURCE_HASH_LEN]),
    /// The receiver allows the sender this many segments advertised and not yet proven.
    Grant {
        segments: u32,
    },
    /// The receiver's end of a lane closed after it took `parts` parts from it.
    LaneLost {
        lane: u8,
        parts: u64,
    },
    /// The sender's end of a lane closed.
    LaneDown {
        lane: u8,
    },
    Retry {
        entry: u32,
        attempt: u8,
    },
    Done {
        committed: u64,
        failed: u64,
    },
    Cancel(&'a [u8]),
    Update(Update),
    Abandon(Abandon),
}

impl<'a> Message<'a> {
    /// Reads one message (a data record's plaintext), refusing one that breaks its
    /// format or exceeds `limits`.
    pub(crate) fn decode(record: &'a [u8], limits: Limits) -> Result<Self, TransferError> {
        let (&kind, body) = record.split_first().ok_or(malformed("an empty message"))?;
        let wire = TransferError::from;
        Ok(match kind {
            kind::MANIFEST_BEGIN => Message::ManifestBegin(ManifestBegin::decode(body)?),
            kind::MANIFEST_ENTRIES => Message::ManifestEntries(Entries::received(body)),
            kind::PLAN => Message::Plan(Plan::received(body)),
            kind::PLAN_RESULT => Message::PlanResult(PlanResult::received(body)),
            kind::DECLINE => Message::Decline(bodies::reason(body)),
            kind::LAYOUT => Message::Layout(Layout::decode(body, limits.max_extents)?),
            kind::ADV => Message::Adv(Advertisement::decode(body, limits.max_parts).map_err(wire)?),
            kind::REQ => Message::Req(Request::decode(body, limits.max_parts).map_err(wire)?),
            kind::PART => {
                let (hash, index, data) = bodies::decode_part(body)?;
                Message::Part { hash, index, data }
            }
            kind::HMU => Message::Hmu(HashmapUpdate::decode(body, limits.max_parts).map_err(wire)?),
            kind::PRF => Message::Prf(Proof::decode(body).map_err(wire)?),
            kind::ICL => Message::Icl(crate::resource::wire::decode_cancel(body).map_err(wire)?),
            kind::RCL => Message::Rcl(crate::resource::wire::decode_cancel(body).map_err(wire)?),
            kind::GRANT => Message::Grant {
                segments: bodies::decode_grant(body)?,
            },
            kind::LANE_LOST => {
                let (lane, parts) = bodies::decode_lane_lost(body)?;
                Message::LaneLost { lane, parts }
            }
            kind::LANE_DOWN => Message::LaneDown {
                lane: bodies::decode_lane_down(body)?,
            },
            kind::RETRY => {
                let (entry, attempt) = bodies::decode_retry(body)?;
                Message::Retry { entry, attempt }
            }
            kind::DONE => {
                let (committed, failed) = bodies::decode_done(body)?;
                Message::Done { committed, failed }
            }
            kind::CANCEL => Message::Cancel(bodies::reason(body)),
            kind::UPDATE => Message::Update(Update::decode(body)?),
            kind::ABANDON => Message::Abandon(Abandon::decode(body)?),
            _ => return Err(malformed("a message of an unknown kind")),
        })
    }

    /// Its kind byte.
    fn kind(&self) -> u8 {
        match self {
            Message::ManifestBegin(_) => kind::MANIFEST_BEGIN,
            Message::ManifestEntries(_) => kind::MANIFEST_ENTRIES,
            Message::Plan(_) => kind::PLAN,
            Message::PlanResult(_) => kind::PLAN_RESULT,
            Message::Decline(_) => kind::DECLINE,
            Message::Layout(_) => kind::LAYOUT,
            Message::Adv(_) => kind::ADV,
            Message::Req(_) => kind::REQ,
            Message::Part { .. } => kind::PART,
            Message::Hmu(_) => kind::HMU,
            Message::Prf(_) => kind::PRF,
            Message::Icl(_) => kind::ICL,
            Message::Rcl(_) => kind::RCL,
            Message::Grant { .. } => kind::GRANT,
            Message::LaneLost { .. } => kind::LANE_LOST,
            Message::LaneDown { .. } => kind::LANE_DOWN,
            Message::Retry { .. } => kind::RETRY,
            Message::Done { .. } => kind::DONE,
            Message::Cancel(_) => kind::CANCEL,
            Message::Update(_) => kind::UPDATE,
            Message::Abandon(_) => kind::ABANDON,
        }
    }

    /// Bytes it takes, kind byte included.
    pub(crate) fn encoded_len(&self) -> usize {
        1 + match self {
            Message::ManifestBegin(begin) => begin.encoded_len(),
            Message::ManifestEntries(entries) => entries.encoded_len(),
            Message::Plan(plan) => plan.encoded_len(),
            Message::PlanResult(result) => result.encoded_len(),
            Message::Decline(reason) | Message::Cancel(reason) => reason.len(),
            Message::Layout(layout) => layout.encoded_len(),
            Message::Adv(adv) => adv.encoded_len(),
            Message::Req(request) => request.encoded_len(),
            Message::Part { data, .. } => PART_HEADER_LEN - 1 + data.len(),
            Message::Hmu(update) => update.encoded_len(),
            Message::Prf(_) => Proof::LEN,
            Message::Icl(_) | Message::Rcl(_) => RESOURCE_HASH_LEN,
            Message::Retry { .. } => 5,
            Message::Grant { .. } => 4,
            Message::LaneLost { .. } => 9,
            Message::LaneDown { .. } => 1,
            Message::Done { .. } => 16,
            Message::Update(_) => Update::LEN,
            Message::Abandon(_) => Abandon::LEN,
        }
    }

    /// The bytes it ends with that are sent from where they are, not encoded: a part's
    /// data, encrypted straight out of its segment. Empty for every other message.
    pub(crate) fn tail(&self) -> &[u8] {
        match self {
            Message::Part { data, .. } => data,
            _ => &[],
        }
    }

    /// Writes all of it but its [`Message::tail`] into `out`, exactly that much shorter
    /// than [`Message::encoded_len`].
    pub(crate) fn encode_head(&self, out: &mut [u8]) {
        out[0] = self.kind();
        let body = &mut out[1..];
        match self {
            Message::ManifestBegin(begin) => {
                begin.encode(body);
            }
            Message::ManifestEntries(entries) => entries.encode(body),
            Message::Plan(plan) => plan.encode(body),
            Message::PlanResult(result) => result.encode(body),
            Message::Decline(reason) | Message::Cancel(reason) => body.copy_from_slice(reason),
            Message::Layout(layout) => layout.encode(body),
            Message::Adv(adv) => {
                let _ = adv.encode(body);
            }
            Message::Req(request) => {
                let _ = request.encode(body);
            }
            Message::Part { hash, index, .. } => {
                body[..32].copy_from_slice(hash);
                body[32..36].copy_from_slice(&index.to_be_bytes());
            }
            Message::Hmu(update) => {
                let _ = update.encode(body);
            }
            Message::Prf(proof) => body.copy_from_slice(&proof.to_bytes()),
            Message::Icl(hash) | Message::Rcl(hash) => body.copy_from_slice(hash),
            Message::Retry { entry, attempt } => {
                body[..4].copy_from_slice(&entry.to_be_bytes());
                body[4] = *attempt;
            }
            Message::Grant { segments } => body.copy_from_slice(&segments.to_be_bytes()),
            Message::LaneLost { lane, parts } => {
                body[0] = *lane;
                body[1..].copy_from_slice(&parts.to_be_bytes());
            }
            Message::LaneDown { lane } => body[0] = *lane,
            Message::Done { committed, failed } => {
                body[..8].copy_from_slice(&committed.to_be_bytes());
                body[8..].copy_from_slice(&failed.to_be_bytes());
            }
            Message::Update(update) => body.copy_from_slice(&update.encode()),
            Message::Abandon(abandon) => body.copy_from_slice(&abandon.encode()),
        }
    }
}

/// Seals `message` as one record on `channel`; a full send buffer is an error, and
/// nothing is sent.
pub(crate) fn send(channel: &mut Channel, message: &Message<'_>) -> Result<(), SendError> {
    let tail = message.tail();
    channel.send_with_tail(
        message.encoded_len() - tail.len(),
        |buf| message.encode_head(buf),
        tail,
    )
}

/// A reason text as it goes out: cut to [`MAX_REASON_LEN`] on a character boundary.
pub(crate) fn reason(text: &str) -> &[u8] {
    let mut end = text.len().min(MAX_REASON_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

/// A reason that came from the peer, made safe to show ([`crate::text::shown`]).
pub(crate) fn shown_reason(reason: &[u8]) -> String {
    crate::text::shown(&String::from_utf8_lossy(reason))
}
