//! Persisting resume state off the data path. At a checkpoint the transfer's thread
//! streams the lock to a temporary file (claiming only writes already done); a worker
//! thread then makes the file system durable and only after that publishes the
//! temporary file as the lock. Receiving continues while the disk catches up.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{DriverError, is_out_of_space};
use crate::lock;
use crate::os::dir::Dir;
use crate::os::sync::{Written, sync_filesystem};

/// Writes the lock as it is now.
pub type LockWriter<'a> = dyn FnMut(&mut dyn Write) -> std::io::Result<()> + 'a;

/// The checkpoint worker of one receive.
pub struct Checkpointer {
    dir: Dir,
    jobs: Option<SyncSender<Job>>,
    /// What was written since the last checkpoint handed to the worker.
    pending: Written,
    /// True from handing the worker a temporary lock until it has published it; the
    /// temporary file is not touched meanwhile.
    busy: Arc<AtomicBool>,
    /// A checkpoint was skipped: the next one (or [`Checkpointer::save_now`]) covers it.
    behind: bool,
    /// Whether a checkpoint found the disk full, and whether the user was told.
    disk_full: DiskFull,
    /// When the last temporary lock was written, and how long that took: a lock that is
    /// slow to write (a batch of a million files) is written less often, so that writing
    /// it never takes more than a fifth of the transfer's time.
    last_write: Option<(Instant, Duration)>,
    /// Checkpoints made, and the time the transfer's thread spent writing their locks:
    /// what checkpoints cost the data path (the syncing is the worker's).
    made: u32,
    spent: Duration,
    worker: Option<JoinHandle<Result<(), DriverError>>>,
}

/// A full disk, as the checkpoints meet it: its user is told once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiskFull {
    No,
    ToSay,
    Said,
}

/// What the user is told when a checkpoint first finds the disk full.
const DISK_FULL: &str = "the disk is full: progress is saved only when this receive ends (into the space set aside for it), until there is room again; a kill -9 or a power loss meanwhile loses what arrived since";

fn lock_error(e: &std::io::Error) -> DriverError {
    DriverError::Disk(format!("cannot write the lock file: {e}"))
}

/// One checkpoint for the worker: the temporary lock, and what must be made durable
/// before the lock is published.
type Job = (lock::Temporary, Written);

fn run(dir: Dir, jobs: Receiver<Job>, busy: Arc<AtomicBool>) -> Result<(), DriverError> {
    for (temporary, written) in jobs {
        let published = sync_filesystem(&dir, &written)
            .and_then(|()| lock::publish(&dir, temporary))
            .map_err(|e| lock_error(&e));
        busy.store(false, Ordering::Release);
        published?;
    }
    Ok(())
}

impl Checkpointer {
    /// Starts the worker for the output directory `dir`.
    pub fn new(dir: &Dir) -> Result<Self, DriverError> {
        let (jobs, queue) = mpsc::sync_channel(1);
        let busy = Arc::new(AtomicBool::new(false));
        let cloned = || {
            dir.try_clone()
                .map_err(|e| DriverError::Disk(format!("cannot open the output directory: {e}")))
        };
        let worker = {
            let (worker_dir, busy) = (cloned()?, Arc::clone(&busy));
            std::thread::Builder::new()
                .name("ferry-checkpoint".into())
                .spawn(move || run(worker_dir, queue, busy))
                .ok()
        };
        Ok(Checkpointer {
            dir: cloned()?,
            jobs: worker.is_some().then_some(jobs),
            pending: Written::default(),
            busy,
            behind: false,
            disk_full: DiskFull::No,
            last_write: None,
            made: 0,
            spent: Duration::ZERO,
            worker,
        })
    }

    /// Records the lock as `write` writes it now, to be published once everything written
    /// so far is durable. If the previous checkpoint is still being made durable (or the
    /// lock is slow to write and was written recently), this one is skipped: the next
    /// covers it. So is one the disk has no room for (the spare is kept for the last,
    /// and the transfer goes on: its own disk was set aside as each file began).
    pub fn checkpoint(
        &mut self,
        written: Written,
        write: &mut LockWriter<'_>,
    ) -> Result<(), DriverError> {
        self.pending.absorb(written);
        let recently = self
            .last_write
            .is_some_and(|(at, took)| at.elapsed() < 4 * took);
        if self.jobs.is_none() || self.busy.load(Ordering::Acquire) || recently {
            self.behind = true;
            return Ok(());
        }
        let started = Instant::now();
        let temporary = match lock::write_temporary(&self.dir, lock::Room::Allocated, write) {
            Ok(temporary) => temporary,
            Err(e) if is_out_of_space(&e) => {
                // Not tried again before the rule for slow locks allows: a big lock is
                // not streamed at every checkpoint only to find no room.
                self.last_write = Some((Instant::now(), started.elapsed()));
                self.behind = true;
                if self.disk_full == DiskFull::No {
                    self.disk_full = DiskFull::ToSay;
                }
                return Ok(());
            }
            Err(e) => return Err(lock_error(&e)),
        };
        self.last_write = Some((Instant::now(), started.elapsed()));
        self.made += 1;
        self.spent += started.elapsed();
        self.busy.store(true, Ordering::Release);
        let sent = self.jobs.as_ref().is_some_and(|jobs| {
            let written = std::mem::take(&mut self.pending);
            jobs.send((temporary, written)).is_ok()
        });
        if !sent {
            // The worker stopped on an error; `finish` reports it.
            return self.finish();
        }
        self.behind = false;
        Ok(())
    }

    /// Sets aside `len` bytes of disk for the last checkpoint, so that a receive that
    /// filled the disk can still write it: a spare that no other checkpoint takes, so it
    /// is there whenever one is published. A disk too full for it just has none, and any
    /// real problem shows when the last checkpoint is written.
    pub fn reserve(&mut self, len: u64) {
        let _ = lock::prepare_spare(&self.dir, len);
    }

    /// The line to tell the user, once, when a checkpoint first found the disk full.
    pub fn disk_full_notice(&mut self) -> Option<&'static str> {
        (self.disk_full == DiskFull::ToSay).then(|| {
            self.disk_full = DiskFull::Said;
            DISK_FULL
        })
    }

    /// Checkpoints made so far, and the time the transfer's thread spent on them.
    pub fn cost(&self) -> (u32, Duration) {
        (self.made, self.spent)
    }

    /// True if a checkpoint was skipped since the last one made.
    pub fn is_behind(&self) -> bool {
        self.behind
    }

    /// Stops the worker, once it has published what it was given, and reports its error.
    pub fn finish(&mut self) -> Result<(), DriverError> {
        self.jobs = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(DriverError::Disk("the checkpoint writer panicked".into())),
            _ => Ok(()),
        }
    }

    /// Stops the worker once it has published what it was given (the batch is about to
    /// be reported done), and hands back what was written since that no checkpoint made
    /// durable, for the batch's one last sync.
    pub fn settle(&mut self) -> Result<Written, DriverError> {
        self.finish()?;
        Ok(std::mem::take(&mut self.pending))
    }

    /// Makes everything written so far durable and publishes the lock as `write` writes
    /// it, now, on this thread (the worker must have finished): the last checkpoint, into
    /// the spare if the disk has no other room. The spare is removed either way.
    pub fn save_now(
        &mut self,
        written: Written,
        write: &mut LockWriter<'_>,
    ) -> Result<(), DriverError> {
        self.pending.absorb(written);
        let written = std::mem::take(&mut self.pending);
        let saved = sync_filesystem(&self.dir, &written)
            .and_then(|()| lock::write_temporary(&self.dir, lock::Room::SpareIfFull, write))
            .and_then(|temporary| lock::publish(&self.dir, temporary))
            .map_err(|e| lock_error(&e));
        self.give_back_spare();
        saved?;
        self.behind = false;
        Ok(())
    }

    /// Removes the spare: the receive ends without needing it (or has used it).
    pub fn give_back_spare(&self) {
        let _ = lock::remove_spare(&self.dir);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
