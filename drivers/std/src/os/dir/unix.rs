//! Unix: `openat` and its family on directory handles, `O_NOFOLLOW`, `flock`.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::{FileId, Found, Kind, refused};

/// An open directory. Names given to its methods are single components (no `/`).
#[derive(Debug)]
pub struct Dir {
    file: File,
}

/// A lock on a directory, exclusive or shared, held until dropped (or the process ends,
/// even by `kill -9`).
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

fn io_error(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

/// Opens the file at `path`, a path the user gave to send (a link there is followed: it
/// is their choice, and the listing followed it), to read it. A FIFO put there since the
/// listing fails rather than blocking the open.
pub fn open_source_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(refused("is not a regular file"));
    }
    // Reads of a regular file ignore the flag; it is cleared all the same.
    let flags =
        OFlag::from_bits_truncate(nix::fcntl::fcntl(&file, nix::fcntl::F_GETFL).map_err(io_error)?);
    nix::fcntl::fcntl(&file, nix::fcntl::F_SETFL(flags & !OFlag::O_NONBLOCK)).map_err(io_error)?;
    Ok(file)
}

impl Dir {
    /// Opens the directory at `path`, following links in it: the path is the user's own
    /// choice (`-o ~/incoming` may well be a link).
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_error)?;
        Ok(Dir {
            file: File::from(fd),
        })
    }

    /// A second handle on the same directory (for another thread).
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            file: self.file.try_clone()?,
        })
    }

    /// The directory as an open file: for its metadata, mode and times.
    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// What `name` is, without following it; `None` if nothing has that name.
    pub fn stat(&self, name: &str) -> io::Result<Option<Found>> {
        let stat = match fstatat(&self.file, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(io_error(errno)),
        };
        let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        let kind = if format == SFlag::S_IFREG {
            // The field types differ between systems.
            #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
            let mtime_ns = i64::from(stat.st_mtime)
                .saturating_mul(1_000_000_000)
                .saturating_add(stat.st_mtime_nsec as i64);
            Kind::File {
                len: u64::try_from(stat.st_size).unwrap_or(0),
                other_links: stat.st_nlink > 1,
                mtime_ns,
            }
        } else if format == SFlag::S_IFDIR {
            Kind::Dir
        } else if format == SFlag::S_IFLNK {
            Kind::Link
        } else {
            Kind::Other
        };
        // The field types differ between systems (macOS: a signed st_dev).
        #[allow(clippy::unnecessary_cast)]
        let id = FileId::new(stat.st_dev as u64, stat.st_ino as u64);
        Ok(Some(Found { kind, id }))
    }

    /// Explains why `name` could not be opened as `wanted`, in words, when the cause is
    /// something in the way (a link, a file where a directory should be).
    fn explain(&self, name: &str, errno: Errno, wanted: Kind) -> io::Error {
        match self.stat(name) {
            Ok(Some(found)) => match (found.kind, wanted) {
                (Kind::Link, _) => refused("is a symbolic link; not following it"),
                (Kind::Dir, Kind::File { .. }) => refused("is a directory"),
                (Kind::File { .. } | Kind::Other, Kind::Dir) => {
                    refused("exists and is not a directory")
                }
                (Kind::Other, _) => refused("is not a regular file"),
                _ => io_error(errno),
            },
            _ => io_error(errno),
        }
    }

    /// Opens the subdirectory `name`, refusing a link.
    pub fn open_dir(&self, name: &str) -> io::Result<Dir> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&self.file, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Dir {
                file: File::from(fd),
            }),
            Err(Errno::ENOENT) => Err(io_error(Errno::ENOENT)),
            Err(errno) => Err(self.explain(name, errno, Kind::Dir)),
        }
    }

    /// Creates the subdirectory `name` (its mode is the process's default; the caller
    /// sets the final one). Fails if anything has that name already.
    pub fn make_dir(&self, name: &str) -> io::Result<()> {
        mkdirat(&self.file, name, Mode::from_bits_truncate(0o777)).map_err(io_error)
    }

    /// Creates a new file `name`, readable and writable by its owner only; fails if
    /// anything, even a dangling link, has that name already.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let flags =
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        openat(&self.file, name, flags, Mode::from_bits_truncate(0o600))
            .map(File::from)
            .map_err(io_error)
    }

    /// Creates a new file `name` with permission bits `mode` (the process's umask applies
    /// too); fails if anything has that name already.
    pub fn create_new_with_mode(&self, name: &str, mode: u32) -> io::Result<File> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        #[allow(clippy::useless_conversion)] // mode_t is narrower on some systems
        let mode = Mode::from_bits_truncate((mode & 0o777).try_into().unwrap_or(0o600));
        openat(&self.file, name, flags, mode)
            .map(File::from)
            .map_err(io_error)
    }

    /// Opens the existing regular file `name`, refusing a link or anything else that is
    /// not a regular file.
    pub fn open_file(&self, name: &str, write: bool) -> io::Result<File> {
        self.open_file_meta(name, write).map(|(file, _)| file)
    }

    /// As [`Dir::open_file`], with the metadata its check read: which file it is and its
    /// length, without asking the system again.
    pub fn open_file_meta(&self, name: &str, write: bool) -> io::Result<(File, Metadata)> {
        let access = if write {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        // O_NONBLOCK: a FIFO planted at the name must not block the open.
        let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd: OwnedFd = match openat(&self.file, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Err(io_error(Errno::ENOENT)),
            Err(errno) => {
                return Err(self.explain(
                    name,
                    errno,
                    Kind::File {
                        len: 0,
                        other_links: false,
                        mtime_ns: 0,
                    },
                ));
            }
        };
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(refused("is not a regular file"));
        }
        Ok((file, meta))
    }

    /// Renames `from` to `to` within this directory, replacing a file at `to`. Neither
    /// name is followed: a link is renamed (or replaced) as the link itself.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        nix::fcntl::renameat(&self.file, from, &self.file, to).map_err(io_error)
    }

    /// Renames `from` to `to` within this directory only if nothing has the name `to`
    /// (`AlreadyExists` otherwise): at once where the system can (Linux's
    /// `RENAME_NOREPLACE`); elsewhere, or on a file system without it, by looking first,
    /// which leaves a moment in which something put at `to` is replaced.
    pub fn rename_new(&self, from: &str, to: &str) -> io::Result<()> {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        match nix::fcntl::renameat2(
            &self.file,
            from,
            &self.file,
            to,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok(()),
            Err(Errno::EEXIST) => return Err(io::ErrorKind::AlreadyExists.into()),
            // A file system or kernel without the flag: look first, below.
            Err(Errno::EINVAL | Errno::ENOSYS) => {}
            Err(errno) => return Err(io_error(errno)),
        }
        if self.stat(to)?.is_some() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        self.rename(from, to)
    }

    /// Removes the name `name` (a link is removed, not its target); nothing there is fine.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        match unlinkat(&self.file, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(io_error(errno)),
        }
    }

    /// The names in this directory (without `.` and `..`), in no particular order.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut listing =
            nix::dir::Dir::openat(&self.file, ".", flags, Mode::empty()).map_err(io_error)?;
        let mut names = Vec::new();
        for item in listing.iter() {
            let name = item.map_err(io_error)?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name));
            }
        }
        Ok(names)
    }

    /// Makes the directory's entries (creations, renames, removals) durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Takes an exclusive lock on this directory without waiting: `None` when another
    /// process (or another handle in this one) holds it. The lock lives as long as the
    /// returned guard and ends with the process however it ends.
    pub fn try_lock(&self) -> io::Result<Option<DirLock>> {
        self.try_flock(FlockArg::LockExclusiveNonblock)
    }

    /// Takes a shared lock on this directory without waiting: `None` when another
    /// process holds it exclusively (a receive into it). Any number of shared locks go
    /// together: receives into folders side by side under it.
    pub fn try_lock_shared(&self) -> io::Result<Option<DirLock>> {
        self.try_flock(FlockArg::LockSharedNonblock)
    }

    fn try_flock(&self, how: FlockArg) -> io::Result<Option<DirLock>> {
        match Flock::lock(self.file.try_clone()?, how) {
            Ok(lock) => Ok(Some(DirLock { _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(io_error(errno)),
        }
    }
}

/// True if `file` belongs to the user running this process and has no other name: a
/// file that someone else planted, or that is linked elsewhere, is not ours to write.
pub fn owned_alone(file: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok(meta.uid() == nix::unistd::geteuid().as_raw() && meta.nlink() == 1)
}

/// Which file an open handle refers to.
pub fn file_id(file: &File) -> io::Result<FileId> {
    Ok(id_of(&file.metadata()?))
}

/// Which file `meta` is of.
pub fn id_of(meta: &Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId::new(meta.dev(), meta.ino())
}
