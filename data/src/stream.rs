//! The training stream: sources mixed by weight, epochs, a seeded shuffle buffer, the held-out
//! eval split, sharding by (rank, world), packing into batches, and a resumable [`Cursor`].
//!
//! Every random choice is a pure function of (seed, purpose, counter), so the state to resume
//! is a handful of counters plus *where* the buffered rows came from: a [`Cursor`] stores
//! row references, not tokens, and [`BatchStream::restore`] reads and encodes those rows again.
//!
//! Order of one source: its (file, row group) units, permuted per epoch when `shuffle = true`
//! (the same permutation on every rank), then every `world`-th unit from `rank`. Rows are read
//! in order within a unit.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{DataConfig, OnError, Overlong, SourceConfig};
use crate::error::{DataError, Location, Result, SKIP_HINT};
use crate::pack::{Bin, Packer, Piece, PieceRef, RowRef};
use crate::source::{GroupReader, Row, Source};
use crate::stats::DataStats;
use crate::{Batch, Example, Sample, TrainOn};

/// What an encoder needs to know besides the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// The source's `add_eos`: end text / prompt-completion rows with EOS.
    pub add_eos: bool,
    /// The recipe's `data.train_on`.
    pub train_on: TrainOn,
}

/// Turns a sample into token ids and labels; any `Fn(&Sample, &EncodeOptions) ->
/// anyhow::Result<Example>` is one. An error is a bad row (e.g. a template that fails to
/// render): the stream adds the file and row, and skips it under `on_error = "skip"`.
pub trait Encode {
    fn encode(&self, sample: &Sample, opts: &EncodeOptions) -> anyhow::Result<Example>;
}

impl<F> Encode for F
where
    F: Fn(&Sample, &EncodeOptions) -> anyhow::Result<Example>,
{
    fn encode(&self, sample: &Sample, opts: &EncodeOptions) -> anyhow::Result<Example> {
        self(sample, opts)
    }
}

/// Which rows a stream yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Train sources, minus the rows held out by `eval_fraction`.
    Train,
    /// `[[data.eval]]` sources, or the rows of train sources held out by `eval_fraction`.
    /// In file order, one epoch, never shuffled or packed.
    Eval,
}

// ── deterministic randomness ──────────────────────────────────────────────────────────────

const MIX: u64 = 0x006d_6978;
const SHUFFLE: u64 = 0x7368_7566;
const ORDER: u64 = 0x6f72_6465;
const HOLD_OUT: u64 = 0x686f_6c64;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5eed, |h, &p| splitmix(h ^ splitmix(p)))
}

/// A uniform number in [0, 1) from a hash.
fn unit_f64(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Whether a row belongs to the held-out eval split: a hash of the file's name (not its
/// directory, so moving the data keeps the split) and the row's index in the file. The
/// training seed is not involved: the eval rows stay the same across runs.
pub fn is_held_out(loc: &Location, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let name = loc
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    unit_f64(hash(&[HOLD_OUT, fnv1a(&name), loc.row_in_file])) < fraction
}

// ── one source, as a sequence of encoded rows ─────────────────────────────────────────────

/// Which rows of a source a stream keeps.
#[derive(Debug, Clone, Copy)]
enum Keep {
    All,
    NotHeldOut(f64),
    HeldOut(f64),
}

impl Keep {
    fn keeps(self, loc: &Location) -> bool {
        match self {
            Keep::All => true,
            Keep::NotHeldOut(f) => !is_held_out(loc, f),
            Keep::HeldOut(f) => is_held_out(loc, f),
        }
    }
}

/// A source's position: epoch, unit within this epoch's order, and row within the unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePos {
    pub epoch: u32,
    pub unit: usize,
    pub row: usize,
    /// Examples produced in this epoch (an epoch producing none ends the source).
    pub produced: u64,
    pub done: bool,
}

struct SourceStream {
    source: Source,
    opts: EncodeOptions,
    overlong: Overlong,
    on_error: OnError,
    keep: Keep,
    units: Vec<(usize, usize)>,
    order: Vec<(usize, usize)>,
    pos: SourcePos,
    reader: Option<GroupReader>,
    /// Rows read and encoded ahead, in order.
    ahead: VecDeque<Item>,
}

/// An encoded row and where it came from.
struct Item {
    row: RowRef,
    example: Example,
}

impl SourceStream {
    /// This rank's units for the current epoch.
    fn compute_order(&mut self, shuffle: bool, seed: u64, rank: usize, world: usize) {
        let mut units = self.units.clone();
        if shuffle {
            let s = hash(&[ORDER, seed, self.source.index as u64, self.pos.epoch as u64]);
            units.shuffle(&mut ChaCha8Rng::seed_from_u64(s));
        }
        self.order = units.into_iter().skip(rank).step_by(world).collect();
    }

    fn row_ref(&self, loc: &Location) -> RowRef {
        RowRef(
            self.source.index as u32,
            loc.file as u32,
            loc.row_group as u32,
            loc.row_in_group as u32,
        )
    }
}

/// Encode a row's sample, turning every failure into a row error that names the row.
fn encode_row(
    sample: Result<Sample>,
    loc: &Location,
    encoder: &(dyn Encode + Send + Sync),
    opts: &EncodeOptions,
) -> Result<Example> {
    let sample = sample?;
    let example = encoder
        .encode(&sample, opts)
        .map_err(|e| DataError::row(loc, None, format!("cannot be encoded: {e:#}"), SKIP_HINT))?;
    if example.input_ids.len() != example.labels.len() {
        return Err(DataError::row(
            loc,
            None,
            format!(
                "encodes to {} ids but {} labels (an encoder bug)",
                example.input_ids.len(),
                example.labels.len()
            ),
            "report it with this row",
        ));
    }
    if example.input_ids.is_empty() {
        return Err(DataError::row(loc, None, "encodes to no tokens", SKIP_HINT));
    }
    Ok(example)
}

/// Encode rows in order, on up to `threads` threads (each takes a contiguous slice).
fn encode_rows(
    rows: Vec<Row>,
    encoder: &(dyn Encode + Send + Sync),
    opts: &EncodeOptions,
    threads: usize,
) -> Vec<(Location, Result<Example>)> {
    let encode = |row: Row| {
        let result = encode_row(row.sample, &row.loc, encoder, opts);
        (row.loc, result)
    };
    if threads <= 1 || rows.len() < 2 * MIN_ROWS_PER_THREAD {
        return rows.into_iter().map(encode).collect();
    }
    let per_thread = rows.len().div_ceil(threads).max(MIN_ROWS_PER_THREAD);
    let mut slices = Vec::new();
    let mut rows = rows.into_iter();
    loop {
        let slice: Vec<Row> = rows.by_ref().take(per_thread).collect();
        if slice.is_empty() {
            break;
        }
        slices.push(slice);
    }
    // The calling thread encodes the first slice itself instead of waiting idle.
    let mut slices = slices.into_iter();
    let first = slices.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = slices
            .map(|slice| scope.spawn(move || slice.into_iter().map(encode).collect::<Vec<_>>()))
            .collect();
        let mut out: Vec<_> = first.into_iter().map(encode).collect();
        for h in handles {
            out.extend(
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        out
    })
}

// ── the cursor ────────────────────────────────────────────────────────────────────────────

/// A resumable position of a [`BatchStream`]: restoring it yields exactly the batches the
/// uninterrupted stream would have yielded next. Serializable (JSON is a few KB: it holds
/// row references, not tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub version: u32,
    pub split: Split,
    pub seed: u64,
    pub rank: usize,
    pub world: usize,
    /// `[path, files, rows]` of each source, to refuse a cursor from other data.
    pub sources: Vec<(String, usize, u64)>,
    pub positions: Vec<SourcePos>,
    pub mix_draws: u64,
    pub shuffle_draws: u64,
    pub exhausted: bool,
    /// Rows each source has read and encoded ahead, in order.
    pub ahead: Vec<Vec<RowRef>>,
    pub buffer: Vec<RowRef>,
    pub open_bins: Vec<Vec<PieceRef>>,
    pub ready_bins: Vec<Vec<PieceRef>>,
    pub stats: DataStats,
}

const CURSOR_VERSION: u32 = 1;

/// Rows a source reads and encodes at a time (spread over the encoding threads).
pub const READ_AHEAD_ROWS: usize = 256;
/// Fewer rows than this per thread are not worth a thread.
const MIN_ROWS_PER_THREAD: usize = 16;

/// Encoding threads by default: the machine's cores, at most 8.
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

// ── the stream ────────────────────────────────────────────────────────────────────────────

/// Batches for training (or eval) from a recipe's `[data]`.
pub struct BatchStream {
    cfg: DataConfig,
    split: Split,
    seed: u64,
    rank: usize,
    world: usize,
    epochs: Option<u32>,
    encoder: Box<dyn Encode + Send + Sync>,
    threads: usize,
    sources: Vec<SourceStream>,
    weights: Vec<f64>,
    shuffle: bool,
    mix_draws: u64,
    shuffle_draws: u64,
    buffer: Vec<Item>,
    /// The sources are exhausted (only with an epoch limit, or for eval).
    exhausted: bool,
    packer: Packer,
    stats: DataStats,
}

impl BatchStream {
    /// Open the sources of `split`, shard them for `rank` of `world`, and get ready to batch.
    /// A train stream cycles through epochs forever unless [`BatchStream::with_epochs`] limits
    /// it; an eval stream reads its rows once, in file order, one row per sequence.
    pub fn new(
        cfg: &DataConfig,
        split: Split,
        seed: u64,
        rank: usize,
        world: usize,
        encoder: impl Encode + Send + Sync + 'static,
    ) -> Result<BatchStream> {
        cfg.validate()?;
        if world == 0 || rank >= world {
            return Err(DataError::config(
                "world",
                format!("rank {rank} is not in a world of {world}"),
                Some("RANK must be below WORLD_SIZE".into()),
            ));
        }
        let (configs, keep): (&[SourceConfig], Keep) = match split {
            Split::Train if cfg.train.is_empty() => {
                return Err(DataError::config(
                    "data.train",
                    "has no sources",
                    Some("add a [[data.train]] table with path and format".into()),
                ))
            }
            Split::Train if cfg.eval.is_empty() && cfg.eval_fraction > 0.0 => {
                (&cfg.train, Keep::NotHeldOut(cfg.eval_fraction))
            }
            Split::Train => (&cfg.train, Keep::All),
            Split::Eval if !cfg.eval.is_empty() => (&cfg.eval, Keep::All),
            Split::Eval => (&cfg.train, Keep::HeldOut(cfg.eval_fraction)),
        };
        let mut sources = Vec::with_capacity(configs.len());
        for (i, sc) in configs.iter().enumerate() {
            let source = Source::open(i, sc)?;
            let units = source.units();
            let mut s = SourceStream {
                opts: EncodeOptions {
                    add_eos: sc.add_eos,
                    train_on: cfg.train_on,
                },
                overlong: cfg.overlong_of(sc),
                on_error: cfg.on_error_of(sc),
                keep,
                units,
                order: Vec::new(),
                pos: SourcePos::default(),
                reader: None,
                ahead: VecDeque::new(),
                source,
            };
            let shuffle = cfg.shuffle && split == Split::Train;
            s.compute_order(shuffle, seed, rank, world);
            if split == Split::Train && s.units.is_empty() {
                return Err(DataError::file(
                    &sc.path,
                    "has no rows",
                    "point the source at the data, or remove it from the recipe",
                ));
            }
            if split == Split::Train && s.order.is_empty() {
                return Err(DataError::file(
                    &sc.path,
                    format!(
                        "has {} row group(s) with rows, too few to give one to each of {world} ranks (this is rank {rank})",
                        s.units.len()
                    ),
                    "write the data with smaller row groups (pyarrow: row_group_size=...) or in more files",
                ));
            }
            sources.push(s);
        }
        let train = split == Split::Train;
        Ok(BatchStream {
            weights: configs.iter().map(|s| s.weight).collect(),
            packer: Packer::new(
                cfg.seq_len,
                // Pairs are never packed: each sequence is its own row.
                cfg.packing && train && !cfg.is_preference(),
                if train {
                    cfg.padding
                } else {
                    crate::config::Padding::Longest
                },
                0,
            ),
            shuffle: cfg.shuffle && train,
            cfg: cfg.clone(),
            split,
            seed,
            rank,
            world,
            epochs: if train { None } else { Some(1) },
            encoder: Box::new(encoder),
            threads: default_threads(),
            sources,
            mix_draws: 0,
            shuffle_draws: 0,
            buffer: Vec::new(),
            exhausted: false,
            stats: DataStats::default(),
        })
    }

    /// Stop after `epochs` passes over every source (each row seen `epochs` times; weights
    /// then only set the interleaving). Without it a train stream cycles forever and weights
    /// set the proportions.
    pub fn with_epochs(mut self, epochs: u32) -> BatchStream {
        self.epochs = Some(epochs.max(1));
        self
    }

    /// The token id written in padding positions (default 0; they are never attended to).
    pub fn with_pad_id(mut self, pad_id: u32) -> BatchStream {
        self.packer.pad_id = pad_id;
        self
    }

    /// Encode on `threads` threads (default: the cores, at most 8). The batches are the same
    /// for any number of threads.
    pub fn with_threads(mut self, threads: usize) -> BatchStream {
        self.threads = threads.max(1);
        self
    }

    /// Counts so far (rows, tokens, truncated / dropped / skipped, padding).
    pub fn stats(&self) -> &DataStats {
        &self.stats
    }

    /// Rows in this stream's sources (all ranks, before hold-out), e.g. for a progress bar.
    pub fn total_rows(&self) -> u64 {
        self.sources.iter().map(|s| s.source.num_rows()).sum()
    }

    /// The current epoch: the lowest epoch any source is in.
    pub fn epoch(&self) -> u32 {
        self.sources.iter().map(|s| s.pos.epoch).min().unwrap_or(0)
    }

    /// Whether a config has an eval split at all (`[[data.eval]]` or `eval_fraction > 0`).
    pub fn has_eval(cfg: &DataConfig) -> bool {
        !cfg.eval.is_empty() || cfg.eval_fraction > 0.0
    }

    /// Every example of the eval split (see [`Split::Eval`]), each row on its own, in file
    /// order: what the trainer's periodic eval scores. Not truncated (the scorer truncates to
    /// `seq_len`, per the eval definition). Bad rows follow `on_error`.
    pub fn eval_examples(
        cfg: &DataConfig,
        encoder: impl Encode + Send + Sync + 'static,
    ) -> Result<impl Iterator<Item = Result<Example>>> {
        let mut stream = BatchStream::new(cfg, Split::Eval, 0, 0, 1, encoder)?;
        let mut done = false;
        Ok(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let next = stream.next_mixed();
            done = !matches!(next, Ok(Some(_)));
            next.transpose().map(|r| r.map(|item| item.example))
        }))
    }

    /// Micro-batches in one epoch of the train split for (rank, world): reads and encodes all
    /// the data once. For `train.epochs = E`, about `E ×` this many (packing differs at epoch
    /// boundaries by at most a batch per epoch).
    pub fn count_batches(
        cfg: &DataConfig,
        seed: u64,
        rank: usize,
        world: usize,
        micro_batch: usize,
        encoder: impl Encode + Send + Sync + 'static,
    ) -> Result<u64> {
        let stream = BatchStream::new(cfg, Split::Train, seed, rank, world, encoder)?;
        Ok(stream.epoch_stats(micro_batch, |_, _| {})?.batches)
    }

    /// Run one epoch of this stream (from its start) and return its counts: what
    /// `loam data stats` prints. `progress(rows_read, total_rows)` is called after each batch.
    pub fn epoch_stats(
        self,
        micro_batch: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<DataStats> {
        let mut stream = self.with_epochs(1);
        let total = stream.total_rows();
        while stream.next_batch(micro_batch)?.is_some() {
            progress(stream.stats.rows_read, total);
        }
        Ok(stream.stats)
    }

    /// The next micro-batch of up to `micro_batch` rows (`rows < micro_batch` only at the very
    /// end of a finite stream); `None` when the stream is exhausted. Of preference pairs,
    /// `micro_batch` pairs: rows 2i and 2i + 1 are pair i's chosen and rejected sequences.
    pub fn next_batch(&mut self, micro_batch: usize) -> Result<Option<Batch>> {
        let rows_per_example = if self.cfg.is_preference() { 2 } else { 1 };
        let micro_batch = micro_batch.max(1) * rows_per_example;
        while self.packer.ready_rows() < micro_batch && !self.exhausted {
            match self.next_example()? {
                Some(item) => {
                    let overlong = self.sources[item.row.0 as usize].overlong;
                    self.stats.examples += 1;
                    self.stats.pairs += u64::from(item.example.rejected_start.is_some());
                    self.stats.tokens += item.example.input_ids.len() as u64;
                    self.packer
                        .push(item.row, &item.example, overlong, &mut self.stats);
                }
                None => {
                    self.exhausted = true;
                    self.packer.flush();
                }
            }
        }
        Ok(self.packer.take_batch(micro_batch, &mut self.stats))
    }

    /// The next example after mixing and shuffling.
    fn next_example(&mut self) -> Result<Option<Item>> {
        if !self.shuffle {
            return self.next_mixed();
        }
        let capacity = self.cfg.shuffle_buffer.max(1);
        while self.buffer.len() < capacity {
            match self.next_mixed()? {
                Some(item) => self.buffer.push(item),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let j = hash(&[SHUFFLE, self.seed, self.shuffle_draws]) % self.buffer.len() as u64;
        self.shuffle_draws += 1;
        Ok(Some(self.buffer.swap_remove(j as usize)))
    }

    /// The next example from the sources: drawn by weight (train), or in source order (eval).
    fn next_mixed(&mut self) -> Result<Option<Item>> {
        loop {
            let live: Vec<usize> = (0..self.sources.len())
                .filter(|&i| !self.sources[i].pos.done)
                .collect();
            let Some(&first) = live.first() else {
                return Ok(None);
            };
            let pick = if self.split == Split::Eval || live.len() == 1 {
                first
            } else {
                let total: f64 = live.iter().map(|&i| self.weights[i]).sum();
                let mut u = unit_f64(hash(&[MIX, self.seed, self.mix_draws])) * total;
                self.mix_draws += 1;
                *live
                    .iter()
                    .find(|&&i| {
                        u -= self.weights[i];
                        u < 0.0
                    })
                    .unwrap_or(live.last().expect("live is not empty"))
            };
            if let Some(item) = self.next_from(pick)? {
                return Ok(Some(item));
            }
        }
    }

    /// The next usable row of source `s`, encoded; `None` once the source is done.
    fn next_from(&mut self, s: usize) -> Result<Option<Item>> {
        loop {
            if let Some(item) = self.sources[s].ahead.pop_front() {
                return Ok(Some(item));
            }
            if !self.read_ahead(s)? {
                return Ok(None);
            }
        }
    }

    /// Read up to [`READ_AHEAD_ROWS`] rows of source `s` (within one unit), encode them on
    /// `threads` threads, and queue the usable ones in order. `false` once the source is done.
    fn read_ahead(&mut self, s: usize) -> Result<bool> {
        let (shuffle, seed, rank, world, epochs) =
            (self.shuffle, self.seed, self.rank, self.world, self.epochs);
        let src = &mut self.sources[s];
        let mut rows = Vec::new();
        while rows.is_empty() {
            if src.pos.done {
                return Ok(false);
            }
            if src.reader.is_none() {
                if src.pos.unit >= src.order.len() {
                    // End of an epoch.
                    let empty = src.pos.produced == 0;
                    src.pos.epoch += 1;
                    src.pos.unit = 0;
                    src.pos.row = 0;
                    src.pos.produced = 0;
                    if empty || epochs.is_some_and(|n| src.pos.epoch >= n) {
                        src.pos.done = true;
                        if empty && self.split == Split::Train {
                            return Err(DataError::file(
                                &src.source.config.path,
                                "gave no usable rows in a whole epoch",
                                "check the rows (`loam data stats` lists skipped rows and why) and eval_fraction",
                            ));
                        }
                        return Ok(false);
                    }
                    src.compute_order(shuffle, seed, rank, world);
                    continue;
                }
                let (f, g) = src.order[src.pos.unit];
                src.reader = Some(src.source.read_group(f, g, src.pos.row)?);
            }
            let reader = src.reader.as_mut().expect("opened above");
            while rows.len() < READ_AHEAD_ROWS {
                let Some(row) = reader.next_row()? else {
                    src.reader = None;
                    src.pos.unit += 1;
                    src.pos.row = 0;
                    break;
                };
                src.pos.row += 1;
                self.stats.rows_read += 1;
                if src.keep.keeps(&row.loc) {
                    rows.push(row);
                } else if matches!(src.keep, Keep::NotHeldOut(_)) {
                    self.stats.held_out += 1;
                }
            }
        }
        for (loc, result) in encode_rows(rows, self.encoder.as_ref(), &src.opts, self.threads) {
            match result {
                Ok(example) => {
                    src.pos.produced += 1;
                    let row = src.row_ref(&loc);
                    src.ahead.push_back(Item { row, example });
                }
                Err(e) if e.is_row_error() && src.on_error == OnError::Skip => self.stats.skip(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Where the stream is: restore it into a stream built from the same recipe, seed, split,
    /// rank and world to continue exactly where this one is.
    pub fn cursor(&self) -> Cursor {
        let refs = |bin: &Bin| bin.pieces.iter().map(|p| p.at.clone()).collect::<Vec<_>>();
        Cursor {
            version: CURSOR_VERSION,
            split: self.split,
            seed: self.seed,
            rank: self.rank,
            world: self.world,
            sources: self.fingerprint(),
            positions: self.sources.iter().map(|s| s.pos.clone()).collect(),
            mix_draws: self.mix_draws,
            shuffle_draws: self.shuffle_draws,
            exhausted: self.exhausted,
            ahead: self
                .sources
                .iter()
                .map(|s| s.ahead.iter().map(|i| i.row).collect())
                .collect(),
            buffer: self.buffer.iter().map(|i| i.row).collect(),
            open_bins: self.packer.open.iter().map(refs).collect(),
            ready_bins: self.packer.ready.iter().map(refs).collect(),
            stats: self.stats.clone(),
        }
    }

    fn fingerprint(&self) -> Vec<(String, usize, u64)> {
        self.sources
            .iter()
            .map(|s| {
                (
                    s.source.config.path.clone(),
                    s.source.files.len(),
                    s.source.num_rows(),
                )
            })
            .collect()
    }

    /// Continue from `cursor`: the same source positions, random counters, shuffle buffer and
    /// packer rows (their rows are read and encoded again).
    pub fn restore(&mut self, cursor: Cursor) -> Result<()> {
        self.check_cursor(&cursor)?;
        for (s, pos) in self.sources.iter_mut().zip(&cursor.positions) {
            s.pos = pos.clone();
            s.reader = None;
            s.compute_order(self.shuffle, self.seed, self.rank, self.world);
        }
        self.mix_draws = cursor.mix_draws;
        self.shuffle_draws = cursor.shuffle_draws;
        self.exhausted = cursor.exhausted;
        self.stats = cursor.stats.clone();

        let mut wanted: Vec<RowRef> = cursor.buffer.clone();
        wanted.extend(cursor.ahead.iter().flatten());
        for bin in cursor.open_bins.iter().chain(&cursor.ready_bins) {
            wanted.extend(bin.iter().map(|p| p.row));
        }
        let examples = self.reread(wanted)?;
        let example = |r: &RowRef| -> Result<&Example> {
            examples.get(r).ok_or_else(|| {
                DataError::cursor(
                    format!("row {r:?} of the cursor cannot be read again"),
                    "the data changed since the checkpoint; start without --resume",
                )
            })
        };
        let items = |refs: &[RowRef]| -> Result<Vec<Item>> {
            refs.iter()
                .map(|r| {
                    Ok(Item {
                        row: *r,
                        example: example(r)?.clone(),
                    })
                })
                .collect()
        };
        self.buffer = items(&cursor.buffer)?;
        for (s, refs) in self.sources.iter_mut().zip(&cursor.ahead) {
            s.ahead = items(refs)?.into();
        }
        let bins = |list: &[Vec<PieceRef>]| -> Result<Vec<Bin>> {
            list.iter()
                .map(|pieces| {
                    let pieces = pieces
                        .iter()
                        .map(|p| {
                            let ex = example(&p.row)?;
                            if p.end as usize > ex.input_ids.len() || p.start > p.end {
                                return Err(DataError::cursor(
                                    format!("row {:?} now encodes to {} tokens, fewer than the checkpoint recorded", p.row, ex.input_ids.len()),
                                    "the tokenizer or the data changed since the checkpoint; start without --resume",
                                ));
                            }
                            Ok(Piece::new(p.row, ex, p.start as usize, p.end as usize))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Bin::from_pieces(pieces))
                })
                .collect()
        };
        self.packer.open = bins(&cursor.open_bins)?;
        self.packer.ready = bins(&cursor.ready_bins)?.into();
        Ok(())
    }

    fn check_cursor(&self, c: &Cursor) -> Result<()> {
        let fix = "resume with the recipe, seed and world size the checkpoint was made with, or start without --resume";
        if c.version != CURSOR_VERSION {
            return Err(DataError::cursor(
                format!(
                    "the cursor has version {}, this loam reads {CURSOR_VERSION}",
                    c.version
                ),
                fix,
            ));
        }
        if (c.split, c.seed, c.rank, c.world) != (self.split, self.seed, self.rank, self.world) {
            return Err(DataError::cursor(
                format!(
                    "the cursor is for split {:?}, seed {}, rank {} of {}; this stream is {:?}, seed {}, rank {} of {}",
                    c.split, c.seed, c.rank, c.world, self.split, self.seed, self.rank, self.world
                ),
                fix,
            ));
        }
        let now = self.fingerprint();
        if c.sources != now
            || c.positions.len() != self.sources.len()
            || c.ahead.len() != self.sources.len()
        {
            return Err(DataError::cursor(
                format!(
                    "the data changed: the checkpoint saw (path, files, rows) {:?}, now {:?}",
                    c.sources, now
                ),
                fix,
            ));
        }
        Ok(())
    }

    /// Read and encode the given rows again, each row group once.
    fn reread(&self, rows: Vec<RowRef>) -> Result<HashMap<RowRef, Example>> {
        let mut groups: BTreeMap<(u32, u32, u32), Vec<usize>> = BTreeMap::new();
        for r in rows {
            groups
                .entry((r.0, r.1, r.2))
                .or_default()
                .push(r.3 as usize);
        }
        let mut read: Vec<Vec<Row>> = (0..self.sources.len()).map(|_| Vec::new()).collect();
        for ((s, f, g), mut wanted) in groups {
            wanted.sort_unstable();
            wanted.dedup();
            let src = self.sources.get(s as usize).ok_or_else(|| {
                DataError::cursor(
                    format!(
                        "the cursor names source {s}, the recipe has {}",
                        self.sources.len()
                    ),
                    "start without --resume",
                )
            })?;
            let file = src.source.files.get(f as usize);
            if file.is_none_or(|file| g as usize >= file.row_group_rows.len()) {
                return Err(DataError::cursor(
                    format!("the cursor names file {f}, row group {g} of source {s}, which do not exist"),
                    "start without --resume",
                ));
            }
            read[s as usize].extend(src.source.read_rows(f as usize, g as usize, &wanted)?);
        }
        let mut out = HashMap::new();
        for (src, rows) in self.sources.iter().zip(read) {
            for (loc, example) in encode_rows(rows, self.encoder.as_ref(), &src.opts, self.threads)
            {
                out.insert(src.row_ref(&loc), example?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::testutil::*;
    use std::path::Path;

    fn text_source(path: &Path, weight: f64) -> SourceConfig {
        let mut s = SourceConfig::new(path.to_str().unwrap(), Format::Text);
        s.weight = weight;
        s
    }

    fn config(
        seq_len: usize,
        packing: bool,
        shuffle: bool,
        train: Vec<SourceConfig>,
    ) -> DataConfig {
        DataConfig {
            seq_len,
            packing,
            shuffle,
            train,
            ..DataConfig::default()
        }
    }

    fn stream(cfg: &DataConfig, split: Split) -> BatchStream {
        BatchStream::new(cfg, split, 7, 0, 1, byte_encoder).unwrap()
    }

    /// The documents of a batch as strings (the toy encoder's EOS 0 removed).
    fn docs(batch: &Batch) -> Vec<String> {
        let mut out = Vec::new();
        for r in 0..batch.rows {
            let row = r * batch.seq_len..(r + 1) * batch.seq_len;
            let mut current: Option<(i64, Vec<u8>)> = None;
            for i in row {
                let d = batch.doc_ids[i];
                if current.as_ref().is_none_or(|(cd, _)| *cd != d) {
                    if let Some((cd, bytes)) = current.take() {
                        if cd >= 0 {
                            out.push(String::from_utf8(bytes).unwrap());
                        }
                    }
                    current = Some((d, Vec::new()));
                }
                let id = batch.input_ids[i];
                if d >= 0 && id != 0 {
                    current.as_mut().unwrap().1.push(id as u8);
                }
            }
            if let Some((cd, bytes)) = current {
                if cd >= 0 {
                    out.push(String::from_utf8(bytes).unwrap());
                }
            }
        }
        out
    }

    fn all_docs(s: &mut BatchStream, micro_batch: usize) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(b) = s.next_batch(micro_batch).unwrap() {
            out.extend(docs(&b));
        }
        out
    }

    #[test]
    fn without_shuffle_or_packing_batches_are_the_rows_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("a.parquet"), "a", 5, 2);
        numbered_text(&dir.path().join("b.parquet"), "b", 3, 2);
        let cfg = config(8, false, false, vec![text_source(dir.path(), 1.0)]);
        let mut s = stream(&cfg, Split::Train).with_epochs(1);
        let b = s.next_batch(3).unwrap().unwrap();
        assert_eq!((b.rows, b.seq_len), (3, 8));
        // "a0" + EOS, right-padded; one row per sequence.
        assert_eq!(&b.input_ids[..8], &[97, 48, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b.labels[..8], &[-100, 48, 0, -100, -100, -100, -100, -100]);
        assert_eq!(&b.position_ids[..8], &[0, 1, 2, 0, 0, 0, 0, 0]);
        assert_eq!(&b.doc_ids[..8], &[0, 0, 0, -1, -1, -1, -1, -1]);
        assert_eq!(docs(&b), ["a0", "a1", "a2"]);
        assert_eq!(all_docs(&mut s, 3), ["a3", "a4", "b0", "b1", "b2"]);
        assert_eq!(s.next_batch(3).unwrap(), None);
    }

    fn mixed_config(dir: &Path) -> DataConfig {
        numbered_text(&dir.join("a.parquet"), "alpha-", 40, 6);
        numbered_text(&dir.join("b.parquet"), "b", 25, 4);
        let mut b = text_source(&dir.join("b.parquet"), 3.0);
        b.overlong = Some(Overlong::Split);
        let mut cfg = config(
            9,
            true,
            true,
            vec![text_source(&dir.join("a.parquet"), 1.0), b],
        );
        cfg.shuffle_buffer = 7;
        cfg
    }

    #[test]
    fn resume_gives_identical_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = mixed_config(dir.path());
        // A third source with over-long rows (split) and a bad row (skipped).
        let rows: Vec<Option<String>> = (0..30)
            .map(|i| (i != 11).then(|| format!("long{i}-{}", "~".repeat(i % 17))))
            .collect();
        let refs: Vec<Option<&str>> = rows.iter().map(Option::as_deref).collect();
        let p = write_parquet(
            &dir.path().join("long.parquet"),
            vec![strings("text", &refs)],
            8,
        );
        let mut long = text_source(&p, 2.0);
        long.overlong = Some(Overlong::Split);
        long.on_error = Some(OnError::Skip);
        cfg.train.push(long);
        // A fourth with row groups larger than a read-ahead, encoded on several threads.
        numbered_text(&dir.path().join("wide.parquet"), "w", 700, 300);
        cfg.train
            .push(text_source(&dir.path().join("wide.parquet"), 0.5));
        let stream = |cfg: &DataConfig, split| super::tests::stream(cfg, split).with_threads(3);
        let run = |s: &mut BatchStream| -> Vec<Batch> {
            std::iter::from_fn(|| s.next_batch(3).unwrap()).collect()
        };
        let mut whole = stream(&cfg, Split::Train).with_epochs(3);
        let full = run(&mut whole);
        let full_stats = whole.stats().clone();
        assert!(full.len() > 30, "{} batches", full.len());
        for k in [0, 1, 5, 17, full.len() - 1, full.len()] {
            let mut s = stream(&cfg, Split::Train).with_epochs(3);
            let head: Vec<Batch> = (0..k).map(|_| s.next_batch(3).unwrap().unwrap()).collect();
            let json = serde_json::to_string(&s.cursor()).unwrap();
            drop(s);
            let mut resumed = stream(&cfg, Split::Train).with_epochs(3);
            resumed
                .restore(serde_json::from_str(&json).unwrap())
                .unwrap();
            let tail = run(&mut resumed);
            assert_eq!(head.len() + tail.len(), full.len(), "k = {k}");
            assert!(
                head.iter().chain(&tail).eq(full.iter()),
                "batches differ after resuming at {k}"
            );
            assert!(
                json.len() < 20_000,
                "the cursor holds references, not tokens: {} bytes",
                json.len()
            );
            assert_eq!(resumed.stats(), &full_stats);
        }
        assert!(
            full_stats.split > 0 && full_stats.skipped > 0,
            "{full_stats:?}"
        );
    }

    #[test]
    fn threads_do_not_change_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("a.parquet"), "a", 1500, 700);
        numbered_text(&dir.path().join("b.parquet"), "b", 900, 400);
        let cfg = config(
            24,
            true,
            true,
            vec![
                text_source(&dir.path().join("a.parquet"), 1.0),
                text_source(&dir.path().join("b.parquet"), 1.0),
            ],
        );
        let run = |threads| {
            let mut s = stream(&cfg, Split::Train)
                .with_epochs(2)
                .with_threads(threads);
            std::iter::from_fn(|| s.next_batch(4).unwrap()).collect::<Vec<_>>()
        };
        let one = run(1);
        assert!(one.len() > 200, "{} batches", one.len());
        assert_eq!(one, run(4));
    }

    #[test]
    fn epochs_show_every_row_once_each_in_a_new_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = mixed_config(dir.path());
        let mut s = stream(&cfg, Split::Train).with_epochs(2);
        let got = all_docs(&mut s, 4);
        // Split pieces of "bNN" never happen at seq_len 9 ("b24" + EOS = 4 tokens), "alpha-NN" fits.
        let mut want: Vec<String> = (0..40)
            .map(|i| format!("alpha-{i}"))
            .chain((0..25).map(|i| format!("b{i}")))
            .collect();
        want.extend(want.clone());
        let mut sorted = got.clone();
        sorted.sort();
        want.sort();
        assert_eq!(sorted, want);
        assert_ne!(got[..65], got[65..], "the second epoch has its own order");
        let unshuffled: Vec<String> = {
            let mut c = cfg.clone();
            c.shuffle = false;
            c.packing = false;
            all_docs(&mut stream(&c, Split::Train).with_epochs(1), 4)
        };
        assert_ne!(got[..65].to_vec(), unshuffled);
    }

    #[test]
    fn seeds_change_the_order_and_the_same_seed_repeats_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = mixed_config(dir.path());
        let run = |seed| {
            all_docs(
                &mut BatchStream::new(&cfg, Split::Train, seed, 0, 1, byte_encoder)
                    .unwrap()
                    .with_epochs(1),
                2,
            )
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn mixing_follows_the_weights() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("a.parquet"), "a", 50, 10);
        numbered_text(&dir.path().join("b.parquet"), "b", 50, 10);
        let cfg = config(
            64,
            true,
            true,
            vec![
                text_source(&dir.path().join("a.parquet"), 1.0),
                text_source(&dir.path().join("b.parquet"), 3.0),
            ],
        );
        let mut s = stream(&cfg, Split::Train); // cycles forever
        let mut docs_seen = Vec::new();
        while docs_seen.len() < 4000 {
            docs_seen.extend(docs(&s.next_batch(4).unwrap().unwrap()));
        }
        let b =
            docs_seen.iter().filter(|d| d.starts_with('b')).count() as f64 / docs_seen.len() as f64;
        assert!((b - 0.75).abs() < 0.03, "share of b: {b}");
        assert!(s.epoch() >= 10, "both sources cycle through epochs");
    }

    #[test]
    fn eval_fraction_rows_never_reach_training() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("a.parquet"), "a", 400, 50);
        let mut cfg = config(
            16,
            true,
            true,
            vec![text_source(&dir.path().join("a.parquet"), 1.0)],
        );
        cfg.eval_fraction = 0.1;
        assert!(BatchStream::has_eval(&cfg));
        let train = all_docs(&mut stream(&cfg, Split::Train).with_epochs(1), 4);
        let eval = all_docs(&mut stream(&cfg, Split::Eval), 4);
        let examples: Vec<Example> = BatchStream::eval_examples(&cfg, byte_encoder)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(examples.len(), eval.len());
        assert!((20..=60).contains(&eval.len()), "{} eval rows", eval.len());
        let mut all: Vec<String> = train.iter().chain(&eval).cloned().collect();
        all.sort();
        let mut want: Vec<String> = (0..400).map(|i| format!("a{i}")).collect();
        want.sort();
        assert_eq!(all, want, "train and eval are disjoint and cover every row");
        // Eval rows are in file order, and the same for another seed.
        let mut in_order = eval.clone();
        in_order.sort_by_key(|d| d[1..].parse::<u32>().unwrap());
        assert_eq!(eval, in_order);
        let other_seed = BatchStream::new(&cfg, Split::Eval, 99, 0, 1, byte_encoder).unwrap();
        assert_eq!(all_docs(&mut { other_seed }, 4), eval);
        let mut s = stream(&cfg, Split::Train).with_epochs(1);
        all_docs(&mut s, 4);
        assert_eq!(s.stats().held_out, eval.len() as u64);
    }

    #[test]
    fn eval_sources_replace_the_hold_out() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("t.parquet"), "t", 20, 5);
        numbered_text(&dir.path().join("e.parquet"), "e", 3, 5);
        let mut cfg = config(
            16,
            true,
            true,
            vec![text_source(&dir.path().join("t.parquet"), 1.0)],
        );
        assert!(!BatchStream::has_eval(&cfg));
        cfg.eval = vec![text_source(&dir.path().join("e.parquet"), 1.0)];
        assert!(BatchStream::has_eval(&cfg));
        let eval = all_docs(&mut stream(&cfg, Split::Eval), 2);
        assert_eq!(eval, ["e0", "e1", "e2"]);
        assert_eq!(
            all_docs(&mut stream(&cfg, Split::Train).with_epochs(1), 2).len(),
            20
        );
    }

    #[test]
    fn ranks_share_out_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("a.parquet"), "a", 50, 5);
        let cfg = config(
            32,
            true,
            true,
            vec![text_source(&dir.path().join("a.parquet"), 1.0)],
        );
        let rank = |r| {
            all_docs(
                &mut BatchStream::new(&cfg, Split::Train, 3, r, 2, byte_encoder)
                    .unwrap()
                    .with_epochs(1),
                2,
            )
        };
        let (r0, r1) = (rank(0), rank(1));
        assert_eq!(r0.len(), 25);
        assert_eq!(r1.len(), 25);
        let group = |d: &String| d[1..].parse::<usize>().unwrap() / 5;
        let g0: std::collections::BTreeSet<usize> = r0.iter().map(group).collect();
        let g1: std::collections::BTreeSet<usize> = r1.iter().map(group).collect();
        assert!(g0.is_disjoint(&g1), "a row group belongs to one rank");
        assert_eq!(g0.len() + g1.len(), 10);

        let err = BatchStream::new(&cfg, Split::Train, 3, 10, 11, byte_encoder)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("10 row group(s)") && err.contains("11 ranks"),
            "{err}"
        );
    }

    #[test]
    fn skip_policy_counts_bad_rows_and_fail_policy_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("bad.parquet"),
            vec![strings("text", &[Some("ok"), None, Some(""), Some("fine")])],
            10,
        );
        let mut cfg = config(16, false, false, vec![text_source(&p, 1.0)]);
        let err = stream(&cfg, Split::Train)
            .next_batch(4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.parquet: row 1") && err.contains("column `text`: is null"),
            "{err}"
        );
        cfg.on_error = OnError::Skip;
        let mut s = stream(&cfg, Split::Train).with_epochs(1);
        assert_eq!(all_docs(&mut s, 4), ["ok", "fine"]);
        assert_eq!(s.stats().skipped, 2);
        assert_eq!(s.stats().skip_reasons.len(), 2);
        assert!(
            s.stats().skip_reasons[1].contains("row 2")
                && s.stats().skip_reasons[1].contains("empty string")
        );
    }

    #[test]
    fn encoder_errors_name_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = numbered_text(&dir.path().join("t.parquet"), "r", 4, 10);
        let cfg = config(16, false, false, vec![text_source(&p, 1.0)]);
        let failing = |s: &Sample, o: &EncodeOptions| match s {
            Sample::Text { text } if text == "r2" => {
                anyhow::bail!("template error: undefined variable `foo`")
            }
            _ => byte_encoder(s, o),
        };
        let mut s = BatchStream::new(&cfg, Split::Train, 0, 0, 1, failing).unwrap();
        let err = std::iter::from_fn(|| Some(s.next_batch(1)))
            .find_map(|r| r.err())
            .unwrap()
            .to_string();
        assert!(
            err.contains("t.parquet: row 2") && err.contains("undefined variable `foo`"),
            "{err}"
        );
    }

    #[test]
    fn a_source_with_no_usable_rows_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("nulls.parquet"),
            vec![strings("text", &[None, None])],
            10,
        );
        let mut cfg = config(16, true, true, vec![text_source(&p, 1.0)]);
        cfg.on_error = OnError::Skip;
        let err = stream(&cfg, Split::Train)
            .next_batch(1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nulls.parquet") && err.contains("no usable rows"),
            "{err}"
        );
    }

    #[test]
    fn a_cursor_from_other_data_or_seed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = mixed_config(dir.path());
        let mut s = stream(&cfg, Split::Train);
        s.next_batch(2).unwrap();
        let cursor = s.cursor();
        let mut other = BatchStream::new(&cfg, Split::Train, 8, 0, 1, byte_encoder).unwrap();
        let err = other.restore(cursor.clone()).unwrap_err().to_string();
        assert!(err.contains("seed 7") && err.contains("seed 8"), "{err}");
        numbered_text(&dir.path().join("a.parquet"), "alpha-", 41, 6);
        let mut changed = stream(&cfg, Split::Train);
        let err = changed.restore(cursor).unwrap_err().to_string();
        assert!(err.contains("the data changed"), "{err}");
    }

    #[test]
    fn stats_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("s.parquet"),
            vec![strings(
                "text",
                &[Some("abc"), Some("a much longer row"), None, Some("de")],
            )],
            10,
        );
        let mut src = text_source(&p, 1.0);
        src.on_error = Some(OnError::Skip);
        let cfg = config(8, true, false, vec![src]);
        let mut s = stream(&cfg, Split::Train).with_epochs(1);
        let batches: Vec<Batch> = std::iter::from_fn(|| s.next_batch(2).unwrap()).collect();
        let st = s.stats();
        assert_eq!((st.rows_read, st.examples, st.skipped), (4, 3, 1));
        assert_eq!(st.tokens, 4 + 18 + 3);
        assert_eq!((st.truncated, st.tokens_lost), (1, 10));
        assert_eq!(
            st.sequences,
            batches.iter().map(|b| b.rows as u64).sum::<u64>()
        );
        assert_eq!(st.slots, st.sequences * 8);
        let pads: usize = batches
            .iter()
            .map(|b| b.doc_ids.iter().filter(|&&d| d < 0).count())
            .sum();
        assert_eq!(st.padding, pads as u64);
        assert!(st.padding_waste() > 0.0 && st.padding_waste() < 1.0);
        assert!(st.summary().contains("skipped          1"));
        let mut progress = Vec::new();
        let epoch = stream(&cfg, Split::Train)
            .epoch_stats(2, |done, total| progress.push((done, total)))
            .unwrap();
        assert_eq!(&epoch, st);
        assert_eq!(progress.last(), Some(&(4, 4)));
        let n = BatchStream::count_batches(&cfg, 7, 0, 1, 2, byte_encoder).unwrap();
        assert_eq!(n, batches.len() as u64);
    }
}
