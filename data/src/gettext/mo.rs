//! Reading compiled gettext catalogs (`.mo`), the format `msgfmt` writes and every program
//! using gettext reads at run time.
//!
//! Layout (GNU gettext manual, "The Format of GNU MO Files"): a header of 32-bit words —
//! magic `0x950412de` (written in the producer's byte order, so read in either), revision,
//! N (string count), offset of the original-string table, offset of the translation table —
//! then two tables of N `(length, offset)` pairs pointing at NUL-terminated strings. A
//! message context precedes its msgid, separated by `\x04`; a plural msgid is
//! `singular\0plural` and its msgstr the forms separated by `\0`. The entry with an empty
//! msgid is the header, whose `Content-Type` names the charset.
//!
//! Only the N static strings are read: revision 1's system-dependent strings (those using
//! `<PRIu64>`-style macros) are left out. The hash table is not needed to list entries.

use crate::error::{DataError, Result};
use std::path::Path;

/// The magic number, as read in the file's own byte order.
const MAGIC: u32 = 0x9504_12de;
/// Magic, revision, N, original table offset, translation table offset, hash size, hash offset.
const HEADER_BYTES: usize = 28;

/// One message of a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoEntry {
    /// `msgctxt`, when the message has one.
    pub context: Option<String>,
    pub msgid: String,
    /// `msgid_plural`, for a message with plural forms.
    pub msgid_plural: Option<String>,
    /// `msgstr`, or `msgstr[0]`, `msgstr[1]`, … for a plural message.
    pub msgstr: Vec<String>,
}

/// A whole catalog: its messages (header entry excluded) and the charset it declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoCatalog {
    /// As declared in the header (`UTF-8` when there is none); the strings are decoded.
    pub charset: String,
    pub entries: Vec<MoEntry>,
}

/// Why a catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MoError {
    /// Not a `.mo` file, or a damaged one.
    #[error("{0}")]
    Corrupt(DataError),
    /// A valid catalog in a charset loam does not convert.
    #[error("{0}")]
    Charset(DataError),
}

impl From<MoError> for DataError {
    fn from(e: MoError) -> DataError {
        match e {
            MoError::Corrupt(e) | MoError::Charset(e) => e,
        }
    }
}

/// Reads and parses the catalog at `path`.
pub fn read(path: &Path) -> Result<MoCatalog, MoError> {
    let bytes = std::fs::read(path).map_err(|e| {
        MoError::Corrupt(DataError::file(
            path,
            format!("cannot read: {e}"),
            "check that the file exists and is readable",
        ))
    })?;
    parse(&bytes, path)
}

/// Parses the bytes of a `.mo` file; `path` only names it in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<MoCatalog, MoError> {
    let corrupt = |what: String| {
        MoError::Corrupt(DataError::file(
            path,
            what,
            "recompile it from its .po file (`msgfmt -o FILE.mo FILE.po`), or leave it out",
        ))
    };
    let truncated = || {
        corrupt(format!(
            "truncated: {} bytes, shorter than a .mo header ({HEADER_BYTES} bytes)",
            bytes.len()
        ))
    };
    let magic: [u8; 4] = bytes.get(..4).ok_or_else(truncated)?.try_into().unwrap();
    let le = match u32::from_le_bytes(magic) {
        MAGIC => true,
        m if m.swap_bytes() == MAGIC => false,
        m => return Err(MoError::Corrupt(DataError::file(
            path,
            format!("not a gettext .mo file (magic 0x{m:08x}, expected 0x{MAGIC:08x})"),
            "pass compiled catalogs (.mo); a .po source compiles with `msgfmt -o FILE.mo FILE.po`",
        ))),
    };
    if bytes.len() < HEADER_BYTES {
        return Err(truncated());
    }
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        } as usize)
    };
    let revision = word(4).unwrap_or_default();
    if revision >> 16 > 1 {
        return Err(corrupt(format!(
            "unsupported .mo revision {}.{} (loam reads major revisions 0 and 1)",
            revision >> 16,
            revision & 0xffff
        )));
    }
    let (n, originals, translations) = (
        word(8).unwrap_or_default(),
        word(12).unwrap_or_default(),
        word(16).unwrap_or_default(),
    );
    // The string at index `i` of the table at `table`, as bytes without its NUL.
    let string = |table: usize, i: usize, which: &str| -> Result<&[u8], MoError> {
        let slot = i.checked_mul(8).and_then(|o| o.checked_add(table));
        let (len, off) = match slot.and_then(|s| Some((word(s)?, word(s.checked_add(4)?)?))) {
            Some(entry) => entry,
            None => {
                return Err(corrupt(format!(
                    "truncated: the {which} table (offset {table}, {n} entries) runs past the end of the file ({} bytes)",
                    bytes.len()
                )))
            }
        };
        // The string and its terminating NUL must lie inside the file.
        off.checked_add(len)
            .filter(|&end| end < bytes.len())
            .map(|end| &bytes[off..end])
            .ok_or_else(|| {
                corrupt(format!(
                    "truncated: {which} string {i} (offset {off}, {len} bytes) runs past the end of the file ({} bytes)",
                    bytes.len()
                ))
            })
    };
    let mut raw = Vec::with_capacity(n.min(bytes.len() / 16));
    for i in 0..n {
        raw.push((
            string(originals, i, "original")?,
            string(translations, i, "translation")?,
        ));
    }

    let header = raw.iter().find(|(id, _)| id.is_empty()).map(|(_, s)| *s);
    let charset = header.and_then(declared_charset);
    let decode = Decoder::for_charset(charset.as_deref()).ok_or_else(|| {
        MoError::Charset(DataError::file(
            path,
            format!(
                "charset {} is not supported (loam reads UTF-8, ASCII, ISO-8859-1 and ISO-8859-15)",
                charset.as_deref().unwrap_or_default()
            ),
            "convert the catalog: `msgunfmt FILE.mo | msgconv -t UTF-8 | msgfmt -o FILE.utf8.mo -`",
        ))
    })?;
    let text = |b: &[u8], i: usize| -> Result<String, MoError> {
        decode.decode(b).ok_or_else(|| {
            corrupt(format!(
                "string {i} is not valid {} although the catalog declares it",
                decode.name()
            ))
        })
    };

    let mut entries = Vec::with_capacity(raw.len());
    for (i, (id, s)) in raw.into_iter().enumerate() {
        if id.is_empty() {
            continue;
        }
        let (context, id) = match id.iter().position(|&b| b == 0x04) {
            Some(p) => (Some(text(&id[..p], i)?), &id[p + 1..]),
            None => (None, id),
        };
        let (msgid, msgid_plural) = match id.iter().position(|&b| b == 0) {
            Some(p) => (text(&id[..p], i)?, Some(text(&id[p + 1..], i)?)),
            None => (text(id, i)?, None),
        };
        let msgstr = s
            .split(|&b| b == 0)
            .map(|form| text(form, i))
            .collect::<Result<Vec<_>, _>>()?;
        entries.push(MoEntry {
            context,
            msgid,
            msgid_plural,
            msgstr,
        });
    }
    Ok(MoCatalog {
        charset: charset.unwrap_or_else(|| "UTF-8".into()),
        entries,
    })
}

/// `charset=` of the header's `Content-Type` line, if any.
fn declared_charset(header: &[u8]) -> Option<String> {
    let header = String::from_utf8_lossy(header);
    let line = header
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))?;
    let at = line.to_ascii_lowercase().find("charset=")? + "charset=".len();
    let value: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';')
        .collect();
    (!value.is_empty()).then_some(value)
}

/// The charsets read: UTF-8 (and its subset ASCII) as is; the two Latin ones by table.
#[derive(Debug, Clone, Copy)]
enum Decoder {
    Utf8,
    Latin1,
    Latin9,
}

impl Decoder {
    fn for_charset(charset: Option<&str>) -> Option<Decoder> {
        let Some(charset) = charset else {
            return Some(Decoder::Utf8);
        };
        let key: String = charset
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match key.as_str() {
            // `CHARSET` is the placeholder of an unfilled .po template: msgfmt treats it as ASCII.
            "utf8" | "ascii" | "usascii" | "ansix341968" | "charset" => Some(Decoder::Utf8),
            "iso88591" | "latin1" => Some(Decoder::Latin1),
            "iso885915" | "latin9" => Some(Decoder::Latin9),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Decoder::Utf8 => "UTF-8",
            Decoder::Latin1 => "ISO-8859-1",
            Decoder::Latin9 => "ISO-8859-15",
        }
    }

    fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Decoder::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_string),
            Decoder::Latin1 => Some(bytes.iter().map(|&b| b as char).collect()),
            // ISO-8859-15 is ISO-8859-1 with eight code points replaced.
            Decoder::Latin9 => Some(
                bytes
                    .iter()
                    .map(|&b| match b {
                        0xa4 => '€',
                        0xa6 => 'Š',
                        0xa8 => 'š',
                        0xb4 => 'Ž',
                        0xb8 => 'ž',
                        0xbc => 'Œ',
                        0xbd => 'œ',
                        0xbe => 'Ÿ',
                        b => b as char,
                    })
                    .collect(),
            ),
        }
    }
}

/// The smallest valid `.mo` holding `entries` (`(msgid, msgstr)` with the raw `\x04` and
/// `\0` separators, sorted as msgfmt sorts them; no hash table), in either byte order. For
/// tests and fixtures.
pub fn write(entries: &[(&[u8], &[u8])], big_endian: bool) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort();
    let n = sorted.len();
    let originals = HEADER_BYTES;
    let translations = originals + 8 * n;
    let mut strings_at = translations + 8 * n;
    let mut tables = Vec::new();
    let mut strings = Vec::new();
    for column in [0, 1] {
        for entry in &sorted {
            let s = if column == 0 { entry.0 } else { entry.1 };
            tables.push((s.len() as u32, strings_at as u32));
            strings.extend_from_slice(s);
            strings.push(0);
            strings_at += s.len() + 1;
        }
    }
    let header = [
        MAGIC,
        0,
        n as u32,
        originals as u32,
        translations as u32,
        0,
        0,
    ];
    let words = header
        .into_iter()
        .chain(tables.into_iter().flat_map(|(len, off)| [len, off]));
    let mut out: Vec<u8> = words
        .flat_map(|w| {
            if big_endian {
                w.to_be_bytes()
            } else {
                w.to_le_bytes()
            }
        })
        .collect();
    out.extend_from_slice(&strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `msgfmt --no-hash` (GNU gettext 0.21) writes for a catalog with a header, a plain
    /// message, a message with a context and a plural message; little- and big-endian.
    const MSGFMT_LE: &str = "de12049500000000040000001c0000003c000000000000005c000000000000005c000000100000005d000000040000006e0000000900000073000000280000007d00000011000000a600000004000000b800000003000000bd0000000025642066696c650025642066696c6573004f70656e006d6f6e7468044d617900436f6e74656e742d547970653a20746578742f706c61696e3b20636861727365743d5554462d380a00256420666665696c00256420666665696c0041676f72004d616900";
    const MSGFMT_BE: &str = "950412de00000000000000040000001c0000003c000000000000005c000000000000005c000000100000005d000000040000006e0000000900000073000000280000007d00000011000000a600000004000000b800000003000000bd0025642066696c650025642066696c6573004f70656e006d6f6e7468044d617900436f6e74656e742d547970653a20746578742f706c61696e3b20636861727365743d5554462d380a00256420666665696c00256420666665696c0041676f72004d616900";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn entry(context: Option<&str>, id: &str, plural: Option<&str>, strs: &[&str]) -> MoEntry {
        MoEntry {
            context: context.map(str::to_string),
            msgid: id.into(),
            msgid_plural: plural.map(str::to_string),
            msgstr: strs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn parse_ok(bytes: &[u8]) -> MoCatalog {
        parse(bytes, Path::new("x.mo")).unwrap()
    }

    fn parse_err(bytes: &[u8]) -> String {
        parse(bytes, Path::new("/loc/cy/LC_MESSAGES/broken.mo"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_msgfmt_output_in_both_byte_orders() {
        let want = vec![
            entry(None, "%d file", Some("%d files"), &["%d ffeil", "%d ffeil"]),
            entry(None, "Open", None, &["Agor"]),
            entry(Some("month"), "May", None, &["Mai"]),
        ];
        for hex in [MSGFMT_LE, MSGFMT_BE] {
            let catalog = parse_ok(&unhex(hex));
            assert_eq!(catalog.charset, "UTF-8");
            assert_eq!(catalog.entries, want);
        }
    }

    #[test]
    fn writer_output_reads_back_in_both_byte_orders() {
        let entries: &[(&[u8], &[u8])] = &[
            (b"", b"Content-Type: text/plain; charset=UTF-8\n"),
            (b"Open", b"Agor"),
            (b"month\x04May", b"Mai"),
            (
                b"%d file\0%d files",
                b"%d ffeil\0%d ffeil\0%d ffeil\0%d ffeil",
            ),
            ("Café".as_bytes(), "Caffi ☕".as_bytes()),
        ];
        for big_endian in [false, true] {
            let catalog = parse_ok(&write(entries, big_endian));
            assert_eq!(
                catalog.entries.len(),
                4,
                "the header entry is not a message"
            );
            assert!(catalog.entries.contains(&entry(
                None,
                "%d file",
                Some("%d files"),
                &["%d ffeil"; 4]
            )));
            assert!(catalog
                .entries
                .contains(&entry(Some("month"), "May", None, &["Mai"])));
            assert!(catalog
                .entries
                .contains(&entry(None, "Café", None, &["Caffi ☕"])));
        }
        assert_eq!(write(entries, false)[..4], [0xde, 0x12, 0x04, 0x95]);
    }

    #[test]
    fn latin_charsets_are_converted_and_others_refused() {
        let latin = |charset: &str, s: &[u8]| {
            let header = format!("Content-Type: text/plain; charset={charset}\n");
            write(&[(b"", header.as_bytes()), (b"Euro", s)], false)
        };
        let one = parse_ok(&latin("ISO-8859-1", b"caf\xe9"));
        assert_eq!(one.entries[0].msgstr, ["café"]);
        let nine = parse_ok(&latin("iso-8859-15", b"\xa4 \xe9"));
        assert_eq!(nine.entries[0].msgstr, ["€ é"]);
        assert_eq!(nine.charset, "iso-8859-15");
        let err = parse(&latin("EUC-KR", b"x"), Path::new("ko.mo")).unwrap_err();
        assert!(matches!(err, MoError::Charset(_)));
        let msg = err.to_string();
        assert!(
            msg.contains("ko.mo") && msg.contains("charset EUC-KR") && msg.contains("msgconv"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_the_file() {
        let bytes = write(&[(b"Open", b"Ag\xffor")], false);
        let msg = parse_err(&bytes);
        assert!(
            msg.contains("broken.mo") && msg.contains("not valid UTF-8"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_magic_is_an_error_naming_the_file() {
        let msg = parse_err(b"msgid \"\"\nmsgstr \"Content-Type: text/plain\\n\"\n");
        assert!(
            msg.contains("/loc/cy/LC_MESSAGES/broken.mo")
                && msg.contains("not a gettext .mo file")
                && msg.contains("msgfmt"),
            "{msg}"
        );
    }

    #[test]
    fn truncation_anywhere_is_an_error_never_a_panic() {
        let bytes = unhex(MSGFMT_LE);
        for len in 0..bytes.len() {
            let msg = parse_err(&bytes[..len]);
            assert!(
                msg.contains("broken.mo") && msg.contains("truncated"),
                "{len} bytes: {msg}"
            );
        }
        assert!(parse_err(&bytes[..10]).contains("shorter than a .mo header"));
    }

    #[test]
    fn offsets_pointing_anywhere_are_errors_never_panics() {
        // Every header word and table slot replaced by values near and past the end.
        let good = unhex(MSGFMT_BE);
        for at in (8..0x5c).step_by(4) {
            for value in [u32::MAX, u32::MAX - 3, good.len() as u32, 0x7fff_ffff] {
                let mut bytes = good.clone();
                bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
                let _ = parse(&bytes, Path::new("x.mo"));
            }
        }
    }

    #[test]
    fn a_future_major_revision_is_refused() {
        let mut bytes = unhex(MSGFMT_LE);
        bytes[4..8].copy_from_slice(&0x0002_0000u32.to_le_bytes());
        assert!(parse_err(&bytes).contains("unsupported .mo revision 2.0"));
        bytes[4..8].copy_from_slice(&0x0001_0001u32.to_le_bytes());
        assert_eq!(parse_ok(&bytes).entries.len(), 3, "revision 1.1 reads");
    }
}
