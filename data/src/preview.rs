//! What `loam data preview` shows: a sample's text with the trained spans marked, so a
//! user can see at a glance which tokens carry loss.

use crate::tokenize::Tokenizer;
use crate::{Example, IGNORE_INDEX};
use anyhow::Result;

/// How trained spans are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// Green on a terminal.
    Color,
    /// `[[` … `]]` around trained spans (pipes, files, tests).
    Brackets,
}

/// The decoded text of `example`, trained spans marked. Special tokens are kept visible.
pub fn render_marked(example: &Example, tokenizer: &Tokenizer, marks: Marks) -> Result<String> {
    let (open, close) = match marks {
        Marks::Color => ("\x1b[32m", "\x1b[0m"),
        Marks::Brackets => ("[[", "]]"),
    };
    let mut out = String::new();
    let mut start = 0;
    let ids = &example.input_ids;
    while start < ids.len() {
        let trained = example.labels[start] != IGNORE_INDEX;
        let end = (start..ids.len())
            .find(|&i| (example.labels[i] != IGNORE_INDEX) != trained)
            .unwrap_or(ids.len());
        let text = tokenizer.decode(&ids[start..end], false)?;
        if trained {
            out.push_str(open);
            out.push_str(&text);
            out.push_str(close);
        } else {
            out.push_str(&text);
        }
        start = end;
    }
    Ok(out)
}

/// Trained tokens of an example.
pub fn trained_tokens(example: &Example) -> usize {
    example
        .labels
        .iter()
        .filter(|&&l| l != IGNORE_INDEX)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    #[test]
    fn trained_spans_are_bracketed() {
        let tokenizer = testutil::word_tokenizer(&["hello", "world", "again"]);
        let ids: Vec<u32> = ["hello", "world", "again"]
            .iter()
            .map(|w| tokenizer.token_to_id(w).unwrap())
            .collect();
        let example = Example {
            input_ids: ids.clone(),
            labels: vec![IGNORE_INDEX, ids[1] as i64, ids[2] as i64],
            rejected_start: None,
        };
        let text = render_marked(&example, &tokenizer, Marks::Brackets).unwrap();
        assert!(
            text.starts_with("hello") && text.contains("[[") && text.ends_with("]]"),
            "{text}"
        );
        assert!(
            !text[..text.find("[[").unwrap()].contains("world"),
            "{text}"
        );
        assert_eq!(trained_tokens(&example), 2);
    }
}
