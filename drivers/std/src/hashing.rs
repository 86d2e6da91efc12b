//! A session's SHA-256 passes on a thread of their own, beside the thread that drives
//! the session (see `ferry_core::transfer::HashWork`): half of either side's work per
//! byte moves to another core.

use std::sync::mpsc;
use std::thread::JoinHandle;

use ferry_core::Timestamp;
use ferry_core::transfer::{HashChain, HashWork, Session};

use crate::error::DriverError;

/// The environment variable that decides where a session's SHA-256 passes run: `1` on
/// a thread of their own, `0` on the session's thread; unset, [`wanted`] decides.
pub const HASH_THREAD_VAR: &str = "FERRY_HASH_THREAD";

/// Whether a session whose peer is at `peer` gets a hashing thread: yes, unless both
/// ends share this machine (a loopback peer) and it has fewer than four cores. There the
/// two processes' own threads already keep its cores busy, and two more threads only
/// add switching between them: on this project's two-core machine a loopback transfer
/// was no faster with them (0.93-1.00 of the default's speed) and took more CPU (README,
/// "Benchmarks").
pub fn wanted(peer: Option<std::net::IpAddr>) -> bool {
    match std::env::var(HASH_THREAD_VAR).as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let shared = peer.is_none_or(|ip| ip.is_loopback());
    cores >= 2 && !(shared && cores < 4)
}

/// The thread that runs one session's passes, on the session's chain, in the order the
/// session gave them.
pub struct HashThread {
    to_worker: Option<mpsc::Sender<HashWork>>,
    from_worker: mpsc::Receiver<HashWork>,
    /// Passes given to the thread and not yet given back to the session.
    out: usize,
    thread: Option<JoinHandle<()>>,
}

impl HashThread {
    /// Starts the thread and hands `session`'s hashing to it, if [`wanted`] for a peer
    /// at `peer`; `None` (the session hashes inline) otherwise, and where the driver
    /// cannot wait on a socket and the thread at once (Windows).
    pub fn start<S: Session>(session: &mut S, peer: Option<std::net::IpAddr>) -> Option<Self> {
        if cfg!(windows) || !wanted(peer) {
            return None;
        }
        let (to_worker, passes) = mpsc::channel::<HashWork>();
        let (done, from_worker) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ferry-hash".into())
            .spawn(move || {
                let mut chain = HashChain::new();
                for mut work in passes {
                    work.run(&mut chain);
                    if done.send(work).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        session.offload_hashing();
        Some(HashThread {
            to_worker: Some(to_worker),
            from_worker,
            out: 0,
            thread: Some(thread),
        })
    }

    /// True while a pass is with the thread.
    pub fn busy(&self) -> bool {
        self.out > 0
    }

    /// Gives the thread the passes `session` has waiting; true if there were any.
    pub fn dispatch<S: Session>(&mut self, session: &mut S) -> Result<bool, DriverError> {
        let mut any = false;
        while let Some(work) = session.poll_work() {
            any = true;
            self.out += 1;
            self.to_worker
                .as_ref()
                .and_then(|to| to.send(work).ok())
                .ok_or_else(gone)?;
        }
        Ok(any)
    }

    /// Gives `session` the passes the thread has done (waiting for one if `wait` and one
    /// is out); true if any came back.
    pub fn collect<S: Session>(
        &mut self,
        session: &mut S,
        now: Timestamp,
        wait: bool,
    ) -> Result<bool, DriverError> {
        let mut any = false;
        while self.out > 0 {
            let work = if wait && !any {
                self.from_worker.recv().map_err(|_| gone())?
            } else {
                match self.from_worker.try_recv() {
                    Ok(work) => work,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return Err(gone()),
                }
            };
            self.out -= 1;
            any = true;
            session.work_done(now, work)?;
        }
        Ok(any)
    }
}

fn gone() -> DriverError {
    DriverError::Disk("the hashing thread stopped".into())
}

impl Drop for HashThread {
    fn drop(&mut self) {
        self.to_worker = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
