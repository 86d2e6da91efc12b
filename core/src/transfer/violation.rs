//! The two kinds of error a session's own rules give: the peer breaking the protocol
//! (fatal, and told to the peer) and the driver calling the session out of order (an
//! error for the caller only; the session goes on as it was).

use crate::transfer::TransferError;

/// How the peer broke the protocol (PROTOCOL.md). The session ends and the peer is told
/// why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A message whose body does not have the shape its kind requires.
    #[error("{0}")]
    Malformed(&'static str),
    /// A message the session does not expect in the state it is in.
    #[error("{0}")]
    OutOfOrder(&'static str),
    /// The manifest's header or entries break a rule of their own.
    #[error("{0}")]
    Manifest(&'static str),
    /// A resume claim, or the answer to one, is wrong.
    #[error("{0}")]
    Plan(&'static str),
    /// A segment's layout, advertisement, hashmap, parts, request or proof does not fit
    /// the Resource it belongs to.
    #[error("{0}")]
    Segment(&'static str),
    /// A retry, update, abandon or digest does not fit its file's state.
    #[error("{0}")]
    File(&'static str),
}

impl From<Violation> for TransferError {
    fn from(violation: Violation) -> Self {
        TransferError::Protocol(violation)
    }
}

/// A message body of the wrong shape.
pub(crate) fn malformed(why: &'static str) -> TransferError {
    Violation::Malformed(why).into()
}

/// A message out of place.
pub(crate) fn out_of_order(why: &'static str) -> TransferError {
    Violation::OutOfOrder(why).into()
}

/// A manifest that breaks a rule.
pub(crate) fn manifest_rule(why: &'static str) -> TransferError {
    Violation::Manifest(why).into()
}

/// A claim or plan answer that breaks a rule.
pub(crate) fn plan_rule(why: &'static str) -> TransferError {
    Violation::Plan(why).into()
}

/// A segment message that does not fit its Resource.
pub(crate) fn segment_rule(why: &'static str) -> TransferError {
    Violation::Segment(why).into()
}

/// A file message that does not fit the file's state.
pub(crate) fn file_rule(why: &'static str) -> TransferError {
    Violation::File(why).into()
}

/// The driver called the session out of order: its error, never the peer's.
pub(crate) fn misuse(why: &'static str) -> TransferError {
    TransferError::Misuse(why)
}
