//! Errors of the secure channel. Each names what went wrong and, where the user can do
//! something about it, what to do.

use core::time::Duration;

use crate::handshake::Role;

/// What a connection was doing when its timer ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Hellos or key confirmation did not complete.
    Handshake,
    /// The peer went silent on an established connection.
    Idle,
}

/// Why a connection failed. Once returned, the connection is dead and returns the same
/// error from every later call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first bytes from the peer are not Ferry's magic.
    #[error("the peer is not speaking the Ferry protocol; check the address and port")]
    NotFerryPeer,
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: this build speaks version {ours}, the peer version {theirs}; run the same Ferry version on both sides"
    )]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// Both endpoints claim the same role.
    #[error("both endpoints are {0}s; one side must send and the other receive")]
    RoleConflict(Role),
    /// The peer's hello is structurally wrong.
    #[error("malformed hello from the peer: {0}")]
    MalformedHello(&'static str),
    /// The peer's public key yields an all-zero shared secret.
    #[error("key exchange failed: the peer sent a non-contributory (low-order) public key")]
    NonContributoryKey,
    /// The key confirmation did not authenticate: the peer derived a different key.
    #[error("authentication failed: wrong token or tampered connection")]
    AuthenticationFailed,
    /// A record after the confirmation failed authentication (altered, dropped,
    /// duplicated or reordered on the way).
    #[error(
        "integrity check failed on record {record}: the connection was corrupted or tampered with; reconnect to resume"
    )]
    Integrity {
        /// The record's sequence number in its direction.
        record: u64,
    },
    /// A record header announces more than the configured bound.
    #[error("the peer announced a record of {len} bytes, over the limit of {max}")]
    RecordTooLarge {
        /// Announced length.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// A record header announces less than a tag and content type.
    #[error("the peer announced a record of {len} bytes, too short to be valid")]
    RecordTooShort {
        /// Announced length.
        len: u64,
    },
    /// A record that authenticated but is not allowed here.
    #[error("unexpected record {record} from the peer: {why}")]
    UnexpectedRecord {
        /// The record's sequence number.
        record: u64,
        /// Which rule it broke.
        why: &'static str,
    },
    /// A timer ran out.
    #[error("timed out after {} s: {}", after.as_secs(), match phase {
        TimeoutPhase::Handshake => "the handshake did not complete (is the peer a Ferry endpoint?)",
        TimeoutPhase::Idle => "the peer stopped responding; reconnect to resume",
    })]
    Timeout {
        /// What we were waiting for.
        phase: TimeoutPhase,
        /// How long we waited.
        after: Duration,
    },
    /// The stream ended inside a record.
    #[error("the connection ended in the middle of a record; reconnect to resume")]
    Truncated,
    /// The stream ended cleanly but without the peer saying it was done.
    #[error("the peer closed the connection without finishing; reconnect to resume")]
    UnexpectedEof,
    /// The peer sent data after saying it was done.
    #[error("the peer sent data after closing the connection")]
    DataAfterClose,
    /// The send buffer cannot hold a record the protocol must send.
    #[error(
        "the send buffer cannot hold a {needed}-byte control record; raise Config::send_buffer"
    )]
    SendBufferTooSmall {
        /// Bytes the record needs.
        needed: usize,
    },
    /// A broken internal invariant: a bug in Ferry, not in the peer.
    #[error("internal error: {0}; please report this as a Ferry bug")]
    Internal(&'static str),
    /// A direction ran out of record numbers.
    #[error("too many records on one connection; reconnect to continue")]
    SequenceExhausted,
}
