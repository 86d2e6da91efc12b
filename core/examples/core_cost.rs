//! The core's cost per byte on each side of a transfer, next to the cost of the hashing
//! and encryption passes it must make, all measured in the same run.
//!
//!     cargo run --release -p ferry-core --example core_cost [MiB] [threads]
//!
//! Each side must make one SHA-256 pass (the file's digest, from which the segment hash
//! and proof are built, PROTOCOL.md §6.3) and one ChaCha20Poly1305 pass. The ratio is the core's measured time over
//! the time of those passes alone; the target is at most 1.3.
//!
//! Then each side alone against a null peer: one transfer's two byte streams are
//! recorded, and each side is run again on its own, fed the other's recorded bytes at
//! the same points (the core is deterministic: same seed, same inputs, same session), so
//! its throughput is measured with the peer costing nothing. This is the measure by which
//! work spread over threads is judged: each side runs so on one thread, and again with its
//! SHA-256 passes on a second one (`Session::offload_hashing`), its records sealed or
//! opened on the first, or shared by both (`Session::offload_sealing`,
//! `Session::offload_opening`: the hashing thread takes them between its passes, the
//! driving one while it would wait), and with them on a third and on up to `threads` in
//! all (the machine's cores unless given); each ratio to one thread is printed, and each
//! thread's CPU per byte.

use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::ops::Range;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use ferry_core::opening::OpenWork;
use ferry_core::sealing::SealWork;
use ferry_core::transfer::{
    DiskError, EntryKind, HashChain, HashWork, Manifest, ManifestEntry, Output, ReceiverSession,
    SenderSession, Session, Storage, Target, TransferConfig, TransferEvent,
};
use ferry_core::{Entropy, SeededEntropy, Timestamp, Token};
use sha2::{Digest, Sha256};

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Nanoseconds per byte of one SHA-256 pass over 1 MiB chunks.
fn sha256_cost(data: &[u8]) -> f64 {
    median(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                for chunk in data.chunks(1 << 20) {
                    std::hint::black_box(Sha256::digest(chunk));
                }
                start.elapsed().as_nanos() as f64 / data.len() as f64
            })
            .collect(),
    )
}

/// Nanoseconds per byte of sealing 64 KiB records with ChaCha20Poly1305. Without
/// associated data the crate keeps Poly1305 on its aligned four-block path, as the
/// records' own AEAD does with its header (`RecordCipher` in src/crypto.rs); a 4-byte
/// header given to the crate would measure its slower cached path.
fn aead_cost(data: &mut [u8]) -> f64 {
    let aead = ChaCha20Poly1305::new(&Key::from([7u8; 32]));
    median(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                for (i, chunk) in data.chunks_mut(64 << 10).enumerate() {
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
                    let tag = aead.encrypt_inout_detached(&Nonce::from(nonce), &[], chunk.into());
                    std::hint::black_box(tag.ok());
                }
                start.elapsed().as_nanos() as f64 / data.len() as f64
            })
            .collect(),
    )
}

/// The sender's file: copies of one block, as from the page cache. Its own time is kept
/// apart from the session's.
struct PageCache<'a> {
    block: &'a [u8],
    spent: Duration,
}

impl Storage for PageCache<'_> {
    fn read(&mut self, _: Target<'_>, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        let started = Instant::now();
        let block = self.block;
        let start = (offset as usize) % block.len();
        for (i, chunk) in buf.chunks_mut(block.len()).enumerate() {
            let from = (start + i * block.len()) % block.len();
            let n = chunk.len().min(block.len() - from);
            chunk[..n].copy_from_slice(&block[from..from + n]);
            let rest = chunk.len() - n;
            chunk[n..].copy_from_slice(&block[..rest]);
        }
        self.spent += started.elapsed();
        Ok(buf.len())
    }
}

/// The receiver's disk: takes every write and keeps nothing.
struct Discard;

impl Storage for Discard {
    fn read(&mut self, _: Target<'_>, _: u64, _: &mut [u8]) -> Result<usize, DiskError> {
        Ok(0)
    }
    fn write(&mut self, _: Target<'_>, _: u64, data: &[u8]) -> Result<(), DiskError> {
        std::hint::black_box(data.len());
        Ok(())
    }
    fn commit(&mut self, _: Target<'_>) -> Result<(), DiskError> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Range<usize>, _: &ReceiverSession) -> Result<(), DiskError> {
        Ok(())
    }
}

/// Carries out the receiver's outputs; returns the time it took (its disk does nothing).
fn receiver_outputs(receiver: &mut ReceiverSession, finished: &mut bool) -> Duration {
    let now = Timestamp::ZERO;
    let start = Instant::now();
    loop {
        match receiver.poll_output() {
            Output::Timeout(_) => return start.elapsed(),
            Output::Disk(command) => receiver
                .carry_out(now, command, &mut Discard)
                .expect("write"),
            Output::Event(TransferEvent::BatchOffered { .. }) => {
                receiver.accept(now, &[]).expect("accept")
            }
            Output::Event(event) => *finished |= matches!(event, TransferEvent::Finished { .. }),
        }
    }
}

/// One transfer's two byte streams, as each side was fed them: per step of the loop in
/// [`transfer_cost`], the sender's bytes for the receiver and the receiver's for the
/// sender.
#[derive(Default)]
struct Tape {
    steps: Vec<(Vec<u8>, Vec<u8>)>,
    /// Per step, the SHA-256 passes the recorded sender had taken back by its end: the
    /// segments it may have advertised, and so what the receiver's answers may ask for.
    passes: Vec<usize>,
}

impl Tape {
    fn bytes(&self) -> usize {
        self.steps.iter().map(|(a, b)| a.len() + b.len()).sum()
    }
}

/// The two sessions of a transfer of one `size`-byte file, made from one seed as every
/// run makes them.
fn sessions(size: u64) -> (SenderSession, ReceiverSession) {
    let config = TransferConfig::default();
    let entries = vec![ManifestEntry {
        path: "big.bin".into(),
        kind: EntryKind::File,
        size,
        mode: 0o644,
        mtime_ns: 0,
        sha256: None,
    }];
    let manifest = Manifest::from_entries(&entries, &Default::default()).expect("manifest");
    let mut entropy = SeededEntropy::new(1);
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    let sender = SenderSession::new(config.clone(), token.clone(), manifest, &mut entropy, now)
        .expect("sender");
    let receiver = ReceiverSession::new(config, token, &mut entropy, now).expect("receiver");
    (sender, receiver)
}

/// SHA-256 passes run on the driving thread, each taken back one step after the sender
/// handed it out: as a sender whose passes run on a thread of their own gets them back
/// while it seals the next step's parts. The recorded receiver's answers then ask only
/// for what such a sender has advertised by then, so a replay with a real thread waits
/// for a pass only where any sender would.
#[derive(Default)]
struct PassesOneStepLate {
    chain: HashChain,
    held: Vec<HashWork>,
}

impl PassesOneStepLate {
    /// Runs the held passes and gives them back: the number run.
    fn give_back(&mut self, sender: &mut SenderSession) -> usize {
        let ran = self.held.len();
        for mut work in self.held.drain(..) {
            work.run(&mut self.chain);
            sender.work_done(Timestamp::ZERO, work).expect("work done");
        }
        ran
    }
}

/// The sender's outputs carried out (reads from `source`), and with `passes`, the
/// passes it handed out at the last step given back first, its new ones held for the
/// next (unless it has nothing to send without them): the sender that the recorded
/// streams come from, and the one thread that replays them. Returns the passes run.
fn sender_outputs_here(
    sender: &mut SenderSession,
    source: &mut PageCache<'_>,
    mut passes: Option<&mut PassesOneStepLate>,
) -> usize {
    let mut ran = passes.as_deref_mut().map_or(0, |p| p.give_back(sender));
    loop {
        loop {
            match sender.poll_output() {
                Output::Timeout(_) => break,
                Output::Disk(command) => sender
                    .carry_out(Timestamp::ZERO, command, source)
                    .expect("read"),
                Output::Event(_) => {}
            }
        }
        let Some(passes) = passes.as_deref_mut() else {
            return ran;
        };
        while let Some(work) = sender.poll_work() {
            passes.held.push(work);
        }
        if passes.held.is_empty() || !sender.poll_transmit().is_empty() {
            return ran;
        }
        // Nothing to send until they are back: a threaded sender waits for them here too.
        ran += passes.give_back(sender);
    }
}

/// Time spent inside each session while moving `size` bytes, in ns per byte; with a
/// `tape`, the two streams are recorded on it, the sender's SHA-256 passes handed out
/// and run on this thread one step late ([`PassesOneStepLate`]).
fn transfer_cost(size: u64, block: &[u8], mut tape: Option<&mut Tape>) -> (f64, f64) {
    let now = Timestamp::ZERO;
    let (mut sender, mut receiver) = sessions(size);
    let (mut in_sender, mut in_receiver) = (Duration::ZERO, Duration::ZERO);
    let mut source = PageCache {
        block,
        spent: Duration::ZERO,
    };
    let mut wire = vec![0u8; 4 << 20];
    let mut finished = false;
    let mut passes_late = tape.is_some().then(|| {
        sender.offload_hashing();
        PassesOneStepLate::default()
    });
    let mut passes = 0;
    macro_rules! timed {
        ($clock:ident, $e:expr) => {{
            let start = Instant::now();
            let result = $e;
            $clock += start.elapsed();
            result
        }};
    }
    while !finished || !sender.is_finished() {
        passes += timed!(
            in_sender,
            sender_outputs_here(&mut sender, &mut source, passes_late.as_mut())
        );
        in_receiver += receiver_outputs(&mut receiver, &mut finished);
        let n = {
            let pending = sender.poll_transmit();
            let n = pending.len().min(wire.len());
            wire[..n].copy_from_slice(&pending[..n]);
            n
        };
        timed!(in_sender, sender.advance_transmit(n));
        if let Some(tape) = tape.as_deref_mut() {
            tape.steps.push((wire[..n].to_vec(), Vec::new()));
            tape.passes.push(passes);
        }
        let mut at = 0;
        while at < n {
            at += timed!(in_receiver, receiver.handle_input(now, &wire[at..n]))
                .expect("receiver input");
            in_receiver += receiver_outputs(&mut receiver, &mut finished);
        }
        let m = {
            let pending = receiver.poll_transmit();
            wire[..pending.len()].copy_from_slice(pending);
            pending.len()
        };
        timed!(in_receiver, receiver.advance_transmit(m));
        if let Some((_, to_sender)) = tape.as_deref_mut().and_then(|t| t.steps.last_mut()) {
            *to_sender = wire[..m].to_vec();
        }
        let mut at = 0;
        while at < m {
            at += timed!(in_sender, sender.handle_input(now, &wire[at..m])).expect("sender input");
        }
    }
    // The copies from the page cache are the driver's, not the session's.
    in_sender = in_sender.saturating_sub(source.spent);
    (
        in_sender.as_nanos() as f64 / size as f64,
        in_receiver.as_nanos() as f64 / size as f64,
    )
}

/// The receiver alone, fed the sender's recorded bytes at the points it took them:
/// ns per byte. Panics if it does not go as it went with its peer.
fn receiver_alone(size: u64, tape: &Tape) -> f64 {
    let (_, mut receiver) = sessions(size);
    let now = Timestamp::ZERO;
    let mut finished = false;
    let start = Instant::now();
    for (to_receiver, to_sender) in &tape.steps {
        receiver_outputs(&mut receiver, &mut finished);
        let mut at = 0;
        while at < to_receiver.len() {
            at += receiver
                .handle_input(now, &to_receiver[at..])
                .expect("receiver input");
            receiver_outputs(&mut receiver, &mut finished);
        }
        let sent = receiver.poll_transmit();
        assert!(
            sent == &to_sender[..],
            "the receiver alone went another way than with its peer"
        );
        let m = sent.len();
        receiver.advance_transmit(m);
    }
    assert!(finished, "the receiver alone did not finish");
    start.elapsed().as_nanos() as f64 / size as f64
}

/// CPU time this thread has run, in ns (Linux; 0 where the system does not say).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time a side's threads spent, in ns per byte: what bounds it where each thread has
/// a core of its own (the AEAD threads share their work).
#[derive(Clone, Copy, Default)]
struct ThreadCpu {
    driving: f64,
    hashing: f64,
    aead: f64,
}

/// What a worker thread gives back.
enum Done {
    Hash(HashWork),
    Seal(SealWork),
    Open(OpenWork),
}

/// Work for the AEAD threads.
enum Aead {
    Seal(SealWork),
    Open(OpenWork),
}

impl Aead {
    fn run(self) -> Done {
        match self {
            Aead::Seal(mut work) => {
                work.run();
                Done::Seal(work)
            }
            Aead::Open(mut work) => {
                work.run();
                Done::Open(work)
            }
        }
    }
}

/// Work waiting for the threads: passes for the hashing thread alone (they run on its
/// chain, in order), records for whichever thread is free.
#[derive(Default)]
struct Queue {
    passes: VecDeque<HashWork>,
    aead: VecDeque<Aead>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// Threads that run a session's work: its SHA-256 passes on one
/// ([`Session::offload_hashing`]), its records' sealing or opening
/// ([`Session::offload_sealing`], [`Session::offload_opening`]) on `sealers` more and, if
/// `shared`, on the driving thread while it would wait, and on the hashing thread between
/// its passes where no other thread is there for them.
struct Workers {
    shared: Arc<Shared>,
    /// The session's records go to the threads.
    aead: bool,
    /// The driving thread runs records waiting for the threads while it would wait.
    helps: bool,
    from_workers: mpsc::Receiver<Done>,
    out: usize,
    /// Passes given back to the session so far.
    taken: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// CPU ns the hashing thread and the sealing threads spent, once they end.
    hash_cpu: Arc<AtomicU64>,
    seal_cpu: Arc<AtomicU64>,
}

impl Workers {
    /// A hashing thread and `sealers` sealing threads (see above for `shared`).
    fn new(sealers: usize, shared: bool) -> Self {
        let hasher_seals = shared && sealers == 0;
        let queues = Arc::new(Shared::default());
        let (done, from_workers) = mpsc::channel();
        let hash_cpu = Arc::new(AtomicU64::new(0));
        let seal_cpu = Arc::new(AtomicU64::new(0));
        let (cpu, queue, hash_done) = (hash_cpu.clone(), queues.clone(), done.clone());
        let mut threads = vec![std::thread::spawn(move || {
            let mut chain = HashChain::new();
            while let Some(next) = queue.next(true, hasher_seals) {
                let done_now = match next {
                    Job::Pass(mut work) => {
                        work.run(&mut chain);
                        Done::Hash(work)
                    }
                    Job::Aead(work) => work.run(),
                };
                if hash_done.send(done_now).is_err() {
                    break;
                }
            }
            cpu.fetch_add(thread_cpu_ns(), Ordering::Relaxed);
        })];
        for _ in 0..sealers {
            let (queue, done, cpu) = (queues.clone(), done.clone(), seal_cpu.clone());
            threads.push(std::thread::spawn(move || {
                while let Some(Job::Aead(work)) = queue.next(false, true) {
                    if done.send(work.run()).is_err() {
                        break;
                    }
                }
                cpu.fetch_add(thread_cpu_ns(), Ordering::Relaxed);
            }));
        }
        Workers {
            shared: queues,
            aead: sealers > 0 || shared,
            helps: shared,
            from_workers,
            out: 0,
            taken: 0,
            threads,
            hash_cpu,
            seal_cpu,
        }
    }

    /// Hands the session's waiting work to the threads: true if there was any.
    fn dispatch(&mut self, session: &mut impl Session) -> bool {
        let mut queue = self.shared.queue.lock().expect("queue");
        let before = self.out;
        while let Some(work) = session.poll_work() {
            self.out += 1;
            queue.passes.push_back(work);
        }
        if self.aead {
            while let Some(work) = session.poll_seal_work() {
                self.out += 1;
                queue.aead.push_back(Aead::Seal(work));
            }
            while let Some(work) = session.poll_open_work() {
                self.out += 1;
                queue.aead.push_back(Aead::Open(work));
            }
        }
        drop(queue);
        let any = self.out > before;
        if any {
            self.shared.ready.notify_all();
        }
        any
    }

    /// Gives the session one piece of work that came back, if one did (waiting for it if
    /// `wait` and one is out, running a record waiting for the threads here meanwhile):
    /// true if one did.
    fn collect(&mut self, session: &mut impl Session, wait: bool) -> bool {
        if self.out == 0 {
            return false;
        }
        let done = match self.from_workers.try_recv() {
            Ok(done) => Some(done),
            Err(_) if wait => match self.helps.then(|| self.shared.take_aead()).flatten() {
                Some(work) => Some(work.run()),
                None => self.from_workers.recv().ok(),
            },
            Err(_) => None,
        };
        self.out -= usize::from(done.is_some());
        match done {
            Some(Done::Hash(work)) => {
                self.taken += 1;
                session.work_done(Timestamp::ZERO, work).expect("work done");
            }
            Some(Done::Seal(work)) => session.seal_done(work).expect("seal done"),
            Some(Done::Open(work)) => session.open_done(work).expect("open done"),
            None => return false,
        }
        true
    }

    /// Ends the threads: the CPU ns the hashing thread and the sealing threads spent.
    fn end(&mut self) -> (u64, u64) {
        self.shared.queue.lock().expect("queue").closed = true;
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        (
            self.hash_cpu.load(Ordering::Relaxed),
            self.seal_cpu.load(Ordering::Relaxed),
        )
    }
}

/// What a thread takes from the queue.
enum Job {
    Pass(HashWork),
    Aead(Aead),
}

impl Shared {
    /// The next work for a thread, waiting for it: passes first for the hashing thread
    /// (`passes`), records for those that take them (`records`); `None` once the queue is
    /// closed.
    fn next(&self, passes: bool, records: bool) -> Option<Job> {
        let mut queue = self.queue.lock().expect("queue");
        loop {
            if queue.closed {
                return None;
            }
            if passes && let Some(work) = queue.passes.pop_front() {
                return Some(Job::Pass(work));
            }
            if records && let Some(work) = queue.aead.pop_front() {
                return Some(Job::Aead(work));
            }
            queue = self.ready.wait(queue).expect("queue");
        }
    }

    /// A record waiting for the threads, for the driving thread to run.
    fn take_aead(&self) -> Option<Aead> {
        self.queue.lock().expect("queue").aead.pop_front()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.end();
    }
}

/// The receiver alone as above, its SHA-256 passes on a thread of their own: ns per
/// byte. The passes come back later than they did in the recorded run, so its proofs go
/// out later and its bytes differ from the recorded ones; what the recorded sender sends
/// stays within what it allows (a few segments more in flight, never past the agreed
/// number), and any step it did not allow would fail the run.
fn receiver_alone_with_workers(
    size: u64,
    tape: &Tape,
    openers: usize,
    shared: bool,
) -> (f64, ThreadCpu) {
    const READ: usize = 256 << 10;
    let (_, mut receiver) = sessions(size);
    receiver.offload_hashing();
    let opening = openers > 0 || shared;
    if opening {
        receiver.offload_opening();
    }
    let now = Timestamp::ZERO;
    let mut finished = false;
    let mut hasher = Workers::new(openers, shared);
    // The stream in the pieces a driver reads, each shown to the receiver one piece ahead
    // of the one it takes in (as the blocking driver reads ahead while records are out).
    let pieces: Vec<(usize, &[u8])> = tape
        .steps
        .iter()
        .enumerate()
        .flat_map(|(step, (to_receiver, _))| to_receiver.chunks(READ).map(move |c| (step, c)))
        .collect();
    let mut shown = 0;
    let start = Instant::now();
    let driving_start = thread_cpu_ns();
    let mut step_done = 0;
    for (i, &(step, piece)) in pieces.iter().enumerate() {
        while step_done < step {
            let m = receiver.poll_transmit().len();
            receiver.advance_transmit(m);
            step_done += 1;
        }
        receiver_outputs(&mut receiver, &mut finished);
        if opening {
            while shown <= (i + 1).min(pieces.len() - 1) {
                receiver.pre_open(pieces[shown].1);
                shown += 1;
            }
        }
        hasher.dispatch(&mut receiver);
        let mut at = 0;
        while at < piece.len() {
            while receiver.input_waits() && hasher.collect(&mut receiver, true) {
                receiver_outputs(&mut receiver, &mut finished);
            }
            let n = receiver
                .handle_input(now, &piece[at..])
                .expect("receiver input");
            at += n;
            receiver_outputs(&mut receiver, &mut finished);
            // Took nothing: it waits for a pass that is out.
            let mut wait = n == 0;
            let mut moved = n > 0;
            while hasher.collect(&mut receiver, wait) {
                (wait, moved) = (false, true);
                receiver_outputs(&mut receiver, &mut finished);
            }
            moved |= hasher.dispatch(&mut receiver);
            assert!(moved, "the receiver alone took nothing and had no pass out");
        }
    }
    let m = receiver.poll_transmit().len();
    receiver.advance_transmit(m);
    while !finished && hasher.collect(&mut receiver, true) {
        receiver_outputs(&mut receiver, &mut finished);
        hasher.dispatch(&mut receiver);
    }
    assert!(finished, "the receiver alone did not finish");
    let elapsed = start.elapsed().as_nanos() as f64 / size as f64;
    let driving = thread_cpu_ns().saturating_sub(driving_start);
    let (hashing, opening) = hasher.end();
    let cpu = ThreadCpu {
        driving: driving as f64 / size as f64,
        hashing: hashing as f64 / size as f64,
        aead: opening as f64 / size as f64,
    };
    (elapsed, cpu)
}

/// The sender alone, fed the receiver's recorded bytes, its file read from `block`, its
/// SHA-256 passes run on this same thread one step late, as when the streams were
/// recorded: ns per byte. The copies out of `block` count here (unlike in
/// [`transfer_cost`]): with a second thread they overlap its hashing and cannot be taken
/// out of the time, so neither run takes them out.
fn sender_alone(size: u64, block: &[u8], tape: &Tape) -> f64 {
    let (mut sender, _) = sessions(size);
    sender.offload_hashing();
    let now = Timestamp::ZERO;
    let mut source = PageCache {
        block,
        spent: Duration::ZERO,
    };
    let mut passes = PassesOneStepLate::default();
    let start = Instant::now();
    for (to_receiver, to_sender) in &tape.steps {
        sender_outputs_here(&mut sender, &mut source, Some(&mut passes));
        let sent = &sender.poll_transmit()[..to_receiver.len()];
        assert!(
            sent == &to_receiver[..],
            "the sender alone went another way than with its peer"
        );
        sender.advance_transmit(to_receiver.len());
        let mut at = 0;
        while at < to_sender.len() {
            at += sender
                .handle_input(now, &to_sender[at..])
                .expect("sender input");
        }
    }
    assert!(sender.is_finished(), "the sender alone did not finish");
    start.elapsed().as_nanos() as f64 / size as f64
}

/// The sender's outputs (reads from `source`) carried out, and its passes handed to
/// `hasher` as soon as each read brings one.
fn sender_outputs(sender: &mut SenderSession, source: &mut PageCache<'_>, hasher: &mut Workers) {
    loop {
        match sender.poll_output() {
            Output::Timeout(_) => break,
            Output::Disk(command) => sender
                .carry_out(Timestamp::ZERO, command, source)
                .expect("read"),
            Output::Event(_) => {}
        }
        hasher.dispatch(sender);
    }
    hasher.dispatch(sender);
}

/// The sender alone as above, its SHA-256 passes on a thread of their own and, with
/// `sealers`, its records sealed on that many more: ns per byte.
/// It writes each step's bytes in pieces of a socket write, taking back passes between
/// them as a driver does. A segment is advertised only once its pass is back, so before
/// a step's recorded answers come in, it has taken back as many passes as the recorded
/// sender had then (the answers may ask for any segment advertised by that point);
/// passes beyond those stay out, running while it goes on. Its bytes differ from the
/// recorded ones in order only. The copies out of `block` count, as in [`sender_alone`].
fn sender_alone_with_workers(
    size: u64,
    block: &[u8],
    tape: &Tape,
    sealers: usize,
    shared: bool,
) -> (f64, ThreadCpu) {
    const WRITE: usize = 256 << 10;
    let (mut sender, _) = sessions(size);
    sender.offload_hashing();
    if sealers > 0 || shared {
        sender.offload_sealing();
    }
    let now = Timestamp::ZERO;
    let mut source = PageCache {
        block,
        spent: Duration::ZERO,
    };
    let mut hasher = Workers::new(sealers, shared);
    let start = Instant::now();
    let driving_start = thread_cpu_ns();
    for ((to_receiver, to_sender), &passes) in tape.steps.iter().zip(&tape.passes) {
        sender_outputs(&mut sender, &mut source, &mut hasher);
        let mut left = to_receiver.len();
        while left > 0 {
            let pending = sender.poll_transmit().len();
            if pending == 0 {
                // What is left of the step waits for a segment's pass.
                if !hasher.collect(&mut sender, true) {
                    break;
                }
                sender_outputs(&mut sender, &mut source, &mut hasher);
                continue;
            }
            let n = pending.min(left).min(WRITE);
            sender.advance_transmit(n);
            left -= n;
            while hasher.collect(&mut sender, false) {}
            sender_outputs(&mut sender, &mut source, &mut hasher);
        }
        while hasher.taken < passes && hasher.collect(&mut sender, true) {
            sender_outputs(&mut sender, &mut source, &mut hasher);
        }
        let mut at = 0;
        while at < to_sender.len() {
            at += sender
                .handle_input(now, &to_sender[at..])
                .expect("sender input");
        }
    }
    while !sender.is_finished() && hasher.collect(&mut sender, true) {
        sender_outputs(&mut sender, &mut source, &mut hasher);
    }
    assert!(sender.is_finished(), "the sender alone did not finish");
    let elapsed = start.elapsed().as_nanos() as f64 / size as f64;
    let driving = thread_cpu_ns().saturating_sub(driving_start);
    let (hashing, sealing) = hasher.end();
    let per_byte = |ns: u64| ns as f64 / size as f64;
    let cpu = ThreadCpu {
        driving: per_byte(driving),
        hashing: per_byte(hashing),
        aead: per_byte(sealing),
    };
    (elapsed, cpu)
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    // The most threads a side is measured with (the machine's cores unless given).
    let max_threads: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let mut data = vec![0u8; 256 << 20];
    SeededEntropy::new(9).fill(&mut data);
    let mut block = vec![0u8; 1 << 20];
    SeededEntropy::new(10).fill(&mut block);
    // Interleave the measurements so that the machine's noise hits them alike.
    let (mut sha, mut aead, mut sender, mut receiver) = (vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        sha.push(sha256_cost(&data));
        aead.push(aead_cost(&mut data));
        let (s, r) = transfer_cost(mib << 20, &block, None);
        sender.push(s);
        receiver.push(r);
    }
    let (sha, aead, sender, receiver) =
        (median(sha), median(aead), median(sender), median(receiver));
    let sender_floor = sha + aead;
    let receiver_floor = sha + aead;
    println!(
        "ceilings (this run): SHA-256 {:.0} MB/s ({sha:.3} ns/B), ChaCha20Poly1305 {:.0} MB/s ({aead:.3} ns/B)",
        1e3 / sha,
        1e3 / aead
    );
    println!(
        "sender:   {sender:.3} ns/B ({:.0} MB/s); its passes (1 SHA-256 + 1 AEAD) {sender_floor:.3} ns/B; ratio {:.2}",
        1e3 / sender,
        sender / sender_floor
    );
    println!(
        "receiver: {receiver:.3} ns/B ({:.0} MB/s); its passes (1 SHA-256 + 1 AEAD) {receiver_floor:.3} ns/B; ratio {:.2}",
        1e3 / receiver,
        receiver / receiver_floor
    );
    println!("target: ratio at most 1.30 on each side ({mib} MiB, medians of 3 interleaved runs)");
    // Each side alone, against the other's recorded stream.
    let mut tape = Tape::default();
    transfer_cost(mib << 20, &block, Some(&mut tape));
    let (mut sender_alone_ns, mut receiver_alone_ns) = (vec![], vec![]);
    for _ in 0..3 {
        sender_alone_ns.push(sender_alone(mib << 20, &block, &tape));
        receiver_alone_ns.push(receiver_alone(mib << 20, &tape));
    }
    let (s, r) = (median(sender_alone_ns), median(receiver_alone_ns));
    // Threads per side: the driving one, the hashing one, and AEAD ones beyond; with
    // two, the records sealed or opened on the driving thread, or shared between both
    // (the hashing thread between its passes, the driving one while it would wait).
    let mut rows = vec![(2, false), (2, true), (3, true), (max_threads.max(3), true)];
    rows.dedup();
    let mut sender_threaded = vec![vec![]; rows.len()];
    let mut receiver_threaded = vec![vec![]; rows.len()];
    for _ in 0..3 {
        for (i, &(threads, shared)) in rows.iter().enumerate() {
            let sealers = threads - 2;
            sender_threaded[i].push(sender_alone_with_workers(
                mib << 20,
                &block,
                &tape,
                sealers,
                shared,
            ));
            receiver_threaded[i].push(receiver_alone_with_workers(
                mib << 20,
                &tape,
                sealers,
                shared,
            ));
        }
    }
    println!(
        "against a null peer (the other side's {} MiB of recorded bytes), 1 thread each: sender {s:.3} ns/B ({:.0} MB/s), receiver {r:.3} ns/B ({:.0} MB/s)",
        tape.bytes() >> 20,
        1e3 / s,
        1e3 / r
    );
    for (side, one, runs) in [
        ("sender", s, sender_threaded),
        ("receiver", r, receiver_threaded),
    ] {
        for (samples, &(threads, shared)) in runs.into_iter().zip(&rows) {
            // The run of median time, and its threads' CPU.
            let mut samples = samples;
            samples.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (t, cpu) = samples[samples.len() / 2];
            let what = match (threads, shared) {
                (2, false) => "SHA-256 on a second thread, the AEAD on the first".to_owned(),
                (2, true) => "SHA-256 on a second thread, the AEAD shared by both".to_owned(),
                (n, _) => format!(
                    "SHA-256 on a second thread, the AEAD on {} more and the first",
                    n - 2
                ),
            };
            println!(
                "{side} alone, {threads} threads ({what}): {t:.3} ns/B ({:.0} MB/s), {:.2}x one thread",
                1e3 / t,
                one / t
            );
            // Where each thread has a core of its own, the busiest bounds the side; work
            // shared is shared out evenly, but the SHA-256 passes are one sequence.
            let bound = match (threads, shared) {
                (2, false) => cpu.driving.max(cpu.hashing),
                (2, true) => ((cpu.driving + cpu.hashing) / 2.0).max(sha),
                (n, _) => cpu.hashing.max((cpu.driving + cpu.aead) / (n - 1) as f64),
            };
            if bound > 0.0 {
                println!(
                    "    CPU per byte: driving {:.3}, hashing {:.3}, AEAD {:.3} ns/B in all; with a core per thread at most {:.0} MB/s, {:.2}x one thread",
                    cpu.driving,
                    cpu.hashing,
                    cpu.aead,
                    1e3 / bound,
                    one / bound
                );
            }
        }
    }
    println!(
        "({} cores here: a side's threads beyond them only share them)",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
}
