//! What a driver keeps on disk for a session, as one trait: the session carries out its
//! own disk commands against it ([`crate::transfer::Session::carry_out`]), so every driver
//! (blocking, event loop, simulator, tests) writes only its storage, never the
//! interpretation of the commands. The core itself still does no IO: a storage is the
//! driver's.

use core::ops::Range;

use crate::transfer::manifest::{Entry, Manifest};
use crate::transfer::{DiskCommand, DiskError, DiskErrorKind, FileMeta, ReceiverSession};

/// The entry a disk command concerns: its index in the manifest and the entry itself.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Manifest index.
    pub index: usize,
    /// The entry (its path, size, mode and mtime).
    pub entry: Entry<'a>,
}

impl<'a> Target<'a> {
    /// The entry `command` concerns, if the batch has it.
    pub(crate) fn of(manifest: &'a Manifest, command: &DiskCommand) -> Option<Self> {
        let index = command.entry()?;
        Some(Target {
            index,
            entry: manifest.get(index)?,
        })
    }
}

/// A driver's files, for one session. The sender's side reads and reopens its sources;
/// the receiver's reads what it already holds, writes, commits, discards, creates folders
/// and checkpoints. An operation a role never asks for keeps its default, an error
/// (but for [`Storage::finish`], whose default has nothing to do).
pub trait Storage {
    /// Reads into `buf` from `offset` of `target` (the sender's source; the receiver's
    /// partial or complete local copy); returns the bytes read, fewer at the end.
    fn read(&mut self, target: Target<'_>, offset: u64, buf: &mut [u8])
    -> Result<usize, DiskError>;

    /// Receiver: writes verified bytes at `offset` of `target`'s partial file.
    fn write(&mut self, target: Target<'_>, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let _ = (target, offset, data);
        Err(unsupported("write"))
    }

    /// Receiver: `target` is verified: give it its final name, mode and mtime.
    fn commit(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        let _ = target;
        Err(unsupported("commit"))
    }

    /// Receiver: throw away `target`'s partial file (it is sent again, or failed).
    fn discard(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        let _ = target;
        Err(unsupported("discard"))
    }

    /// Receiver: create the directory `target` (and missing parents).
    fn create_dir(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        let _ = target;
        Err(unsupported("create directories"))
    }

    /// Receiver: make everything written so far durable, then record for a later run
    /// what `session` has verified ([`ReceiverSession::progress`]) of the entries in
    /// `changed` (the others are as the previous checkpoint left them).
    fn checkpoint(
        &mut self,
        changed: Range<usize>,
        session: &ReceiverSession,
    ) -> Result<(), DiskError> {
        let _ = (changed, session);
        Err(unsupported("checkpoint"))
    }

    /// Receiver: every entry of `session`'s batch is resolved (in place, or failed):
    /// finish it on disk (what
    /// only the whole batch decides, such as folders' times, and making it durable). A
    /// storage with nothing left to do keeps the default.
    fn finish(&mut self, session: &ReceiverSession) -> Result<(), DiskError> {
        let _ = session;
        Ok(())
    }

    /// Sender: look at `target`'s file afresh for its next attempt.
    fn reopen(&mut self, target: Target<'_>) -> Result<FileMeta, DiskError> {
        let _ = target;
        Err(unsupported("reopen"))
    }
}

fn unsupported(what: &str) -> DiskError {
    DiskError {
        kind: DiskErrorKind::Other,
        detail: format!("this storage does not {what}"),
    }
}
