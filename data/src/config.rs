//! The recipe's `[data]` table and its `[[data.train]]` / `[[data.eval]]` sources.
//!
//! Unknown keys are errors that name the key and suggest the nearest valid one
//! ([`suggest`], [`check_keys`], [`explain_serde_error`]); the trainer reuses these helpers
//! for the rest of the recipe.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::TrainOn;

/// How rows of a source become samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One string column of raw text (continued pre-training).
    Text,
    /// `instruction` / `input` / `output` string columns.
    Alpaca,
    /// A `list<struct<role, content>>` column (or ShareGPT `from` / `value`), or a string
    /// column holding the same list as JSON.
    Chat,
    /// `prompt` / `completion` string columns.
    PromptCompletion,
    /// `prompt` / `chosen` / `rejected` columns: strings, or lists of messages (the prompt's
    /// turns, then the assistant's preferred and rejected replies). For DPO / ORPO.
    Preference,
}

impl Format {
    pub const NAMES: &'static [&'static str] =
        &["text", "alpaca", "chat", "prompt_completion", "preference"];

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Alpaca => "alpaca",
            Format::Chat => "chat",
            Format::PromptCompletion => "prompt_completion",
            Format::Preference => "preference",
        }
    }

    /// Parse a format name (for `loam eval --format F`), with a suggestion when misspelt.
    pub fn parse(name: &str) -> Result<Format> {
        match name {
            "text" => Ok(Format::Text),
            "alpaca" => Ok(Format::Alpaca),
            "chat" => Ok(Format::Chat),
            "prompt_completion" => Ok(Format::PromptCompletion),
            "preference" => Ok(Format::Preference),
            _ => Err(DataError::config(
                "format",
                format!(
                    "unknown format `{name}`; expected one of: {}",
                    Format::NAMES.join(", ")
                ),
                suggest(name, Format::NAMES).map(|s| format!("did you mean `{s}`?")),
            )),
        }
    }
}

/// What to do with a sample longer than `seq_len` tokens. Every case is counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Keep the first `seq_len` tokens.
    #[default]
    Truncate,
    /// Leave the sample out.
    Drop,
    /// Cut it into `seq_len` pieces, each trained as its own document.
    Split,
}

/// What to do with a row that cannot be used (null, empty, unknown role, encoder failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop with a message naming the file, row and column.
    #[default]
    Fail,
    /// Skip the row and count it (`loam data stats` shows the count and the first reasons).
    Skip,
}

/// How an alpaca row becomes a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlpacaStyle {
    /// A prompt/completion with the standard Stanford Alpaca prompt: works with any model
    /// (base models have no chat template), and is what alpaca datasets were written for.
    #[default]
    Alpaca,
    /// A two-turn chat (user: instruction + input, assistant: output), rendered with the
    /// model's chat template: the better choice for instruct models.
    Chat,
}

/// Sequence shape when `packing = false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Every row is `seq_len` long: the same shape every step, so memory use is known at step 1.
    #[default]
    MaxLength,
    /// Rows are padded to the longest sample of the micro-batch.
    Longest,
}

fn default_seq_len() -> usize {
    1024
}
fn default_true() -> bool {
    true
}
fn default_shuffle_buffer() -> usize {
    2048
}
fn default_weight() -> f64 {
    1.0
}

/// The `[data]` table of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Tokens per sequence (packed row, or padded row without packing).
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Pack several samples per row (position ids restart at each one).
    #[serde(default = "default_true")]
    pub packing: bool,
    /// Shuffle row groups each epoch and rows through a seeded buffer.
    #[serde(default = "default_true")]
    pub shuffle: bool,
    /// Samples held in the shuffle buffer.
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
    #[serde(default)]
    pub train_on: TrainOn,
    /// Fraction of the train sources' rows held out for eval when there is no `[[data.eval]]`.
    /// Chosen by a hash of (file name, row index): the same rows on every run and every seed.
    #[serde(default)]
    pub eval_fraction: f64,
    /// Default over-long policy for sources that do not set their own.
    #[serde(default)]
    pub overlong: Overlong,
    /// Default bad-row policy for sources that do not set their own.
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub padding: Padding,
    /// A chat template replacing the model's own: inline Jinja, or the path of a `.jinja` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    #[serde(default)]
    pub train: Vec<SourceConfig>,
    #[serde(default)]
    pub eval: Vec<SourceConfig>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            seq_len: default_seq_len(),
            packing: true,
            shuffle: true,
            shuffle_buffer: default_shuffle_buffer(),
            train_on: TrainOn::default(),
            eval_fraction: 0.0,
            overlong: Overlong::default(),
            on_error: OnError::default(),
            padding: Padding::default(),
            chat_template: None,
            train: Vec::new(),
            eval: Vec::new(),
        }
    }
}

/// One `[[data.train]]` or `[[data.eval]]` source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A Parquet file, a directory of `*.parquet`, or a glob (`data/train-*.parquet`).
    pub path: String,
    pub format: Format,
    /// The main column: `text` for text (default "text"), chat (default "messages").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Alpaca columns (defaults "instruction", "input", "output"; `input` may be absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_column: Option<String>,
    /// Prompt/completion columns (defaults "prompt", "completion"); preference reads
    /// `prompt_column` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_column: Option<String>,
    /// Preference columns (defaults "chosen", "rejected").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_column: Option<String>,
    /// Chat: the message field holding the role (default: `role`, else `from` as in ShareGPT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_key: Option<String>,
    /// Chat: the message field holding the text (default: `content`, else `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_key: Option<String>,
    /// Chat: extra role names mapped to `system` / `user` / `assistant` / `tool`
    /// (ShareGPT's `human`, `gpt` and `system` are always understood).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, String>,
    /// Chat (and alpaca with `alpaca_style = "chat"`): a system message added first when a
    /// conversation has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub alpaca_style: AlpacaStyle,
    /// Relative share of this source in the mix (only proportions matter).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// text / alpaca / prompt_completion: end each row with the EOS token.
    #[serde(default = "default_true")]
    pub add_eos: bool,
    /// Overrides `data.overlong` for this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlong: Option<Overlong>,
    /// Overrides `data.on_error` for this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

impl SourceConfig {
    /// A source with every optional key at its default (what `loam eval --data P --format F` uses).
    pub fn new(path: impl Into<String>, format: Format) -> Self {
        SourceConfig {
            path: path.into(),
            format,
            column: None,
            instruction_column: None,
            input_column: None,
            output_column: None,
            prompt_column: None,
            completion_column: None,
            chosen_column: None,
            rejected_column: None,
            role_key: None,
            content_key: None,
            roles: BTreeMap::new(),
            system_prompt: None,
            alpaca_style: AlpacaStyle::default(),
            weight: 1.0,
            add_eos: true,
            overlong: None,
            on_error: None,
        }
    }

    /// The valid keys of a source table.
    pub const KEYS: &'static [&'static str] = &[
        "path",
        "format",
        "column",
        "instruction_column",
        "input_column",
        "output_column",
        "prompt_column",
        "completion_column",
        "chosen_column",
        "rejected_column",
        "role_key",
        "content_key",
        "roles",
        "system_prompt",
        "alpaca_style",
        "weight",
        "add_eos",
        "overlong",
        "on_error",
    ];

    /// The main column of a text or chat source.
    pub fn main_column(&self) -> &str {
        match (&self.column, self.format) {
            (Some(c), _) => c,
            (None, Format::Chat) => "messages",
            (None, _) => "text",
        }
    }

    /// Check the keys that only some formats use, and value ranges. `key` is the table's
    /// recipe path, e.g. `data.train[0]`.
    pub fn validate(&self, key: &str) -> Result<()> {
        if self.path.trim().is_empty() {
            return Err(DataError::config(
                format!("{key}.path"),
                "is empty",
                Some("set it to a Parquet file, a directory of .parquet files or a glob".into()),
            ));
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(DataError::config(
                format!("{key}.weight"),
                format!("must be a positive number, got {}", self.weight),
                Some("weights are relative shares, e.g. 1.0 and 3.0".into()),
            ));
        }
        let used: &[&str] = match self.format {
            Format::Text => &["column"],
            Format::Chat => &[
                "column",
                "role_key",
                "content_key",
                "roles",
                "system_prompt",
            ],
            Format::Alpaca => &[
                "instruction_column",
                "input_column",
                "output_column",
                "alpaca_style",
                "system_prompt",
            ],
            Format::PromptCompletion => &["prompt_column", "completion_column"],
            Format::Preference => &[
                "prompt_column",
                "chosen_column",
                "rejected_column",
                "role_key",
                "content_key",
                "roles",
                "system_prompt",
            ],
        };
        let set: [(&str, bool); 13] = [
            ("column", self.column.is_some()),
            ("instruction_column", self.instruction_column.is_some()),
            ("input_column", self.input_column.is_some()),
            ("output_column", self.output_column.is_some()),
            ("prompt_column", self.prompt_column.is_some()),
            ("completion_column", self.completion_column.is_some()),
            ("chosen_column", self.chosen_column.is_some()),
            ("rejected_column", self.rejected_column.is_some()),
            ("role_key", self.role_key.is_some()),
            ("content_key", self.content_key.is_some()),
            ("roles", !self.roles.is_empty()),
            ("system_prompt", self.system_prompt.is_some()),
            ("alpaca_style", self.alpaca_style != AlpacaStyle::default()),
        ];
        for (name, is_set) in set {
            if is_set && !used.contains(&name) {
                return Err(DataError::config(
                    format!("{key}.{name}"),
                    format!("is not used by format \"{}\"", self.format.name()),
                    Some(format!(
                        "format \"{}\" reads: {}",
                        self.format.name(),
                        used.join(", ")
                    )),
                ));
            }
        }
        if self.format == Format::Alpaca
            && self.alpaca_style == AlpacaStyle::Alpaca
            && self.system_prompt.is_some()
        {
            return Err(DataError::config(
                format!("{key}.system_prompt"),
                "needs alpaca_style = \"chat\" (the standard alpaca prompt has no system message)",
                Some("set alpaca_style = \"chat\", or remove system_prompt".into()),
            ));
        }
        for (from, to) in &self.roles {
            if !crate::format::CANONICAL_ROLES.contains(&to.as_str()) {
                return Err(DataError::config(
                    format!("{key}.roles.{from}"),
                    format!("maps to unknown role `{to}`"),
                    Some(format!(
                        "map to one of: {}",
                        crate::format::CANONICAL_ROLES.join(", ")
                    )),
                ));
            }
        }
        Ok(())
    }
}

impl DataConfig {
    /// The valid keys of the `[data]` table.
    pub const KEYS: &'static [&'static str] = &[
        "seq_len",
        "packing",
        "shuffle",
        "shuffle_buffer",
        "train_on",
        "eval_fraction",
        "overlong",
        "on_error",
        "padding",
        "chat_template",
        "train",
        "eval",
    ];

    /// Parse the `[data]` table (as a TOML value): unknown keys are named with a suggestion,
    /// then values are checked ([`DataConfig::validate`]).
    pub fn from_toml(value: toml::Value) -> Result<DataConfig> {
        check_data_keys(&value, "data")?;
        let cfg: DataConfig = value.try_into().map_err(|e: toml::de::Error| {
            DataError::config("data", explain_serde_error(&e.to_string()), None)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parse a TOML document holding the `[data]` table's contents (tests, tools).
    pub fn from_toml_str(text: &str) -> Result<DataConfig> {
        let value: toml::Value = toml::from_str(text).map_err(|e: toml::de::Error| {
            DataError::config("data", explain_serde_error(&e.to_string()), None)
        })?;
        DataConfig::from_toml(value)
    }

    /// The over-long policy of source `s` of `sources`.
    pub fn overlong_of(&self, source: &SourceConfig) -> Overlong {
        source.overlong.unwrap_or(self.overlong)
    }

    /// The bad-row policy of a source.
    pub fn on_error_of(&self, source: &SourceConfig) -> OnError {
        source.on_error.unwrap_or(self.on_error)
    }

    /// Check values: `seq_len`, `eval_fraction`, and every source.
    pub fn validate(&self) -> Result<()> {
        if self.seq_len < 2 {
            return Err(DataError::config(
                "data.seq_len",
                format!("must be at least 2, got {}", self.seq_len),
                Some("typical values are 512 to 4096".into()),
            ));
        }
        if !(0.0..1.0).contains(&self.eval_fraction) {
            return Err(DataError::config(
                "data.eval_fraction",
                format!("must be in [0, 1), got {}", self.eval_fraction),
                Some("e.g. 0.02 holds out 2% of the train rows".into()),
            ));
        }
        if self.shuffle && self.shuffle_buffer == 0 {
            return Err(DataError::config(
                "data.shuffle_buffer",
                "must be at least 1 when shuffle = true",
                Some("e.g. 2048, or set shuffle = false".into()),
            ));
        }
        if !self.eval.is_empty() && self.eval_fraction > 0.0 {
            tracing::warn!(
                "data.eval_fraction = {} is ignored: [[data.eval]] sources are set",
                self.eval_fraction
            );
        }
        for (i, s) in self.train.iter().enumerate() {
            s.validate(&format!("data.train[{i}]"))?;
        }
        for (i, s) in self.eval.iter().enumerate() {
            s.validate(&format!("data.eval[{i}]"))?;
        }
        self.validate_pairs()
    }

    /// Whether the sources hold preference pairs (then every one of them does).
    pub fn is_preference(&self) -> bool {
        self.train
            .iter()
            .chain(&self.eval)
            .any(|s| s.format == Format::Preference)
    }

    /// Pairs are batched two sequences at a time, never packed: they cannot share a stream
    /// with single sequences, nor be split into pieces.
    fn validate_pairs(&self) -> Result<()> {
        if !self.is_preference() {
            return Ok(());
        }
        let no_split = |key: String| {
            DataError::config(
                key,
                "\"split\" does not apply to preference pairs",
                Some("use \"truncate\" (keep the start of each sequence) or \"drop\"".into()),
            )
        };
        if self.overlong == Overlong::Split {
            return Err(no_split("data.overlong".into()));
        }
        let train = self
            .train
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("data.train[{i}]"), s));
        let eval = self
            .eval
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("data.eval[{i}]"), s));
        for (key, s) in train.chain(eval) {
            if s.format != Format::Preference {
                return Err(DataError::config(
                    format!("{key}.format"),
                    format!("is \"{}\", but other sources hold preference pairs", s.format.name()),
                    Some("a preference run (train.objective = \"dpo\" or \"orpo\") reads only format = \"preference\" sources".into()),
                ));
            }
            if s.overlong == Some(Overlong::Split) {
                return Err(no_split(format!("{key}.overlong")));
            }
        }
        Ok(())
    }
}

/// Check the keys of a `[data]` table (and its source tables) before deserializing, so an
/// unknown key is reported with its full path and the nearest valid key.
pub fn check_data_keys(value: &toml::Value, path: &str) -> Result<()> {
    let Some(table) = value.as_table() else {
        return Err(DataError::config(path, "must be a table", None));
    };
    check_keys(table, path, DataConfig::KEYS)?;
    for list in ["train", "eval"] {
        if let Some(toml::Value::Array(items)) = table.get(list) {
            for (i, item) in items.iter().enumerate() {
                let key = format!("{path}.{list}[{i}]");
                match item.as_table() {
                    Some(t) => check_keys(t, &key, SourceConfig::KEYS)?,
                    None => {
                        return Err(DataError::config(
                            key,
                            "must be a table",
                            Some(format!("write it as [[{path}.{list}]]")),
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

/// Error on the first key of `table` that is not in `valid`, naming it as `path.key` and
/// suggesting the nearest valid key.
pub fn check_keys(table: &toml::Table, path: &str, valid: &[&str]) -> Result<()> {
    for key in table.keys() {
        if !valid.contains(&key.as_str()) {
            let hint = match suggest(key, valid) {
                Some(s) => format!("did you mean `{s}`? valid keys: {}", valid.join(", ")),
                None => format!("valid keys: {}", valid.join(", ")),
            };
            return Err(DataError::config(
                format!("{path}.{key}"),
                "unknown key",
                Some(hint),
            ));
        }
    }
    Ok(())
}

/// The valid name nearest to `unknown` (edit distance with transpositions, case-insensitive),
/// if it is close enough to be a likely typo.
pub fn suggest(unknown: &str, valid: &[&str]) -> Option<String> {
    let lower = unknown.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for &candidate in valid {
        let d = edit_distance(&lower, &candidate.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    let (d, name) = best?;
    let longest = lower.chars().count().max(name.chars().count());
    // A typo changes a few characters; beyond a third of the word it is another word.
    let limit = (longest / 3).max(1);
    (d <= limit).then(|| name.to_string())
}

/// Optimal string alignment distance: insertions, deletions, substitutions and adjacent
/// transpositions each cost 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// Add "did you mean `x`?" to a serde message about an unknown field or variant
/// (`unknown field `formt`, expected one of `path`, `format`, …`).
pub fn explain_serde_error(message: &str) -> String {
    for kind in ["unknown field `", "unknown variant `"] {
        let Some(start) = message.find(kind) else {
            continue;
        };
        let rest = &message[start + kind.len()..];
        let Some(end) = rest.find('`') else { continue };
        let unknown = &rest[..end];
        let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
        if let Some(s) = suggest(unknown, &expected) {
            return format!("{}\n  hint: did you mean `{s}`?", message.trim_end());
        }
    }
    message.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggest_finds_typos_and_refuses_strangers() {
        let keys = DataConfig::KEYS;
        assert_eq!(suggest("seqlen", keys).as_deref(), Some("seq_len"));
        assert_eq!(suggest("shufle", keys).as_deref(), Some("shuffle"));
        assert_eq!(suggest("trian", keys).as_deref(), Some("train"));
        assert_eq!(suggest("Packing", keys).as_deref(), Some("packing"));
        assert_eq!(suggest("eval_frac", keys).as_deref(), Some("eval_fraction"));
        assert_eq!(suggest("learning_rate", keys), None);
    }

    #[test]
    fn defaults_match_the_recipe_contract() {
        let cfg = DataConfig::from_toml_str(
            r#"
            [[train]]
            path = "x.parquet"
            format = "chat"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.seq_len, 1024);
        assert!(cfg.packing && cfg.shuffle);
        assert_eq!(cfg.train_on, TrainOn::Assistant);
        assert_eq!(cfg.eval_fraction, 0.0);
        assert_eq!(cfg.overlong, Overlong::Truncate);
        assert_eq!(cfg.on_error, OnError::Fail);
        let s = &cfg.train[0];
        assert_eq!(s.weight, 1.0);
        assert!(s.add_eos);
        assert_eq!(s.main_column(), "messages");
        assert_eq!(s, &SourceConfig::new("x.parquet", Format::Chat));
    }

    #[test]
    fn design_recipe_data_table_parses() {
        let cfg = DataConfig::from_toml_str(
            r#"
            seq_len = 1024
            packing = true
            shuffle = true
            train_on = "assistant"
            eval_fraction = 0.02

            [[train]]
            path = "data/train-*.parquet"
            format = "chat"
            column = "messages"
            weight = 1.0
            add_eos = true

            [[train]]
            path = "sharegpt.parquet"
            format = "chat"
            column = "conversations"
            role_key = "from"
            content_key = "value"
            roles = { bot = "assistant" }
            system_prompt = "You are helpful."
            overlong = "split"
            on_error = "skip"

            [[eval]]
            path = "data/eval.parquet"
            format = "chat"
            column = "messages"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.train.len(), 2);
        assert_eq!(cfg.eval.len(), 1);
        assert_eq!(cfg.overlong_of(&cfg.train[1]), Overlong::Split);
        assert_eq!(cfg.on_error_of(&cfg.train[1]), OnError::Skip);
        assert_eq!(cfg.on_error_of(&cfg.train[0]), OnError::Fail);
    }

    #[test]
    fn unknown_key_names_the_key_and_suggests() {
        let err = DataConfig::from_toml_str("seq_lenn = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("data.seq_lenn"), "{err}");
        assert!(err.contains("did you mean `seq_len`"), "{err}");

        let err = DataConfig::from_toml_str("[[train]]\npath = \"a\"\nformt = \"text\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("data.train[0].formt"), "{err}");
        assert!(err.contains("did you mean `format`"), "{err}");
    }

    #[test]
    fn unknown_value_suggests_the_nearest_variant() {
        let err = DataConfig::from_toml_str("[[train]]\npath = \"a\"\nformat = \"chatt\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chatt"), "{err}");
        assert!(err.contains("did you mean `chat`"), "{err}");
        let err = Format::parse("alpacca").unwrap_err().to_string();
        assert!(err.contains("did you mean `alpaca`"), "{err}");
    }

    #[test]
    fn keys_used_by_another_format_are_refused() {
        let err = DataConfig::from_toml_str(
            "[[train]]\npath = \"a\"\nformat = \"text\"\nrole_key = \"from\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("data.train[0].role_key"), "{err}");
        assert!(err.contains("not used by format \"text\""), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, key) in [
            ("seq_len = 1\n", "data.seq_len"),
            ("eval_fraction = 1.5\n", "data.eval_fraction"),
            (
                "[[train]]\npath = \"a\"\nformat = \"text\"\nweight = 0.0\n",
                "data.train[0].weight",
            ),
            (
                "[[train]]\npath = \"a\"\nformat = \"chat\"\nroles = { bot = \"robot\" }\n",
                "data.train[0].roles.bot",
            ),
            (
                "[[train]]\npath = \"a\"\nformat = \"alpaca\"\nsystem_prompt = \"s\"\n",
                "data.train[0].system_prompt",
            ),
        ] {
            let err = DataConfig::from_toml_str(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn key_lists_match_the_structs() {
        let mut s = SourceConfig::new("p", Format::Chat);
        s.column = Some("c".into());
        s.instruction_column = Some("c".into());
        s.input_column = Some("c".into());
        s.output_column = Some("c".into());
        s.prompt_column = Some("c".into());
        s.completion_column = Some("c".into());
        s.chosen_column = Some("c".into());
        s.rejected_column = Some("c".into());
        s.role_key = Some("c".into());
        s.content_key = Some("c".into());
        s.roles.insert("a".into(), "user".into());
        s.system_prompt = Some("c".into());
        s.overlong = Some(Overlong::Drop);
        s.on_error = Some(OnError::Skip);
        let cfg = DataConfig {
            chat_template: Some("{{ messages }}".into()),
            train: vec![s.clone()],
            eval: vec![s],
            ..DataConfig::default()
        };
        let v = toml::Value::try_from(&cfg).unwrap();
        let mut keys: Vec<&str> = v.as_table().unwrap().keys().map(String::as_str).collect();
        let mut want = DataConfig::KEYS.to_vec();
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
        let src = v["train"][0].as_table().unwrap();
        let mut keys: Vec<&str> = src.keys().map(String::as_str).collect();
        let mut want = SourceConfig::KEYS.to_vec();
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
    }
}
