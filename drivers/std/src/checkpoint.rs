//! Persisting resume state off the data path: a worker thread makes the file system
//! durable (`syncfs`) and only then writes the lock file snapshot taken at the checkpoint,
//! so receiving continues while earlier data is flushed.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use crate::error::DriverError;
use crate::lock::LockFile;

/// The background writer of resume state.
pub struct Checkpointer {
    jobs: Option<SyncSender<Vec<u8>>>,
    /// A newer snapshot waiting while the worker is busy (older ones are superseded).
    pending: Option<Vec<u8>>,
    worker: Option<JoinHandle<Result<(), String>>>,
}

fn run(root: PathBuf, jobs: Receiver<Vec<u8>>) -> Result<(), String> {
    for snapshot in jobs {
        let dir = File::open(&root).map_err(|e| format!("cannot sync {}: {e}", root.display()))?;
        nix::unistd::syncfs(&dir).map_err(|e| format!("cannot sync {}: {e}", root.display()))?;
        LockFile::write_snapshot(&root, &snapshot)
            .map_err(|e| format!("cannot write the lock file: {e}"))?;
    }
    Ok(())
}

impl Checkpointer {
    /// A worker for the output directory `root`.
    pub fn new(root: PathBuf) -> Self {
        let (jobs, queue) = mpsc::sync_channel(1);
        let worker = std::thread::Builder::new()
            .name("ferry-checkpoint".into())
            .spawn(move || run(root, queue))
            .ok();
        Checkpointer {
            jobs: Some(jobs),
            pending: None,
            worker,
        }
    }

    /// Queues a lock `snapshot`, to be written once everything written so far is durable.
    pub fn submit(&mut self, snapshot: Vec<u8>) -> Result<(), DriverError> {
        let Some(jobs) = &self.jobs else {
            return Ok(());
        };
        match jobs.try_send(snapshot) {
            Ok(()) => self.pending = None,
            Err(TrySendError::Full(snapshot)) => self.pending = Some(snapshot),
            Err(TrySendError::Disconnected(_)) => return self.finish(),
        }
        Ok(())
    }

    /// Writes what is pending and waits for the worker; reports its first failure.
    pub fn finish(&mut self) -> Result<(), DriverError> {
        if let (Some(jobs), Some(snapshot)) = (&self.jobs, self.pending.take()) {
            let _ = jobs.send(snapshot);
        }
        self.jobs = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(Err(reason))) => Err(DriverError::Disk(reason)),
            Some(Err(_)) => Err(DriverError::Disk("the checkpoint writer panicked".into())),
            _ => Ok(()),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
