//! The receiver's output directory: `.part` files beside their final names, commits by
//! rename after verification, durability in batches, and nothing in the directory that
//! can be turned against the receiver.
//!
//! One receive at a time holds the directory (an exclusive lock for the whole run). Every
//! name is reached through directory handles opened without following links
//! ([`crate::os::dir`]); a `.part` file is created exclusively (mode 0600) and written
//! only through the handle this run created or verified, and it is renamed into place
//! only if the name still refers to that same file.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use ferry_core::transfer::{DiskError, Entry, EntryKind, Manifest};

use crate::error::{DriverError, disk_error};
use crate::lock::Replaces;
use crate::os::dir::{Dir, DirLock, FileId, Found, Kind, file_id, id_of, refused};
use crate::os::io::{read_full_at, write_all_at};
use crate::os::meta::{
    allowed_mode, apply_dir_mtime, apply_mode, other_links, time_from_ns, umask,
};
use crate::os::sync::{
    PER_FILE, WRITE_BEHIND, WriteBehind, Written, reserve_blocks, sync_filesystem,
};

/// The suffix of a file still being received.
pub const PART_SUFFIX: &str = ".part";

/// Writes a batch under one directory.
#[derive(Debug)]
pub struct Sink {
    root: Dir,
    root_path: PathBuf,
    _exclusive: DirLock,
    /// Shared holds on the folders above it (see [`hold_folders_above`]).
    _above: Vec<DirLock>,
    umask: u32,
    /// The parent directory of the entry touched last, by its path relative to the root:
    /// `None` inside when it does not exist, and whether this run created it (then
    /// nothing else can be in it, which saves looking).
    parent: Option<(String, Option<Dir>, bool)>,
    /// A folder (relative path) found missing since this sink last created one: every
    /// path under it is missing too. A fresh receive asks about every entry before any
    /// folder is made: remembering only the last parent, each folder's first question
    /// cost a failed open of the top folder (301 for the benchmark's (b), now 2).
    missing: Option<String>,
    /// This run created the output directory itself.
    root_fresh: bool,
    /// Directories this run created (relative paths): nothing else was in them.
    fresh_dirs: HashSet<String>,
    /// What was written since the last sync, where each file must be synced on its own.
    written: Written,
    /// The `.part` file being written.
    open: Option<(usize, File)>,
    /// The local copy being read for the resume check.
    reading: Option<(usize, File)>,
    /// `.part` files this run created or verified: only these are written or renamed.
    known: HashMap<usize, FileId>,
    /// Where the open file's next write-behind step is due.
    behind_mark: u64,
    write_behind: WriteBehind,
    /// Files written since the last sync, and directories whose entries changed.
    dirty: bool,
    /// Directory entries, to be given their modes once everything inside them is written.
    dirs: Vec<usize>,
    /// Per entry: its existing final file was ours or may be replaced (`--overwrite`).
    replaceable: Vec<bool>,
    /// Final files an earlier receive put in place, as it left them (length, mtime),
    /// that this one may replace: remembered in the lock while their newer versions are
    /// on their way.
    ours: HashMap<usize, Replaces>,
    /// The batch's paths that a partial file's name could meet (see [`Sink::part_of`]),
    /// in lower case.
    batch_parts: HashSet<String>,
}

/// What is here already for an entry of the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Here {
    /// The length of its `.part` file, if it has one.
    pub part: Option<u64>,
    /// The length and modification time (nanoseconds) of a file at its final name.
    pub file: Option<(u64, i64)>,
}

/// `path` split into its parent directory (empty for the top level) and its name.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// The longest file name most file systems take (ext4, XFS, APFS, NTFS in UTF-16 units).
const NAME_MAX: usize = 255;
/// Hex digits of the name's hash in a shortened `.part` name.
const SHORT_HASH_HEX: usize = 16;

/// The `.part` name of a file called `name`: `NAME.part`, unless that would pass the
/// file system's name limit (a legal name of 251–255 bytes); then `NAME` is cut at a
/// character boundary and 64 bits of its SHA-256 keep the name apart from the others
/// that share the cut: `PREFIX~0123456789abcdef.part`, 255 bytes at most.
pub fn part_name(name: &str) -> String {
    if name.len() + PART_SUFFIX.len() <= NAME_MAX {
        return format!("{name}{PART_SUFFIX}");
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let mut keep = NAME_MAX - PART_SUFFIX.len() - 1 - SHORT_HASH_HEX;
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(
        "{}~{}{PART_SUFFIX}",
        &name[..keep],
        &digest[..SHORT_HASH_HEX]
    )
}

/// `name` in the folder `parent` (relative; empty at the top).
fn joined(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Shared holds on every folder above `root` (the existing ones: for a folder still to be
/// made, from the nearest that exists). A receive
/// holds its own output folder exclusively, so a receive into a folder above this one, or
/// inside it, cannot run beside it: each would write into the other's batch (a folder of
/// one batch is the output folder of the other). Receives into folders side by side share
/// the holds above them. A folder that cannot be opened or locked (no right to read it, a
/// file system without locks) is passed over.
fn hold_folders_above(root: &Path) -> Result<Vec<DirLock>, DriverError> {
    // From its parent as the system resolves it (links and `..` followed), or, for a
    // folder still to be made, from the nearest folder above it that exists.
    let start = if root.exists() {
        std::fs::canonicalize(root)
            .ok()
            .and_then(|resolved| resolved.parent().map(Path::to_path_buf))
    } else {
        std::path::absolute(root)
            .ok()
            .and_then(|absolute| {
                absolute
                    .ancestors()
                    .find(|a| a.is_dir())
                    .map(Path::to_path_buf)
            })
            .and_then(|nearest| std::fs::canonicalize(nearest).ok())
    };
    let Some(start) = start else {
        return Ok(Vec::new());
    };
    let mut held = Vec::new();
    for folder in start.ancestors() {
        let hold = Dir::open_path(folder).and_then(|dir| {
            // Other programs lock folders too, briefly (systemd-tmpfiles while it
            // cleans one under /tmp): a hold refused is tried again for a second; a
            // receive holds its folder for as long as it runs.
            let deadline = std::time::Instant::now() + HOLD_PATIENCE;
            loop {
                match dir.try_lock_shared()? {
                    Some(lock) => return Ok(Some(lock)),
                    None if std::time::Instant::now() >= deadline => return Ok(None),
                    None => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        match hold {
            Ok(Some(lock)) => held.push(lock),
            Ok(None) => {
                return Err(DriverError::Disk(format!(
                    "{} is inside {}, which another ferry receive is using (or another program keeps locked); wait for it to end, or receive into another directory (-o)",
                    root.display(),
                    folder.display()
                )));
            }
            // A folder this user may not read, one removed meanwhile, or a file system
            // without locks gets no hold; anything else (out of file handles) is said.
            Err(e) if passed_over(&e) => {}
            Err(e) => {
                return Err(DriverError::Disk(format!(
                    "cannot hold {} for this receive: {e}",
                    folder.display()
                )));
            }
        }
    }
    Ok(held)
}

/// How long a receive waits for a folder above its output folder that is locked.
const HOLD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// True for the failures to hold a folder above the output folder that leave it unheld
/// rather than stop the receive (see [`hold_folders_above`]).
fn passed_over(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    #[cfg(unix)]
    const NO_LOCKS_HERE: &[i32] = &[
        libc::ENOLCK,
        libc::EOPNOTSUPP,
        libc::EINVAL,
        libc::EBADF,
        libc::ENOTDIR,
    ];
    #[cfg(not(unix))]
    const NO_LOCKS_HERE: &[i32] = &[];
    matches!(
        error.kind(),
        ErrorKind::PermissionDenied | ErrorKind::NotFound | ErrorKind::Unsupported
    ) || error
        .raw_os_error()
        .is_some_and(|code| NO_LOCKS_HERE.contains(&code))
}

impl Sink {
    /// A sink writing under `root`, which is created if missing, and held exclusively
    /// until the sink is dropped: a second receive into the same directory fails at once,
    /// and so does one into a folder above it or inside it (see [`hold_folders_above`]).
    pub fn new(root: &Path) -> Result<Self, DriverError> {
        let root_fresh = !root.exists();
        if root.exists() && !root.is_dir() {
            return Err(DriverError::Disk(format!(
                "{} is not a folder; give -o a folder to receive into (one that does not exist yet is made)",
                root.display()
            )));
        }
        // Held before anything is made inside another receive's folder, and again once
        // made: the folders made between the nearest that existed and the output folder
        // are above it too.
        let mut above = hold_folders_above(root)?;
        std::fs::create_dir_all(root)
            .map_err(|e| DriverError::Disk(format!("cannot create {}: {e}", root.display())))?;
        if root_fresh {
            above = hold_folders_above(root)?;
        }
        let dir = Dir::open_path(root)
            .map_err(|e| DriverError::Disk(format!("cannot open {}: {e}", root.display())))?;
        let exclusive = dir
            .try_lock()
            .map_err(|e| DriverError::Disk(format!("cannot lock {}: {e}", root.display())))?
            .ok_or_else(|| {
                DriverError::Disk(format!(
                    "{} is in use by another ferry receive (into it, or into a folder inside it); wait for it to end, or receive into another directory (-o)",
                    root.display()
                ))
            })?;
        Ok(Sink {
            root: dir,
            root_path: root.to_owned(),
            _exclusive: exclusive,
            _above: above,
            umask: umask(),
            parent: None,
            missing: None,
            root_fresh,
            fresh_dirs: HashSet::new(),
            written: Written::default(),
            open: None,
            reading: None,
            known: HashMap::new(),
            behind_mark: WRITE_BEHIND,
            write_behind: WriteBehind::default(),
            dirty: false,
            dirs: Vec::new(),
            replaceable: Vec::new(),
            ours: HashMap::new(),
            batch_parts: HashSet::new(),
        })
    }

    /// Takes note of the batch's names before anything is looked at or written: a
    /// file's `.part` must never take the name of another file or folder of the batch
    /// (a batch may hold both `x` and `x.part`), nor another file's `.part`.
    pub fn expect(&mut self, manifest: &Manifest) {
        self.batch_parts = manifest
            .iter()
            .filter(|e| {
                let (_, name) = split(e.path);
                let tail = name.get(name.len().saturating_sub(PART_SUFFIX.len())..);
                name.contains('~') || tail.is_some_and(|t| t.eq_ignore_ascii_case(PART_SUFFIX))
            })
            .map(|e| e.path.to_lowercase())
            .collect();
    }

    /// The name of the `.part` file of the entry at `path` (relative), in its folder:
    /// [`part_name`], or, where that is taken, the first of `NAME~1.part`, `NAME~2.part`,
    /// ... that is not. A name is taken if the batch has a file or folder of that name
    /// beside it (`x` and `x.part` both sent), or a file whose own `.part` it is (`x~1`
    /// beside `x`, `x.part` and `x~1`); letter case aside, for the file systems that
    /// ignore it. Each file of a folder thus gets a `.part` of its own.
    fn part_of(&self, path: &str) -> String {
        let (parent, name) = split(path);
        let first = part_name(name);
        if self.batch_parts.is_empty() {
            return first;
        }
        let own = path.to_lowercase();
        let taken = |part: &str| {
            let part = joined(parent, part).to_lowercase();
            let stem = part.strip_suffix(PART_SUFFIX).unwrap_or(&part);
            self.batch_parts.contains(&part) || (stem != own && self.batch_parts.contains(stem))
        };
        if !taken(&first) {
            return first;
        }
        (1u64..)
            .map(|n| part_name(&format!("{name}~{n}")))
            .find(|part| !taken(part))
            .unwrap_or(first)
    }

    /// The `.part` path of the entry at `path` (relative), for messages.
    pub(crate) fn part_path(&self, path: &str) -> String {
        joined(split(path).0, &self.part_of(path))
    }

    /// The directory everything goes into, as the user named it.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// A handle on the directory everything goes into.
    pub fn dir(&self) -> &Dir {
        &self.root
    }

    /// Records a file whose data changed, and the directory holding it, for a sync
    /// where files are synced one by one.
    fn wrote(&mut self, relative: &str) {
        if PER_FILE {
            self.written.files.insert(relative.to_owned());
            self.changed_dir(relative);
        }
    }

    /// Records that the directory holding `relative` changed (a name added or removed).
    fn changed_dir(&mut self, relative: &str) {
        if PER_FILE {
            self.written.dirs.insert(split(relative).0.to_owned());
        }
    }

    /// Hands over what was written since the last sync (empty where one sync covers the
    /// whole file system): the checkpoint that makes it durable.
    pub fn take_written(&mut self) -> Written {
        std::mem::take(&mut self.written)
    }

    /// `relative` (a path inside the root) with the root in front, for messages.
    fn shown(&self, relative: &str) -> String {
        self.root_path.join(relative).display().to_string()
    }

    /// An error about `relative`, naming it.
    fn about(&self, relative: &str, error: io::Error) -> io::Error {
        io::Error::new(error.kind(), format!("{}: {error}", self.shown(relative)))
    }

    /// The directory holding `path`, opened component by component without following
    /// links; missing ones are created when `create` is set, else `None`.
    fn parent(&mut self, path: &str, create: bool) -> io::Result<Option<&Dir>> {
        let (parent, _) = split(path);
        if parent.is_empty() {
            return Ok(Some(&self.root));
        }
        if create {
            self.missing = None;
        } else if self.missing.as_deref().is_some_and(|missing| {
            parent
                .strip_prefix(missing)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }) {
            return Ok(None);
        }
        let cached = self
            .parent
            .as_ref()
            .filter(|(p, dir, _)| p == parent && (dir.is_some() || !create));
        if cached.is_none() {
            self.parent = None;
            let mut at: Option<Dir> = None;
            let mut created = false;
            let mut walked = 0;
            for name in parent.split('/') {
                walked += name.len() + usize::from(walked > 0);
                let here = at.as_ref().unwrap_or(&self.root);
                created = false;
                let next = match here.open_dir(name) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                        match here.make_dir(name) {
                            Ok(()) => {
                                self.dirty = true;
                                created = true;
                                if PER_FILE {
                                    // The new directory, and the one that holds it.
                                    let made = &parent[..walked];
                                    self.written.dirs.insert(made.to_owned());
                                    self.written.dirs.insert(split(made).0.to_owned());
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(self.about(&parent[..walked], e)),
                        }
                        here.open_dir(name)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Remembered: a fresh receive asks about thousands of files in
                        // folders that are not there yet.
                        self.parent = Some((parent.to_owned(), None, false));
                        self.missing = Some(parent[..walked].to_owned());
                        return Ok(None);
                    }
                    other => other,
                };
                at = Some(next.map_err(|e| self.about(&parent[..walked], e))?);
            }
            self.parent = Some((parent.to_owned(), at, created));
        }
        Ok(self.parent.as_ref().and_then(|(_, dir, _)| dir.as_ref()))
    }

    /// True if the directory holding `path` was created by this run: nothing was in it
    /// before. Call after [`Sink::parent`] for the same path.
    fn fresh(&self, path: &str) -> bool {
        match split(path) {
            ("", _) => self.root_fresh,
            (parent, _) => {
                self.fresh_dirs.contains(parent)
                    || self
                        .parent
                        .as_ref()
                        .is_some_and(|(p, dir, fresh)| p == parent && dir.is_some() && *fresh)
            }
        }
    }

    /// What stands in the way of `entry` here, if anything, in words: a folder where the
    /// batch has a file, a file or a link where it has a folder, a file where its path
    /// needs a folder, anything but a file at the name of a file's `.part`. Known before
    /// any data moves (nothing is in a folder this run is about to create).
    pub fn in_the_way(&mut self, entry: &Entry<'_>) -> Option<String> {
        if self.root_fresh {
            return None;
        }
        let (_, name) = split(entry.path);
        let part =
            (entry.kind == EntryKind::File && entry.size > 0).then(|| self.part_of(entry.path));
        let dir = match self.parent(entry.path, false) {
            Err(_) => return Some("a folder on its path is not a folder here".into()),
            Ok(None) => return None,
            Ok(Some(dir)) => dir,
        };
        // Its partial file's name must be free or a file: a folder or a link there is
        // said now, not once the data has come.
        if let Some(part) = part
            && let Some(kind) = dir.stat(&part).ok().flatten().map(|found| found.kind)
        {
            let what = match kind {
                Kind::File { .. } => None,
                Kind::Dir => Some("a folder"),
                Kind::Link => Some("a symbolic link (never followed)"),
                Kind::Other => Some("something that is not a file"),
            };
            if let Some(what) = what {
                return Some(format!("{what} has the name of its partial file, {part}"));
            }
        }
        let here = dir.stat(name).ok().flatten()?.kind;
        let why = match (entry.kind, here) {
            (EntryKind::File, Kind::Dir) => {
                Some("the sender sends a file, and a folder has its name here")
            }
            (EntryKind::Directory, Kind::File { .. } | Kind::Other) => {
                Some("the sender sends a folder, and a file has its name here")
            }
            (_, Kind::Link) => Some("a symbolic link has its name here (never followed)"),
            (EntryKind::File, Kind::Other) => {
                Some("something that is not a file has its name here")
            }
            _ => None,
        };
        why.map(str::to_owned)
    }

    /// What exists locally for `entry`: its `.part` file and a file at its final name.
    /// Links and anything else count as nothing.
    pub fn local(&mut self, entry: &Entry<'_>) -> Here {
        let (_, name) = split(entry.path);
        let part = self.part_of(entry.path);
        let Ok(Some(dir)) = self.parent(entry.path, false) else {
            return Here::default();
        };
        let regular = |name: &str| match dir.stat(name) {
            Ok(Some(Found {
                kind: Kind::File { len, mtime_ns, .. },
                ..
            })) => Some((len, mtime_ns)),
            _ => None,
        };
        Here {
            part: regular(&part).map(|(len, _)| len),
            file: regular(name),
        }
    }

    /// The disk set aside past the end of `entry`'s `.part` ([`reserve_blocks`]) by the
    /// run that wrote it: room its resume already holds, or that removing it frees.
    pub fn set_aside(&mut self, entry: &Entry<'_>) -> u64 {
        let part = self.part_of(entry.path);
        let Ok(Some(dir)) = self.parent(entry.path, false) else {
            return 0;
        };
        let Ok(meta) = dir.open_file(&part, false).and_then(|f| f.metadata()) else {
            return 0;
        };
        #[cfg(unix)]
        return (std::os::unix::fs::MetadataExt::blocks(&meta) * 512).saturating_sub(meta.len());
        #[cfg(not(unix))]
        return {
            let _ = meta;
            0
        };
    }

    /// Marks an entry whose existing final file may be replaced (it was ours, or the user
    /// allowed overwriting).
    pub fn allow_replace(&mut self, entry: usize) {
        if self.replaceable.len() <= entry {
            self.replaceable.resize(entry + 1, false);
        }
        self.replaceable[entry] = true;
    }

    /// Marks an entry whose existing final file, `found`, an earlier receive put there
    /// and may be replaced (see [`Sink::replaces`]).
    pub fn replace_ours(&mut self, entry: usize, found: Replaces) {
        self.allow_replace(entry);
        self.ours.insert(entry, found);
    }

    /// The file an earlier receive put at `entry`'s name, that this one may replace,
    /// until the entry is committed: for the lock, so that a run stopped meanwhile
    /// leaves the next one allowed to replace it too.
    pub fn replaces(&self, entry: usize) -> Option<Replaces> {
        self.ours.get(&entry).copied()
    }

    fn may_replace(&self, entry: usize) -> bool {
        self.replaceable.get(entry).copied().unwrap_or(false)
    }

    /// The `.part` file of `index` opened for writing at `offset`: a fresh attempt
    /// (offset 0) replaces whatever file is there with a new one, created exclusively; a
    /// resumed one must still be the file this run verified.
    fn open_part(&mut self, index: usize, path: &str, offset: u64) -> io::Result<File> {
        let part = self.part_of(path);
        let known = self.known.get(&index).copied();
        let dir = self
            .parent(path, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let opened = if offset == 0 {
            // Mostly nothing is there, and the exclusive create says so in one call; where
            // it fails, what is there is looked at, as before every create once.
            match dir.create_new(&part) {
                Ok(file) => file,
                Err(_) => {
                    match dir.stat(&part)?.map(|f| f.kind) {
                        Some(Kind::File { .. }) => dir.remove_file(&part)?,
                        Some(Kind::Link) => {
                            return Err(refused("is a symbolic link; not following it"));
                        }
                        Some(_) => return Err(refused("exists and is not a regular file")),
                        None => {}
                    }
                    dir.create_new(&part).map_err(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            refused(
                                "appeared while it was being created; is something else writing here?",
                            )
                        } else {
                            e
                        }
                    })?
                }
            }
        } else {
            let file = dir.open_file(&part, true)?;
            if known != Some(file_id(&file)?) {
                return Err(refused(
                    "was replaced since it was verified; is something else writing here?",
                ));
            }
            file
        };
        self.known.insert(index, file_id(&opened)?);
        Ok(opened)
    }

    /// Writes `data` at `offset` of the entry's `.part` file.
    pub fn write(
        &mut self,
        index: usize,
        entry: &Entry<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), DiskError> {
        if self.open.as_ref().is_none_or(|(e, _)| *e != index) {
            let file = self
                .open_part(index, entry.path, offset)
                .map_err(|e| disk_error(&self.about(&self.part_path(entry.path), e)))?;
            self.wrote(&self.part_path(entry.path));
            // A file large enough for write-behind gets its blocks at once, not as its
            // pages are written back (see `reserve_blocks`). Its length is the attempt's
            // (another attempt starts a new `.part`), so the file fills all of them.
            if entry.size > WRITE_BEHIND {
                reserve_blocks(&file, entry.size);
            }
            self.open = Some((index, file));
            self.behind_mark = WRITE_BEHIND;
        }
        let Some((_, file)) = &self.open else {
            return Err(disk_error(&io::Error::other("no open file")));
        };
        write_all_at(file, data, offset)
            .map_err(|e| disk_error(&self.about(&self.part_path(entry.path), e)))?;
        let end = offset + data.len() as u64;
        if end >= self.behind_mark {
            let passed = end - end % WRITE_BEHIND;
            self.write_behind.passed(file, passed);
            self.behind_mark = passed + WRITE_BEHIND;
        }
        self.dirty = true;
        Ok(())
    }

    /// Reads the local copy of `entry` (its `.part`, else its final file) for the core's
    /// resume check. A `.part` read here is the one later writes must find again.
    pub fn read(
        &mut self,
        index: usize,
        entry: &Entry<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, DiskError> {
        if self.reading.as_ref().is_none_or(|(e, _)| *e != index) {
            self.reading = None;
            let opened = self
                .open_local(index, entry.path)
                .map_err(|e| disk_error(&self.about(entry.path, e)))?;
            self.reading = Some((index, opened));
        }
        let Some((_, file)) = &self.reading else {
            return Err(disk_error(&io::Error::other("no open file")));
        };
        read_full_at(file, buf, offset).map_err(|e| disk_error(&self.about(entry.path, e)))
    }

    fn open_local(&mut self, index: usize, path: &str) -> io::Result<File> {
        let (_, name) = split(path);
        let part = self.part_of(path);
        let dir = self
            .parent(path, false)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        match dir.open_file(&part, false) {
            Ok(file) => {
                // A .part with other names could be written through them: not ours.
                if other_links(&file.metadata()?) {
                    return Err(refused("has other names (hard links); not resuming it"));
                }
                self.known.insert(index, file_id(&file)?);
                Ok(file)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => dir.open_file(name, false),
            Err(e) => Err(e),
        }
    }

    /// Gives a verified entry its final name, mode and mtime. The rename is durable at the
    /// next [`Sink::sync`].
    pub fn commit(&mut self, index: usize, entry: &Entry<'_>) -> Result<(), DiskError> {
        let open = match self.open.take() {
            Some((e, file)) if e == index => Some(file),
            other => {
                self.open = other;
                None
            }
        };
        if self.reading.as_ref().is_some_and(|(e, _)| *e == index) {
            self.reading = None;
        }
        self.dirty = true;
        self.wrote(entry.path);
        self.commit_file(index, entry, open)
            .map_err(|e| disk_error(&self.about(entry.path, e)))
    }

    fn commit_file(
        &mut self,
        index: usize,
        entry: &Entry<'_>,
        open: Option<File>,
    ) -> io::Result<()> {
        let (_, name) = split(entry.path);
        let part = self.part_of(entry.path);
        let known = self.known.remove(&index);
        let replaceable = self.may_replace(index);
        self.ours.remove(&index);
        let mode = allowed_mode(entry.mode, self.umask);
        self.parent(entry.path, true)?;
        let fresh = self.fresh(entry.path);
        let dir = self
            .parent(entry.path, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let times =
            |file: &File| -> io::Result<()> { file.set_modified(time_from_ns(entry.mtime_ns)) };
        let finish = |file: &File| -> io::Result<()> {
            times(file)?;
            apply_mode(file, mode)
        };
        if fresh && entry.size == 0 {
            // A folder this run made holds nothing else: create the file with its mode.
            match dir.create_new_with_mode(name, mode) {
                Ok(file) => return times(&file),
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                Err(_) => {}
            }
        }
        // In a folder this run made, nothing was in the way before (and the rename below
        // replaces nothing that appeared since).
        let target = if fresh && known.is_some() {
            None
        } else {
            dir.stat(name)?.map(|f| f.kind)
        };
        match target {
            Some(Kind::Link) => return Err(refused("is a symbolic link; not replacing it")),
            Some(Kind::Dir) => return Err(refused("exists as a directory")),
            Some(Kind::Other) => return Err(refused("exists and is not a regular file")),
            _ => {}
        }
        let replaced = || {
            refused(&format!(
                "{part} was replaced while it was being received; is something else writing here?"
            ))
        };
        match dir.stat(&part)? {
            Some(found) if entry.size == 0 => {
                // An empty file needs no .part: whatever has that name is stale (a link
                // is removed, not followed).
                if !matches!(found.kind, Kind::File { .. } | Kind::Link) {
                    return Err(refused(&format!("{part} is not a regular file")));
                }
                dir.remove_file(&part)?;
                if target.is_none() {
                    finish(&dir.create_new(name)?)?;
                }
            }
            Some(Found {
                kind: Kind::File { .. },
                id,
            }) if known == Some(id) => {
                if target.is_some() && !replaceable {
                    return Err(refused(
                        "exists and differs; not overwriting it (use --overwrite)",
                    ));
                }
                let (file, meta) = match open {
                    Some(file) => {
                        let meta = file.metadata()?;
                        (file, meta)
                    }
                    None => dir.open_file_meta(&part, true)?,
                };
                if id_of(&meta) != id {
                    return Err(replaced());
                }
                // A .part left by an older, longer attempt keeps no stale tail.
                if meta.len() != entry.size {
                    file.set_len(entry.size)?;
                }
                finish(&file)?;
                if target.is_some() {
                    // Replacing what is there was allowed above.
                    dir.rename(&part, name)?;
                } else {
                    // Nothing was there (or, in a folder this run made, nothing could have
                    // been): whatever appeared since is not replaced.
                    match dir.rename_new(&part, name) {
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            return Err(refused(
                                "appeared while it was being received; not replacing it \
                                 (is something else writing here?)",
                            ));
                        }
                        renamed => renamed?,
                    }
                }
                if dir.stat(name)?.map(|f| f.id) != Some(id) {
                    return Err(refused(&format!(
                        "{part} was replaced while it was being renamed; is something else writing here?"
                    )));
                }
            }
            Some(_) => return Err(replaced()),
            None if entry.size == 0 && target.is_none() => {
                // An empty file: nothing was written, so create it now.
                finish(&dir.create_new(name)?)?;
            }
            None if known.is_some() || target.is_none() => {
                return Err(refused(&format!(
                    "{part} disappeared before it could be committed; is something else writing here?"
                )));
            }
            // Complete here already, and verified: it gets the sender's mtime and mode,
            // as if it had arrived (best effort: a file of another owner keeps its own).
            None => {
                if let Ok((file, _)) = dir.open_file_meta(name, false) {
                    let _ = finish(&file);
                }
            }
        }
        Ok(())
    }

    /// Throws away the entry's `.part` file (it failed verification).
    pub fn discard(&mut self, index: usize, entry: &Entry<'_>) -> Result<(), DiskError> {
        if self.open.as_ref().is_some_and(|(e, _)| *e == index) {
            self.open = None;
        }
        if self.reading.as_ref().is_some_and(|(e, _)| *e == index) {
            self.reading = None;
        }
        self.known.remove(&index);
        self.changed_dir(entry.path);
        let part = self.part_of(entry.path);
        let removed = match self.parent(entry.path, false) {
            Ok(Some(dir)) => dir.remove_file(&part),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        self.dirty = true;
        removed.map_err(|e| disk_error(&self.about(entry.path, e)))
    }

    /// Creates a directory entry; its mode is applied at [`Sink::finish`], so that a
    /// read-only directory can still be filled.
    pub fn create_dir(&mut self, index: usize, entry: &Entry<'_>) -> Result<(), DiskError> {
        let (_, name) = split(entry.path);
        let mut created = false;
        let result = self.parent(entry.path, true).and_then(|dir| {
            let dir = dir.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            match dir.make_dir(name) {
                Ok(()) => {
                    created = true;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match dir.stat(name)?.map(|f| f.kind) {
                        Some(Kind::Dir) => Ok(()),
                        Some(Kind::Link) => Err(refused("is a symbolic link; not following it")),
                        _ => Err(refused("exists and is not a directory")),
                    }
                }
                Err(e) => Err(e),
            }
        });
        self.dirty = true;
        result.map_err(|e| disk_error(&self.about(entry.path, e)))?;
        if created {
            self.fresh_dirs.insert(entry.path.to_owned());
            self.changed_dir(entry.path);
        }
        self.dirs.push(index);
        Ok(())
    }

    /// Cuts the `.part` file being written back to what `verified(entry)` says is
    /// verified: a write that failed midway (a full disk) leaves nothing unverified behind,
    /// and the space it took is free again for the last checkpoint.
    pub fn trim_open(&mut self, verified: impl Fn(usize) -> u64) -> io::Result<()> {
        match &self.open {
            Some((entry, file)) => {
                let keep = verified(*entry);
                if file.metadata()?.len() > keep {
                    file.set_len(keep)?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Makes everything written and renamed so far durable: one sync for the whole file
    /// system rather than one per file.
    pub fn sync(&mut self) -> Result<(), DriverError> {
        if !self.dirty {
            return Ok(());
        }
        let written = self.take_written();
        sync_filesystem(&self.root, &written).map_err(|e| {
            DriverError::Disk(format!("cannot sync {}: {e}", self.root_path.display()))
        })?;
        self.dirty = false;
        Ok(())
    }

    /// Applies directory modes and modification times, deepest first, once the batch
    /// is in place, and makes it durable in one sync, with `pending` (what was written
    /// that no checkpoint made durable).
    pub fn finish(&mut self, manifest: &Manifest, pending: Written) -> Result<(), DriverError> {
        self.written.absorb(pending);
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| {
            let path = |i: &usize| manifest.get(*i).map_or("", |e| e.path);
            path(b).cmp(path(a))
        });
        for index in dirs {
            let Some(entry) = manifest.get(index) else {
                continue;
            };
            let (_, name) = split(entry.path);
            let mode = allowed_mode(entry.mode, self.umask);
            let applied = self.parent(entry.path, false).and_then(|parent| {
                let dir = parent
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?
                    .open_dir(name)?;
                apply_dir_mtime(dir.as_file(), entry.mtime_ns)?;
                apply_mode(dir.as_file(), mode)
            });
            applied.map_err(|e| {
                DriverError::Disk(format!(
                    "cannot set the mode and time of {}: {e}",
                    self.shown(entry.path)
                ))
            })?;
            // The folder itself changed: synced below where each is synced on its own.
            if PER_FILE {
                self.written.dirs.insert(entry.path.to_owned());
            }
        }
        self.dirty = true;
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::Sink;
    use ferry_core::transfer::{Entry, EntryKind, Manifest, ManifestEntry, ManifestLimits};

    #[test]
    fn each_file_gets_a_part_name_of_its_own_that_no_name_of_the_batch_has() {
        let names = [
            "a", "a.part", "a~1", "a~1.part", "b", "B.PART", "c~2", "c", "c.part", "d",
        ];
        let entries: Vec<ManifestEntry> = names
            .iter()
            .map(|name| ManifestEntry {
                path: format!("dir/{name}"),
                kind: EntryKind::File,
                size: 1,
                mode: 0o644,
                mtime_ns: 0,
                sha256: None,
            })
            .collect();
        let manifest = Manifest::from_entries(&entries, &ManifestLimits::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::new(&dir.path().join("out")).unwrap();
        sink.expect(&manifest);
        let parts: Vec<String> = names
            .iter()
            .map(|name| sink.part_of(&format!("dir/{name}")))
            .collect();
        for (name, part) in names.iter().zip(&parts) {
            assert!(
                !names.iter().any(|n| n.eq_ignore_ascii_case(part)),
                "{name}'s {part} is a name of the batch"
            );
            assert_eq!(
                parts
                    .iter()
                    .filter(|p| p.eq_ignore_ascii_case(part))
                    .count(),
                1,
                "{name}'s {part} is shared: {parts:?}"
            );
        }
        // Where nothing is in the way, the usual name.
        assert_eq!(parts[names.len() - 1], "d.part");
        assert_eq!(parts[0], "a~2.part", "a.part is sent, a~1 is sent");
    }

    fn entry(path: &str, kind: EntryKind) -> Entry<'_> {
        Entry {
            path,
            kind,
            size: 0,
            mode: 0o755,
            mtime_ns: 0,
            sha256: None,
        }
    }

    #[test]
    fn a_folder_found_missing_is_looked_for_again_once_the_sink_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("b")).unwrap();
        std::fs::write(out.join("b/kept"), b"12345").unwrap();
        let mut sink = Sink::new(&out).unwrap();
        let file = |path| entry(path, EntryKind::File);
        // The length of the file found at the entry's final name, if any.
        let mut found = |path| {
            let here = sink.local(&file(path));
            assert_eq!(here.part, None, "{path}");
            here.file.map(|(len, _)| len)
        };
        assert_eq!(found("a/one/x"), None);
        assert_eq!(found("a/two/y"), None, "under the missing folder");
        assert_eq!(found("ab/z"), None, "a name that only starts like it");
        assert_eq!(found("b/kept"), Some(5), "beside it");
        sink.create_dir(0, &entry("a", EntryKind::Directory))
            .unwrap();
        sink.create_dir(1, &entry("a/two", EntryKind::Directory))
            .unwrap();
        std::fs::write(out.join("a/two/y"), b"123").unwrap();
        let mut found = |path| sink.local(&file(path)).file.map(|(len, _)| len);
        assert_eq!(
            found("a/two/y"),
            Some(3),
            "a folder made since is looked in"
        );
        assert_eq!(found("a/one/x"), None);
    }

    /// A large file's disk is set aside as its `.part` opens (and counted as room a
    /// resume holds); its length is still what was written.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_part_gets_its_disk_at_once_and_keeps_the_length_written() {
        use std::os::unix::fs::MetadataExt;
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut sink = Sink::new(&out).unwrap();
        let disk = |path: &str| std::fs::metadata(out.join(path)).unwrap().blocks() * 512;
        let mut big = entry("big.bin", EntryKind::File);
        big.size = 24 * MIB;
        big.mode = 0o644;
        sink.write(0, &big, 0, &[7; 1 << 20]).unwrap();
        let probe = std::fs::File::create(dir.path().join("probe")).unwrap();
        if super::reserve_blocks(&probe, MIB) {
            assert!(
                disk("big.bin.part") >= 24 * MIB,
                "{} bytes set aside",
                disk("big.bin.part")
            );
            // What a resume's check of the free space counts as room it already holds.
            assert!(sink.set_aside(&big) >= 23 * MIB, "{}", sink.set_aside(&big));
        }
        assert_eq!(
            std::fs::metadata(out.join("big.bin.part")).unwrap().len(),
            MIB,
            "its length is what was written"
        );
        sink.write(0, &big, MIB, &[7; 23 << 20]).unwrap();
        sink.commit(0, &big).unwrap();
        let held = disk("big.bin");
        assert!(held <= 25 * MIB, "{held} bytes held by a 24 MiB file");
        assert_eq!(
            std::fs::read(out.join("big.bin")).unwrap(),
            vec![7; 24 << 20]
        );
    }
}
