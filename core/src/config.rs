//! Every capacity and timeout of an endpoint, in one place.
//!
//! Buffers are sized from the [`Config`] when an endpoint is built and never grow after;
//! every length a peer sends is checked against a bound here before anything is allocated.

use core::time::Duration;

/// The largest record payload any configuration may allow (16 MiB).
pub const MAX_RECORD_PAYLOAD_LIMIT: usize = 16 << 20;
/// The smallest record payload a configuration may set (2 KiB: a part of the smallest
/// size, 1 KiB, with its header, must fit in one record).
pub const MIN_RECORD_PAYLOAD: usize = 2 << 10;

/// Capacities and timeouts of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest plaintext carried by one record. A peer announcing a longer record is refused
    /// before any byte of it is buffered.
    pub max_record_payload: usize,
    /// Bytes of sealed records the endpoint holds for the driver to transmit. When full,
    /// sending reports backpressure instead of growing.
    pub send_buffer: usize,
    /// The handshake (hellos and key confirmation) must finish within this time.
    pub handshake_timeout: Duration,
    /// An established connection on which nothing arrives for this long is dead.
    pub idle_timeout: Duration,
    /// After this long without sending, a keepalive record is sent so that the peer's idle
    /// timer does not fire while we are merely busy (waiting for a user, say).
    pub keepalive_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_record_payload: 256 << 10,
            send_buffer: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(15),
        }
    }
}

/// A [`Config`] whose values contradict each other or exceed a hard limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_record_payload` is outside `MIN_RECORD_PAYLOAD..=MAX_RECORD_PAYLOAD_LIMIT`.
    #[error(
        "max_record_payload must be between {MIN_RECORD_PAYLOAD} and {MAX_RECORD_PAYLOAD_LIMIT} bytes, not {0}"
    )]
    RecordPayload(usize),
    /// The send buffer cannot hold even one largest record.
    #[error(
        "send_buffer ({send_buffer} bytes) must hold at least one whole record ({record} bytes)"
    )]
    SendBuffer {
        /// The configured send buffer.
        send_buffer: usize,
        /// The size of the largest sealed record.
        record: usize,
    },
    /// Keepalives would not arrive before the peer's idle timer fires.
    #[error("keepalive_interval must be shorter than idle_timeout")]
    Keepalive,
    /// A timeout of zero would fail every connection at once.
    #[error("timeouts must be greater than zero")]
    ZeroTimeout,
}

impl Config {
    /// Checks that the values are usable together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_RECORD_PAYLOAD..=MAX_RECORD_PAYLOAD_LIMIT).contains(&self.max_record_payload) {
            return Err(ConfigError::RecordPayload(self.max_record_payload));
        }
        let record = crate::record::sealed_len(self.max_record_payload);
        if self.send_buffer < record {
            return Err(ConfigError::SendBuffer {
                send_buffer: self.send_buffer,
                record,
            });
        }
        if self.handshake_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.keepalive_interval.is_zero()
        {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.keepalive_interval >= self.idle_timeout {
            return Err(ConfigError::Keepalive);
        }
        Ok(())
    }
}
