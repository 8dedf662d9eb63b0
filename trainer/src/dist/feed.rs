//! Which micro-batches each rank trains on in one optimizer step.
//!
//! The sequence of micro-batches is the one a single process reads: one stream over all the
//! data (rank 0 of a world of 1, whatever the real world size). Step `s` is its micro-batches
//! `[s·G, (s+1)·G)` with `G = world × grad_accum`, and rank `r` trains on the `grad_accum`
//! of them that start at `r × grad_accum`. So N processes with `grad_accum = a` see exactly
//! the micro-batches (and the dropout seeds, which follow the micro-batch's index in the
//! step) of one process with `grad_accum = N·a`.
//!
//! Only rank 0 reads, tokenizes and packs: it scatters each rank its share as one i64
//! tensor, after broadcasting a small header (how many micro-batches, the step's trained
//! tokens summed over every rank, the payload size). The other ranks never tokenize
//! training data, and the data cursor in a checkpoint is that one stream's.

use super::Replicas;
use anyhow::{bail, Result};
use loam_data::stream::BatchStream;
use loam_data::Batch;
use tch::{Device, Kind, Tensor};

/// One rank's part of one optimizer step.
pub struct StepShare {
    pub batches: Vec<Batch>,
    /// The index, within the step, of `batches[0]` (dropout seeds follow it).
    pub first_micro: u64,
    /// Trained tokens of the whole step, every rank's micro-batches: the loss divisor.
    pub step_tokens: i64,
    /// Micro-batches in the whole step.
    pub step_micro_batches: usize,
}

/// Reads the next step's micro-batches (rank 0) and hands each rank its share.
/// `None` once the data is exhausted, on every rank alike.
pub fn next_step(
    replicas: &Replicas,
    stream: &mut BatchStream,
    micro_batch: usize,
    grad_accum: usize,
    trained_tokens: impl Fn(&Batch) -> i64,
) -> Result<Option<StepShare>> {
    let world = replicas.world.size;
    if replicas.world.is_single() {
        let batches = read(stream, micro_batch, grad_accum)?;
        if batches.is_empty() {
            return Ok(None);
        }
        let step_tokens = batches.iter().map(&trained_tokens).sum();
        let n = batches.len();
        return Ok(Some(StepShare {
            batches,
            first_micro: 0,
            step_tokens,
            step_micro_batches: n,
        }));
    }
    let comm_device = replicas.device;
    let rank = replicas.world.rank;
    // Header: [micro-batches in the step, trained tokens of the step, payload length].
    let mut header = Tensor::zeros([3], (Kind::Int64, comm_device));
    let mut payloads = Vec::new();
    if rank == 0 {
        let batches = read(stream, micro_batch, grad_accum * world)?;
        let tokens: i64 = batches.iter().map(&trained_tokens).sum();
        payloads = (0..world)
            .map(|r| {
                let mine = batches.iter().skip(r * grad_accum).take(grad_accum);
                encode(mine)
            })
            .collect();
        let len = payloads.iter().map(Vec::len).max().unwrap_or(0);
        let values = [batches.len() as i64, tokens, len as i64];
        header.copy_(&Tensor::from_slice(&values).to_device(comm_device));
    }
    replicas.broadcast(&header, "the step's header")?;
    let values: Vec<i64> = Vec::try_from(header.to_device(Device::Cpu))?;
    let (count, step_tokens, len) = (values[0] as usize, values[1], values[2]);
    if count == 0 {
        return Ok(None);
    }
    let output = Tensor::zeros([len], (Kind::Int64, comm_device));
    let inputs: Vec<Tensor> = payloads
        .iter()
        .map(|p| {
            let mut padded = p.clone();
            padded.resize(len as usize, 0);
            Tensor::from_slice(&padded).to_device(comm_device)
        })
        .collect();
    replicas.scatter(&output, &inputs, "the step's micro-batches")?;
    let flat: Vec<i64> = Vec::try_from(output.to_device(Device::Cpu))?;
    let first = rank * grad_accum;
    let expected = count.saturating_sub(first).min(grad_accum);
    let batches = decode(&flat, expected)?;
    Ok(Some(StepShare {
        batches,
        first_micro: first as u64,
        step_tokens,
        step_micro_batches: count,
    }))
}

fn read(stream: &mut BatchStream, micro_batch: usize, n: usize) -> Result<Vec<Batch>> {
    let mut batches = Vec::with_capacity(n);
    for _ in 0..n {
        match stream.next_batch(micro_batch)? {
            Some(batch) => batches.push(batch),
            None => break,
        }
    }
    Ok(batches)
}

/// Micro-batches as one i64 vector: per batch `rows, seq_len`, then its four arrays.
fn encode<'a>(batches: impl Iterator<Item = &'a Batch>) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        out.extend([b.rows as i64, b.seq_len as i64]);
        for part in [&b.input_ids, &b.labels, &b.position_ids, &b.doc_ids] {
            out.extend_from_slice(part);
        }
    }
    out
}

fn decode(flat: &[i64], count: usize) -> Result<Vec<Batch>> {
    let mut batches = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let (Some(&rows), Some(&seq_len)) = (flat.get(at), flat.get(at + 1)) else {
            bail!("the micro-batches received from rank 0 are cut short (a loam bug)");
        };
        let n = (rows * seq_len) as usize;
        at += 2;
        if flat.len() < at + 4 * n {
            bail!("the micro-batches received from rank 0 are cut short (a loam bug)");
        }
        let mut part = || {
            let v = flat[at..at + n].to_vec();
            at += n;
            v
        };
        batches.push(Batch {
            rows: rows as usize,
            seq_len: seq_len as usize,
            input_ids: part(),
            labels: part(),
            position_ids: part(),
            doc_ids: part(),
        });
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_survive_the_wire_format() {
        let batch = |rows: usize, seq: usize, k: i64| Batch {
            rows,
            seq_len: seq,
            input_ids: (0..(rows * seq) as i64).map(|i| i + k).collect(),
            labels: vec![-100; rows * seq],
            position_ids: (0..(rows * seq) as i64).map(|i| i % seq as i64).collect(),
            doc_ids: vec![k; rows * seq],
        };
        let batches = vec![batch(2, 3, 7), batch(1, 5, 9)];
        let mut flat = encode(batches.iter());
        flat.extend([0; 11]); // the padding to the longest rank's payload
        assert_eq!(decode(&flat, 2).unwrap(), batches);
        assert_eq!(decode(&flat, 0).unwrap(), vec![]);
        assert!(decode(&flat[..10], 2).is_err());
    }
}
