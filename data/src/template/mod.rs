//! Chat templates rendered with minijinja the way transformers' `apply_chat_template` renders
//! them with jinja2: `trim_blocks` and `lstrip_blocks` on, `loopcontrols`, Python string
//! methods, `raise_exception`, `strftime_now`, a `tojson` that is `json.dumps(...,
//! ensure_ascii=False)`, the tokenizer's named special tokens as variables, and the
//! `{% generation %}` tag that marks assistant text for `return_assistant_tokens_mask`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{bail, Result};
use minijinja::value::{Enumerator, Kwargs, Object, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use crate::tokenize::{TemplateSource, Tokenizer};
use crate::Message;

pub mod builtin;
pub mod install;

/// Wraps the output of a `{% generation %}` block; noncharacters never met in real text.
const GEN_START: char = '\u{FDD0}';
const GEN_END: char = '\u{FDD1}';
const TEMPLATE_NAME: &str = "chat_template";
const RAISED: &str = "raise_exception: ";

/// A compiled chat template plus the variables transformers gives it.
#[derive(Clone)]
pub struct ChatTemplate {
    origin: String,
    env: Environment<'static>,
    has_generation_markers: bool,
    /// `bos_token`, `eos_token`, … as template values.
    special_tokens: Arc<BTreeMap<String, Value>>,
}

/// A conversation ready to render, whole or any prefix of it: checked and converted to
/// template values once (a chat's assistant spans take several renders of its prefixes).
#[derive(Debug, Clone)]
pub struct Conversation {
    messages: Vec<Value>,
}

/// The variables of a render, as transformers passes them: the tokenizer's named special
/// tokens, `messages`, `add_generation_prompt`, and `tools` / `documents` as none.
#[derive(Debug)]
struct Context {
    special_tokens: Arc<BTreeMap<String, Value>>,
    messages: Value,
    add_generation_prompt: bool,
}

const CONTEXT_KEYS: [&str; 4] = ["messages", "add_generation_prompt", "tools", "documents"];

impl Object for Context {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "messages" => Some(self.messages.clone()),
            "add_generation_prompt" => Some(Value::from(self.add_generation_prompt)),
            "tools" | "documents" => Some(Value::from(())),
            name => self.special_tokens.get(name).cloned(),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let names: std::collections::BTreeSet<&str> = self
            .special_tokens
            .keys()
            .map(String::as_str)
            .chain(CONTEXT_KEYS)
            .collect();
        Enumerator::Values(names.into_iter().map(Value::from).collect())
    }
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("has_generation_markers", &self.has_generation_markers)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `special_tokens` are the tokenizer's named special tokens
    /// (`bos_token`, `eos_token`, …), passed to the template as variables.
    pub fn new(source: &TemplateSource, special_tokens: &BTreeMap<String, String>) -> Result<Self> {
        let (text, has_generation_markers) = rewrite_generation_tags(&source.text);
        let mut env = Environment::new();
        // jinja2 settings transformers uses (ImmutableSandboxedEnvironment(trim_blocks=True,
        // lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])); jinja2's
        // keep_trailing_newline=False is minijinja's default too.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson);
        env.add_filter("loam_generation", |s: String| {
            format!("{GEN_START}{s}{GEN_END}")
        });
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{RAISED}{message}"),
                ))
            },
        );
        env.add_function("strftime_now", |format: String| strftime_now(&format));
        env.add_template_owned(TEMPLATE_NAME, text).map_err(|e| {
            anyhow::anyhow!(
                "chat template {}: does not parse: {}",
                source.origin,
                describe(&e)
            )
        })?;
        Ok(ChatTemplate {
            origin: source.origin.clone(),
            env,
            has_generation_markers,
            special_tokens: Arc::new(
                special_tokens
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            ),
        })
    }

    /// The template a setting names (`key` is the recipe key or flag, for errors): a built-in
    /// template by name (`gemma`, see [`builtin`]), a `.jinja` file, or inline Jinja.
    pub fn from_setting(key: &str, value: &str, tokenizer: &Tokenizer) -> Result<Self> {
        ChatTemplate::new(&setting_source(key, value)?, tokenizer.special_tokens())
    }

    /// The model's own template, or `None` when it ships none.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Result<Option<Self>> {
        tokenizer
            .chat_template()
            .map(|source| ChatTemplate::new(source, tokenizer.special_tokens()))
            .transpose()
    }

    /// Where the template came from (a file, a config key, a recipe).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the template marks assistant text with `{% generation %}`.
    pub fn has_generation_markers(&self) -> bool {
        self.has_generation_markers
    }

    /// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        Ok(self
            .render_with_generation_spans(messages, add_generation_prompt)?
            .0)
    }

    /// The rendered text and the byte ranges of its `{% generation %}` blocks (none when the
    /// template has no markers).
    pub fn render_with_generation_spans(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<(String, Vec<Range<usize>>)> {
        let conversation = self.conversation(messages)?;
        self.render_prefix(&conversation, messages.len(), add_generation_prompt)
    }

    /// The byte offset where two renderings of a conversation part: the end of their common
    /// prefix, moved back to the start of any named special token it would cut (Phi-3's
    /// `<|endoftext|>` and `<|assistant|>` share their first two characters).
    pub fn divergence(&self, a: &str, b: &str) -> usize {
        let mut at = a
            .char_indices()
            .zip(b.chars())
            .find(|((_, x), y)| x != y)
            .map_or(a.len().min(b.len()), |((i, _), _)| i);
        let tokens: Vec<&str> = self
            .special_tokens
            .values()
            .filter_map(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .collect();
        let cut_token_start = |at: usize| {
            [a, b].into_iter().find_map(|text| {
                tokens.iter().find_map(|t| {
                    let from = at.saturating_sub(t.len() - 1);
                    let from = (from..at).find(|&i| text.is_char_boundary(i))?;
                    let p = from + text.get(from..)?.find(t)?;
                    (p < at).then_some(p)
                })
            })
        };
        while let Some(p) = cut_token_start(at) {
            at = p;
        }
        at
    }

    /// `messages`, checked and converted for rendering (see [`ChatTemplate::render_prefix`]).
    pub fn conversation(&self, messages: &[Message]) -> Result<Conversation> {
        if messages
            .iter()
            .any(|m| has_marker(&m.content) || has_marker(&m.role))
        {
            bail!(
                "a message contains the Unicode noncharacter U+FDD0 or U+FDD1, which loam uses \
                 internally to mark generated text; remove them from the data"
            );
        }
        Ok(Conversation {
            messages: messages.iter().map(Value::from_serialize).collect(),
        })
    }

    /// [`ChatTemplate::render_with_generation_spans`] of the first `len` messages of a
    /// conversation (panics when it has fewer).
    pub fn render_prefix(
        &self,
        conversation: &Conversation,
        len: usize,
        add_generation_prompt: bool,
    ) -> Result<(String, Vec<Range<usize>>)> {
        let ctx = Value::from_object(Context {
            special_tokens: self.special_tokens.clone(),
            messages: conversation.messages[..len].iter().cloned().collect(),
            add_generation_prompt,
        });
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| anyhow::anyhow!("chat template {}: {}", self.origin, describe(&e)))?;
        // minijinja 2.24 panics on some inputs (`[][::-1]`, `''[::-1]` index out of bounds); a
        // row must give an error, never bring the run down.
        let rendered =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| template.render(ctx)));
        match rendered {
            Ok(Ok(raw)) => Ok(split_generation_markers(raw)),
            Ok(Err(e)) => Err(self.render_error(&e)),
            Err(_) => bail!(
                "chat template {} failed to render: the template engine crashed on this \
                 conversation (minijinja panics when reversing an empty list or string with \
                 [::-1]); check for empty messages or contents",
                self.origin
            ),
        }
    }

    fn render_error(&self, e: &Error) -> anyhow::Error {
        if let Some(message) = e.detail().and_then(|d| d.strip_prefix(RAISED)) {
            anyhow::anyhow!(
                "chat template {} rejected the conversation: {message}; {}",
                self.origin,
                rejection_hint(message)
            )
        } else {
            anyhow::anyhow!(
                "chat template {} failed to render: {}",
                self.origin,
                describe(e)
            )
        }
    }
}

/// What to do about a conversation the template refused with `message`.
/// The template text a setting names: see [`ChatTemplate::from_setting`].
pub fn setting_source(key: &str, value: &str) -> Result<TemplateSource> {
    if let Some(b) = builtin::by_name(value) {
        return Ok(TemplateSource {
            origin: format!("built-in template `{}`", b.name),
            text: b.jinja.to_string(),
        });
    }
    if value.ends_with(".jinja") {
        let text = std::fs::read_to_string(value)
            .map_err(|e| anyhow::anyhow!("{key}: cannot read {value}: {e}"))?;
        return Ok(TemplateSource {
            origin: value.to_string(),
            text,
        });
    }
    if !value.contains("{{") && !value.contains("{%") {
        bail!(
            "{key} = `{value}` is neither a built-in template ({}), a .jinja file nor a Jinja \
             template",
            builtin::names()
        );
    }
    Ok(TemplateSource {
        origin: key.to_string(),
        text: value.to_string(),
    })
}

fn rejection_hint(message: &str) -> &'static str {
    if message.to_lowercase().contains("system") {
        // Gemma 1/2's templates have no system role.
        "this model's template has no system role: remove the system messages from the data, \
         fold them into the first user message, or set data.chat_template to a template with \
         a system role"
    } else {
        "fix the conversation, or set data.chat_template to a template that accepts it"
    }
}

fn has_marker(s: &str) -> bool {
    // Two one-character searches (memchr) are much faster than one for either character.
    s.contains(GEN_START) || s.contains(GEN_END)
}

/// One line: what failed and where in the template.
fn describe(e: &Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        let _ = write!(s, " (template line {line})");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let _ = write!(s, ": {inner}");
        source = inner.source();
    }
    s
}

/// `{% generation %}…{% endgeneration %}` (transformers' AssistantTracker extension) becomes a
/// `{% filter %}` block, a block tag too, so trim_blocks / lstrip_blocks act on it the same way.
fn rewrite_generation_tags(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    let mut rest = text;
    while let Some(open) = rest.find("{%") {
        out.push_str(&rest[..open]);
        let tag = &rest[open..];
        let Some(close) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..close];
        let (lead, body) = match inner.strip_prefix(['-', '+']) {
            Some(b) => (&inner[..1], b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix(['-', '+']) {
            Some(b) => (b, &body[b.len()..]),
            None => (body, ""),
        };
        let replacement = match body.trim() {
            "generation" => Some("filter loam_generation"),
            "endgeneration" => Some("endfilter"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                found = true;
                let _ = write!(out, "{{%{lead} {r} {trail}%}}");
            }
            None => out.push_str(&tag[..close + 2]),
        }
        rest = &tag[close + 2..];
    }
    out.push_str(rest);
    (out, found)
}

/// Removes the generation markers and returns where they were, as byte ranges of the result.
fn split_generation_markers(raw: String) -> (String, Vec<Range<usize>>) {
    if !has_marker(&raw) {
        return (raw, Vec::new());
    }
    let mut out = String::with_capacity(raw.len());
    let mut spans = Vec::new();
    let mut starts = Vec::new();
    for c in raw.chars() {
        match c {
            GEN_START => starts.push(out.len()),
            GEN_END => {
                if let Some(start) = starts.pop() {
                    // Nested blocks count once, as the outer one (jinja2 would record both;
                    // the union is the same).
                    if starts.is_empty() {
                        spans.push(start..out.len());
                    }
                }
            }
            c => out.push(c),
        }
    }
    (out, spans)
}

/// Prints values as Python's `str()` would: `None`, `True`, `False`, lists and dicts as their
/// `repr` (`['a', 'b']`, `{'k': 1}`).
fn python_formatter(
    out: &mut minijinja::Output,
    state: &State,
    value: &Value,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Seq | ValueKind::Map => {
            let mut s = String::new();
            python_repr(&mut s, value)?;
            out.write_str(&s).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `repr` of a template value.
fn python_repr(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::String => python_str_repr(out, value.as_str().unwrap_or("")),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, &item)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, &key)?;
                out.push_str(": ");
                python_repr(out, &value.get_item(&key)?)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

fn python_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)` — no HTML escaping, Python's `", "` and `": "` separators.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(v.as_str().unwrap_or("").to_string()),
        },
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn write_json(out: &mut String, value: &Value, opts: &JsonOpts, level: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let s = value.to_string();
            out.push_str(match s.as_str() {
                "inf" => "Infinity",
                "-inf" => "-Infinity",
                "nan" | "NaN" => "NaN",
                s => s,
            });
        }
        ValueKind::String => write_json_str(out, value.as_str().unwrap_or(""), opts.ensure_ascii),
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if opts.sort_keys {
                keys.sort();
            }
            let items = keys
                .into_iter()
                .map(|k| {
                    let v = value.get_item(&k)?;
                    Ok((k, v))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            write_container(out, opts, level, ('{', '}'), &items, |out, (k, v)| {
                match k.as_str() {
                    Some(s) => write_json_str(out, s, opts.ensure_ascii),
                    None => write_json_str(out, &k.to_string(), opts.ensure_ascii),
                }
                out.push_str(&opts.key_sep);
                write_json(out, v, opts, level + 1)
            })?;
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, opts, level, ('[', ']'), &items, |out, v| {
                write_json(out, v, opts, level + 1)
            })?;
        }
        _ => write_json_str(out, &value.to_string(), opts.ensure_ascii),
    }
    Ok(())
}

fn write_container<T>(
    out: &mut String,
    opts: &JsonOpts,
    level: usize,
    (open, close): (char, char),
    items: &[T],
    mut write_item: impl FnMut(&mut String, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&opts.item_sep);
        }
        if let Some(indent) = &opts.indent {
            out.push('\n');
            out.push_str(&indent.repeat(level + 1));
        }
        write_item(out, item)?;
    }
    if let Some(indent) = &opts.indent {
        out.push('\n');
        out.push_str(&indent.repeat(level));
    }
    out.push(close);
    Ok(())
}

/// A JSON string as Python's json module writes it.
fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `datetime.now().strftime(format)` (local time is taken as UTC: no time zone database here).
fn strftime_now(format: &str) -> Result<String, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(strftime(format, secs))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The common `strftime` directives for a UTC Unix time.
fn strftime(format: &str, unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{year}"),
            Some('y') => write!(out, "{:02}", year.rem_euclid(100)),
            Some('m') => write!(out, "{month:02}"),
            Some('d') => write!(out, "{day:02}"),
            Some('e') => write!(out, "{day:>2}"),
            Some('B') => write!(out, "{month_name}"),
            Some('b') | Some('h') => write!(out, "{}", &month_name[..3]),
            Some('A') => write!(out, "{}", WEEKDAYS[weekday]),
            Some('a') => write!(out, "{}", &WEEKDAYS[weekday][..3]),
            Some('H') => write!(out, "{hour:02}"),
            Some('I') => write!(out, "{:02}", (hour + 11) % 12 + 1),
            Some('p') => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            Some('M') => write!(out, "{minute:02}"),
            Some('S') => write!(out, "{second:02}"),
            Some('j') => write!(out, "{day_of_year:03}"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::fixtures::{json, tokenizer};

    fn messages(v: &serde_json::Value) -> Vec<Message> {
        serde_json::from_value(v.clone()).unwrap()
    }

    fn inline(text: &str) -> ChatTemplate {
        let tokens = [("bos_token", "<s>"), ("eos_token", "</s>")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let source = TemplateSource {
            origin: "test template".into(),
            text: text.into(),
        };
        ChatTemplate::new(&source, &tokens).unwrap()
    }

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_match_transformers_apply_chat_template() {
        let expected = json("expected_chat.json");
        let mut checked = 0;
        let mut templates = std::collections::HashMap::new();
        for case in expected["cases"].as_array().unwrap() {
            let name = case["template"].as_str().unwrap();
            let ctx = format!("{name} / {}", case["conversation"]);
            let template = templates.entry(name).or_insert_with(|| {
                ChatTemplate::from_tokenizer(&tokenizer(name))
                    .unwrap()
                    .unwrap()
            });
            let msgs = messages(&case["messages"]);
            if let Some(error) = case["error"].as_str() {
                let err = template.render(&msgs, false).unwrap_err().to_string();
                assert!(err.contains(error), "{ctx}: {err}");
                assert!(err.contains(template.origin()), "{ctx}: {err}");
                continue;
            }
            assert_eq!(
                template.render(&msgs, false).unwrap(),
                case["rendered"],
                "{ctx}"
            );
            assert_eq!(
                template.render(&msgs, true).unwrap(),
                case["rendered_generation_prompt"],
                "{ctx}"
            );
            checked += 1;
        }
        assert!(checked >= 60, "only {checked} renders checked");
    }

    #[test]
    fn trim_blocks_and_lstrip_blocks_are_on() {
        let t = inline("{% for m in messages %}\n    {% if m.role == 'user' %}\nU: {{ m.content }}\n    {% endif %}\n{% endfor %}\nend");
        let out = t
            .render(&[msg("user", "a"), msg("assistant", "b")], false)
            .unwrap();
        assert_eq!(out, "U: a\nend");
    }

    #[test]
    fn trailing_newline_of_the_template_is_dropped() {
        assert_eq!(inline("x\n").render(&[], false).unwrap(), "x");
    }

    #[test]
    fn raise_exception_names_the_template_and_the_message() {
        let t = inline("{{ raise_exception('roles must alternate') }}");
        let err = t
            .render(&[msg("user", "a")], false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "chat template test template rejected the conversation: roles must alternate; \
             fix the conversation, or set data.chat_template to a template that accepts it"
        );
    }

    /// Gemma 1/2's templates raise on a system message; the error says what to do.
    #[test]
    fn a_template_without_a_system_role_says_what_to_do() {
        let t = inline("{{ raise_exception('System role not supported') }}");
        let err = t
            .render(&[msg("system", "a")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("System role not supported"), "{err}");
        assert!(err.contains("remove the system messages"), "{err}");
        assert!(err.contains("data.chat_template"), "{err}");
    }

    #[test]
    fn render_errors_name_the_template_and_line() {
        let t = inline("ok\n{{ messages[0].content.nosuchmethod() }}");
        let err = t
            .render(&[msg("user", "a")], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test template") && err.contains("line 2"),
            "{err}"
        );
        let source = TemplateSource {
            origin: "recipe data.chat_template".into(),
            text: "{% if %}".into(),
        };
        let err = ChatTemplate::new(&source, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("recipe data.chat_template") && err.contains("does not parse"),
            "{err}"
        );
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let t = inline("{{ {'a': 'é<&>', 'b': [1, 2.5, none, true], 'c': {}} | tojson }}|{{ 'x' | tojson(ensure_ascii=true) }}|{{ 'ü🙂' | tojson(ensure_ascii=true) }}|{{ [1] | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true, separators=[',', ':']) }}");
        assert_eq!(
            t.render(&[], false).unwrap(),
            r#"{"a": "é<&>", "b": [1, 2.5, null, true], "c": {}}|"x"|"\u00fc\ud83d\ude42"|[
  1
]|{"a":2,"b":1}"#
        );
    }

    #[test]
    fn a_prefix_renders_as_those_messages_alone() {
        let t = inline("{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}{{ tools is none }}{{ documents is none }}{{ foo is defined }}{% if add_generation_prompt %}>{% endif %}");
        let msgs = [msg("user", "a"), msg("assistant", "b"), msg("user", "c")];
        let conversation = t.conversation(&msgs).unwrap();
        for len in 0..=msgs.len() {
            for prompt in [false, true] {
                let (text, spans) = t.render_prefix(&conversation, len, prompt).unwrap();
                assert_eq!(text, t.render(&msgs[..len], prompt).unwrap());
                assert!(spans.is_empty());
            }
        }
        assert_eq!(
            t.render(&msgs[..1], true).unwrap(),
            "<s>user:a;TrueTrueFalse>"
        );
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let t = inline("{{ none }} {{ true }} {{ [1, 'a', \"it's\"] }} {{ {'k': false} }} {{ 'A b'.lower().split() }}");
        assert_eq!(
            t.render(&[], false).unwrap(),
            r#"None True [1, 'a', "it's"] {'k': False} ['a', 'b']"#
        );
    }

    #[test]
    fn generation_blocks_give_spans_and_render_like_plain_text() {
        let t = inline("{% for m in messages %}<{{ m.role }}>\n{% if m.role == 'assistant' %}\n  {%- generation -%}\n{{ m.content }}{{ eos_token }}\n{%- endgeneration %}\n{% else %}\n{{ m.content }}\n{% endif %}\n{% endfor %}");
        assert!(t.has_generation_markers());
        let msgs = [
            msg("user", "hi"),
            msg("assistant", "yo"),
            msg("user", "q"),
            msg("assistant", "a"),
        ];
        let (text, spans) = t.render_with_generation_spans(&msgs, false).unwrap();
        assert_eq!(
            text,
            "<user>\nhi\n<assistant>\nyo</s><user>\nq\n<assistant>\na</s>"
        );
        let got: Vec<&str> = spans.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(got, ["yo</s>", "a</s>"]);
        assert_eq!(t.render(&msgs, false).unwrap(), text);
        let err = t.render(&[msg("user", "\u{FDD0}")], false).unwrap_err();
        assert!(err.to_string().contains("U+FDD0"));
    }

    #[test]
    fn engine_panics_become_errors() {
        // minijinja 2.24 indexes out of bounds reversing an empty sequence.
        let t = inline("{% for m in messages[::-1] %}{{ m.role }}{% endfor %}");
        let err = t.render(&[], false).unwrap_err().to_string();
        assert!(
            err.contains("test template") && err.contains("crashed"),
            "{err}"
        );
        assert_eq!(t.render(&[msg("user", "a")], false).unwrap(), "user");
    }

    #[test]
    fn strftime_formats_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(
            strftime("%A %B %e %H:%M:%S %p %I %y %j %%", t),
            "Thursday February 29 13:05:09 PM 01 24 060 %"
        );
        assert_eq!(strftime("%Y-%m-%d", 0), "1970-01-01");
        let now = inline("{{ strftime_now('%Y') }}")
            .render(&[], false)
            .unwrap();
        assert!(now.parse::<i32>().unwrap() >= 2024);
    }
}
