//! The receiver's output directory: `.part` files beside their final names, commits by
//! rename after verification, durability in batches, and no path that leaves the
//! directory or follows a symlink found there.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use ferry_core::transfer::{DiskError, Entry, EntryKind, Manifest};

use crate::error::{DriverError, disk_error};

/// The suffix of a file still being received.
pub const PART_SUFFIX: &str = ".part";

/// Writes a batch under one directory.
#[derive(Debug)]
pub struct Sink {
    root: PathBuf,
    open: Option<(usize, File)>,
    /// Where the open file's next write-behind step is due.
    behind_mark: u64,
    /// Files written since the last sync, and directories whose entries changed.
    dirty: bool,
    /// Directory modes to apply once everything inside them is written.
    dir_modes: Vec<(PathBuf, u32)>,
    /// Entries whose final file was already there and is ours to replace.
    replaceable: BTreeSet<usize>,
}

fn refuse(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

impl Sink {
    /// A sink writing under `root`, which is created if missing.
    pub fn new(root: &Path) -> Result<Self, DriverError> {
        fs::create_dir_all(root)
            .map_err(|e| DriverError::Disk(format!("cannot create {}: {e}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(|e| DriverError::Disk(format!("cannot open {}: {e}", root.display())))?;
        Ok(Sink {
            root,
            open: None,
            behind_mark: WRITE_BEHIND,
            dirty: false,
            dir_modes: Vec::new(),
            replaceable: BTreeSet::new(),
        })
    }

    /// The directory everything goes into.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The final location of `entry`. The core has already refused every path that is
    /// absolute or has `..`; the check here is a second line of defence.
    pub fn target(&self, entry: &Entry<'_>) -> io::Result<PathBuf> {
        let relative = Path::new(entry.path);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(refuse(relative, "not a plain relative path"));
        }
        Ok(self.root.join(relative))
    }

    fn part_path(target: &Path) -> PathBuf {
        let mut name = target.as_os_str().to_owned();
        name.push(PART_SUFFIX);
        PathBuf::from(name)
    }

    /// Creates the directories above `target` inside the root, refusing any that exists
    /// as a symlink or a non-directory.
    fn ensure_parents(&self, target: &Path) -> io::Result<()> {
        let relative = target
            .strip_prefix(&self.root)
            .map_err(|_| refuse(target, "outside the output directory"))?;
        let mut at = self.root.clone();
        if let Some(parent) = relative.parent() {
            for component in parent.components() {
                at.push(component);
                match fs::symlink_metadata(&at) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        return Err(refuse(&at, "is a symbolic link; not following it"));
                    }
                    Ok(meta) if !meta.is_dir() => {
                        return Err(refuse(&at, "exists and is not a directory"));
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at)?,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// What exists locally for `entry`: `(bytes, is_partial)` of its `.part` file, or of its
    /// final file if there is no `.part`. Symlinks count as nothing.
    pub fn local(&self, entry: &Entry<'_>) -> Option<(u64, bool)> {
        let target = self.target(entry).ok()?;
        let regular = |p: &Path| {
            fs::symlink_metadata(p)
                .ok()
                .filter(|m| m.file_type().is_file())
                .map(|m| m.len())
        };
        regular(&Sink::part_path(&target))
            .map(|n| (n, true))
            .or_else(|| regular(&target).map(|n| (n, false)))
    }

    /// Marks an entry whose existing final file may be replaced (it was ours, or the user
    /// allowed overwriting).
    pub fn allow_replace(&mut self, entry: usize) {
        self.replaceable.insert(entry);
    }

    fn file_for_write(&mut self, index: usize, entry: &Entry<'_>) -> io::Result<&File> {
        if self.open.as_ref().is_none_or(|(e, _)| *e != index) {
            let target = self.target(entry)?;
            self.ensure_parents(&target)?;
            let file = OpenOptions::new()
                .write(true)
                .read(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(Sink::part_path(&target))?;
            self.open = Some((index, file));
        }
        match &self.open {
            Some((_, file)) => Ok(file),
            None => Err(io::Error::other("no open file")),
        }
    }

    /// Where the write-behind step of `index` is due: a file not open yet starts afresh.
    fn behind_mark_for(&self, index: usize) -> u64 {
        match &self.open {
            Some((open, _)) if *open == index => self.behind_mark,
            _ => WRITE_BEHIND,
        }
    }

    /// Writes `data` at `offset` of the entry's `.part` file.
    pub fn write(
        &mut self,
        index: usize,
        entry: &Entry<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), DiskError> {
        let mark = self.behind_mark_for(index);
        let file = self
            .file_for_write(index, entry)
            .map_err(|e| disk_error(&e))?;
        file.write_all_at(data, offset)
            .map_err(|e| disk_error(&e))?;
        let end = offset + data.len() as u64;
        let due = end >= mark;
        if due {
            write_behind(file, mark);
        }
        self.dirty = true;
        if due {
            self.behind_mark = end - end % WRITE_BEHIND + WRITE_BEHIND;
        }
        Ok(())
    }

    /// Reads the local copy of `entry` (its `.part`, else its final file) for the core's
    /// resume check.
    pub fn read(
        &mut self,
        entry: &Entry<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, DiskError> {
        let target = self.target(entry).map_err(|e| disk_error(&e))?;
        let part = Sink::part_path(&target);
        let path = if part.exists() { part } else { target };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| disk_error(&e))?;
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(disk_error(&e)),
            }
        }
        Ok(filled)
    }

    /// Gives a verified entry its final name, mode and mtime. The rename is durable at the
    /// next [`Sink::sync`].
    pub fn commit(&mut self, index: usize, entry: &Entry<'_>) -> Result<(), DiskError> {
        let target = self.target(entry).map_err(|e| disk_error(&e))?;
        let part = Sink::part_path(&target);
        if self.open.as_ref().is_some_and(|(e, _)| *e == index) {
            self.open = None;
        }
        let times = |path: &Path| -> io::Result<()> {
            let when = UNIX_EPOCH + Duration::from_secs(u64::try_from(entry.mtime).unwrap_or(0));
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)?;
            file.set_modified(when)?;
            fs::set_permissions(path, fs::Permissions::from_mode(entry.mode))
        };
        let result = (|| -> io::Result<()> {
            self.ensure_parents(&target)?;
            match fs::symlink_metadata(&target) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(refuse(&target, "is a symbolic link; not replacing it"));
                }
                Ok(meta) if meta.is_dir() => return Err(refuse(&target, "exists as a directory")),
                Ok(_) if part.exists() && !self.replaceable.contains(&index) => {
                    return Err(refuse(
                        &target,
                        "exists and differs; not overwriting it (use --overwrite)",
                    ));
                }
                _ => {}
            }
            if part.exists() {
                // A .part left by an older, longer attempt keeps no stale tail.
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&part)?
                    .set_len(entry.size)?;
                times(&part)?;
                fs::rename(&part, &target)?;
            } else if fs::symlink_metadata(&target).is_err() {
                // An empty file: nothing was written, so create it now.
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)?;
                times(&target)?;
            }
            Ok(())
        })();
        self.dirty = true;
        result.map_err(|e| disk_error(&e))
    }

    /// Throws away the entry's `.part` file (it failed verification).
    pub fn discard(&mut self, index: usize, entry: &Entry<'_>) -> Result<(), DiskError> {
        if self.open.as_ref().is_some_and(|(e, _)| *e == index) {
            self.open = None;
        }
        let target = self.target(entry).map_err(|e| disk_error(&e))?;
        match fs::remove_file(Sink::part_path(&target)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(disk_error(&e)),
        }
    }

    /// Creates a directory entry; its mode is applied at [`Sink::finish`], so that a
    /// read-only directory can still be filled.
    pub fn create_dir(&mut self, entry: &Entry<'_>) -> Result<(), DiskError> {
        let target = self.target(entry).map_err(|e| disk_error(&e))?;
        let result =
            self.ensure_parents(&target)
                .and_then(|()| match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        Err(refuse(&target, "is a symbolic link; not following it"))
                    }
                    Ok(meta) if meta.is_dir() => Ok(()),
                    Ok(_) => Err(refuse(&target, "exists and is not a directory")),
                    Err(_) => fs::create_dir(&target),
                });
        result.map_err(|e| disk_error(&e))?;
        self.dir_modes.push((target, entry.mode));
        Ok(())
    }

    /// Makes everything written and renamed so far durable: one `syncfs` for the whole
    /// file system rather than one fsync per file.
    pub fn sync(&mut self) -> Result<(), DriverError> {
        if !self.dirty {
            return Ok(());
        }
        sync_filesystem(&self.root)?;
        self.dirty = false;
        Ok(())
    }

    /// Applies directory modes, deepest first, once the batch is in place.
    pub fn finish(&mut self) -> Result<(), DriverError> {
        self.dir_modes.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mode) in self.dir_modes.drain(..) {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(|e| {
                DriverError::Disk(format!("cannot set the mode of {}: {e}", path.display()))
            })?;
        }
        self.sync()
    }

    /// Entries of `manifest` whose final file exists with another size: they would be
    /// overwritten by this batch.
    pub fn conflicts(&self, manifest: &Manifest) -> Vec<String> {
        manifest
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .filter(|e| matches!(self.local(e), Some((n, false)) if n != e.size))
            .map(|e| e.path.to_owned())
            .collect()
    }
}

/// How far behind the newest write a large file's pages are handed to the disk.
const WRITE_BEHIND: u64 = 4 << 20;

/// Streams a large file to the disk as it is written instead of leaving it all to the
/// next checkpoint's `syncfs`, and keeps the page cache from filling with a transfer's
/// worth of pages: `POSIX_FADV_DONTNEED` starts writeback of the dirty pages it is given
/// and drops the clean ones. Called as the file passes `mark`, it starts the newest
/// window and drops the one two windows back, written out by then. Durability is still
/// claimed only after `syncfs` (the lock file); this only spreads the disk's work out.
fn write_behind(file: &File, mark: u64) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let window = WRITE_BEHIND as i64;
    let mark = i64::try_from(mark).unwrap_or(i64::MAX);
    for start in [mark - window, mark - 3 * window] {
        if start >= 0 {
            // Advice only: a refusal costs speed, never data.
            let _ = posix_fadvise(file, start, window, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
    }
}

/// Makes everything written on the file system holding `root` durable (`syncfs`).
pub fn sync_filesystem(root: &Path) -> Result<(), DriverError> {
    let failed = |e: &dyn std::fmt::Display| {
        DriverError::Disk(format!("cannot sync {}: {e}", root.display()))
    };
    let dir = File::open(root).map_err(|e| failed(&e))?;
    nix::unistd::syncfs(&dir).map_err(|e| failed(&e))
}
