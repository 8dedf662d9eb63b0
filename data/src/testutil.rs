//! Test helpers: small Parquet files written with arrow, and a toy encoder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ListArray, StringArray, StructArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::{Example, Sample, IGNORE_INDEX};

/// A nullable string column.
pub fn strings(name: &str, values: &[Option<&str>]) -> (Field, ArrayRef) {
    (
        Field::new(name, DataType::Utf8, true),
        Arc::new(StringArray::from(values.to_vec())) as ArrayRef,
    )
}

/// A non-null string column.
pub fn texts(name: &str, values: &[&str]) -> (Field, ArrayRef) {
    strings(name, &values.iter().map(|v| Some(*v)).collect::<Vec<_>>())
}

/// A message: (role, content), either may be null.
pub type Msg<'a> = (Option<&'a str>, Option<&'a str>);

/// A `list<struct<role_key, content_key>>` column; a `None` row is a null list.
pub fn messages(name: &str, keys: (&str, &str), rows: &[Option<Vec<Msg>>]) -> (Field, ArrayRef) {
    let fields = Fields::from(vec![
        Field::new(keys.0, DataType::Utf8, true),
        Field::new(keys.1, DataType::Utf8, true),
    ]);
    let flat: Vec<Msg> = rows.iter().flatten().flatten().copied().collect();
    let roles = StringArray::from(flat.iter().map(|m| m.0).collect::<Vec<_>>());
    let contents = StringArray::from(flat.iter().map(|m| m.1).collect::<Vec<_>>());
    let structs = StructArray::new(
        fields.clone(),
        vec![Arc::new(roles) as ArrayRef, Arc::new(contents)],
        None,
    );
    let lengths = rows.iter().map(|r| r.as_ref().map_or(0, Vec::len));
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
    let item = Arc::new(Field::new("item", DataType::Struct(fields), true));
    let list = ListArray::new(
        item,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(structs),
        Some(nulls),
    );
    (
        Field::new(name, list.data_type().clone(), true),
        Arc::new(list),
    )
}

/// Write columns to a Parquet file with row groups of at most `group_rows` rows.
pub fn write_parquet(path: &Path, columns: Vec<(Field, ArrayRef)>, group_rows: usize) -> PathBuf {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path.to_path_buf()
}

/// A text file of `n` rows `"<prefix><i>"`, in row groups of `group_rows`.
pub fn numbered_text(path: &Path, prefix: &str, n: usize, group_rows: usize) -> PathBuf {
    let rows: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    write_parquet(path, vec![texts("text", &refs)], group_rows)
}

/// A toy encoder: the UTF-8 bytes of the text as ids, all trained; prompts untrained. A
/// pair is its two sequences, prompt + chosen then prompt + rejected.
pub fn byte_encoder(
    sample: &Sample,
    opts: &crate::stream::EncodeOptions,
) -> anyhow::Result<Example> {
    if let Sample::Preference {
        prompt,
        chosen,
        rejected,
    } = sample
    {
        let text = |t: &crate::PairText| match t {
            crate::PairText::Plain(s) => s.clone(),
            crate::PairText::Messages(m) => m.iter().map(|m| m.content.as_str()).collect(),
        };
        let side = |completion| {
            byte_encoder(
                &Sample::PromptCompletion {
                    prompt: text(prompt),
                    completion,
                },
                opts,
            )
        };
        let (mut pair, rejected) = (side(text(chosen))?, side(text(rejected))?);
        pair.rejected_start = Some(pair.input_ids.len());
        pair.input_ids.extend(rejected.input_ids);
        pair.labels.extend(rejected.labels);
        return Ok(pair);
    }
    let (prompt, trained) = match sample {
        Sample::Text { text } => (String::new(), text.clone()),
        Sample::PromptCompletion { prompt, completion } => (prompt.clone(), completion.clone()),
        Sample::Chat { messages } => {
            let mut p = String::new();
            for m in messages {
                p.push_str(&format!("<{}>{}", m.role, m.content));
            }
            (String::new(), p)
        }
        Sample::Preference { .. } => unreachable!("pairs are handled above"),
    };
    let mut input_ids: Vec<u32> = prompt.bytes().map(u32::from).collect();
    let mut labels: Vec<i64> = vec![IGNORE_INDEX; input_ids.len()];
    for b in trained.bytes() {
        input_ids.push(b as u32);
        labels.push(b as i64);
    }
    if opts.add_eos {
        input_ids.push(0);
        labels.push(0);
    }
    Ok(Example {
        input_ids,
        labels,
        rejected_start: None,
    })
}

/// A word-level [`crate::Tokenizer`] built in code: `<unk>` = 0, then `words` in order.
pub fn word_tokenizer(words: &[&str]) -> crate::Tokenizer {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab = std::iter::once("<unk>")
        .chain(words.iter().copied())
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    let mut inner = tokenizers::Tokenizer::new(model);
    inner.with_pre_tokenizer(Some(
        tokenizers::pre_tokenizers::whitespace::WhitespaceSplit,
    ));
    crate::Tokenizer::from_parts(inner, &serde_json::json!({}), None, None, None).unwrap()
}
