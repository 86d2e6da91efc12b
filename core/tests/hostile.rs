//! A scripted hostile sender against a real receiver: a decompression bomb, and data that
//! does not match its segment hash. The script builds every message from PROTOCOL.md, so
//! the segment that is accepted also checks the spec's definition of `h`.

use std::io::Write;

use ferry_core::resource::{Advertisement, map_hash};
use ferry_core::transfer::{
    DiskCommand, ReceiverSession, TransferConfig, TransferError, TransferEvent,
};
use ferry_core::{Channel, Config, Role, SeededEntropy, Timestamp, Token};
use sha2::{Digest, Sha256};

/// Moves bytes both ways until quiet; accepts the batch when offered. Returns the
/// receiver's error if it failed and every disk command it issued.
fn exchange(
    sender: &mut Channel,
    receiver: &mut ReceiverSession,
    commands: &mut Vec<DiskCommand>,
) -> Option<TransferError> {
    let now = Timestamp::ZERO;
    for _ in 0..20 {
        let bytes = sender.poll_transmit().to_vec();
        sender.advance_transmit(bytes.len());
        let mut at = 0;
        while at < bytes.len() {
            match receiver.handle_input(now, &bytes[at..]) {
                Ok(n) => at += n,
                Err(error) => return Some(error),
            }
            while let Some(command) = receiver.poll_disk() {
                commands.push(command);
            }
            while let Some(event) = receiver.poll_event() {
                if let TransferEvent::BatchOffered { .. } = event {
                    receiver.accept(now, &[]).unwrap();
                }
            }
        }
        let back = receiver.poll_transmit().to_vec();
        receiver.advance_transmit(back.len());
        let mut at = 0;
        while at < back.len() {
            at += sender.handle_input(now, &back[at..]).unwrap();
            let _ = sender.take_message();
        }
        while sender.poll_event().is_some() {}
    }
    None
}

fn msgpack(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    build(&mut out);
    out
}

/// A sender channel and a receiver session that has accepted a batch of one 100-byte file
/// `f` and settled its plan: the next thing it expects is a segment.
fn receiver_awaiting_a_segment() -> (Channel, ReceiverSession, Vec<DiskCommand>) {
    let mut entropy = SeededEntropy::new(5);
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    let mut sender = Channel::new(
        Role::Sender,
        token.clone(),
        Config::default(),
        &mut entropy,
        now,
    )
    .unwrap();
    let mut receiver =
        ReceiverSession::new(TransferConfig::default(), token, &mut entropy, now).unwrap();
    let mut commands = Vec::new();
    assert!(exchange(&mut sender, &mut receiver, &mut commands).is_none());
    assert!(sender.is_established());

    // One 100-byte file.
    sender
        .send_message(&msgpack(|m| {
            m.push(0x01);
            rmp::encode::write_array_len(m, 4).unwrap();
            for v in [1u64, 1, 100, 64 << 10] {
                rmp::encode::write_uint(m, v).unwrap();
            }
        }))
        .unwrap();
    sender
        .send_message(&msgpack(|m| {
            m.push(0x02);
            rmp::encode::write_array_len(m, 1).unwrap();
            rmp::encode::write_array_len(m, 6).unwrap();
            rmp::encode::write_str(m, "f").unwrap();
            for v in [0u64, 100, 0o644] {
                rmp::encode::write_uint(m, v).unwrap();
            }
            rmp::encode::write_sint(m, 0).unwrap();
            rmp::encode::write_nil(m).unwrap();
        }))
        .unwrap();
    assert!(exchange(&mut sender, &mut receiver, &mut commands).is_none());
    // The receiver planned; settle with no rejections.
    sender
        .send_message(&msgpack(|m| {
            m.push(0x04);
            rmp::encode::write_array_len(m, 2).unwrap();
            rmp::encode::write_bool(m, true).unwrap();
            rmp::encode::write_array_len(m, 0).unwrap();
        }))
        .unwrap();

    (sender, receiver, commands)
}

/// LAYOUT for one piece: all 100 bytes of entry 0, attempt 1, ending the file with the
/// sender's `digest`.
fn layout(hash: &[u8; 32], digest: &[u8; 32]) -> Vec<u8> {
    let mut layout = vec![0x10];
    layout.extend_from_slice(hash);
    layout.extend_from_slice(&1u32.to_be_bytes());
    layout.extend_from_slice(&0u32.to_be_bytes());
    layout.push(1);
    layout.extend_from_slice(&0u64.to_be_bytes());
    layout.extend_from_slice(&100u32.to_be_bytes());
    layout.extend_from_slice(&1u32.to_be_bytes());
    layout.extend_from_slice(&0u32.to_be_bytes());
    layout.extend_from_slice(&[1, 0]);
    layout.extend_from_slice(digest);
    layout
}

/// ADV for a one-part segment of `wire` bytes.
fn advertisement(hash: [u8; 32], random: [u8; 4], wire: &[u8], flags: u8) -> Vec<u8> {
    let map = map_hash(&0u32.to_be_bytes(), &random);
    let adv = Advertisement {
        transfer_size: wire.len() as u64,
        data_size: 100,
        parts: 1,
        hash,
        random_hash: random,
        original_hash: hash,
        segment_index: 1,
        total_segments: 1,
        request_id: None,
        flags,
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

/// `h` of a segment holding all of a 100-byte file, as PROTOCOL.md §6.3 defines it: the
/// piece record (extent, then the SHA-256 of the file up to the piece's end) and `r`.
fn segment_hash(content: &[u8], random: &[u8; 4]) -> [u8; 32] {
    let mut record = Vec::new();
    record.extend_from_slice(&0u32.to_be_bytes());
    record.push(1);
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

/// Sends one uncompressed one-part segment whose layout, digest and `h` promise
/// `promised` while its part carries `sent`; returns the receiver's error, if any, and
/// every disk command it issued.
fn send_segment(
    promised: &[u8; 100],
    sent: &[u8; 100],
) -> (Option<TransferError>, Vec<DiskCommand>) {
    let (mut sender, mut receiver, mut commands) = receiver_awaiting_a_segment();
    let random = [1, 2, 3, 4];
    let hash = segment_hash(promised, &random);
    sender
        .send_message(&layout(&hash, &Sha256::digest(promised).into()))
        .unwrap();
    sender
        .send_message(&advertisement(hash, random, sent, 0))
        .unwrap();
    assert!(exchange(&mut sender, &mut receiver, &mut commands).is_none());
    sender.send_message(&part(&hash, sent)).unwrap();
    let error = exchange(&mut sender, &mut receiver, &mut commands);
    (error, commands)
}

#[test]
fn a_segment_hashed_as_the_protocol_says_is_accepted_and_written() {
    let content = [7u8; 100];
    let (error, commands) = send_segment(&content, &content);
    assert!(error.is_none(), "{error:?}");
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

#[test]
fn data_that_does_not_match_its_segment_hash_is_refused_and_nothing_is_written() {
    let promised = [7u8; 100];
    let mut sent = promised;
    sent[99] ^= 1;
    let (error, commands) = send_segment(&promised, &sent);
    assert_eq!(error, Some(TransferError::SegmentCorrupt(1)));
    assert!(wrote_nothing(&commands), "{commands:?}");
}

#[test]
fn a_decompression_bomb_fails_cleanly_naming_the_segment_and_writes_nothing() {
    let (mut sender, mut receiver, mut commands) = receiver_awaiting_a_segment();
    // A segment whose layout says 100 bytes, sent as bz2 of 1 MiB of zeros.
    let mut bomb = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    bomb.write_all(&vec![0u8; 1 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 100);
    let hash = [0x42u8; 32];
    let random = [1, 2, 3, 4];
    sender.send_message(&layout(&hash, &[0u8; 32])).unwrap();
    sender
        .send_message(&advertisement(
            hash,
            random,
            &bomb,
            ferry_core::resource::wire::flags::COMPRESSED,
        ))
        .unwrap();
    assert!(exchange(&mut sender, &mut receiver, &mut commands).is_none());

    // The receiver asked for the part; here it comes.
    sender.send_message(&part(&hash, &bomb)).unwrap();
    let error = exchange(&mut sender, &mut receiver, &mut commands).expect("the bomb is refused");
    assert_eq!(
        error,
        TransferError::DecompressionBomb {
            segment: 1,
            limit: 100
        }
    );
    assert!(error.to_string().contains("segment 1"), "{error}");
    assert!(wrote_nothing(&commands), "{commands:?}");
    // The receiver cancelled the segment (RCL) and told the sender why (CANCEL).
    let mut told = Vec::new();
    let back = receiver.poll_transmit().to_vec();
    let mut at = 0;
    while at < back.len() {
        at += sender
            .handle_input(Timestamp::ZERO, &back[at..])
            .unwrap_or(back.len());
        if let Some(message) = sender.take_message() {
            told.push(message[0]);
        }
    }
    assert!(told.contains(&0x17) && told.contains(&0x22), "{told:x?}");
}
