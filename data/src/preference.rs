//! Preference pairs (format `preference`, for DPO and ORPO): a prompt and two completions,
//! the preferred (`chosen`) and the other (`rejected`), tokenized as TRL's `DPOTrainer`
//! (1.16) tokenizes them. One [`Example`] holds both sequences, prompt + chosen then prompt +
//! rejected ([`Example::rejected_start`]); the stream batches them as two rows side by side.

use anyhow::{bail, Result};

use crate::encode::Encoder;
use crate::stream::EncodeOptions;
use crate::{Example, Message, PairText, IGNORE_INDEX};

/// The prompt alone and the prompt followed by each completion are tokenized: as
/// `tokenizer(text)` for plain text, the EOS token's text appended to a completion that does
/// not already end with it (unless the source sets `add_eos = false`); as
/// `apply_chat_template` for messages, the prompt with the generation prompt. A completion
/// starts where the prompt's tokens stop agreeing with both sequences' (tokens can merge
/// across the boundary, and a template may render a prompt alone differently) and runs to
/// the sequence's end: every token of it is trained, whatever `train_on` says.
pub fn encode(
    encoder: &Encoder,
    [prompt, chosen, rejected]: [&PairText; 3],
    opts: &EncodeOptions,
) -> Result<Example> {
    let tokenizer = encoder.tokenizer();
    let (prompt_ids, [chosen_ids, rejected_ids]) = match (prompt, chosen, rejected) {
        (PairText::Plain(p), PairText::Plain(c), PairText::Plain(r)) => {
            let eos = opts
                .add_eos
                .then(|| tokenizer.special_token("eos_token"))
                .flatten();
            let sequence = |completion: &str| {
                let end = eos.filter(|e| !completion.ends_with(e)).unwrap_or("");
                tokenizer.encode(&format!("{p}{completion}{end}"), true)
            };
            (tokenizer.encode(p, true)?, [sequence(c)?, sequence(r)?])
        }
        (PairText::Messages(p), PairText::Messages(c), PairText::Messages(r)) => {
            let template = encoder.require_template()?;
            let encode = |text: String| tokenizer.encode(&text, false);
            let sequence = |completion: &[Message]| {
                let conversation: Vec<Message> = p.iter().chain(completion).cloned().collect();
                encode(template.render(&conversation, false)?)
            };
            (
                encode(template.render(p, true)?)?,
                [sequence(c)?, sequence(r)?],
            )
        }
        _ => bail!("a preference pair is all plain text or all messages, not a mix"),
    };
    let prompt_len =
        common_prefix(&prompt_ids, &chosen_ids).min(common_prefix(&prompt_ids, &rejected_ids));
    for (side, ids) in [("chosen", &chosen_ids), ("rejected", &rejected_ids)] {
        if ids.len() <= prompt_len {
            bail!("the {side} completion encodes to no tokens after the prompt");
        }
    }
    let labels = |ids: &[u32]| {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| {
                if i < prompt_len {
                    IGNORE_INDEX
                } else {
                    i64::from(id)
                }
            })
            .collect::<Vec<_>>()
    };
    let rejected_start = chosen_ids.len();
    Ok(Example {
        labels: [labels(&chosen_ids), labels(&rejected_ids)].concat(),
        input_ids: [chosen_ids, rejected_ids].concat(),
        rejected_start: Some(rejected_start),
    })
}

/// A pair's two sequences, chosen then rejected; `None` for a single sequence.
pub fn sides(example: &Example) -> Option<[Example; 2]> {
    let split = example.rejected_start?;
    let side = |range: std::ops::Range<usize>| Example {
        input_ids: example.input_ids[range.clone()].to_vec(),
        labels: example.labels[range].to_vec(),
        rejected_start: None,
    };
    Some([side(0..split), side(split..example.input_ids.len())])
}

/// How many leading tokens two sequences share (TRL's `common_prefix_length`).
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::{DataConfig, Format, OnError, SourceConfig};
    use crate::error::DataError;
    use crate::source::Source;
    use crate::stream::{BatchStream, Split};
    use crate::testutil::*;
    use crate::tokenize::fixtures::{templates_dir, tokenizer, u32s};
    use crate::{Sample, TrainOn};

    /// `$LOAM_FIXTURES/preference` (scripts/oracle/fixtures_preference.py).
    fn fixtures() -> PathBuf {
        let dir = templates_dir().parent().unwrap().join("preference");
        assert!(
            dir.join("tokens.json").is_file(),
            "preference fixtures missing in {}: run scripts/oracle/build.sh",
            dir.display()
        );
        dir
    }

    fn samples(path: &Path) -> Vec<Sample> {
        let source = Source::open(
            0,
            &SourceConfig::new(path.to_str().unwrap(), Format::Preference),
        );
        source
            .unwrap()
            .rows()
            .map(|r| r.unwrap().sample.unwrap())
            .collect()
    }

    fn encode_sample(encoder: &Encoder, sample: &Sample) -> Example {
        encoder.encode(sample).unwrap()
    }

    /// Every row of both conventions, through every fixture tokenizer (BOS added by the
    /// post-processor or not, templates with default system prompts, the `{% generation %}`
    /// one, a template that renders the prompt alone differently), equals TRL's ids; the
    /// trained tokens are exactly TRL's completion.
    #[test]
    fn pairs_tokenize_as_trl_in_both_conventions() {
        let dir = fixtures();
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap())
                .unwrap();
        let mut checked = 0;
        for (name, by_kind) in expected["tokenizers"].as_object().unwrap() {
            let tok = if name == "llama-gqa" {
                crate::Tokenizer::from_model_dir(&dir.join("../models/llama-gqa")).unwrap()
            } else {
                tokenizer(name)
            };
            let encoder = Encoder::new(tok, None, TrainOn::Assistant, true).unwrap();
            for kind in ["plain", "chat"] {
                let rows = &by_kind[kind];
                if rows.get("error").is_some() {
                    continue;
                }
                let data = samples(&dir.join(format!("{kind}.parquet")));
                assert_eq!(data.len(), rows.as_array().unwrap().len());
                for (i, (sample, want)) in data.iter().zip(rows.as_array().unwrap()).enumerate() {
                    let ctx = format!("{name} {kind} row {i}");
                    let ex = encode_sample(&encoder, sample);
                    let [chosen, rejected] = sides(&ex).unwrap();
                    let prompt = u32s(&want["prompt_ids"]);
                    for (side, got) in [("chosen", &chosen), ("rejected", &rejected)] {
                        let completion = u32s(&want[format!("{side}_ids")]);
                        assert_eq!(
                            got.input_ids,
                            [&prompt[..], &completion].concat(),
                            "{ctx} {side}"
                        );
                        let trained: Vec<u32> = got
                            .input_ids
                            .iter()
                            .zip(&got.labels)
                            .filter(|(_, &l)| l != IGNORE_INDEX)
                            .map(|(&id, _)| id)
                            .collect();
                        assert_eq!(trained, completion, "{ctx} {side}: trained tokens");
                        assert!(got.labels[..prompt.len()]
                            .iter()
                            .all(|&l| l == IGNORE_INDEX));
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 200, "only {checked} pairs checked");
    }

    #[test]
    fn add_eos_false_leaves_plain_completions_as_they_are() {
        let dir = fixtures();
        let tok = crate::Tokenizer::from_model_dir(&dir.join("../models/llama-gqa")).unwrap();
        let eos = tok.eos_token_id().unwrap();
        let encoder = Encoder::new(tok, None, TrainOn::Assistant, true).unwrap();
        let sample = &samples(&dir.join("plain.parquet"))[0];
        let with = encode_sample(&encoder, sample);
        let opts = EncodeOptions {
            add_eos: false,
            train_on: TrainOn::Assistant,
        };
        let without = encoder.encode_with(sample, &opts).unwrap();
        let [wc, wr] = sides(&with).unwrap();
        let [nc, nr] = sides(&without).unwrap();
        assert_eq!(*wc.input_ids.last().unwrap(), eos);
        assert_eq!(wc.input_ids[..wc.input_ids.len() - 1], nc.input_ids[..]);
        assert_eq!(wr.input_ids[..wr.input_ids.len() - 1], nr.input_ids[..]);
    }

    // ── bad rows: each names the file, row and column ─────────────────────────────────────

    fn plain_file(
        dir: &Path,
        prompt: &[Option<&str>],
        chosen: &[Option<&str>],
        rejected: &[Option<&str>],
    ) -> PathBuf {
        write_parquet(
            &dir.join("pairs.parquet"),
            vec![
                strings("prompt", prompt),
                strings("chosen", chosen),
                strings("rejected", rejected),
            ],
            10,
        )
    }

    fn row_errors(path: &Path) -> Vec<Option<DataError>> {
        Source::open(
            0,
            &SourceConfig::new(path.to_str().unwrap(), Format::Preference),
        )
        .unwrap()
        .rows()
        .map(|r| r.unwrap().sample.err())
        .collect()
    }

    fn assert_names(err: &Option<DataError>, row: &str, column: &str, what: &str) {
        let err = err.as_ref().expect("a bad row");
        let msg = err.to_string();
        assert!(err.is_row_error(), "{msg}");
        for part in ["pairs.parquet", row, column, what, "hint:"] {
            assert!(msg.contains(part), "`{part}` missing from: {msg}");
        }
    }

    #[test]
    fn bad_plain_pairs_name_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = plain_file(
            dir.path(),
            &[Some("Q"), Some("Q"), None, Some("Q"), Some("Q")],
            &[Some("a"), None, Some("a"), Some(""), Some("same")],
            &[Some("b"), Some("b"), Some("b"), Some("b"), Some("same")],
        );
        let errors = row_errors(&p);
        assert!(errors[0].is_none(), "{:?}", errors[0]);
        assert_names(&errors[1], "row 1", "column `chosen`", "is null");
        assert_names(&errors[2], "row 2", "column `prompt`", "is null");
        assert_names(&errors[3], "row 3", "column `chosen`", "is an empty string");
        assert_names(
            &errors[4],
            "row 4",
            "column `rejected`",
            "is the same as `chosen`",
        );
    }

    #[test]
    fn bad_conversational_pairs_name_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let user = |c| Some(vec![(Some("user"), Some(c))]);
        let assistant = |c| Some(vec![(Some("assistant"), Some(c))]);
        let p = write_parquet(
            &dir.path().join("pairs.parquet"),
            vec![
                messages(
                    "prompt",
                    ("role", "content"),
                    &[user("Hi"), user("Hi"), user("Hi"), user("Hi")],
                ),
                messages(
                    "chosen",
                    ("role", "content"),
                    &[
                        assistant("Helo"),
                        Some(vec![]),
                        user("Helo"),
                        assistant("Same"),
                    ],
                ),
                messages(
                    "rejected",
                    ("role", "content"),
                    &[
                        assistant("Go"),
                        assistant("Go"),
                        assistant("Go"),
                        assistant("Same"),
                    ],
                ),
            ],
            10,
        );
        let errors = row_errors(&p);
        assert!(errors[0].is_none(), "{:?}", errors[0]);
        assert_names(&errors[1], "row 1", "column `chosen`", "has no messages");
        assert_names(&errors[2], "row 2", "column `chosen`", "role `user`");
        assert_names(
            &errors[3],
            "row 3",
            "column `rejected`",
            "is the same as `chosen`",
        );
    }

    #[test]
    fn mixed_conventions_and_missing_columns_name_the_file_and_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("mixed.parquet"),
            vec![
                messages(
                    "prompt",
                    ("role", "content"),
                    &[Some(vec![(Some("user"), Some("Hi"))])],
                ),
                texts("chosen", &["a"]),
                texts("rejected", &["b"]),
            ],
            10,
        );
        let err = Source::open(
            0,
            &SourceConfig::new(p.to_str().unwrap(), Format::Preference),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "mixed.parquet",
            "column `chosen` holds strings",
            "column `prompt` holds lists of messages",
            "hint:",
        ] {
            assert!(err.contains(part), "`{part}` missing from: {err}");
        }
        let p = write_parquet(
            &dir.path().join("renamed.parquet"),
            vec![
                texts("question", &["Q"]),
                texts("good", &["a"]),
                texts("bad", &["b"]),
            ],
            10,
        );
        let err = Source::open(
            0,
            &SourceConfig::new(p.to_str().unwrap(), Format::Preference),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("has no column `prompt`") && err.contains("question"),
            "{err}"
        );
        let mut cfg = SourceConfig::new(p.to_str().unwrap(), Format::Preference);
        cfg.prompt_column = Some("question".into());
        cfg.chosen_column = Some("good".into());
        cfg.rejected_column = Some("bad".into());
        let rows: Vec<Sample> = Source::open(0, &cfg)
            .unwrap()
            .rows()
            .map(|r| r.unwrap().sample.unwrap())
            .collect();
        assert_eq!(
            rows,
            [Sample::Preference {
                prompt: PairText::Plain("Q".into()),
                chosen: PairText::Plain("a".into()),
                rejected: PairText::Plain("b".into()),
            }]
        );
    }

    fn pair_config(path: &Path, seq_len: usize) -> DataConfig {
        DataConfig {
            seq_len,
            shuffle: false,
            train: vec![SourceConfig::new(
                path.to_str().unwrap(),
                Format::Preference,
            )],
            ..DataConfig::default()
        }
    }

    #[test]
    fn skip_counts_bad_pairs_and_fail_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = plain_file(
            dir.path(),
            &[Some("Q"), Some("Q"), Some("Q")],
            &[Some("a"), Some("x"), Some("c")],
            &[Some("b"), Some("x"), Some("d")],
        );
        let mut cfg = pair_config(&p, 16);
        let err = BatchStream::new(&cfg, Split::Train, 0, 0, 1, byte_encoder)
            .unwrap()
            .next_batch(4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 1") && err.contains("is the same as `chosen`"),
            "{err}"
        );
        cfg.on_error = OnError::Skip;
        let mut s = BatchStream::new(&cfg, Split::Train, 0, 0, 1, byte_encoder)
            .unwrap()
            .with_epochs(1);
        let batch = s.next_batch(4).unwrap().unwrap();
        assert_eq!(batch.rows, 4, "two pairs, two rows each");
        assert_eq!((s.stats().pairs, s.stats().skipped), (2, 1));
        assert!(s.stats().summary().contains("pairs            2"));
    }

    /// Rows 2i and 2i + 1 are pair i's chosen and rejected sequences, each from position 0,
    /// never packed (even with `packing = true`), and a batch holds `micro_batch` pairs.
    #[test]
    fn pairs_are_batched_chosen_then_rejected_and_never_packed() {
        let dir = tempfile::tempdir().unwrap();
        let p = plain_file(
            dir.path(),
            &[Some("P"), Some("PP"), Some("PPP")],
            &[Some("c"), Some("cc"), Some("ccc")],
            &[Some("rrrr"), Some("r"), Some("rr")],
        );
        let mut cfg = pair_config(&p, 16);
        cfg.packing = true;
        let mut s = BatchStream::new(&cfg, Split::Train, 0, 0, 1, byte_encoder)
            .unwrap()
            .with_epochs(1);
        let b = s.next_batch(2).unwrap().unwrap();
        assert_eq!((b.rows, b.seq_len), (4, 16));
        let row = |r: usize| -> Vec<i64> {
            b.input_ids[r * 16..(r + 1) * 16]
                .iter()
                .zip(&b.doc_ids[r * 16..(r + 1) * 16])
                .filter(|(_, &d)| d >= 0)
                .map(|(&id, _)| id)
                .collect()
        };
        let bytes = |s: &str| s.bytes().map(i64::from).chain([0]).collect::<Vec<_>>();
        assert_eq!(row(0), bytes("Pc"));
        assert_eq!(row(1), bytes("Prrrr"));
        assert_eq!(row(2), bytes("PPcc"));
        assert_eq!(row(3), bytes("PPr"));
        assert!(b.doc_ids.iter().all(|&d| d <= 0), "one document per row");
        assert_eq!(&b.labels[16..22], &[-100, 114, 114, 114, 114, 0]);
        let last = s.next_batch(2).unwrap().unwrap();
        assert_eq!(last.rows, 2, "the last, odd pair is still whole");
        assert!(s.next_batch(2).unwrap().is_none());
    }

    /// Over-long pairs keep the start of each sequence (TRL's `keep_start`), or are dropped;
    /// a pair whose prompt fills `seq_len` has nothing to train and is dropped either way.
    #[test]
    fn overlong_pairs_are_truncated_per_sequence_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = plain_file(
            dir.path(),
            &[Some("PP"), Some("PPPPPP"), Some("P")],
            &[Some("cccccc"), Some("c"), Some("c")],
            &[Some("r"), Some("r"), Some("r")],
        );
        let mut cfg = pair_config(&p, 6);
        let run = |cfg: &DataConfig| {
            let mut s = BatchStream::new(cfg, Split::Train, 0, 0, 1, byte_encoder)
                .unwrap()
                .with_epochs(1);
            let batches: Vec<_> = std::iter::from_fn(|| s.next_batch(8).unwrap()).collect();
            (batches, s.stats().clone())
        };
        let (batches, stats) = run(&cfg);
        assert_eq!(batches[0].rows, 4, "pairs 0 and 2 remain");
        assert_eq!(&batches[0].input_ids[..6], &[80, 80, 99, 99, 99, 99]);
        assert_eq!((stats.truncated, stats.dropped), (1, 1));
        cfg.overlong = crate::Overlong::Drop;
        let (batches, stats) = run(&cfg);
        assert_eq!(batches[0].rows, 2, "only pair 2 remains");
        assert_eq!((stats.truncated, stats.dropped), (0, 2));
        cfg.overlong = crate::Overlong::Split;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("data.overlong") && err.contains("preference"),
            "{err}"
        );
    }

    #[test]
    fn preference_sources_cannot_mix_with_other_formats() {
        let mut cfg = pair_config(Path::new("p.parquet"), 16);
        cfg.eval = vec![SourceConfig::new("e.parquet", Format::Chat)];
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("data.eval[0].format") && err.contains("\"chat\""),
            "{err}"
        );
    }

    #[test]
    fn a_resumed_pair_stream_gives_the_same_batches() {
        let dir = tempfile::tempdir().unwrap();
        let n = 23;
        let prompts: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let chosen: Vec<String> = (0..n).map(|i| "c".repeat(1 + i % 5)).collect();
        let rejected: Vec<String> = (0..n).map(|i| "r".repeat(1 + i % 3)).collect();
        fn col(v: &[String]) -> Vec<Option<&str>> {
            v.iter().map(|s| Some(s.as_str())).collect()
        }
        let p = plain_file(dir.path(), &col(&prompts), &col(&chosen), &col(&rejected));
        let mut cfg = pair_config(&p, 8);
        cfg.shuffle = true;
        cfg.shuffle_buffer = 5;
        let stream = || {
            BatchStream::new(&cfg, Split::Train, 3, 0, 1, byte_encoder)
                .unwrap()
                .with_epochs(2)
        };
        let mut whole = stream();
        let all: Vec<_> = std::iter::from_fn(|| whole.next_batch(3).unwrap()).collect();
        for k in [1, 4, all.len() - 1] {
            let mut s = stream();
            let head: Vec<_> = (0..k).map(|_| s.next_batch(3).unwrap().unwrap()).collect();
            let mut resumed = stream();
            resumed.restore(s.cursor()).unwrap();
            let tail: Vec<_> = std::iter::from_fn(|| resumed.next_batch(3).unwrap()).collect();
            assert!(head.iter().chain(&tail).eq(all.iter()), "resumed at {k}");
        }
    }
}
