//! A scripted hostile sender against a real receiver: a decompression bomb, and data that
//! does not match its segment hash. The script builds every message from PROTOCOL.md, so
//! the segment that is accepted also checks the spec's definition of `h`.

use std::io::Write;

use ferry_core::resource::{Advertisement, map_hash};
use std::time::Duration;

use ferry_core::testing::MemoryDisk;
use ferry_core::transfer::{
    DiskCommand, FileFailure, Output, ReceiverSession, Session, TransferConfig, TransferError,
    TransferEvent, Violation,
};
use ferry_core::{Channel, Config, Role, SeededEntropy, Timestamp, Token};
use sha2::{Digest, Sha256};

/// A scripted sender (a bare channel speaking PROTOCOL.md by hand) and a real receiver,
/// whose disk commands and events are recorded; its writes succeed and its resume reads
/// find `local_byte` repeated.
struct Script {
    sender: Channel,
    receiver: ReceiverSession,
    commands: Vec<DiskCommand>,
    events: Vec<TransferEvent>,
    /// The receiver's disk: what it holds of the file is `local_byte` repeated.
    disk: MemoryDisk,
    /// What the receiver claims it holds when the batch is offered.
    local: Vec<(usize, u64)>,
    now: Timestamp,
    /// Segments advertised so far, and the first one's hash (ADV's `i` and `o`).
    segments_sent: u64,
    /// Every message the receiver sent, in order.
    answers: Vec<Vec<u8>>,
    first_hash: Option<[u8; 32]>,
}

impl Script {
    /// Moves bytes both ways until quiet; accepts the batch when offered. Returns the
    /// receiver's error if it failed.
    fn exchange(&mut self) -> Option<TransferError> {
        let now = self.now;
        for _ in 0..20 {
            let bytes = self.sender.poll_transmit().to_vec();
            self.sender.advance_transmit(bytes.len());
            let mut at = 0;
            while at < bytes.len() {
                match self.receiver.handle_input(now, &bytes[at..]) {
                    Ok(n) => at += n,
                    Err(error) => return Some(error),
                }
                if let Err(error) = self.drain() {
                    return Some(error);
                }
            }
            if let Err(error) = self.drain() {
                return Some(error);
            }
            let back = self.receiver.poll_transmit().to_vec();
            self.receiver.advance_transmit(back.len());
            let mut at = 0;
            while at < back.len() {
                at += self.sender.handle_input(now, &back[at..]).unwrap();
                if let Some(message) = self.sender.take_message() {
                    self.answers.push(message.to_vec());
                }
            }
            while self.sender.poll_event().is_some() {}
        }
        None
    }

    /// Carries out the receiver's disk commands and answers its offer.
    fn drain(&mut self) -> Result<(), TransferError> {
        let now = self.now;
        loop {
            match self.receiver.poll_output() {
                Output::Disk(command) => {
                    self.commands.push(command.clone());
                    self.receiver.carry_out(now, command, &mut self.disk)?;
                }
                Output::Event(event) => {
                    if let TransferEvent::BatchOffered { .. } = event {
                        self.receiver.accept(now, &self.local)?;
                    }
                    self.events.push(event);
                }
                Output::Timeout(_) => return Ok(()),
            }
        }
    }
}

/// What a receiver's resume reads find on its disk.
const LOCAL_BYTE: u8 = 0x5a;

fn msgpack(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    build(&mut out);
    out
}

/// A sender channel and a receiver session that was offered a batch of one file `f` of
/// `size` bytes (with the manifest hash `promised`, if any), holding `local` bytes of it,
/// and has sent its plan.
fn receiver_that_planned(
    config: TransferConfig,
    size: u64,
    promised: Option<[u8; 32]>,
    local: u64,
) -> Script {
    let mut script = connected(config, Config::default(), local);
    let begin = [1, 1, size, 64 << 10];
    let f = ManifestItem {
        path: "f",
        kind: 0,
        size,
        mode: 0o644,
        hash: promised,
    };
    assert!(script.offer(begin, &[f]).is_none());
    script
}

/// A scripted sender (its channel configured by `sender_channel`) and a receiver that
/// completed the handshake, holding `local` bytes of entry 0.
fn connected(config: TransferConfig, sender_channel: Config, local: u64) -> Script {
    let mut entropy = SeededEntropy::new(5);
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    let sender = Channel::new(
        Role::Sender,
        token.clone(),
        sender_channel,
        &mut entropy,
        now,
    )
    .unwrap();
    let receiver = ReceiverSession::new(config, token, &mut entropy, now).unwrap();
    let mut script = Script {
        sender,
        receiver,
        commands: Vec::new(),
        events: Vec::new(),
        disk: MemoryDisk::default(),
        local: if local > 0 { vec![(0, local)] } else { vec![] },
        now,
        segments_sent: 0,
        first_hash: None,
        answers: Vec::new(),
    };
    if local > 0 {
        let held = vec![LOCAL_BYTE; local as usize];
        script.disk.partial.insert(0, held);
    }
    assert!(script.exchange().is_none());
    assert!(script.sender.is_established());
    script
}

/// One entry of a manifest as a script sends it.
#[derive(Clone, Copy)]
struct ManifestItem {
    path: &'static str,
    kind: u64,
    size: u64,
    mode: u64,
    hash: Option<[u8; 32]>,
}

impl Script {
    /// Sends MANIFEST_BEGIN `[entries, path_bytes, total_bytes, part_size]` and the
    /// entries (mtime 0), exactly as given; returns the receiver's error, if any.
    fn offer(&mut self, begin: [u64; 4], items: &[ManifestItem]) -> Option<TransferError> {
        self.sender
            .send_message(&msgpack(|m| {
                m.push(0x01);
                rmp::encode::write_array_len(m, 4).unwrap();
                for v in begin {
                    rmp::encode::write_uint(m, v).unwrap();
                }
            }))
            .unwrap();
        self.sender
            .send_message(&msgpack(|m| {
                m.push(0x02);
                rmp::encode::write_array_len(m, items.len() as u32).unwrap();
                for item in items {
                    rmp::encode::write_array_len(m, 6).unwrap();
                    rmp::encode::write_str(m, item.path).unwrap();
                    for v in [item.kind, item.size, item.mode] {
                        rmp::encode::write_uint(m, v).unwrap();
                    }
                    rmp::encode::write_sint(m, 0).unwrap();
                    match item.hash {
                        Some(hash) => rmp::encode::write_bin(m, &hash).unwrap(),
                        None => rmp::encode::write_nil(m).unwrap(),
                    }
                }
            }))
            .unwrap();
        self.exchange()
    }
}

/// A receiver of one 100-byte file `f` (with the manifest hash `promised`, if any) that
/// has settled its plan: the next thing it expects is a segment.
fn receiver_awaiting_a_segment(promised: Option<[u8; 32]>) -> Script {
    let mut script = receiver_that_planned(TransferConfig::default(), 100, promised, 0);
    script.settle_plan();
    script
}

impl Script {
    /// Answers the receiver's plan: nothing rejected.
    fn settle_plan(&mut self) {
        self.plan_result(true);
    }

    /// One PLAN_RESULT message rejecting nothing, `last` or not.
    fn plan_result(&mut self, last: bool) {
        self.sender
            .send_message(&msgpack(|m| {
                m.push(0x04);
                rmp::encode::write_array_len(m, 2).unwrap();
                rmp::encode::write_bool(m, last).unwrap();
                rmp::encode::write_array_len(m, 0).unwrap();
            }))
            .unwrap();
    }
}

/// LAYOUT for one piece: all 100 bytes of entry 0, `attempt`, ending the file with the
/// sender's `digest` and its `changed` flag clear.
fn layout(hash: &[u8; 32], digest: &[u8; 32], attempt: u8) -> Vec<u8> {
    let mut layout = vec![0x10];
    layout.extend_from_slice(hash);
    layout.extend_from_slice(&1u32.to_be_bytes());
    layout.extend_from_slice(&0u32.to_be_bytes());
    layout.push(attempt);
    layout.extend_from_slice(&0u64.to_be_bytes());
    layout.extend_from_slice(&100u32.to_be_bytes());
    layout.extend_from_slice(&1u32.to_be_bytes());
    layout.extend_from_slice(&0u32.to_be_bytes());
    layout.extend_from_slice(&[attempt, 0]);
    layout.extend_from_slice(digest);
    layout
}

/// ADV for a one-part segment of `wire` bytes, the stream's first.
fn advertisement(hash: [u8; 32], random: [u8; 4], wire: &[u8], flags: u8) -> Vec<u8> {
    advertisement_at(hash, random, wire, flags, 1, hash)
}

/// ADV for a one-part segment of `wire` bytes, the stream's `index`th (from 1), whose
/// first segment's hash is `first`.
fn advertisement_at(
    hash: [u8; 32],
    random: [u8; 4],
    wire: &[u8],
    flags: u8,
    index: u64,
    first: [u8; 32],
) -> Vec<u8> {
    let map = map_hash(&0u32.to_be_bytes(), &random);
    let split = if index > 1 {
        ferry_core::resource::wire::flags::SPLIT
    } else {
        0
    };
    let adv = Advertisement {
        transfer_size: wire.len() as u64,
        data_size: 100,
        parts: 1,
        hash,
        random_hash: random,
        original_hash: first,
        segment_index: index,
        total_segments: index,
        request_id: None,
        flags: flags | split,
        hashmap: &map,
    };
    let mut message = vec![0x11; 1 + adv.encoded_len()];
    adv.encode(&mut message[1..]).unwrap();
    message
}

fn part(hash: &[u8; 32], data: &[u8]) -> Vec<u8> {
    let mut part = vec![0x13];
    part.extend_from_slice(hash);
    part.extend_from_slice(&0u32.to_be_bytes());
    part.extend_from_slice(data);
    part
}

/// `h` of a segment holding all of a 100-byte file (attempt `attempt`), as PROTOCOL.md
/// §6.3 defines it: the piece record (extent, then the SHA-256 of the file up to the
/// piece's end) and `r`.
fn segment_hash(content: &[u8], random: &[u8; 4], attempt: u8) -> [u8; 32] {
    let mut record = Vec::new();
    record.extend_from_slice(&0u32.to_be_bytes());
    record.push(attempt);
    record.extend_from_slice(&0u64.to_be_bytes());
    record.extend_from_slice(&100u32.to_be_bytes());
    record.extend_from_slice(&Sha256::digest(content));
    Sha256::new()
        .chain_update(&record)
        .chain_update(random)
        .finalize()
        .into()
}

fn wrote_nothing(commands: &[DiskCommand]) -> bool {
    commands
        .iter()
        .all(|c| !matches!(c, DiskCommand::Write { .. } | DiskCommand::Commit { .. }))
}

/// Sends attempt `attempt` of the file as one uncompressed one-part segment whose layout,
/// digest and `h` promise `promised` while its part carries `sent`; returns the
/// receiver's error, if any.
fn send_segment(
    script: &mut Script,
    attempt: u8,
    promised: &[u8; 100],
    sent: &[u8; 100],
) -> Option<TransferError> {
    let random = [attempt, 2, 3, 4];
    let hash = segment_hash(promised, &random, attempt);
    script
        .sender
        .send_message(&layout(&hash, &Sha256::digest(promised).into(), attempt))
        .unwrap();
    let index = script.segments_sent + 1;
    let first = *script.first_hash.get_or_insert(hash);
    script
        .sender
        .send_message(&advertisement_at(hash, random, sent, 0, index, first))
        .unwrap();
    script.segments_sent = index;
    assert!(script.exchange().is_none());
    script.sender.send_message(&part(&hash, sent)).unwrap();
    script.exchange()
}

/// Sends the first segment, `h` = `hash`, laid out as all 100 bytes of the file with
/// `digest`, compressed on the wire as `wire` in one part; returns the receiver's error.
fn send_compressed(
    script: &mut Script,
    hash: [u8; 32],
    digest: [u8; 32],
    random: [u8; 4],
    wire: &[u8],
) -> Option<TransferError> {
    let compressed = ferry_core::resource::wire::flags::COMPRESSED;
    script
        .sender
        .send_message(&layout(&hash, &digest, 1))
        .unwrap();
    script
        .sender
        .send_message(&advertisement(hash, random, wire, compressed))
        .unwrap();
    assert!(script.exchange().is_none());
    // The receiver asked for the part; here it comes.
    script.sender.send_message(&part(&hash, wire)).unwrap();
    script.exchange()
}

#[test]
fn a_segment_hashed_as_the_protocol_says_is_accepted_and_written() {
    let content = [7u8; 100];
    let mut script = receiver_awaiting_a_segment(None);
    let error = send_segment(&mut script, 1, &content, &content);
    assert!(error.is_none(), "{error:?}");
    let commands = &script.commands;
    assert!(
        commands.iter().any(|c| matches!(
            c,
            DiskCommand::Write {
                entry: 0,
                offset: 0,
                len: 100,
                ..
            }
        )),
        "{commands:?}"
    );
}

/// Parts come in whole records and are decrypted straight into their segment: one of
/// the wrong length, or one sent again, is refused all the same, and nothing is written.
#[test]
fn a_part_of_the_wrong_length_or_sent_twice_is_refused_and_nothing_is_written() {
    let content = [7u8; 100];
    let random = [1, 2, 3, 4];
    let hash = segment_hash(&content, &random, 1);
    let wrong_length: [&[&[u8]]; 3] = [&[&content[..99]], &[&[7u8; 101]], &[&content, &content]];
    for parts in wrong_length {
        let mut script = receiver_awaiting_a_segment(None);
        script
            .sender
            .send_message(&layout(&hash, &Sha256::digest(content).into(), 1))
            .unwrap();
        script
            .sender
            .send_message(&advertisement(hash, random, &content, 0))
            .unwrap();
        assert!(script.exchange().is_none());
        let mut error = None;
        for data in parts {
            script.sender.send_message(&part(&hash, data)).unwrap();
            error = script.exchange();
        }
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        let Some(TransferError::Protocol(violation)) = error else {
            panic!("parts of {lens:?} bytes: {error:?}");
        };
        let why = violation.to_string();
        assert!(
            why.contains("wrong length") || why.contains("not being received"),
            "parts of {lens:?} bytes: {why}"
        );
        if parts.len() == 1 {
            assert!(wrote_nothing(&script.commands), "{:?}", script.commands);
        }
    }
}

#[test]
fn s6_3_a_segment_that_does_not_match_its_hash_is_rejected_unwritten_and_its_file_sent_again() {
    let promised = [7u8; 100];
    let mut sent = promised;
    sent[99] ^= 1;
    let mut script = receiver_awaiting_a_segment(None);
    let error = send_segment(&mut script, 1, &promised, &sent);
    assert_eq!(error, None, "the session goes on");
    assert!(wrote_nothing(&script.commands), "{:?}", script.commands);
    // RCL for the segment (the sender gives it up), then RETRY for the file.
    let hash = segment_hash(&promised, &[1, 2, 3, 4], 1);
    let mut rcl = vec![0x17];
    rcl.extend_from_slice(&hash);
    let mut retry = vec![0x20];
    retry.extend_from_slice(&0u32.to_be_bytes());
    retry.push(2);
    let at = |m: &Vec<u8>| script.answers.iter().position(|a| a == m);
    let (rcl_at, retry_at) = (at(&rcl), at(&retry));
    assert!(
        rcl_at.is_some() && retry_at.is_some() && rcl_at < retry_at,
        "{:02x?}",
        script.answers
    );
    assert!(
        script
            .events
            .contains(&TransferEvent::SegmentRejected { segment: 1 })
    );
    // Attempt 2, announced and sent as promised, is committed.
    let mut update = vec![0x23];
    update.extend_from_slice(&0u32.to_be_bytes());
    update.push(2);
    update.extend_from_slice(&100u64.to_be_bytes());
    update.extend_from_slice(&0i64.to_be_bytes());
    script.sender.send_message(&update).unwrap();
    assert_eq!(send_segment(&mut script, 2, &promised, &promised), None);
    assert!(
        script
            .commands
            .iter()
            .any(|c| matches!(c, DiskCommand::Commit { entry: 0 })),
        "{:?}",
        script.commands
    );
}

#[test]
fn a_decompression_bomb_fails_cleanly_naming_the_segment_and_writes_nothing() {
    let mut script = receiver_awaiting_a_segment(None);
    // A segment whose layout says 100 bytes, sent as bz2 of 1 MiB of zeros.
    let mut bomb = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    bomb.write_all(&vec![0u8; 1 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 100);
    let hash = [0x42u8; 32];
    let random = [1, 2, 3, 4];
    let error =
        send_compressed(&mut script, hash, [0; 32], random, &bomb).expect("the bomb is refused");
    assert_eq!(
        error,
        TransferError::DecompressionBomb {
            segment: 1,
            limit: 100
        }
    );
    assert!(error.to_string().contains("segment 1"), "{error}");
    assert!(wrote_nothing(&script.commands), "{:?}", script.commands);
    // The receiver cancelled the segment (RCL) and told the sender why (CANCEL).
    let mut told = Vec::new();
    let back = script.receiver.poll_transmit().to_vec();
    let mut at = 0;
    while at < back.len() {
        at += script
            .sender
            .handle_input(Timestamp::ZERO, &back[at..])
            .unwrap_or(back.len());
        if let Some(message) = script.sender.take_message() {
            told.push(message[0]);
        }
    }
    assert!(told.contains(&0x17) && told.contains(&0x22), "{told:x?}");
}

#[test]
fn bytes_that_differ_from_the_manifest_hash_are_never_committed_however_the_sender_reports_them() {
    // The manifest promises one content; the sender streams another and reports that
    // other content's digest with `changed` clear, attempt after attempt.
    let promised_by_manifest = [7u8; 100];
    let streamed = [8u8; 100];
    let mut script = receiver_awaiting_a_segment(Some(Sha256::digest(promised_by_manifest).into()));
    for attempt in 1..=3 {
        if attempt > 1 {
            // Every later attempt is announced: the same size and mtime, claiming the
            // file has not changed.
            let mut update = vec![0x23];
            update.extend_from_slice(&0u32.to_be_bytes());
            update.push(attempt);
            update.extend_from_slice(&100u64.to_be_bytes());
            update.extend_from_slice(&0i64.to_be_bytes());
            script.sender.send_message(&update).unwrap();
        }
        let error = send_segment(&mut script, attempt, &streamed, &streamed);
        assert!(error.is_none(), "attempt {attempt}: {error:?}");
    }
    assert!(
        !script
            .commands
            .iter()
            .any(|c| matches!(c, DiskCommand::Commit { .. })),
        "{:?}",
        script.commands
    );
    let discards = script
        .commands
        .iter()
        .filter(|c| matches!(c, DiskCommand::Discard { entry: 0 }))
        .count();
    assert_eq!(discards, 3, "{:?}", script.commands);
    let retries: Vec<u8> = script
        .events
        .iter()
        .filter_map(|e| match e {
            TransferEvent::FileRetry { entry: 0, attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [2, 3]);
    assert!(
        script.events.contains(&TransferEvent::FileFailed {
            entry: 0,
            reason: FileFailure::HashMismatch { attempts: 3 }
        }),
        "{:?}",
        script.events
    );
}

#[test]
fn the_manifest_hash_does_not_stand_in_the_way_of_matching_bytes() {
    let content = [7u8; 100];
    let mut script = receiver_awaiting_a_segment(Some(Sha256::digest(content).into()));
    assert!(send_segment(&mut script, 1, &content, &content).is_none());
    assert!(
        script.commands.contains(&DiskCommand::Commit { entry: 0 }),
        "{:?}",
        script.commands
    );
}

/// Feeds the receiver the sender's keepalives every 10 s up to `until`; returns when (and
/// how) the receiver ended.
fn keepalives_only(script: &mut Script, until: Duration) -> Option<(Duration, TransferError)> {
    let mut at = Duration::ZERO;
    while at <= until {
        at += Duration::from_secs(10);
        script.now = Timestamp::ZERO.saturating_add(at);
        script.sender.handle_timeout(script.now).unwrap();
        if let Some(error) = script.exchange() {
            return Some((at, error));
        }
        if let Err(error) = script.receiver.handle_timeout(script.now) {
            return Some((at, error));
        }
    }
    None
}

#[test]
fn a_sender_that_never_answers_the_plan_is_ended_within_the_documented_bound() {
    // Keepalives keep the connection alive; only the stall bound can end the wait.
    let config = TransferConfig::default();
    let stall = config.stall_timeout;
    let mut fresh = receiver_that_planned(config.clone(), 100, None, 0);
    let (ended, error) = keepalives_only(&mut fresh, Duration::from_secs(3600)).expect("ended");
    assert!(matches!(error, TransferError::Stalled(_)), "{error}");
    assert!(
        ended >= stall && ended <= stall + Duration::from_secs(10),
        "after {ended:?}"
    );

    // A receiver that claimed 1 GiB allows the sender to re-read it at the slowest rate
    // PROTOCOL.md §6.5 allows for, and not longer.
    let claimed = 1u64 << 30;
    let mut resuming = receiver_that_planned(config, 2 << 30, None, claimed);
    let bound = stall + Duration::from_secs(claimed / ferry_core::transfer::SLOWEST_REREAD);
    let (ended, error) = keepalives_only(&mut resuming, Duration::from_secs(3600)).expect("ended");
    assert!(matches!(error, TransferError::Stalled(_)), "{error}");
    assert!(
        ended >= bound && ended <= bound + Duration::from_secs(10),
        "after {ended:?}, bound {bound:?}"
    );
}

fn abandon(entry: u32, attempt: u8, cause: u8) -> Vec<u8> {
    let mut message = vec![0x24];
    message.extend_from_slice(&entry.to_be_bytes());
    message.extend_from_slice(&[attempt, cause]);
    message
}

#[test]
fn a_file_the_sender_cannot_read_fails_at_once_with_the_senders_reason() {
    let mut script = receiver_awaiting_a_segment(None);
    script.sender.send_message(&abandon(0, 1, 2)).unwrap();
    assert!(script.exchange().is_none());
    assert!(
        script.events.contains(&TransferEvent::FileFailed {
            entry: 0,
            reason: FileFailure::Unreadable {
                cause: ferry_core::transfer::Unreadable::PermissionDenied
            }
        }),
        "{:?}",
        script.events
    );
    assert!(
        !script
            .events
            .iter()
            .any(|e| matches!(e, TransferEvent::FileRetry { .. })),
        "retried"
    );
    assert!(
        script.events.contains(&TransferEvent::Finished {
            committed: 0,
            failed: 1
        }),
        "{:?}",
        script.events
    );
}

#[test]
fn a_changed_file_is_asked_for_again_and_its_next_attempt_must_be_announced() {
    let content = [7u8; 100];
    let mut script = receiver_awaiting_a_segment(None);
    script.sender.send_message(&abandon(0, 1, 0)).unwrap();
    assert!(script.exchange().is_none());
    assert!(
        script.events.contains(&TransferEvent::FileRetry {
            entry: 0,
            attempt: 2
        }),
        "{:?}",
        script.events
    );
    // Attempt 2 without its UPDATE is refused.
    let hash = segment_hash(&content, &[2, 2, 3, 4], 2);
    script
        .sender
        .send_message(&layout(&hash, &Sha256::digest(content).into(), 2))
        .unwrap();
    assert_eq!(
        script.exchange(),
        Some(TransferError::Protocol(Violation::File(
            "an attempt sent again without its update"
        )))
    );
}

#[test]
fn an_abandon_for_an_attempt_whose_last_piece_was_laid_out_is_refused() {
    let content = [7u8; 100];
    let mut script = receiver_awaiting_a_segment(None);
    let random = [1, 2, 3, 4];
    let hash = segment_hash(&content, &random, 1);
    script
        .sender
        .send_message(&layout(&hash, &Sha256::digest(content).into(), 1))
        .unwrap();
    script.sender.send_message(&abandon(0, 1, 0)).unwrap();
    assert_eq!(
        script.exchange(),
        Some(TransferError::Protocol(Violation::File(
            "an abandon for an attempt that is not under way"
        )))
    );
}

// Rules of PROTOCOL.md, one test per section's rules, named after the section.

fn file(path: &'static str, size: u64) -> ManifestItem {
    ManifestItem {
        path,
        kind: 0,
        size,
        mode: 0o644,
        hash: None,
    }
}

/// What a fresh receiver (default configuration) says to `begin` and `items` from a
/// sender whose channel is `sender_channel`.
fn offered(sender_channel: Config, begin: [u64; 4], items: &[ManifestItem]) -> Option<String> {
    let mut script = connected(TransferConfig::default(), sender_channel, 0);
    script.offer(begin, items).map(|e| match e {
        TransferError::Protocol(violation) => violation.to_string(),
        other => other.to_string(),
    })
}

#[test]
fn s6_1_a_part_size_outside_1_to_64_kib_or_beyond_the_smaller_record_limit_is_refused() {
    let f = [file("f", 10)];
    let with_part = |part_size, channel| offered(channel, [1, 1, 10, part_size], &f);
    let outside = "the sender's part size is not within 1 KiB..64 KiB";
    assert_eq!(with_part(1023, Config::default()).as_deref(), Some(outside));
    assert_eq!(
        with_part(65_537, Config::default()).as_deref(),
        Some(outside)
    );
    assert_eq!(with_part(1024, Config::default()), None);
    assert_eq!(with_part(65_536, Config::default()), None);
    // A sender whose own records hold 2 KiB: the smaller limit is the one that counts.
    let small = Config {
        max_record_payload: 2048,
        ..Config::default()
    };
    assert_eq!(
        with_part(2048, small.clone()).as_deref(),
        Some("the sender's part size does not fit in one record of the smaller record limit")
    );
    assert_eq!(with_part(2048 - 37, small), None);
}

#[test]
fn s6_1_the_headers_totals_must_add_up_to_the_entries() {
    let f = [file("f", 10)];
    assert_eq!(
        offered(Config::default(), [1, 1, 11, 1024], &f).as_deref(),
        Some("the files' sizes do not add up to the header's total_bytes")
    );
    assert_eq!(
        offered(Config::default(), [1, 2, 10, 1024], &f).as_deref(),
        Some("the paths' lengths do not add up to the header's path_bytes")
    );
    assert_eq!(offered(Config::default(), [1, 1, 10, 1024], &f), None);
}

#[test]
fn s6_1_modes_kinds_and_directories_are_held_to_their_rules() {
    let refusal = |item: ManifestItem| {
        let begin = [1, item.path.len() as u64, item.size, 1024];
        offered(Config::default(), begin, &[item]).unwrap_or_default()
    };
    let full_st_mode = ManifestItem {
        mode: 0o100_644,
        ..file("f", 1)
    };
    assert!(refusal(full_st_mode).contains("mode has bits beyond 0o7777"));
    let sized_dir = ManifestItem {
        kind: 1,
        ..file("d", 3)
    };
    assert!(refusal(sized_dir).contains("a directory has a size or hash"));
    let unknown_kind = ManifestItem {
        kind: 2,
        ..file("x", 0)
    };
    assert!(refusal(unknown_kind).contains("unknown kind"));
    // A child may come before its directory, whose entry may be left out altogether.
    let child_first = [
        file("d/e/f", 4),
        ManifestItem {
            kind: 1,
            ..file("d", 0)
        },
    ];
    assert_eq!(
        offered(Config::default(), [2, 6, 4, 1024], &child_first),
        None
    );
}

#[test]
fn s6_3_an_empty_file_is_committed_with_the_plan_and_never_has_a_piece() {
    let mut script = connected(TransferConfig::default(), Config::default(), 0);
    let items = [file("empty", 0), file("f", 100)];
    assert!(script.offer([2, 6, 100, 1024], &items).is_none());
    script.settle_plan();
    assert!(script.exchange().is_none());
    assert!(
        script
            .commands
            .iter()
            .any(|c| matches!(c, DiskCommand::Commit { entry: 0 })),
        "the empty file is committed once the plan settles: {:?}",
        script.commands
    );
    // A piece of it is refused.
    let mut empty_piece = vec![0x10];
    empty_piece.extend_from_slice(&[9u8; 32]);
    empty_piece.extend_from_slice(&1u32.to_be_bytes());
    empty_piece.extend_from_slice(&0u32.to_be_bytes()); // entry 0
    empty_piece.push(1); // attempt
    empty_piece.extend_from_slice(&0u64.to_be_bytes());
    empty_piece.extend_from_slice(&0u32.to_be_bytes()); // len 0
    empty_piece.extend_from_slice(&0u32.to_be_bytes()); // no digests
    script.sender.send_message(&empty_piece).unwrap();
    let error = script
        .exchange()
        .expect("a piece of an empty file is refused");
    assert!(
        matches!(error, TransferError::Protocol(Violation::Segment(_))),
        "{error}"
    );
}

#[test]
fn s6_3_compressed_data_must_be_one_bz2_stream_and_nothing_after_it() {
    let content = [7u8; 100];
    let mut compressed = Vec::new();
    let mut encoder = bzip2::write::BzEncoder::new(&mut compressed, bzip2::Compression::best());
    encoder.write_all(&content).unwrap();
    encoder.finish().unwrap();
    assert!(compressed.len() < 100, "{} bytes", compressed.len());
    for (trailer, accepted) in [(&[][..], true), (&[0u8][..], false)] {
        let mut wire = compressed.clone();
        wire.extend_from_slice(trailer);
        let mut script = receiver_awaiting_a_segment(None);
        let random = [1, 2, 3, 4];
        let hash = segment_hash(&content, &random, 1);
        let digest: [u8; 32] = Sha256::digest(content).into();
        let error = send_compressed(&mut script, hash, digest, random, &wire);
        if accepted {
            assert!(error.is_none(), "{error:?}");
        } else {
            assert!(
                matches!(error, Some(TransferError::SegmentCorrupt(1))),
                "{error:?}"
            );
            assert!(wrote_nothing(&script.commands));
        }
    }
}

#[test]
fn s7_an_advertisement_is_held_to_its_layout_and_its_place_in_the_stream() {
    let content = [7u8; 100];
    let random = [1, 2, 3, 4];
    let hash = segment_hash(&content, &random, 1);
    let digest: [u8; 32] = Sha256::digest(content).into();
    let map = map_hash(&0u32.to_be_bytes(), &random);
    let base = Advertisement {
        transfer_size: 100,
        data_size: 100,
        parts: 1,
        hash,
        random_hash: random,
        original_hash: hash,
        segment_index: 1,
        total_segments: 1,
        request_id: None,
        flags: 0,
        hashmap: &map,
    };
    let try_adv = |adv: Advertisement<'_>| {
        let mut script = receiver_awaiting_a_segment(None);
        script
            .sender
            .send_message(&layout(&hash, &digest, 1))
            .unwrap();
        let mut message = vec![0x11; 1 + adv.encoded_len()];
        adv.encode(&mut message[1..]).unwrap();
        script.sender.send_message(&message).unwrap();
        script.exchange().map(|e| e.to_string())
    };
    assert_eq!(try_adv(base), None);
    let informational_d = Advertisement {
        data_size: 12_345,
        ..base
    };
    assert_eq!(try_adv(informational_d), None, "d is not checked");
    let split = ferry_core::resource::wire::flags::SPLIT;
    for (what, adv) in [
        ("encrypted", Advertisement { flags: 1, ..base }),
        (
            "metadata",
            Advertisement {
                flags: 1 << 5,
                ..base
            },
        ),
        (
            "index 2 for the first segment",
            Advertisement {
                segment_index: 2,
                total_segments: 2,
                flags: split,
                ..base
            },
        ),
        (
            "total below the index",
            Advertisement {
                total_segments: 0,
                ..base
            },
        ),
        (
            "split with one segment",
            Advertisement {
                flags: split,
                ..base
            },
        ),
        (
            "two segments, not split",
            Advertisement {
                total_segments: 2,
                ..base
            },
        ),
        (
            "another original hash",
            Advertisement {
                original_hash: [1; 32],
                ..base
            },
        ),
        (
            "a request id",
            Advertisement {
                request_id: Some(&[1, 2]),
                ..base
            },
        ),
        (
            "no map hashes",
            Advertisement {
                hashmap: &[],
                ..base
            },
        ),
    ] {
        let refusal = try_adv(adv).unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(refusal.contains("advertisement"), "{what}: {refusal}");
    }
}

#[test]
fn s6_2_the_plan_gets_one_answer_in_as_many_results_as_needed_and_no_other() {
    let content = [7u8; 100];
    let mut script = receiver_that_planned(TransferConfig::default(), 100, None, 0);
    // The answer in two messages, the first not final, settles the plan.
    script.plan_result(false);
    assert!(script.exchange().is_none());
    script.plan_result(true);
    assert_eq!(send_segment(&mut script, 1, &content, &content), None);
    // A second answer is refused.
    script.plan_result(true);
    let error = script.exchange().map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("protocol violation by the peer: a plan result the receiver did not ask for")
    );
}
