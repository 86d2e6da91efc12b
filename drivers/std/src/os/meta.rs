//! Permission bits, free space and file size limits of the file system being written.

use std::io;

use super::dir::Dir;

/// The permission bits a receiver may give what it creates: never setuid, setgid or
/// sticky from a peer, and never more than the user's umask allows (as `tar` does for
/// an ordinary user).
pub fn allowed_mode(mode: u32, umask: u32) -> u32 {
    mode & 0o777 & !umask
}

/// The process's umask, read without changing it where the system allows.
pub fn umask() -> u32 {
    // Linux shows it in /proc (since 4.7); reading it elsewhere means setting it, which
    // briefly affects other threads, so that is only the fallback.
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

/// Bytes an unprivileged writer can still store on the file system holding `dir`.
pub fn free_space(dir: &Dir) -> io::Result<u64> {
    let stat = nix::sys::statvfs::fstatvfs(dir.as_file())
        .map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
    #[allow(clippy::useless_conversion)] // the field types differ between systems
    let (blocks, size) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Ok(blocks.saturating_mul(size))
}

/// The largest file the file system holding `dir` can store, if it says (FAT's 4 GiB,
/// say); `None` when there is no practical limit or it cannot be told.
pub fn max_file_size(dir: &Dir) -> Option<u64> {
    use nix::unistd::{PathconfVar, fpathconf};
    let bits = fpathconf(dir.as_file(), PathconfVar::FILESIZEBITS).ok()??;
    max_size_for_bits(u32::try_from(bits).ok()?)
}

/// The largest size a file system stores in `bits` bits of file size (signed offsets
/// from 64 bits up, as POSIX `off_t`).
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
}
