//! `.transfer_lock.json`: what the receiver holds, so a later session can resume. Its
//! schema is the seed's (version, session_id, timestamp, sender_ip, totals, files by
//! path), with each file's `mtime` beside its size: a file's resume state applies to a
//! later batch only if the path, size and mtime all still match, whatever else in the
//! batch changed.
//!
//! The lock is never held in memory: a checkpoint streams it from the session's own
//! progress, and loading keeps only what resuming needs (which paths the lock lists, and
//! the verified length of each partial file).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_core::transfer::{EntryKind, FileProgress, FileStatus, Manifest};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::is_out_of_space;
use crate::os::dir::{Dir, Kind, owned_alone, refused};
use crate::os::sync::preallocate;

/// The lock file's name in the output directory.
pub const LOCK_NAME: &str = ".transfer_lock.json";

/// The temporary file a checkpoint writes before renaming it over the lock.
pub const TEMPORARY_NAME: &str = ".transfer_lock.json.tmp";

/// Disk set aside for the last checkpoint of a receive that filled the disk: written into
/// only by that checkpoint, so it is there whenever a checkpoint is published.
pub const SPARE_NAME: &str = ".transfer_lock.json.spare";

/// True if a batch entry at `path` would take a name the lock keeps at the top of the
/// output folder (letter case aside, for the file systems that ignore it).
pub fn is_reserved(path: &str) -> bool {
    [LOCK_NAME, TEMPORARY_NAME, SPARE_NAME]
        .iter()
        .any(|name| path.eq_ignore_ascii_case(name))
}

/// Why a lock file was not used.
#[derive(Debug, thiserror::Error)]
pub enum LockProblem {
    /// It is unreadable or corrupt: the receive goes on without it, saying so.
    #[error("{0}")]
    Unusable(String),
    /// Something other than a regular file has its name (a link): never followed.
    #[error("{LOCK_NAME}: {0}")]
    Refused(std::io::Error),
}

/// A file's state in the lock, written as the seed's strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockStatus {
    /// "completed": verified and in place.
    Completed,
    /// "in_progress": a `.part` file holds a verified prefix.
    InProgress,
}

/// A SHA-256 digest written as lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HexHash(pub [u8; 32]);

impl Serialize for HexHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the digest.
        let _ = hex::encode_to_slice(self.0, &mut text);
        serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for HexHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut digest)
            .map_err(|_| serde::de::Error::custom("a hash that is not 64 hex digits"))?;
        Ok(HexHash(digest))
    }
}

/// One file's resume state, as the lock writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// Whether the file is complete.
    pub status: LockStatus,
    /// The file's size in the batch.
    pub size: u64,
    /// The file's modification time in the batch (nanoseconds since the epoch); absent in
    /// older locks (which kept seconds under `mtime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
    /// Bytes at the start of the `.part` file that are verified and durable.
    pub transferred_bytes: u64,
    /// The file's SHA-256 once complete, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_hash: Option<HexHash>,
    /// SHA-256 of the first `transferred_bytes` bytes, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_hash: Option<HexHash>,
    /// While a newer version of a file an earlier receive put in place is on its way:
    /// that file, as it was left (so that the next run may still replace it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Replaces>,
}

/// A file an earlier receive put in place: its size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaces {
    /// Its length.
    pub size: u64,
    /// Its modification time, in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl LockEntry {
    /// The entry for `progress` of a file of `size` bytes and `mtime_ns`, on its way to
    /// replace the file `replaces` (see [`LockEntry::replaces`]); `None` when there is
    /// nothing to remember (no verified byte yet, nothing it replaces).
    pub fn of(
        progress: &FileProgress,
        size: u64,
        mtime_ns: i64,
        replaces: Option<Replaces>,
    ) -> Option<LockEntry> {
        let completed = progress.status == FileStatus::Completed;
        if !completed && progress.verified_bytes == 0 && replaces.is_none() {
            return None;
        }
        let hash = progress.sha256.map(HexHash);
        Some(LockEntry {
            status: if completed {
                LockStatus::Completed
            } else {
                LockStatus::InProgress
            },
            size,
            mtime_ns: Some(mtime_ns),
            transferred_bytes: progress.verified_bytes,
            original_hash: if completed { hash } else { None },
            partial_hash: hash,
            replaces: if completed { None } else { replaces },
        })
    }
}

/// Who wrote a lock: the top of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHeader {
    /// Identifies the session that wrote it.
    pub session_id: String,
    /// The sender's address.
    pub sender_ip: String,
}

/// The time now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Writes the lock for a session in the seed's schema: `progress(entry)` is each file's
/// state now, `replaces(entry)` the file an earlier receive put at its name that it is
/// on its way to replace. Files with nothing verified yet and nothing to replace are
/// left out (there is nothing to resume).
pub fn write_lock(
    out: &mut dyn Write,
    header: &LockHeader,
    manifest: &Manifest,
    progress: impl Fn(usize) -> Option<FileProgress>,
    replaces: impl Fn(usize) -> Option<Replaces>,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Top<'a> {
        version: &'a str,
        session_id: &'a str,
        timestamp: &'a str,
        sender_ip: &'a str,
        total_files: u64,
        total_size: u64,
    }
    let files = manifest
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .count() as u64;
    let top = serde_json::to_string(&Top {
        version: "1.0",
        session_id: &header.session_id,
        timestamp: &utc_now(),
        sender_ip: &header.sender_ip,
        total_files: files,
        total_size: manifest.total_bytes(),
    })?;
    // The header's closing brace gives way to the files.
    out.write_all(&top.as_bytes()[..top.len() - 1])?;
    out.write_all(b",\"files\":{")?;
    let mut first = true;
    for (index, entry) in manifest.iter().enumerate() {
        if entry.kind != EntryKind::File {
            continue;
        }
        let Some(state) = progress(index)
            .and_then(|p| LockEntry::of(&p, entry.size, entry.mtime_ns, replaces(index)))
        else {
            continue;
        };
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, entry.path)?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, &state)?;
    }
    out.write_all(b"}}")
}

/// What an earlier run's lock says about this batch: only what resuming needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Previous {
    /// Per manifest entry: the lock says an earlier receive put the file there, complete.
    completed: Vec<bool>,
    /// What the lock says that receive put there (size, mtime), where it is not this
    /// batch's entry: completed files that changed at the sender since, and files whose
    /// newer version was on its way ([`LockEntry::replaces`]).
    put_other: HashMap<u32, (u64, Option<i64>)>,
    /// Verified, durable lengths of `.part` files whose size and mtime still match.
    partial: HashMap<u32, u64>,
    /// Files of this batch the lock describes with the same size and mtime.
    pub matching: usize,
    /// Files the lock describes at all.
    pub described: usize,
}

impl Previous {
    /// True if a file of `len` bytes and `mtime_ns` at `entry`'s final name is the one an
    /// earlier receive put there, as the lock says, and unchanged since (the batch's entry
    /// now has `size` and `batch_mtime_ns`). Modification times within 2 seconds count as
    /// the same: some file systems keep them that coarsely (FAT).
    pub fn put_here(
        &self,
        entry: usize,
        size: u64,
        batch_mtime_ns: i64,
        len: u64,
        mtime_ns: i64,
    ) -> bool {
        let completed = self.completed.get(entry).copied().unwrap_or(false);
        let put = u32::try_from(entry)
            .ok()
            .and_then(|e| self.put_other.get(&e).copied())
            .or_else(|| completed.then_some((size, Some(batch_mtime_ns))));
        put.is_some_and(|(put_size, put_mtime)| {
            put_size == len && put_mtime.is_none_or(|put| put.abs_diff(mtime_ns) < 2_000_000_000)
        })
    }

    /// Bytes at the start of `entry`'s `.part` that the lock says are verified and durable.
    pub fn verified(&self, entry: usize) -> u64 {
        u32::try_from(entry)
            .ok()
            .and_then(|e| self.partial.get(&e).copied())
            .unwrap_or(0)
    }

    /// Reads the lock in `dir` against `manifest`: `Ok(None)` if there is none. A lock
    /// that cannot be used is [`LockProblem::Unusable`] (the receive goes on without it);
    /// a link planted at its name is [`LockProblem::Refused`] (never followed).
    pub fn load(dir: &Dir, manifest: &Manifest) -> Result<Option<Previous>, LockProblem> {
        let file = match dir.open_file(LOCK_NAME, false) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(LockProblem::Refused(e));
            }
            Err(e) => {
                return Err(LockProblem::Unusable(format!(
                    "the lock file cannot be read ({e})"
                )));
            }
        };
        Previous::read(BufReader::with_capacity(64 << 10, file), manifest).map(Some)
    }

    /// Reads a lock's JSON from `reader` against `manifest`, streaming (a lock may name a
    /// million files); what does not parse is [`LockProblem::Unusable`].
    pub fn read(reader: impl std::io::Read, manifest: &Manifest) -> Result<Previous, LockProblem> {
        // Paths in sorted order, to find each path the lock names (4 bytes an entry, for
        // as long as the lock is read).
        let mut order: Vec<u32> = (0..manifest.len() as u32).collect();
        let path = |i: u32| manifest.get(i as usize).map_or("", |e| e.path);
        order.sort_unstable_by(|&a, &b| path(a).cmp(path(b)));
        let mut previous = Previous {
            completed: vec![false; manifest.len()],
            ..Previous::default()
        };
        let mut reader = serde_json::Deserializer::from_reader(reader);
        LockSeed {
            manifest,
            order: &order,
            previous: &mut previous,
        }
        .deserialize(&mut reader)
        .and_then(|()| reader.end())
        .map_err(|e| LockProblem::Unusable(format!("the lock file is corrupt ({e})")))?;
        Ok(previous)
    }
}

/// Reads the lock's top level, skipping all but `files`.
struct LockSeed<'a> {
    manifest: &'a Manifest,
    order: &'a [u32],
    previous: &'a mut Previous,
}

impl<'de> DeserializeSeed<'de> for LockSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LockSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a lock file object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut files = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "files" {
                files = true;
                map.next_value_seed(FilesSeed {
                    manifest: self.manifest,
                    order: self.order,
                    previous: &mut *self.previous,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !files {
            return Err(serde::de::Error::missing_field("files"));
        }
        Ok(())
    }
}

/// Reads `files`, keeping what concerns this batch.
struct FilesSeed<'a> {
    manifest: &'a Manifest,
    order: &'a [u32],
    previous: &'a mut Previous,
}

impl<'de> DeserializeSeed<'de> for FilesSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FilesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("files by path")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(path) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let state: LockEntry = map.next_value()?;
            self.previous.described += 1;
            let found = self
                .order
                .binary_search_by(|&i| {
                    self.manifest
                        .get(i as usize)
                        .map_or("", |e| e.path)
                        .cmp(&path)
                })
                .ok()
                .map(|at| self.order[at]);
            let Some(index) = found else {
                continue;
            };
            let Some(entry) = self.manifest.get(index as usize) else {
                continue;
            };
            let same = entry.kind == EntryKind::File
                && entry.size == state.size
                && state.mtime_ns.is_none_or(|m| m == entry.mtime_ns);
            if state.status == LockStatus::Completed {
                self.previous.completed[index as usize] = true;
                if !same {
                    self.previous
                        .put_other
                        .insert(index, (state.size, state.mtime_ns));
                }
            } else if let Some(replaces) = state.replaces {
                self.previous
                    .put_other
                    .insert(index, (replaces.size, Some(replaces.mtime_ns)));
            }
            if !same {
                continue;
            }
            self.previous.matching += 1;
            let held = state.transferred_bytes.min(entry.size);
            if state.status == LockStatus::InProgress && held > 0 {
                self.previous.partial.insert(index, held);
            }
        }
        Ok(())
    }
}

/// Removes the temporary lock and the spare a killed run left behind; a link planted at
/// either name is refused.
pub fn remove_stale_temporary(dir: &Dir) -> std::io::Result<()> {
    remove_regular(dir, TEMPORARY_NAME)?;
    remove_regular(dir, SPARE_NAME)
}

/// Removes the regular file `name` if it is there; anything else there is refused.
fn remove_regular(dir: &Dir, name: &str) -> std::io::Result<()> {
    match dir.stat(name)?.map(|f| f.kind) {
        Some(Kind::File { .. }) => dir.remove_file(name),
        Some(Kind::Link) => Err(refused(&format!(
            "{name} is a symbolic link; not following it"
        ))),
        Some(_) => Err(refused(&format!("{name} exists and is not a regular file"))),
        None => Ok(()),
    }
}

/// The disk space a lock for `manifest` may need: room for every file's entry.
pub fn size_estimate(manifest: &Manifest) -> u64 {
    let files = manifest
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .count() as u64;
    (1 << 12) + manifest.path_bytes() as u64 + 256 * files
}

/// The most disk a spare temporary lock reserves (a lock for about 60,000 files).
pub const MAX_SPARE: u64 = 16 << 20;

/// Sets aside `len` bytes of disk (at most [`MAX_SPARE`]) for the last checkpoint, as
/// the spare: a full disk can then still take it. A spare already there is replaced.
pub fn prepare_spare(dir: &Dir, len: u64) -> std::io::Result<()> {
    remove_regular(dir, SPARE_NAME)?;
    let file = dir.create_new(SPARE_NAME)?;
    preallocate(&file, len.min(MAX_SPARE)).inspect_err(|_| {
        let _ = dir.remove_file(SPARE_NAME);
    })
}

/// Removes the spare (the receive ended and its last checkpoint did not need it).
pub fn remove_spare(dir: &Dir) -> std::io::Result<()> {
    remove_regular(dir, SPARE_NAME)
}

/// Which disk a temporary lock is written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Disk the file system allocates as the lock is written; a full disk fails it, and
    /// leaves the spare as it was.
    Allocated,
    /// As `Allocated`, and on a full disk the spare [`prepare_spare`] set aside (used up:
    /// only the last checkpoint may take it).
    SpareIfFull,
}

/// Writes the temporary lock beside the real one with `write`, streaming: a batch of
/// 10,000 files makes about 2 MiB that is never held in memory. The file is created
/// exclusively (one a failed attempt left is removed first), or is the spare, renamed and
/// still ours (a regular file of this user with no other name). Never through a link; a
/// failed attempt leaves nothing. It takes effect only through [`publish`].
pub fn write_temporary(
    dir: &Dir,
    room: Room,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<Temporary> {
    remove_regular(dir, TEMPORARY_NAME)?;
    let written = dir
        .create_new(TEMPORARY_NAME)
        .and_then(|file| write_into(file, write));
    let written = match written {
        Err(e) if room == Room::SpareIfFull && is_out_of_space(&e) => {
            let _ = dir.remove_file(TEMPORARY_NAME);
            match dir.stat(SPARE_NAME)?.map(|f| f.kind) {
                Some(Kind::File { .. }) => dir
                    .rename(SPARE_NAME, TEMPORARY_NAME)
                    .and_then(|()| dir.open_file(TEMPORARY_NAME, true))
                    .and_then(|file| match owned_alone(&file)? {
                        true => write_into(file, write),
                        false => Err(refused(&format!(
                            "{SPARE_NAME} is not this user's own file; not writing into it"
                        ))),
                    }),
                _ => Err(e),
            }
        }
        other => other,
    };
    if written.is_err() {
        let _ = dir.remove_file(TEMPORARY_NAME);
    }
    written
}

/// Writes the lock into `file` from its start.
fn write_into(
    file: File,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<Temporary> {
    let mut out = BufWriter::with_capacity(64 << 10, file);
    write(&mut out)?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    let len = std::io::Seek::stream_position(&mut &file)?;
    Ok(Temporary { file, len })
}

/// A temporary lock written, `len` bytes long; the spare it may have been written into
/// reserves more, which [`publish`] gives back.
#[derive(Debug)]
pub struct Temporary {
    file: File,
    len: u64,
}

/// Replaces the lock with the `temporary` one atomically: the disk a spare reserved
/// beyond it given back, fsync, rename, fsync of the directory. Call it only once the
/// data the temporary file claims is durable.
pub fn publish(dir: &Dir, temporary: Temporary) -> std::io::Result<()> {
    let Temporary { file, len } = temporary;
    file.set_len(len)?;
    file.sync_all()?;
    dir.rename(TEMPORARY_NAME, LOCK_NAME)?;
    dir.sync()
}

/// Removes the lock, any temporary one and the spare (the batch is complete).
pub fn remove(dir: &Dir) -> std::io::Result<()> {
    dir.remove_file(TEMPORARY_NAME)?;
    dir.remove_file(SPARE_NAME)?;
    dir.remove_file(LOCK_NAME)?;
    dir.sync()
}
