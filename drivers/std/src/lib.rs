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

/// The line both sides print once the resume plan is settled (the seed's wording).
pub fn plan_line(skipped: usize, resumed: usize, fresh: usize) -> String {
    if skipped + resumed > 0 {
        format!("Resuming transfer: {skipped} completed, {resumed} partial, {fresh} fresh")
    } else {
        "Starting fresh transfer".to_owned()
    }
}

/// What a transfer tells its user as it goes; the command line implements it with a
/// progress bar, tests with a log.
pub trait Reporter {
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
}

/// A reporter that stays silent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn info(&mut self, _line: &str) {}
    fn start(&mut self, _files: usize, _bytes: u64) {}
    fn progress(&mut self, _bytes: u64, _files: usize) {}
}
