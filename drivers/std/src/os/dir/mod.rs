//! Files and directories reached relative to a directory handle, never through a link.
//!
//! A receiver's output folder may be shared with other users and programs. Every file and
//! directory Ferry creates, opens, renames or removes inside it is named relative to a
//! handle of its parent directory, and that handle was itself opened without following
//! a link. A link planted, or swapped in, at any name is then refused rather than
//! followed; new files are created exclusively, so nothing that appeared meanwhile is
//! ever written through. Unix does this with `openat` and `O_NOFOLLOW`; Windows, which
//! has no `openat` in its standard library, checks each name for a reparse point (a
//! symbolic link or a junction) and opens files without following one.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Paths at least this long are opened a component at a time through directory handles:
/// the system refuses a path of `PATH_MAX` (4,096 bytes on Linux) or more, and a relative
/// path the protocol allows may be that long by itself.
pub const LONG_PATH: usize = 3072;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{Dir, DirLock, file_id, id_of, open_source_file, owned_alone};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{Dir, DirLock, file_id, id_of, open_source_file, owned_alone};

/// What a name in a directory is, found without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file of this many bytes.
    File {
        /// Its length.
        len: u64,
        /// Other names (hard links) it has besides this one.
        other_links: bool,
        /// Its modification time, in nanoseconds since the Unix epoch.
        mtime_ns: i64,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
    /// Anything else: a FIFO, a socket, a device.
    Other,
}

/// Which file an open handle or a name refers to: equal ids, the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    pub(crate) fn new(device: u64, inode: u64) -> Self {
        FileId { device, inode }
    }
}

/// A name found in a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// What it is.
    pub kind: Kind,
    /// Which file it is.
    pub id: FileId,
}

/// Why a name cannot be used, as an error that says so in words.
pub fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.to_owned())
}

impl Dir {
    /// Opens the directory at `path` (a `/`-separated path inside this one) component by
    /// component, refusing a link at any of them.
    pub fn open_dir_path(&self, path: &str) -> io::Result<Dir> {
        let mut at: Option<Dir> = None;
        for name in path.split('/') {
            let next = at.as_ref().unwrap_or(self).open_dir(name)?;
            at = Some(next);
        }
        match at {
            Some(dir) => Ok(dir),
            None => self.try_clone(),
        }
    }

    /// Opens the existing regular file at `path` (`/`-separated, inside this directory)
    /// without following a link anywhere on the way.
    pub fn open_file_path(&self, path: &str, write: bool) -> io::Result<std::fs::File> {
        match path.rsplit_once('/') {
            Some((parent, name)) => self.open_dir_path(parent)?.open_file(name, write),
            None => self.open_file(path, write),
        }
    }

    /// Opens the directory at `path` however long it is: the part of it the system takes
    /// whole, following links there as any path does, then the rest a component at a time
    /// without following links.
    pub fn open_long(path: &Path) -> io::Result<Dir> {
        let mut head = PathBuf::new();
        let mut rest = Vec::new();
        for component in path.components() {
            let room = head.as_os_str().len() + component.as_os_str().len() < LONG_PATH;
            match component {
                Component::Normal(name) if !room || !rest.is_empty() => rest.push(name),
                _ if !rest.is_empty() => return Err(refused("`..` deep in a long path")),
                other => head.push(other),
            }
        }
        let mut dir = Dir::open_path(&head)?;
        for name in rest {
            let name = name
                .to_str()
                .ok_or_else(|| refused("a name deep in a long path is not UTF-8"))?;
            dir = dir.open_dir(name)?;
        }
        Ok(dir)
    }
}

/// Opens the regular file at `path` (one the user gave) for reading, through directory
/// handles when the path is too long for the system to take whole.
pub fn open_long_file(path: &Path) -> io::Result<std::fs::File> {
    if path.as_os_str().len() < LONG_PATH {
        return open_source_file(path);
    }
    let parent = path
        .parent()
        .ok_or_else(|| refused("has no parent folder"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| refused("a name deep in a long path is not UTF-8"))?;
    Dir::open_long(parent)?.open_file(name, false)
}
