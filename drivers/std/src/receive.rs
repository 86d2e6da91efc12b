//! `ferry receive`: fetch a batch into a directory, resuming from what is there.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::ops::Range;

use ferry_core::transfer::{
    DiskError, DiskErrorKind, EntryKind, FileFailure, Manifest, Output, ReceiverSession, Session,
    Storage, Target, TransferConfig, TransferError, TransferEvent,
};
use ferry_core::{ConnectionString, Timestamp};

use crate::checkpoint::Checkpointer;
use crate::clock::Clock;
use crate::conn::{Traffic, drive};
use crate::error::DriverError;
use crate::lanes::Lanes;
use crate::lock::{self, LockHeader, LockProblem, Previous, Replaces, write_lock};
use crate::os::meta::{free_space, max_file_size};
use crate::peer::PeerPolicy;
use crate::sink::{Here, Sink};
use crate::{OsEntropy, Report, Reporter, human_size};

/// How to receive.
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    /// Only loopback; no Tailscale check.
    pub pod: bool,
    /// The sender's port.
    pub port: u16,
    /// Where the batch goes.
    pub out_dir: PathBuf,
    /// How long to try connecting.
    pub connect_timeout: Duration,
    /// Replace existing files that differ instead of refusing.
    pub overwrite: bool,
    /// The engine's settings.
    pub config: TransferConfig,
}

/// What a receive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiveSummary {
    /// Files and directories in place.
    pub committed: u64,
    /// Of those, the folders (every folder of the batch: folders never fail).
    pub folders: u64,
    /// Files that were already complete.
    pub skipped: usize,
    /// Files resumed from a partial copy.
    pub resumed: usize,
    /// Bytes already here, verified.
    pub bytes_present: u64,
    /// Bytes received this session.
    pub bytes: u64,
    /// Bytes read from the sockets this session (its connection and its lanes).
    pub wire_bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Checkpoints made while data flowed, and the time the receive's thread spent writing
    /// them (the syncs run beside it).
    pub checkpoints: (u32, Duration),
    /// Connections the last session used (its own and its lanes).
    pub connections: usize,
    /// Its SHA-256 passes ran on a thread of their own.
    pub hash_thread: bool,
    /// Threads of their own that opened its records.
    pub aead_threads: usize,
    /// Its records were opened off the session's thread, at least in part (on the
    /// threads above, or on its hashing thread between passes).
    pub records_shared: bool,
}

/// Connects to the sender and receives its batch into `options.out_dir`.
pub fn receive(
    target: &ConnectionString,
    options: &ReceiveOptions,
    reporter: &mut dyn Reporter,
) -> Result<ReceiveSummary, DriverError> {
    PeerPolicy::new(options.pod).check(target.ip)?;
    // The output directory is taken first: a second receive into it fails before it
    // connects to anyone.
    let mut work = Receiving::open(target, options)?;
    let address = SocketAddr::new(target.ip, options.port);
    let mut stream = connect(address, options.connect_timeout)?;
    let _ = stream.set_nodelay(true);
    let clock = Clock::new();
    let mut session = new_session(target, options, &clock)?;
    let mut traffic = Traffic::default();
    let mut lanes = Lanes::connecting(address, options.connect_timeout);
    let result = drive(
        &mut stream,
        &mut session,
        &clock,
        &mut traffic,
        &mut lanes,
        |session, lanes| {
            let more = work.drain(session, clock.now(), reporter)?;
            for lane in core::mem::take(&mut work.lanes_wanted) {
                lanes.connect(session, &clock, lane);
            }
            Ok(more)
        },
    );
    let (connections, carried) = (lanes.connections(), lanes.carried());
    lanes.finish();
    work.finish(&session, result).map(|summary| ReceiveSummary {
        connections,
        wire_bytes: traffic.received + carried,
        hash_thread: traffic.hash_thread,
        aead_threads: traffic.aead_threads,
        records_shared: traffic.records_shared,
        ..summary
    })
}

/// Connects to `address`, turning the failure into advice.
fn connect(address: SocketAddr, timeout: Duration) -> Result<TcpStream, DriverError> {
    TcpStream::connect_timeout(&address, timeout).map_err(|e| connect_error(address, &e))
}

/// Why a connection to the sender failed, and what to try.
pub fn connect_error(address: SocketAddr, e: &std::io::Error) -> DriverError {
    let hint = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "nothing is listening there; is `ferry send` running, and is the port right?"
        }
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            "no answer; check the address and that the sender can be reached"
        }
        _ => "check the address and the network",
    };
    DriverError::Network(format!("cannot connect to {address}: {e}; {hint}"))
}

/// A new receiver session for `target` and the work that keeps its output directory
/// (opened, and held exclusively, here). Every driver uses the pair.
pub fn start_session(
    target: &ConnectionString,
    options: &ReceiveOptions,
    clock: &Clock,
) -> Result<(ReceiverSession, Receiving), DriverError> {
    let work = Receiving::open(target, options)?;
    Ok((new_session(target, options, clock)?, work))
}

fn new_session(
    target: &ConnectionString,
    options: &ReceiveOptions,
    clock: &Clock,
) -> Result<ReceiverSession, DriverError> {
    Ok(ReceiverSession::new(
        options.config.clone(),
        target.token.clone(),
        &mut OsEntropy,
        clock.now(),
    )?)
}

/// The receiver's side of one session outside the socket: the output directory and its
/// lock file, and the session's events turned into reports.
pub struct Receiving {
    destination: Destination,
    summary: ReceiveSummary,
    failures: Vec<String>,
    files_done: usize,
    /// Per entry: found complete here before the batch, and claimed as such.
    claimed_final: Vec<bool>,
    overwrite: bool,
    sender_ip: String,
    started: Instant,
    /// Lanes the session asked for and the driver is still to open.
    pub lanes_wanted: Vec<u8>,
}

/// The receiver's storage: the output directory, and the lock file its checkpoints write.
struct Destination {
    sink: Sink,
    /// Who writes the lock; set once the plan for a batch is settled. Until then nothing
    /// here has changed, and the lock a stopped run left says what is verified better
    /// than this run can: its claims are still being checked (and a stop in the check
    /// must not write them off).
    lock: Option<LockHeader>,
    checkpoints: Checkpointer,
}

impl Storage for Destination {
    fn read(
        &mut self,
        target: Target<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, DiskError> {
        self.sink.read(target.index, &target.entry, offset, buf)
    }

    fn write(&mut self, target: Target<'_>, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.sink.write(target.index, &target.entry, offset, data)
    }

    /// The checkpoints' syncs done, folders' modes and times, and one sync for all:
    /// before the sender hears the batch is done, so that a failure here fails it at
    /// both ends.
    fn finish(&mut self, session: &ReceiverSession) -> Result<(), DiskError> {
        self.checkpoints
            .settle()
            .and_then(|pending| self.sink.finish(session.manifest(), pending))
            .map_err(|e| DiskError {
                kind: DiskErrorKind::Other,
                detail: e.to_string(),
            })
    }

    fn commit(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        self.sink.commit(target.index, &target.entry)
    }

    fn discard(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        self.sink.discard(target.index, &target.entry)
    }

    fn create_dir(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        self.sink.create_dir(target.index, &target.entry)
    }

    /// The lock claims only writes already done; the checkpoint thread makes them
    /// durable before it publishes the lock, so the transfer goes on while the disk
    /// catches up.
    fn checkpoint(
        &mut self,
        _changed: Range<usize>,
        session: &ReceiverSession,
    ) -> Result<(), DiskError> {
        let Some(header) = &self.lock else {
            return Ok(());
        };
        let written = self.sink.take_written();
        let sink = &self.sink;
        self.checkpoints
            .checkpoint(written, &mut |out| {
                write_lock(
                    out,
                    header,
                    session.manifest(),
                    |i| session.progress(i),
                    |i| sink.replaces(i),
                )
            })
            .map_err(|e| DiskError {
                kind: DiskErrorKind::Other,
                detail: e.to_string(),
            })
    }
}

impl Receiving {
    /// Opens (creating it if needed) and takes the output directory for a receive from
    /// `target`; a temporary lock file a killed run left there is removed.
    pub fn open(target: &ConnectionString, options: &ReceiveOptions) -> Result<Self, DriverError> {
        let sink = Sink::new(&options.out_dir)?;
        lock::remove_stale_temporary(sink.dir())
            .map_err(|e| DriverError::Disk(format!("{}: {e}", sink.root().display())))?;
        Ok(Receiving {
            destination: Destination {
                checkpoints: Checkpointer::new(sink.dir())?,
                sink,
                lock: None,
            },
            summary: ReceiveSummary::default(),
            failures: Vec::new(),
            files_done: 0,
            claimed_final: Vec::new(),
            overwrite: options.overwrite,
            sender_ip: target.ip.to_string(),
            started: Instant::now(),
            lanes_wanted: Vec::new(),
        })
    }

    /// Carries out `session`'s outputs until it waits (`false`), or until it has done
    /// [`crate::DRAIN_BUDGET`]'s worth of disk work with more to do (`true`: drain again
    /// once the loop has looked at its socket): its disk commands against the output
    /// directory, its events as reports and decisions.
    pub fn drain(
        &mut self,
        session: &mut ReceiverSession,
        now: Timestamp,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, DriverError> {
        let mut budget = crate::DRAIN_BUDGET;
        loop {
            match session.poll_output() {
                Output::Disk(command) => {
                    let cost = crate::drain_cost(&command);
                    session.carry_out(now, command, self.storage())?;
                    if let Some(line) = self.destination.checkpoints.disk_full_notice() {
                        reporter.info(line);
                    }
                    budget = budget.saturating_sub(cost);
                    if budget == 0 {
                        return Ok(true);
                    }
                }
                Output::Event(event) => self.handle_event(session, event, now, reporter)?,
                Output::Timeout(_) => return Ok(false),
            }
        }
    }

    /// The output directory, as the session's storage: `.part` files, commits, the lock
    /// file and its checkpoints.
    pub fn storage(&mut self) -> &mut dyn Storage {
        &mut self.destination
    }

    /// Acts on one event of the session: decides what is already here when a batch is
    /// offered (and accepts it, or refuses what would overwrite), checks the space once
    /// the plan is settled, and reports the rest.
    pub fn handle_event(
        &mut self,
        session: &mut ReceiverSession,
        event: TransferEvent,
        now: Timestamp,
        reporter: &mut dyn Reporter,
    ) -> Result<(), DriverError> {
        let destination = &mut self.destination;
        match event {
            TransferEvent::BatchOffered { .. } => {
                let (files, folders, bytes) = crate::batch_counts(session.manifest());
                reporter.report(&Report::Offered {
                    files,
                    folders,
                    bytes,
                });
                offer(
                    session,
                    &mut destination.sink,
                    self.overwrite,
                    reporter,
                    &mut self.claimed_final,
                    now,
                )?;
                destination
                    .checkpoints
                    .reserve(lock::size_estimate(session.manifest()));
            }
            TransferEvent::PlanSettled {
                skipped,
                resumed,
                fresh,
                bytes_present,
                bytes_to_send,
            } => {
                destination.lock = Some(LockHeader {
                    session_id: hex_id(),
                    sender_ip: self.sender_ip.clone(),
                });
                self.summary.skipped = skipped;
                self.summary.resumed = resumed;
                self.summary.bytes_present = bytes_present;
                crate::report_plan(
                    reporter,
                    Report::Plan {
                        skipped,
                        resumed,
                        fresh,
                        bytes_present,
                        bytes_to_send,
                    },
                );
                // A file that was already here complete but differs from the sender's
                // would be replaced: only with --overwrite, or if ours. (Judged by what the
                // plan settled for each file: the core marks files complete later, as its
                // disk queue allows.)
                let manifest = session.manifest();
                let refused: Vec<&str> = (0..manifest.len())
                    .filter(|&e| self.claimed_final.get(e).copied().unwrap_or(false))
                    .filter(|&e| destination.sink.replaces(e).is_none())
                    .filter_map(|e| {
                        let item = manifest.get(e)?;
                        let settled = session.progress(e)?.verified_bytes;
                        (settled != item.size).then_some(item.path)
                    })
                    .collect();
                if !refused.is_empty() && !self.overwrite {
                    let names = listed(&refused);
                    let reason = format!(
                        "{names} already exist(s) in the output directory with other content; not overwriting (use --overwrite, or another -o directory)"
                    );
                    session.cancel(now, &reason);
                    return Err(DriverError::Disk(reason));
                }
                if let Err(error) = check_space(session, &mut destination.sink, bytes_to_send) {
                    session.cancel(now, "the receiver does not have the space for this batch");
                    return Err(error);
                }
                if bytes_to_send == 0 && skipped > 0 {
                    reporter.info(&format!(
                        "All {skipped} {} already here; nothing to send",
                        if skipped == 1 { "file is" } else { "files are" }
                    ));
                }
                reporter.start(skipped + resumed + fresh, bytes_to_send);
            }
            TransferEvent::ResumeCheck { checked, total } => reporter.checking(checked, total),
            TransferEvent::Progress { bytes } => {
                self.summary.bytes = bytes;
                reporter.progress(bytes, self.files_done);
            }
            TransferEvent::FileDone { entry } => {
                self.files_done += 1;
                let path = session.manifest().get(entry).map_or("?", |e| e.path);
                reporter.report(&Report::FileDone { path });
                // A file is done once in place, which may be after its last byte's
                // progress: the count of files done moves on its own.
                reporter.progress(self.summary.bytes, self.files_done);
            }
            TransferEvent::SegmentRejected { segment } => reporter.info(&format!(
                "segment {segment} did not match its hash (a faulty sender?); nothing of it was written, and its files will be fetched again"
            )),
            TransferEvent::FileRetry { entry, attempt } => {
                let path = crate::report_retry(reporter, session.manifest(), entry, attempt);
                reporter.info(&format!(
                    "{path} changed at the sender, or arrived other than promised; fetching it again (attempt {attempt})"
                ));
            }
            TransferEvent::FileFailed { entry, reason } => {
                let path = session
                    .manifest()
                    .get(entry)
                    .map_or("?", |e| e.path)
                    .to_owned();
                let reason = match reason {
                    FileFailure::Unreadable { cause } => {
                        format!("the sender cannot read {path}: {cause}")
                    }
                    FileFailure::KeptChanging { attempts } => format!(
                        "{path} kept changing at the sender; gave up after {attempts} attempts"
                    ),
                    FileFailure::HashMismatch { attempts } => format!(
                        "{path} could not be verified after {attempts} attempts: what arrived is not what the sender promised"
                    ),
                    _ => format!("{path} could not be delivered"),
                };
                reporter.report(&Report::FileFailed {
                    path: &path,
                    reason: &reason,
                });
                reporter.info(&reason);
                self.failures.push(path);
            }
            TransferEvent::LaneWanted { lane } => self.lanes_wanted.push(lane),
            TransferEvent::Finished { committed, .. } => {
                self.summary.committed = committed;
                self.summary.folders = crate::batch_counts(session.manifest()).1;
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the receive (`result` is the loop's outcome). If anything is left to do, a
    /// last checkpoint records exactly what was verified, whatever went wrong, so that a
    /// rerun redoes nothing; otherwise the lock is removed. Before the plan settled,
    /// nothing here changed: the lock is left as it was.
    pub fn finish(
        mut self,
        session: &ReceiverSession,
        result: Result<(), DriverError>,
    ) -> Result<ReceiveSummary, DriverError> {
        let destination = &mut self.destination;
        let stopped = destination.checkpoints.finish();
        self.summary.checkpoints = destination.checkpoints.cost();
        let outcome = result.and(stopped).and_then(|()| {
            if !session.is_finished() {
                return Err(DriverError::Transfer(
                    session.error().cloned().unwrap_or(TransferError::PeerEnded),
                ));
            }
            if !self.failures.is_empty() {
                return Err(DriverError::Unverified {
                    failed: self.failures.len() as u64,
                    names: self
                        .failures
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Ok(())
        });
        let Some(header) = destination.lock.take() else {
            // No plan was settled: nothing changed here, and a lock left before stays.
            destination.checkpoints.give_back_spare();
            return outcome.map(|()| self.summary);
        };
        if outcome.is_ok() {
            lock::remove(destination.sink.dir())
                .map_err(|e| DriverError::Disk(format!("cannot remove the lock file: {e}")))?;
            self.summary.elapsed = self.started.elapsed();
            return Ok(self.summary);
        }
        let kept = destination
            .sink
            .trim_open(|entry| session.progress(entry).map_or(0, |p| p.verified_bytes))
            .map_err(|e| DriverError::Disk(e.to_string()))
            .and_then(|()| {
                let written = destination.sink.take_written();
                let sink = &destination.sink;
                destination.checkpoints.save_now(written, &mut |out| {
                    write_lock(
                        out,
                        &header,
                        session.manifest(),
                        |i| session.progress(i),
                        |i| sink.replaces(i),
                    )
                })
            });
        // Also where the last checkpoint could not be tried.
        destination.checkpoints.give_back_spare();
        match (outcome, kept) {
            (Err(error), Err(unsaved)) => Err(DriverError::Unsaved {
                error: Box::new(error),
                why: unsaved.to_string(),
            }),
            (Err(error), Ok(())) => Err(error),
            (Ok(()), _) => Ok(self.summary),
        }
    }
}

/// Names for a message: the first five of `names`, and how many more there are (a user
/// who moves five away must not meet the same refusal again for the next five).
fn listed(names: &[&str]) -> String {
    let shown = names[..names.len().min(5)].join(", ");
    match names.len().saturating_sub(5) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn hex_id() -> String {
    use ferry_core::Entropy;
    let mut id = [0u8; 16];
    OsEntropy.fill(&mut id);
    hex::encode(id)
}

/// Refuses a batch whose remaining bytes do not fit in the free space of the output file
/// system, before any data moves. The `.part` files of files sent afresh are counted as
/// free: they are replaced.
fn check_space(session: &ReceiverSession, sink: &mut Sink, needed: u64) -> Result<(), DriverError> {
    let unknowable = |e: std::io::Error| {
        DriverError::Disk(format!(
            "cannot tell the free space of {}: {e}",
            sink.root().display()
        ))
    };
    let Some(free) = free_space(sink.dir()).map_err(unknowable)? else {
        // The system does not say (Windows here): the first write that finds the disk
        // full ends the receive with what it verified kept.
        return Ok(());
    };
    if needed <= free {
        return Ok(());
    }
    let manifest = session.manifest();
    let replaced: u64 = (0..manifest.len())
        .filter(|&i| session.progress(i).is_some_and(|p| p.verified_bytes == 0))
        .filter_map(|i| manifest.get(i))
        .filter(|e| e.kind == EntryKind::File)
        .filter_map(|e| {
            // With the disk set aside past its end, all of which its removal frees.
            let part = sink.local(&e).part?;
            Some(part + sink.set_aside(&e))
        })
        .sum();
    // A `.part` being resumed may hold the room for the rest of it already.
    let set_aside: u64 = (0..manifest.len())
        .filter(|&i| session.progress(i).is_some_and(|p| p.verified_bytes > 0))
        .filter_map(|i| manifest.get(i))
        .map(|e| sink.set_aside(&e))
        .sum();
    let free = free.saturating_add(set_aside);
    if needed <= free.saturating_add(replaced) {
        return Ok(());
    }
    Err(DriverError::Disk(format!(
        "not enough space in {}: the batch needs {} ({needed} bytes) more, but only {} ({} bytes) are free",
        sink.root().display(),
        human_size(needed),
        human_size(free.saturating_add(replaced)),
        free.saturating_add(replaced),
    )))
}

/// Refuses a file larger than the output file system can hold (FAT's 4 GiB, say).
fn check_file_sizes(manifest: &Manifest, sink: &Sink) -> Result<(), DriverError> {
    let Some(limit) = max_file_size(sink.dir()) else {
        return Ok(());
    };
    match manifest.iter().find(|e| e.size > limit) {
        Some(entry) => Err(DriverError::Disk(format!(
            "{} is {} ({} bytes), more than the file system of {} can hold in one file ({} bytes)",
            entry.path,
            human_size(entry.size),
            entry.size,
            sink.root().display(),
            limit
        ))),
        None => Ok(()),
    }
}

/// Decides what is already here (from the lock file and the directory) and accepts the
/// batch claiming it; refuses a batch that would overwrite different files.
fn offer(
    session: &mut ReceiverSession,
    sink: &mut Sink,
    overwrite: bool,
    reporter: &mut dyn Reporter,
    claimed_final: &mut Vec<bool>,
    now: ferry_core::Timestamp,
) -> Result<(), DriverError> {
    match survey(session.manifest(), sink, overwrite, reporter, claimed_final) {
        Ok(local) => {
            session.accept(now, &local)?;
            Ok(())
        }
        Err((told, error)) => {
            // Cancel rather than decline: the sender keeps waiting, so the same command
            // (with --overwrite, another -o, more space) can follow.
            session.cancel(now, &told);
            Err(error)
        }
    }
}

/// What of `manifest` is already here: the claims to make, or why the batch cannot be
/// received here (what to tell the sender, and the local error).
fn survey(
    manifest: &Manifest,
    sink: &mut Sink,
    overwrite: bool,
    reporter: &mut dyn Reporter,
    claimed_final: &mut Vec<bool>,
) -> Result<Vec<(usize, u64)>, (String, DriverError)> {
    sink.expect(manifest);
    if let Err(error) = check_file_sizes(manifest, sink) {
        return Err((
            "the receiver's file system cannot hold a file this large".into(),
            error,
        ));
    }
    let previous = match Previous::load(sink.dir(), manifest) {
        Ok(Some(previous)) if previous.described > 0 && previous.matching == 0 => {
            reporter.info("Ignoring the lock file: nothing in it matches this batch");
            previous
        }
        Ok(previous) => previous.unwrap_or_default(),
        Err(LockProblem::Unusable(reason)) => {
            reporter.info(&format!("Ignoring the lock file: {reason}"));
            Previous::default()
        }
        Err(LockProblem::Refused(why)) => {
            let reason = format!(
                "{}: {why}; remove it and run the command again",
                sink.root().join(lock::LOCK_NAME).display()
            );
            return Err((
                "the receiver cannot use its output directory".into(),
                DriverError::Disk(reason),
            ));
        }
    };
    if let Some((entry, problem)) = manifest
        .iter()
        .find_map(|e| crate::os::names::problem_here(e.path).map(|p| (e, p)))
    {
        let reason = format!("{} cannot be created here: {problem}", entry.path);
        return Err((reason.clone(), DriverError::Disk(reason)));
    }
    if let Some(entry) = manifest.iter().find(|e| lock::is_reserved(e.path)) {
        let reason = format!(
            "{} cannot be received at the top of the output folder: Ferry keeps its resume state under that name there; send the folder that holds it instead",
            entry.path
        );
        return Err((reason.clone(), DriverError::Disk(reason)));
    }
    // Whatever is in the way is said now, before any data moves.
    if let Some((entry, why)) = manifest
        .iter()
        .find_map(|e| sink.in_the_way(&e).map(|why| (e, why)))
    {
        let reason = format!(
            "{} cannot be received here: {why}; move it away, or receive into another -o folder",
            entry.path
        );
        return Err((reason.clone(), DriverError::Disk(reason)));
    }
    *claimed_final = vec![false; manifest.len()];
    let mut local = Vec::new();
    // Files already here that this batch would overwrite.
    let mut conflicts = Vec::new();
    // Partial files no lock vouches for, which the batch replaces.
    let mut replacing = Vec::new();
    for (index, entry) in manifest.iter().enumerate() {
        if entry.kind != EntryKind::File {
            continue;
        }
        let here = sink.local(&entry);
        // A file at the final name may be replaced when the lock says an earlier receive
        // put it there and it is still as that receive left it (not a file the user
        // made, or changed, since).
        let ours = here.file.filter(|&(len, mtime_ns)| {
            previous.put_here(index, entry.size, entry.mtime_ns, len, mtime_ns)
        });
        if let Some((size, mtime_ns)) = ours {
            sink.replace_ours(index, Replaces { size, mtime_ns });
        } else if overwrite {
            sink.allow_replace(index);
        }
        let ours = ours.is_some();
        // Any other file there would be overwritten by this batch: one of another size,
        // or one beside this file's `.part` (the file is still on its way).
        let other = here
            .file
            .is_some_and(|(len, _)| len != entry.size || here.part.is_some());
        if other && !ours {
            conflicts.push(entry.path);
        }
        match here {
            // A partial file counts only as far as the lock says it is durable and verified.
            Here {
                part: Some(len), ..
            } => {
                let durable = previous.verified(index).min(len).min(entry.size);
                if durable > 0 {
                    local.push((index, durable));
                } else if len > 0 {
                    // Taken for the partial file of a run that ended before its first
                    // checkpoint; if it was someone's own file, they hear of it (once
                    // the batch is not refused for something else first).
                    replacing.push(sink.part_path(entry.path));
                }
            }
            Here {
                part: None,
                file: Some((len, _)),
            } if len == entry.size && entry.size > 0 => {
                local.push((index, len));
                claimed_final[index] = true;
            }
            _ => {}
        }
    }
    if !conflicts.is_empty() && !overwrite {
        let reason = format!(
            "{} already exist(s) in the output directory and differ(s) from the batch; not overwriting (use --overwrite, or another -o directory)",
            listed(&conflicts)
        );
        return Err((reason.clone(), DriverError::Disk(reason)));
    }
    for part in replacing {
        reporter.info(&format!(
            "replacing {part}: no resume state here vouches for any of it"
        ));
    }
    Ok(local)
}
