//! Deterministic simulation of whole transfers: two sessions joined by a seeded link, a
//! virtual clock, an in-memory receiver disk that loses unsynced writes when it crashes,
//! and faults (disconnects, flipped bits, dropped or duplicated chunks, stalls, crashes).
//! After a fault both sides start new sessions with new tokens and keys, and the receiver
//! resumes from what survived. Everything follows from one seed: `SIM_SEED=n` replays it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::ops::Range;

use ferry_core::lane::{LANE_HELLO_LEN, MAX_LANES};
use ferry_core::opening::OpenWork;
use ferry_core::sealing::SealWork;
pub use ferry_core::testing::Rng;
use ferry_core::testing::{MemoryDisk, MemorySource, drain};
use ferry_core::transfer::{
    Connections, DiskCommand, DiskError, DiskErrorKind, EntryKind, FileMeta, HashChain, HashWork,
    Manifest, ManifestEntry, Output, ReceiverSession, SenderSession, Session, Storage, Target,
    TransferConfig, TransferError, TransferEvent,
};
use ferry_core::{SeededEntropy, Timestamp, Token};
use sha2::{Digest, Sha256};

/// Who is running: nobody (the simulator itself), the sender or the receiver. A test's
/// counting allocator reads it with [`current_endpoint`] to charge each allocation to the
/// endpoint that made it.
pub const SIMULATOR: usize = 0;
/// See [`SIMULATOR`].
pub const SENDER: usize = 1;
/// See [`SIMULATOR`].
pub const RECEIVER: usize = 2;

thread_local! {
    static ENDPOINT: core::cell::Cell<usize> = const { core::cell::Cell::new(SIMULATOR) };
}

/// The endpoint running on this thread right now ([`SIMULATOR`] outside its calls).
pub fn current_endpoint() -> usize {
    ENDPOINT
        .try_with(core::cell::Cell::get)
        .unwrap_or(SIMULATOR)
}

/// Runs `f`, a call into one endpoint, charged to `who`.
fn as_endpoint<T>(who: usize, f: impl FnOnce() -> T) -> T {
    let before = ENDPOINT.with(|e| e.replace(who));
    let result = f();
    ENDPOINT.with(|e| e.set(before));
    result
}

/// Something that goes wrong, at a point in the sender-to-receiver byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection the byte travels on breaks: the session's own (the session ends) or
    /// a lane (the session goes on over the others).
    Disconnect,
    /// The path breaks: every connection of the session ends with it.
    PathCut,
    /// One bit of the stream flips.
    FlipBit,
    /// A chunk of the stream is lost.
    DropChunk,
    /// A chunk of the stream arrives twice.
    DuplicateChunk,
    /// Nothing is delivered for a long time (longer than the idle timeout).
    Stall,
    /// The receiver's machine crashes: its unsynced writes are lost or torn.
    CrashReceiver,
    /// The sender's process dies: what it wrote arrives, then the stream ends.
    CrashSender,
    /// The receiver's disk fills up: its next write fails (until the operator frees space
    /// and runs the receive again).
    DiskFull,
    /// The receiver loses write permission on its output directory, likewise.
    PermissionDenied,
    /// A source file changes (its first and last byte) while it is being sent.
    SourceChanges,
}

/// The shape of a simulated world, drawn from its seed.
#[derive(Clone, Debug)]
pub struct World {
    /// The seed everything came from.
    pub seed: u64,
    /// One-way latency, µs.
    pub latency: u64,
    /// Extra delay of up to this many µs, drawn per chunk; the stream stays in order (a
    /// late chunk holds back the ones behind it, as in TCP).
    pub jitter: u64,
    /// Bytes per second.
    pub bandwidth: u64,
    /// Largest chunk a write is cut into.
    pub max_chunk: usize,
    /// Bytes a socket accepts beyond what its link has serialised (the send buffer): a
    /// writer with more must wait, as with a real socket.
    pub send_buffer: usize,
    /// Bytes a connection may have sent and not yet had acknowledged (a TCP connection
    /// whose window cannot grow past it, as an untuned Linux host's 4 MiB `tcp_wmem`):
    /// what makes several connections (lanes) worth opening. `None`: no such cap.
    pub window: Option<u64>,
    /// Faults, each at a byte offset of a session's sender-to-receiver stream.
    pub faults: Vec<(u64, Fault)>,
    /// The batch: paths and contents (`None` for directories).
    pub items: Vec<(String, Option<Vec<u8>>)>,
    /// The engine settings of both sides.
    pub config: TransferConfig,
    /// Run the receiver with its verification switched off (a planted bug the sweep must
    /// catch).
    pub broken_verification: bool,
    /// The receiver's writes finish this many µs after it gives them out, in order, as
    /// where a driver writes on a thread of its own (0: at once, through `carry_out`).
    pub write_delay: u64,
    /// Both sides hand their SHA-256 passes out (`Session::offload_hashing`), and each
    /// comes back up to this many µs later, as from a driver's hashing thread: run in
    /// order, back in any order (0: the sessions hash inline). The sender's records are
    /// sealed so too (`Session::offload_sealing`), and the receiver's opened
    /// (`Session::offload_opening`), each back up to as late.
    pub hash_delay: u64,
}

impl World {
    /// A world drawn from `seed`: a small batch, a link, and zero to three faults.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        // Small records and send buffers as often as large ones, so that backpressure
        // (a full send buffer, input refused until it drains) is part of the sweep.
        let max_record_payload = rng.range(8 << 10, (256 << 10) + 1) as usize;
        let channel = ferry_core::Config {
            max_record_payload,
            send_buffer: (max_record_payload + 64) * rng.range(2, 6) as usize,
            ..ferry_core::Config::default()
        };
        let config = TransferConfig {
            channel,
            part_size: 1024 * rng.range(1, 5) as usize,
            segment_size: 4096 * rng.range(4, 17) as usize,
            segments_in_flight: rng.range(1, 5) as usize,
            max_extents_per_segment: rng.range(2, 40) as usize,
            map_hashes_per_message: rng.range(2, 20) as usize,
            initial_window: 8192,
            checkpoint_bytes: 4096 * rng.range(1, 32),
            compress: rng.chance(10),
            // A quarter of the worlds run lanes from the start, so that faults meet them.
            connections: if rng.chance(25) {
                Connections::Fixed(rng.range(2, 5) as u8)
            } else {
                Connections::default()
            },
            ..TransferConfig::default()
        };
        let mut items = Vec::new();
        for d in 0..rng.range(0, 3) {
            items.push((format!("dir{d}"), None));
        }
        for f in 0..rng.range(1, 7) {
            let size = match rng.range(0, 4) {
                0 => rng.range(0, 3),
                1 => rng.range(0, 4096),
                _ => rng.range(0, 200_000),
            } as usize;
            let mut data = vec![0u8; size];
            rng.fill(&mut data);
            let dir = if f % 2 == 0 && !items.is_empty() {
                "dir0/".to_owned()
            } else {
                String::new()
            };
            items.push((format!("{dir}file{f}"), Some(data)));
        }
        let total: u64 = items
            .iter()
            .filter_map(|(_, d)| d.as_ref())
            .map(|d| d.len() as u64)
            .sum();
        let mut faults = Vec::new();
        for _ in 0..rng.range(0, 4) {
            let kind = match rng.range(0, 10) {
                0 if rng.chance(50) => Fault::Disconnect,
                0 => Fault::PathCut,
                1 => Fault::FlipBit,
                2 => Fault::DropChunk,
                3 => Fault::DuplicateChunk,
                4 => Fault::Stall,
                5 => Fault::SourceChanges,
                6 => Fault::CrashSender,
                7 => Fault::DiskFull,
                8 => Fault::PermissionDenied,
                _ => Fault::CrashReceiver,
            };
            faults.push((rng.range(0, total + 2000), kind));
        }
        World {
            seed,
            latency: rng.range(0, 50_000),
            jitter: if rng.chance(50) {
                rng.range(0, 20_000)
            } else {
                0
            },
            bandwidth: rng.range(1_000_000, 200_000_000),
            max_chunk: rng.range(1, 70_000) as usize,
            send_buffer: 1 << rng.range(10, 23),
            window: rng.chance(20).then(|| 1 << rng.range(12, 20)),
            faults,
            items,
            config,
            broken_verification: false,
            // Drawn last, so that every other part of a seed's world stays as it was.
            write_delay: if rng.chance(30) {
                rng.range(1, 5_000)
            } else {
                0
            },
            hash_delay: if rng.chance(30) {
                rng.range(1, 3_000)
            } else {
                0
            },
        }
    }

    /// A one-line description: link, faults, and the batch's sizes (not its bytes).
    pub fn summary(&self) -> String {
        let sizes: Vec<String> = self
            .items
            .iter()
            .map(|(path, data)| {
                format!(
                    "{path}:{}",
                    data.as_ref()
                        .map_or("dir".to_owned(), |d| d.len().to_string())
                )
            })
            .collect();
        format!(
            "latency {} µs (jitter {} µs), {} B/s, chunks up to {} B, send buffer {} B, window {:?}, write delay {} µs, hash delay {} µs, connections {:?}, faults {:?}, items [{}], part {} B, segment {} B, in flight {}, compress {}",
            self.latency,
            self.jitter,
            self.bandwidth,
            self.max_chunk,
            self.send_buffer,
            self.window,
            self.write_delay,
            self.hash_delay,
            self.config.connections,
            self.faults,
            sizes.join(", "),
            self.config.part_size,
            self.config.segment_size,
            self.config.segments_in_flight,
            self.config.compress
        )
    }

    fn manifest(&self) -> Manifest {
        let entries: Vec<ManifestEntry> = self
            .items
            .iter()
            .map(|(path, data)| ManifestEntry {
                path: path.clone(),
                kind: if data.is_some() {
                    EntryKind::File
                } else {
                    EntryKind::Directory
                },
                size: data.as_ref().map_or(0, |d| d.len() as u64),
                mode: 0o644,
                mtime_ns: 0,
                sha256: data.as_ref().map(|d| Sha256::digest(d).into()),
            })
            .collect();
        Manifest::from_entries(&entries, &Default::default()).unwrap_or_default()
    }
}

/// How a simulated transfer ended.
#[derive(Debug)]
pub struct Outcome {
    /// Sessions it took.
    pub sessions: usize,
    /// A readable log of what happened, ending with the result.
    pub trace: String,
    /// `Ok` when every invariant held.
    pub result: Result<(), String>,
    /// Virtual time when the run ended, µs.
    pub virtual_micros: u64,
}

/// One direction of one connection: its socket's send buffer, the bytes on their way,
/// and (under a window) the acknowledgements on their way back.
#[derive(Default)]
struct Link {
    queue: VecDeque<(Timestamp, Vec<u8>)>,
    /// Bytes in `queue`.
    queued: u64,
    /// Chunks not yet serialised onto the path: when each will be (ns), and its length.
    unserialised: VecDeque<(u128, u64)>,
    /// Their bytes.
    backlog: u64,
    /// Bytes delivered whose acknowledgement has not reached the writer: when it will.
    unacked: VecDeque<(Timestamp, u64)>,
    /// Their bytes.
    unacked_bytes: u64,
    /// The reader left bytes behind: the link waits for the reader, not for time.
    blocked: bool,
}

/// What every connection in one direction shares: the bottleneck's serialiser (one path,
/// however many connections cross it). When it is free, in nanoseconds (µs would round
/// every small write down and make the link faster than its bandwidth).
#[derive(Default)]
struct Path {
    free_at_ns: u128,
}

impl Link {
    /// Forgets what is behind `now`: chunks serialised, acknowledgements arrived.
    fn settle(&mut self, now: Timestamp) {
        let now_ns = u128::from(now.as_micros()) * 1000;
        while let Some(&(done, len)) = self.unserialised.front() {
            if done > now_ns {
                break;
            }
            self.unserialised.pop_front();
            self.backlog -= len;
        }
        while let Some(&(at, len)) = self.unacked.front() {
            if at > now {
                break;
            }
            self.unacked.pop_front();
            self.unacked_bytes -= len;
        }
    }

    /// How much a writer may hand over at `now`: the send buffer's free room, within the
    /// connection's window of bytes sent and not yet acknowledged.
    fn room(&mut self, now: Timestamp, world: &World) -> usize {
        self.settle(now);
        let mut room = (world.send_buffer as u64).saturating_sub(self.backlog);
        if let Some(window) = world.window {
            room = room.min(window.saturating_sub(self.queued + self.unacked_bytes));
        }
        room as usize
    }

    /// When a full link next has room for a useful write: a quarter of its send buffer
    /// (a socket reports writable only past its low-water mark) and of its window.
    fn room_at(&mut self, now: Timestamp, world: &World) -> Timestamp {
        self.settle(now);
        let keep = |size: u64| size - (size / 4).max(1);
        let mut at = now;
        let (buffer, mut left) = (world.send_buffer as u64, self.backlog);
        for &(done, len) in &self.unserialised {
            if left <= keep(buffer) {
                break;
            }
            left -= len;
            at = at.max(Timestamp::from_micros(done.div_ceil(1000) as u64));
        }
        if let Some(window) = world.window {
            let mut left = self.queued + self.unacked_bytes;
            // Bytes still on the link are acknowledged a one-way trip after they arrive
            // (or, arrived and not yet read, after they are).
            let on_link = self
                .queue
                .iter()
                .map(|(arrive, b)| (after(*arrive.max(&now), world.latency), b.len() as u64));
            for (acked, len) in self.unacked.iter().copied().chain(on_link) {
                if left <= keep(window.max(1)) {
                    break;
                }
                left -= len;
                at = at.max(acked);
            }
        }
        at.max(Timestamp::from_micros(now.as_micros() + 1))
    }

    /// Hands as much of `transmit` to the link as its send buffer and window take.
    fn take(&mut self, now: Timestamp, world: &World, transmit: &[u8]) -> usize {
        transmit.len().min(self.room(now, world))
    }

    /// Queues `bytes` cut into random chunks; ordered, serialised at the bandwidth on
    /// `path`, which other connections may share.
    fn send(
        &mut self,
        path: &mut Path,
        now: Timestamp,
        mut bytes: &[u8],
        world: &World,
        rng: &mut Rng,
    ) {
        while !bytes.is_empty() {
            let len = (rng.range(1, world.max_chunk as u64 + 1) as usize).min(bytes.len());
            let (chunk, rest) = bytes.split_at(len);
            let start = path.free_at_ns.max(u128::from(now.as_micros()) * 1000);
            let busy = len as u128 * 1_000_000_000 / u128::from(world.bandwidth.max(1));
            path.free_at_ns = start + busy;
            self.unserialised.push_back((path.free_at_ns, len as u64));
            self.backlog += len as u64;
            let done = path.free_at_ns.div_ceil(1000) as u64;
            let delay = world.latency + rng.range(0, world.jitter + 1);
            let at = Timestamp::from_micros(done + delay);
            // In order: never before the chunk ahead of it.
            let at = self.queue.back().map_or(at, |(ahead, _)| at.max(*ahead));
            self.queue.push_back((at, chunk.to_vec()));
            self.queued += len as u64;
            bytes = rest;
        }
    }

    /// The next arrival the reader can take.
    fn arrival(&self) -> Option<Timestamp> {
        self.queue
            .front()
            .filter(|_| !self.blocked)
            .map(|(at, _)| *at)
    }

    /// Hands the arrived chunks to `to`, which returns how much it took; what it leaves
    /// stays first in line, and the link waits until the next step. What is taken is
    /// acknowledged a one-way trip later.
    fn deliver(&mut self, now: Timestamp, world: &World, mut to: impl FnMut(&[u8]) -> usize) {
        self.blocked = false;
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            let Some((at, bytes)) = self.queue.pop_front() else {
                return;
            };
            let taken = to(&bytes).min(bytes.len());
            self.queued -= taken as u64;
            if taken > 0 {
                let acked = after(now, world.latency);
                self.unacked.push_back((acked, taken as u64));
                self.unacked_bytes += taken as u64;
            }
            if taken < bytes.len() {
                self.queue.push_front((at, bytes[taken..].to_vec()));
                self.blocked = true;
                return;
            }
        }
    }
}

/// `micros` after `at`.
fn after(at: Timestamp, micros: u64) -> Timestamp {
    Timestamp::from_micros(at.as_micros().saturating_add(micros))
}

/// Runs `world` to the end and checks the invariants.
pub fn run(world: &World) -> Outcome {
    let mut sim = Sim::new(world);
    let result = sim.simulate();
    let mut trace = sim.trace;
    let sessions = trace.matches("session ").count();
    let _ = writeln!(trace, "result: {result:?}");
    Outcome {
        sessions,
        trace,
        result,
        virtual_micros: sim.now.as_micros(),
    }
}

/// A storage whose work is charged to the simulator, not to the session that asked for
/// it: an endpoint's heap is its own, the disk's is the machine's.
struct Charged<'a, S>(&'a mut S);

impl<S: Storage> Storage for Charged<'_, S> {
    fn read(
        &mut self,
        target: Target<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, DiskError> {
        as_endpoint(SIMULATOR, || self.0.read(target, offset, buf))
    }
    fn write(&mut self, target: Target<'_>, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        as_endpoint(SIMULATOR, || self.0.write(target, offset, data))
    }
    fn commit(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        as_endpoint(SIMULATOR, || self.0.commit(target))
    }
    fn discard(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        as_endpoint(SIMULATOR, || self.0.discard(target))
    }
    fn create_dir(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        as_endpoint(SIMULATOR, || self.0.create_dir(target))
    }
    fn checkpoint(
        &mut self,
        changed: Range<usize>,
        session: &ReceiverSession,
    ) -> Result<(), DiskError> {
        as_endpoint(SIMULATOR, || self.0.checkpoint(changed, session))
    }
    fn finish(&mut self, session: &ReceiverSession) -> Result<(), DiskError> {
        as_endpoint(SIMULATOR, || self.0.finish(session))
    }
    fn reopen(&mut self, target: Target<'_>) -> Result<FileMeta, DiskError> {
        as_endpoint(SIMULATOR, || self.0.reopen(target))
    }
}

/// What lasts across the sessions of one world: the files at both ends, the faults still
/// to come, the clock and the trace.
struct Sim<'w> {
    world: &'w World,
    rng: Rng,
    manifest: Manifest,
    /// The files as they are now at the sender (a SourceChanges fault alters them).
    source: MemorySource,
    /// Every content each file has had, oldest first: what may be committed.
    history: Vec<Vec<Vec<u8>>>,
    changes_expected: bool,
    disk: MemoryDisk,
    faults: VecDeque<(u64, Fault)>,
    now: Timestamp,
    trace: String,
}

/// One session's two ends and the connections between them.
struct Round {
    sender: SenderSession,
    receiver: ReceiverSession,
    /// The session's own connection.
    forward: Link,
    backward: Link,
    /// Its lanes (PROTOCOL.md §8), by number; 0 stands for the session's own connection.
    lanes: Vec<Option<LaneLinks>>,
    /// Lanes the receiver asked for, and when their connection is up (a TCP handshake:
    /// one round trip).
    connecting: Vec<(Timestamp, u8)>,
    /// The bottleneck each direction's connections share.
    paths: [Path; 2],
    /// Bytes the sender handed to all its connections: where faults are placed.
    sent: u64,
    /// What the receiver finds on its disk to resume from.
    local: Vec<(usize, u64)>,
    /// Writes the receiver gave out that finish later (`World::write_delay`), in order,
    /// with when each does.
    writes: VecDeque<(Timestamp, DiskCommand)>,
    /// SHA-256 passes the sessions gave out (`World::hash_delay`), already run, each with
    /// when it comes back, its side, and its place among that side's passes.
    passes: Vec<(Timestamp, usize, u64, HashWork)>,
    /// Passes each side gave out.
    passes_given: [u64; 2],
    /// Each side's chain, as a driver's hashing thread keeps it.
    chains: [HashChain; 2],
    /// Batches of the sender's records given out to seal (with `World::hash_delay`),
    /// already sealed, each with when it comes back.
    batches: Vec<(Timestamp, SealWork)>,
    /// The receiver's records given out to open, already opened, each with when it
    /// comes back.
    opens: Vec<(Timestamp, OpenWork)>,
}

/// One lane's connection.
#[derive(Default)]
struct LaneLinks {
    forward: Link,
    backward: Link,
    /// Its hello, as far as it reached the sender.
    hello: Vec<u8>,
    joined: bool,
}

/// What a fault leaves of the session.
enum Flow {
    /// The session goes on.
    Goes,
    /// A lane's connection broke; the session goes on without it.
    LaneBroke,
    /// The session is over (a broken connection, a crash).
    Ends,
}

impl<'w> Sim<'w> {
    fn new(world: &'w World) -> Self {
        let mut faults = world.faults.clone();
        faults.sort_by_key(|(at, _)| *at);
        Sim {
            world,
            rng: Rng::new(world.seed ^ 0xd15c),
            manifest: world.manifest(),
            source: MemorySource::new(world.items.iter().map(|(_, d)| d.clone()).collect()),
            history: world
                .items
                .iter()
                .map(|(_, d)| d.iter().cloned().collect())
                .collect(),
            changes_expected: world.faults.iter().any(|(_, f)| *f == Fault::SourceChanges),
            disk: MemoryDisk::default(),
            faults: faults.into(),
            now: Timestamp::ZERO,
            trace: String::new(),
        }
    }

    fn simulate(&mut self) -> Result<(), String> {
        let max_sessions = self.world.faults.len() + 2;
        for session in 1..=max_sessions {
            let finished = self.session(session)?;
            // The operator frees space or restores permissions before running it again.
            self.disk.failing = None;
            check_committed(self.world, &self.history, &self.disk)?;
            if finished {
                for (entry, data) in self.source.files.iter().enumerate() {
                    if data.is_some()
                        && self.disk.committed.get(&entry) != data.as_ref()
                        && !self.changes_expected
                    {
                        return Err(format!(
                            "{} is not in place after the batch finished",
                            self.world.items[entry].0
                        ));
                    }
                }
                return Ok(());
            }
        }
        Err(format!("not finished after {max_sessions} sessions"))
    }

    /// Starts both ends of session `number` with a new token and keys; the receiver
    /// resumes from what survived on its disk.
    fn start(&mut self, number: usize) -> Result<Round, String> {
        let mut entropy = SeededEntropy::new(self.rng.next_u64());
        let token = Token::generate(&mut entropy);
        let (world, now) = (self.world, self.now);
        let _ = writeln!(self.trace, "session {number} at {} µs", now.as_micros());
        // A new sender serves the manifest as it was listed: each file's first attempt is
        // judged against the file as it was then.
        self.source.relisted();
        let manifest = self.manifest.clone();
        let mut sender = as_endpoint(SENDER, || {
            SenderSession::new(
                world.config.clone(),
                token.clone(),
                manifest,
                &mut entropy,
                now,
            )
        })
        .map_err(|e| e.to_string())?;
        let mut receiver = as_endpoint(RECEIVER, || {
            ReceiverSession::new(world.config.clone(), token, &mut entropy, now)
        })
        .map_err(|e| e.to_string())?;
        if world.broken_verification {
            receiver.skip_verification_for_testing();
        }
        if world.hash_delay > 0 {
            sender.offload_hashing();
            receiver.offload_hashing();
            sender.offload_sealing();
            receiver.offload_opening();
        }
        Ok(Round {
            sender,
            receiver,
            forward: Link::default(),
            backward: Link::default(),
            lanes: (0..MAX_LANES).map(|_| None).collect(),
            connecting: Vec::new(),
            paths: Default::default(),
            sent: 0,
            local: self.disk.local(),
            writes: VecDeque::new(),
            passes: Vec::new(),
            passes_given: [0; 2],
            chains: Default::default(),
            batches: Vec::new(),
            opens: Vec::new(),
        })
    }

    /// Runs one session until it finishes (true), or a fault or failure ends it.
    fn session(&mut self, number: usize) -> Result<bool, String> {
        let world = self.world;
        let mut round = self.start(number)?;
        let mut fault_here = self.faults.front().copied();
        // Steps in a row in which no virtual time passed: a session that keeps stepping
        // without time passing is spinning, which is a failure of its own.
        let mut steps_without_time = 0u32;
        let finished = 'steps: loop {
            loop {
                self.receiver_work(&mut round)?;
                self.sender_work(&mut round.sender);
                if !self.hash_passes(&mut round) {
                    break;
                }
            }
            self.open_lanes(&mut round);
            // The wire, with the fault of this session: as much as each socket takes.
            for lane in 0..MAX_LANES as u8 {
                if let Flow::Ends = self.transmit(&mut round, lane, &mut fault_here)? {
                    break 'steps false;
                }
            }
            let now = self.now;
            let Round {
                receiver,
                backward,
                lanes,
                paths,
                ..
            } = &mut round;
            let take = backward.take(now, world, receiver.poll_transmit());
            let back = receiver.poll_transmit()[..take].to_vec();
            receiver.advance_transmit(take);
            backward.send(&mut paths[1], now, &back, world, &mut self.rng);
            for (lane, links) in lanes.iter_mut().enumerate() {
                let Some(links) = links else { continue };
                let hello = receiver.poll_lane_transmit(lane as u8);
                let take = links.backward.take(now, world, hello);
                let hello = hello[..take].to_vec();
                receiver.advance_lane_transmit(lane as u8, take);
                links
                    .backward
                    .send(&mut paths[1], now, &hello, world, &mut self.rng);
            }
            self.close_given_up_lanes(&mut round);

            let Round {
                sender, receiver, ..
            } = &round;
            if sender.is_finished() && receiver.is_finished() {
                break true;
            }
            if sender.error().is_some() || receiver.error().is_some() {
                let _ = writeln!(
                    self.trace,
                    "  ended: sender {:?}, receiver {:?}",
                    sender.error(),
                    receiver.error()
                );
                break false;
            }
            // Parts composed as the sender's bytes went out go to its "threads" now, as a
            // driver hands them out after every write.
            self.give_out_batches(&mut round);
            let next = self.next_moment(&mut round)?;
            if next <= self.now {
                steps_without_time += 1;
                if steps_without_time > 100_000 {
                    return Err(format!(
                        "session {number} spins: {steps_without_time} steps without time passing at {} µs",
                        self.now.as_micros()
                    ));
                }
            } else {
                steps_without_time = 0;
            }
            self.now = self.now.max(next);
            self.deliver(&mut round);
        };
        if fault_here.is_none() {
            self.faults.pop_front();
        }
        Ok(finished)
    }

    /// Hands what the sender has for connection `lane` (0: the session's own) to it, as
    /// much as its socket takes; `fault` happens if its byte is among them.
    fn transmit(
        &mut self,
        round: &mut Round,
        lane: u8,
        fault: &mut Option<(u64, Fault)>,
    ) -> Result<Flow, String> {
        let (world, now) = (self.world, self.now);
        let sender = &mut round.sender;
        let (pending, link) = if lane == 0 {
            (sender.poll_transmit(), &mut round.forward)
        } else if let Some(links) = round.lanes[usize::from(lane)].as_mut() {
            (sender.poll_lane_transmit(lane), &mut links.forward)
        } else {
            return Ok(Flow::Goes);
        };
        let take = link.take(now, world, pending);
        if take == 0 {
            return Ok(Flow::Goes);
        }
        let mut out = pending[..take].to_vec();
        if lane == 0 {
            sender.advance_transmit(take);
        } else {
            sender.advance_lane_transmit(lane, take);
        }
        let start = round.sent;
        round.sent += take as u64;
        if let Some((at, kind)) = *fault
            && (start..round.sent).contains(&at)
        {
            *fault = None;
            let _ = writeln!(
                self.trace,
                "  fault {kind:?} at byte {at} (connection {lane})"
            );
            match self.inject(kind, (at - start) as usize, &mut out, round, lane)? {
                Flow::Goes => {}
                other => return Ok(other),
            }
        }
        if lane == 0 {
            // The receiver's driver reads these as they come: its threads may open them.
            round.receiver.pre_open(&out);
        }
        let link = match round.lanes.get_mut(usize::from(lane)) {
            Some(Some(links)) if lane > 0 => &mut links.forward,
            _ => &mut round.forward,
        };
        link.send(&mut round.paths[0], now, &out, world, &mut self.rng);
        Ok(Flow::Goes)
    }

    /// Lanes whose connection is up (the receiver asked a round trip ago): the receiver
    /// sends its hello on them.
    fn open_lanes(&mut self, round: &mut Round) {
        let now = self.now;
        let (up, still) = round.connecting.iter().partition(|(at, _)| *at <= now);
        round.connecting = still;
        for (_, lane) in up {
            let connected = as_endpoint(RECEIVER, || round.receiver.lane_connected(lane));
            if connected.is_ok() {
                round.lanes[usize::from(lane)] = Some(LaneLinks::default());
                let _ = writeln!(
                    self.trace,
                    "  lane {lane} connects at {} µs",
                    now.as_micros()
                );
            }
        }
    }

    /// Closes the connection of each lane that either end gave up or refused; the other
    /// end sees it close.
    fn close_given_up_lanes(&mut self, round: &mut Round) {
        let now = self.now;
        for lane in 1..MAX_LANES as u8 {
            let Some(links) = round.lanes[usize::from(lane)].as_ref() else {
                continue;
            };
            let sender_gone = links.joined && !round.sender.lane_open(lane);
            if !sender_gone && round.receiver.lane_open(lane) {
                continue;
            }
            round.lanes[usize::from(lane)] = None;
            let _ = writeln!(self.trace, "  lane {lane} closes at {} µs", now.as_micros());
            if round.receiver.lane_open(lane) {
                as_endpoint(RECEIVER, || round.receiver.lane_closed(now, lane));
            }
            if round.sender.lane_open(lane) {
                as_endpoint(SENDER, || round.sender.lane_closed(now, lane));
            }
        }
    }

    /// Hands every connection's arrived bytes to its reader, then lets the timers fire.
    fn deliver(&mut self, round: &mut Round) {
        let (world, now) = (self.world, self.now);
        let Round {
            sender,
            receiver,
            forward,
            backward,
            lanes,
            ..
        } = round;
        forward.deliver(now, world, |bytes| {
            feed(RECEIVER, bytes, |b| receiver.handle_input(now, b))
        });
        backward.deliver(now, world, |bytes| {
            feed(SENDER, bytes, |b| sender.handle_input(now, b))
        });
        for (lane, slot) in lanes.iter_mut().enumerate() {
            let Some(links) = slot.as_mut() else { continue };
            let lane = lane as u8;
            links.forward.deliver(now, world, |bytes| {
                feed(RECEIVER, bytes, |b| {
                    receiver.handle_lane_input(now, lane, b)
                })
            });
            let hello = &mut links.hello;
            links.backward.deliver(now, world, |bytes| {
                hello.extend_from_slice(bytes);
                bytes.len()
            });
            if links.joined || links.hello.len() < LANE_HELLO_LEN {
                continue;
            }
            let mut whole = [0u8; LANE_HELLO_LEN];
            whole.copy_from_slice(&links.hello[..LANE_HELLO_LEN]);
            match as_endpoint(SENDER, || sender.join_lane(&whole)) {
                Ok(joined) if joined == lane => {
                    links.joined = true;
                    let _ = writeln!(self.trace, "  lane {lane} joins at {} µs", now.as_micros());
                }
                outcome => {
                    let _ = writeln!(self.trace, "  lane {lane} refused: {outcome:?}");
                    *slot = None;
                    as_endpoint(RECEIVER, || receiver.lane_closed(now, lane));
                }
            }
        }
        let _ = as_endpoint(SENDER, || sender.handle_timeout(now));
        let _ = as_endpoint(RECEIVER, || receiver.handle_timeout(now));
    }

    /// The next delivery, timer, connection or room in a send buffer.
    fn next_moment(&mut self, round: &mut Round) -> Result<Timestamp, String> {
        let (world, now) = (self.world, self.now);
        let Round {
            sender,
            receiver,
            forward,
            backward,
            lanes,
            connecting,
            writes,
            passes,
            batches,
            opens,
            ..
        } = round;
        let mut next = [
            forward.arrival(),
            backward.arrival(),
            sender.poll_timeout(),
            receiver.poll_timeout(),
            (!sender.poll_transmit().is_empty()).then(|| forward.room_at(now, world)),
            (!receiver.poll_transmit().is_empty()).then(|| backward.room_at(now, world)),
        ]
        .into_iter()
        .flatten()
        .chain(connecting.iter().map(|(at, _)| *at))
        .chain(writes.front().map(|(at, _)| *at))
        .chain(passes.iter().map(|(at, ..)| *at))
        .chain(batches.iter().map(|(at, _)| *at))
        .chain(opens.iter().map(|(at, _)| *at))
        .min();
        for (lane, links) in lanes.iter_mut().enumerate() {
            let Some(links) = links else { continue };
            let lane = lane as u8;
            let more = [
                links.forward.arrival(),
                links.backward.arrival(),
                (!sender.poll_lane_transmit(lane).is_empty())
                    .then(|| links.forward.room_at(now, world)),
                (!receiver.poll_lane_transmit(lane).is_empty())
                    .then(|| links.backward.room_at(now, world)),
            ];
            next = next.into_iter().chain(more.into_iter().flatten()).min();
        }
        let Some(next) = next else {
            return Err("nothing left to happen, and not finished".into());
        };
        for timeout in [sender.poll_timeout(), receiver.poll_timeout()]
            .into_iter()
            .flatten()
        {
            if timeout < now {
                return Err("a timeout in the past".into());
            }
        }
        if std::env::var_os("SIM_DEBUG").is_some() {
            let _ = writeln!(
                self.trace,
                "  {} µs: {}\n    {}",
                now.as_micros(),
                sender.describe(),
                receiver.describe()
            );
        }
        Ok(next)
    }

    /// Makes `fault` happen `offset` bytes into `out`, the bytes the sender is about to
    /// put on connection `lane`.
    fn inject(
        &mut self,
        fault: Fault,
        offset: usize,
        out: &mut Vec<u8>,
        round: &mut Round,
        lane: u8,
    ) -> Result<Flow, String> {
        let (world, rng, now) = (self.world, &mut self.rng, self.now);
        let link = match round.lanes.get_mut(usize::from(lane)) {
            Some(Some(links)) if lane > 0 => &mut links.forward,
            _ => &mut round.forward,
        };
        match fault {
            // A lane's connection breaks: what it still carried is lost, both ends see
            // it close, and the session goes on over the others.
            Fault::Disconnect if lane > 0 => {
                round.lanes[usize::from(lane)] = None;
                as_endpoint(RECEIVER, || round.receiver.lane_closed(now, lane));
                as_endpoint(SENDER, || round.sender.lane_closed(now, lane));
                return Ok(Flow::LaneBroke);
            }
            Fault::Disconnect | Fault::PathCut | Fault::CrashReceiver => {
                link.send(&mut round.paths[0], now, &out[..offset], world, rng);
                if fault == Fault::CrashReceiver {
                    self.disk.crash(rng);
                }
                return Ok(Flow::Ends);
            }
            Fault::CrashSender => {
                link.send(&mut round.paths[0], now, &out[..offset], world, rng);
                self.sender_died(round)?;
                return Ok(Flow::Ends);
            }
            Fault::DiskFull => self.disk.failing = Some(DiskErrorKind::NoSpace),
            Fault::PermissionDenied => self.disk.failing = Some(DiskErrorKind::PermissionDenied),
            Fault::FlipBit => out[offset] ^= 1 << (rng.next_u64() % 8),
            Fault::DropChunk => {
                let cut = (offset + rng.range(1, 500) as usize).min(out.len());
                out.drain(offset..cut);
            }
            Fault::DuplicateChunk => {
                let cut = (offset + rng.range(1, 500) as usize).min(out.len());
                let copy = out[offset..cut].to_vec();
                out.splice(offset..offset, copy);
            }
            // The path stalls, for every connection on it.
            Fault::Stall => {
                round.paths[0].free_at_ns = u128::from(now.as_micros() + 200_000_000) * 1000;
            }
            Fault::SourceChanges => self.change_a_source(),
        }
        Ok(Flow::Goes)
    }

    /// A source file changes at both ends: a file read across this moment is torn (old
    /// start, new end), a content that never existed. Half the time the change shows in
    /// its size or mtime.
    fn change_a_source(&mut self) {
        let files: Vec<usize> = (0..self.source.files.len())
            .filter(|&i| self.source.files[i].as_ref().is_some_and(|d| !d.is_empty()))
            .collect();
        let Some(&file) = files.get(self.rng.range(0, files.len() as u64) as usize) else {
            return;
        };
        let visible = self.rng.range(0, 2) == 0;
        self.source.change(file, visible, |data| {
            let last = data.len() - 1;
            data[0] ^= 0x5a;
            data[last] ^= 0xa5;
        });
        if let Some(Some(data)) = self.source.files.get(file) {
            self.history[file].push(data.clone());
        }
    }

    /// The sender's process died: what it wrote still arrives, then the end of the
    /// stream; the receiver keeps what it can.
    fn sender_died(&mut self, round: &mut Round) -> Result<(), String> {
        while let Some((at, bytes)) = round.forward.queue.pop_front() {
            self.now = self.now.max(at);
            let mut taken = 0;
            while taken < bytes.len() {
                let now = self.now;
                let receiver = &mut round.receiver;
                let more = feed(RECEIVER, &bytes[taken..], |b| receiver.handle_input(now, b));
                self.receiver_work(round)?;
                // Its hashing thread finishes what it has (and its AEAD threads: a record
                // out being opened is taken once back).
                let mut woke = false;
                while self.hash_passes_now(round) {
                    woke = true;
                    self.receiver_work(round)?;
                }
                // Its answers go nowhere now; a receiver that can take no more has what
                // it can get.
                let back = round.receiver.poll_transmit().len();
                round.receiver.advance_transmit(back);
                if more == 0 && back == 0 && !woke {
                    break;
                }
                taken += more;
            }
        }
        while self.hash_passes_now(round) {
            self.receiver_work(round)?;
        }
        let now = self.now;
        let _ = as_endpoint(RECEIVER, || round.receiver.handle_eof(now));
        self.receiver_work(round)?;
        let error = round.receiver.error();
        let _ = writeln!(self.trace, "  receiver after the end: {error:?}");
        Ok(())
    }

    /// The receiver's outputs, until it has none: only then may time pass. A failing
    /// session is the fault doing its work; the loop ends it.
    fn receiver_work(&mut self, round: &mut Round) -> Result<(), String> {
        let (now, local, changes_expected) = (self.now, &round.local, self.changes_expected);
        let trace = &mut self.trace;
        let mut wrong = None;
        let mut wanted = Vec::new();
        let (delay, disk) = (self.world.write_delay, &mut self.disk);
        let drained = as_endpoint(RECEIVER, || {
            drain_receiver(
                &mut round.receiver,
                &mut round.writes,
                now,
                delay,
                &mut Charged(disk),
                |receiver, event| {
                    match event {
                        TransferEvent::BatchOffered { .. } => return receiver.accept(now, local),
                        TransferEvent::LaneWanted { lane } => wanted.push(lane),
                        TransferEvent::FileFailed { entry, .. } if !changes_expected => {
                            wrong.get_or_insert(format!(
                                "entry {entry} failed although the source never changed"
                            ));
                        }
                        TransferEvent::Finished { committed, failed } => {
                            let _ = writeln!(
                                trace,
                                "  finished: {committed} committed, {failed} failed"
                            );
                        }
                        _ => {}
                    }
                    Ok(())
                },
            )
        });
        drop(drained);
        // A lane's connection is up a round trip after the receiver asks for it.
        let up = after(now, 2 * self.world.latency);
        round
            .connecting
            .extend(wanted.into_iter().map(|lane| (up, lane)));
        match (wrong, self.disk.violations.first()) {
            (Some(wrong), _) => Err(wrong),
            (None, Some(violation)) => Err(violation.clone()),
            (None, None) => Ok(()),
        }
    }

    /// Runs the passes the sessions gave out, each on its side's chain in the order
    /// given, and the batches of records the sender gave out to seal, each to come back
    /// after a delay drawn for it (so they come back in any order), and gives back those
    /// due now: true if any went either way.
    fn hash_passes(&mut self, round: &mut Round) -> bool {
        let (now, delay) = (self.now, self.world.hash_delay);
        let mut moved = false;
        for who in [SENDER, RECEIVER] {
            loop {
                let work = if who == SENDER {
                    round.sender.poll_work()
                } else {
                    round.receiver.poll_work()
                };
                let Some(mut work) = work else { break };
                let side = usize::from(who == RECEIVER);
                work.run(&mut round.chains[side]);
                let back = after(now, self.rng.range(0, delay + 1));
                round
                    .passes
                    .push((back, who, round.passes_given[side], work));
                round.passes_given[side] += 1;
                moved = true;
            }
        }
        while let Some(at) = round.passes.iter().position(|(back, ..)| *back <= now) {
            let (_, who, place, work) = round.passes.swap_remove(at);
            if let Some(&(_, _, before, _)) = round
                .passes
                .iter()
                .find(|(_, w, before, _)| *w == who && *before < place)
            {
                let _ = writeln!(
                    self.trace,
                    "  pass {place} of {} back before pass {before}",
                    if who == SENDER { "sender" } else { "receiver" }
                );
            }
            let _ = if who == SENDER {
                as_endpoint(SENDER, || round.sender.work_done(now, work))
            } else {
                as_endpoint(RECEIVER, || round.receiver.work_done(now, work))
            };
            moved = true;
        }
        moved |= self.give_out_batches(round);
        while let Some(at) = round.batches.iter().position(|(back, _)| *back <= now) {
            let (_, work) = round.batches.swap_remove(at);
            let _ = as_endpoint(SENDER, || round.sender.seal_done(work));
            moved = true;
        }
        while let Some(at) = round.opens.iter().position(|(back, _)| *back <= now) {
            let (_, work) = round.opens.swap_remove(at);
            let _ = as_endpoint(RECEIVER, || round.receiver.open_done(work));
            moved = true;
        }
        moved
    }

    /// The sender's records waiting to be sealed, sealed on its "threads", and the
    /// receiver's waiting to be opened, opened, each to come back after a delay drawn for
    /// it (in any order): true if there were any.
    fn give_out_batches(&mut self, round: &mut Round) -> bool {
        let (now, delay) = (self.now, self.world.hash_delay);
        let mut any = false;
        while let Some(mut work) = round.sender.poll_seal_work() {
            work.run();
            let back = after(now, self.rng.range(0, delay + 1));
            round.batches.push((back, work));
            any = true;
        }
        while let Some(mut work) = round.receiver.poll_open_work() {
            work.run();
            let back = after(now, self.rng.range(0, delay + 1));
            round.opens.push((back, work));
            any = true;
        }
        any
    }

    /// [`Sim::hash_passes`], every pass and batch out coming back now.
    fn hash_passes_now(&mut self, round: &mut Round) -> bool {
        let now = self.now;
        for (back, ..) in &mut round.passes {
            *back = (*back).min(now);
        }
        for (back, _) in &mut round.batches {
            *back = (*back).min(now);
        }
        for (back, _) in &mut round.opens {
            *back = (*back).min(now);
        }
        self.hash_passes(round)
    }

    /// The sender's outputs: its reads of the source, its events (not checked here).
    fn sender_work(&mut self, sender: &mut SenderSession) {
        let now = self.now;
        let source = &mut Charged(&mut self.source);
        let _ = as_endpoint(SENDER, || drain(sender, now, source, |_, _| Ok(())));
    }
}

/// The receiver's outputs, as [`drain`] takes them, but with its writes finishing
/// `delay` µs after it gives them out (in order), as where a driver writes on a thread of
/// its own: the write lands on the disk, and the session hears of it, only then.
fn drain_receiver(
    receiver: &mut ReceiverSession,
    writes: &mut VecDeque<(Timestamp, DiskCommand)>,
    now: Timestamp,
    delay: u64,
    storage: &mut dyn Storage,
    mut on_event: impl FnMut(&mut ReceiverSession, TransferEvent) -> Result<(), TransferError>,
) -> Result<(), TransferError> {
    if delay == 0 {
        return drain(receiver, now, storage, on_event).map(drop);
    }
    loop {
        // A write that falls due is carried out now: `carry_out` writes it and reports it
        // done, as a driver's writer thread would.
        while writes.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, write)) = writes.pop_front() {
                // Its bytes are still the session's, whole, for as long as it is out.
                if let DiskCommand::Write { len, .. } = write {
                    assert_eq!(
                        receiver.write_bytes(&write).len(),
                        len,
                        "a write's bytes went"
                    );
                }
                receiver.carry_out(now, write, storage)?;
            }
        }
        match receiver.poll_output() {
            Output::Disk(write @ DiskCommand::Write { .. }) => {
                writes.push_back((after(now, delay), write));
            }
            Output::Disk(command) => receiver.carry_out(now, command, storage)?,
            Output::Event(event) => on_event(receiver, event)?,
            Output::Timeout(_) => return Ok(()),
        }
    }
}

/// Offers `bytes` to endpoint `who` through `input` (one of its session's input calls);
/// returns how many it took. It takes fewer when its queues or send buffer are full: the
/// rest stays on the link, as in a socket's receive buffer, until the next step has
/// drained them. A failed session takes everything.
fn feed(
    who: usize,
    bytes: &[u8],
    mut input: impl FnMut(&[u8]) -> Result<usize, ferry_core::transfer::TransferError>,
) -> usize {
    let mut at = 0;
    while at < bytes.len() {
        match as_endpoint(who, || input(&bytes[at..])) {
            Ok(0) => return at,
            Ok(n) => at += n,
            Err(_) => return bytes.len(),
        }
    }
    at
}

/// Nothing committed may differ from its source: it must be a content the file had (as it
/// was when the attempt that delivered it began), never a mix of two.
fn check_committed(
    world: &World,
    history: &[Vec<Vec<u8>>],
    disk: &MemoryDisk,
) -> Result<(), String> {
    for (entry, data) in &disk.committed {
        let (path, _) = &world.items[*entry];
        if !history[*entry].contains(data) {
            return Err(format!(
                "{path} was committed with content that differs from the source"
            ));
        }
    }
    Ok(())
}

/// A digest of a run's trace: equal seeds must give equal digests.
pub fn fingerprint(outcome: &Outcome) -> String {
    hex::encode(Sha256::digest(outcome.trace.as_bytes()))
}

/// Every kind of fault, for drawing one.
pub const ALL_FAULTS: [Fault; 11] = [
    Fault::Disconnect,
    Fault::PathCut,
    Fault::FlipBit,
    Fault::DropChunk,
    Fault::DuplicateChunk,
    Fault::Stall,
    Fault::SourceChanges,
    Fault::CrashSender,
    Fault::DiskFull,
    Fault::PermissionDenied,
    Fault::CrashReceiver,
];

/// The fuzz target's body: a world whose batch comes from a seed and whose link and
/// fault schedule come from `data`, run to the end. Panics, with the world and its trace,
/// if an invariant breaks.
pub fn fuzz_world(data: &[u8]) {
    let mut input = arbitrary::Unstructured::new(data);
    let mut world = World::from_seed(input.arbitrary().unwrap_or_default());
    let total: u64 = world
        .items
        .iter()
        .filter_map(|(_, d)| d.as_ref())
        .map(|d| d.len() as u64)
        .sum();
    world.latency = input.int_in_range(0..=100_000).unwrap_or(0);
    world.jitter = input.int_in_range(0..=50_000).unwrap_or(0);
    world.bandwidth = input
        .int_in_range(10_000..=1_000_000_000)
        .unwrap_or(1_000_000);
    world.max_chunk = input.int_in_range(1..=100_000).unwrap_or(1);
    world.send_buffer = 1 << input.int_in_range(8..=24).unwrap_or(16);
    world.faults.clear();
    for _ in 0..input.int_in_range(0..=6).unwrap_or(0) {
        let at = input.int_in_range(0..=total + 4000).unwrap_or(0);
        let fault = match *input.choose(&ALL_FAULTS).unwrap_or(&Fault::Disconnect) {
            // The fuzz build's stand-in AEAD lets a flipped bit through (into a manifest,
            // say) where the real one fails the record and ends the session: do that.
            Fault::FlipBit if ferry_core::fuzz::STAND_IN_AEAD => Fault::Disconnect,
            fault => fault,
        };
        world.faults.push((at, fault));
    }
    let outcome = run(&world);
    if let Err(error) = &outcome.result {
        panic!(
            "{error}\nworld: {}\ntrace:\n{}",
            world.summary(),
            outcome.trace
        );
    }
}
