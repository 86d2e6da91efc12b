//! Permission bits, times, free space and file size limits: what files carry besides their
//! bytes, and what the file system being written can hold.

use std::fs::{File, Metadata};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::dir::Dir;

/// The permission bits a receiver may give what it creates: never setuid, setgid or
/// sticky from a peer, and never more than the user's umask allows (as `tar` does for
/// an ordinary user).
pub fn allowed_mode(mode: u32, umask: u32) -> u32 {
    mode & 0o777 & !umask
}

/// Gives an open file or directory the permission bits `mode` (Unix; Windows keeps no
/// such bits, and the README says so).
pub fn apply_mode(file: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }
    #[cfg(windows)]
    {
        let _ = (file, mode);
        Ok(())
    }
}

/// Gives a directory the modification time its sender had: once everything inside it is
/// in place, or the names created in it would move the time again. (Windows: best
/// effort; a directory handle opened for reading may not set times.)
pub fn apply_dir_mtime(dir: &File, mtime_ns: i64) -> io::Result<()> {
    let set = dir.set_modified(time_from_ns(mtime_ns));
    if cfg!(windows) { Ok(()) } else { set }
}

/// The permission bits to send for a file or directory (Windows: the usual 0644 / 0755).
pub fn mode_of(meta: &Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    }
    #[cfg(windows)]
    {
        if meta.is_dir() { 0o755 } else { 0o644 }
    }
}

/// A file's modification time in nanoseconds since the Unix epoch, as the manifest
/// carries it: clamped to the years 1677–2262 that 64 bits of nanoseconds hold.
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.modified().map_or(0, ns_from_time)
}

/// `time` in nanoseconds since the Unix epoch (negative before it), clamped as
/// [`mtime_ns`] is.
pub fn ns_from_time(time: SystemTime) -> i64 {
    let clamp = |ns: u128| i64::try_from(ns).unwrap_or(i64::MAX);
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => clamp(since.as_nanos()),
        Err(before) => -clamp(before.duration().as_nanos()),
    }
}

/// The time `ns` nanoseconds after (or, negative, before) the Unix epoch.
pub fn time_from_ns(ns: i64) -> SystemTime {
    let span = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + span
    } else {
        UNIX_EPOCH - span
    }
}

/// True if the file has other names (hard links) besides the one it was opened by.
pub fn other_links(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink() > 1
    }
    #[cfg(windows)]
    {
        let _ = meta;
        false
    }
}

/// The process's umask, read without changing it where the system allows (0 on Windows).
pub fn umask() -> u32 {
    #[cfg(unix)]
    {
        // Linux shows it in /proc (since 4.7); reading it elsewhere means setting it,
        // which briefly affects other threads, so that is only the fallback.
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(value) = status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        {
            return value;
        }
        use nix::sys::stat::{Mode, umask};
        let old = umask(Mode::from_bits_truncate(0o077));
        umask(old);
        #[allow(clippy::useless_conversion)] // mode_t is narrower on some systems
        u32::from(old.bits())
    }
    #[cfg(windows)]
    0
}

/// Bytes an unprivileged writer can still store on the file system holding `dir`;
/// `None` where the system does not say (Windows, without its own API here).
pub fn free_space(dir: &Dir) -> io::Result<Option<u64>> {
    #[cfg(unix)]
    {
        let stat = nix::sys::statvfs::fstatvfs(dir.as_file())
            .map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
        #[allow(clippy::useless_conversion)] // the field types differ between systems
        let (blocks, size) = (
            u64::from(stat.blocks_available()),
            u64::from(stat.fragment_size()),
        );
        Ok(Some(blocks.saturating_mul(size)))
    }
    #[cfg(windows)]
    {
        let _ = dir;
        Ok(None)
    }
}

/// The largest file the file system holding `dir` can store, if it says (FAT's 4 GiB,
/// say); `None` when there is no practical limit or it cannot be told.
pub fn max_file_size(dir: &Dir) -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::sys::statfs::{MSDOS_SUPER_MAGIC, fstatfs};
        use nix::unistd::{PathconfVar, fpathconf};
        let bits = fpathconf(dir.as_file(), PathconfVar::FILESIZEBITS).ok()??;
        let bits = u32::try_from(bits).ok()?;
        // glibc answers 32 for every file system it has no entry for (tmpfs, overlayfs
        // in a container, ZFS, NFS, exFAT): of those only FAT stops at 4 GiB.
        if bits <= 32 && fstatfs(dir.as_file()).ok()?.filesystem_type() != MSDOS_SUPER_MAGIC {
            return None;
        }
        max_size_for_bits(bits)
    }
    #[cfg(target_os = "freebsd")]
    {
        // The kernel answers for each file system itself.
        use nix::unistd::{PathconfVar, fpathconf};
        let bits = fpathconf(dir.as_file(), PathconfVar::FILESIZEBITS).ok()??;
        max_size_for_bits(u32::try_from(bits).ok()?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let _ = dir;
        None
    }
}

/// The largest size a file system stores in `bits` bits of file size (signed offsets
/// from 64 bits up, as POSIX `off_t`).
#[cfg_attr(
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
    allow(dead_code)
)]
fn max_size_for_bits(bits: u32) -> Option<u64> {
    match bits {
        0 => None,
        1..=63 => Some((1u64 << bits) - 1),
        _ => Some(i64::MAX as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_never_set_special_bits_and_the_umask_applies() {
        assert_eq!(allowed_mode(0o4755, 0o022), 0o755);
        assert_eq!(allowed_mode(0o1777, 0o022), 0o755);
        assert_eq!(allowed_mode(0o2750, 0), 0o750);
        assert_eq!(allowed_mode(0o666, 0o077), 0o600);
    }

    #[test]
    fn file_size_limits_follow_the_bits_a_file_system_reports() {
        assert_eq!(max_size_for_bits(32), Some(u32::MAX as u64));
        assert_eq!(max_size_for_bits(64), Some(i64::MAX as u64));
        assert_eq!(max_size_for_bits(0), None);
    }

    /// tmpfs (and overlayfs, a container's root) hold files far past 4 GiB, though glibc
    /// says 32 bits for any file system it has no entry for.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_tmpfs_takes_files_past_4_gib() {
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("SKIPPED: no /dev/shm here");
            return;
        };
        let limit = max_file_size(&Dir::open_path(dir.path()).unwrap());
        assert!(limit.is_none_or(|l| l >= 1 << 40), "{limit:?}");
    }
}
