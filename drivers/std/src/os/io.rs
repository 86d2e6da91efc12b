//! Reading and writing at an offset without moving a shared cursor: `pread`/`pwrite` on
//! Unix, `seek_read`/`seek_write` on Windows; waiting out another program's write.

use std::fs::File;
use std::io;

/// Reads into `buf` from `offset`; returns the bytes read (0 at the end).
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::read_at(file, buf, offset);
    #[cfg(windows)]
    return std::os::windows::fs::FileExt::seek_read(file, buf, offset);
}

/// Writes all of `data` at `offset`.
pub fn write_all_at(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::write_at(file, data, offset);
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_write(file, data, offset);
        match n {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills as much of `buf` as the file holds from `offset`; returns how much that is.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_at(file, &mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Waits until a `write` another program has under way on `file` is done, where the system
/// allows it. A file's mtime changes as a write begins, before its bytes land: a read that
/// follows could catch the write half done, and the mtime, changing no more, would pass the
/// torn bytes as the file. On Linux, ext4, tmpfs, btrfs and overlayfs hold the file's inode
/// lock through each `write` call, and looking for the file's first hole takes that lock.
/// Elsewhere (XFS, NFS, FUSE, other systems, and for a program that rewrites a file in many
/// writes once a coarse mtime stops telling them apart) a change is seen only as the mtime
/// moves, as with rsync. The wait is as long as the write: with `--receivers`, on the event
/// loop's thread, every session waits for it (a retry is rare, a write short).
pub fn wait_for_write_under_way(file: &File) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // Only the wait matters: a file system without holes answers all the same.
    let _ = nix::unistd::lseek(file, 0, nix::unistd::Whence::SeekHole);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = file;
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::time::{Duration, SystemTime};

    /// Another program rewrites a whole file in one `write`; the moment its mtime shows it,
    /// the wait lets the write finish, so the file's last byte is already the new one.
    #[test]
    fn a_write_seen_under_way_is_waited_out_before_the_file_is_read() {
        const SIZE: usize = 128 << 20;
        let dir = tempfile::tempdir().unwrap();
        // Only where writes hold the lock the wait takes (not XFS, NFS, FUSE).
        use nix::sys::statfs::{
            BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, statfs,
        };
        let kind = statfs(dir.path()).unwrap().filesystem_type();
        if ![
            EXT4_SUPER_MAGIC,
            TMPFS_MAGIC,
            BTRFS_SUPER_MAGIC,
            OVERLAYFS_SUPER_MAGIC,
        ]
        .contains(&kind)
        {
            eprintln!("SKIPPED: {kind:?} does not hold a file's lock through a write");
            return;
        }
        let path = dir.path().join("changing.bin");
        let file = File::create(&path).unwrap();
        file.set_len(SIZE as u64).unwrap();
        // An old mtime, so that the write's shows even within one tick of a coarse clock.
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
        let stamp = |file: &File| {
            let meta = file.metadata().unwrap();
            (meta.mtime(), meta.mtime_nsec())
        };
        let before = stamp(&file);
        let reader = File::open(&path).unwrap();
        let writer = std::thread::spawn(move || file.write_all_at(&vec![0x17; SIZE], 0));
        while stamp(&reader) == before {
            std::hint::spin_loop();
        }
        wait_for_write_under_way(&reader);
        let mut last = [0u8];
        read_full_at(&reader, &mut last, SIZE as u64 - 1).unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(last, [0x17], "read the file while the write was under way");
    }
}
