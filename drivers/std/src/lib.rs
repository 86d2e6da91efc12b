//! Blocking driver for Ferry: the socket, the files and the clock around the sans-IO core.
//!
//! The pieces every driver shares live here once and the mio driver reuses them: the
//! source tree ([`source`]), the receiver's output directory with its `.part` files
//! ([`sink`]), the lock file ([`lock`]), the Tailscale peer check ([`peer`]), OS entropy
//! and the clock. [`send`] and [`receive`] are the blocking transfers built on them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
pub mod clock;
pub mod conn;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod hashing;
pub mod lanes;
pub mod lock;
pub mod os;
pub mod peer;
pub mod receive;
pub mod send;
pub mod sink;
pub mod source;
pub mod stop;

pub use clock::Clock;
pub use error::{DriverError, ExitCode};

use ferry_core::Entropy;

/// The port Ferry listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 15820;

/// Disk work one drain of a session's outputs does at most (bytes read or written; any
/// other command counts as a small write) before it hands control back: checking what
/// is already here can re-read gigabytes, and meanwhile the loop must still hear the
/// user's Ctrl-C, keep its socket alive and, on the event loop, serve other sessions.
/// The caller drains again at once.
pub const DRAIN_BUDGET: usize = 64 << 20;

/// What `command` costs against [`DRAIN_BUDGET`].
pub fn drain_cost(command: &ferry_core::transfer::DiskCommand) -> usize {
    use ferry_core::transfer::DiskCommand;
    match command {
        DiskCommand::Read { len, .. } | DiskCommand::Write { len, .. } => *len,
        _ => 4 << 10,
    }
}

/// Entropy from the operating system, for real keys and tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        // Without OS randomness no secure key can be made; continuing would be worse than
        // stopping, and there is nothing a caller could do instead.
        if let Err(error) = getrandom::fill(dest) {
            panic!("the operating system's random number generator failed: {error}");
        }
    }
}

/// A byte count as people read it, in binary units: "512 B", "1.5 KiB", "20.0 MiB",
/// "1.00 GiB", "2.00 TiB".
pub fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    match bytes {
        n if n >= 1 << 40 => format!("{:.2} TiB", b / KIB.powi(4)),
        n if n >= 1 << 30 => format!("{:.2} GiB", b / KIB.powi(3)),
        n if n >= 1 << 20 => format!("{:.1} MiB", b / KIB.powi(2)),
        n if n >= 1 << 10 => format!("{:.1} KiB", b / KIB),
        n => format!("{n} B"),
    }
}

/// How far a check of what is already here is, as a line for people where no bar can be
/// drawn (a log, a pipe, one session among several): the first at once, then one every
/// 2 s at most.
#[derive(Debug, Default)]
pub struct CheckLine {
    said: Option<std::time::Instant>,
}

impl CheckLine {
    /// The line to print now about `checked` of `total` bytes, if one is due.
    pub fn due(&mut self, checked: u64, total: u64) -> Option<String> {
        if self
            .said
            .is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(2))
        {
            return None;
        }
        self.said = Some(std::time::Instant::now());
        Some(format!(
            "checking what is already here: {} of {}",
            human_size(checked),
            human_size(total)
        ))
    }
}

/// The files and the folders of a batch, and the bytes in its files.
pub fn batch_counts(manifest: &ferry_core::transfer::Manifest) -> (u64, u64, u64) {
    let folders = manifest
        .iter()
        .filter(|e| e.kind == ferry_core::transfer::EntryKind::Directory)
        .count() as u64;
    (
        manifest.len() as u64 - folders,
        folders,
        manifest.total_bytes(),
    )
}

/// Reports a file sent again from its start ([`Report::FileRetry`]); returns its path,
/// for the line about it.
pub(crate) fn report_retry<'m>(
    reporter: &mut dyn Reporter,
    manifest: &'m ferry_core::transfer::Manifest,
    entry: usize,
    attempt: u8,
) -> &'m str {
    let (path, bytes) = manifest.get(entry).map_or(("?", 0), |e| (e.path, e.size));
    reporter.report(&Report::FileRetry {
        path,
        attempt,
        bytes,
    });
    path
}

/// "1 file", "2 files", "0 folders": a count and its noun, singular or plural.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Reports the settled plan (a [`Report::Plan`]) and the line both sides print for it
/// (the seed's wording).
pub(crate) fn report_plan(reporter: &mut dyn Reporter, plan: Report<'_>) {
    reporter.report(&plan);
    if let Report::Plan {
        skipped,
        resumed,
        fresh,
        ..
    } = plan
    {
        reporter.info(&if skipped + resumed > 0 {
            format!("Resuming transfer: {skipped} completed, {resumed} partial, {fresh} fresh")
        } else {
            "Starting fresh transfer".to_owned()
        });
    }
}

/// Something a transfer did, as a program driving `ferry` wants it (`--json`): each
/// [`Reporter`] also gets these, besides its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report<'a> {
    /// Receiver: the batch offered (`files` and `folders` in it, `bytes` in its files).
    Offered {
        /// Files in the batch.
        files: u64,
        /// Folders in the batch.
        folders: u64,
        /// Bytes in its files.
        bytes: u64,
    },
    /// The resume plan is settled: files already here whole, in part, and not at all;
    /// bytes already here and bytes to move.
    Plan {
        /// Files already here whole.
        skipped: usize,
        /// Files already here in part.
        resumed: usize,
        /// Files not here at all.
        fresh: usize,
        /// Bytes already here.
        bytes_present: u64,
        /// Bytes this session moves (retries add to it).
        bytes_to_send: u64,
    },
    /// A file is verified and in place.
    FileDone {
        /// Its path in the batch.
        path: &'a str,
    },
    /// A file is sent again from its start: `bytes` more to move.
    FileRetry {
        /// Its path in the batch.
        path: &'a str,
        /// The attempt now starting.
        attempt: u8,
        /// Its size: what this session moves again.
        bytes: u64,
    },
    /// A file could not be delivered; the others go on.
    FileFailed {
        /// Its path in the batch.
        path: &'a str,
        /// Why, in words.
        reason: &'a str,
    },
    /// Sender: a receiver's session ended without the batch; waiting for the next.
    ReceiverLost {
        /// Why, in words.
        reason: &'a str,
    },
}

/// What a transfer tells its user as it goes; the command line implements it with a
/// progress bar, tests with a log.
pub trait Reporter {
    /// Something the transfer did (see [`Report`]); the lines about it come through
    /// [`Reporter::info`] as well.
    fn report(&mut self, report: &Report<'_>) {
        let _ = report;
    }
    /// A line of information ("Resuming transfer: ...", a warning).
    fn info(&mut self, line: &str);
    /// Total bytes this session will move, once known.
    fn start(&mut self, files: usize, bytes_to_move: u64);
    /// Bytes moved so far in this session, and files finished.
    fn progress(&mut self, bytes: u64, files: usize);
    /// Files already here are being re-read for a resume: `checked` of `total` bytes.
    fn checking(&mut self, checked: u64, total: u64) {
        let _ = (checked, total);
    }
    /// The batch arrived whole: the last progress can say exactly what moved.
    fn arrived(&mut self) {}
    /// The reporter for the session with the receiver at `peer`, one of several a sender
    /// serves at once (`--receivers`), if this one tells them apart (`--json` does: each
    /// of its events names its receiver). `None`: only their lines are shown, through
    /// [`Reporter::info`] with the peer in front.
    fn for_peer(&mut self, peer: &str) -> Option<&mut dyn Reporter> {
        let _ = peer;
        None
    }
    /// The session with the receiver at `peer` is over: [`Reporter::for_peer`]'s state
    /// for it can go.
    fn peer_gone(&mut self, peer: &str) {
        let _ = peer;
    }
}

/// A reporter that stays silent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn info(&mut self, _line: &str) {}
    fn start(&mut self, _files: usize, _bytes: u64) {}
    fn progress(&mut self, _bytes: u64, _files: usize) {}
}
