//! Making written data durable, and streaming large files to the disk as they are written.

use std::fs::File;
use std::io;

use super::dir::Dir;

/// Makes everything written on the file system holding `dir` durable: one `syncfs` for
/// the whole file system rather than one `fsync` per file written.
pub fn sync_filesystem(dir: &Dir) -> io::Result<()> {
    nix::unistd::syncfs(dir.as_file()).map_err(|errno| io::Error::from_raw_os_error(errno as i32))
}

/// Reserves `len` bytes of disk for `file` without writing them, where the system can: a
/// later write into them cannot fail for want of space. Elsewhere this does nothing.
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    match nix::fcntl::posix_fallocate(file, 0, len) {
        Ok(()) => Ok(()),
        // A file system that cannot preallocate just gets no reserve.
        Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL) => Ok(()),
        Err(errno) => Err(io::Error::from_raw_os_error(errno as i32)),
    }
}

/// How far behind the newest write a large file's pages are handed to the disk.
pub const WRITE_BEHIND: u64 = 4 << 20;

/// Streams a large file to the disk as it is written instead of leaving it all to the
/// next checkpoint's sync, and keeps the page cache from filling with a transfer's worth
/// of pages: `POSIX_FADV_DONTNEED` starts writeback of the dirty pages it is given and
/// drops the clean ones. Called as the file passes `mark`, it starts the newest window
/// and drops the one two windows back, written out by then. Durability is still claimed
/// only after a sync (the lock file); this only spreads the disk's work out.
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
