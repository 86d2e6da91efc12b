//! Windows: names joined to the directory's path, each checked for a reparse point (a
//! symbolic link or a junction) before it is used, and files opened with
//! `FILE_FLAG_OPEN_REPARSE_POINT` so that a reparse point swapped in is opened as itself,
//! never followed. New files are created with `CREATE_NEW`, which fails on any name that
//! exists. (Without an `openat`, a directory swapped for a junction between the check and
//! the use is not caught here; Unix closes that window.)

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{FileId, Found, Kind, refused};

const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
const FILE_FLAG_DELETE_ON_CLOSE: u32 = 0x0400_0000;
const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
const ERROR_SHARING_VIOLATION: i32 = 32;

/// An open directory. Names given to its methods are single components (no `/`).
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
    handle: File,
}

/// A hold on a directory: for an exclusive one, a lock file inside it, open with no
/// sharing and deleted when the process lets go of it, however it ends; a shared one
/// holds nothing here (see `try_lock_shared`).
#[derive(Debug)]
pub struct DirLock {
    _file: Option<File>,
}

/// The name of the file that holds a directory for one receive.
const LOCK_FILE: &str = ".ferry-receive.lock";

fn kind_of(meta: &fs::Metadata) -> Kind {
    if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        Kind::Link
    } else if meta.is_dir() {
        Kind::Dir
    } else if meta.is_file() {
        Kind::File {
            len: meta.len(),
            other_links: false,
            mtime_ns: meta.modified().map_or(0, crate::os::meta::ns_from_time),
        }
    } else {
        Kind::Other
    }
}

/// Which file `meta` is of.
pub fn id_of(meta: &fs::Metadata) -> FileId {
    // The creation time, in 100 ns steps: the standard library has no stable file index.
    FileId::new(0, meta.creation_time())
}

impl Dir {
    /// Opens the directory at `path`, following links in it: the path is the user's own
    /// choice.
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        Ok(Dir {
            path: path.to_owned(),
            handle,
        })
    }

    /// A second handle on the same directory (for another thread).
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            path: self.path.clone(),
            handle: self.handle.try_clone()?,
        })
    }

    /// The directory as an open file: for its metadata and times.
    pub fn as_file(&self) -> &File {
        &self.handle
    }

    /// What `name` is, without following it; `None` if nothing has that name.
    pub fn stat(&self, name: &str) -> io::Result<Option<Found>> {
        match fs::symlink_metadata(self.path.join(name)) {
            Ok(meta) => Ok(Some(Found {
                kind: kind_of(&meta),
                id: id_of(&meta),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the subdirectory `name`, refusing a link or junction.
    pub fn open_dir(&self, name: &str) -> io::Result<Dir> {
        match self.stat(name)?.map(|f| f.kind) {
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
            Some(Kind::Link) => Err(refused("is a symbolic link; not following it")),
            Some(Kind::Dir) => Dir::open_path(&self.path.join(name)),
            Some(_) => Err(refused("exists and is not a directory")),
        }
    }

    /// The names in this directory, in no particular order.
    pub fn names(&self) -> io::Result<Vec<std::ffi::OsString>> {
        fs::read_dir(&self.path)?
            .map(|item| item.map(|i| i.file_name()))
            .collect()
    }

    /// Creates the subdirectory `name`. Fails if anything has that name already.
    pub fn make_dir(&self, name: &str) -> io::Result<()> {
        fs::create_dir(self.path.join(name))
    }

    /// Creates a new file `name`; fails if anything, even a dangling link, has that name.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(self.path.join(name))
    }

    /// As [`Dir::create_new`]; Windows keeps no Unix permission bits.
    pub fn create_new_with_mode(&self, name: &str, _mode: u32) -> io::Result<File> {
        self.create_new(name)
    }

    /// Opens the existing regular file `name`, refusing a link or anything else that is
    /// not a regular file.
    pub fn open_file(&self, name: &str, write: bool) -> io::Result<File> {
        self.open_file_meta(name, write).map(|(file, _)| file)
    }

    /// As [`Dir::open_file`], with the metadata its check read: which file it is and its
    /// length, without asking the system again.
    pub fn open_file_meta(&self, name: &str, write: bool) -> io::Result<(File, fs::Metadata)> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(self.path.join(name))?;
        let meta = file.metadata()?;
        match kind_of(&meta) {
            Kind::File { .. } => Ok((file, meta)),
            Kind::Link => Err(refused("is a symbolic link; not following it")),
            _ => Err(refused("is not a regular file")),
        }
    }

    /// Renames `from` to `to` within this directory, replacing a file at `to`. A link is
    /// renamed (or replaced) as the link itself.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path.join(from), self.path.join(to))
    }

    /// Renames `from` to `to` only if nothing has the name `to` (`AlreadyExists`
    /// otherwise), looking first: something put at `to` in the moment between is replaced.
    pub fn rename_new(&self, from: &str, to: &str) -> io::Result<()> {
        if self.stat(to)?.is_some() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        self.rename(from, to)
    }

    /// Removes the name `name` (a link is removed, not its target); nothing there is fine.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Directory entries on NTFS are journaled: there is nothing to flush by hand.
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    /// A shared hold on this directory, against a receive into it: not kept here (it
    /// would take a file in every folder above the output folder); always granted.
    pub fn try_lock_shared(&self) -> io::Result<Option<DirLock>> {
        Ok(Some(DirLock { _file: None }))
    }

    /// Takes an exclusive hold on this directory without waiting: `None` when another
    /// process holds it.
    pub fn try_lock(&self) -> io::Result<Option<DirLock>> {
        let opened = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .share_mode(0)
            .custom_flags(FILE_FLAG_DELETE_ON_CLOSE | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(self.path.join(LOCK_FILE));
        match opened {
            Ok(file) => Ok(Some(DirLock { _file: Some(file) })),
            Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Windows keeps no Unix owner here: a file in the output folder is taken as ours.
pub fn owned_alone(_file: &File) -> io::Result<bool> {
    Ok(true)
}

/// Which file an open handle refers to.
pub fn file_id(file: &File) -> io::Result<FileId> {
    Ok(id_of(&file.metadata()?))
}

/// Opens the file at `path`, a path the user gave to send (a link there is followed: it
/// is their choice, and the listing followed it), to read it.
pub fn open_source_file(path: &Path) -> io::Result<File> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(refused("is not a regular file"));
    }
    Ok(file)
}
