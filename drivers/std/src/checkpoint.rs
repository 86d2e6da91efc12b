//! Persisting resume state off the data path. At a checkpoint the transfer's thread
//! streams the lock to a temporary file (claiming only writes already done); a worker
//! thread then makes the file system durable (`syncfs`) and only after that publishes the
//! temporary file as the lock. Receiving continues while the disk catches up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::error::DriverError;
use crate::lock::LockFile;
use crate::sink::sync_filesystem;

/// The checkpoint worker of one receive.
pub struct Checkpointer {
    root: PathBuf,
    jobs: Option<SyncSender<()>>,
    /// True from handing the worker a temporary lock until it has published it; the
    /// temporary file is not touched meanwhile.
    busy: Arc<AtomicBool>,
    /// A checkpoint came while the worker was busy: the next one (or `finish`) covers it.
    behind: bool,
    worker: Option<JoinHandle<Result<(), DriverError>>>,
}

fn run(root: PathBuf, jobs: Receiver<()>, busy: Arc<AtomicBool>) -> Result<(), DriverError> {
    for () in jobs {
        let published = sync_filesystem(&root).and_then(|()| {
            LockFile::publish(&root)
                .map_err(|e| DriverError::Disk(format!("cannot write the lock file: {e}")))
        });
        busy.store(false, Ordering::Release);
        published?;
    }
    Ok(())
}

impl Checkpointer {
    /// Starts the worker for the output directory `root`.
    pub fn new(root: PathBuf) -> Self {
        let (jobs, queue) = mpsc::sync_channel(1);
        let busy = Arc::new(AtomicBool::new(false));
        let worker = {
            let (root, busy) = (root.clone(), Arc::clone(&busy));
            std::thread::Builder::new()
                .name("ferry-checkpoint".into())
                .spawn(move || run(root, queue, busy))
                .ok()
        };
        Checkpointer {
            root,
            jobs: worker.is_some().then_some(jobs),
            busy,
            behind: false,
            worker,
        }
    }

    /// Records `lock` as it is now, to be published once everything written so far is
    /// durable. If the previous checkpoint is still being made durable, this one is folded
    /// into the next.
    pub fn checkpoint(&mut self, lock: &mut LockFile) -> Result<(), DriverError> {
        if self.jobs.is_none() || self.busy.load(Ordering::Acquire) {
            self.behind = true;
            return Ok(());
        }
        lock.write_temporary(&self.root)
            .map_err(|e| DriverError::Disk(format!("cannot write the lock file: {e}")))?;
        self.busy.store(true, Ordering::Release);
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(()).is_ok());
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
            sync_filesystem(&self.root)?;
            lock.save(&self.root)
                .map_err(|e| DriverError::Disk(format!("cannot write the lock file: {e}")))?;
        }
        Ok(())
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.finish(None);
    }
}
