//! The bits of Python's `str` that sacrebleu's definitions rest on: `str.split()` and
//! `str.rstrip()` cut at Python's whitespace, which is Unicode's `White_Space` (Rust's
//! `char::is_whitespace`) plus the four ASCII separators U+001C–U+001F.

/// `c.isspace()` in Python 3.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.split()`: the non-empty runs between whitespace.
pub fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// `s.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_pythons() {
        // `[hex(c) for c in range(0x110000) if chr(c).isspace()]` in CPython 3.11.
        let python: Vec<u32> = [
            0x9..=0xd,
            0x1c..=0x20,
            0x85..=0x85,
            0xa0..=0xa0,
            0x1680..=0x1680,
            0x2000..=0x200a,
            0x2028..=0x2029,
            0x202f..=0x202f,
            0x205f..=0x205f,
            0x3000..=0x3000,
        ]
        .into_iter()
        .flatten()
        .collect();
        let ours: Vec<u32> = (0..=0x10ffffu32)
            .filter_map(char::from_u32)
            .filter(|&c| is_space(c))
            .map(|c| c as u32)
            .collect();
        assert_eq!(ours, python);
        assert_eq!(
            split(" a\u{1f}b\u{3000}\u{a0}c \n").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(rstrip("x \u{1c}\t"), "x");
    }
}
