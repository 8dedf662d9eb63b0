//! The boundary between the data stream and tokenization: the stream hands each
//! [`Sample`] to an [`Encoder`] (in loam, the model's tokenizer and chat template).

use crate::{Example, Sample, TrainOn};

/// What an encoder needs to know besides the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// The source's `add_eos`: end text / prompt-completion rows with EOS.
    pub add_eos: bool,
    /// The recipe's `data.train_on`.
    pub train_on: TrainOn,
}

/// Turns a sample into token ids and labels. Any `Fn(&Sample, &EncodeOptions) ->
/// anyhow::Result<Example>` is an encoder. An error is a bad row: it names the problem
/// (e.g. a template that fails to render); the stream adds the file / row.
pub trait Encoder {
    fn encode(&self, sample: &Sample, opts: &EncodeOptions) -> anyhow::Result<Example>;
}

impl<F> Encoder for F
where
    F: Fn(&Sample, &EncodeOptions) -> anyhow::Result<Example>,
{
    fn encode(&self, sample: &Sample, opts: &EncodeOptions) -> anyhow::Result<Example> {
        self(sample, opts)
    }
}
