//! Two transfer sessions joined in memory, with an in-memory source tree and destination,
//! executing disk commands as they come.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

use ferry_core::transfer::{
    DiskCommand, EntryKind, FileMeta, Manifest, ManifestEntry, ReceiverSession, SenderSession,
    TransferConfig, TransferError, TransferEvent,
};
use ferry_core::{SeededEntropy, Timestamp, Token};

/// A file or directory of a test batch.
#[derive(Clone, Debug)]
pub struct Item {
    pub path: String,
    pub data: Option<Vec<u8>>,
}

pub fn file(path: &str, data: Vec<u8>) -> Item {
    Item {
        path: path.to_owned(),
        data: Some(data),
    }
}

pub fn dir(path: &str) -> Item {
    Item {
        path: path.to_owned(),
        data: None,
    }
}

/// Deterministic bytes: a seeded stream, so sizes and contents vary per test.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    use ferry_core::Entropy;
    let mut out = vec![0u8; len];
    SeededEntropy::new(seed).fill(&mut out);
    out
}

pub fn manifest_of(items: &[Item], with_hashes: bool) -> Manifest {
    use sha2::{Digest, Sha256};
    let entries: Vec<ManifestEntry> = items
        .iter()
        .map(|item| ManifestEntry {
            path: item.path.clone(),
            kind: if item.data.is_some() {
                EntryKind::File
            } else {
                EntryKind::Directory
            },
            size: item.data.as_ref().map_or(0, |d| d.len() as u64),
            mode: if item.data.is_some() { 0o644 } else { 0o755 },
            mtime: 1_700_000_000,
            sha256: item
                .data
                .as_ref()
                .filter(|_| with_hashes)
                .map(|d| Sha256::digest(d).into()),
        })
        .collect();
    Manifest::from_entries(&entries, &Default::default()).unwrap()
}

/// Called with (entry, offset, len, read count) before each sender read: may alter the
/// source to simulate a file that changes while it is sent.
pub type SourceHook = Box<dyn FnMut(usize, u64, usize, usize, &mut Vec<u8>)>;

/// Called after every exchange of bytes with the sender's wire count: to cancel, say.
pub type StepHook = Box<dyn FnMut(&mut SenderSession, &mut ReceiverSession, u64)>;

pub struct World {
    pub sender: SenderSession,
    pub receiver: ReceiverSession,
    pub source: Vec<Option<Vec<u8>>>,
    pub now: Timestamp,
    /// Receiver side: partial files by entry, committed files and directories.
    pub partial: BTreeMap<usize, Vec<u8>>,
    pub committed: BTreeMap<usize, Vec<u8>>,
    pub dirs: BTreeSet<usize>,
    pub local: Vec<(usize, u64)>,
    pub sender_events: Vec<TransferEvent>,
    pub receiver_events: Vec<TransferEvent>,
    pub sender_error: Option<TransferError>,
    pub receiver_error: Option<TransferError>,
    /// Bytes the sender put on the wire, and how many of them after the handshake.
    pub sender_wire: u64,
    pub checkpoints: usize,
    pub source_hook: Option<SourceHook>,
    reads: Vec<usize>,
    /// Per entry: how many times its source changed, and that count when its current
    /// attempt began (a driver's size-and-mtime check: a read that finds the file changed
    /// since comes back short).
    versions: Vec<u64>,
    baseline: Vec<u64>,
    /// The sender's bytes stop reaching the receiver after this many (a dead link).
    pub cut_after: Option<u64>,
    /// Decline instead of accepting.
    pub decline: bool,
    /// Sender reads after this many never complete (a hung disk).
    pub hang_reads_after: Option<usize>,
    /// Called after every exchange of bytes, with the sender's wire count: to cancel, say.
    pub on_step: Option<StepHook>,
}

impl World {
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
        World {
            sender: SenderSession::new(sender_config, token.clone(), manifest, &mut entropy, now)
                .unwrap(),
            receiver: ReceiverSession::new(config, token, &mut entropy, now).unwrap(),
            source: items.iter().map(|i| i.data.clone()).collect(),
            now,
            partial: BTreeMap::new(),
            committed: BTreeMap::new(),
            dirs: BTreeSet::new(),
            local: Vec::new(),
            sender_events: Vec::new(),
            receiver_events: Vec::new(),
            sender_error: None,
            receiver_error: None,
            sender_wire: 0,
            checkpoints: 0,
            source_hook: None,
            reads: vec![0; items.len()],
            versions: vec![0; items.len()],
            baseline: vec![0; items.len()],
            cut_after: None,
            decline: false,
            hang_reads_after: None,
            on_step: None,
        }
    }

    pub fn with(items: &[Item], config: TransferConfig, seed: u64) -> Self {
        World::new(items, config.clone(), config, seed, true)
    }

    fn sender_disk(&mut self) -> bool {
        let mut worked = false;
        while let Some(command) = self.sender.poll_disk() {
            worked = true;
            let (id, entry, offset, len) = match command {
                DiskCommand::Read {
                    id,
                    entry,
                    offset,
                    len,
                } => (id, entry, offset, len),
                DiskCommand::Reopen { entry } => {
                    self.baseline[entry] = self.versions[entry];
                    let meta = FileMeta {
                        size: self.source[entry].as_ref().map_or(0, |d| d.len() as u64),
                        mtime: self.versions[entry] as i64,
                    };
                    if let Err(error) = self.sender.handle_reopen_done(self.now, entry, Ok(meta)) {
                        self.sender_error.get_or_insert(error);
                        return worked;
                    }
                    continue;
                }
                other => panic!("the sender asked for {other:?}"),
            };
            self.reads[entry] += 1;
            let count = self.reads[entry];
            if self
                .hang_reads_after
                .is_some_and(|after| self.reads.iter().sum::<usize>() > after)
            {
                continue;
            }
            if let (Some(hook), Some(data)) =
                (self.source_hook.as_mut(), self.source[entry].as_mut())
            {
                let before = data.clone();
                hook(entry, offset, len, count, data);
                if *data != before {
                    self.versions[entry] += 1;
                }
            }
            let data = self.source[entry].as_deref().unwrap_or(&[]);
            let start = (offset as usize).min(data.len());
            let end = (start + len).min(data.len());
            let changed = self.versions[entry] != self.baseline[entry];
            let n = if changed { 0 } else { end - start };
            self.sender.read_buffer(id)[..n].copy_from_slice(&data[start..start + n]);
            if let Err(error) = self.sender.handle_read_done(self.now, id, Ok(n)) {
                self.sender_error.get_or_insert(error);
                return worked;
            }
        }
        worked
    }

    fn receiver_disk(&mut self) -> bool {
        let mut worked = false;
        while let Some(command) = self.receiver.poll_disk() {
            worked = true;
            let result = match command {
                DiskCommand::Read {
                    id,
                    entry,
                    offset,
                    len,
                } => {
                    let data = self
                        .partial
                        .get(&entry)
                        .or(self.committed.get(&entry))
                        .cloned()
                        .unwrap_or_default();
                    let start = (offset as usize).min(data.len());
                    let end = (start + len).min(data.len());
                    self.receiver.read_buffer(id)[..end - start].copy_from_slice(&data[start..end]);
                    self.receiver
                        .handle_read_done(self.now, id, Ok(end - start))
                }
                DiskCommand::Write {
                    id,
                    entry,
                    offset,
                    len,
                } => {
                    let data = self.receiver.write_data(id).to_vec();
                    assert_eq!(data.len(), len);
                    let file = self.partial.entry(entry).or_default();
                    let end = offset as usize + len;
                    if file.len() < end {
                        file.resize(end, 0);
                    }
                    file[offset as usize..end].copy_from_slice(&data);
                    self.receiver.handle_write_done(self.now, id, Ok(()))
                }
                DiskCommand::Commit { entry } => {
                    let data = self
                        .partial
                        .remove(&entry)
                        .or_else(|| self.committed.get(&entry).cloned())
                        .unwrap_or_default();
                    self.committed.insert(entry, data);
                    Ok(())
                }
                DiskCommand::Discard { entry } => {
                    self.partial.remove(&entry);
                    Ok(())
                }
                DiskCommand::CreateDir { entry } => {
                    self.dirs.insert(entry);
                    Ok(())
                }
                DiskCommand::Checkpoint { .. } => {
                    self.checkpoints += 1;
                    Ok(())
                }
                other => panic!("unexpected {other:?}"),
            };
            if let Err(error) = result {
                self.receiver_error.get_or_insert(error);
                return worked;
            }
        }
        worked
    }

    fn events(&mut self) -> bool {
        let mut worked = false;
        while let Some(event) = self.sender.poll_event() {
            self.sender_events.push(event);
            worked = true;
        }
        while let Some(event) = self.receiver.poll_event() {
            if matches!(event, TransferEvent::BatchOffered { .. }) {
                let result = if self.decline {
                    self.receiver.decline(self.now, "not today")
                } else {
                    let local = self.local.clone();
                    self.receiver.accept(self.now, &local)
                };
                if let Err(error) = result {
                    self.receiver_error.get_or_insert(error);
                }
            }
            self.receiver_events.push(event);
            worked = true;
        }
        worked
    }

    fn wire(&mut self) -> bool {
        let mut worked = false;
        if self.sender_error.is_none() || !self.sender.poll_transmit().is_empty() {
            let mut bytes = self.sender.poll_transmit().to_vec();
            if let Some(cut) = self.cut_after {
                let allowed = cut.saturating_sub(self.sender_wire) as usize;
                bytes.truncate(allowed);
            }
            self.sender.advance_transmit(bytes.len());
            self.sender_wire += bytes.len() as u64;
            worked |= !bytes.is_empty();
            let mut at = 0;
            while at < bytes.len() && self.receiver_error.is_none() {
                match self.receiver.handle_input(self.now, &bytes[at..]) {
                    Ok(n) => at += n,
                    Err(error) => self.receiver_error = Some(error),
                }
                self.receiver_disk();
                self.events();
            }
        }
        let bytes = self.receiver.poll_transmit().to_vec();
        self.receiver.advance_transmit(bytes.len());
        worked |= !bytes.is_empty();
        let mut at = 0;
        while at < bytes.len() && self.sender_error.is_none() {
            match self.sender.handle_input(self.now, &bytes[at..]) {
                Ok(n) => at += n,
                Err(error) => self.sender_error = Some(error),
            }
            self.sender_disk();
            self.events();
        }
        worked
    }

    /// Runs until both sides are finished, failed, or stuck.
    pub fn run(&mut self) {
        for step in 0..10_000_000u64 {
            if step == 200_000 {
                eprintln!(
                    "stuck? sender finished {} error {:?}; receiver finished {} error {:?}; wire {}; partial {:?}; committed {:?}",
                    self.sender.is_finished(),
                    self.sender_error,
                    self.receiver.is_finished(),
                    self.receiver_error,
                    self.sender_wire,
                    self.partial.keys().collect::<Vec<_>>(),
                    self.committed.keys().collect::<Vec<_>>()
                );
                eprintln!(
                    "last events: {:?} / {:?}",
                    self.sender_events.iter().rev().take(5).collect::<Vec<_>>(),
                    self.receiver_events
                        .iter()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                );
            }
            let mut worked = self.events();
            worked |= self.sender_disk();
            worked |= self.receiver_disk();
            worked |= self.wire();
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

    /// Asserts the batch arrived complete and identical.
    pub fn assert_delivered(&self, items: &[Item]) {
        assert_eq!(self.sender_error, None, "sender failed");
        assert_eq!(self.receiver_error, None, "receiver failed");
        assert!(self.sender.is_finished() && self.receiver.is_finished());
        for (index, item) in items.iter().enumerate() {
            match &item.data {
                Some(data) => {
                    let got = self
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
                None => assert!(self.dirs.contains(&index), "{} was not created", item.path),
            }
        }
        assert!(
            self.partial.is_empty(),
            "partial files left: {:?}",
            self.partial.keys()
        );
    }
}
