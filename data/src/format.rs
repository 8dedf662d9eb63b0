//! Rows → [`Sample`]s: the `text`, `alpaca`, `chat`, `prompt_completion` and `preference`
//! formats.
//!
//! A [`RowFormat`] says which columns a source needs; bound to a file's schema it checks
//! their types once per file ([`RowFormat::bind`]), then turns each row of a record batch
//! into a [`Sample`] ([`BatchView::sample`]). Every bad value is a [`DataError::Row`]
//! naming the file, row group, row and column.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, GenericListArray, StringViewArray, StructArray};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;

use crate::config::{AlpacaStyle, Format, SourceConfig};
use crate::error::{DataError, Location, Result, SKIP_HINT};
use crate::{Message, PairText, Sample};

/// The roles a chat template understands; every dataset role is mapped to one of these.
pub const CANONICAL_ROLES: &[&str] = &["system", "user", "assistant", "tool"];

/// Role names understood without configuration (OpenAI and ShareGPT).
const BUILTIN_ROLES: &[(&str, &str)] = &[
    ("system", "system"),
    ("user", "user"),
    ("assistant", "assistant"),
    ("tool", "tool"),
    ("human", "user"),
    ("gpt", "assistant"),
];

/// The Stanford Alpaca prompt, with and without an input.
const ALPACA_PROMPT_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
const ALPACA_PROMPT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

/// The standard alpaca prompt for an instruction and an optional input.
pub fn alpaca_prompt(instruction: &str, input: &str) -> String {
    if input.is_empty() {
        ALPACA_PROMPT.replace("{instruction}", instruction)
    } else {
        ALPACA_PROMPT_INPUT
            .replace("{instruction}", instruction)
            .replace("{input}", input)
    }
}

/// A source's format with its column names resolved.
#[derive(Debug, Clone)]
pub struct RowFormat {
    format: Format,
    /// Columns read, in a fixed order per format; `(name, required)`.
    columns: Vec<(String, bool)>,
    role_key: Option<String>,
    content_key: Option<String>,
    roles: BTreeMap<String, String>,
    system_prompt: Option<String>,
    alpaca_style: AlpacaStyle,
}

impl RowFormat {
    pub fn new(cfg: &SourceConfig) -> RowFormat {
        let col = |c: &Option<String>, default: &str| c.clone().unwrap_or_else(|| default.into());
        let columns = match cfg.format {
            Format::Text | Format::Chat => vec![(cfg.main_column().to_string(), true)],
            Format::Alpaca => vec![
                (col(&cfg.instruction_column, "instruction"), true),
                // `input` is often absent from alpaca-style datasets; it is then empty.
                (col(&cfg.input_column, "input"), cfg.input_column.is_some()),
                (col(&cfg.output_column, "output"), true),
            ],
            Format::PromptCompletion => vec![
                (col(&cfg.prompt_column, "prompt"), true),
                (col(&cfg.completion_column, "completion"), true),
            ],
            Format::Preference => vec![
                (col(&cfg.prompt_column, "prompt"), true),
                (col(&cfg.chosen_column, "chosen"), true),
                (col(&cfg.rejected_column, "rejected"), true),
            ],
        };
        let mut roles: BTreeMap<String, String> = BUILTIN_ROLES
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        roles.extend(cfg.roles.clone());
        RowFormat {
            format: cfg.format,
            columns,
            role_key: cfg.role_key.clone(),
            content_key: cfg.content_key.clone(),
            roles,
            system_prompt: cfg.system_prompt.clone(),
            alpaca_style: cfg.alpaca_style,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The columns this format reads, with whether each must exist.
    pub fn columns(&self) -> &[(String, bool)] {
        &self.columns
    }

    /// Check the (projected) schema of `path` and fix where each column is.
    pub fn bind(&self, schema: &Schema, path: &Path) -> Result<BoundFormat> {
        let mut cols = Vec::new();
        for (name, required) in &self.columns {
            let Ok(index) = schema.index_of(name) else {
                if *required {
                    return Err(missing_column(schema, name, path));
                }
                cols.push(None);
                continue;
            };
            let dt = schema.field(index).data_type();
            let kind = if matches!(self.format, Format::Chat | Format::Preference) {
                chat_column_kind(dt, name, self, path)?
            } else if is_string(dt) {
                ColumnKind::String
            } else {
                return Err(DataError::file(
                    path,
                    format!("column `{name}` has type {dt}, but format \"{}\" needs a string column", self.format.name()),
                    "point the recipe at the right column, or convert it to strings (pyarrow: pc.cast(col, pa.string()))",
                ));
            };
            cols.push(Some(BoundColumn {
                name: name.clone(),
                index,
                kind,
            }));
        }
        if self.format == Format::Preference {
            same_convention(&cols, path)?;
        }
        Ok(BoundFormat {
            format: self.clone(),
            cols,
        })
    }
}

/// A preference source is all strings or all messages (TRL's two conventions), never a mix.
fn same_convention(cols: &[Option<BoundColumn>], path: &Path) -> Result<()> {
    let bound: Vec<&BoundColumn> = cols.iter().flatten().collect();
    let is_text = |c: &BoundColumn| matches!(c.kind, ColumnKind::String);
    if let Some(odd) = bound.iter().find(|c| is_text(c) != is_text(bound[0])) {
        let kind = |c: &BoundColumn| {
            if is_text(c) {
                "strings"
            } else {
                "lists of messages"
            }
        };
        return Err(DataError::file(
            path,
            format!(
                "column `{}` holds {} but column `{}` holds {}",
                odd.name,
                kind(odd),
                bound[0].name,
                kind(bound[0])
            ),
            "a preference source is all strings (plain text) or all lists of {role, content} messages (conversational)",
        ));
    }
    Ok(())
}

/// At most 60 characters of a value, for messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The nearest column names, for "missing column" messages.
pub(crate) fn missing_column(schema: &Schema, name: &str, path: &Path) -> DataError {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let hint = match crate::config::suggest(name, &names) {
        Some(s) => format!("did you mean `{s}`? set `column` (or the format's *_column key) in the source; the file has columns: {}", names.join(", ")),
        None => format!("set `column` (or the format's *_column key) in the source; the file has columns: {}", names.join(", ")),
    };
    DataError::file(path, format!("has no column `{name}`"), hint)
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// How a chat column is laid out.
#[derive(Debug, Clone)]
enum ColumnKind {
    String,
    /// A list of structs; the indices of the role and content fields in the struct.
    Messages {
        role: usize,
        content: usize,
    },
}

#[derive(Debug, Clone)]
struct BoundColumn {
    name: String,
    index: usize,
    kind: ColumnKind,
}

fn chat_column_kind(dt: &DataType, name: &str, f: &RowFormat, path: &Path) -> Result<ColumnKind> {
    if is_string(dt) {
        return Ok(ColumnKind::String);
    }
    let item = match dt {
        DataType::List(item) | DataType::LargeList(item) => item.data_type(),
        _ => {
            return Err(DataError::file(
                path,
                format!(
                    "column `{name}` has type {dt}, but format \"{}\" needs list<struct<role, content>> or {}",
                    f.format.name(),
                    if f.format == Format::Chat { "a JSON string" } else { "a string" }
                ),
                "point `column` at the messages column",
            ))
        }
    };
    let DataType::Struct(fields) = item else {
        return Err(DataError::file(
            path,
            format!("column `{name}` is a list of {item}, but format \"chat\" needs a list of structs with role and content"),
            "point `column` at the messages column",
        ));
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    let find = |key: &Option<String>, defaults: [&str; 2], what: &str| -> Result<usize> {
        let wanted: Vec<&str> = match key {
            Some(k) => vec![k.as_str()],
            None => defaults.to_vec(),
        };
        for w in &wanted {
            if let Some(i) = names.iter().position(|n| n == w) {
                if !is_string(fields[i].data_type()) {
                    return Err(DataError::file(
                        path,
                        format!(
                            "column `{name}`: message field `{w}` has type {}, expected a string",
                            fields[i].data_type()
                        ),
                        "only text messages are supported; convert the field to strings",
                    ));
                }
                return Ok(i);
            }
        }
        Err(DataError::file(
            path,
            format!(
                "column `{name}`: messages have fields {{{}}}, none of them a {what} field ({})",
                names.join(", "),
                wanted.join(" or ")
            ),
            format!("set `{what}_key` in the source to the field holding the {what}"),
        ))
    };
    let role = find(&f.role_key, ["role", "from"], "role")?;
    let content = find(&f.content_key, ["content", "value"], "content")?;
    Ok(ColumnKind::Messages { role, content })
}

/// A format checked against one file's schema.
#[derive(Debug, Clone)]
pub struct BoundFormat {
    format: RowFormat,
    cols: Vec<Option<BoundColumn>>,
}

impl BoundFormat {
    /// Typed views of a batch's columns, made once per batch.
    pub fn view<'a>(&'a self, batch: &'a RecordBatch) -> BatchView<'a> {
        let cols = self
            .cols
            .iter()
            .map(|c| {
                c.as_ref().map(|c| {
                    let array = batch.column(c.index).as_ref();
                    let data = match c.kind {
                        ColumnKind::String => ColumnData::Str(StrCol::new(array)),
                        ColumnKind::Messages { role, content } => {
                            ColumnData::Messages(MessagesCol::new(array, role, content))
                        }
                    };
                    (c.name.as_str(), data)
                })
            })
            .collect();
        BatchView {
            format: &self.format,
            cols,
        }
    }
}

/// A string column of any Arrow string layout.
enum StrCol<'a> {
    Small(&'a arrow::array::StringArray),
    Large(&'a arrow::array::LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> StrCol<'a> {
    fn new(array: &'a dyn Array) -> StrCol<'a> {
        if let Some(a) = array.as_string_opt::<i32>() {
            StrCol::Small(a)
        } else if let Some(a) = array.as_string_opt::<i64>() {
            StrCol::Large(a)
        } else {
            // `bind` accepted only string types.
            StrCol::View(array.as_string_view())
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            StrCol::Small(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::Large(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A `list<struct<role, content>>` column.
struct MessagesCol<'a> {
    list: ListCol<'a>,
    structs: &'a StructArray,
    role: StrCol<'a>,
    content: StrCol<'a>,
}

enum ListCol<'a> {
    Small(&'a GenericListArray<i32>),
    Large(&'a GenericListArray<i64>),
}

impl<'a> MessagesCol<'a> {
    fn new(array: &'a dyn Array, role: usize, content: usize) -> MessagesCol<'a> {
        let (list, values) = match array.as_list_opt::<i32>() {
            Some(l) => (ListCol::Small(l), l.values()),
            None => {
                let l = array.as_list::<i64>();
                (ListCol::Large(l), l.values())
            }
        };
        let structs = values.as_struct();
        MessagesCol {
            list,
            role: StrCol::new(structs.column(role).as_ref()),
            content: StrCol::new(structs.column(content).as_ref()),
            structs,
        }
    }

    /// The range of struct rows of list row `i`, or `None` if the list is null.
    fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        match self.list {
            ListCol::Small(l) => l.is_valid(i).then(|| {
                let o = l.value_offsets();
                o[i] as usize..o[i + 1] as usize
            }),
            ListCol::Large(l) => l.is_valid(i).then(|| {
                let o = l.value_offsets();
                o[i] as usize..o[i + 1] as usize
            }),
        }
    }
}

enum ColumnData<'a> {
    Str(StrCol<'a>),
    Messages(MessagesCol<'a>),
}

/// One record batch, ready to turn rows into samples.
pub struct BatchView<'a> {
    format: &'a RowFormat,
    cols: Vec<Option<(&'a str, ColumnData<'a>)>>,
}

impl BatchView<'_> {
    /// Row `i` of the batch as a sample; `loc` names it in errors.
    pub fn sample(&self, i: usize, loc: &Location) -> Result<Sample> {
        match self.format.format {
            Format::Text => Ok(Sample::Text {
                text: self.string(0, i, loc, false)?.to_string(),
            }),
            Format::PromptCompletion => Ok(Sample::PromptCompletion {
                prompt: self.string(0, i, loc, false)?.to_string(),
                completion: self.string(1, i, loc, false)?.to_string(),
            }),
            Format::Alpaca => {
                let instruction = self.string(0, i, loc, false)?;
                let input = self.string(1, i, loc, true)?;
                let output = self.string(2, i, loc, false)?;
                Ok(match self.format.alpaca_style {
                    AlpacaStyle::Alpaca => Sample::PromptCompletion {
                        prompt: alpaca_prompt(instruction, input),
                        completion: output.to_string(),
                    },
                    AlpacaStyle::Chat => {
                        let user = if input.is_empty() {
                            instruction.to_string()
                        } else {
                            format!("{instruction}\n\n{input}")
                        };
                        let messages = vec![
                            Message {
                                role: "user".into(),
                                content: user,
                            },
                            Message {
                                role: "assistant".into(),
                                content: output.to_string(),
                            },
                        ];
                        Sample::Chat {
                            messages: self.with_system(messages),
                        }
                    }
                })
            }
            Format::Chat => {
                let messages = self.messages(0, i, loc)?;
                Ok(Sample::Chat {
                    messages: self.with_system(messages),
                })
            }
            Format::Preference => self.preference(i, loc),
        }
    }

    /// A pair: the prompt (a system message added to a conversation without one), and two
    /// different completions, each the assistant's alone when they are messages.
    fn preference(&self, i: usize, loc: &Location) -> Result<Sample> {
        let prompt = match self.pair_text(0, i, loc)? {
            PairText::Messages(m) => PairText::Messages(self.with_system(m)),
            plain => plain,
        };
        let chosen = self.pair_text(1, i, loc)?;
        let rejected = self.pair_text(2, i, loc)?;
        for (c, completion) in [(1, &chosen), (2, &rejected)] {
            let PairText::Messages(messages) = completion else {
                continue;
            };
            if let Some((k, m)) = messages
                .iter()
                .enumerate()
                .find(|(_, m)| m.role != "assistant")
            {
                return Err(DataError::row(
                    loc,
                    Some(self.column_name(c)),
                    format!("message {k} has role `{}`, but a completion holds only the assistant's reply", m.role),
                    format!("put the conversation so far in `{}`, or {SKIP_HINT}", self.column_name(0)),
                ));
            }
        }
        if chosen == rejected {
            return Err(DataError::row(
                loc,
                Some(self.column_name(2)),
                format!(
                    "is the same as `{}`: a pair needs two different completions",
                    self.column_name(1)
                ),
                SKIP_HINT,
            ));
        }
        Ok(Sample::Preference {
            prompt,
            chosen,
            rejected,
        })
    }

    /// Column `c` of a preference row: a non-empty string, or a non-empty list of messages.
    fn pair_text(&self, c: usize, i: usize, loc: &Location) -> Result<PairText> {
        match &self.cols[c] {
            Some((_, ColumnData::Messages(_))) => Ok(PairText::Messages(self.messages(c, i, loc)?)),
            _ => Ok(PairText::Plain(self.string(c, i, loc, false)?.to_string())),
        }
    }

    fn column_name(&self, c: usize) -> &str {
        self.cols[c].as_ref().map_or("", |(name, _)| name)
    }

    fn with_system(&self, mut messages: Vec<Message>) -> Vec<Message> {
        if let Some(system) = &self.format.system_prompt {
            if messages.first().is_none_or(|m| m.role != "system") {
                messages.insert(
                    0,
                    Message {
                        role: "system".into(),
                        content: system.clone(),
                    },
                );
            }
        }
        messages
    }

    /// String column `c` at row `i`. Null or empty is an error unless `optional` (then "").
    fn string(&self, c: usize, i: usize, loc: &Location, optional: bool) -> Result<&str> {
        let Some((name, data)) = &self.cols[c] else {
            return Ok("");
        };
        let ColumnData::Str(col) = data else {
            unreachable!("string formats bind string columns")
        };
        match col.get(i) {
            Some(s) if !s.is_empty() => Ok(s),
            _ if optional => Ok(col.get(i).unwrap_or("")),
            Some(_) => Err(DataError::row(
                loc,
                Some(name),
                "is an empty string",
                SKIP_HINT,
            )),
            None => Err(DataError::row(loc, Some(name), "is null", SKIP_HINT)),
        }
    }

    /// The messages in column `c` at row `i` (a list of structs, or a JSON string).
    fn messages(&self, c: usize, i: usize, loc: &Location) -> Result<Vec<Message>> {
        let Some((name, data)) = &self.cols[c] else {
            unreachable!("message columns are required")
        };
        let raw: Vec<(Option<String>, Option<String>)> = match data {
            ColumnData::Str(col) => match col.get(i) {
                None => return Err(DataError::row(loc, Some(name), "is null", SKIP_HINT)),
                Some(json) => self.parse_json_messages(json, name, loc)?,
            },
            ColumnData::Messages(m) => {
                let Some(range) = m.range(i) else {
                    return Err(DataError::row(loc, Some(name), "is null", SKIP_HINT));
                };
                range
                    .map(|j| {
                        if m.structs.is_null(j) {
                            (None, None)
                        } else {
                            (
                                m.role.get(j).map(str::to_string),
                                m.content.get(j).map(str::to_string),
                            )
                        }
                    })
                    .collect()
            }
        };
        if raw.is_empty() {
            return Err(DataError::row(
                loc,
                Some(name),
                "has no messages",
                SKIP_HINT,
            ));
        }
        let mut messages = Vec::with_capacity(raw.len());
        for (k, (role, content)) in raw.into_iter().enumerate() {
            let Some(role) = role else {
                return Err(DataError::row(
                    loc,
                    Some(name),
                    format!("message {k} has no role"),
                    SKIP_HINT,
                ));
            };
            let Some(canonical) = self.format.roles.get(&role) else {
                let known: Vec<&str> = self.format.roles.keys().map(String::as_str).collect();
                let hint = format!(
                    "map it in the source, e.g. roles = {{ {role} = \"assistant\" }} (known roles: {}), or {}",
                    known.join(", "),
                    SKIP_HINT
                );
                return Err(DataError::row(
                    loc,
                    Some(name),
                    format!("message {k} has unknown role `{role}`"),
                    hint,
                ));
            };
            let content = match content {
                Some(c) if !c.is_empty() => c,
                Some(_) => {
                    return Err(DataError::row(
                        loc,
                        Some(name),
                        format!("message {k} ({role}) has empty content"),
                        SKIP_HINT,
                    ))
                }
                None => {
                    return Err(DataError::row(
                        loc,
                        Some(name),
                        format!("message {k} ({role}) has no content"),
                        SKIP_HINT,
                    ))
                }
            };
            messages.push(Message {
                role: canonical.clone(),
                content,
            });
        }
        Ok(messages)
    }

    /// A JSON string column: `[{"role": .., "content": ..}, ..]` (or ShareGPT keys).
    fn parse_json_messages(
        &self,
        json: &str,
        name: &str,
        loc: &Location,
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            DataError::row(
                loc,
                Some(name),
                format!("is not valid JSON ({e})"),
                SKIP_HINT,
            )
        })?;
        let serde_json::Value::Array(items) = value else {
            return Err(DataError::row(
                loc,
                Some(name),
                "holds JSON that is not a list of messages",
                SKIP_HINT,
            ));
        };
        let pick = |obj: &serde_json::Map<String, serde_json::Value>,
                    key: &Option<String>,
                    defaults: [&str; 2]| {
            let keys: Vec<&str> = match key {
                Some(k) => vec![k.as_str()],
                None => defaults.to_vec(),
            };
            keys.iter().find_map(|k| obj.get(*k)).cloned()
        };
        items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                let serde_json::Value::Object(obj) = item else {
                    return Err(DataError::row(
                        loc,
                        Some(name),
                        format!("message {k} is not a JSON object"),
                        SKIP_HINT,
                    ));
                };
                let as_text = |v: Option<serde_json::Value>, what: &str| match v {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(serde_json::Value::String(s)) => Ok(Some(s)),
                    Some(other) => Err(DataError::row(
                        loc,
                        Some(name),
                        format!(
                            "message {k}: {what} is {}, expected a string",
                            clip(&other.to_string())
                        ),
                        SKIP_HINT,
                    )),
                };
                Ok((
                    as_text(pick(obj, &self.format.role_key, ["role", "from"]), "role")?,
                    as_text(
                        pick(obj, &self.format.content_key, ["content", "value"]),
                        "content",
                    )?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;
    use crate::testutil::*;

    fn read_all(cfg: &SourceConfig) -> Vec<Result<Sample>> {
        let source = Source::open(0, cfg).unwrap();
        source.rows().map(|r| r.unwrap().sample).collect()
    }

    fn chat(msgs: &[(&str, &str)]) -> Sample {
        Sample::Chat {
            messages: msgs
                .iter()
                .map(|(r, c)| Message {
                    role: r.to_string(),
                    content: c.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn text_rows_become_text_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("t.parquet"),
            vec![texts("body", &["hello", "wörld 🌍"])],
            10,
        );
        let mut cfg = SourceConfig::new(p.to_str().unwrap(), Format::Text);
        cfg.column = Some("body".into());
        let rows: Vec<Sample> = read_all(&cfg).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows,
            vec![
                Sample::Text {
                    text: "hello".into()
                },
                Sample::Text {
                    text: "wörld 🌍".into()
                }
            ]
        );
    }

    #[test]
    fn alpaca_rows_use_the_standard_prompt_or_a_chat() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("a.parquet"),
            vec![
                texts("instruction", &["Add", "Greet"]),
                strings("input", &[Some("2 and 3"), None]),
                texts("output", &["5", "Hi"]),
            ],
            10,
        );
        let cfg = SourceConfig::new(p.to_str().unwrap(), Format::Alpaca);
        let rows: Vec<Sample> = read_all(&cfg).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows[0],
            Sample::PromptCompletion {
                prompt: "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd\n\n### Input:\n2 and 3\n\n### Response:\n".into(),
                completion: "5".into()
            }
        );
        assert_eq!(
            rows[1],
            Sample::PromptCompletion {
                prompt: "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nGreet\n\n### Response:\n".into(),
                completion: "Hi".into()
            }
        );
        let mut cfg = cfg;
        cfg.alpaca_style = AlpacaStyle::Chat;
        cfg.system_prompt = Some("Be brief.".into());
        let rows: Vec<Sample> = read_all(&cfg).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows[0],
            chat(&[
                ("system", "Be brief."),
                ("user", "Add\n\n2 and 3"),
                ("assistant", "5")
            ])
        );
        assert_eq!(
            rows[1],
            chat(&[
                ("system", "Be brief."),
                ("user", "Greet"),
                ("assistant", "Hi")
            ])
        );
    }

    #[test]
    fn alpaca_without_an_input_column_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("a.parquet"),
            vec![texts("instruction", &["Greet"]), texts("output", &["Hi"])],
            10,
        );
        let rows = read_all(&SourceConfig::new(p.to_str().unwrap(), Format::Alpaca));
        assert!(
            matches!(&rows[0], Ok(Sample::PromptCompletion { completion, .. }) if completion == "Hi")
        );
    }

    #[test]
    fn prompt_completion_columns_are_remappable() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("pc.parquet"),
            vec![texts("q", &["2+2="]), texts("a", &["4"])],
            10,
        );
        let mut cfg = SourceConfig::new(p.to_str().unwrap(), Format::PromptCompletion);
        cfg.prompt_column = Some("q".into());
        cfg.completion_column = Some("a".into());
        let rows: Vec<Sample> = read_all(&cfg).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows,
            vec![Sample::PromptCompletion {
                prompt: "2+2=".into(),
                completion: "4".into()
            }]
        );
    }

    #[test]
    fn chat_list_of_structs_with_system_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("c.parquet"),
            vec![messages(
                "messages",
                ("role", "content"),
                &[
                    Some(vec![
                        (Some("user"), Some("Hi")),
                        (Some("assistant"), Some("Hello!")),
                    ]),
                    Some(vec![
                        (Some("system"), Some("Own")),
                        (Some("user"), Some("Q")),
                        (Some("assistant"), Some("A")),
                    ]),
                ],
            )],
            10,
        );
        let mut cfg = SourceConfig::new(p.to_str().unwrap(), Format::Chat);
        cfg.system_prompt = Some("Sys".into());
        let rows: Vec<Sample> = read_all(&cfg).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows[0],
            chat(&[("system", "Sys"), ("user", "Hi"), ("assistant", "Hello!")])
        );
        // A conversation with its own system message keeps it.
        assert_eq!(
            rows[1],
            chat(&[("system", "Own"), ("user", "Q"), ("assistant", "A")])
        );
    }

    #[test]
    fn chat_sharegpt_from_value_is_detected_and_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("s.parquet"),
            vec![messages(
                "conversations",
                ("from", "value"),
                &[Some(vec![
                    (Some("system"), Some("S")),
                    (Some("human"), Some("Hi")),
                    (Some("gpt"), Some("Yo")),
                    (Some("bot"), Some("Me")),
                ])],
            )],
            10,
        );
        let mut cfg = SourceConfig::new(p.to_str().unwrap(), Format::Chat);
        cfg.column = Some("conversations".into());
        cfg.roles.insert("bot".into(), "assistant".into());
        let rows: Vec<Sample> = read_all(&cfg).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows[0],
            chat(&[
                ("system", "S"),
                ("user", "Hi"),
                ("assistant", "Yo"),
                ("assistant", "Me")
            ])
        );
    }

    #[test]
    fn chat_json_string_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("j.parquet"),
            vec![texts(
                "messages",
                &[
                    r#"[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hey"}]"#,
                    r#"[{"from":"human","value":"Q"},{"from":"gpt","value":"A"}]"#,
                ],
            )],
            10,
        );
        let rows: Vec<Sample> = read_all(&SourceConfig::new(p.to_str().unwrap(), Format::Chat))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            vec![
                chat(&[("user", "Hi"), ("assistant", "Hey")]),
                chat(&[("user", "Q"), ("assistant", "A")])
            ]
        );
    }

    // --- bad input: each message names the file, row and column ---

    fn assert_names(err: &DataError, file: &str, row: &str, column: &str, what: &str) {
        let msg = err.to_string();
        assert!(err.is_row_error(), "{msg}");
        for part in [file, row, column, what, "hint:"] {
            assert!(msg.contains(part), "`{part}` missing from: {msg}");
        }
    }

    #[test]
    fn null_text_names_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("n.parquet"),
            vec![strings("text", &[Some("a"), Some("b"), None])],
            2,
        );
        let rows = read_all(&SourceConfig::new(p.to_str().unwrap(), Format::Text));
        let err = rows[2].as_ref().unwrap_err();
        assert_names(
            err,
            "n.parquet",
            "row 2 (row group 1, row 0 of the group)",
            "column `text`",
            "is null",
        );
    }

    #[test]
    fn empty_string_names_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("e.parquet"),
            vec![
                texts("prompt", &["p", "q"]),
                texts("completion", &["c", ""]),
            ],
            10,
        );
        let rows = read_all(&SourceConfig::new(
            p.to_str().unwrap(),
            Format::PromptCompletion,
        ));
        assert!(rows[0].is_ok());
        assert_names(
            rows[1].as_ref().unwrap_err(),
            "e.parquet",
            "row 1",
            "column `completion`",
            "empty string",
        );
    }

    #[test]
    fn unknown_role_names_the_role_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("r.parquet"),
            vec![messages(
                "messages",
                ("role", "content"),
                &[Some(vec![
                    (Some("user"), Some("a")),
                    (Some("robot"), Some("b")),
                ])],
            )],
            10,
        );
        let rows = read_all(&SourceConfig::new(p.to_str().unwrap(), Format::Chat));
        let err = rows[0].as_ref().unwrap_err();
        assert_names(
            err,
            "r.parquet",
            "row 0",
            "column `messages`",
            "unknown role `robot`",
        );
        assert!(
            err.to_string()
                .contains("roles = { robot = \"assistant\" }"),
            "{err}"
        );
    }

    #[test]
    fn message_without_content_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("m.parquet"),
            vec![messages(
                "messages",
                ("role", "content"),
                &[
                    Some(vec![(Some("user"), Some("a")), (Some("assistant"), None)]),
                    Some(vec![(Some("user"), Some(""))]),
                    Some(vec![]),
                    None,
                ],
            )],
            10,
        );
        let rows = read_all(&SourceConfig::new(p.to_str().unwrap(), Format::Chat));
        assert_names(
            rows[0].as_ref().unwrap_err(),
            "m.parquet",
            "row 0",
            "column `messages`",
            "message 1 (assistant) has no content",
        );
        assert_names(
            rows[1].as_ref().unwrap_err(),
            "m.parquet",
            "row 1",
            "column `messages`",
            "message 0 (user) has empty content",
        );
        assert_names(
            rows[2].as_ref().unwrap_err(),
            "m.parquet",
            "row 2",
            "column `messages`",
            "has no messages",
        );
        assert_names(
            rows[3].as_ref().unwrap_err(),
            "m.parquet",
            "row 3",
            "column `messages`",
            "is null",
        );
    }

    #[test]
    fn bad_json_messages_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("bj.parquet"),
            vec![texts(
                "messages",
                &[
                    "not json",
                    r#"{"role":"user"}"#,
                    r#"[{"role":"user","content":5}]"#,
                ],
            )],
            10,
        );
        let rows = read_all(&SourceConfig::new(p.to_str().unwrap(), Format::Chat));
        assert_names(
            rows[0].as_ref().unwrap_err(),
            "bj.parquet",
            "row 0",
            "column `messages`",
            "not valid JSON",
        );
        assert_names(
            rows[1].as_ref().unwrap_err(),
            "bj.parquet",
            "row 1",
            "column `messages`",
            "not a list of messages",
        );
        assert_names(
            rows[2].as_ref().unwrap_err(),
            "bj.parquet",
            "row 2",
            "column `messages`",
            "content is 5",
        );
    }

    #[test]
    fn wrong_column_type_names_file_column_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let ints: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 2]));
        let p = write_parquet(
            &dir.path().join("w.parquet"),
            vec![(
                arrow::datatypes::Field::new("text", DataType::Int64, false),
                ints,
            )],
            10,
        );
        let err = Source::open(0, &SourceConfig::new(p.to_str().unwrap(), Format::Text))
            .unwrap_err()
            .to_string();
        for part in [
            "w.parquet",
            "column `text`",
            "Int64",
            "needs a string column",
            "hint:",
        ] {
            assert!(err.contains(part), "`{part}` missing from: {err}");
        }
        let mut cfg = SourceConfig::new(p.to_str().unwrap(), Format::Chat);
        cfg.column = Some("text".into());
        let err = Source::open(0, &cfg).unwrap_err().to_string();
        assert!(err.contains("needs list<struct<role, content>>"), "{err}");
    }

    #[test]
    fn chat_structs_without_role_fields_name_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("f.parquet"),
            vec![messages(
                "messages",
                ("speaker", "text"),
                &[Some(vec![(Some("user"), Some("a"))])],
            )],
            10,
        );
        let err = Source::open(0, &SourceConfig::new(p.to_str().unwrap(), Format::Chat))
            .unwrap_err()
            .to_string();
        for part in [
            "f.parquet",
            "column `messages`",
            "{speaker, text}",
            "role_key",
        ] {
            assert!(err.contains(part), "`{part}` missing from: {err}");
        }
        let mut cfg = SourceConfig::new(p.to_str().unwrap(), Format::Chat);
        cfg.role_key = Some("speaker".into());
        cfg.content_key = Some("text".into());
        assert!(read_all(&cfg)[0].is_ok());
    }

    use arrow::array::ArrayRef;
    use std::sync::Arc;
}
