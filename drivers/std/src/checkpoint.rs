//! Persisting resume state off the data path. At a checkpoint the transfer's thread
//! streams the lock to a temporary file (claiming only writes already done); a worker
//! thread then makes the file system durable and only after that publishes the
//! temporary file as the lock. Receiving continues while the disk catches up.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::error::DriverError;
use crate::lock::LockFile;
use crate::os::dir::Dir;
use crate::os::sync::sync_filesystem;

/// The checkpoint worker of one receive.
pub struct Checkpointer {
    dir: Dir,
    jobs: Option<SyncSender<File>>,
    /// True from handing the worker a temporary lock until it has published it; the
    /// temporary file is not touched meanwhile.
    busy: Arc<AtomicBool>,
    /// A checkpoint came while the worker was busy: the next one (or `finish`) covers it.
    behind: bool,
    worker: Option<JoinHandle<Result<(), DriverError>>>,
}

fn lock_error(e: &std::io::Error) -> DriverError {
    DriverError::Disk(format!("cannot write the lock file: {e}"))
}

fn run(dir: Dir, jobs: Receiver<File>, busy: Arc<AtomicBool>) -> Result<(), DriverError> {
    for temporary in jobs {
        let published = sync_filesystem(&dir)
            .and_then(|()| LockFile::publish(&dir, temporary))
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
            busy,
            behind: false,
            worker,
        })
    }

    /// Records `lock` as it is now, to be published once everything written so far is
    /// durable. If the previous checkpoint is still being made durable, this one is folded
    /// into the next.
    pub fn checkpoint(&mut self, lock: &mut LockFile) -> Result<(), DriverError> {
        if self.jobs.is_none() || self.busy.load(Ordering::Acquire) {
            self.behind = true;
            return Ok(());
        }
        let temporary = lock
            .write_temporary(&self.dir)
            .map_err(|e| lock_error(&e))?;
        self.busy.store(true, Ordering::Release);
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(temporary).is_ok());
        if !sent {
            // The worker stopped on an error; `finish` reports it.
            return self.finish(None);
        }
        self.behind = false;
        Ok(())
    }

    /// Stops the worker and reports its error, if any. A checkpoint that was folded away
    /// is made now, synchronously, from `lock`.
    pub fn finish(&mut self, lock: Option<&mut LockFile>) -> Result<(), DriverError> {
        self.jobs = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(Err(error))) => return Err(error),
            Some(Err(_)) => {
                return Err(DriverError::Disk("the checkpoint writer panicked".into()));
            }
            _ => {}
        }
        if let (true, Some(lock)) = (self.behind, lock) {
            self.behind = false;
            sync_filesystem(&self.dir).map_err(|e| lock_error(&e))?;
            lock.save(&self.dir).map_err(|e| lock_error(&e))?;
        }
        Ok(())
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.finish(None);
    }
}
