//! A translation dataset from the gettext catalogs free-software communities translated
//! (`loam data gettext`): every English interface message with its translation into one
//! language, as chats — the user asks for a translation, the assistant gives the
//! community's.
//!
//! [`build`] finds the catalogs ([`find_catalogs`]: `<dir>/<lang>/LC_MESSAGES/*.mo`), reads
//! them ([`mo`]), keeps the good pairs ([`clean`]), keeps one translation per English
//! message, and splits train / dev / eval by a hash of the English ([`split_draw`]); [`write_parquet`]
//! writes a split.

pub mod clean;
pub mod debian;
pub mod mo;

use crate::error::{DataError, Result};
use crate::provenance::{self, Origin, Provenance};
use arrow::array::{Array, ArrayRef, ListArray, StringArray, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::record_batch::RecordBatch;
use clean::Skip;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where distributions install catalogs: packages, Ubuntu's language packs, local builds.
pub const DEFAULT_LOCALE_DIRS: [&str; 3] = [
    "/usr/share/locale",
    "/usr/share/locale-langpack",
    "/usr/local/share/locale",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The locale directory name: `cy`, `eu`, `pt_BR`, `sr@latin`.
    pub lang: String,
    /// The language's name in the prompt; by default from [`language_name`].
    pub language_name: Option<String>,
    /// Directories holding `<lang>/LC_MESSAGES/*.mo`. Empty: [`DEFAULT_LOCALE_DIRS`],
    /// unless `catalogs` are given.
    pub locale_dirs: Vec<PathBuf>,
    /// `.mo` files named explicitly; any problem with one is an error.
    pub catalogs: Vec<PathBuf>,
    /// Share of distinct English messages held out for eval, in [0, 1).
    pub eval_fraction: f64,
    /// Share set aside as the development split (for tuning a recipe, never the held-out
    /// split), in [0, 1 - eval_fraction).
    pub dev_fraction: f64,
    /// Picks which messages are held out, and the row order.
    pub seed: u64,
    /// Messages longer than this (in characters, either side) are left out.
    pub max_chars: usize,
}

/// One row of the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub english: String,
    pub translation: String,
    /// The catalogs (file names without `.mo`) that gave this translation, comma-separated.
    pub source: String,
}

/// A catalog that was read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CatalogCount {
    pub path: PathBuf,
    /// Its text domain (the file name without `.mo`).
    pub domain: String,
    /// The Debian package that installed it, and that package's licence, where known.
    pub package: Option<String>,
    pub license: Option<String>,
    /// Messages in it (header excluded).
    pub messages: usize,
    /// Of which passed the cleaning rules (before deduplication).
    pub kept: usize,
}

/// What [`build`] did, for the summary it prints and writes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub lang: String,
    pub language: String,
    pub catalogs: Vec<CatalogCount>,
    /// Catalogs found in the locale directories that could not be used, with the reason.
    pub catalogs_skipped: Vec<(PathBuf, String)>,
    /// Regional or script variants present beside `lang` (`cy_GB`), not read.
    pub variants_not_read: Vec<String>,
    /// Messages in all catalogs read.
    pub seen: usize,
    /// Left out, by rule (see [`clean`]).
    pub skipped: BTreeMap<String, usize>,
    /// Pairs that passed the rules but whose English another pair already had.
    pub duplicates: usize,
    /// English messages translated differently by different catalogs (the most common kept).
    pub conflicting: usize,
    pub train: usize,
    pub dev: usize,
    pub eval: usize,
}

/// The dataset: train, dev and eval rows (disjoint by English message), and how they came
/// to be.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub language: String,
    pub train: Vec<Row>,
    pub dev: Vec<Row>,
    pub eval: Vec<Row>,
    pub summary: Summary,
}

/// The user turn of every example.
pub fn prompt(language: &str, english: &str) -> String {
    format!("Translate into {language}:\n{english}")
}

/// The English name of a language code (`cy` → `Welsh`), for prompts. A regional or script
/// variant without its own entry gets its base language's name and the code
/// (`sr@latin` → `Serbian (sr@latin)`); an unknown code is returned as is.
pub fn language_name(code: &str) -> String {
    #[rustfmt::skip]
    const NAMES: &[(&str, &str)] = &[
        ("af", "Afrikaans"), ("am", "Amharic"), ("an", "Aragonese"), ("ar", "Arabic"),
        ("as", "Assamese"), ("ast", "Asturian"), ("az", "Azerbaijani"), ("be", "Belarusian"),
        ("bg", "Bulgarian"), ("bn", "Bengali"), ("br", "Breton"), ("bs", "Bosnian"),
        ("ca", "Catalan"), ("ca@valencia", "Valencian"), ("ckb", "Central Kurdish"),
        ("crh", "Crimean Tatar"), ("cs", "Czech"), ("cy", "Welsh"), ("da", "Danish"),
        ("de", "German"), ("dz", "Dzongkha"), ("el", "Greek"), ("en", "English"),
        ("en_GB", "British English"), ("eo", "Esperanto"), ("es", "Spanish"),
        ("et", "Estonian"), ("eu", "Basque"), ("fa", "Persian"), ("fi", "Finnish"),
        ("fo", "Faroese"), ("fr", "French"), ("fur", "Friulian"), ("fy", "Western Frisian"),
        ("ga", "Irish"), ("gd", "Scottish Gaelic"), ("gl", "Galician"), ("gu", "Gujarati"),
        ("gv", "Manx"), ("ha", "Hausa"), ("he", "Hebrew"), ("hi", "Hindi"),
        ("hr", "Croatian"), ("hu", "Hungarian"), ("hy", "Armenian"), ("ia", "Interlingua"),
        ("id", "Indonesian"), ("ig", "Igbo"), ("is", "Icelandic"), ("it", "Italian"),
        ("ja", "Japanese"), ("ka", "Georgian"), ("kab", "Kabyle"), ("kk", "Kazakh"),
        ("km", "Khmer"), ("kn", "Kannada"), ("ko", "Korean"), ("ku", "Kurdish"),
        ("kw", "Cornish"), ("ky", "Kyrgyz"), ("la", "Latin"), ("lb", "Luxembourgish"),
        ("lg", "Ganda"), ("lo", "Lao"), ("lt", "Lithuanian"), ("lv", "Latvian"),
        ("mi", "Māori"), ("mk", "Macedonian"), ("ml", "Malayalam"), ("mn", "Mongolian"),
        ("mr", "Marathi"), ("ms", "Malay"), ("mt", "Maltese"), ("my", "Burmese"),
        ("nb", "Norwegian Bokmål"), ("nds", "Low German"), ("ne", "Nepali"), ("nl", "Dutch"),
        ("nn", "Norwegian Nynorsk"), ("no", "Norwegian"), ("oc", "Occitan"), ("or", "Odia"),
        ("pa", "Punjabi"), ("pl", "Polish"), ("ps", "Pashto"), ("pt", "Portuguese"),
        ("pt_BR", "Brazilian Portuguese"), ("rm", "Romansh"), ("ro", "Romanian"),
        ("ru", "Russian"), ("rw", "Kinyarwanda"), ("sc", "Sardinian"), ("se", "Northern Sami"),
        ("si", "Sinhala"), ("sk", "Slovak"), ("sl", "Slovenian"), ("sq", "Albanian"),
        ("sr", "Serbian"), ("sv", "Swedish"), ("sw", "Swahili"), ("ta", "Tamil"),
        ("te", "Telugu"), ("tg", "Tajik"), ("th", "Thai"), ("tl", "Tagalog"),
        ("tr", "Turkish"), ("tt", "Tatar"), ("ug", "Uyghur"), ("uk", "Ukrainian"),
        ("ur", "Urdu"), ("uz", "Uzbek"), ("vi", "Vietnamese"), ("wa", "Walloon"),
        ("xh", "Xhosa"), ("yo", "Yoruba"), ("zh_CN", "Simplified Chinese"),
        ("zh_HK", "Traditional Chinese (Hong Kong)"), ("zh_TW", "Traditional Chinese"),
        ("zu", "Zulu"),
    ];
    let lookup = |c: &str| NAMES.iter().find(|(k, _)| *k == c).map(|(_, n)| *n);
    if let Some(name) = lookup(code) {
        return name.to_string();
    }
    let base = code.split(['_', '@', '.']).next().unwrap_or(code);
    match lookup(base) {
        Some(name) => format!("{name} ({code})"),
        None => code.to_string(),
    }
}

/// The `.mo` files of `lang` in `dirs` (`<dir>/<lang>/LC_MESSAGES/*.mo`, sorted), and the
/// variants of `lang` (`cy_GB`, `sr@latin`) present beside it. No catalog at all is an error
/// that says where loam looked and what to do.
pub fn find_catalogs(lang: &str, dirs: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let mut found = Vec::new();
    let mut variants = BTreeSet::new();
    for dir in dirs {
        let messages = dir.join(lang).join("LC_MESSAGES");
        found.extend(mo_files(&messages)?);
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_variant = name
                .strip_prefix(lang)
                .is_some_and(|rest| rest.starts_with(['_', '@', '.']));
            if is_variant && !mo_files(&entry.path().join("LC_MESSAGES"))?.is_empty() {
                variants.insert(name);
            }
        }
    }
    let variants: Vec<String> = variants.into_iter().collect();
    if found.is_empty() {
        let looked: String = dirs
            .iter()
            .map(|d| format!("\n  {}", d.join(lang).join("LC_MESSAGES").display()))
            .collect();
        let hint = if variants.is_empty() {
            format!(
                "install translations for `{lang}` (Debian/Ubuntu: `apt install language-pack-{lang}`, \
                 or the `-l10n` packages of the programs you use; minimal container images \
                 leave them out, see /etc/dpkg/dpkg.cfg.d/), point --locale-dir at a directory \
                 holding {lang}/LC_MESSAGES/*.mo, or pass .mo files"
            )
        } else {
            format!(
                "catalogs exist for {}: pass one of them as --lang",
                variants.join(", ")
            )
        };
        return Err(DataError::input(
            format!("no gettext catalogs (*.mo) for `{lang}`; looked in:{looked}"),
            hint,
        ));
    }
    Ok((found, variants))
}

/// The `*.mo` files directly in `dir`, sorted; none when `dir` does not exist.
fn mo_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(e) => {
            return Err(DataError::file(
                dir,
                format!("cannot list: {e}"),
                "check its permissions, or pass --locale-dir / .mo files elsewhere",
            ))
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "mo") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads the catalogs, cleans, deduplicates and splits: the whole dataset, in memory (a
/// language's catalogs are a few MB).
pub fn build(opts: &Options) -> Result<Dataset> {
    if !(0.0..1.0).contains(&opts.eval_fraction) {
        return Err(DataError::input(
            format!("eval fraction {} is outside [0, 1)", opts.eval_fraction),
            "pass a fraction such as 0.05, or 0 for no eval split",
        ));
    }
    if !(0.0..1.0 - opts.eval_fraction).contains(&opts.dev_fraction) {
        return Err(DataError::input(
            format!(
                "dev fraction {} with eval fraction {} leaves nothing to train on",
                opts.dev_fraction, opts.eval_fraction
            ),
            "pass fractions that sum to less than 1, such as 0.05 each; 0 for no dev split",
        ));
    }
    if opts.max_chars == 0 {
        return Err(DataError::input(
            "the length cap is 0: every message would be left out",
            "pass a cap in characters, such as 1000",
        ));
    }
    let language = opts
        .language_name
        .clone()
        .unwrap_or_else(|| language_name(&opts.lang));
    let mut summary = Summary {
        lang: opts.lang.clone(),
        language: language.clone(),
        ..Summary::default()
    };

    // Catalogs: the ones named (errors stop the build), then the ones found (skipped, and
    // reported, when unusable: one package's broken catalog should not block the others).
    let mut catalogs = Vec::new();
    for path in &opts.catalogs {
        catalogs.push((path.clone(), mo::read(path)?));
    }
    let dirs: Vec<PathBuf> = if !opts.locale_dirs.is_empty() {
        opts.locale_dirs.clone()
    } else if opts.catalogs.is_empty() {
        DEFAULT_LOCALE_DIRS.iter().map(PathBuf::from).collect()
    } else {
        Vec::new()
    };
    if !dirs.is_empty() {
        let (found, variants) = find_catalogs(&opts.lang, &dirs)?;
        summary.variants_not_read = variants;
        for path in found {
            match mo::read(&path) {
                Ok(catalog) => catalogs.push((path, catalog)),
                Err(e) => {
                    tracing::warn!("skipping a catalog: {e}");
                    let what = e.to_string();
                    let what = what.lines().next().unwrap_or_default();
                    let reason = what
                        .strip_prefix(&format!("{}: ", path.display()))
                        .unwrap_or(what);
                    summary.catalogs_skipped.push((path, reason.to_string()));
                }
            }
        }
        if catalogs.is_empty() {
            return Err(DataError::input(
                format!(
                    "none of the {} catalogs found for `{}` could be read",
                    summary.catalogs_skipped.len(),
                    opts.lang
                ),
                "see the warnings above for each file and what to do",
            ));
        }
    }

    // English → translation → (votes, catalogs that gave it).
    let mut votes: BTreeMap<String, BTreeMap<String, (usize, BTreeSet<String>)>> = BTreeMap::new();
    let mut skipped: BTreeMap<Skip, usize> = BTreeMap::new();
    let mut kept_pairs = 0;
    for (path, catalog) in &catalogs {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut kept = 0;
        for entry in &catalog.entries {
            match clean::clean(entry, opts.max_chars) {
                Ok(pair) => {
                    kept += 1;
                    let vote = votes
                        .entry(pair.english)
                        .or_default()
                        .entry(pair.translation)
                        .or_default();
                    vote.0 += 1;
                    vote.1.insert(name.clone());
                }
                Err(skip) => *skipped.entry(skip).or_default() += 1,
            }
        }
        summary.seen += catalog.entries.len();
        kept_pairs += kept;
        summary.catalogs.push(CatalogCount {
            path: path.clone(),
            domain: name,
            package: None,
            license: None,
            messages: catalog.entries.len(),
            kept,
        });
    }
    let paths: Vec<PathBuf> = summary.catalogs.iter().map(|c| c.path.clone()).collect();
    let packages = debian::packages_of(&paths);
    for c in &mut summary.catalogs {
        if let Some(p) = packages.get(&c.path) {
            c.package = Some(p.name.clone());
            c.license = p.license.clone();
        }
    }
    summary.skipped = Skip::ALL
        .iter()
        .map(|s| (s.name().to_string(), skipped.get(s).copied().unwrap_or(0)))
        .collect();
    summary.duplicates = kept_pairs - votes.len();

    // One translation per English message: the most common, then the first in code order.
    let mut rows = Vec::with_capacity(votes.len());
    for (english, translations) in votes {
        summary.conflicting += usize::from(translations.len() > 1);
        let (translation, (_, sources)) = translations
            .into_iter()
            .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then_with(|| b.0.cmp(&a.0)))
            .expect("every English message has a translation");
        rows.push(Row {
            english,
            translation,
            source: sources.into_iter().collect::<Vec<_>>().join(","),
        });
    }
    // Deterministic but mixed order, so a dataset read in file order is not alphabetical.
    rows.sort_by_cached_key(|r| (hash(ORDER, opts.seed, &r.english), r.english.clone()));
    let (mut train, mut dev, mut eval) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        let u = split_draw(&row.english, opts.seed);
        if u < opts.eval_fraction {
            eval.push(row);
        } else if u < opts.eval_fraction + opts.dev_fraction {
            dev.push(row);
        } else {
            train.push(row);
        }
    }
    summary.train = train.len();
    summary.dev = dev.len();
    summary.eval = eval.len();
    Ok(Dataset {
        language,
        train,
        dev,
        eval,
        summary,
    })
}

impl Dataset {
    /// Where the data came from, as its Parquet files and its card record it.
    pub fn provenance(&self) -> Provenance {
        let s = &self.summary;
        let mut licenses = BTreeSet::new();
        for c in &s.catalogs {
            licenses.insert(
                c.license
                    .as_deref()
                    .map_or("unknown", provenance::hub_license),
            );
        }
        Provenance {
            description: format!(
                "English interface messages of free-software programs with their translations \
                 into {}, from the gettext catalogs their translators published, as installed \
                 on the machine that built it",
                self.language
            ),
            languages: vec!["en".to_string(), hub_language(&s.lang)],
            licenses: licenses.into_iter().map(str::to_string).collect(),
            hub_id: None,
            sources: s
                .catalogs
                .iter()
                .map(|c| Origin {
                    name: c.domain.clone(),
                    package: c.package.clone(),
                    license: c.license.clone(),
                    rows: c.kept,
                })
                .collect(),
        }
    }
}

/// A locale name (`cy`, `pt_BR`, `sr@latin`) as the Hub's `language` code: the language
/// part (`cy`, `pt`, `sr`).
pub fn hub_language(locale: &str) -> String {
    locale
        .split(['_', '@', '.'])
        .next()
        .unwrap_or(locale)
        .to_string()
}

const ORDER: u64 = 0x6f72_6465;
const SPLIT: u64 = 0x7370_6c74;

/// Where an English message falls in [0, 1): below the eval fraction it is held out, then
/// the dev fraction, then train. The hash is of a normalised form (lowercase, whitespace
/// collapsed, trailing punctuation dropped), so near-duplicates such as `Name` and `Name:`
/// land in the same split and held-out and dev messages stay unseen. A dev split takes its
/// messages from train only: the held-out split is the same with or without one.
pub fn split_draw(english: &str, seed: u64) -> f64 {
    let key: String = english
        .to_lowercase()
        .trim_end_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation() || c == '…')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let h = hash(SPLIT, seed, &key);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A stable 64-bit hash (FNV-1a, then a splitmix64 finaliser) of a domain, a seed and a text.
fn hash(domain: u64, seed: u64, text: &str) -> u64 {
    let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut x = fnv ^ domain.rotate_left(17) ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Writes rows as Parquet: `messages` (list<struct<role, content>>, the `chat` format),
/// `english`, `translation`, `source`; the provenance in the file's key-value metadata.
pub fn write_parquet(
    path: &Path,
    rows: &[Row],
    language: &str,
    provenance: &Provenance,
) -> Result<()> {
    let io = |e: &dyn std::fmt::Display| {
        DataError::file(
            path,
            format!("cannot write: {e}"),
            "check free space and permissions",
        )
    };
    let strings = |f: fn(&Row) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f)));
    let message_fields = Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ]);
    let roles = StringArray::from_iter_values(rows.iter().flat_map(|_| ["user", "assistant"]));
    let contents = StringArray::from_iter_values(
        rows.iter()
            .flat_map(|r| [prompt(language, &r.english), r.translation.clone()]),
    );
    let structs = StructArray::new(
        message_fields.clone(),
        vec![Arc::new(roles) as ArrayRef, Arc::new(contents)],
        None,
    );
    let item = Arc::new(Field::new("item", DataType::Struct(message_fields), false));
    let messages = ListArray::new(
        item,
        OffsetBuffer::from_lengths(rows.iter().map(|_| 2)),
        Arc::new(structs),
        None,
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("messages", messages.data_type().clone(), false),
        Field::new("english", DataType::Utf8, false),
        Field::new("translation", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(messages),
            strings(|r| &r.english),
            strings(|r| &r.translation),
            strings(|r| &r.source),
        ],
    )
    .map_err(|e| io(&e))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_max_row_group_row_count(Some(1024))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            provenance::KEY.to_string(),
            serde_json::to_string(provenance).map_err(|e| io(&e))?,
        )]))
        .build();
    let file = std::fs::File::create(path).map_err(|e| io(&e))?;
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| io(&e))?;
    writer.write(&batch).map_err(|e| io(&e))?;
    writer.close().map_err(|e| io(&e))?;
    Ok(())
}

impl Summary {
    /// The summary printed at the end, one count per line.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let read: usize = self.catalogs.len();
        let _ = writeln!(
            s,
            "catalogs      {read} read{}",
            if self.catalogs_skipped.is_empty() {
                String::new()
            } else {
                format!(", {} skipped:", self.catalogs_skipped.len())
            }
        );
        for (path, why) in &self.catalogs_skipped {
            let _ = writeln!(s, "                {}: {why}", path.display());
        }
        let _ = writeln!(s, "messages      {} seen", self.seen);
        for skip in Skip::ALL {
            let n = self.skipped.get(skip.name()).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "  skipped     {n:>6} {:<13} {}",
                skip.name(),
                skip.describe()
            );
        }
        let _ = writeln!(
            s,
            "  duplicates  {:>6} same English in several catalogs ({} translated differently: the most common kept)",
            self.duplicates, self.conflicting
        );
        let _ = writeln!(
            s,
            "pairs         {} distinct English messages into {}",
            self.train + self.dev + self.eval,
            self.language
        );
        let _ = writeln!(s, "  train       {:>6}", self.train);
        let _ = writeln!(s, "  dev         {:>6}   (for tuning a recipe)", self.dev);
        let _ = write!(s, "  eval        {:>6}   (held out)", self.eval);
        if !self.variants_not_read.is_empty() {
            let _ = write!(
                s,
                "\nnote: also installed, not read: {} (pass --lang to use one)",
                self.variants_not_read.join(", ")
            );
        }
        s
    }
}

/// Writes the UTF-8 catalog `root/<lang>/LC_MESSAGES/<name>.mo` (English → translation
/// pairs), laid out as distributions install them: for tests and demos.
pub fn write_catalog(
    root: &Path,
    lang: &str,
    name: &str,
    pairs: &[(&str, &str)],
) -> std::io::Result<PathBuf> {
    let dir = root.join(lang).join("LC_MESSAGES");
    std::fs::create_dir_all(&dir)?;
    let mut entries: Vec<(&[u8], &[u8])> =
        vec![(b"", b"Content-Type: text/plain; charset=UTF-8\n")];
    entries.extend(pairs.iter().map(|(a, b)| (a.as_bytes(), b.as_bytes())));
    let path = dir.join(format!("{name}.mo"));
    std::fs::write(&path, mo::write(&entries, false))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(root: &Path, lang: &str, name: &str, pairs: &[(&str, &str)]) -> PathBuf {
        write_catalog(root, lang, name, pairs).unwrap()
    }

    fn options(root: &Path, fraction: f64) -> Options {
        Options {
            lang: "cy".into(),
            language_name: None,
            locale_dirs: vec![root.to_path_buf()],
            catalogs: vec![],
            eval_fraction: fraction,
            dev_fraction: 0.0,
            seed: 42,
            max_chars: 1000,
        }
    }

    fn borrowed(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
        pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    fn translation_of<'a>(data: &'a Dataset, english: &str) -> Option<&'a Row> {
        data.train
            .iter()
            .chain(&data.dev)
            .chain(&data.eval)
            .find(|r| r.english == english)
    }

    #[test]
    fn duplicates_keep_the_most_common_translation_then_the_first() {
        let dir = tempfile::tempdir().unwrap();
        catalog(
            dir.path(),
            "cy",
            "a",
            &[("Open", "Agor"), ("Close", "Cau"), ("Quit", "Gadael")],
        );
        catalog(
            dir.path(),
            "cy",
            "b",
            &[("_Open", "_Agor"), ("Close", "Caewch")],
        );
        catalog(
            dir.path(),
            "cy",
            "c",
            &[("Open", "Agorwch"), ("Close", "Caewch")],
        );
        let data = build(&options(dir.path(), 0.0)).unwrap();
        let open = translation_of(&data, "Open").unwrap();
        assert_eq!(
            (open.translation.as_str(), open.source.as_str()),
            ("Agor", "a,b")
        );
        let close = translation_of(&data, "Close").unwrap();
        assert_eq!(
            (close.translation.as_str(), close.source.as_str()),
            ("Caewch", "b,c")
        );
        let s = &data.summary;
        assert_eq!((s.seen, s.duplicates, s.conflicting), (7, 4, 2));
        assert_eq!((s.train, s.eval), (3, 0));
        assert_eq!(s.catalogs.iter().map(|c| c.kept).sum::<usize>(), 7);
    }

    #[test]
    fn every_skip_reason_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(1001);
        let mut entries: Vec<(&[u8], &[u8])> = vec![
            (b"", b"Content-Type: text/plain; charset=UTF-8\n"),
            (b"%d file\0%d files", b"%d ffeil\0%d ffeil"),
            (b"Empty", b""),
            (b"translator-credits", b"Dafydd"),
            (b"Open %s", b"Agor"),
            (b"Open", b"_Agor"),
            (b"%s: %s", b"%s - %s"),
            (b"GNOME", b"GNOME"),
            (b"Good", b"Da"),
        ];
        entries.push((long.as_bytes(), b"hir"));
        let path = dir.path().join("x.mo");
        std::fs::write(&path, mo::write(&entries, true)).unwrap();
        let opts = Options {
            catalogs: vec![path],
            locale_dirs: vec![],
            ..options(dir.path(), 0.0)
        };
        let data = build(&opts).unwrap();
        assert_eq!(data.summary.seen, 9);
        for skip in Skip::ALL {
            assert_eq!(data.summary.skipped[skip.name()], 1, "{skip:?}");
        }
        assert_eq!(data.train.len(), 1);
        let report = data.summary.report();
        assert!(
            report.contains("9 seen") && report.contains("into Welsh"),
            "{report}"
        );
    }

    #[test]
    fn the_split_never_leaks_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let words: Vec<(String, String)> = (0..400)
            .map(|i| (format!("Message number {i}"), format!("Neges rhif {i}")))
            .collect();
        let pairs = borrowed(&words);
        catalog(dir.path(), "cy", "one", &pairs);
        // The same messages again, some translated differently, and near-duplicates.
        let mut other = pairs.clone();
        other[0].1 = "Neges gyntaf";
        let near: Vec<(String, String)> = (0..400)
            .map(|i| (format!("message number {i}:"), format!("neges rhif {i}:")))
            .collect();
        other.extend(near.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        catalog(dir.path(), "cy", "two", &other);

        let data = build(&options(dir.path(), 0.2)).unwrap();
        let key = |s: &str| s.to_lowercase().trim_end_matches(':').to_string();
        let train: BTreeSet<String> = data.train.iter().map(|r| key(&r.english)).collect();
        let eval: BTreeSet<String> = data.eval.iter().map(|r| key(&r.english)).collect();
        assert!(train.is_disjoint(&eval), "a message is in both splits");
        assert_eq!(data.train.len() + data.eval.len(), 800);
        let share = data.eval.len() as f64 / 800.0;
        assert!((0.12..0.28).contains(&share), "eval share {share}");

        let again = build(&options(dir.path(), 0.2)).unwrap();
        assert_eq!(
            (data.train, data.eval),
            (again.train.clone(), again.eval.clone())
        );
        let reseeded = build(&Options {
            seed: 7,
            ..options(dir.path(), 0.2)
        })
        .unwrap();
        assert_ne!(
            reseeded.eval, again.eval,
            "the seed picks the held-out messages"
        );
    }

    /// The dev split never overlaps train or held-out (near-duplicates included), takes its
    /// share, and leaves the held-out split as it was without one.
    #[test]
    fn the_dev_split_is_disjoint_and_leaves_held_out_alone() {
        let dir = tempfile::tempdir().unwrap();
        let words: Vec<(String, String)> = (0..300)
            .flat_map(|i| {
                [
                    (format!("Message number {i}"), format!("Neges rhif {i}")),
                    (format!("message number {i}:"), format!("neges rhif {i}:")),
                ]
            })
            .collect();
        let pairs = borrowed(&words);
        catalog(dir.path(), "cy", "one", &pairs);
        let with_dev = build(&Options {
            dev_fraction: 0.2,
            ..options(dir.path(), 0.2)
        })
        .unwrap();
        let without = build(&options(dir.path(), 0.2)).unwrap();
        let key = |s: &str| s.to_lowercase().trim_end_matches(':').to_string();
        let set = |rows: &[Row]| {
            rows.iter()
                .map(|r| key(&r.english))
                .collect::<BTreeSet<_>>()
        };
        let (train, dev, eval) = (
            set(&with_dev.train),
            set(&with_dev.dev),
            set(&with_dev.eval),
        );
        assert!(dev.is_disjoint(&train) && dev.is_disjoint(&eval) && train.is_disjoint(&eval));
        assert_eq!(
            with_dev.eval, without.eval,
            "the held-out split does not move"
        );
        let share = with_dev.dev.len() as f64 / 600.0;
        assert!((0.12..0.28).contains(&share), "dev share {share}");
        assert_eq!(with_dev.summary.dev, with_dev.dev.len());
        let err = build(&Options {
            dev_fraction: 0.9,
            ..options(dir.path(), 0.2)
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("dev fraction 0.9"), "{err}");
    }

    #[test]
    fn parquet_reads_back_as_chats() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![Row {
            english: "Open".into(),
            translation: "Agor".into(),
            source: "gtk20".into(),
        }];
        let path = dir.path().join("train.parquet");
        let provenance = Provenance {
            languages: vec!["en".into(), "cy".into()],
            licenses: vec!["lgpl".into()],
            sources: vec![Origin {
                name: "gtk20".into(),
                package: Some("libgtk2.0-common".into()),
                license: Some("LGPL-2+".into()),
                rows: 1,
            }],
            ..Default::default()
        };
        write_parquet(&path, &rows, "Welsh", &provenance).unwrap();
        assert_eq!(Provenance::read(&path).unwrap(), Some(provenance));
        let cfg = crate::SourceConfig::new(path.display().to_string(), crate::Format::Chat);
        let samples: Vec<_> = crate::source::eval_samples(&cfg, crate::OnError::Fail)
            .unwrap()
            .map(|row| row.unwrap().1)
            .collect();
        let chat = |role: &str, content: &str| crate::Message {
            role: role.into(),
            content: content.into(),
        };
        assert_eq!(
            samples,
            [crate::Sample::Chat {
                messages: vec![
                    chat("user", "Translate into Welsh:\nOpen"),
                    chat("assistant", "Agor")
                ]
            }]
        );
    }

    #[test]
    fn a_missing_language_says_where_it_looked_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(&options(dir.path(), 0.05)).unwrap_err().to_string();
        assert!(
            err.contains("no gettext catalogs (*.mo) for `cy`")
                && err.contains(&dir.path().join("cy/LC_MESSAGES").display().to_string())
                && err.contains("language-pack-cy")
                && err.contains("--locale-dir"),
            "{err}"
        );
        catalog(dir.path(), "pt_BR", "x", &[("Open", "Abrir")]);
        let err = build(&Options {
            lang: "pt".into(),
            ..options(dir.path(), 0.05)
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("catalogs exist for pt_BR: pass one of them as --lang"),
            "{err}"
        );
    }

    #[test]
    fn variants_are_not_mixed_in_but_reported() {
        let dir = tempfile::tempdir().unwrap();
        catalog(dir.path(), "pt", "x", &[("Open", "Abrir")]);
        catalog(dir.path(), "pt_BR", "x", &[("Save", "Salvar")]);
        let data = build(&Options {
            lang: "pt".into(),
            ..options(dir.path(), 0.0)
        })
        .unwrap();
        assert_eq!(data.train.len(), 1);
        assert_eq!(data.summary.variants_not_read, ["pt_BR"]);
        assert_eq!(data.language, "Portuguese");
    }

    #[test]
    fn a_bad_catalog_found_is_skipped_but_a_bad_catalog_named_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        catalog(dir.path(), "cy", "good", &[("Open", "Agor")]);
        let bad = dir.path().join("cy/LC_MESSAGES/bad.mo");
        std::fs::write(&bad, b"\xde\x12\x04\x95 truncated").unwrap();
        let data = build(&options(dir.path(), 0.0)).unwrap();
        assert_eq!(data.train.len(), 1);
        assert_eq!(data.summary.catalogs_skipped.len(), 1);
        assert!(data.summary.report().contains("bad.mo: truncated"));

        let err = build(&Options {
            catalogs: vec![bad.clone()],
            locale_dirs: vec![],
            ..options(dir.path(), 0.0)
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad.mo") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn language_names_fall_back_sensibly() {
        assert_eq!(language_name("cy"), "Welsh");
        assert_eq!(language_name("pt_BR"), "Brazilian Portuguese");
        assert_eq!(language_name("sr@latin"), "Serbian (sr@latin)");
        assert_eq!(language_name("xyz"), "xyz");
    }
}
