//! Driver errors, each mapped to the exit code the command line documents.

use std::net::IpAddr;

use ferry_core::transfer::{ManifestError, TransferError};
use ferry_core::{ConnectionStringError, Error};

/// The process exit codes of `ferry`, documented in `--help` and the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Everything was delivered and verified.
    Success = 0,
    /// An unexpected internal error.
    Internal = 1,
    /// Wrong arguments.
    Usage = 2,
    /// The token did not match: wrong token or a tampered connection.
    Authentication = 3,
    /// The network failed or timed out.
    Network = 4,
    /// A file could not be verified after every attempt.
    Integrity = 5,
    /// A local file or directory could not be read or written.
    Disk = 6,
    /// The peer is not an allowed Tailscale peer (or not loopback in pod mode).
    PeerRefused = 7,
    /// The other side cancelled or declined.
    Cancelled = 8,
}

/// Why a transfer failed, in terms a user can act on. Never contains the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The connection string is malformed.
    #[error("{0}")]
    ConnectionString(#[from] ConnectionStringError),
    /// The peer check refused the address.
    #[error(
        "{address} is not one of your Tailscale peers (tailscale status does not list it); check the address, or use --pod for a connection on this machine"
    )]
    NotAPeer {
        /// The refused address.
        address: IpAddr,
    },
    /// Pod mode allows loopback only.
    #[error("{address} is not a loopback address; --pod connects only within this machine")]
    NotLoopback {
        /// The refused address.
        address: IpAddr,
    },
    /// Tailscale cannot be used: not installed, not running, logged out; the message
    /// says which, and what to do.
    #[error("{0}")]
    Tailscale(String),
    /// Connecting or talking to the peer failed.
    #[error("network error: {0}")]
    Network(String),
    /// A local file problem.
    #[error("{0}")]
    Disk(String),
    /// A path given to send does not exist: a mistyped argument, most likely.
    #[error("cannot send {0}: there is no such file or folder")]
    NoSuchPath(String),
    /// Paths given to send that cannot be sent as given (two that would arrive under
    /// one name, a path with no name to send it under).
    #[error("{0}")]
    Paths(String),
    /// The batch refers to something that is not a regular file or directory.
    #[error("cannot send {path}: {why}")]
    Source {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The manifest is invalid.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// The transfer failed.
    #[error("{0}")]
    Transfer(#[from] TransferError),
    /// The transfer failed, and what it had verified could not be saved for a rerun.
    #[error(
        "{error} (the resume state could not be saved: {why}; a rerun starts over what was not yet in place)"
    )]
    Unsaved {
        /// Why the transfer failed.
        error: Box<DriverError>,
        /// Why saving failed.
        why: String,
    },
    /// Some files could not be delivered (each was reported on its own line).
    #[error("{failed} file(s) could not be delivered: {names}")]
    Unverified {
        /// How many.
        failed: u64,
        /// Their names (the first few).
        names: String,
    },
}

impl From<std::io::Error> for DriverError {
    fn from(error: std::io::Error) -> Self {
        DriverError::Network(error.to_string())
    }
}

impl DriverError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        use TransferError as T;
        match self {
            DriverError::ConnectionString(_)
            | DriverError::NoSuchPath(_)
            | DriverError::Paths(_) => ExitCode::Usage,
            DriverError::NotAPeer { .. }
            | DriverError::NotLoopback { .. }
            | DriverError::Tailscale(_) => ExitCode::PeerRefused,
            DriverError::Network(_) => ExitCode::Network,
            DriverError::Disk(_) | DriverError::Source { .. } | DriverError::Manifest(_) => {
                ExitCode::Disk
            }
            DriverError::Unverified { .. } => ExitCode::Integrity,
            DriverError::Unsaved { error, .. } => error.exit_code(),
            DriverError::Transfer(error) => match error {
                // A record that fails its tag after the handshake was altered on the way:
                // a tampered connection, as a wrong token is a failed handshake.
                T::Channel(Error::AuthenticationFailed | Error::Integrity { .. }) => {
                    ExitCode::Authentication
                }
                T::Channel(_) | T::Stalled(_) | T::PeerEnded => ExitCode::Network,
                T::Disk { .. } => ExitCode::Disk,
                T::Cancelled { .. } | T::Declined(_) => ExitCode::Cancelled,
                // What a faulty or hostile peer sent: refused, like corrupt data.
                T::SegmentCorrupt(_)
                | T::DecompressionBomb { .. }
                | T::Manifest(_)
                | T::Protocol(_)
                | T::Wire(_)
                | T::Decode { .. } => ExitCode::Integrity,
                _ => ExitCode::Internal,
            },
        }
    }
}

/// True if `error` says the disk (or this user's quota on it) is full.
pub fn is_out_of_space(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || error.raw_os_error() == Some(libc::ENOSPC)
}

/// The core's view of an OS error: its class and message.
pub fn disk_error(error: &std::io::Error) -> ferry_core::transfer::DiskError {
    use ferry_core::transfer::{DiskError, DiskErrorKind};
    let kind = match error.kind() {
        std::io::ErrorKind::NotFound => DiskErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => DiskErrorKind::PermissionDenied,
        _ if is_out_of_space(error) => DiskErrorKind::NoSpace,
        _ => DiskErrorKind::Other,
    };
    DiskError {
        kind,
        detail: error.to_string(),
    }
}
