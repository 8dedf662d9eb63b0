//! A README's YAML front matter, the metadata the Hugging Face Hub reads: read one top-level
//! key (a scalar or a list), and write scalars and lists. Values are written as JSON strings,
//! which are valid YAML and escape everything that needs it.

use std::fmt::Write as _;

/// A top-level key: `key: value`, `key: [a, b]`, or a `- item` list below it. Empty when the
/// README has no front matter or no such key.
pub fn read(readme: &str, key: &str) -> Vec<String> {
    let mut lines = readme.lines();
    if lines.next().map(str::trim) != Some("---") {
        return Vec::new();
    }
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "---").collect();
    let unquote = |s: &str| {
        let s = s.trim();
        serde_json::from_str::<String>(s)
            .unwrap_or_else(|_| s.trim_matches(|c| c == '"' || c == '\'').to_string())
    };
    let Some(i) = body.iter().position(|l| l.starts_with(&format!("{key}:"))) else {
        return Vec::new();
    };
    let value = body[i][key.len() + 1..].trim();
    if let Some(inline) = value.strip_prefix('[') {
        return inline
            .trim_end_matches(']')
            .split(',')
            .map(unquote)
            .filter(|s| !s.is_empty())
            .collect();
    }
    if !value.is_empty() {
        return vec![unquote(value)];
    }
    body[i + 1..]
        .iter()
        .map_while(|l| l.trim_start().strip_prefix("- "))
        .map(unquote)
        .collect()
}

/// The first value of a key, if any.
pub fn read_one(readme: &str, key: &str) -> Option<String> {
    read(readme, key).into_iter().next()
}

/// Front matter being written.
#[derive(Default)]
pub struct Yaml(String);

impl Yaml {
    pub fn scalar(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.0, "{key}: {}", quote(value));
    }

    /// `key: value` when there is a value.
    pub fn maybe(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.scalar(key, v);
        }
    }

    /// A block list; nothing when `items` is empty.
    pub fn list<S: AsRef<str>>(&mut self, key: &str, items: &[S]) {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(self.0, "{key}:");
        for item in items {
            let _ = writeln!(self.0, "- {}", quote(item.as_ref()));
        }
    }

    /// Lines written as they are (nested structures such as `model-index`).
    pub fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// `---`, the keys, `---`, a blank line.
    pub fn finish(self) -> String {
        format!("---\n{}---\n\n", self.0)
    }
}

/// A YAML scalar: a JSON string is valid YAML and escapes everything that needs it.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scalars_inline_lists_and_block_lists() {
        let readme = "---\nlicense: apache-2.0\nlanguage:\n- en\n- cy\ntags: [a, \"b\"]\n---\n# x\nlicense: no\n";
        assert_eq!(read(readme, "license"), ["apache-2.0"]);
        assert_eq!(read(readme, "language"), ["en", "cy"]);
        assert_eq!(read(readme, "tags"), ["a", "b"]);
        assert!(read(readme, "datasets").is_empty());
        assert!(read("# no front matter\nlicense: mit\n", "license").is_empty());
    }

    #[test]
    fn what_is_written_reads_back() {
        let mut y = Yaml::default();
        y.scalar("model_name", "Name, with \"quotes\"");
        y.list("language", &["en", "cy"]);
        y.list::<&str>("datasets", &[]);
        y.maybe("license", None);
        let text = y.finish() + "# body\n";
        assert_eq!(
            read_one(&text, "model_name").unwrap(),
            "Name, with \"quotes\""
        );
        assert_eq!(read(&text, "language"), ["en", "cy"]);
        assert!(read(&text, "datasets").is_empty() && read(&text, "license").is_empty());
        assert!(text.starts_with("---\nmodel_name: \"Name, with \\\"quotes\\\"\"\n"));
    }
}
