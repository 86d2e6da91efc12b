//! The loop's hashing thread: the sessions that hand their SHA-256 passes out
//! (`ferry_std::hashing::wanted` decides which) have them run here, each on a chain of
//! its own, and the loop is woken as each pass comes back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

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

/// The thread and the channels to and from it.
pub(crate) struct LoopHasher {
    to_worker: Option<mpsc::Sender<Job>>,
    from_worker: mpsc::Receiver<(u64, HashWork)>,
    thread: Option<JoinHandle<()>>,
}

impl LoopHasher {
    /// Starts the thread; it wakes the loop of `registry`.
    pub(crate) fn start(registry: &Registry) -> std::io::Result<Self> {
        let waker = Arc::new(Waker::new(registry, WAKE)?);
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
        })
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
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
