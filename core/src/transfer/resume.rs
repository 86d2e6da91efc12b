//! What both sides share of the resume check: re-reading and hashing the prefixes of
//! local files, the bound on how long that may take the peer, and the plan's summary.

use sha2::{Digest, Sha256};

use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::outputs::{Outputs, VERIFY_READ};
use crate::transfer::violation::misuse;
use crate::transfer::{DiskCommand, DiskError, TransferError, TransferEvent};

/// A finished prefix check: the entry, the bytes checked, and the hash state after them
/// with its digest (`None` when the file was shorter or could not be read).
pub(crate) struct Verified {
    pub(crate) entry: u32,
    pub(crate) target: u64,
    pub(crate) result: Option<(Sha256, [u8; 32])>,
}

/// Hashes the first bytes of local files through reads the driver performs, one read at
/// a time into one buffer: how each side checks a resume claim.
pub(crate) struct Verifier {
    buf: Vec<u8>,
    job: Option<(u32, u64, u64, Sha256)>,
    reading: Option<usize>,
    failed: bool,
    /// Bytes read and hashed so far, and to read in all (for progress).
    checked: u64,
    total: u64,
}

impl Verifier {
    pub(crate) fn new(chunk: usize) -> Self {
        Verifier {
            buf: vec![0; chunk],
            job: None,
            reading: None,
            failed: false,
            checked: 0,
            total: 0,
        }
    }

    /// Sets how many bytes all the checks to come will read.
    pub(crate) fn expect(&mut self, total: u64) {
        self.total = total;
    }

    /// The progress event for the checks so far.
    pub(crate) fn progress(&self) -> TransferEvent {
        TransferEvent::ResumeCheck {
            checked: self.checked,
            total: self.total.max(self.checked),
        }
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// Starts hashing the first `target` bytes of `entry`.
    pub(crate) fn start(&mut self, entry: u32, target: u64) {
        self.job = Some((entry, target, 0, Sha256::new()));
        self.reading = None;
        self.failed = false;
    }

    /// Issues the next read when one is due (and the disk queue has room); returns the
    /// job once it is complete.
    pub(crate) fn poll(&mut self, out: &mut Outputs) -> Option<Verified> {
        let (entry, target, done, _) = self.job.as_ref()?;
        let (entry, target, done) = (*entry, *target, *done);
        if self.failed || done == target {
            let (_, _, _, hasher) = self.job.take()?;
            let result = (!self.failed).then(|| {
                let digest = hasher.clone().finalize().into();
                (hasher, digest)
            });
            return Some(Verified {
                entry,
                target,
                result,
            });
        }
        if self.reading.is_none() && out.has_room(1, 1) {
            let len = (target - done).min(self.buf.len() as u64) as usize;
            self.reading = Some(len);
            out.disk(DiskCommand::Read {
                id: VERIFY_READ,
                entry: entry as usize,
                offset: done,
                len,
            });
        }
        None
    }

    /// Where the driver puts the bytes of the outstanding read.
    pub(crate) fn buffer(&mut self) -> &mut [u8] {
        let len = self.reading.unwrap_or(0);
        &mut self.buf[..len]
    }

    /// The outstanding read finished.
    pub(crate) fn read_done(
        &mut self,
        result: Result<usize, DiskError>,
    ) -> Result<(), TransferError> {
        let (Some(wanted), Some((_, _, done, hasher))) = (self.reading.take(), self.job.as_mut())
        else {
            return Err(misuse("driver reported an unknown read"));
        };
        match result {
            Ok(n) if n == wanted => {
                hasher.update(&self.buf[..n]);
                *done += n as u64;
                self.checked += n as u64;
            }
            _ => self.failed = true,
        }
        Ok(())
    }
}

/// The slowest rate, in bytes per second, at which a peer may re-read and hash the files
/// a resume plan names before its answer is overdue (PROTOCOL.md §6.5).
pub const SLOWEST_REREAD: u64 = 8 << 20;

/// How long to wait for a peer that first re-reads `bytes`: the stall timeout plus that
/// re-read at [`SLOWEST_REREAD`]. Every wait has a bound, even this one.
pub(crate) fn reread_allowance(
    stall_timeout: core::time::Duration,
    bytes: u64,
) -> core::time::Duration {
    stall_timeout.saturating_add(core::time::Duration::from_secs(bytes / SLOWEST_REREAD))
}

/// What the plan settled on, counted the same way on both sides: `start(index)` is where
/// each file's data begins in the stream (its verified resume offset).
pub(crate) fn plan_settled(manifest: &Manifest, start: impl Fn(usize) -> u64) -> TransferEvent {
    let (mut skipped, mut resumed, mut fresh, mut present, mut to_send) = (0, 0, 0, 0u64, 0u64);
    for (index, entry) in manifest.iter().enumerate() {
        if entry.kind != EntryKind::File {
            continue;
        }
        let start = start(index);
        present += start;
        to_send += entry.size - start;
        match start {
            0 => fresh += 1,
            s if s == entry.size => skipped += 1,
            _ => resumed += 1,
        }
    }
    TransferEvent::PlanSettled {
        skipped,
        resumed,
        fresh,
        bytes_present: present,
        bytes_to_send: to_send,
    }
}
