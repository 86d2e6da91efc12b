//! Whole sessions between a real sender and a real receiver, through a man in the middle
//! that the input drives: it forwards, drops, duplicates, alters and injects transfer
//! messages in plaintext (opening and re-sealing every record, so its changes reach the
//! state machines as a faulty or hostile peer's would), and the input also fails the
//! receiver's disk, changes the sender's files, moves time and cancels. The input is
//! structured (`arbitrary`), so most runs get past the manifest and the plan into
//! streaming, retries and resumes; with `insecure-null-crypto` a run costs no key
//! exchange.

use arbitrary::{Arbitrary, Unstructured};

use crate::crypto::RecordCipher;
use crate::entropy::{Entropy, SeededEntropy};
use crate::handshake::{self, HELLO_LEN, Role};
use crate::record::HEADER_LEN;
use crate::testing::{Item, MemoryDisk, MemorySource, dir, drain, file, manifest_of};
use crate::time::Timestamp;
use crate::token::Token;
use crate::transfer::{
    DiskErrorKind, Output, ReceiverSession, SenderSession, Session, TransferConfig, TransferEvent,
};

/// Which side's input the script may tamper with: the receiver's (`fuzz/receiver_session`)
/// or the sender's (`fuzz/sender_script`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// Messages on their way to the receiver.
    Receiver,
    /// Messages on their way to the sender.
    Sender,
}

/// A message the man in the middle makes up, by PROTOCOL.md §6.
#[derive(Arbitrary, Debug)]
enum Injected {
    Retry {
        entry: u8,
        attempt: u8,
    },
    Grant(u16),
    Update {
        entry: u8,
        attempt: u8,
        size: u16,
        mtime_ns: i64,
    },
    Abandon {
        entry: u8,
        attempt: u8,
        cause: u8,
    },
    Done {
        committed: u8,
        failed: u8,
    },
    PlanResult {
        last: bool,
        rejected: Option<u8>,
    },
    Cancel,
    /// RCL or ICL for the last segment laid out.
    CancelSegment,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Honest exchanges, this many.
    Steps(u8),
    Drop,
    Duplicate,
    Flip {
        at: u16,
        xor: u8,
    },
    Inject(Injected),
    DiskFails,
    SourceChanges {
        entry: u8,
    },
    Tick(u8),
    Cancel {
        sender: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Script {
    /// File sizes (up to 6 files), and how deep a folder holds the last of them.
    files: Vec<u16>,
    folders: u8,
    /// A prefix of the first file the receiver already holds.
    held: Option<u16>,
    /// Compression on (a quarter of the values) or off. Fuzz builds compress with a cheap
    /// stand-in (`transfer::bz2`); `cargo test` runs the scripts with real bz2.
    compress: u8,
    /// Tampering starts once data flows (most runs) or from the first message.
    from_the_start: bool,
    ops: Vec<Op>,
}

/// What a scripted session came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// The receiver settled a plan: the session reached streaming.
    pub streamed: bool,
    /// Both sides finished the batch.
    pub finished: bool,
    /// The input did not make a script.
    pub unused: bool,
}

/// One direction through the man in the middle: records opened with the key they were
/// sealed with, and sealed again in the order they leave.
struct Pipe {
    cipher: RecordCipher,
    inbound: Vec<u8>,
    hello_done: bool,
    in_seq: u64,
    out_seq: u64,
    out: Vec<u8>,
    pending: Option<Op>,
    /// The resource hash of the last LAYOUT seen (for injected segment cancels).
    last_segment: [u8; 32],
}

impl Pipe {
    fn new(key: &[u8; 32]) -> Self {
        Pipe {
            cipher: RecordCipher::new(key),
            inbound: Vec::new(),
            hello_done: false,
            in_seq: 0,
            out_seq: 0,
            out: Vec::new(),
            pending: None,
            last_segment: [0; 32],
        }
    }

    /// Takes bytes a session sent; what is to be delivered collects in `out`.
    fn push(&mut self, bytes: &[u8]) {
        self.inbound.extend_from_slice(bytes);
        if !self.hello_done {
            if self.inbound.len() < HELLO_LEN {
                return;
            }
            self.out.extend(self.inbound.drain(..HELLO_LEN));
            self.hello_done = true;
        }
        loop {
            if self.inbound.len() < HEADER_LEN {
                return;
            }
            let header: [u8; HEADER_LEN] =
                self.inbound[..HEADER_LEN].try_into().unwrap_or_default();
            let len = u32::from_be_bytes(header) as usize;
            if len < 16 || self.inbound.len() < HEADER_LEN + len {
                return;
            }
            let mut body = self.inbound[HEADER_LEN..HEADER_LEN + len - 16].to_vec();
            let tag: [u8; 16] = self.inbound[HEADER_LEN + len - 16..HEADER_LEN + len]
                .try_into()
                .unwrap_or_default();
            self.inbound.drain(..HEADER_LEN + len);
            if self
                .cipher
                .open(self.in_seq, &header, &mut body, &tag)
                .is_err()
            {
                return;
            }
            self.in_seq += 1;
            if body.first() != Some(&1) {
                self.emit(&body);
                continue;
            }
            if body.get(1) == Some(&0x10) && body.len() >= 34 {
                self.last_segment.copy_from_slice(&body[2..34]);
            }
            match self.pending.take() {
                Some(Op::Drop) => {}
                Some(Op::Duplicate) => {
                    self.emit(&body);
                    self.emit(&body);
                }
                Some(Op::Flip { at, xor }) if body.len() > 1 => {
                    let at = 1 + usize::from(at) % (body.len() - 1);
                    body[at] ^= xor | 1;
                    self.emit(&body);
                }
                _ => self.emit(&body),
            }
        }
    }

    /// Seals one plaintext record (content type, then payload) as the next one out.
    fn emit(&mut self, plain: &[u8]) {
        let header = ((plain.len() + 16) as u32).to_be_bytes();
        let mut body = plain.to_vec();
        let Ok(tag) = self.cipher.seal(self.out_seq, &header, &mut body) else {
            return;
        };
        self.out_seq += 1;
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&tag);
    }

    /// A made-up transfer message, once the key confirmation has gone through.
    fn inject(&mut self, message: Injected, to_receiver: bool) {
        if self.out_seq == 0 {
            return;
        }
        let mut m = vec![1u8];
        let be32 = |v: u8| u32::from(v).to_be_bytes();
        match message {
            Injected::Retry { entry, attempt } => {
                m.push(0x20);
                m.extend(be32(entry));
                m.push(attempt);
            }
            Injected::Grant(segments) => {
                m.push(0x18);
                m.extend(u32::from(segments).to_be_bytes());
            }
            Injected::Update {
                entry,
                attempt,
                size,
                mtime_ns,
            } => {
                m.push(0x23);
                m.extend(be32(entry));
                m.push(attempt);
                m.extend(u64::from(size).to_be_bytes());
                m.extend(mtime_ns.to_be_bytes());
            }
            Injected::Abandon {
                entry,
                attempt,
                cause,
            } => {
                m.push(0x24);
                m.extend(be32(entry));
                m.extend([attempt, cause % 5]);
            }
            Injected::Done { committed, failed } => {
                m.push(0x21);
                m.extend(u64::from(committed).to_be_bytes());
                m.extend(u64::from(failed).to_be_bytes());
            }
            Injected::PlanResult { last, rejected } => {
                // msgpack [last, [rejected...]]
                m.extend([0x04, 0x92, if last { 0xc3 } else { 0xc2 }]);
                match rejected {
                    Some(entry) => m.extend([0x91, entry & 0x7f]),
                    None => m.push(0x90),
                }
            }
            Injected::Cancel => m.extend(b"\x22made up"),
            Injected::CancelSegment => {
                m.push(if to_receiver { 0x16 } else { 0x17 });
                m.extend(self.last_segment);
            }
            Injected::Raw(raw) => m.extend(raw),
        }
        self.emit(&m);
    }
}

/// The sessions, their storage, and the man in the middle between them.
struct World {
    sender: SenderSession,
    receiver: ReceiverSession,
    source: MemorySource,
    disk: MemoryDisk,
    to_receiver: Pipe,
    to_sender: Pipe,
    held: Vec<(usize, u64)>,
    now: Timestamp,
    streamed: bool,
    /// Every content each file has had at the sender: a committed file must be one.
    versions: Vec<Vec<Vec<u8>>>,
}

impl World {
    /// One exchange each way, with each side's outputs carried out; false once neither
    /// side has anything to do.
    fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        loop {
            match self.sender.poll_output() {
                Output::Disk(command) => {
                    let _ = self.sender.carry_out(now, command, &mut self.source);
                }
                Output::Event(_) => {}
                Output::Timeout(at) => {
                    assert!(
                        at.is_none_or(|at| at >= now),
                        "a sender timeout in the past"
                    );
                    break;
                }
            }
            moved = true;
        }
        let held = &self.held;
        let streamed = &mut self.streamed;
        let _ = drain(
            &mut self.receiver,
            now,
            &mut self.disk,
            |receiver, event| {
                match event {
                    TransferEvent::BatchOffered { .. } => return receiver.accept(now, held),
                    TransferEvent::PlanSettled { .. } => *streamed = true,
                    _ => {}
                }
                Ok(())
            },
        );
        if let Some(at) = self.receiver.poll_timeout() {
            assert!(at >= now, "a receiver timeout in the past");
        }
        let bytes = self.sender.poll_transmit().to_vec();
        self.sender.advance_transmit(bytes.len());
        self.to_receiver.push(&bytes);
        moved |= deliver(&mut self.to_receiver.out, &mut self.receiver, now);
        let bytes = self.receiver.poll_transmit().to_vec();
        self.receiver.advance_transmit(bytes.len());
        self.to_sender.push(&bytes);
        moved |= deliver(&mut self.to_sender.out, &mut self.sender, now);
        moved || !bytes.is_empty()
    }

    fn settle(&mut self, most: usize) {
        for _ in 0..most {
            if !self.step() {
                return;
            }
        }
    }
}

/// Hands `out` to `session` as far as it takes it; true if anything went.
fn deliver<S: Session>(out: &mut Vec<u8>, session: &mut S, now: Timestamp) -> bool {
    let mut at = 0;
    while at < out.len() {
        match session.handle_input(now, &out[at..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => at += n,
        }
    }
    // What the session could not take (it failed, or its queues are full) waits or goes.
    let moved = at > 0;
    if session.error().is_some() {
        out.clear();
    } else {
        out.drain(..at);
    }
    moved
}

/// `len` bytes that do not compress, cheaply: the file contents only need to differ and
/// resist bz2, and a hash per 32 bytes (`testing::bytes`) cost a run a tenth of its time.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs the script in `data`, tampering with the messages on their way to `focus`.
pub fn session_script(data: &[u8], focus: Focus) -> ScriptOutcome {
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(data)) else {
        return ScriptOutcome {
            unused: true,
            ..ScriptOutcome::default()
        };
    };
    let mut items: Vec<Item> = Vec::new();
    let depth = usize::from(script.folders % 3);
    let mut folder = String::from("b");
    items.push(dir(&folder));
    for level in 0..depth {
        folder.push_str(&format!("/d{level}"));
        items.push(dir(&folder));
    }
    // Up to 6 files of up to 12 KiB: segments of 4 KiB, so a file may span three.
    let compress = script.compress % 4 == 0;
    let most = 12 << 10;
    for (i, &size) in script.files.iter().take(6).enumerate() {
        let size = usize::from(size) % most;
        let data = if i % 2 == 1 {
            // Text that compresses.
            let mut text = b"ferry fuzz line\n".repeat(size.div_ceil(16));
            text.truncate(size);
            text
        } else {
            noise(i as u64, size)
        };
        items.push(file(&format!("{folder}/f{i}"), data));
    }
    // Small sizes everywhere: the same rules, and a run costs little.
    let config = TransferConfig {
        channel: crate::config::Config {
            max_record_payload: 8 << 10,
            send_buffer: 64 << 10,
            ..crate::config::Config::default()
        },
        part_size: 1024,
        segment_size: 4 << 10,
        max_extents_per_segment: 8,
        map_hashes_per_message: 2,
        segments_in_flight: 8,
        initial_window: 2 << 10,
        window_floor: 4 << 10,
        max_window: 16 << 10,
        compress,
        ..TransferConfig::default()
    };
    let mut entropy = SeededEntropy::new(11);
    let token = Token::generate(&mut entropy);
    let mut secret = [0u8; 32];
    entropy.clone().fill(&mut secret);
    let now = Timestamp::ZERO;
    let manifest = manifest_of(&items, true);
    let sender = SenderSession::new(config.clone(), token.clone(), manifest, &mut entropy, now);
    let receiver = ReceiverSession::new(config, token.clone(), &mut entropy, now);
    let (Ok(sender), Ok(receiver)) = (sender, receiver) else {
        return ScriptOutcome::default();
    };
    let (Ok(s_hello), Ok(r_hello)) = (
        <[u8; HELLO_LEN]>::try_from(
            &sender.poll_transmit()[..HELLO_LEN.min(sender.poll_transmit().len())],
        ),
        <[u8; HELLO_LEN]>::try_from(
            &receiver.poll_transmit()[..HELLO_LEN.min(receiver.poll_transmit().len())],
        ),
    ) else {
        return ScriptOutcome::default();
    };
    let Ok(keys) = handshake::derive_secrets(secret, Role::Sender, &s_hello, &r_hello, &token)
    else {
        return ScriptOutcome::default();
    };
    let mut disk = MemoryDisk::default();
    disk.capacity = Some(48 << 10);
    let mut held = Vec::new();
    let first_file = items.iter().position(|i| i.data.is_some());
    if let (Some(len), Some(entry)) = (script.held, first_file) {
        let content = items[entry].data.clone().unwrap_or_default();
        let len = usize::from(len).min(content.len());
        if len > 0 {
            disk.partial.insert(entry, content[..len].to_vec());
            held.push((entry, len as u64));
        }
    }
    let versions = items
        .iter()
        .map(|i| i.data.clone().into_iter().collect())
        .collect();
    let mut world = World {
        sender,
        receiver,
        source: MemorySource::new(items.iter().map(|i| i.data.clone()).collect()),
        disk,
        to_receiver: Pipe::new(&keys.sender_to_receiver),
        to_sender: Pipe::new(&keys.receiver_to_sender),
        held,
        now,
        streamed: false,
        versions,
    };
    if !script.from_the_start {
        for _ in 0..200 {
            if world.streamed || !world.step() {
                break;
            }
        }
    }
    for op in script.ops.into_iter().take(64) {
        let pipe = match focus {
            Focus::Receiver => &mut world.to_receiver,
            Focus::Sender => &mut world.to_sender,
        };
        match op {
            Op::Steps(n) => world.settle(usize::from(n)),
            Op::Drop | Op::Duplicate | Op::Flip { .. } => pipe.pending = Some(op),
            Op::Inject(message) => pipe.inject(message, focus == Focus::Receiver),
            Op::DiskFails => world.disk.failing = Some(DiskErrorKind::NoSpace),
            Op::SourceChanges { entry } => {
                let entry = usize::from(entry) % world.versions.len();
                world.source.change(entry, true, |d| d.push(0x5a));
                if let Some(Some(now)) = world.source.files.get(entry) {
                    world.versions[entry].push(now.clone());
                }
            }
            Op::Tick(seconds) => {
                world.now = world
                    .now
                    .saturating_add(core::time::Duration::from_secs(u64::from(seconds)));
                let now = world.now;
                let _ = world.sender.handle_timeout(now);
                let _ = world.receiver.handle_timeout(now);
            }
            Op::Cancel { sender: true } => {
                world.sender.cancel(world.now, "fuzz");
            }
            Op::Cancel { sender: false } => {
                world.receiver.cancel(world.now, "fuzz");
            }
        }
    }
    world.settle(2_000);
    // Nothing is committed that the sender's file never was.
    for (entry, content) in &world.disk.committed {
        let known = world
            .versions
            .get(*entry)
            .is_some_and(|v| v.contains(content));
        assert!(
            known,
            "entry {entry} committed with content its source never had"
        );
    }
    ScriptOutcome {
        streamed: world.streamed,
        finished: world.sender.is_finished() && world.receiver.is_finished(),
        unused: false,
    }
}
