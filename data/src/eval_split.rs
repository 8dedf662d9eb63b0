//! The eval split row by row, each row's sample with the options its source encodes it with:
//! what `loam train` scores held-out bits per byte and generations on. The same rows, in
//! the same order, as [`BatchStream::eval_examples`](crate::BatchStream::eval_examples):
//! `[[data.eval]]` sources, or else the rows of the train sources that `eval_fraction`
//! holds out, in file order.

use crate::config::{DataConfig, OnError};
use crate::error::{Location, Result};
use crate::source::{Row, Source};
use crate::stream::{is_held_out, EncodeOptions};
use crate::Sample;

/// One row of the eval split.
#[derive(Debug, Clone)]
pub struct EvalRow {
    pub loc: Location,
    pub sample: Sample,
    pub opts: EncodeOptions,
    /// The source's bad-row policy (a row that cannot be encoded is skipped under `skip`).
    pub on_error: OnError,
}

/// Every row of the eval split; bad rows are left out under `on_error = "skip"`, otherwise
/// an error naming the file, row and column.
pub fn eval_rows(cfg: &DataConfig) -> Result<impl Iterator<Item = Result<EvalRow>>> {
    cfg.validate()?;
    let (sources, fraction) = if cfg.eval.is_empty() {
        (&cfg.train, Some(cfg.eval_fraction))
    } else {
        (&cfg.eval, None)
    };
    let mut opened = Vec::with_capacity(sources.len());
    for (i, sc) in sources.iter().enumerate() {
        let opts = EncodeOptions {
            add_eos: sc.add_eos,
            train_on: cfg.train_on,
        };
        opened.push((Source::open(i, sc)?, opts, cfg.on_error_of(sc)));
    }
    Ok(opened
        .into_iter()
        .flat_map(move |(source, opts, on_error)| {
            source.into_rows().filter_map(move |row| match row {
                Err(e) => Some(Err(e)),
                Ok(Row { loc, .. }) if fraction.is_some_and(|f| !is_held_out(&loc, f)) => None,
                Ok(Row {
                    loc,
                    sample: Ok(sample),
                }) => Some(Ok(EvalRow {
                    loc,
                    sample,
                    opts,
                    on_error,
                })),
                Ok(Row { sample: Err(e), .. }) if on_error == OnError::Skip && e.is_row_error() => {
                    None
                }
                Ok(Row { sample: Err(e), .. }) => Some(Err(e)),
            })
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{byte_encoder, numbered_text};
    use crate::{BatchStream, Example};

    #[test]
    fn the_same_rows_as_the_eval_stream() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("a.parquet"), "alpha-", 40, 6);
        numbered_text(&dir.path().join("b.parquet"), "b", 25, 4);
        let cfg = DataConfig::from_toml_str(&format!(
            "eval_fraction = 0.3\n[[train]]\npath = {:?}\nformat = \"text\"\n",
            dir.path().join("*.parquet").display().to_string()
        ))
        .unwrap();
        let from_stream: Vec<Example> = BatchStream::eval_examples(&cfg, byte_encoder)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        let rows: Vec<EvalRow> = eval_rows(&cfg).unwrap().map(|r| r.unwrap()).collect();
        assert!(rows.len() > 5 && rows.len() < 40, "{} held out", rows.len());
        let from_rows: Vec<Example> = rows
            .iter()
            .map(|r| byte_encoder(&r.sample, &r.opts).unwrap())
            .collect();
        assert_eq!(from_rows, from_stream);
    }
}
