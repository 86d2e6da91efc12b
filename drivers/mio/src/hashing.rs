//! The loop's hashing thread: the sessions that hand their SHA-256 passes out
//! (`ferry_std::hashing::wanted` decides which) have them run here, each on a chain of
//! its own, and the loop is woken as each pass comes back. Beside it, for a sender, its
//! sealing threads (`ferry_std::hashing::aead_threads`): any session's batch of
//! records on any of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use ferry_core::sealing::SealWork;
use ferry_core::transfer::{HashChain, HashWork, Session};
use ferry_std::DriverError;
use mio::{Registry, Token, Waker};

/// The token of the waker the hashing thread wakes the loop with.
pub(crate) const WAKE: Token = Token(usize::MAX - 1);

enum Job {
    /// Run this pass of session `id` on its chain (boxed: a pass holds a SHA-256 state,
    /// and a forget is a number).
    Pass(u64, Box<HashWork>),
    /// Session `id` is over: drop its chain.
    Forget(u64),
}

/// The threads and the channels to and from them.
pub(crate) struct LoopHasher {
    to_worker: Option<mpsc::Sender<Job>>,
    from_worker: mpsc::Receiver<(u64, HashWork)>,
    thread: Option<JoinHandle<()>>,
    to_sealers: Option<mpsc::Sender<(u64, SealWork)>>,
    from_sealers: mpsc::Receiver<(u64, SealWork)>,
    sealers: Vec<JoinHandle<()>>,
}

impl LoopHasher {
    /// Starts the hashing thread and `sealers` sealing threads; they wake the loop of
    /// `registry`.
    pub(crate) fn start(registry: &Registry, sealers: usize) -> std::io::Result<Self> {
        let waker = Arc::new(Waker::new(registry, WAKE)?);
        let (to_sealers, batches) = mpsc::channel::<(u64, SealWork)>();
        let (sealed, from_sealers) = mpsc::channel();
        let batches = Arc::new(Mutex::new(batches));
        let mut sealing = Vec::new();
        for n in 0..sealers {
            let (batches, sealed, waker) = (batches.clone(), sealed.clone(), waker.clone());
            let thread = std::thread::Builder::new()
                .name(format!("ferry-seal-{n}"))
                .spawn(move || {
                    loop {
                        // Poisoned only if another sealer panicked: stop too.
                        let Ok(next) = batches.lock().map(|batches| batches.recv()) else {
                            return;
                        };
                        let Ok((id, mut work)) = next else { return };
                        work.run();
                        if sealed.send((id, work)).is_err() {
                            return;
                        }
                        let _ = waker.wake();
                    }
                });
            // A thread the system would not start: seal on the ones that did.
            match thread {
                Ok(thread) => sealing.push(thread),
                Err(_) => break,
            }
        }
        let (to_worker, jobs) = mpsc::channel::<Job>();
        let (done, from_worker) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ferry-hash".into())
            .spawn(move || {
                let mut chains: HashMap<u64, HashChain> = HashMap::new();
                for job in jobs {
                    match job {
                        Job::Pass(id, mut work) => {
                            work.run(chains.entry(id).or_default());
                            if done.send((id, *work)).is_err() {
                                return;
                            }
                            // A wake that fails leaves the pass for the loop's next turn.
                            let _ = waker.wake();
                        }
                        Job::Forget(id) => {
                            chains.remove(&id);
                        }
                    }
                }
            })?;
        Ok(LoopHasher {
            to_worker: Some(to_worker),
            from_worker,
            thread: Some(thread),
            to_sealers: (!sealing.is_empty()).then_some(to_sealers),
            from_sealers,
            sealers: sealing,
        })
    }

    /// Threads sealing records.
    pub(crate) fn sealers(&self) -> usize {
        self.sealers.len()
    }

    /// Gives the sealing threads the batches session `id` has waiting; true if there
    /// were any.
    pub(crate) fn dispatch_sealing<S: Session>(
        &self,
        id: u64,
        session: &mut S,
    ) -> Result<bool, DriverError> {
        let Some(to) = &self.to_sealers else {
            return Ok(false);
        };
        let mut any = false;
        while let Some(work) = session.poll_seal_work() {
            any = true;
            to.send((id, work))
                .map_err(|_| DriverError::Disk("the sealing threads stopped".into()))?;
        }
        Ok(any)
    }

    /// The batches that came back, each with its session's id.
    pub(crate) fn sealed(&self) -> impl Iterator<Item = (u64, SealWork)> + '_ {
        self.from_sealers.try_iter()
    }

    /// Gives the thread the passes session `id` has waiting; true if there were any.
    pub(crate) fn dispatch<S: Session>(
        &self,
        id: u64,
        session: &mut S,
    ) -> Result<bool, DriverError> {
        let mut any = false;
        while let Some(work) = session.poll_work() {
            any = true;
            self.to_worker
                .as_ref()
                .and_then(|to| to.send(Job::Pass(id, Box::new(work))).ok())
                .ok_or_else(|| DriverError::Disk("the hashing thread stopped".into()))?;
        }
        Ok(any)
    }

    /// The passes that came back, each with its session's id.
    pub(crate) fn back(&self) -> impl Iterator<Item = (u64, HashWork)> + '_ {
        self.from_worker.try_iter()
    }

    /// Session `id` is over.
    pub(crate) fn forget(&self, id: u64) {
        if let Some(to) = &self.to_worker {
            let _ = to.send(Job::Forget(id));
        }
    }
}

impl Drop for LoopHasher {
    fn drop(&mut self) {
        self.to_worker = None;
        self.to_sealers = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for thread in self.sealers.drain(..) {
            let _ = thread.join();
        }
    }
}
