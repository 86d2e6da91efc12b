//! A session's work on threads of its own, beside the thread that drives the session:
//! its SHA-256 passes on one (see `ferry_core::transfer::HashWork`), half of either side's
//! work per byte; and a sender's records sealed, or a receiver's opened, on others
//! (`ferry_core::sealing`, `ferry_core::opening`), most of the rest.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, mpsc};
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
/// receiver's records, beside its hashing thread (`0`: on the session's thread;
/// [`SHARED`]: none of their own, but handed to the hashing thread and the driving one,
/// see [`Workers`]); unset, [`aead_threads`] decides.
pub const AEAD_THREADS_VAR: &str = "FERRY_AEAD_THREADS";

/// The value of [`AEAD_THREADS_VAR`] that asks for no AEAD thread of their own, the
/// records shared by the hashing thread and the driving one (what a machine of two or
/// three cores does by default with a peer elsewhere).
pub const SHARED: &str = "shared";

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
/// side, and one AEAD thread keeps up with it. With none, the records still go to the
/// threads unless [`records_shared`] says no: see [`Workers`].
pub fn aead_threads(peer: Option<std::net::IpAddr>) -> usize {
    if let Ok(threads) = std::env::var(AEAD_THREADS_VAR) {
        if threads.trim() == SHARED {
            return 0;
        }
        if let Ok(threads) = threads.trim().parse::<usize>() {
            return threads.min(MAX_AEAD_THREADS);
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let shared = peer.is_none_or(|ip| ip.is_loopback());
    usize::from(cores >= if shared { 8 } else { 4 })
}

/// Whether a session with a hashing thread hands its records (a sender's sealing, a
/// receiver's opening) to its threads even with no AEAD thread of their own: yes, unless
/// [`AEAD_THREADS_VAR`] is `0`, which keeps them on the driving thread.
pub fn records_shared() -> bool {
    std::env::var(AEAD_THREADS_VAR).map_or(true, |threads| threads.trim().parse() != Ok(0))
}

/// What a worker gives back.
enum Done {
    Pass(HashWork),
    Sealed(SealWork),
    Opened(OpenWork),
    /// A worker panicked: what it held never comes back (see [`PanicNotice`]).
    Lost,
}

/// Held by every worker thread: if the thread panics, the driver hears of it rather than
/// wait forever for the work it held (the other threads' senders keep the channel open).
struct PanicNotice(mpsc::Sender<Done>);

impl Drop for PanicNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(Done::Lost);
        }
    }
}

/// A record's work: a batch to seal, a record to open.
enum Aead {
    Seal(SealWork),
    Open(OpenWork),
}

impl Aead {
    fn run(self) -> Done {
        match self {
            Aead::Seal(mut work) => {
                work.run();
                Done::Sealed(work)
            }
            Aead::Open(mut work) => {
                work.run();
                Done::Opened(work)
            }
        }
    }
}

/// What a thread takes from the queue.
enum Job {
    Pass(HashWork),
    Aead(Aead),
}

/// Work waiting for the threads: passes for the hashing thread alone (they run on its
/// chain, in the order the session gave them), records for whichever thread is free.
#[derive(Default)]
struct Queue {
    passes: VecDeque<HashWork>,
    records: VecDeque<Aead>,
    /// The hashing thread takes records too (there is no other thread for them).
    hasher_takes_records: bool,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    /// The next work for a thread, waiting for it: passes first for the hashing thread
    /// (`hasher`), records for the others and, if it takes them, for it; `None` once
    /// closed.
    fn next(&self, hasher: bool) -> Option<Job> {
        // Poisoned only if a thread panicked holding it: stop too.
        let mut queue = self.queue.lock().ok()?;
        loop {
            if queue.closed {
                return None;
            }
            if hasher && let Some(work) = queue.passes.pop_front() {
                return Some(Job::Pass(work));
            }
            if (!hasher || queue.hasher_takes_records)
                && let Some(work) = queue.records.pop_front()
            {
                return Some(Job::Aead(work));
            }
            queue = self.ready.wait(queue).ok()?;
        }
    }

    /// The oldest record waiting, for the driving thread to run while it would wait.
    fn take_record(&self) -> Option<Aead> {
        self.queue.lock().ok()?.records.pop_front()
    }

    fn close(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.closed = true;
        }
        self.ready.notify_all();
    }
}

/// The threads that run one session's work: its passes on one, on the session's chain,
/// in the order the session gave them; its records' sealing or opening, if handed out,
/// on others in any order, and where there are none, on the hashing thread between its
/// passes. The driving thread runs records too whenever it would wait for the threads,
/// so that on two cores neither is idle while the other has work: a side's SHA-256 pass
/// is one sequence, and the rest of its work fills the time around it. `core_cost`
/// against a null peer, two runs with two threads: the sender 1.92-2.04x one thread, its
/// two threads equally busy, against 1.67-1.93x with its records on the driving thread;
/// the receiver, whose driving thread kept up already, 1.76-1.79x against 1.77-1.80x
/// (the records offloaded cost a copy more).
pub struct Workers {
    shared: Arc<Shared>,
    /// The session's records are handed out.
    records: bool,
    from_workers: mpsc::Receiver<Done>,
    /// Work given to the threads and not yet given back to the session.
    out: usize,
    sealers: usize,
    threads: Vec<JoinHandle<()>>,
    /// A worker panicked: what it held never comes back, so nothing is waited for again.
    lost: bool,
}

impl Workers {
    /// Starts the threads and hands `session`'s hashing to them, if [`wanted`] for a peer
    /// at `peer`, and its records, if `shared` ([`records_shared`]) or to `sealers` threads
    /// of their own (see [`aead_threads`]); `None` (the session does both inline)
    /// otherwise, and where the driver cannot wait on a socket and the threads at once
    /// (Windows).
    pub fn start<S: Session>(
        session: &mut S,
        peer: Option<std::net::IpAddr>,
        sealers: usize,
        shared: bool,
        sends_parts: bool,
    ) -> Option<Self> {
        if cfg!(windows) || !wanted(peer) {
            return None;
        }
        let queue = Arc::new(Shared::default());
        let (done, from_workers) = mpsc::channel();
        let (hash_queue, hash_done) = (queue.clone(), done.clone());
        let hasher = std::thread::Builder::new()
            .name("ferry-hash".into())
            .spawn(move || {
                let _notice = PanicNotice(hash_done.clone());
                let mut chain = HashChain::new();
                while let Some(job) = hash_queue.next(true) {
                    let done_now = match job {
                        Job::Pass(mut work) => {
                            work.run(&mut chain);
                            Done::Pass(work)
                        }
                        Job::Aead(work) => work.run(),
                    };
                    if hash_done.send(done_now).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        let mut threads = vec![hasher];
        for n in 0..sealers {
            let (queue, done) = (queue.clone(), done.clone());
            let sealer = std::thread::Builder::new()
                .name(format!("ferry-seal-{n}"))
                .spawn(move || {
                    let _notice = PanicNotice(done.clone());
                    while let Some(Job::Aead(work)) = queue.next(false) {
                        if done.send(work.run()).is_err() {
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
        // With no threads of their own (none asked for, or none would start), the
        // records fill the hashing thread's gaps.
        if let Ok(mut queue) = queue.queue.lock() {
            queue.hasher_takes_records = shared && sealers == 0;
        }
        session.offload_hashing();
        let records = sealers > 0 || shared;
        if records {
            if sends_parts {
                session.offload_sealing();
            } else {
                session.offload_opening();
            }
        }
        Some(Workers {
            shared: queue,
            records,
            from_workers,
            out: 0,
            sealers,
            threads,
            lost: false,
        })
    }

    /// Threads of their own sealing the session's records.
    pub fn sealers(&self) -> usize {
        self.sealers
    }

    /// True if the session's records are sealed or opened off its thread (partly, at
    /// least: see [`Workers`]).
    pub fn takes_records(&self) -> bool {
        self.records
    }

    /// True while work is with the threads.
    pub fn busy(&self) -> bool {
        self.out > 0
    }

    /// Gives the threads the work `session` has waiting; true if there was any.
    pub fn dispatch<S: Session>(&mut self, session: &mut S) -> Result<bool, DriverError> {
        let before = self.out;
        {
            let mut queue = self.shared.queue.lock().map_err(|_| gone())?;
            while let Some(work) = session.poll_work() {
                self.out += 1;
                queue.passes.push_back(work);
            }
            if self.records {
                while let Some(work) = session.poll_seal_work() {
                    self.out += 1;
                    queue.records.push_back(Aead::Seal(work));
                }
                while let Some(work) = session.poll_open_work() {
                    self.out += 1;
                    queue.records.push_back(Aead::Open(work));
                }
            }
        }
        let any = self.out > before;
        if any {
            self.shared.ready.notify_all();
        }
        Ok(any)
    }

    /// The next piece of work done: one the threads gave back, or, if `wait` and none has
    /// come back, a record still waiting for them run here, or else the next one back.
    fn next_done(&mut self, wait: bool) -> Result<Option<Done>, DriverError> {
        if self.lost {
            return Err(gone());
        }
        match self.from_workers.try_recv() {
            Ok(Done::Lost) => return Err(self.lose()),
            Ok(done) => return Ok(Some(done)),
            Err(mpsc::TryRecvError::Disconnected) => return Err(gone()),
            Err(mpsc::TryRecvError::Empty) if !wait => return Ok(None),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if let Some(record) = self.shared.take_record() {
            return Ok(Some(record.run()));
        }
        match self.from_workers.recv() {
            Ok(Done::Lost) => Err(self.lose()),
            Err(_) => Err(gone()),
            Ok(done) => Ok(Some(done)),
        }
    }

    /// A worker panicked: every later wait fails at once (the work it held is counted as
    /// out forever), and the other threads stop.
    fn lose(&mut self) -> DriverError {
        self.lost = true;
        self.shared.close();
        gone()
    }

    /// Gives `session` the work the threads have done (waiting for one piece if `wait`
    /// and one is out, running records meanwhile); true if any came back.
    pub fn collect<S: Session>(
        &mut self,
        session: &mut S,
        now: Timestamp,
        wait: bool,
    ) -> Result<bool, DriverError> {
        let mut any = false;
        while self.out > 0 {
            let Some(done) = self.next_done(wait && !any)? else {
                break;
            };
            self.out -= 1;
            any = true;
            match done {
                Done::Pass(work) => session.work_done(now, work)?,
                Done::Sealed(work) => session.seal_done(work)?,
                Done::Opened(work) => session.open_done(work)?,
                // `next_done` never gives it.
                Done::Lost => return Err(gone()),
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
            let Ok(Some(done)) = self.next_done(true) else {
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
                Done::Lost => return,
            }
        }
    }
}

fn gone() -> DriverError {
    DriverError::Disk("a worker thread stopped unexpectedly (a bug in ferry)".into())
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.close();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_panics_is_heard_of_while_others_hold_the_channel_open() {
        let (done, from_workers) = mpsc::channel();
        let other = done.clone();
        let worker = std::thread::spawn(move || {
            let _notice = PanicNotice(done);
            panic!("a worker's bug");
        });
        assert!(worker.join().is_err());
        assert!(matches!(from_workers.recv(), Ok(Done::Lost)));
        // A worker that ends without panicking says nothing.
        let quiet = std::thread::spawn(move || drop(PanicNotice(other)));
        quiet.join().unwrap();
        assert!(from_workers.try_recv().is_err());
    }

    #[test]
    fn after_a_worker_is_lost_no_wait_blocks_again() {
        // Two pieces of work out, one with a worker that panicked; another worker (this
        // test's `alive`) keeps the channel open and gives nothing back.
        let (alive, from_workers) = mpsc::channel();
        let mut workers = Workers {
            shared: Arc::new(Shared::default()),
            records: false,
            from_workers,
            out: 2,
            sealers: 1,
            threads: Vec::new(),
            lost: false,
        };
        alive.send(Done::Lost).unwrap();
        assert!(workers.next_done(true).is_err());
        // A later wait (the driver's last words, `finish_sealing`) fails at once too,
        // where it would wait forever for the lost work; on a thread, so that a
        // regression fails here instead of hanging the suite.
        let (answer, answered) = mpsc::channel();
        std::thread::spawn(move || {
            let again = workers.next_done(true).is_err();
            let _ = answer.send((again, workers.shared.queue.lock().unwrap().closed));
        });
        let (again, closed) = answered
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a wait after the loss blocked");
        assert!(
            again && closed,
            "the loss did not stick, or the other threads go on"
        );
        drop(alive);
    }
}
