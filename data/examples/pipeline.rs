//! `loam data stats` without the trainer (no libtorch): one epoch of a chat source through the
//! whole pipeline, for profiling the data path on its own.
//!
//!     cargo run --release -p loam-data --example pipeline -- MODEL_DIR DATA.parquet [THREADS]
//!
//! The recipe is the benchmark's (scripts/bench/data_pipeline.sh): seq_len 2048, packing on,
//! shuffle off, train_on = "assistant", one chat source with column `messages`.
//! `LOAM_NO_FAST_BPE=1` encodes through the `tokenizers` crate only (to compare).

use std::path::Path;
use std::time::Instant;

use loam_data::encode::Encoder;
use loam_data::{BatchStream, DataConfig, Format, SourceConfig, Split, Tokenizer, TrainOn};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: pipeline MODEL_DIR DATA.parquet [THREADS]");
    };
    let t0 = Instant::now();
    let mut source = SourceConfig::new(data.clone(), Format::Chat);
    source.column = Some("messages".into());
    let cfg = DataConfig {
        seq_len: 2048,
        packing: true,
        shuffle: false,
        train_on: TrainOn::Assistant,
        train: vec![source],
        ..DataConfig::default()
    };
    let mut tokenizer = Tokenizer::from_model_dir(Path::new(model))?;
    if std::env::var_os("LOAM_NO_FAST_BPE").is_some() {
        tokenizer = tokenizer.without_fast_path();
    }
    eprintln!("fast tokenizer path: {}", tokenizer.has_fast_path());
    let encoder = Encoder::new(tokenizer, None, cfg.train_on, true)?;
    let mut stream = BatchStream::new(&cfg, Split::Train, 0, 0, 1, encoder)?;
    if let Some(threads) = rest.first() {
        stream = stream.with_threads(threads.parse()?);
    }
    let mut stream = stream.with_epochs(1);
    // A fingerprint of every batch (ids, labels, positions), to compare runs exactly.
    let mut fingerprint = 0xcbf2_9ce4_8422_2325u64;
    while let Some(batch) = stream.next_batch(4)? {
        for &x in batch
            .input_ids
            .iter()
            .chain(&batch.labels)
            .chain(&batch.position_ids)
        {
            fingerprint = (fingerprint ^ x as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("{}", stream.stats().summary());
    println!("batches fingerprint {fingerprint:016x}");
    let stats = stream.stats();
    println!(
        "wall {secs:.1} s, {:.0} tokens/s",
        stats.tokens as f64 / secs
    );
    Ok(())
}
