//! Deterministic simulation of whole transfers: two sessions joined by a seeded link, a
//! virtual clock, an in-memory receiver disk that loses unsynced writes when it crashes,
//! and faults (disconnects, flipped bits, dropped or duplicated chunks, stalls, crashes).
//! After a fault both sides start new sessions with new tokens and keys, and the receiver
//! resumes from what survived. Everything follows from one seed: `SIM_SEED=n` replays it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use ferry_core::transfer::{
    DiskCommand, DiskError, DiskErrorKind, EntryKind, FileMeta, FileStatus, Manifest,
    ManifestEntry, ReceiverSession, SenderSession, TransferConfig, TransferEvent,
};
use ferry_core::{Entropy, SeededEntropy, Timestamp, Token};
use sha2::{Digest, Sha256};

/// Random choices, all from the seed.
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

/// A seeded source of simulation choices.
pub struct Rng(SeededEntropy);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(SeededEntropy::new(seed))
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// A value in `low..high` (`low` if empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            low + self.next_u64() % (high - low)
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Something that goes wrong, at a point in the sender-to-receiver byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection breaks.
    Disconnect,
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
    /// Faults, each at a byte offset of a session's sender-to-receiver stream.
    pub faults: Vec<(u64, Fault)>,
    /// The batch: paths and contents (`None` for directories).
    pub items: Vec<(String, Option<Vec<u8>>)>,
    /// The engine settings of both sides.
    pub config: TransferConfig,
    /// Run the receiver with its verification switched off (a planted bug the sweep must
    /// catch).
    pub broken_verification: bool,
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
            rng.0.fill(&mut data);
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
                0 => Fault::Disconnect,
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
            faults,
            items,
            config,
            broken_verification: false,
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
            "latency {} µs (jitter {} µs), {} B/s, chunks up to {} B, send buffer {} B, faults {:?}, items [{}], part {} B, segment {} B, in flight {}, compress {}",
            self.latency,
            self.jitter,
            self.bandwidth,
            self.max_chunk,
            self.send_buffer,
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
                mtime: 0,
                sha256: data.as_ref().map(|d| Sha256::digest(d).into()),
            })
            .collect();
        Manifest::from_entries(&entries, &Default::default()).unwrap_or_default()
    }
}

/// The receiver's disk: what is written, what is durable, and the durable resume state.
///
/// Durability is kept as lengths, so that a sync costs nothing per byte: the first
/// `durable_len` bytes of a `.part` file are on disk. A file rewritten below that length
/// or removed before the next sync keeps its durable content aside (`before_sync`), as
/// that is what a crash brings back.
#[derive(Default, Debug)]
struct Disk {
    /// `.part` files as written.
    current: BTreeMap<usize, Vec<u8>>,
    /// How much of each `.part` file is durable.
    durable_len: BTreeMap<usize, usize>,
    /// The durable content of files overwritten or removed since the last sync.
    before_sync: BTreeMap<usize, Vec<u8>>,
    /// Committed files, and the ones whose rename is durable.
    committed: BTreeMap<usize, Vec<u8>>,
    committed_durable: BTreeSet<usize>,
    /// The lock file: verified bytes per entry, written only after a sync.
    lock: BTreeMap<usize, u64>,
    /// Writes fail with this until the session ends (disk full, permission lost).
    failing: Option<DiskErrorKind>,
}

impl Disk {
    fn sync(&mut self) {
        self.durable_len = self.current.iter().map(|(e, d)| (*e, d.len())).collect();
        self.before_sync.clear();
        self.committed_durable = self.committed.keys().copied().collect();
    }

    /// About to change `entry` below `from` (or remove it): keep its durable content.
    fn preserve(&mut self, entry: usize, from: usize) {
        let durable = self.durable_len.get(&entry).copied().unwrap_or(0);
        if from < durable && !self.before_sync.contains_key(&entry) {
            let file = self
                .current
                .get(&entry)
                .map_or(&[][..], |d| &d[..durable.min(d.len())]);
            self.before_sync.insert(entry, file.to_vec());
            self.durable_len.insert(entry, 0);
        }
    }

    fn write(&mut self, entry: usize, offset: usize, data: &[u8]) {
        self.preserve(entry, offset);
        let file = self.current.entry(entry).or_default();
        let end = offset + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[offset..end].copy_from_slice(data);
    }

    fn remove(&mut self, entry: usize) -> Option<Vec<u8>> {
        self.preserve(entry, 0);
        self.durable_len.remove(&entry);
        self.current.remove(&entry)
    }

    /// A crash: what was not yet synced is lost or torn. A torn file keeps a random
    /// part of its unsynced tail, sometimes with a hole where a block never reached the
    /// disk; the lock never claims those bytes, so a resume must not trust them.
    fn crash(&mut self, rng: &mut Rng) {
        let mut after = core::mem::take(&mut self.before_sync);
        for (entry, written) in &self.current {
            if after.contains_key(entry) {
                continue;
            }
            let durable = self.durable_len.get(entry).copied().unwrap_or(0);
            let mut kept = durable;
            if written.len() > durable && !rng.chance(30) {
                kept = rng.range(durable as u64, written.len() as u64 + 1) as usize;
            }
            if kept == 0 && durable == 0 && !self.durable_len.contains_key(entry) {
                continue;
            }
            let mut torn = written[..kept].to_vec();
            if kept > durable && rng.chance(50) {
                let hole = rng.range(durable as u64, kept as u64) as usize;
                let end = (hole + rng.range(1, 8192) as usize).min(kept);
                torn[hole..end].fill(0);
            }
            after.insert(*entry, torn);
        }
        self.current = after;
        self.sync_lengths_after_crash();
        let durable = &self.committed_durable;
        self.committed.retain(|e, _| durable.contains(e));
    }

    /// After a crash, everything left on disk is durable.
    fn sync_lengths_after_crash(&mut self) {
        self.durable_len = self.current.iter().map(|(e, d)| (*e, d.len())).collect();
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

struct Link {
    queue: VecDeque<(Timestamp, Vec<u8>)>,
    /// When the serialiser is free, in nanoseconds (µs would round every small write
    /// down and make the link faster than its bandwidth).
    free_at_ns: u128,
    sent: u64,
    /// The reader left bytes behind: the link waits for the reader, not for time.
    blocked: bool,
}

impl Link {
    fn new() -> Self {
        Link {
            queue: VecDeque::new(),
            free_at_ns: 0,
            sent: 0,
            blocked: false,
        }
    }

    /// Bytes waiting to be serialised at `now`.
    fn backlog(&self, now: Timestamp, world: &World) -> u64 {
        let waiting = self
            .free_at_ns
            .saturating_sub(u128::from(now.as_micros()) * 1000);
        (waiting * u128::from(world.bandwidth) / 1_000_000_000) as u64
    }

    /// How much a writer may hand over at `now` (the send buffer's free room).
    fn room(&self, now: Timestamp, world: &World) -> usize {
        (world.send_buffer as u64).saturating_sub(self.backlog(now, world)) as usize
    }

    /// When a full send buffer next has room for a useful write (a quarter of it, as a
    /// socket reports writable only past its low-water mark).
    fn room_at(&self, world: &World) -> Timestamp {
        let keep = world.send_buffer as u64 - (world.send_buffer as u64 / 4).max(1);
        let drain = keep * 1_000_000 / world.bandwidth.max(1);
        let free_at = (self.free_at_ns / 1000) as u64;
        Timestamp::from_micros(free_at.saturating_sub(drain) + 1)
    }

    /// Hands as much of `transmit` to the link as its send buffer takes.
    fn take(&self, now: Timestamp, world: &World, transmit: &[u8]) -> usize {
        transmit.len().min(self.room(now, world))
    }

    /// Queues `bytes` cut into random chunks; ordered, serialised at the bandwidth.
    fn send(&mut self, now: Timestamp, mut bytes: &[u8], world: &World, rng: &mut Rng) {
        while !bytes.is_empty() {
            let len = (rng.range(1, world.max_chunk as u64 + 1) as usize).min(bytes.len());
            let (chunk, rest) = bytes.split_at(len);
            let start = self.free_at_ns.max(u128::from(now.as_micros()) * 1000);
            let busy = len as u128 * 1_000_000_000 / u128::from(world.bandwidth.max(1));
            self.free_at_ns = start + busy;
            let done = self.free_at_ns.div_ceil(1000) as u64;
            let delay = world.latency + rng.range(0, world.jitter + 1);
            let at = Timestamp::from_micros(done + delay);
            // In order: never before the chunk ahead of it.
            let at = self.queue.back().map_or(at, |(ahead, _)| at.max(*ahead));
            self.queue.push_back((at, chunk.to_vec()));
            self.sent += len as u64;
            bytes = rest;
        }
    }
}

/// Runs `world` to the end and checks the invariants.
pub fn run(world: &World) -> Outcome {
    let mut trace = String::new();
    let mut clock = Timestamp::ZERO;
    let result = simulate(world, &mut trace, &mut clock);
    let sessions = trace.matches("session ").count();
    let _ = writeln!(trace, "result: {result:?}");
    Outcome {
        sessions,
        trace,
        result,
        virtual_micros: clock.as_micros(),
    }
}

fn simulate(world: &World, trace: &mut String, clock: &mut Timestamp) -> Result<(), String> {
    let mut rng = Rng::new(world.seed ^ 0xd15c);
    let manifest = world.manifest();
    // The files as they are now at the sender (a SourceChanges fault alters them).
    let mut source: Vec<Option<Vec<u8>>> = world.items.iter().map(|(_, d)| d.clone()).collect();
    // Every content each file has had, oldest first: what may be committed.
    let mut history: Vec<Vec<Vec<u8>>> = world
        .items
        .iter()
        .map(|(_, d)| d.iter().cloned().collect())
        .collect();
    // Changes a driver can see (size or mtime moved), per file; a quiet change (content
    // only, as `touch -r` leaves it) is not counted and only the manifest hash catches it.
    let mut visible_changes: Vec<usize> = vec![0; world.items.len()];
    let changes_expected = world.faults.iter().any(|(_, f)| *f == Fault::SourceChanges);
    let mut disk = Disk::default();
    let mut faults: VecDeque<(u64, Fault)> = {
        let mut f = world.faults.clone();
        f.sort_by_key(|(at, _)| *at);
        f.into()
    };
    let max_sessions = world.faults.len() + 2;
    let mut now = Timestamp::ZERO;
    for session in 1..=max_sessions {
        let mut entropy = SeededEntropy::new(rng.next_u64());
        let token = Token::generate(&mut entropy);
        let _ = writeln!(trace, "session {session} at {} µs", now.as_micros());
        // A new sender serves the manifest as it was listed: each file's first attempt is
        // judged against the file as it was then.
        let mut attempt_began: Vec<usize> = vec![0; history.len()];
        let mut sender = as_endpoint(SENDER, || {
            SenderSession::new(
                world.config.clone(),
                token.clone(),
                manifest.clone(),
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
        // What survived: durable partial files as far as the lock says, complete files.
        let mut local: Vec<(usize, u64)> = disk
            .lock
            .iter()
            .map(|(e, n)| (*e, *n))
            .filter(|(_, n)| *n > 0)
            .collect();
        local.extend(
            disk.committed
                .iter()
                .map(|(e, d)| (*e, d.len() as u64))
                .filter(|(_, n)| *n > 0),
        );
        let mut forward = Link::new();
        let mut backward = Link::new();
        let fault_here = faults.front().copied();
        let mut fired = false;
        let mut finished = false;
        // The receiver's disk and events, with what stays fixed for this session.
        let settle = |receiver: &mut ReceiverSession, disk: &mut Disk, now, trace: &mut String| {
            receiver_work(
                receiver,
                disk,
                &local,
                now,
                &manifest,
                trace,
                changes_expected,
            )
        };
        // Steps in a row in which no virtual time passed: a session that keeps stepping
        // without time passing is spinning, which is a failure of its own.
        let mut steps_without_time = 0u32;
        loop {
            settle(&mut receiver, &mut disk, now, trace)?;
            // The sender's disk. A read of a file that changed since its attempt began
            // comes back short, as the std driver's size-and-mtime check makes it.
            while let Some(command) = sender.poll_disk() {
                match command {
                    DiskCommand::Read {
                        id,
                        entry,
                        offset,
                        len,
                    } => {
                        let data = source.get(entry).and_then(|d| d.as_deref()).unwrap_or(&[]);
                        let start = (offset as usize).min(data.len());
                        let end = (start + len).min(data.len());
                        let changed = visible_changes[entry] != attempt_began[entry];
                        let n = if changed { 0 } else { end - start };
                        sender.read_buffer(id)[..n].copy_from_slice(&data[start..start + n]);
                        let _ = as_endpoint(SENDER, || sender.handle_read_done(now, id, Ok(n)));
                    }
                    DiskCommand::Reopen { entry } => {
                        attempt_began[entry] = visible_changes[entry];
                        let meta = FileMeta {
                            size: source[entry].as_ref().map_or(0, |d| d.len() as u64),
                            mtime: visible_changes[entry] as i64,
                        };
                        let _ =
                            as_endpoint(SENDER, || sender.handle_reopen_done(now, entry, Ok(meta)));
                    }
                    _ => {}
                }
            }
            while sender.poll_event().is_some() {}
            // The wire, with the fault of this session: as much as the socket takes.
            let take = forward.take(now, world, sender.poll_transmit());
            let mut out = sender.poll_transmit()[..take].to_vec();
            sender.advance_transmit(take);
            if let Some((at, fault)) = fault_here.filter(|_| !fired) {
                let end = forward.sent + out.len() as u64;
                if at < end && at >= forward.sent {
                    let offset = (at - forward.sent) as usize;
                    fired = true;
                    let _ = writeln!(trace, "  fault {fault:?} at byte {at}");
                    match fault {
                        Fault::Disconnect | Fault::CrashReceiver => {
                            forward.send(now, &out[..offset], world, &mut rng);
                            if fault == Fault::CrashReceiver {
                                disk.crash(&mut rng);
                            }
                            break;
                        }
                        Fault::CrashSender => {
                            // What the sender wrote still arrives, then the end of the
                            // stream; the receiver keeps what it can.
                            forward.send(now, &out[..offset], world, &mut rng);
                            while let Some((at, bytes)) = forward.queue.pop_front() {
                                now = now.max(at);
                                let mut taken = 0;
                                while taken < bytes.len() {
                                    let more = feed_receiver(&mut receiver, now, &bytes[taken..]);
                                    settle(&mut receiver, &mut disk, now, trace)?;
                                    // Its answers go nowhere now; a receiver that can take
                                    // no more has what it can get.
                                    let back = receiver.poll_transmit().len();
                                    receiver.advance_transmit(back);
                                    if more == 0 && back == 0 {
                                        break;
                                    }
                                    taken += more;
                                }
                            }
                            *clock = now;
                            let _ = as_endpoint(RECEIVER, || receiver.handle_eof(now));
                            settle(&mut receiver, &mut disk, now, trace)?;
                            let _ =
                                writeln!(trace, "  receiver after the end: {:?}", receiver.error());
                            break;
                        }
                        Fault::DiskFull | Fault::PermissionDenied => {
                            disk.failing = Some(if fault == Fault::DiskFull {
                                DiskErrorKind::NoSpace
                            } else {
                                DiskErrorKind::PermissionDenied
                            });
                        }
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
                        Fault::Stall => {
                            forward.free_at_ns = u128::from(now.as_micros() + 200_000_000) * 1000;
                        }
                        Fault::SourceChanges => {
                            let files: Vec<usize> = (0..source.len())
                                .filter(|i| source[*i].as_ref().is_some_and(|d| !d.is_empty()))
                                .collect();
                            if let Some(&file) =
                                files.get(rng.range(0, files.len() as u64) as usize)
                            {
                                // Both ends change: a file read across this moment is torn
                                // (old start, new end), a content that never existed.
                                if let Some(data) = source[file].as_mut() {
                                    let last = data.len() - 1;
                                    data[0] ^= 0x5a;
                                    data[last] ^= 0xa5;
                                    history[file].push(data.clone());
                                    if rng.range(0, 2) == 0 {
                                        visible_changes[file] += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            forward.send(now, &out, world, &mut rng);
            let take = backward.take(now, world, receiver.poll_transmit());
            let back = receiver.poll_transmit()[..take].to_vec();
            receiver.advance_transmit(take);
            backward.send(now, &back, world, &mut rng);

            if sender.is_finished() && receiver.is_finished() {
                finished = true;
                break;
            }
            if sender.error().is_some() || receiver.error().is_some() {
                let _ = writeln!(
                    trace,
                    "  ended: sender {:?}, receiver {:?}",
                    sender.error(),
                    receiver.error()
                );
                break;
            }
            // Advance to the next delivery or timer.
            let arrival = |link: &Link| {
                link.queue
                    .front()
                    .filter(|_| !link.blocked)
                    .map(|(at, _)| *at)
            };
            let next = [
                arrival(&forward),
                arrival(&backward),
                sender.poll_timeout(),
                receiver.poll_timeout(),
                (!sender.poll_transmit().is_empty()).then(|| forward.room_at(world)),
                (!receiver.poll_transmit().is_empty()).then(|| backward.room_at(world)),
            ]
            .into_iter()
            .flatten()
            .min();
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
                    trace,
                    "  {} µs: {}\n    {}",
                    now.as_micros(),
                    sender.describe(),
                    receiver.describe()
                );
            }
            if next <= now {
                steps_without_time += 1;
                if steps_without_time > 100_000 {
                    return Err(format!(
                        "session {session} spins: {steps_without_time} steps without time passing at {} µs",
                        now.as_micros()
                    ));
                }
            } else {
                steps_without_time = 0;
            }
            now = now.max(next);
            *clock = now;
            deliver(&mut forward, now, |bytes| {
                feed_receiver(&mut receiver, now, bytes)
            });
            deliver(&mut backward, now, |bytes| {
                feed_sender(&mut sender, now, bytes)
            });
            let _ = as_endpoint(SENDER, || sender.handle_timeout(now));
            let _ = as_endpoint(RECEIVER, || receiver.handle_timeout(now));
        }
        if fired {
            faults.pop_front();
        }
        // The operator frees space or restores permissions before running it again.
        disk.failing = None;
        check_committed(world, &history, &disk)?;
        if finished {
            for (entry, data) in source.iter().enumerate().filter(|(_, d)| d.is_some()) {
                if disk.committed.get(&entry) != data.as_ref() && !changes_expected {
                    return Err(format!(
                        "{} is not in place after the batch finished",
                        world.items[entry].0
                    ));
                }
            }
            return Ok(());
        }
    }
    Err(format!("not finished after {max_sessions} sessions"))
}

/// The receiver's disk and events, until neither yields more work (accepting a batch
/// queues reads, a finished read queues the next): only then may time pass.
fn receiver_work(
    receiver: &mut ReceiverSession,
    disk: &mut Disk,
    local: &[(usize, u64)],
    now: Timestamp,
    manifest: &Manifest,
    trace: &mut String,
    changes_expected: bool,
) -> Result<(), String> {
    loop {
        let mut worked = false;
        while let Some(command) = receiver.poll_disk() {
            worked = true;
            apply(disk, receiver, command, now, manifest)?;
        }
        while let Some(event) = receiver.poll_event() {
            worked = true;
            match event {
                // A failing session is the fault doing its work; the loop ends it below.
                TransferEvent::BatchOffered { .. } => {
                    drop(as_endpoint(RECEIVER, || receiver.accept(now, local)))
                }
                TransferEvent::FileFailed { entry, .. } if !changes_expected => {
                    return Err(format!(
                        "entry {entry} failed although the source never changed"
                    ));
                }
                TransferEvent::Finished { committed, failed } => {
                    let _ = writeln!(trace, "  finished: {committed} committed, {failed} failed");
                }
                _ => {}
            }
        }
        if !worked {
            return Ok(());
        }
    }
}

/// Hands the link's arrived chunks to `to`, which returns how much it took; what it
/// leaves stays first in line, and the link waits until the next step.
fn deliver(link: &mut Link, now: Timestamp, mut to: impl FnMut(&[u8]) -> usize) {
    link.blocked = false;
    while link.queue.front().is_some_and(|(at, _)| *at <= now) {
        let Some((at, bytes)) = link.queue.pop_front() else {
            return;
        };
        let taken = to(&bytes);
        if taken < bytes.len() {
            link.queue.push_front((at, bytes[taken..].to_vec()));
            link.blocked = true;
            return;
        }
    }
}

/// Offers `bytes` to the receiver; returns how many it took. It takes fewer when its
/// queues or send buffer are full: the rest stays on the link, as in a socket's receive
/// buffer, until the next step has drained them. A failed session takes everything.
fn feed_receiver(receiver: &mut ReceiverSession, now: Timestamp, bytes: &[u8]) -> usize {
    let mut at = 0;
    while at < bytes.len() {
        match as_endpoint(RECEIVER, || receiver.handle_input(now, &bytes[at..])) {
            Ok(0) => return at,
            Ok(n) => at += n,
            Err(_) => return bytes.len(),
        }
    }
    at
}

/// As [`feed_receiver`], for the sender.
fn feed_sender(sender: &mut SenderSession, now: Timestamp, bytes: &[u8]) -> usize {
    let mut at = 0;
    while at < bytes.len() {
        match as_endpoint(SENDER, || sender.handle_input(now, &bytes[at..])) {
            Ok(0) => return at,
            Ok(n) => at += n,
            Err(_) => return bytes.len(),
        }
    }
    at
}

/// Carries out one disk command; a session that fails on the completion ends the session.
/// Fails if a checkpoint would put a hash in the lock that is not the SHA-256 of the
/// bytes it claims.
fn apply(
    disk: &mut Disk,
    receiver: &mut ReceiverSession,
    command: DiskCommand,
    now: Timestamp,
    manifest: &Manifest,
) -> Result<(), String> {
    match command {
        DiskCommand::Read {
            id,
            entry,
            offset,
            len,
        } => {
            let data = disk
                .current
                .get(&entry)
                .or(disk.committed.get(&entry))
                .map_or(&[][..], Vec::as_slice);
            let start = (offset as usize).min(data.len());
            let end = (start + len).min(data.len());
            receiver.read_buffer(id)[..end - start].copy_from_slice(&data[start..end]);
            let _ = as_endpoint(RECEIVER, || {
                receiver.handle_read_done(now, id, Ok(end - start))
            });
        }
        DiskCommand::Write {
            id,
            entry,
            offset,
            len,
        } => {
            if let Some(kind) = disk.failing {
                let error = DiskError {
                    kind,
                    detail: "simulated".into(),
                };
                let _ = as_endpoint(RECEIVER, || receiver.handle_write_done(now, id, Err(error)));
                return Ok(());
            }
            disk.write(entry, offset as usize, &receiver.write_data(id)[..len]);
            let _ = as_endpoint(RECEIVER, || receiver.handle_write_done(now, id, Ok(())));
        }
        DiskCommand::Commit { entry } => {
            let size = manifest.get(entry).map_or(0, |e| e.size) as usize;
            let mut data = disk
                .remove(entry)
                .or_else(|| disk.committed.get(&entry).cloned())
                .unwrap_or_default();
            data.truncate(size);
            disk.committed.insert(entry, data);
            disk.lock.remove(&entry);
        }
        DiskCommand::Discard { entry } => {
            disk.remove(entry);
            disk.lock.remove(&entry);
        }
        DiskCommand::Checkpoint { changed } => {
            // Durable first, then claimed.
            disk.sync();
            for entry in changed {
                let Some(progress) = receiver.progress(entry) else {
                    continue;
                };
                if progress.status != FileStatus::InProgress {
                    disk.lock.remove(&entry);
                    continue;
                }
                let verified = progress.verified_bytes as usize;
                let data = disk.current.get(&entry).map_or(&[][..], Vec::as_slice);
                let claimed = data
                    .get(..verified)
                    .map(|d| <[u8; 32]>::from(Sha256::digest(d)));
                if verified > 0 && progress.sha256 != claimed {
                    return Err(format!(
                        "the checkpoint of entry {entry} reports a hash that is not the SHA-256 \
                         of its {verified} verified bytes"
                    ));
                }
                disk.lock.insert(entry, progress.verified_bytes);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Nothing committed may differ from its source: it must be a content the file had (as it
/// was when the attempt that delivered it began), never a mix of two.
fn check_committed(world: &World, history: &[Vec<Vec<u8>>], disk: &Disk) -> Result<(), String> {
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
pub const ALL_FAULTS: [Fault; 10] = [
    Fault::Disconnect,
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
        let fault = *input.choose(&ALL_FAULTS).unwrap_or(&Fault::Disconnect);
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
