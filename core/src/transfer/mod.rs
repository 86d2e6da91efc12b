//! The transfer engine: moves a batch of files over a [`crate::Channel`] as Reticulum-style
//! Resources, and tells the driver what to read and write instead of touching files.
//!
//! Two session types, [`SenderSession`] and [`ReceiverSession`], each own a channel and
//! share one surface, the [`Session`] trait: a driver feeds them bytes and timer ticks,
//! and after every input takes [`Session::poll_output`] until it says
//! [`Output::Timeout`], carrying out each disk command against its [`Storage`] with
//! [`Session::carry_out`] and acting on each event; then it writes
//! [`Session::poll_transmit`] to the socket. `handle_input` may take fewer bytes than it
//! was given when the session's bounded queues are full: drain them and offer the rest
//! again. A receiver's writes need not finish inside `carry_out`: a driver may take the
//! bytes of a [`DiskCommand::Write`] ([`ReceiverSession::write_bytes`]), write them on a
//! thread of its own, and report back later ([`ReceiverSession::write_finished`]); the
//! simulator's sweep delays the writes of a third of its worlds so.
//!
//! # A whole transfer in memory
//! Two sessions, their bytes shuttled by hand, their files in the in-memory storage of
//! [`crate::testing`] (feature `testing`; a real driver implements [`Storage`] over its
//! files):
//! ```
//! use ferry_core::testing::{MemoryDisk, MemorySource, bytes, file, manifest_of};
//! use ferry_core::transfer::{
//!     Output, ReceiverSession, SenderSession, Session, Storage, TransferConfig, TransferError,
//!     TransferEvent,
//! };
//! use ferry_core::{SeededEntropy, Timestamp, Token};
//!
//! let batch = [file("notes.txt", bytes(1, 5_000)), file("photo.jpg", bytes(2, 700_000))];
//! let mut entropy = SeededEntropy::new(7);
//! let token = Token::generate(&mut entropy);
//! let now = Timestamp::ZERO;
//! let config = TransferConfig::default();
//! let manifest = manifest_of(&batch, true);
//! let mut sender = SenderSession::new(config.clone(), token.clone(), manifest, &mut entropy, now)?;
//! let mut receiver = ReceiverSession::new(config, token, &mut entropy, now)?;
//! let mut source = MemorySource::new(batch.iter().map(|f| f.data.clone()).collect());
//! let mut disk = MemoryDisk::default();
//!
//! type Accept<'a, S> = &'a mut dyn FnMut(&mut S) -> Result<(), TransferError>;
//!
//! /// Takes a session's outputs until it waits: disk commands against its storage,
//! /// events (a batch offered is answered by `accept`).
//! fn drain<S: Session>(s: &mut S, disk: &mut dyn Storage, accept: Accept<S>) -> Result<(), TransferError> {
//!     loop {
//!         match s.poll_output() {
//!             Output::Disk(command) => s.carry_out(Timestamp::ZERO, command, disk)?,
//!             Output::Event(TransferEvent::BatchOffered { .. }) => accept(s)?,
//!             Output::Event(_) => {}
//!             Output::Timeout(_) => return Ok(()),
//!         }
//!     }
//! }
//!
//! /// Gives `to` the bytes `from` has to send, draining `to` whenever it takes no more.
//! fn shuttle<F: Session, S: Session>(
//!     from: &mut F,
//!     to: &mut S,
//!     disk: &mut dyn Storage,
//!     accept: Accept<S>,
//! ) -> Result<bool, TransferError> {
//!     let bytes = from.poll_transmit().to_vec();
//!     from.advance_transmit(bytes.len());
//!     let mut taken = 0;
//!     while taken < bytes.len() {
//!         taken += to.handle_input(Timestamp::ZERO, &bytes[taken..])?;
//!         drain(to, disk, &mut *accept)?;
//!     }
//!     Ok(!bytes.is_empty())
//! }
//!
//! let (mut ignore, mut take) = (|_: &mut SenderSession| Ok(()), |r: &mut ReceiverSession| r.accept(now, &[]));
//! while !(sender.is_finished() && receiver.is_finished()) {
//!     drain(&mut sender, &mut source, &mut ignore)?;
//!     let forward = shuttle(&mut sender, &mut receiver, &mut disk, &mut take)?;
//!     let back = shuttle(&mut receiver, &mut sender, &mut source, &mut ignore)?;
//!     assert!(forward || back || sender.is_finished(), "stuck: {}", receiver.describe());
//! }
//! assert_eq!(disk.committed.get(&1), batch[1].data.as_ref());
//! # Ok::<(), TransferError>(())
//! ```

use core::time::Duration;

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::msgpack::DecodeError;
use crate::resource::WireError;

pub(crate) mod bz2;
mod connection;
mod hashes;
mod lanes;
pub mod manifest;
mod outputs;
mod receiver;
mod resume;
mod sender;
pub mod session;
mod storage;
mod violation;
pub(crate) mod wire;
mod work;

pub use hashes::HashChain;
pub use lanes::Connections;
pub use manifest::{
    Entry, EntryKind, Manifest, ManifestBuilder, ManifestEntry, ManifestError, ManifestLimits,
    PathRule,
};
pub use receiver::{FileProgress, FileStatus, ReceiverSession};
pub use resume::SLOWEST_REREAD;
pub use sender::SenderSession;
pub use session::{Output, Session};
pub use storage::{Storage, Target};
pub use violation::Violation;
pub use work::HashWork;

/// The smallest part a sender may choose (PROTOCOL.md §6.1).
pub const MIN_PART_SIZE: usize = 1 << 10;
/// The largest part a sender may choose; a receiver takes any part size from
/// [`MIN_PART_SIZE`] to this that fits in one record of the smaller record limit.
pub const MAX_PART_SIZE: usize = 64 << 10;

/// Capacities, sizes and timeouts of a transfer. Every buffer is sized from these when a
/// session is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferConfig {
    /// The secure channel's settings.
    pub channel: Config,
    /// Bounds on the manifest a receiver accepts.
    pub manifest: ManifestLimits,
    /// Bytes of data per part (one record each). The sender's value is used; a receiver
    /// refuses a value above its own.
    pub part_size: usize,
    /// Bytes of the batch stream per segment (one Resource each).
    pub segment_size: usize,
    /// The most segments advertised and not yet proven at once. Both sides use the
    /// smaller value; the receiver grants fewer while its window is smaller
    /// (PROTOCOL.md §6.3).
    pub segments_in_flight: usize,
    /// Most file pieces one segment may hold (many small files share a segment).
    pub max_extents_per_segment: usize,
    /// Map hashes per advertisement or hashmap update (RNS uses 74).
    pub map_hashes_per_message: usize,
    /// Sender: try bz2 on each segment, sending it compressed only when smaller.
    pub compress: bool,
    /// Receiver: ask the driver to persist resume state after this many bytes...
    pub checkpoint_bytes: u64,
    /// ...or this long after the first byte written since the last checkpoint, whichever
    /// comes first: a crash loses at most this much time's work.
    pub checkpoint_interval: Duration,
    /// Attempts per file before it is reported as failed (the first one counts).
    pub max_attempts: u8,
    /// Waiting longer than this for the peer's next transfer message ends the session.
    /// Where the peer first re-reads files for a resume plan, the wait also allows for
    /// that re-read at [`SLOWEST_REREAD`] bytes per second.
    pub stall_timeout: Duration,
    /// Receiver: bytes requested before the first part arrives; the window then grows by
    /// each part received (slow start) up to `window_floor`, and past it on a long path
    /// while the rate still rises.
    pub initial_window: usize,
    /// Receiver: the window never shrinks below this once slow start has reached it.
    /// Beyond it, the window follows the path's bandwidth-delay product, as measured.
    pub window_floor: usize,
    /// The most bytes a window may hold, and so the most segment memory either side
    /// keeps for it.
    pub max_window: usize,
    /// Receiver: how many connections to use (PROTOCOL.md §8).
    pub connections: Connections,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            channel: Config::default(),
            manifest: ManifestLimits::default(),
            part_size: 64 << 10,
            // 16 segments of 256 KiB in flight: the same 4 MiB as 4 of 1 MiB, but each
            // segment's passes (hash, seal or open, write) stay in the L2 cache, and a
            // slot freed by a proof refills sooner. Measured in examples/bench.rs.
            segment_size: 256 << 10,
            segments_in_flight: 256,
            max_extents_per_segment: 512,
            map_hashes_per_message: 74,
            compress: false,
            checkpoint_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(2),
            max_attempts: 3,
            stall_timeout: Duration::from_secs(120),
            initial_window: 4 << 20,
            // 16 segments of 256 KiB: what a short path needs at full speed.
            window_floor: 4 << 20,
            // With what the window's segments need around it, 64 MiB a side at most:
            // enough for 1 Gbit/s across a 200 ms round trip.
            max_window: 40 << 20,
            connections: Connections::default(),
        }
    }
}

/// A transfer configuration whose values do not fit together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferConfigError {
    /// The channel settings are invalid.
    #[error(transparent)]
    Channel(#[from] ConfigError),
    /// A size or count is out of range.
    #[error("invalid transfer configuration: {0}")]
    Invalid(&'static str),
}

impl TransferConfig {
    /// Parts in a full segment.
    pub fn parts_per_segment(&self) -> usize {
        self.segment_size.div_ceil(self.part_size.max(1))
    }

    /// Segment buffers a side keeps at most: enough for the largest window (and the
    /// segments either side of it), and no more than the segments in flight.
    pub fn segment_buffers(&self) -> usize {
        (self.max_window.div_ceil(self.segment_size.max(1)) + 2).min(self.segments_in_flight)
    }

    /// Segment buffers a sender may take beyond [`TransferConfig::segment_buffers`] to
    /// read again segments whose parts were lost with a lane (PROTOCOL.md §8.3).
    pub const REFILL_BUFFERS: usize = 8;

    /// The most heap one session allocates for a batch of `entries` entries whose paths
    /// total `path_bytes`: the segment buffers, the per-segment tables, the channel's
    /// buffers, the bounded queues and the per-entry tables. Nothing grows beyond it
    /// while bytes flow.
    pub fn heap_bound(&self, entries: usize, path_bytes: usize) -> usize {
        use core::mem::size_of;
        let parts = self.parts_per_segment();
        let extents = self.max_extents_per_segment;
        let per_segment = parts * 16 + extents * 128;
        let segments = self.segments_in_flight * per_segment
            + (self.segment_buffers() + Self::REFILL_BUFFERS) * self.segment_size;
        let channel = self.channel.send_buffer
            + 2 * crate::record::sealed_len(self.channel.max_record_payload);
        // The disk queues hold the reads or writes of a few segments at a time, the event
        // queues as many again (each may bring an event): see `Outputs::for_config`.
        let queue = outputs::Outputs::capacity(self);
        let queues = 2 * queue * (size_of::<DiskCommand>() + size_of::<TransferEvent>());
        let per_entry = entries * 320 + 2 * path_bytes;
        // bzip2's own state while a segment is (de)compressed: compressing at level 6
        // takes 400 kB + 8 × 600 kB; decompressing in small mode at most 100 kB + 2.5 ×
        // 900 kB, whatever block size the peer chose (a receiver takes compressed
        // segments whether or not it compresses itself).
        let bz2 = if self.compress { 5_200_000 } else { 2_350_000 };
        // Lanes (up to seven besides the session's own): a send buffer each on the
        // sender, with its log of unproven parts; a record buffer each on the receiver.
        let lane_buffer = self
            .channel
            .send_buffer
            .max(crate::record::sealed_len(self.channel.max_record_payload));
        let lanes = (crate::lane::MAX_LANES - 1)
            * (lane_buffer + self.segment_buffers() * parts * size_of::<(u64, u32)>());
        segments + 2 * self.segment_size + channel + queues + per_entry + bz2 + lanes + (256 << 10)
    }

    /// What a session whose driver seals or opens its records on threads
    /// (`Session::offload_sealing`, `Session::offload_opening`) may allocate beyond
    /// [`TransferConfig::heap_bound`]: a sender's connections queue their records in
    /// batches beside their send buffers, at most a buffer's bytes queued, in buffers at
    /// most twice what they hold, with buffers kept for reuse up to a buffer's size and
    /// the batch being composed; a receiver copies records to open up to a buffer's
    /// size, and keeps as much for reuse.
    pub fn aead_heap(&self) -> usize {
        let lane_buffer = self
            .channel
            .send_buffer
            .max(crate::record::sealed_len(self.channel.max_record_payload));
        crate::lane::MAX_LANES * 4 * lane_buffer
    }

    /// Checks that the values are usable together.
    pub fn validate(&self) -> Result<(), TransferConfigError> {
        self.channel.validate()?;
        let max_message = self.channel.max_record_payload;
        let invalid = |why| Err(TransferConfigError::Invalid(why));
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size)
            || self.part_size + wire::PART_HEADER_LEN > max_message
        {
            return invalid(
                "part_size must be within 1 KiB..64 KiB and fit in one record with its header",
            );
        }
        if self.channel.send_buffer < 2 * crate::record::sealed_len(max_message) {
            return invalid("the channel's send_buffer must hold two whole records");
        }
        if self.segment_size < self.part_size || self.segment_size > u32::MAX as usize {
            return invalid("segment_size must be at least part_size and below 4 GiB");
        }
        if self.parts_per_segment() > 1 << 20 {
            return invalid("a segment may hold at most 2^20 parts");
        }
        if !(1..=256).contains(&self.segments_in_flight) {
            return invalid("segments_in_flight must be between 1 and 256");
        }
        if self.max_extents_per_segment == 0
            || wire::bodies::layout_len(self.max_extents_per_segment, self.max_extents_per_segment)
                > max_message
        {
            return invalid(
                "max_extents_per_segment must be at least 1 and its layout fit in one record",
            );
        }
        if self.map_hashes_per_message == 0
            || self.map_hashes_per_message * 4 + wire::ADV_OVERHEAD > max_message
        {
            return invalid("map_hashes_per_message must be at least 1 and fit in one record");
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1");
        }
        if self.stall_timeout.is_zero() || self.checkpoint_interval.is_zero() {
            return invalid("stall_timeout and checkpoint_interval must be greater than zero");
        }
        if !(1..=crate::lane::MAX_LANES).contains(&self.connections.max()) {
            return invalid("connections must be between 1 and 8");
        }
        if self.initial_window < self.part_size
            || self.window_floor < self.initial_window
            || self.max_window < self.window_floor
        {
            return invalid(
                "the windows must hold a part and grow: initial_window ≤ window_floor ≤ max_window",
            );
        }
        Ok(())
    }
}

/// Identifies one outstanding read or write; hand it back with the completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoId(pub(crate) u32);

/// What the driver must do on disk. Commands come in the order they must take effect.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiskCommand {
    /// Receiver: create this directory entry (and missing parents), with its mode.
    CreateDir {
        /// Manifest index.
        entry: usize,
    },
    /// Read `len` bytes of the entry's file at `offset` ([`Storage::read`]). On the
    /// receiver this reads the local partial or complete file being verified for resume.
    Read {
        /// Completion token.
        id: IoId,
        /// Manifest index.
        entry: usize,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes wanted.
        len: usize,
    },
    /// Receiver: write `len` verified bytes to the entry's partial file at `offset`
    /// ([`Storage::write`]).
    Write {
        /// Completion token.
        id: IoId,
        /// Manifest index.
        entry: usize,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes to write.
        len: usize,
    },
    /// Receiver: the entry's content is verified. Make it durable and give it its final
    /// name, mode and mtime. (Zero-byte files: create them.)
    Commit {
        /// Manifest index.
        entry: usize,
    },
    /// Receiver: the entry's partial file failed verification and will be sent again from
    /// the start; discard what it holds.
    Discard {
        /// Manifest index.
        entry: usize,
    },
    /// Sender: the entry is about to be sent again. Look at its file afresh (it may have
    /// changed since the manifest was made) and report its size and modification time
    /// ([`Storage::reopen`]); reads of this attempt are judged against those.
    Reopen {
        /// Manifest index.
        entry: usize,
    },
    /// Receiver: make every write done so far durable, then persist resume state
    /// ([`Storage::checkpoint`]) for the entries in `changed`.
    Checkpoint {
        /// Entries whose progress changed since the previous checkpoint.
        changed: core::ops::Range<usize>,
    },
    /// Receiver: every entry is resolved (in place, or failed); finish the batch on disk
    /// (folders' modes and times, everything durable: [`Storage::finish`]). The sender
    /// hears that the batch is done only once this has succeeded.
    Finish,
}

impl DiskCommand {
    /// The manifest index the command concerns (none for a checkpoint).
    pub fn entry(&self) -> Option<usize> {
        match *self {
            DiskCommand::CreateDir { entry }
            | DiskCommand::Read { entry, .. }
            | DiskCommand::Write { entry, .. }
            | DiskCommand::Commit { entry }
            | DiskCommand::Discard { entry }
            | DiskCommand::Reopen { entry } => Some(entry),
            DiskCommand::Checkpoint { .. } | DiskCommand::Finish => None,
        }
    }
}

/// A file's size and modification time, as the sender's driver finds it on reopening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// Why the sender cannot read a file (PROTOCOL.md §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreadable {
    /// The file is gone.
    #[error("it is gone")]
    Gone,
    /// Permission denied.
    #[error("permission denied")]
    PermissionDenied,
    /// Reading it failed.
    #[error("a read error")]
    ReadError,
}

impl From<DiskErrorKind> for Unreadable {
    fn from(kind: DiskErrorKind) -> Self {
        match kind {
            DiskErrorKind::NotFound => Unreadable::Gone,
            DiskErrorKind::PermissionDenied => Unreadable::PermissionDenied,
            _ => Unreadable::ReadError,
        }
    }
}

/// Why a disk operation failed, as the driver reports it. It reads as the driver's
/// message (which already says what the system said, once), or the class when there is
/// none.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", if detail.is_empty() { kind.to_string() } else { detail.clone() })]
pub struct DiskError {
    /// The class of failure.
    pub kind: DiskErrorKind,
    /// The OS's message.
    pub detail: String,
}

/// Classes of disk failure the user can act on differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiskErrorKind {
    /// The file is gone.
    #[error("file not found")]
    NotFound,
    /// Permission denied.
    #[error("permission denied")]
    PermissionDenied,
    /// The disk is full.
    #[error("no space left on the device")]
    NoSpace,
    /// Anything else.
    #[error("I/O error")]
    Other,
}

/// Why a file could not be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFailure {
    /// Every attempt ended with a SHA-256 mismatch: the bytes that arrived are not the
    /// bytes the sender promised.
    HashMismatch {
        /// Attempts made.
        attempts: u8,
    },
    /// The file changed at the sender while it was being read, attempt after attempt.
    KeptChanging {
        /// Attempts made.
        attempts: u8,
    },
    /// The sender cannot read the file.
    Unreadable {
        /// Why.
        cause: Unreadable,
    },
}

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// The handshake completed.
    Connected,
    /// Receiver: the sender offered this batch; call `accept` or `decline`.
    BatchOffered {
        /// Entries (files and directories).
        entries: usize,
        /// Bytes in all files.
        bytes: u64,
    },
    /// Both: what will be sent, after resume claims were checked.
    PlanSettled {
        /// Files already complete on the receiver.
        skipped: usize,
        /// Files resumed from a verified prefix.
        resumed: usize,
        /// Files sent from the start.
        fresh: usize,
        /// Bytes already on the receiver and verified.
        bytes_present: u64,
        /// Bytes still to send.
        bytes_to_send: u64,
    },
    /// Files already here are being re-read and hashed for a resume plan (the receiver
    /// its own, the sender what the receiver claims): bytes checked so far, of all.
    ResumeCheck {
        /// Bytes checked so far.
        checked: u64,
        /// Bytes to check in all.
        total: u64,
    },
    /// Bytes of file data moved so far (sent and proven, or received and verified).
    Progress {
        /// Bytes so far in this session.
        bytes: u64,
    },
    /// Receiver: a file is verified and committed. (A sender's files are confirmed
    /// together, by [`TransferEvent::Finished`].)
    FileDone {
        /// Manifest index.
        entry: usize,
    },
    /// Receiver: a segment's data did not match its hash (a faulty sender); nothing of
    /// it was written, and the files with a piece in it will be sent again.
    SegmentRejected {
        /// The segment's place in the stream (from 1).
        segment: u64,
    },
    /// A file failed verification and is being sent again.
    FileRetry {
        /// Manifest index.
        entry: usize,
        /// The attempt now starting (2 or more).
        attempt: u8,
    },
    /// Sender: reading a source file failed or came up short; the receiver will ask for
    /// it again.
    ReadFailed {
        /// Manifest index.
        entry: usize,
        /// The driver's report.
        error: DiskError,
    },
    /// A file could not be delivered; the others are unaffected.
    FileFailed {
        /// Manifest index.
        entry: usize,
        /// Why.
        reason: FileFailure,
    },
    /// Receiver: open another connection to the sender's address for lane `lane`
    /// (PROTOCOL.md §8), then call [`ReceiverSession::lane_connected`] and feed what comes
    /// on it to [`ReceiverSession::handle_lane_input`]; if it cannot be opened, call
    /// [`Session::lane_closed`]. A driver without lanes may ignore this: the transfer goes
    /// on over the one connection.
    LaneWanted {
        /// Its number, 1 to 7.
        lane: u8,
    },
    /// The batch is finished: every entry is committed or failed.
    Finished {
        /// Files and directories in place.
        committed: u64,
        /// Files that failed.
        failed: u64,
    },
}

/// Why a transfer session ended early.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The secure channel failed.
    #[error(transparent)]
    Channel(#[from] Error),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] TransferConfigError),
    /// The manifest broke a rule.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A Resource message was malformed.
    #[error("malformed message from the peer: {0}")]
    Wire(#[from] WireError),
    /// A Ferry message was malformed.
    #[error("malformed message from the peer: {what}: {source}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// What was wrong.
        source: DecodeError,
    },
    /// The peer broke the protocol.
    #[error("protocol violation by the peer: {0}")]
    Protocol(Violation),
    /// The driver called the session out of order (a disk completion it was not asked
    /// for, an accept with no batch offered). The session goes on as it was, and the
    /// peer is not told: the mistake is the caller's.
    #[error("the session was called out of order: {0}")]
    Misuse(&'static str),
    /// The driver ran or gave back one of the session's SHA-256 passes wrongly (out of
    /// the session's order, or not at all): its segment's hashes are lost, so the
    /// session ends (`Session::offload_hashing`).
    #[error("the driver's hashing went wrong: {0}")]
    Hashing(&'static str),
    /// The driver gave back a batch of a lane's records unsealed
    /// (`Session::offload_sealing`): the lane cannot go on, so the session ends.
    #[error("the driver's sealing went wrong: {0}")]
    Sealing(&'static str),
    /// A disk operation failed.
    #[error("{op} {path}: {error}")]
    Disk {
        /// "reading" or "writing".
        op: &'static str,
        /// The entry's path.
        path: String,
        /// The driver's report.
        error: DiskError,
    },
    /// The peer went quiet mid-transfer.
    #[error("the peer stopped making progress for {} s; reconnect to resume", .0.as_secs())]
    Stalled(Duration),
    /// Cancelled by a user on either side.
    #[error("transfer cancelled by the {}: {reason}", if *by_peer { "peer" } else { "user" })]
    Cancelled {
        /// True if the other side cancelled.
        by_peer: bool,
        /// The reason given.
        reason: String,
    },
    /// The receiver declined the batch.
    #[error("the receiver declined the batch: {0}")]
    Declined(String),
    /// A segment's data did not match its hash (PROTOCOL.md §6.3).
    #[error("segment {0} is corrupt: its data does not match the advertised hash")]
    SegmentCorrupt(u64),
    /// A compressed segment expanded beyond its advertised size.
    #[error(
        "segment {segment} decompresses to more than its advertised {limit} bytes (a decompression bomb); nothing of it was written"
    )]
    DecompressionBomb {
        /// The segment.
        segment: u64,
        /// Its advertised size.
        limit: u64,
    },
    /// The peer closed the connection before the batch was finished.
    #[error("the peer ended the session before the batch was finished; reconnect to resume")]
    PeerEnded,
}
