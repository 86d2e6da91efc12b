//! Two sessions joined in memory.

use super::{Item, MemoryDisk, MemorySource, drain, manifest_of};
use crate::entropy::SeededEntropy;
use crate::lane::{LANE_HELLO_LEN, LaneRefused, MAX_LANES};
use crate::sealing::SealWork;
use crate::time::Timestamp;
use crate::token::Token;
use crate::transfer::{
    DiskCommand, HashChain, HashWork, Output, ReceiverSession, SenderSession, Session,
    TransferConfig, TransferError, TransferEvent,
};

pub use super::storage::SourceHook;

/// Called after every exchange of bytes with the sender's wire count: to cancel, say.
pub type StepHook = Box<dyn FnMut(&mut SenderSession, &mut ReceiverSession, u64)>;

/// A sender and a receiver joined in memory, each with its in-memory storage, and what
/// each reported. Time stands still until nothing moves; then it jumps to the next timer.
pub struct Pair {
    /// The sending session.
    pub sender: SenderSession,
    /// The receiving session.
    pub receiver: ReceiverSession,
    /// The sender's files.
    pub source: MemorySource,
    /// The receiver's disk.
    pub disk: MemoryDisk,
    /// The time both sessions are at.
    pub now: Timestamp,
    /// What the receiver tells its session it holds when the batch is offered.
    pub local: Vec<(usize, u64)>,
    /// Every event of each side, in order.
    pub sender_events: Vec<TransferEvent>,
    /// See `sender_events`.
    pub receiver_events: Vec<TransferEvent>,
    /// The error each side ended with.
    pub sender_error: Option<TransferError>,
    /// See `sender_error`.
    pub receiver_error: Option<TransferError>,
    /// Bytes the sender put on the wire.
    pub sender_wire: u64,
    /// The sender's bytes stop reaching the receiver after this many (a dead link).
    pub cut_after: Option<u64>,
    /// Decline the batch instead of accepting it.
    pub decline: bool,
    /// Sender reads after this many are never carried out (a hung disk).
    pub hang_reads_after: Option<usize>,
    /// The sender's driver looks at its session's outputs only one time in this many (a
    /// slow one): its queues fill up in between.
    pub sender_drains_every: Option<u64>,
    /// Runs after every exchange of bytes.
    pub on_step: Option<StepHook>,
    /// When set, every byte each side put on the wire, sender's first: a trace to decode
    /// (the conformance vectors).
    pub taps: Option<[Vec<u8>; 2]>,
    /// Bytes the sender put on each lane (index 0: its own connection's are in
    /// `sender_wire`).
    pub lane_wire: [u64; MAX_LANES],
    /// Lane `.0` dies once the sender has put `.1` bytes on it: what it wrote after the
    /// receiver's last read is lost, and both ends see the connection close.
    pub drop_lane: Option<(u8, u64)>,
    /// What came of each lane hello at the sender.
    pub joins: Vec<Result<u8, LaneRefused>>,
    /// A hostile network: after each lane hello the sender takes, it gets the same hello
    /// again (a replay) and a copy with one bit of its proof flipped (a forgery); their
    /// answers go to `joins` too.
    pub replay_hellos: bool,
    /// Lane hellos never reach the sender (a firewall, a refusal): the receiver sees each
    /// lane's connection close.
    pub refuse_lanes: bool,
    hellos: [Vec<u8>; MAX_LANES],
    sender_turns: u64,
    /// With [`Pair::offload_hashing`]: the passes out, and each side's chain.
    passes: Option<(Vec<HeldPass>, [HashChain; 2])>,
    /// With [`Pair::offload_sealing`]: the sender's batches of records out, sealed.
    batches: Option<Vec<SealWork>>,
    /// Batches of records the sender handed out to seal.
    pub batches_sealed: u64,
}

/// A pass the pair ran and holds (true: the receiver's), to be given back at the next
/// turn, last first.
type HeldPass = (bool, HashWork);

impl Pair {
    /// A pair moving `items`, the receiver with `config` and the sender with
    /// `sender_config`; keys and tokens from `seed`; the manifest carries file hashes if
    /// `with_hashes`.
    pub fn new(
        items: &[Item],
        config: TransferConfig,
        sender_config: TransferConfig,
        seed: u64,
        with_hashes: bool,
    ) -> Self {
        let mut entropy = SeededEntropy::new(seed);
        let token = Token::generate(&mut entropy);
        let manifest = manifest_of(items, with_hashes);
        let now = Timestamp::ZERO;
        let sender = SenderSession::new(sender_config, token.clone(), manifest, &mut entropy, now);
        let receiver = ReceiverSession::new(config, token, &mut entropy, now);
        let (Ok(sender), Ok(receiver)) = (sender, receiver) else {
            panic!("a test pair needs a valid configuration");
        };
        Pair {
            sender,
            receiver,
            source: MemorySource::new(items.iter().map(|i| i.data.clone()).collect()),
            disk: MemoryDisk::default(),
            now,
            local: Vec::new(),
            sender_events: Vec::new(),
            receiver_events: Vec::new(),
            sender_error: None,
            receiver_error: None,
            sender_wire: 0,
            cut_after: None,
            decline: false,
            hang_reads_after: None,
            sender_drains_every: None,
            sender_turns: 0,
            on_step: None,
            taps: None,
            lane_wire: [0; MAX_LANES],
            drop_lane: None,
            joins: Vec::new(),
            replay_hellos: false,
            refuse_lanes: false,
            hellos: Default::default(),
            passes: None,
            batches: None,
            batches_sealed: 0,
        }
    }

    /// The sender seals its parts' records as on a driver's threads: the pair seals each
    /// batch as it comes and gives a turn's batches back at the next turn, last first (so
    /// they come back late and out of order, and the wire waits for them).
    pub fn offload_sealing(&mut self) {
        self.sender.offload_sealing();
        self.batches = Some(Vec::new());
    }

    /// Gives back the batches held since the last turn (last first) and takes the new
    /// ones: true if any went either way.
    fn seal_batches(&mut self) -> bool {
        let Some(held) = self.batches.as_mut() else {
            return false;
        };
        let mut moved = !held.is_empty();
        for work in held.drain(..).rev() {
            if let Err(error) = self.sender.seal_done(work) {
                self.sender_error.get_or_insert(error);
            }
        }
        while let Some(mut work) = self.sender.poll_seal_work() {
            work.run();
            held.push(work);
            self.batches_sealed += 1;
            moved = true;
        }
        moved
    }

    /// Both sides hand their SHA-256 passes out, as to a driver's hashing thread: the
    /// pair runs each on its side's chain as it comes, and gives the ones of a turn back
    /// at the next turn, last first (so they come back late and out of order).
    pub fn offload_hashing(&mut self) {
        self.sender.offload_hashing();
        self.receiver.offload_hashing();
        self.passes = Some((Vec::new(), Default::default()));
    }

    /// Gives back the passes held since the last turn (last first) and takes the new
    /// ones: true if any went either way.
    fn hash_passes(&mut self) -> bool {
        let Some((held, chains)) = self.passes.as_mut() else {
            return false;
        };
        let mut moved = !held.is_empty();
        for (receiver, work) in held.drain(..).rev() {
            let done = if receiver {
                self.receiver.work_done(self.now, work)
            } else {
                self.sender.work_done(self.now, work)
            };
            if let Err(error) = done {
                let side = if receiver {
                    &mut self.receiver_error
                } else {
                    &mut self.sender_error
                };
                side.get_or_insert(error);
            }
        }
        for receiver in [false, true] {
            loop {
                let work = if receiver {
                    self.receiver.poll_work()
                } else {
                    self.sender.poll_work()
                };
                let Some(mut work) = work else { break };
                work.run(&mut chains[usize::from(receiver)]);
                held.push((receiver, work));
                moved = true;
            }
        }
        moved
    }

    /// A pair with one configuration for both sides and file hashes in the manifest.
    pub fn with(items: &[Item], config: TransferConfig, seed: u64) -> Self {
        Pair::new(items, config.clone(), config, seed, true)
    }

    fn sender_outputs(&mut self) -> bool {
        self.sender_turns += 1;
        if let Some(every) = self.sender_drains_every
            && !self.sender_turns.is_multiple_of(every)
        {
            // Not looking now is not idleness: time must not pass for it.
            return true;
        }
        let mut worked = false;
        loop {
            match self.sender.poll_output() {
                Output::Timeout(_) => break,
                Output::Event(event) => self.sender_events.push(event),
                Output::Disk(DiskCommand::Read { .. })
                    if self
                        .hang_reads_after
                        .is_some_and(|after| self.source.total_reads() >= after) => {}
                Output::Disk(command) => {
                    if let Err(error) = self.sender.carry_out(self.now, command, &mut self.source) {
                        self.sender_error.get_or_insert(error);
                        return true;
                    }
                }
            }
            worked = true;
        }
        worked
    }

    fn receiver_outputs(&mut self) -> bool {
        let (now, decline, local) = (self.now, self.decline, &self.local);
        let events = &mut self.receiver_events;
        let drained = drain(
            &mut self.receiver,
            now,
            &mut self.disk,
            |receiver, event| {
                let answer = match event {
                    TransferEvent::BatchOffered { .. } if decline => {
                        receiver.decline(now, "not today")
                    }
                    TransferEvent::BatchOffered { .. } => receiver.accept(now, local),
                    TransferEvent::LaneWanted { lane } => receiver.lane_connected(lane),
                    _ => Ok(()),
                };
                events.push(event);
                answer
            },
        );
        drained.unwrap_or_else(|error| {
            self.receiver_error.get_or_insert(error);
            true
        })
    }

    fn outputs(&mut self) -> bool {
        let passes = self.hash_passes();
        let sender = self.sender_outputs();
        let receiver = self.receiver_outputs();
        // What the outputs brought (a read that completes a segment) goes out now.
        self.hash_passes() | self.seal_batches() | passes | sender | receiver
    }

    fn wire(&mut self) -> bool {
        let mut worked = false;
        if self.sender_error.is_none() || !self.sender.poll_transmit().is_empty() {
            let mut bytes = self.sender.poll_transmit().to_vec();
            if let Some(cut) = self.cut_after {
                bytes.truncate(cut.saturating_sub(self.sender_wire) as usize);
            }
            self.sender.advance_transmit(bytes.len());
            self.sender_wire += bytes.len() as u64;
            if let Some([sent, _]) = self.taps.as_mut() {
                sent.extend_from_slice(&bytes);
            }
            worked |= !bytes.is_empty();
            let mut at = 0;
            while at < bytes.len() && self.receiver_error.is_none() {
                match self.receiver.handle_input(self.now, &bytes[at..]) {
                    Ok(n) => at += n,
                    Err(error) => self.receiver_error = Some(error),
                }
                self.outputs();
            }
        }
        let bytes = self.receiver.poll_transmit().to_vec();
        self.receiver.advance_transmit(bytes.len());
        worked |= !bytes.is_empty();
        if let Some([_, sent]) = self.taps.as_mut() {
            sent.extend_from_slice(&bytes);
        }
        let mut at = 0;
        while at < bytes.len() && self.sender_error.is_none() {
            match self.sender.handle_input(self.now, &bytes[at..]) {
                Ok(n) => at += n,
                Err(error) => self.sender_error = Some(error),
            }
            self.outputs();
        }
        worked
    }

    /// Moves each lane's bytes: the receiver's hello to the sender, the sender's parts
    /// to the receiver; a lane set to die dies.
    fn lanes(&mut self) -> bool {
        let mut worked = false;
        for lane in 1..MAX_LANES as u8 {
            let at = usize::from(lane);
            let hello = self.receiver.poll_lane_transmit(lane).to_vec();
            if !hello.is_empty() && self.refuse_lanes {
                self.receiver.advance_lane_transmit(lane, hello.len());
                self.receiver.lane_closed(self.now, lane);
                worked = true;
            } else if !hello.is_empty() {
                self.receiver.advance_lane_transmit(lane, hello.len());
                self.hellos[at].extend_from_slice(&hello);
                if let Ok(whole) = <[u8; LANE_HELLO_LEN]>::try_from(&self.hellos[at][..]) {
                    let joined = self.sender.join_lane(&whole);
                    if joined.is_err() {
                        self.receiver.lane_closed(self.now, lane);
                    }
                    self.joins.push(joined);
                    if self.replay_hellos {
                        let mut forged = whole;
                        forged[LANE_HELLO_LEN - 1] ^= 1;
                        self.joins.push(self.sender.join_lane(&whole));
                        self.joins.push(self.sender.join_lane(&forged));
                    }
                }
                worked = true;
            }
            let mut bytes = self.sender.poll_lane_transmit(lane).to_vec();
            let dies = self
                .drop_lane
                .filter(|&(l, _)| l == lane)
                .map(|(_, after)| after.saturating_sub(self.lane_wire[at]) as usize);
            if let Some(left) = dies
                && bytes.len() >= left
            {
                bytes.truncate(left);
                self.drop_lane = None;
                self.sender.lane_closed(self.now, lane);
                self.receiver.lane_closed(self.now, lane);
            }
            if bytes.is_empty() {
                continue;
            }
            self.sender.advance_lane_transmit(lane, bytes.len());
            self.lane_wire[at] += bytes.len() as u64;
            worked = true;
            let mut taken = 0;
            while taken < bytes.len() && self.receiver_error.is_none() {
                match self
                    .receiver
                    .handle_lane_input(self.now, lane, &bytes[taken..])
                {
                    Ok(n) => taken += n,
                    Err(error) => self.receiver_error = Some(error),
                }
                self.outputs();
            }
        }
        worked
    }

    /// Runs until both sides are finished, failed, or stuck.
    pub fn run(&mut self) {
        for step in 0..10_000_000u64 {
            if step == 200_000 {
                eprintln!(
                    "stuck? {}\n{}\nerrors {:?} / {:?}, wire {}",
                    self.sender.describe(),
                    self.receiver.describe(),
                    self.sender_error,
                    self.receiver_error,
                    self.sender_wire,
                );
            }
            let mut worked = self.outputs();
            worked |= self.wire();
            worked |= self.lanes();
            if let Some(step) = self.on_step.as_mut() {
                step(&mut self.sender, &mut self.receiver, self.sender_wire);
            }
            if let Some(e) = self.sender.error() {
                self.sender_error.get_or_insert(e.clone());
            }
            if let Some(e) = self.receiver.error() {
                self.receiver_error.get_or_insert(e.clone());
            }
            let done = (self.sender.is_finished() || self.sender_error.is_some())
                && (self.receiver.is_finished() || self.receiver_error.is_some());
            if done && !worked {
                return;
            }
            if !worked {
                // Nothing moves: let time pass to the next timer (a stall shows up here).
                let next = [self.sender.poll_timeout(), self.receiver.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(next) = next else { return };
                assert!(next >= self.now, "a timer in the past");
                self.now = next;
                if let Err(e) = self.sender.handle_timeout(self.now) {
                    self.sender_error.get_or_insert(e);
                }
                if let Err(e) = self.receiver.handle_timeout(self.now) {
                    self.receiver_error.get_or_insert(e);
                }
            }
        }
        panic!("the transfer did not settle");
    }

    /// Asserts that the batch arrived complete and identical, with nothing left over.
    pub fn assert_delivered(&self, items: &[Item]) {
        assert_eq!(self.sender_error, None, "sender failed");
        assert_eq!(self.receiver_error, None, "receiver failed");
        assert!(self.sender.is_finished() && self.receiver.is_finished());
        for (index, item) in items.iter().enumerate() {
            match &item.data {
                Some(data) => {
                    let got = self
                        .disk
                        .committed
                        .get(&index)
                        .unwrap_or_else(|| panic!("{} was not committed", item.path));
                    assert!(
                        got == data,
                        "{} differs ({} vs {} bytes)",
                        item.path,
                        got.len(),
                        data.len()
                    );
                }
                None => assert!(
                    self.disk.dirs.contains(&index),
                    "{} was not created",
                    item.path
                ),
            }
        }
        assert!(
            self.disk.partial.is_empty(),
            "partial files left: {:?}",
            self.disk.partial.keys()
        );
    }
}
