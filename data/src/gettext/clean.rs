//! Which catalog messages make good translation examples, and how they are tidied.
//!
//! The rules, applied in this order (the first that fires names the skip reason):
//! 1. `plural`: messages with plural forms are left out. `msgstr[0]` is not the singular in
//!    every language (Arabic's form 0 is for zero), and plural messages carry counts whose
//!    wording depends on the number.
//! 2. `untranslated`: empty translation.
//! 3. `metadata`: not text but settings disguised as messages (`translator-credits`,
//!    `default:LTR`, `calendar:week_start:0`, …).
//! 4. `placeholders`: the translation must hold exactly the English placeholders — printf
//!    (`%s`, `%2$d`, `%(name)s`; a translation may reorder them by position), Qt (`%1`) and
//!    brace (`{0}`, `{name}`) — or the pair is left out: a model must learn to keep them.
//! 5. `accelerators`: keyboard accelerators (`_Open`, `&File`, CJK `開く(_O)`) are
//!    removed from both sides; a pair whose translation has a different number of them is
//!    left out. A marked word copied verbatim into the other side (`obey_child`, `AT&T`)
//!    is an identifier, not an accelerator, and is kept.
//! 6. `no_text`: the English has no letter outside its placeholders (`%s: %s`, `—`).
//! 7. `identical`: the translation equals the English (names, codes, untranslated copies).
//! 8. `too_long`: either side is longer than the cap (in characters).
//!
//! Both sides are trimmed of surrounding whitespace first; message contexts are dropped.

use super::mo::MoEntry;
use std::ops::Range;

/// Why a message is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    Plural,
    Untranslated,
    Metadata,
    Placeholders,
    Accelerators,
    NoText,
    Identical,
    TooLong,
}

impl Skip {
    pub const ALL: [Skip; 8] = [
        Skip::Plural,
        Skip::Untranslated,
        Skip::Metadata,
        Skip::Placeholders,
        Skip::Accelerators,
        Skip::NoText,
        Skip::Identical,
        Skip::TooLong,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Skip::Plural => "plural",
            Skip::Untranslated => "untranslated",
            Skip::Metadata => "metadata",
            Skip::Placeholders => "placeholders",
            Skip::Accelerators => "accelerators",
            Skip::NoText => "no_text",
            Skip::Identical => "identical",
            Skip::TooLong => "too_long",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Skip::Plural => "plural forms",
            Skip::Untranslated => "empty translation",
            Skip::Metadata => "settings, not text",
            Skip::Placeholders => "placeholders differ",
            Skip::Accelerators => "accelerators differ",
            Skip::NoText => "no letters in the English",
            Skip::Identical => "translation equals the English",
            Skip::TooLong => "longer than the length cap",
        }
    }
}

/// A message pair that passed every rule, tidied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub english: String,
    pub translation: String,
}

/// Applies the rules above to one catalog entry.
pub fn clean(entry: &MoEntry, max_chars: usize) -> Result<Pair, Skip> {
    if entry.msgid_plural.is_some() {
        return Err(Skip::Plural);
    }
    let english = entry.msgid.trim();
    let translation = entry.msgstr.first().map_or("", |s| s.trim());
    if translation.is_empty() {
        return Err(Skip::Untranslated);
    }
    if is_metadata(english) {
        return Err(Skip::Metadata);
    }
    if placeholders(english).0 != placeholders(translation).0 {
        return Err(Skip::Placeholders);
    }
    let (mut english, mut translation) = (english.to_string(), translation.to_string());
    for marker in ['_', '&'] {
        let en = accelerators(&english, marker, &translation);
        let tr = accelerators(&translation, marker, &english);
        match (en.as_slice(), tr.as_slice()) {
            // Several marks in the English: identifiers or markup, not a mnemonic.
            (en, _) if en.len() > 1 => {}
            ([], []) => {}
            ([e], tr) if tr.len() <= 1 => {
                if let Some(&t) = tr.first() {
                    translation = strip(&translation, t);
                }
                english = strip(&english, *e);
            }
            _ => return Err(Skip::Accelerators),
        }
    }
    if translation.is_empty() {
        return Err(Skip::Untranslated); // it was only an accelerator: `(_O)`
    }
    let spans = placeholders(&english).1;
    let english_letters = english
        .char_indices()
        .any(|(i, c)| c.is_alphabetic() && !spans.iter().any(|r| r.contains(&i)));
    if !english_letters {
        return Err(Skip::NoText);
    }
    if english == translation {
        return Err(Skip::Identical);
    }
    if english.chars().count() > max_chars || translation.chars().count() > max_chars {
        return Err(Skip::TooLong);
    }
    Ok(Pair {
        english,
        translation,
    })
}

/// Settings that programs store as translatable messages.
fn is_metadata(msgid: &str) -> bool {
    const KNOWN: [&str; 6] = [
        "translator-credits",
        "translator_credits",
        "TRANSLATOR-CREDITS",
        "NAME OF TRANSLATORS",
        "EMAIL OF TRANSLATORS",
        "Your emails",
    ];
    if KNOWN.contains(&msgid) {
        return true;
    }
    // `default:LTR`, `calendar:week_start:0`: a lowercase key, a colon, a value, no spaces.
    match msgid.split_once(':') {
        Some((key, value)) => {
            !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase())
                && !value.is_empty()
                && !value.ends_with(':')
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        None => false,
    }
}

/// A message's placeholders as comparable keys (sorted), and where they are (byte ranges).
///
/// printf conversions are keyed by argument — position (`%2$s`), name (`%(n)s`) or order —
/// so that `%s … %d` and `%2$d … %1$s` compare equal. `%%` is a literal; so is `% `
/// (the space flag is not recognised: `50% done` is prose, not a conversion).
pub fn placeholders(s: &str) -> (Vec<String>, Vec<Range<usize>>) {
    let b = s.as_bytes();
    let (mut keys, mut spans) = (Vec::new(), Vec::new());
    let mut next_arg = 1;
    let mut i = 0;
    while i < b.len() {
        let found = match b[i] {
            b'%' if b.get(i + 1) == Some(&b'%') => {
                i += 2;
                continue;
            }
            b'%' => printf_at(b, i, &mut next_arg),
            b'{' if b.get(i + 1) == Some(&b'{') => {
                i += 2;
                continue;
            }
            b'{' => brace_at(s, i),
            _ => None,
        };
        match found {
            Some((key, end)) => {
                keys.push(key);
                spans.push(i..end);
                i = end;
            }
            None => i += 1,
        }
    }
    keys.sort();
    (keys, spans)
}

/// The printf (or Qt `%N`) conversion starting at `b[at] == '%'`: its key and end.
fn printf_at(b: &[u8], at: usize, next_arg: &mut usize) -> Option<(String, usize)> {
    let mut i = at + 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        (*i > start).then(|| String::from_utf8_lossy(&b[start..*i]).into_owned())
    };
    let mut arg = None;
    if b.get(i) == Some(&b'(') {
        let close = b[i..].iter().position(|&c| c == b')')?;
        arg = Some(String::from_utf8_lossy(&b[i + 1..i + close]).into_owned());
        i += close + 1;
    }
    // `%1` not followed by `$`: Qt's placeholder, unless a printf conversion follows (`%1d`).
    let mut qt = None;
    if arg.is_none() {
        let start = i;
        if let Some(n) = digits(&mut i) {
            if b.get(i) == Some(&b'$') {
                arg = Some(n);
                i += 1;
            } else {
                qt = Some((format!("%{n}"), i));
                i = start; // the digits may be a width
            }
        }
    }
    let spec_start = i;
    while b.get(i).is_some_and(|c| b"-+#0'I".contains(c)) {
        i += 1;
    }
    if b.get(i) == Some(&b'*') {
        i += 1;
    } else {
        digits(&mut i);
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if b.get(i) == Some(&b'*') {
            i += 1;
        } else {
            digits(&mut i);
        }
    }
    for length in [
        &b"hh"[..],
        b"ll",
        b"I64",
        b"I32",
        b"h",
        b"l",
        b"L",
        b"q",
        b"j",
        b"z",
        b"Z",
        b"t",
    ] {
        if b[i..].starts_with(length) {
            i += length.len();
            break;
        }
    }
    if !b
        .get(i)
        .is_some_and(|c| b"diouxXeEfFgGaAcCsSpnm".contains(c))
    {
        return qt;
    }
    i += 1;
    let arg = arg.unwrap_or_else(|| {
        *next_arg += 1;
        (*next_arg - 1).to_string()
    });
    let spec = String::from_utf8_lossy(&b[spec_start..i]);
    Some((format!("%{arg}${spec}"), i))
}

/// The brace placeholder starting at `s[at] == '{'`: `{}`, `{0}`, `{name}`, `{0:>8}`.
fn brace_at(s: &str, at: usize) -> Option<(String, usize)> {
    let close = at + s[at..].find('}')?;
    let inner = &s[at + 1..close];
    let (name, spec) = inner.split_once(':').unwrap_or((inner, ""));
    let ok = name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !spec.contains('{');
    ok.then(|| (s[at..=close].to_string(), close + 1))
}

/// Byte offsets of the accelerator marks (`marker` before a letter or digit) in `s`.
/// Escapes (`__`, `&&`), placeholders, HTML entities (`&amp;`) and words that `other` has
/// too (identifiers such as `obey_child`) are not accelerators.
fn accelerators(s: &str, marker: char, other: &str) -> Vec<usize> {
    let spans = placeholders(s).1;
    let mut found = Vec::new();
    let mut prev = None;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let is_mark = c == marker
            && prev != Some(marker)
            && next.is_some_and(char::is_alphanumeric)
            && !spans.iter().any(|r| r.contains(&i))
            && !(marker == '&' && is_entity(&s[i..]))
            && !has_word(other, word_around(s, i));
        if is_mark {
            found.push(i);
        }
        prev = Some(c);
    }
    found
}

/// Whether `text` has `word` as one of its words, punctuation around them aside
/// (`g_unlink()` matches `g_unlink():`, `_New` does not match `_Newydd`).
fn has_word(text: &str, word: &str) -> bool {
    let core = |w: &str| {
        w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '&'))
            .to_string()
    };
    let word = core(word);
    text.split_whitespace().any(|w| core(w) == word)
}

/// `&amp;`, `&#169;`, `&#x2014;`.
fn is_entity(s: &str) -> bool {
    let body: String = s[1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '#')
        .collect();
    !body.is_empty() && s[1 + body.len()..].starts_with(';')
}

/// The whitespace-delimited word of `s` containing byte `i`.
fn word_around(s: &str, i: usize) -> &str {
    let start = s[..i]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(p, c)| p + c.len_utf8());
    let end = s[i..].find(char::is_whitespace).map_or(s.len(), |p| i + p);
    &s[start..end]
}

/// `s` without the accelerator mark at byte `i`; a CJK-style `(_O)` goes entirely, with the
/// space before it.
fn strip(s: &str, i: usize) -> String {
    let b = s.as_bytes();
    let next_len = s[i + 1..].chars().next().map_or(0, char::len_utf8);
    if i > 0 && b[i - 1] == b'(' && b.get(i + 1 + next_len) == Some(&b')') {
        let before = s[..i - 1].trim_end();
        return format!("{before}{}", &s[i + 2 + next_len..]);
    }
    format!("{}{}", &s[..i], &s[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mo(id: &str, s: &str) -> MoEntry {
        MoEntry {
            context: None,
            msgid: id.into(),
            msgid_plural: None,
            msgstr: vec![s.into()],
        }
    }

    fn kept(id: &str, s: &str) -> (String, String) {
        let pair = clean(&mo(id, s), 1000).unwrap_or_else(|skip| panic!("{id:?} → {skip:?}"));
        (pair.english, pair.translation)
    }

    fn skipped(id: &str, s: &str) -> Skip {
        clean(&mo(id, s), 1000).expect_err(id)
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    #[test]
    fn plain_messages_are_kept_trimmed() {
        assert_eq!(
            kept("Open file", "Agor ffeil"),
            pair("Open file", "Agor ffeil")
        );
        assert_eq!(kept("  Usage:\n", "Defnydd:\n"), pair("Usage:", "Defnydd:"));
    }

    #[test]
    fn plurals_untranslated_identical_and_long_messages_are_skipped() {
        let plural = MoEntry {
            context: None,
            msgid: "%d file".into(),
            msgid_plural: Some("%d files".into()),
            msgstr: vec!["%d ffeil".into(), "%d ffeil".into()],
        };
        assert_eq!(clean(&plural, 1000), Err(Skip::Plural));
        assert_eq!(skipped("Open", ""), Skip::Untranslated);
        assert_eq!(skipped("Open", "  "), Skip::Untranslated);
        assert_eq!(skipped("GNOME", "GNOME"), Skip::Identical);
        assert_eq!(skipped("_OK", "_OK"), Skip::Identical);
        assert_eq!(skipped("%s: %s", "%s: %s"), Skip::NoText);
        assert_eq!(skipped("—", "–"), Skip::NoText);
        let long = "word ".repeat(10);
        assert_eq!(clean(&mo(&long, "gair"), 20), Err(Skip::TooLong));
        assert_eq!(clean(&mo("word", &long), 20), Err(Skip::TooLong));
        assert!(
            clean(&mo("word", "gair"), 4).is_ok(),
            "the cap is inclusive"
        );
    }

    #[test]
    fn settings_disguised_as_messages_are_skipped() {
        for id in [
            "translator-credits",
            "default:LTR",
            "calendar:week_start:0",
            "calendar:MY",
        ] {
            assert_eq!(skipped(id, "x y"), Skip::Metadata, "{id}");
        }
        assert_eq!(kept("Error:", "Gwall:"), pair("Error:", "Gwall:"));
        assert_eq!(kept("note: %s", "nodyn: %s"), pair("note: %s", "nodyn: %s"));
    }

    #[test]
    fn placeholders_must_match_exactly() {
        let ok = [
            ("Cannot open %s", "Methu agor %s"),
            ("%s of %d", "%2$d o %1$s"),
            ("Name: %-10s size: %5.2f", "Enw: %-10s maint: %5.2f"),
            ("Copied %1.", "Copïwyd %1."),
            ("File %(name)s missing", "Ffeil %(name)s ar goll"),
            ("%1 of %2", "%2 o %1"),
            ("Hello {0}, {name}!", "Helo {name}, {0}!"),
            ("100% done", "100% wedi gorffen"),
            ("50%% of %lu", "50%% o %lu"),
            ("Use {{braces}}", "Defnyddiwch {{cromfachau}}"),
        ];
        for (en, tr) in ok {
            assert_eq!(kept(en, tr), pair(en, tr));
        }
        let bad = [
            ("Cannot open %s", "Methu agor"),
            ("Cannot open %s", "Methu agor %d"),
            ("%s of %d", "%1$d o %2$s"),
            ("%-10s|%5.2f", "%5.2f|%-10s"),
            ("%ld bytes", "%d beit"),
            ("File %(name)s", "Ffeil %(enw)s"),
            ("Hello {0}", "Helo {1}"),
            ("%1 of %2", "%1 o %1"),
            ("Open", "Agor %s"),
        ];
        for (en, tr) in bad {
            assert_eq!(skipped(en, tr), Skip::Placeholders, "{en} / {tr}");
        }
    }

    #[test]
    fn placeholder_keys_follow_arguments_not_text_order() {
        assert_eq!(placeholders("%s %d").0, placeholders("%2$d %1$s").0);
        assert_eq!(placeholders("%s and %s").0, ["%1$s", "%2$s"]);
        assert_eq!(placeholders("{0} is {x:>4}").0, ["{0}", "{x:>4}"]);
        assert!(placeholders("50% off, { not one }, %").0.is_empty());
        assert_eq!(placeholders("at %s").1, vec![3..5]);
    }

    #[test]
    fn accelerators_are_stripped_from_both_sides() {
        assert_eq!(kept("_Open", "_Agor"), pair("Open", "Agor"));
        assert_eq!(
            kept("Save _As…", "Cadw _Fel…"),
            pair("Save As…", "Cadw Fel…")
        );
        assert_eq!(kept("C_ollate", "Cyd_drefnu"), pair("Collate", "Cyddrefnu"));
        assert_eq!(kept("&File", "&Ffeil"), pair("File", "Ffeil"));
        assert_eq!(kept("_Open", "開く(_O)"), pair("Open", "開く"));
        assert_eq!(kept("_Open…", "開く (_O)…"), pair("Open…", "開く…"));
        assert_eq!(
            kept("_Quit", "Gadael"),
            pair("Quit", "Gadael"),
            "translator dropped it"
        );
        assert_eq!(
            kept("_New", "_Newydd"),
            pair("New", "Newydd"),
            "a prefix is another word"
        );
    }

    #[test]
    fn identifiers_entities_and_escapes_are_not_accelerators() {
        let same = [
            (
                "Aspect ratio if obey_child is FALSE",
                "Cymhareb agwedd os yw obey_child yn FALSE",
            ),
            ("Call g_io_channel_read_line", "Galw g_io_channel_read_line"),
            ("AT&T modem", "Modem AT&T"),
            ("Fish &amp; chips", "Pysgod &amp; sglodion"),
            ("Use __init__ here", "Defnyddiwch __init__ yma"),
            ("Value of %(max_len)s", "Gwerth %(max_len)s"),
            ("g_unlink() failed: %s", "methodd g_unlink(): %s"),
            (
                "Shows GTK_TOOLBAR_BOTH_HORIZ mode.",
                "Yn y modd GTK_TOOLBAR_BOTH_HORIZ.",
            ),
        ];
        for (en, tr) in same {
            assert_eq!(kept(en, tr), pair(en, tr));
        }
    }

    #[test]
    fn multibyte_text_around_marks_is_handled() {
        // A no-break space before the word (Walloon's catalogs have them).
        assert_eq!(
            kept("Paper _type:", "Ridant d'\u{a0}re_xhowe do papî:"),
            pair("Paper type:", "Ridant d'\u{a0}rexhowe do papî:")
        );
        assert_eq!(
            kept("_Edit", "編集(_É)"),
            pair("Edit", "編集"),
            "all of `(_É)` goes"
        );
        for s in [
            "é_",
            "_\u{a0}",
            "&é;",
            "\u{a0}&#;",
            "(_\u{1F600})",
            "{é",
            "%(é",
            "%1\u{a0}",
        ] {
            let _ = clean(&mo(s, "x"), 1000);
            let _ = clean(&mo("x", s), 1000);
        }
    }

    #[test]
    fn mismatched_accelerators_skip_the_pair() {
        assert_eq!(skipped("Open", "_Agor"), Skip::Accelerators);
        assert_eq!(skipped("_Open", "_Agor _ffeil"), Skip::Accelerators);
    }
}
