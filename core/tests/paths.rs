//! Every path rule, with its exact error, and a hostile sender that offers bad paths.

mod common;

use common::{Pair, Seen, drain_events, feed};
use ferry_core::transfer::manifest::check_path;
use ferry_core::transfer::{
    Entry, EntryKind, Manifest, ManifestBuilder, ManifestEntry, ManifestError, ManifestLimits,
    Output, PathRule, ReceiverSession, Session, TransferConfig, TransferError, Violation,
};
use ferry_core::{Channel, Config, Role, SeededEntropy, Timestamp, Token};

fn entry(path: &str, kind: EntryKind) -> ManifestEntry {
    ManifestEntry {
        path: path.to_owned(),
        kind,
        size: 0,
        mode: 0o644,
        mtime_ns: 0,
        sha256: None,
    }
}

fn refused(paths: &[(&str, EntryKind)]) -> ManifestError {
    let entries: Vec<ManifestEntry> = paths.iter().map(|(p, k)| entry(p, *k)).collect();
    Manifest::from_entries(&entries, &ManifestLimits::default()).unwrap_err()
}

#[test]
fn each_path_rule_refuses_with_its_own_error() {
    let limits = ManifestLimits::default();
    let long_name = "n".repeat(256);
    let long_path = format!("{}/x", ["d"; 2048].join("/"));
    let cases: &[(&str, PathRule)] = &[
        ("", PathRule::Empty),
        ("/etc/passwd", PathRule::Absolute),
        ("C:/Windows/x", PathRule::DrivePrefix),
        ("c:x", PathRule::DrivePrefix),
        ("a\\b", PathRule::Backslash),
        ("a\0b", PathRule::ControlCharacter),
        ("a\nb", PathRule::ControlCharacter),
        ("a\u{7f}b", PathRule::ControlCharacter),
        ("..", PathRule::DotComponent),
        ("../x", PathRule::DotComponent),
        ("a/../../x", PathRule::DotComponent),
        ("a/./b", PathRule::DotComponent),
        ("a//b", PathRule::EmptyComponent),
        ("a/", PathRule::EmptyComponent),
        (&long_name, PathRule::NameTooLong),
        (&long_path, PathRule::PathTooLong),
    ];
    for (path, rule) in cases {
        assert_eq!(check_path(path, &limits), Err(*rule), "{path:?}");
        assert_eq!(
            refused(&[("ok", EntryKind::File), (path, EntryKind::File)]),
            ManifestError::Path {
                index: 1,
                path: (*path).to_owned(),
                rule: *rule
            },
        );
    }
    for fine in [
        "a",
        "a/b/c.txt",
        "dir with spaces/ünïcode ✓",
        "...",
        "a..b",
        ".hidden/x",
    ] {
        assert_eq!(check_path(fine, &limits), Ok(()), "{fine:?}");
    }
}

#[test]
fn duplicates_and_files_used_as_directories_are_refused_by_entry() {
    assert_eq!(
        refused(&[
            ("a", EntryKind::File),
            ("b", EntryKind::File),
            ("a", EntryKind::File)
        ]),
        ManifestError::Path {
            index: 2,
            path: "a".into(),
            rule: PathRule::Duplicate
        }
    );
    assert_eq!(
        refused(&[
            ("a", EntryKind::File),
            ("a-b", EntryKind::File),
            ("a/c", EntryKind::File)
        ]),
        ManifestError::Path {
            index: 2,
            path: "a/c".into(),
            rule: PathRule::FileIsParent
        }
    );
    // A directory may of course contain things, listed before or after it.
    let ok: Vec<ManifestEntry> = [
        ("a/c", EntryKind::File),
        ("a", EntryKind::Directory),
        ("a/d", EntryKind::Directory),
    ]
    .iter()
    .map(|(p, k)| entry(p, *k))
    .collect();
    assert!(Manifest::from_entries(&ok, &ManifestLimits::default()).is_ok());
    let message = ManifestError::Path {
        index: 2,
        path: "a/c".into(),
        rule: PathRule::FileIsParent,
    }
    .to_string();
    assert_eq!(
        message,
        "entry 2 (\"a/c\") is refused: a file is also used as a directory by another entry"
    );
}

#[test]
fn limits_are_checked_before_room_is_made() {
    let limits = ManifestLimits {
        max_entries: 10,
        max_path_bytes: 100,
        ..ManifestLimits::default()
    };
    assert!(matches!(
        Manifest::with_capacity(11, 10, &limits),
        Err(ManifestError::TooLarge {
            found: 11,
            max: 10,
            ..
        })
    ));
    assert!(matches!(
        Manifest::with_capacity(1, 101, &limits),
        Err(ManifestError::TooLarge {
            found: 101,
            max: 100,
            ..
        })
    ));
    assert!(matches!(
        Manifest::with_capacity(u64::MAX, 0, &limits),
        Err(ManifestError::TooLarge { .. })
    ));
}

/// A sender's listing stops at the receiver's limit exactly, whatever room its vector
/// has made: one entry more was accepted once it had grown past the limit (a folder of
/// a million files and one: the receiver refused it, and the sender waited on).
#[test]
fn a_listing_stops_at_the_entry_limit_exactly() {
    for max_entries in [10, 100, 1000, 70] {
        let limits = ManifestLimits {
            max_entries,
            ..ManifestLimits::default()
        };
        let mut builder = ManifestBuilder::new(limits);
        let names: Vec<String> = (0..=max_entries).map(|i| format!("f{i:05}")).collect();
        let mut pushed = 0;
        for name in &names {
            let entry = Entry {
                path: name,
                kind: EntryKind::File,
                size: 0,
                mode: 0o644,
                mtime_ns: 0,
                sha256: None,
            };
            if builder.push(entry).is_err() {
                break;
            }
            pushed += 1;
        }
        assert_eq!(pushed, max_entries, "limit {max_entries}");
    }
}

/// A hand-made sender: completes the handshake with a real receiver, then offers
/// `entries` (path, kind, size) exactly as given, bypassing every sender-side check.
fn offer(
    entries: &[(&str, u64, u64)],
    header: Option<[u64; 4]>,
) -> (TransferError, ReceiverSession) {
    let mut entropy = SeededEntropy::new(77);
    let token = Token::generate(&mut entropy);
    let mut sender = Channel::new(
        Role::Sender,
        token.clone(),
        Config::default(),
        &mut entropy,
        Timestamp::ZERO,
    )
    .unwrap();
    let mut receiver = ReceiverSession::new(
        TransferConfig::default(),
        token,
        &mut entropy,
        Timestamp::ZERO,
    )
    .unwrap();
    let mut seen = Seen::default();
    for _ in 0..3 {
        let to_receiver = sender.poll_transmit().to_vec();
        sender.advance_transmit(to_receiver.len());
        let mut at = 0;
        while at < to_receiver.len() {
            at += receiver
                .handle_input(Timestamp::ZERO, &to_receiver[at..])
                .unwrap();
        }
        let back = receiver.poll_transmit().to_vec();
        receiver.advance_transmit(back.len());
        feed(&mut sender, &mut seen, Timestamp::ZERO, &back, usize::MAX);
        drain_events(&mut sender, &mut seen);
    }
    assert!(sender.is_established());
    let path_bytes: u64 = entries.iter().map(|e| e.0.len() as u64).sum();
    let total_bytes: u64 = entries.iter().map(|e| e.2).sum();
    let [count, paths, total, part] =
        header.unwrap_or([entries.len() as u64, path_bytes, total_bytes, 64 << 10]);
    let mut begin = vec![0x01];
    rmp::encode::write_array_len(&mut begin, 4).unwrap();
    for value in [count, paths, total, part] {
        rmp::encode::write_uint(&mut begin, value).unwrap();
    }
    sender.send_message(&begin).unwrap();
    let mut list = vec![0x02];
    rmp::encode::write_array_len(&mut list, entries.len() as u32).unwrap();
    for (path, kind, size) in entries {
        rmp::encode::write_array_len(&mut list, 6).unwrap();
        rmp::encode::write_str(&mut list, path).unwrap();
        rmp::encode::write_uint(&mut list, *kind).unwrap();
        rmp::encode::write_uint(&mut list, *size).unwrap();
        rmp::encode::write_uint(&mut list, 0o644).unwrap();
        rmp::encode::write_sint(&mut list, 0).unwrap();
        rmp::encode::write_nil(&mut list).unwrap();
    }
    sender.send_message(&list).unwrap();
    let bytes = sender.poll_transmit().to_vec();
    let mut at = 0;
    let error = loop {
        match receiver.handle_input(Timestamp::ZERO, &bytes[at..]) {
            Ok(n) if n > 0 => at += n,
            Ok(_) => panic!("the hostile manifest was accepted"),
            Err(error) => break error,
        }
    };
    (error, receiver)
}

#[test]
fn a_hostile_sender_cannot_offer_paths_outside_the_output_directory() {
    for (path, rule) in [
        ("../x", PathRule::DotComponent),
        ("/etc/x", PathRule::Absolute),
        ("a/../../x", PathRule::DotComponent),
        ("C:\\x", PathRule::DrivePrefix),
    ] {
        let (error, mut receiver) = offer(&[("fine", 0, 10), (path, 0, 10)], None);
        assert_eq!(
            error,
            TransferError::Manifest(ManifestError::Path {
                index: 1,
                path: path.into(),
                rule
            }),
            "{path}"
        );
        // Refused before anything was offered to the user or written.
        assert_eq!(
            receiver.poll_output(),
            Output::Event(ferry_core::transfer::TransferEvent::Connected)
        );
        assert_eq!(receiver.poll_output(), Output::Timeout(None));
    }
    // A "symlink trick" at the manifest level: a file that is also a directory.
    let (error, _) = offer(&[("link", 0, 1), ("link/passwd", 0, 1)], None);
    assert!(matches!(
        error,
        TransferError::Manifest(ManifestError::Path {
            rule: PathRule::FileIsParent,
            ..
        })
    ));
}

#[test]
fn a_hostile_manifest_header_is_refused_before_allocation() {
    let (error, _) = offer(&[], Some([u64::MAX, 10, 0, 64 << 10]));
    assert!(
        matches!(
            error,
            TransferError::Manifest(ManifestError::TooLarge { .. })
        ),
        "{error}"
    );
    let (error, _) = offer(&[("a", 0, 1), ("b", 0, 1)], Some([1, 2, 0, 64 << 10]));
    assert_eq!(
        error,
        TransferError::Protocol(Violation::Manifest(
            "more manifest entries than the header announced"
        ))
    );
    let (error, _) = offer(&[("a", 0, 1)], Some([1, 1, 0, 1 << 30]));
    assert!(error.to_string().contains("part size"), "{error}");
}

#[test]
fn the_sender_refuses_a_tree_with_conflicts_up_front() {
    let entries = vec![entry("x", EntryKind::File), entry("x", EntryKind::File)];
    assert!(Manifest::from_entries(&entries, &ManifestLimits::default()).is_err());
    let _ = Pair::new(1);
}
