//! Names a file system cannot hold though the protocol allows them. Windows refuses
//! device names (`CON`, `NUL`, `aux.txt`, ...), names ending in a dot or a space, and the
//! characters `<>:"|?*`; a receiver there refuses such an entry by name before any data
//! moves, rather than failing when it gets to it. The rules are plain code, so that they
//! are tested on every system.

/// Why `path` cannot be created on this system, if it cannot (only Windows refuses names
/// the protocol allows).
pub fn problem_here(path: &str) -> Option<&'static str> {
    if cfg!(windows) {
        windows_problem(path)
    } else {
        None
    }
}

/// Why `path` (a manifest path, `/`-separated) cannot be created on Windows, if it cannot.
pub fn windows_problem(path: &str) -> Option<&'static str> {
    path.split('/').find_map(windows_name_problem)
}

/// Why one path component cannot be a file or directory name on Windows.
fn windows_name_problem(name: &str) -> Option<&'static str> {
    if name
        .chars()
        .any(|c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'))
    {
        return Some("Windows file names cannot hold < > : \" | ? *");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("Windows file names cannot end with a dot or a space");
    }
    // A device name stays one with any extension ("aux.txt") and trailing spaces.
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    let device = matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || (upper.len() == 4
        && (upper.starts_with("COM") || upper.starts_with("LPT"))
        && matches!(upper.as_bytes()[3], b'1'..=b'9'))
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && matches!(&stem[3..], "\u{b9}" | "\u{b2}" | "\u{b3}"));
    device.then_some("this is a Windows device name (CON, NUL, COM1, ...)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_device_names_are_refused_with_any_extension_and_case() {
        for name in [
            "CON",
            "con",
            "Nul",
            "aux.txt",
            "PRN.tar.gz",
            "com1",
            "LPT9.log",
            "CONIN$",
            "nul .txt",
            "COM\u{b9}",
        ] {
            assert!(windows_problem(name).is_some(), "{name}");
            assert!(
                windows_problem(&format!("dir/{name}")).is_some(),
                "dir/{name}"
            );
        }
        for name in [
            "console",
            "auxiliary.txt",
            "com0",
            "lpt10",
            "nul2",
            "CONFIG.SYS",
            "comma",
        ] {
            assert_eq!(windows_problem(name), None, "{name}");
        }
    }

    #[test]
    fn trailing_dots_and_spaces_are_refused() {
        for name in ["name.", "name ", "dir./file", "dir /file", "..."] {
            assert!(windows_problem(name).is_some(), "{name}");
        }
        assert_eq!(windows_problem(".hidden"), None);
        assert_eq!(windows_problem("a b.txt"), None);
    }

    #[test]
    fn reserved_characters_are_refused_anywhere_in_the_path() {
        for name in [
            "a:b",
            "C:stream",
            "what?",
            "star*",
            "pipe|",
            "<angle>",
            "quote\"",
            "d:/x/y",
            "dir/alt:stream",
        ] {
            assert!(windows_problem(name).is_some(), "{name}");
        }
        assert_eq!(
            windows_problem("plain/name-with_punctuation,+=[]{}()!@#$%^&'.txt"),
            None
        );
    }
}
