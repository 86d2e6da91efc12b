//! Text that came from the peer, made safe to show: a reason in a `CANCEL` or `DECLINE`
//! is printed on the user's terminal, so none of its characters may act on it.

/// The most characters of peer text that are shown; the rest is cut, with `…`.
pub const SHOWN_CHARS: usize = 200;

/// `text` as it may be shown: control characters (C0, DEL, C1) escaped as `\x1b`, the
/// invisible characters that reorder or hide text (bidirectional overrides, zero-width
/// joiners) as `\u{202e}`, and cut to [`SHOWN_CHARS`] characters.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4 * SHOWN_CHARS));
    for (count, c) in text.chars().enumerate() {
        if count == SHOWN_CHARS {
            out.push('…');
            break;
        }
        let code = u32::from(c);
        if c.is_control() {
            out.push_str(&format!("\\x{code:02x}"));
        } else if invisible(c) {
            out.push_str(&format!("\\u{{{code:x}}}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Format characters that change how the text around them is displayed.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_leave_no_byte_that_acts_on_a_terminal() {
        let hostile =
            "red \x1b[31mtitle\x1b]0;pwned\x07 bell\x07 c1 \u{9b}2J del\x7f rtl \u{202e}txt";
        let safe = shown(hostile);
        assert!(!safe.bytes().any(|b| b < 0x20 || b == 0x7f), "{safe:?}");
        assert!(!safe.contains('\u{9b}') && !safe.contains('\u{202e}'));
        assert!(
            safe.starts_with("red \\x1b[31mtitle\\x1b]0;pwned\\x07"),
            "{safe}"
        );
        assert!(safe.contains("\\u{202e}txt"), "{safe}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(SHOWN_CHARS + 50);
        let safe = shown(&long);
        assert_eq!(safe.chars().count(), SHOWN_CHARS + 1);
        assert!(safe.ends_with('…'));
        assert_eq!(shown("plain words"), "plain words");
    }
}
