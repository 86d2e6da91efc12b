//! `.transfer_lock.json`: what the receiver holds, so a later session can resume. Its
//! schema is the seed's (version, session_id, timestamp, sender_ip, totals, files), plus
//! a `batch` fingerprint so a lock is never applied to a different batch.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_core::transfer::{EntryKind, FileProgress, FileStatus, Manifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::os::dir::{Dir, Kind, refused};

/// The lock file's name in the output directory.
pub const LOCK_NAME: &str = ".transfer_lock.json";

/// The temporary file a checkpoint writes before renaming it over the lock.
pub const TEMPORARY_NAME: &str = ".transfer_lock.json.tmp";

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

/// One file's resume state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// Whether the file is complete.
    pub status: LockStatus,
    /// The file's full size.
    pub size: u64,
    /// Bytes at the start of the `.part` file that are verified and durable.
    pub transferred_bytes: u64,
    /// The file's SHA-256 once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_hash: Option<HexHash>,
    /// SHA-256 of the first `transferred_bytes` bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_hash: Option<HexHash>,
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

/// A SHA-256 digest, kept as bytes and written as lowercase hex. Kept as bytes so that a
/// lock for 10,000 files costs no per-file string allocations between checkpoints.
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

/// The whole lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Schema version.
    pub version: String,
    /// Identifies the session that last wrote it.
    pub session_id: String,
    /// When it was last written (UTC, RFC 3339).
    pub timestamp: String,
    /// The sender's address.
    pub sender_ip: String,
    /// Files in the batch.
    pub total_files: u64,
    /// Bytes in the batch.
    pub total_size: u64,
    /// Fingerprint of the batch (paths, kinds, sizes).
    pub batch: String,
    /// Per file, by path.
    pub files: BTreeMap<String, LockEntry>,
}

/// The batch fingerprint: SHA-256 over every entry's path, kind and size.
pub fn fingerprint(manifest: &Manifest) -> String {
    let mut hasher = Sha256::new();
    for entry in manifest.iter() {
        hasher.update(entry.path.as_bytes());
        hasher.update([0, matches!(entry.kind, EntryKind::Directory) as u8]);
        hasher.update(entry.size.to_be_bytes());
    }
    hex::encode(hasher.finalize())
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

impl LockFile {
    /// A fresh lock for `manifest`.
    pub fn new(manifest: &Manifest, session_id: String, sender_ip: String) -> Self {
        let files = manifest
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| {
                let entry = LockEntry {
                    status: LockStatus::InProgress,
                    size: e.size,
                    transferred_bytes: 0,
                    original_hash: None,
                    partial_hash: None,
                };
                (e.path.to_owned(), entry)
            })
            .collect();
        LockFile {
            version: "1.0".into(),
            session_id,
            timestamp: utc_now(),
            sender_ip,
            total_files: manifest
                .iter()
                .filter(|e| e.kind == EntryKind::File)
                .count() as u64,
            total_size: manifest.total_bytes(),
            batch: fingerprint(manifest),
            files,
        }
    }

    /// Records an entry's progress as the core reports it.
    pub fn update(&mut self, path: &str, progress: &FileProgress) {
        if let Some(entry) = self.files.get_mut(path) {
            entry.status = match progress.status {
                FileStatus::Completed => LockStatus::Completed,
                FileStatus::InProgress | FileStatus::Failed => LockStatus::InProgress,
            };
            entry.transferred_bytes = progress.verified_bytes;
            let hash = progress.sha256.map(HexHash);
            if progress.status == FileStatus::Completed {
                entry.original_hash = hash;
            }
            entry.partial_hash = hash;
        }
    }

    /// Reads the lock in `dir`: `Ok(None)` if there is none. A lock that cannot be used
    /// is [`LockProblem::Unusable`] (the receive goes on without it); a link planted at
    /// its name is [`LockProblem::Refused`] (never followed).
    pub fn load(dir: &Dir) -> Result<Option<LockFile>, LockProblem> {
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
        serde_json::from_reader(BufReader::with_capacity(64 << 10, file))
            .map(Some)
            .map_err(|e| LockProblem::Unusable(format!("the lock file is corrupt ({e})")))
    }

    /// Removes a temporary lock a killed run left behind; a link planted at its name is
    /// refused.
    pub fn remove_stale_temporary(dir: &Dir) -> std::io::Result<()> {
        match dir.stat(TEMPORARY_NAME)?.map(|f| f.kind) {
            Some(Kind::File { .. }) => dir.remove_file(TEMPORARY_NAME),
            Some(Kind::Link) => Err(refused(&format!(
                "{TEMPORARY_NAME} is a symbolic link; not following it"
            ))),
            Some(_) => Err(refused(&format!(
                "{TEMPORARY_NAME} exists and is not a regular file"
            ))),
            None => Ok(()),
        }
    }

    /// Writes the lock as it is now to a new temporary file beside the real one (created
    /// exclusively, never through a link), streaming the JSON: a batch of 10,000 files
    /// makes about 2 MiB that is never held in memory. It takes effect only through
    /// [`LockFile::publish`].
    pub fn write_temporary(&mut self, dir: &Dir) -> std::io::Result<File> {
        self.timestamp = utc_now();
        LockFile::remove_stale_temporary(dir)?;
        let file = dir.create_new(TEMPORARY_NAME)?;
        let mut out = BufWriter::with_capacity(64 << 10, file);
        serde_json::to_writer(&mut out, self)?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())
    }

    /// Replaces the lock with the temporary `file` atomically: fsync, rename, fsync of the
    /// directory. Call it only once the data the temporary file claims is durable.
    pub fn publish(dir: &Dir, file: File) -> std::io::Result<()> {
        file.sync_all()?;
        dir.rename(TEMPORARY_NAME, LOCK_NAME)?;
        dir.sync()
    }

    /// Writes the lock atomically now. Call it only after the data it claims is durable.
    pub fn save(&mut self, dir: &Dir) -> std::io::Result<()> {
        let file = self.write_temporary(dir)?;
        LockFile::publish(dir, file)
    }

    /// Removes the lock (the batch is complete).
    pub fn remove(dir: &Dir) -> std::io::Result<()> {
        dir.remove_file(LOCK_NAME)?;
        dir.sync()
    }
}
