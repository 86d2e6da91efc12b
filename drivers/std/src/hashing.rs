//! A session's work on threads of its own, beside the thread that drives the session:
//! its SHA-256 passes on one (see `ferry_core::transfer::HashWork`), half of either side's
//! work per byte; and a sender's records sealed, or a receiver's opened, on others
//! (`ferry_core::sealing`, `ferry_core::opening`), most of the rest.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use ferry_core::Timestamp;
use ferry_core::opening::OpenWork;
use ferry_core::sealing::SealWork;
use ferry_core::transfer::{HashChain, HashWork, Session};

use crate::error::DriverError;

/// The environment variable that decides where a session's SHA-256 passes run: `1` on
/// a thread of their own, `0` on the session's thread; unset, [`wanted`] decides.
pub const HASH_THREAD_VAR: &str = "FERRY_HASH_THREAD";

/// The environment variable that sets how many threads seal a sender's parts, or open a
/// receiver's records, beside its hashing thread (`0`: on the session's thread); unset,
/// [`aead_threads`] decides.
pub const AEAD_THREADS_VAR: &str = "FERRY_AEAD_THREADS";

/// The most threads [`AEAD_THREADS_VAR`] may ask for.
pub const MAX_AEAD_THREADS: usize = 8;

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

/// How many threads seal a sender's parts, or open a receiver's records, for a peer at
/// `peer` (with a hashing thread; none without one). One, where the driving thread, the
/// hashing thread and it each have a core: on a machine of four cores or more, or of
/// eight or more when the peer shares it. `core_cost` shows why one: with the AEAD off
/// the driving thread, the hashing thread (one file's SHA-256 is one sequence) bounds the
/// side, and one AEAD thread keeps up with it.
pub fn aead_threads(peer: Option<std::net::IpAddr>) -> usize {
    if let Ok(threads) = std::env::var(AEAD_THREADS_VAR)
        && let Ok(threads) = threads.trim().parse::<usize>()
    {
        return threads.min(MAX_AEAD_THREADS);
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let shared = peer.is_none_or(|ip| ip.is_loopback());
    usize::from(cores >= if shared { 8 } else { 4 })
}

/// What a worker gives back.
enum Done {
    Pass(HashWork),
    Sealed(SealWork),
    Opened(OpenWork),
}

/// Work for the AEAD threads.
enum Aead {
    Seal(SealWork),
    Open(OpenWork),
}

/// The threads that run one session's work: its passes on one, on the session's chain,
/// in the order the session gave them; its records' sealing, if asked, on others, in
/// any order.
pub struct Workers {
    to_hasher: Option<mpsc::Sender<HashWork>>,
    to_sealers: Option<mpsc::Sender<Aead>>,
    from_workers: mpsc::Receiver<Done>,
    /// Work given to the threads and not yet given back to the session.
    out: usize,
    sealers: usize,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts the threads and hands `session`'s hashing to them, if [`wanted`] for a peer
    /// at `peer`, and its sealing to `sealers` more (a sender's; see [`aead_threads`]);
    /// `None` (the session does both inline) otherwise, and where the driver cannot wait
    /// on a socket and the threads at once (Windows).
    pub fn start<S: Session>(
        session: &mut S,
        peer: Option<std::net::IpAddr>,
        sealers: usize,
        sends_parts: bool,
    ) -> Option<Self> {
        if cfg!(windows) || !wanted(peer) {
            return None;
        }
        let (to_hasher, passes) = mpsc::channel::<HashWork>();
        let (done, from_workers) = mpsc::channel();
        let hash_done = done.clone();
        let hasher = std::thread::Builder::new()
            .name("ferry-hash".into())
            .spawn(move || {
                let mut chain = HashChain::new();
                for mut work in passes {
                    work.run(&mut chain);
                    if hash_done.send(Done::Pass(work)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        let mut threads = vec![hasher];
        let (to_sealers, batches) = mpsc::channel::<Aead>();
        let batches = Arc::new(Mutex::new(batches));
        for n in 0..sealers {
            let (batches, done) = (batches.clone(), done.clone());
            let sealer = std::thread::Builder::new()
                .name(format!("ferry-seal-{n}"))
                .spawn(move || {
                    loop {
                        // Poisoned only if another sealer panicked: stop too.
                        let Ok(next) = batches.lock().map(|batches| batches.recv()) else {
                            return;
                        };
                        let done_now = match next {
                            Ok(Aead::Seal(mut work)) => {
                                work.run();
                                Done::Sealed(work)
                            }
                            Ok(Aead::Open(mut work)) => {
                                work.run();
                                Done::Opened(work)
                            }
                            Err(_) => return,
                        };
                        if done.send(done_now).is_err() {
                            return;
                        }
                    }
                });
            // A thread the system would not start: seal on the ones that did.
            match sealer {
                Ok(sealer) => threads.push(sealer),
                Err(_) => break,
            }
        }
        let sealers = threads.len() - 1;
        session.offload_hashing();
        if sealers > 0 {
            if sends_parts {
                session.offload_sealing();
            } else {
                session.offload_opening();
            }
        }
        Some(Workers {
            to_hasher: Some(to_hasher),
            to_sealers: (sealers > 0).then_some(to_sealers),
            from_workers,
            out: 0,
            sealers,
            threads,
        })
    }

    /// Threads sealing the session's records.
    pub fn sealers(&self) -> usize {
        self.sealers
    }

    /// True while work is with the threads.
    pub fn busy(&self) -> bool {
        self.out > 0
    }

    /// Gives the threads the work `session` has waiting; true if there was any.
    pub fn dispatch<S: Session>(&mut self, session: &mut S) -> Result<bool, DriverError> {
        let mut any = false;
        while let Some(work) = session.poll_work() {
            any = true;
            self.out += 1;
            self.to_hasher
                .as_ref()
                .and_then(|to| to.send(work).ok())
                .ok_or_else(gone)?;
        }
        if let Some(to) = &self.to_sealers {
            while let Some(work) = session.poll_seal_work() {
                any = true;
                self.out += 1;
                to.send(Aead::Seal(work)).map_err(|_| gone())?;
            }
            while let Some(work) = session.poll_open_work() {
                any = true;
                self.out += 1;
                to.send(Aead::Open(work)).map_err(|_| gone())?;
            }
        }
        Ok(any)
    }

    /// Gives `session` the work the threads have done (waiting for one piece if `wait`
    /// and one is out); true if any came back.
    pub fn collect<S: Session>(
        &mut self,
        session: &mut S,
        now: Timestamp,
        wait: bool,
    ) -> Result<bool, DriverError> {
        let mut any = false;
        while self.out > 0 {
            let done = if wait && !any {
                self.from_workers.recv().map_err(|_| gone())?
            } else {
                match self.from_workers.try_recv() {
                    Ok(done) => done,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return Err(gone()),
                }
            };
            self.out -= 1;
            any = true;
            match done {
                Done::Pass(work) => session.work_done(now, work)?,
                Done::Sealed(work) => session.seal_done(work)?,
                Done::Opened(work) => session.open_done(work)?,
            }
        }
        Ok(any)
    }

    /// Seals whatever the session has composed for the threads, waiting for all of it:
    /// its last words (a close, a cancel) may sit behind parts being sealed. Passes that
    /// come back meanwhile are given back too, but a session that has failed refuses
    /// them, and that is no reason to stop: only a batch refused, or the threads gone,
    /// ends the wait.
    pub fn finish_sealing<S: Session>(&mut self, session: &mut S, now: Timestamp) {
        while session.sealing_pending() {
            if self.dispatch(session).is_err() || !self.busy() {
                return;
            }
            let Ok(done) = self.from_workers.recv() else {
                return;
            };
            self.out -= 1;
            match done {
                Done::Pass(work) => {
                    let _ = session.work_done(now, work);
                }
                Done::Sealed(work) => {
                    if session.seal_done(work).is_err() {
                        return;
                    }
                }
                // A receiver's last words wait for nothing it reads.
                Done::Opened(_) => {}
            }
        }
    }
}

fn gone() -> DriverError {
    DriverError::Disk("a worker thread stopped".into())
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.to_hasher = None;
        self.to_sealers = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
