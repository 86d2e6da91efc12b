//! The batch's table of contents (the seed's "batch metadata") and the rules every path
//! must pass before the receiver acts on any of it.

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file with content.
    File,
    /// A directory, sent so that empty directories arrive too.
    Directory,
}

/// One entry as the sender's driver describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Relative path, `/`-separated, UTF-8.
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Bytes (0 for directories).
    pub size: u64,
    /// Unix permission bits (`0o7777` at most).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch (years 1677 to 2262; a sender
    /// clamps a time outside them).
    pub mtime_ns: i64,
    /// The file's SHA-256 if the sender computed it before sending. With it, a source that
    /// changes after the manifest was made is caught and retried.
    pub sha256: Option<[u8; 32]>,
}

/// An entry as stored in a [`Manifest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Relative path, validated.
    pub path: &'a str,
    /// File or directory.
    pub kind: EntryKind,
    /// Bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// The sender's SHA-256, if it had one.
    pub sha256: Option<[u8; 32]>,
}

/// An entry as stored: 24 bytes, its path's end in the shared path text (it starts where
/// the previous entry's ends), and its hash, if any, kept apart, because a batch may hold
/// a million entries and few senders hash files up front.
#[derive(Clone, Copy, Debug)]
struct Stored {
    size: u64,
    mtime_ns: i64,
    path_end: u32,
    mode: u16,
    kind: EntryKind,
}

/// Limits on a manifest; part of [`crate::transfer::TransferConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Most entries in one batch.
    pub max_entries: usize,
    /// Most bytes of all paths together.
    pub max_path_bytes: usize,
    /// Most bytes in one path.
    pub max_path_len: usize,
    /// Most bytes in one path component.
    pub max_name_len: usize,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        ManifestLimits {
            max_entries: 1_000_000,
            max_path_bytes: 128 << 20,
            max_path_len: 4096,
            max_name_len: 255,
        }
    }
}

/// Which rule a path broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRule {
    /// The path is empty.
    Empty,
    /// It starts with `/`.
    Absolute,
    /// It has a `C:`-style drive prefix.
    DrivePrefix,
    /// It contains `\`.
    Backslash,
    /// It contains NUL or another control character.
    ControlCharacter,
    /// A component is `.` or `..`.
    DotComponent,
    /// A component is empty (`a//b`, a leading or trailing `/`).
    EmptyComponent,
    /// The whole path is too long.
    PathTooLong,
    /// A component is too long.
    NameTooLong,
    /// The same path appears twice.
    Duplicate,
    /// A file's path is also used as a directory by another entry.
    FileIsParent,
}

impl PathRule {
    fn describe(self) -> &'static str {
        match self {
            PathRule::Empty => "the path is empty",
            PathRule::Absolute => "absolute paths are not allowed",
            PathRule::DrivePrefix => "drive prefixes (like C:) are not allowed",
            PathRule::Backslash => "backslashes are not allowed",
            PathRule::ControlCharacter => "NUL and control characters are not allowed",
            PathRule::DotComponent => "'.' and '..' components are not allowed",
            PathRule::EmptyComponent => "empty path components are not allowed",
            PathRule::PathTooLong => "the path is too long",
            PathRule::NameTooLong => "a path component is too long",
            PathRule::Duplicate => "the path appears twice in the batch",
            PathRule::FileIsParent => "a file is also used as a directory by another entry",
        }
    }
}

impl core::fmt::Display for PathRule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.describe())
    }
}

/// A manifest problem, naming the entry and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A path broke a rule.
    #[error("entry {index} ({path:?}) is refused: {}", rule.describe())]
    Path {
        /// The entry's position in the manifest.
        index: usize,
        /// The path, with control characters escaped by `Debug`.
        path: String,
        /// The rule.
        rule: PathRule,
    },
    /// More entries or path bytes than the limits allow.
    #[error("the batch is too large: {what} is {found}, the limit is {max}")]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// What the batch has.
        found: u64,
        /// The limit.
        max: u64,
    },
    /// A field is impossible (a directory with a size, mode bits beyond 0o7777).
    #[error("entry {index} is malformed: {why}")]
    Malformed {
        /// The entry.
        index: usize,
        /// Which field.
        why: &'static str,
    },
}

/// Checks one path against every rule that needs no other entry.
pub fn check_path(path: &str, limits: &ManifestLimits) -> Result<(), PathRule> {
    if path.is_empty() {
        return Err(PathRule::Empty);
    }
    if path.len() > limits.max_path_len {
        return Err(PathRule::PathTooLong);
    }
    if path.starts_with('/') {
        return Err(PathRule::Absolute);
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(PathRule::DrivePrefix);
    }
    if path.contains('\\') {
        return Err(PathRule::Backslash);
    }
    if path.chars().any(char::is_control) {
        return Err(PathRule::ControlCharacter);
    }
    for name in path.split('/') {
        match name {
            "" => return Err(PathRule::EmptyComponent),
            "." | ".." => return Err(PathRule::DotComponent),
            _ if name.len() > limits.max_name_len => return Err(PathRule::NameTooLong),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a batch of `entries` entries with `path_bytes` bytes of paths beyond `limits`
/// (and beyond what a manifest can index), before anything is allocated for it.
fn check_size(entries: u64, path_bytes: u64, limits: &ManifestLimits) -> Result<(), ManifestError> {
    if entries > limits.max_entries as u64 {
        return Err(ManifestError::TooLarge {
            what: "the number of entries",
            found: entries,
            max: limits.max_entries as u64,
        });
    }
    let max_path_bytes = limits.max_path_bytes.min(u32::MAX as usize) as u64;
    if path_bytes > max_path_bytes {
        return Err(ManifestError::TooLarge {
            what: "the total length of all paths",
            found: path_bytes,
            max: max_path_bytes,
        });
    }
    Ok(())
}

/// Orders paths so that a path's descendants come right after it: `/` sorts below
/// every other byte.
fn tree_order(a: &str, b: &str) -> core::cmp::Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { u16::from(c) + 1 };
    a.bytes().map(key).cmp(b.bytes().map(key))
}

/// A validated list of entries, stored in allocations sized up front: 24 bytes an entry
/// besides its path.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    entries: Vec<Stored>,
    paths: String,
    /// The SHA-256 of the entries that have one, by index, in index order.
    hashes: Vec<(u32, [u8; 32])>,
    total_bytes: u64,
}

impl Manifest {
    /// An empty manifest with room for `entries` entries and `path_bytes` bytes of paths,
    /// refused if either exceeds `limits`.
    pub fn with_capacity(
        entries: u64,
        path_bytes: u64,
        limits: &ManifestLimits,
    ) -> Result<Self, ManifestError> {
        check_size(entries, path_bytes, limits)?;
        Ok(Manifest {
            entries: Vec::with_capacity(entries as usize),
            paths: String::with_capacity(path_bytes as usize),
            hashes: Vec::new(),
            total_bytes: 0,
        })
    }

    /// Builds a manifest from the sender's entries, checking each.
    pub fn from_entries(
        entries: &[ManifestEntry],
        limits: &ManifestLimits,
    ) -> Result<Self, ManifestError> {
        let mut builder = ManifestBuilder::new(*limits);
        for entry in entries {
            builder.push(entry.as_entry())?;
        }
        builder.finish()
    }

    /// Adds one entry after checking its path and fields; never grows past the capacity
    /// given to [`Manifest::with_capacity`].
    pub fn push(&mut self, entry: Entry<'_>, limits: &ManifestLimits) -> Result<(), ManifestError> {
        let index = self.entries.len();
        if index == self.entries.capacity() {
            return Err(ManifestError::TooLarge {
                what: "the number of entries",
                found: index as u64 + 1,
                max: self.entries.capacity() as u64,
            });
        }
        if self.paths.len() + entry.path.len() > self.paths.capacity() {
            return Err(ManifestError::TooLarge {
                what: "the total length of all paths",
                found: (self.paths.len() + entry.path.len()) as u64,
                max: self.paths.capacity() as u64,
            });
        }
        check_path(entry.path, limits).map_err(|rule| ManifestError::Path {
            index,
            path: entry.path.to_owned(),
            rule,
        })?;
        if entry.mode > 0o7777 {
            return Err(ManifestError::Malformed {
                index,
                why: "mode has bits beyond 0o7777",
            });
        }
        if entry.kind == EntryKind::Directory && (entry.size != 0 || entry.sha256.is_some()) {
            return Err(ManifestError::Malformed {
                index,
                why: "a directory has a size or hash",
            });
        }
        self.total_bytes =
            self.total_bytes
                .checked_add(entry.size)
                .ok_or(ManifestError::Malformed {
                    index,
                    why: "sizes overflow 64 bits",
                })?;
        self.paths.push_str(entry.path);
        if let Some(hash) = entry.sha256 {
            self.hashes.push((index as u32, hash));
        }
        self.entries.push(Stored {
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            // Within u32: `with_capacity` refused more path bytes than that.
            path_end: self.paths.len() as u32,
            mode: entry.mode as u16,
            kind: entry.kind,
        });
        Ok(())
    }

    /// A file entry as its sender finds it on reopening. If its size or mtime changed, the
    /// hash goes: it described the file as it was.
    pub(crate) fn set_file_meta(
        &mut self,
        index: usize,
        size: u64,
        mtime_ns: i64,
    ) -> Result<(), ManifestError> {
        let stored = self
            .entries
            .get_mut(index)
            .filter(|e| e.kind == EntryKind::File)
            .ok_or(ManifestError::Malformed {
                index,
                why: "an update for an entry that is not a file",
            })?;
        let total =
            (self.total_bytes - stored.size)
                .checked_add(size)
                .ok_or(ManifestError::Malformed {
                    index,
                    why: "sizes overflow 64 bits",
                })?;
        let changed = (stored.size, stored.mtime_ns) != (size, mtime_ns);
        stored.size = size;
        stored.mtime_ns = mtime_ns;
        if changed {
            self.hashes.retain(|(i, _)| *i as usize != index);
        }
        self.total_bytes = total;
        Ok(())
    }

    /// Checks the rules that involve several entries: no duplicates, and no file whose
    /// path another entry uses as a directory.
    pub fn check_tree(&self) -> Result<(), ManifestError> {
        let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| tree_order(self.path(a as usize), self.path(b as usize)));
        for pair in order.windows(2) {
            let (a, b) = (pair[0] as usize, pair[1] as usize);
            let (first, second) = (self.path(a), self.path(b));
            let refuse = |rule| {
                let index = a.max(b);
                Err(ManifestError::Path {
                    index,
                    path: self.path(index).to_owned(),
                    rule,
                })
            };
            if first == second {
                return refuse(PathRule::Duplicate);
            }
            let is_child = second.len() > first.len()
                && second.starts_with(first)
                && second.as_bytes()[first.len()] == b'/';
            if is_child && self.entries[a].kind == EntryKind::File {
                return refuse(PathRule::FileIsParent);
            }
        }
        Ok(())
    }

    fn path_range(&self, index: usize) -> core::ops::Range<usize> {
        let start = index
            .checked_sub(1)
            .map_or(0, |before| self.entries[before].path_end as usize);
        start..self.entries[index].path_end as usize
    }

    fn path(&self, index: usize) -> &str {
        &self.paths[self.path_range(index)]
    }

    fn hash(&self, index: usize) -> Option<[u8; 32]> {
        let index = u32::try_from(index).ok()?;
        self.hashes
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|at| self.hashes[at].1)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries announced but not yet received (receiver side).
    pub fn remaining_capacity(&self) -> usize {
        self.entries.capacity() - self.entries.len()
    }

    /// Sum of all file sizes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes of all paths together.
    pub fn path_bytes(&self) -> usize {
        self.paths.len()
    }

    /// Entry `index`; `None` past the end.
    pub fn get(&self, index: usize) -> Option<Entry<'_>> {
        let stored = self.entries.get(index)?;
        Some(Entry {
            path: self.path(index),
            kind: stored.kind,
            size: stored.size,
            mode: u32::from(stored.mode),
            mtime_ns: stored.mtime_ns,
            sha256: self.hash(index),
        })
    }

    /// All entries in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// Builds a manifest entry by entry, growing as it goes: for a sender, which does not know
/// the size of its batch until it has walked it (a receiver sizes its manifest from the
/// announced header instead, and never grows it).
#[derive(Debug)]
pub struct ManifestBuilder {
    manifest: Manifest,
    limits: ManifestLimits,
}

impl ManifestBuilder {
    /// An empty builder that refuses to grow past `limits`.
    pub fn new(limits: ManifestLimits) -> Self {
        ManifestBuilder {
            manifest: Manifest::default(),
            limits,
        }
    }

    /// Adds one entry after checking its path and fields.
    pub fn push(&mut self, entry: Entry<'_>) -> Result<(), ManifestError> {
        let manifest = &mut self.manifest;
        let entries = manifest.entries.len() as u64 + 1;
        let path_bytes = (manifest.paths.len() + entry.path.len()) as u64;
        // Every entry, not only where room is made: a Vec may grow past what it was
        // asked for, and the receiver holds the batch to the limits exactly.
        check_size(entries, path_bytes, &self.limits)?;
        if manifest.entries.len() == manifest.entries.capacity()
            || manifest.paths.len() + entry.path.len() > manifest.paths.capacity()
        {
            // Then grow as a Vec would.
            let room_entries = (manifest.entries.capacity() * 2).max(64);
            let room_paths = (manifest.paths.capacity() * 2).max(4096);
            manifest
                .entries
                .reserve(room_entries.min(self.limits.max_entries) - manifest.entries.len());
            manifest.paths.reserve(
                room_paths
                    .min(self.limits.max_path_bytes.min(u32::MAX as usize))
                    .max(path_bytes as usize)
                    - manifest.paths.len(),
            );
        }
        manifest.push(entry, &self.limits)
    }

    /// The number of entries so far.
    pub fn len(&self) -> usize {
        self.manifest.len()
    }

    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.manifest.is_empty()
    }

    /// The manifest, once the rules involving several entries hold.
    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        self.manifest.check_tree()?;
        self.manifest.entries.shrink_to_fit();
        self.manifest.paths.shrink_to_fit();
        Ok(self.manifest)
    }
}

impl ManifestEntry {
    /// This entry as a borrowed [`Entry`].
    pub fn as_entry(&self) -> Entry<'_> {
        Entry {
            path: &self.path,
            kind: self.kind,
            size: self.size,
            mode: self.mode,
            mtime_ns: self.mtime_ns,
            sha256: self.sha256,
        }
    }
}
