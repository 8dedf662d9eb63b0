//! Examples → `seq_len` rows → [`Batch`]es.
//!
//! With packing, examples go into the first of a few open rows ("bins") they fit in; a row
//! is emitted when full, or (the fullest first) when a new example fits nowhere and all bins
//! are open. Without packing each example is its own row. Position ids restart at each
//! document and doc ids number the documents of a row, so attention can stay inside them.
//! The label at each document's first position is [`IGNORE_INDEX`]: after the trainer's
//! shift it would be predicted from the previous document.
//!
//! A preference pair is two rows, chosen then rejected, always next to each other in a batch.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::config::{Overlong, Padding};
use crate::stats::DataStats;
use crate::{Batch, Example, IGNORE_INDEX};

/// Rows kept open for packing: more wastes less padding but reorders more.
pub const OPEN_BINS: usize = 8;

/// Where a row's example came from: (source, file, row group, row in group). Enough to read
/// and encode it again when a cursor is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RowRef(pub u32, pub u32, pub u32, pub u32);

/// A contiguous slice `[start, end)` of an example's tokens placed in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRef {
    pub row: RowRef,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub(crate) at: PieceRef,
    pub(crate) input_ids: Vec<u32>,
    pub(crate) labels: Vec<i64>,
}

impl Piece {
    pub(crate) fn new(row: RowRef, example: &Example, start: usize, end: usize) -> Piece {
        Piece {
            at: PieceRef {
                row,
                start: start as u32,
                end: end as u32,
            },
            input_ids: example.input_ids[start..end].to_vec(),
            labels: example.labels[start..end].to_vec(),
        }
    }

    fn len(&self) -> usize {
        self.input_ids.len()
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Bin {
    pub(crate) pieces: Vec<Piece>,
    used: usize,
}

impl Bin {
    pub(crate) fn from_pieces(pieces: Vec<Piece>) -> Bin {
        let used = pieces.iter().map(Piece::len).sum();
        Bin { pieces, used }
    }
}

/// The packer's state: open bins and finished rows waiting for a batch.
#[derive(Debug, Clone)]
pub struct Packer {
    seq_len: usize,
    packing: bool,
    padding: Padding,
    pub(crate) pad_id: u32,
    pub(crate) open: Vec<Bin>,
    pub(crate) ready: VecDeque<Bin>,
}

impl Packer {
    pub fn new(seq_len: usize, packing: bool, padding: Padding, pad_id: u32) -> Packer {
        Packer {
            seq_len,
            packing,
            padding,
            pad_id,
            open: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// Rows ready to be batched.
    pub fn ready_rows(&self) -> usize {
        self.ready.len()
    }

    /// Cut an example to `seq_len` per its over-long policy (counted in `stats`) and place it.
    pub fn push(
        &mut self,
        row: RowRef,
        example: &Example,
        overlong: Overlong,
        stats: &mut DataStats,
    ) {
        for piece in cut(row, example, self.seq_len, overlong, stats) {
            self.place(piece);
        }
    }

    fn place(&mut self, piece: Piece) {
        if !self.packing {
            self.ready.push_back(Bin::from_pieces(vec![piece]));
            return;
        }
        let len = piece.len();
        let fits = self.open.iter().position(|b| b.used + len <= self.seq_len);
        let index = match fits {
            Some(i) => i,
            None => {
                if self.open.len() == OPEN_BINS {
                    let fullest = (0..self.open.len())
                        .max_by_key(|&i| (self.open[i].used, std::cmp::Reverse(i)))
                        .expect("open bins are not empty");
                    let bin = self.open.remove(fullest);
                    self.ready.push_back(bin);
                }
                self.open.push(Bin::default());
                self.open.len() - 1
            }
        };
        let bin = &mut self.open[index];
        bin.used += len;
        bin.pieces.push(piece);
        if bin.used == self.seq_len {
            let bin = self.open.remove(index);
            self.ready.push_back(bin);
        }
    }

    /// Move every open bin to the ready rows (at the end of the data).
    pub fn flush(&mut self) {
        self.ready.extend(self.open.drain(..));
    }

    /// Up to `rows` ready rows as a batch; `None` when none is ready.
    pub fn take_batch(&mut self, rows: usize, stats: &mut DataStats) -> Option<Batch> {
        let n = rows.min(self.ready.len());
        if n == 0 {
            return None;
        }
        let bins: Vec<Bin> = self.ready.drain(..n).collect();
        let seq_len = match (self.packing, self.padding) {
            (false, Padding::Longest) => bins.iter().map(|b| b.used).max().unwrap_or(1).max(1),
            _ => self.seq_len,
        };
        let mut batch = Batch {
            rows: n,
            seq_len,
            input_ids: vec![self.pad_id as i64; n * seq_len],
            labels: vec![IGNORE_INDEX; n * seq_len],
            position_ids: vec![0; n * seq_len],
            doc_ids: vec![-1; n * seq_len],
        };
        for (r, bin) in bins.iter().enumerate() {
            let mut at = r * seq_len;
            for (d, piece) in bin.pieces.iter().enumerate() {
                for (k, (&id, &label)) in piece.input_ids.iter().zip(&piece.labels).enumerate() {
                    batch.input_ids[at] = id as i64;
                    batch.labels[at] = if k == 0 { IGNORE_INDEX } else { label };
                    batch.position_ids[at] = k as i64;
                    batch.doc_ids[at] = d as i64;
                    at += 1;
                }
            }
            stats.documents += bin.pieces.len() as u64;
            stats.padding += (seq_len - bin.used) as u64;
        }
        stats.batches += 1;
        stats.sequences += n as u64;
        stats.slots += (n * seq_len) as u64;
        stats.trained_tokens += batch.labels.iter().filter(|&&l| l != IGNORE_INDEX).count() as u64;
        Some(batch)
    }
}

/// An example → the pieces that go into rows: itself, or per the over-long policy.
pub(crate) fn cut(
    row: RowRef,
    example: &Example,
    seq_len: usize,
    overlong: Overlong,
    stats: &mut DataStats,
) -> Vec<Piece> {
    if let Some(split) = example.rejected_start {
        return cut_pair(row, example, split, seq_len, overlong, stats);
    }
    let len = example.input_ids.len();
    if len <= seq_len {
        return vec![Piece::new(row, example, 0, len)];
    }
    match overlong {
        Overlong::Truncate => {
            stats.truncated += 1;
            stats.tokens_lost += (len - seq_len) as u64;
            vec![Piece::new(row, example, 0, seq_len)]
        }
        Overlong::Drop => {
            stats.dropped += 1;
            stats.tokens_lost += len as u64;
            Vec::new()
        }
        Overlong::Split => {
            stats.split += 1;
            (0..len)
                .step_by(seq_len)
                .map(|s| Piece::new(row, example, s, (s + seq_len).min(len)))
                .collect()
        }
    }
}

/// A pair → its chosen and rejected sequences, each cut to its first `seq_len` tokens (or
/// the pair dropped, under `drop`). A pair left with no trained token on a side (its prompt
/// fills `seq_len`) is dropped either way, as TRL drops it: it would teach nothing.
fn cut_pair(
    row: RowRef,
    example: &Example,
    split: usize,
    seq_len: usize,
    overlong: Overlong,
    stats: &mut DataStats,
) -> Vec<Piece> {
    let sides = [(0, split), (split, example.input_ids.len())];
    let lost: usize = sides
        .iter()
        .map(|&(s, e)| (e - s).saturating_sub(seq_len))
        .sum();
    let kept = sides.map(|(s, e)| (s, e.min(s + seq_len)));
    let untrained = kept
        .iter()
        .any(|&(s, e)| example.labels[s + 1..e].iter().all(|&l| l == IGNORE_INDEX));
    if untrained || (lost > 0 && overlong == Overlong::Drop) {
        stats.dropped += 1;
        stats.tokens_lost += example.input_ids.len() as u64;
        return Vec::new();
    }
    if lost > 0 {
        stats.truncated += 1;
        stats.tokens_lost += lost as u64;
    }
    kept.iter()
        .map(|&(s, e)| Piece::new(row, example, s, e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(len: usize, first: u32) -> Example {
        Example {
            input_ids: (first..first + len as u32).collect(),
            labels: (first..first + len as u32).map(i64::from).collect(),
            rejected_start: None,
        }
    }

    fn push(p: &mut Packer, len: usize, first: u32, overlong: Overlong, stats: &mut DataStats) {
        p.push(
            RowRef(0, 0, 0, first),
            &example(len, first),
            overlong,
            stats,
        );
    }

    #[test]
    fn packed_rows_restart_positions_and_mask_document_starts() {
        let mut p = Packer::new(8, true, Padding::MaxLength, 0);
        let mut stats = DataStats::default();
        push(&mut p, 3, 10, Overlong::Truncate, &mut stats);
        push(&mut p, 4, 20, Overlong::Truncate, &mut stats);
        push(&mut p, 5, 30, Overlong::Truncate, &mut stats); // fits nowhere: a second bin
        p.flush();
        let b = p.take_batch(4, &mut stats).unwrap();
        assert_eq!((b.rows, b.seq_len), (2, 8));
        assert_eq!(&b.input_ids[..8], &[10, 11, 12, 20, 21, 22, 23, 0]);
        assert_eq!(&b.position_ids[..8], &[0, 1, 2, 0, 1, 2, 3, 0]);
        assert_eq!(&b.doc_ids[..8], &[0, 0, 0, 1, 1, 1, 1, -1]);
        assert_eq!(&b.labels[..8], &[-100, 11, 12, -100, 21, 22, 23, -100]);
        assert_eq!(&b.input_ids[8..], &[30, 31, 32, 33, 34, 0, 0, 0]);
        assert_eq!(&b.doc_ids[8..], &[0, 0, 0, 0, 0, -1, -1, -1]);
        assert_eq!(stats.padding, 1 + 3);
        assert_eq!(stats.slots, 16);
        assert_eq!(stats.trained_tokens, 2 + 3 + 4);
        assert!(p.take_batch(4, &mut stats).is_none());
    }

    #[test]
    fn first_fit_fills_earlier_bins_and_full_bins_leave_at_once() {
        let mut p = Packer::new(8, true, Padding::MaxLength, 0);
        let mut stats = DataStats::default();
        push(&mut p, 6, 0, Overlong::Truncate, &mut stats);
        push(&mut p, 5, 10, Overlong::Truncate, &mut stats);
        push(&mut p, 2, 20, Overlong::Truncate, &mut stats); // completes the first bin
        assert_eq!(p.ready_rows(), 1);
        let b = p.take_batch(1, &mut stats).unwrap();
        assert_eq!(b.input_ids, vec![0, 1, 2, 3, 4, 5, 20, 21]);
    }

    #[test]
    fn overlong_truncate_drop_split_are_counted() {
        let mut stats = DataStats::default();
        let mut p = Packer::new(4, false, Padding::MaxLength, 0);
        push(&mut p, 10, 0, Overlong::Truncate, &mut stats);
        push(&mut p, 10, 0, Overlong::Drop, &mut stats);
        push(&mut p, 10, 0, Overlong::Split, &mut stats);
        assert_eq!((stats.truncated, stats.dropped, stats.split), (1, 1, 1));
        assert_eq!(stats.tokens_lost, 6 + 10);
        // truncated (1 row) + split into 4, 4, 2 (3 rows)
        let b = p.take_batch(10, &mut stats).unwrap();
        assert_eq!(b.rows, 4);
        assert_eq!(&b.input_ids[..4], &[0, 1, 2, 3]);
        assert_eq!(&b.input_ids[4..8], &[0, 1, 2, 3]);
        assert_eq!(&b.input_ids[8..12], &[4, 5, 6, 7]);
        assert_eq!(&b.input_ids[12..], &[8, 9, 0, 0]);
        assert_eq!(&b.position_ids[12..], &[0, 1, 0, 0]);
    }

    #[test]
    fn without_packing_rows_pad_to_seq_len_or_the_longest() {
        let mut stats = DataStats::default();
        for (padding, width) in [(Padding::MaxLength, 6), (Padding::Longest, 3)] {
            let mut p = Packer::new(6, false, padding, 7);
            push(&mut p, 2, 1, Overlong::Truncate, &mut stats);
            push(&mut p, 3, 1, Overlong::Truncate, &mut stats);
            let b = p.take_batch(2, &mut stats).unwrap();
            assert_eq!(b.seq_len, width);
            assert_eq!(
                b.input_ids[..width].to_vec(),
                [&[1, 2][..], &vec![7; width - 2]].concat()
            );
            assert_eq!(b.doc_ids[width..width + 3].to_vec(), vec![0, 0, 0]);
        }
    }
}
