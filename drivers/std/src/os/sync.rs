//! Making written data durable, and streaming large files to the disk as they are written.
//!
//! Linux makes a whole file system durable with one `syncfs`. Elsewhere each file written
//! since the last sync is synced on its own (`fsync`; on macOS the standard library's
//! `sync_all` is `F_FULLFSYNC`, which also flushes the drive's cache), and then each
//! directory whose entries changed: the sink keeps that list only where it is needed
//! ([`PER_FILE`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io;

use super::dir::Dir;

/// True where durability means syncing each written file and directory on its own.
pub const PER_FILE: bool = !cfg!(any(target_os = "linux", target_os = "android"));

/// What was written since the last sync, where [`PER_FILE`] holds: `/`-separated paths
/// inside the output directory ("" for the directory itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Files whose data or size changed.
    pub files: BTreeSet<String>,
    /// Directories whose entries changed.
    pub dirs: BTreeSet<String>,
}

impl Written {
    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }
}

/// Makes everything written under `dir` durable: `written` lists it where the system
/// needs that (elsewhere it is empty and ignored).
pub fn sync_filesystem(dir: &Dir, written: &Written) -> io::Result<()> {
    if PER_FILE {
        sync_each(dir, written)
    } else {
        syncfs(dir)
    }
}

/// Syncs each file and directory `written` lists, reached from `dir` without following a
/// link; one renamed or removed since is skipped (its new name is listed, or nothing is
/// left to sync).
pub fn sync_each(dir: &Dir, written: &Written) -> io::Result<()> {
    for path in &written.files {
        match dir.open_file_path(path, true) {
            Ok(file) => file.sync_all()?,
            // Renamed or removed since: its new name is in the list, or nothing is left.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for path in &written.dirs {
        let opened = if path.is_empty() {
            dir.try_clone()
        } else {
            dir.open_dir_path(path)
        };
        match opened {
            Ok(opened) => opened.sync()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn syncfs(dir: &Dir) -> io::Result<()> {
    nix::unistd::syncfs(dir.as_file()).map_err(|errno| io::Error::from_raw_os_error(errno as i32))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn syncfs(_dir: &Dir) -> io::Result<()> {
    Ok(())
}

/// Reserves `len` bytes of disk for `file` without writing them, where the system can: a
/// later write into them cannot fail for want of space. Elsewhere this does nothing.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    match nix::fcntl::posix_fallocate(file, 0, len) {
        Ok(()) => Ok(()),
        // A file system that cannot preallocate just gets no reserve.
        Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL) => Ok(()),
        Err(errno) => Err(io::Error::from_raw_os_error(errno as i32)),
    }
}

/// Reserves `len` bytes of disk for `file` where the system can; not here.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn preallocate(_file: &File, _len: u64) -> io::Result<()> {
    Ok(())
}

/// How far behind the newest write a large file's pages are handed to the disk.
pub const WRITE_BEHIND: u64 = 4 << 20;

/// Streams a large file to the disk as it is written instead of leaving it all to the
/// next checkpoint's sync, and keeps the page cache from filling with a transfer's worth
/// of pages: `POSIX_FADV_DONTNEED` starts writeback of the dirty pages it is given and
/// drops the clean ones. Called as the file passes `mark`, it starts the newest window
/// and drops the one two windows back, written out by then. Durability is still claimed
/// only after a sync (the lock file); this only spreads the disk's work out. Where the
/// system has no such advice, it does nothing.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn write_behind(file: &File, mark: u64) {
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

/// Write-behind where the system offers it; not here.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn write_behind(_file: &File, _mark: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_and_folder_written_is_synced_and_a_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/data"), b"bytes").unwrap();
        let dir = Dir::open_path(root.path()).unwrap();
        let mut written = Written::default();
        written.files.insert("sub/data".into());
        written.files.insert("sub/renamed-since".into());
        written.dirs.insert("sub".into());
        written.dirs.insert(String::new());
        sync_each(&dir, &written).unwrap();

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", root.path().join("sub/link")).unwrap();
            let mut linked = Written::default();
            linked.files.insert("sub/link".into());
            let refused = sync_each(&dir, &linked).unwrap_err();
            assert!(refused.to_string().contains("symbolic link"), "{refused}");
        }
    }
}
