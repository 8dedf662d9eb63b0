//! Data-parallel training on PyTorch's own c10d, under the launchers people already use
//! (torchrun, Slurm's srun, Kubernetes' PyTorchJob, anything that sets RANK / WORLD_SIZE /
//! MASTER_ADDR / MASTER_PORT).
//!
//! The base model is frozen and replicated; every rank holds the same adapter and AdamW
//! state (broadcast from rank 0 at the start), trains on its share of each step's
//! micro-batches (`feed`), and after backward the flat buffer of adapter gradients
//! (`TrainableParams`) is summed over the ranks in one all-reduce. Each rank then takes the
//! same clipping and AdamW step on the same numbers, so the replicas stay equal without
//! sending weights. Only rank 0 reads training data and writes files.
//!
//! - `launch`: the [`World`] from the launcher's variables (none: one process, unchanged)
//! - `c10d`: the FFI to `csrc/c10d_shim.cpp` (TCPStore, ProcessGroupGloo / ProcessGroupNCCL)
//! - `feed`: which micro-batches each rank trains on
//! - `watchdog`: the fault protocol (a dead or failed rank stops the others, named)

pub mod c10d;
pub mod feed;
pub mod launch;
pub mod watchdog;

pub use launch::World;

use anyhow::{anyhow, bail, Result};
use c10d::{ProcessGroup, Store, Work};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use watchdog::{key, Watchdog};

/// The device a rank computes on: `auto` and `cuda` mean this rank's own GPU (LOCAL_RANK)
/// when there are peers; anything else is taken as written.
pub fn rank_device(spec: &str, world: &World) -> Result<Device> {
    let device = crate::runtime::parse_device(spec)?;
    Ok(match device {
        Device::Cuda(_) if !world.is_single() && (spec == "auto" || spec == "cuda") => {
            crate::runtime::parse_device(&format!("cuda:{}", world.local_rank))?
        }
        d => d,
    })
}

/// A checkpoint written by `saved = (processes, grad_accum)` resumed by `now`. The data
/// stream does not depend on the world size, so a resume on another number of processes
/// continues the same micro-batches, as long as one step still takes as many of them
/// (world × grad_accum); then the adapter equals the uninterrupted run's up to the order
/// the all-reduce adds in (bit-identical with the same world size).
pub fn check_resume_world(saved: (usize, usize), now: (usize, usize)) -> Result<()> {
    let ((w0, a0), (w1, a1)) = (saved, now);
    if w0 == 0 || saved == now {
        return Ok(()); // 0: a checkpoint from before data-parallel training: no record
    }
    if w0 * a0 != w1 * a1 {
        let fits = if (w0 * a0) % w1 == 0 {
            format!("--set train.grad_accum={}", w0 * a0 / w1)
        } else {
            format!("a world size that divides {}", w0 * a0)
        };
        bail!(
            "the checkpoint was written by {w0} process(es) × grad_accum {a0} = {} micro-batches per step; this run has {w1} × {a1} = {}. Resume with {fits} to keep the batch, or start a new output.dir",
            w0 * a0,
            w1 * a1
        );
    }
    tracing::warn!(
        "resuming a {w0}-process run on {w1} process(es): the same micro-batches per step ({}); results equal the uninterrupted run's up to float rounding",
        w1 * a1
    );
    Ok(())
}

/// Seconds from an environment variable, or a default.
fn seconds(name: &str, default: u64) -> Result<Duration> {
    match std::env::var(name) {
        Err(_) => Ok(Duration::from_secs(default)),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| anyhow!("{name}={v:?} is not a number of seconds")),
    }
}

/// One step's sums over the ranks.
pub struct StepSums {
    /// Summed NLL of the step's micro-batches, all ranks.
    pub nll: f64,
    /// Some rank was asked to stop.
    pub stop: bool,
    /// Seconds the gradient all-reduce took here (None for one process).
    pub allreduce_s: Option<f64>,
}

/// The ranks of one run, as one process sees them. With a world of 1 every method is a
/// no-op (or the identity), so a single process runs exactly as it always did.
pub struct Replicas {
    pub world: World,
    /// Where collective tensors live: the CPU for Gloo, this rank's GPU for NCCL.
    pub device: Device,
    live: Option<Live>,
}

struct Live {
    store: Store,
    pg: Option<ProcessGroup>,
    watchdog: Option<Watchdog>,
    /// This process hosts the TCPStore (rank 0 outside torchrun): it must outlive the others.
    hosts_store: bool,
    /// Collectives and the rendezvous fail after this long (`LOAM_DIST_TIMEOUT`, 600 s).
    timeout: Duration,
    /// A rank whose heartbeat stops this long is gone (`LOAM_DIST_HEARTBEAT_TIMEOUT`, 30 s).
    heartbeat_timeout: Duration,
}

impl Replicas {
    pub fn single() -> Replicas {
        Replicas {
            world: World::single(),
            device: Device::Cpu,
            live: None,
        }
    }

    /// Joins the rendezvous store of `world`: the first step of a run, before anything that
    /// can fail differently on different ranks. Training on `compute` (a GPU takes NCCL).
    pub fn join(world: World, compute: Device) -> Result<Replicas> {
        if world.is_single() {
            return Ok(Replicas {
                world,
                device: Device::Cpu,
                live: None,
            });
        }
        let timeout = seconds("LOAM_DIST_TIMEOUT", 600)?;
        let heartbeat_timeout = seconds("LOAM_DIST_HEARTBEAT_TIMEOUT", 30)?;
        let device = match compute {
            Device::Cuda(_) if c10d::has_nccl() => compute,
            Device::Cuda(_) => {
                tracing::warn!(
                    "this loam was built without NCCL: gradients cross over Gloo through the CPU"
                );
                Device::Cpu
            }
            _ => Device::Cpu,
        };
        if device == Device::Cpu && !c10d::has_gloo() {
            bail!(
                "{} started {} processes, but this loam was built without Gloo ({}); run scripts/setup_dist.sh and rebuild",
                world.launcher,
                world.size,
                c10d::BACKENDS
            );
        }
        let hosts_store = world.rank == 0 && !world.agent_store;
        // torch.distributed's layout: torchrun's agent store, one prefix per restart.
        let prefix = if world.agent_store {
            format!("/worker/attempt_{}", world.restart)
        } else {
            String::new()
        };
        let master = format!("{}:{}", world.master_addr, world.master_port);
        let store = Store::connect(
            &world.master_addr,
            world.master_port,
            hosts_store,
            if world.agent_store { 0 } else { world.size },
            timeout,
            &prefix,
        )
        .map_err(|e| {
            anyhow!(
                "rank {} of {} could not reach the rendezvous store at {master} ({}): {e}. Check MASTER_ADDR / MASTER_PORT, \
                 that rank 0 started, and that the port is free (LOAM_DIST_TIMEOUT = {} s)",
                world.rank,
                world.size,
                world.launcher,
                timeout.as_secs()
            )
        })?;
        store.set(
            &key("host", world.rank),
            watchdog::host_and_pid().as_bytes(),
        )?;
        tracing::info!(
            "rank {} of {} ({}, store at {master}), collectives on {}",
            world.rank,
            world.size,
            world.launcher,
            if device == Device::Cpu {
                "Gloo"
            } else {
                "NCCL"
            }
        );
        Ok(Replicas {
            world,
            device,
            live: Some(Live {
                store,
                pg: None,
                watchdog: None,
                hosts_store,
                timeout,
                heartbeat_timeout,
            }),
        })
    }

    /// Whether this rank writes the run's files (rank 0).
    pub fn is_writer(&self) -> bool {
        self.world.rank == 0
    }

    /// This rank is set up (recipe, data, model, checkpoint): waits until every rank is, then
    /// opens the process group and starts the watchdog. A rank that failed to set up stops
    /// the others here, before any collective, with its message.
    pub fn ready(&mut self) -> Result<()> {
        let (rank, size) = (self.world.rank, self.world.size);
        let device = self.device;
        let master = format!("{}:{}", self.world.master_addr, self.world.master_port);
        let Some(live) = &mut self.live else {
            return Ok(());
        };
        live.store.set(&key("ready", rank), b"1")?;
        let deadline = Instant::now() + live.timeout;
        let mut waiting: Vec<usize> = (0..size).collect();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for r in waiting {
                if live.store.exists(&key("failed", r))? {
                    let msg =
                        String::from_utf8_lossy(&live.store.get(&key("failed", r))?).into_owned();
                    bail!("rank {r} failed before training started: {msg}");
                }
                if !live.store.exists(&key("ready", r))? {
                    still.push(r);
                }
            }
            waiting = still;
            if !waiting.is_empty() {
                if Instant::now() > deadline {
                    bail!(
                        "rank(s) {waiting:?} did not get ready within {} s (LOAM_DIST_TIMEOUT)",
                        live.timeout.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let pg = match device {
            Device::Cuda(index) => {
                ProcessGroup::nccl(&live.store, rank, size, live.timeout, index)?
            }
            _ => {
                let loopback =
                    ["127.0.0.1", "localhost", "::1"].contains(&self.world.master_addr.as_str());
                ProcessGroup::gloo(
                    &live.store,
                    rank,
                    size,
                    live.timeout,
                    if loopback { "127.0.0.1" } else { "" },
                )?
            }
        };
        live.pg = Some(pg);
        live.watchdog = Some(Watchdog::start(
            live.store.clone_connection()?,
            rank,
            size,
            live.heartbeat_timeout,
            live.hosts_store,
            master,
        ));
        Ok(())
    }

    /// Ends this rank's part of the run with `result`. An error is published for the others
    /// (their watchdogs stop them with it); the rank hosting the store waits for the others
    /// to be done before it takes the store down.
    pub fn finish<T>(&mut self, result: Result<T>) -> Result<T> {
        let rank = self.world.rank;
        let size = self.world.size;
        let Some(live) = &mut self.live else {
            return result;
        };
        if let Some(w) = live.watchdog.take() {
            drop(w);
        }
        let (mine, wait_for) = match &result {
            Ok(_) => ("done", Duration::from_secs(60)),
            Err(_) => ("failed", 5 * watchdog::POLL),
        };
        let value = match &result {
            Ok(_) => "1".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if !matches!(live.store.exists(&key("failed", rank)), Ok(true)) {
            let _ = live.store.set(&key(mine, rank), value.as_bytes());
        }
        if live.hosts_store {
            let deadline = Instant::now() + wait_for;
            for r in (0..size).filter(|&r| r != rank) {
                while Instant::now() < deadline
                    && !["done", "failed"]
                        .iter()
                        .any(|k| matches!(live.store.exists(&key(k, r)), Ok(true)))
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        result
    }

    /// Publishes the step this rank is at (named when a collective times out).
    pub fn at_step(&self, step: u64) {
        if let Some(live) = &self.live {
            let _ = live
                .store
                .set(&key("step", self.world.rank), step.to_string().as_bytes());
        }
    }

    fn pg(&self) -> Result<&ProcessGroup> {
        self.live
            .as_ref()
            .and_then(|l| l.pg.as_ref())
            .ok_or_else(|| anyhow!("collective before Replicas::ready (a loam bug)"))
    }

    /// Waits for a collective; a failure is explained (which rank is gone or stuck).
    fn wait(&self, work: Result<Work>, what: &str) -> Result<()> {
        match work.and_then(Work::wait) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.explain(e, what)),
        }
    }

    /// A collective failed (a peer's connection closed, or the timeout passed). The watchdog
    /// ends this process if it finds a rank dead or failed; give it the time to, then say
    /// which ranks lag behind this one.
    fn explain(&self, err: anyhow::Error, what: &str) -> anyhow::Error {
        let Some(live) = &self.live else {
            return err;
        };
        std::thread::sleep(live.heartbeat_timeout + 3 * watchdog::POLL);
        let me = self.world.rank;
        let step = |r: usize| -> Option<u64> {
            let v = live.store.get(&key("step", r)).ok()?;
            String::from_utf8_lossy(&v).parse().ok()
        };
        let mine = step(me).unwrap_or(0);
        let behind: Vec<String> = (0..self.world.size)
            .filter(|&r| r != me)
            .filter_map(|r| {
                let s = step(r).unwrap_or(0);
                (s < mine).then(|| format!("rank {r} is still at step {s}"))
            })
            .collect();
        let lag = if behind.is_empty() {
            String::new()
        } else {
            format!("; {} (alive but stuck?)", behind.join(", "))
        };
        anyhow!(
            "{what} failed on rank {me} at step {mine}: {err:#}{lag}. Raise LOAM_DIST_TIMEOUT ({} s) if a rank is just slow",
            live.timeout.as_secs()
        )
    }

    /// `t` of rank 0 into `t` of every rank (in place; `t` on any device).
    pub fn broadcast(&self, t: &Tensor, what: &str) -> Result<()> {
        if self.live.is_none() {
            return Ok(());
        }
        let wire = self.on_wire(t);
        self.wait(self.pg()?.broadcast(&wire, 0), what)?;
        self.back_from_wire(t, &wire);
        Ok(())
    }

    /// Rank 0's `inputs[r]` into rank r's `output` (every tensor on `self.device`).
    pub fn scatter(&self, output: &Tensor, inputs: &[Tensor], what: &str) -> Result<()> {
        self.wait(self.pg()?.scatter(output, inputs, 0), what)
    }

    /// Sums `t` over the ranks, in place (`t` on any device).
    pub fn all_reduce_sum(&self, t: &Tensor, what: &str) -> Result<()> {
        if self.live.is_none() {
            return Ok(());
        }
        let wire = self.on_wire(t);
        self.wait(self.pg()?.all_reduce_sum(&wire), what)?;
        self.back_from_wire(t, &wire);
        Ok(())
    }

    /// The end of one step's backward on every rank: sums the flat gradient buffer and each
    /// rank's summed NLL, and whether any rank was asked to stop (Ctrl-C), so every rank
    /// takes the same decision.
    pub fn reduce_step(&self, grads: &Tensor, nll: f64, stop: bool) -> Result<StepSums> {
        let start = Instant::now();
        self.all_reduce_sum(grads, "the gradient all-reduce")?;
        let allreduce_s = self.live.as_ref().map(|_| start.elapsed().as_secs_f64());
        let sums = self.sum_f64(&[nll, f64::from(u8::from(stop))], "the loss all-reduce")?;
        Ok(StepSums {
            nll: sums[0],
            stop: sums[1] > 0.0,
            allreduce_s,
        })
    }

    /// Sums f64 values over the ranks.
    pub fn sum_f64(&self, values: &[f64], what: &str) -> Result<Vec<f64>> {
        if self.live.is_none() {
            return Ok(values.to_vec());
        }
        let t = Tensor::from_slice(values).to_device(self.device);
        self.all_reduce_sum(&t, what)?;
        Ok(Vec::try_from(t.to_device(Device::Cpu))?)
    }

    fn on_wire(&self, t: &Tensor) -> Tensor {
        if t.device() == self.device {
            t.shallow_clone()
        } else {
            t.to_device(self.device)
        }
    }

    fn back_from_wire(&self, t: &Tensor, wire: &Tensor) {
        if t.device() != self.device {
            let _guard = tch::no_grad_guard();
            t.shallow_clone().copy_(wire);
        }
    }

    /// Rank 0's values of `tensors` (the adapter and optimizer state) on every rank.
    pub fn broadcast_all(&self, tensors: &[&Tensor], what: &str) -> Result<()> {
        for t in tensors {
            self.broadcast(t, what)?;
        }
        Ok(())
    }

    /// Rank 0's integers (step counters) on every rank.
    pub fn broadcast_i64(&self, values: &mut [i64], what: &str) -> Result<()> {
        if self.live.is_none() {
            return Ok(());
        }
        let t = Tensor::from_slice(values).to_kind(Kind::Int64);
        self.broadcast(&t, what)?;
        values.copy_from_slice(&Vec::<i64>::try_from(&t)?);
        Ok(())
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if let Some(live) = &mut self.live {
            live.watchdog.take();
            // The process group before the store it rendezvoused through.
            live.pg.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A free TCP port on loopback (bound, then released for the store to take).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Runs `f(replicas)` on `size` ranks, one thread each, over Gloo on loopback.
    pub fn on_ranks<T: Send + 'static>(
        size: usize,
        f: impl Fn(&mut Replicas) -> Result<T> + Send + Sync + Copy + 'static,
    ) -> Vec<T> {
        let port = free_port();
        let handles: Vec<_> = (0..size)
            .map(|rank| {
                std::thread::spawn(move || {
                    let world = World {
                        rank,
                        size,
                        master_port: port,
                        launcher: "a test",
                        ..World::single()
                    };
                    let mut replicas = Replicas::join(world, Device::Cpu)?;
                    replicas.ready()?;
                    let out = f(&mut replicas);
                    replicas.finish(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    }

    #[test]
    fn a_resume_on_another_world_size_must_keep_the_step() {
        assert!(
            check_resume_world((0, 0), (4, 1)).is_ok(),
            "an old checkpoint"
        );
        assert!(check_resume_world((2, 2), (2, 2)).is_ok());
        assert!(
            check_resume_world((2, 2), (4, 1)).is_ok(),
            "a documented re-shard"
        );
        let err = check_resume_world((2, 2), (2, 1)).unwrap_err().to_string();
        assert!(
            err.contains("2 process(es) × grad_accum 2 = 4")
                && err.contains("--set train.grad_accum=2"),
            "{err}"
        );
        let err = check_resume_world((2, 2), (3, 1)).unwrap_err().to_string();
        assert!(err.contains("a world size that divides 4"), "{err}");
    }

    #[test]
    fn gloo_sums_broadcasts_and_scatters_across_ranks() {
        let out = on_ranks(2, |r| {
            let rank = r.world.rank as f32;
            let t = Tensor::from_slice(&[1.0f32 + rank, 10.0 * rank]);
            r.all_reduce_sum(&t, "test sum")?;
            let sum = Vec::<f32>::try_from(&t)?;
            let b = Tensor::from_slice(&[rank + 5.0]);
            r.broadcast(&b, "test broadcast")?;
            let mut ints = [7 + r.world.rank as i64, 3];
            r.broadcast_i64(&mut ints, "test ints")?;
            let inputs: Vec<Tensor> = if r.world.rank == 0 {
                (0..2)
                    .map(|i| Tensor::from_slice(&[i as i64 * 100, 1]))
                    .collect()
            } else {
                vec![]
            };
            let got = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
            r.scatter(&got, &inputs, "test scatter")?;
            let f64s = r.sum_f64(&[0.5, rank as f64], "test f64")?;
            Ok((
                sum,
                Vec::<f32>::try_from(&b)?,
                ints,
                Vec::<i64>::try_from(&got)?,
                f64s,
            ))
        });
        for (rank, (sum, b, ints, got, f64s)) in out.into_iter().enumerate() {
            assert_eq!(sum, [3.0, 10.0]);
            assert_eq!(b, [5.0], "rank 0's value everywhere");
            assert_eq!(ints, [7, 3]);
            assert_eq!(got, [rank as i64 * 100, 1], "rank {rank}'s own part");
            assert_eq!(f64s, [1.0, 1.0]);
        }
    }

    #[test]
    fn a_rank_that_fails_to_set_up_stops_the_others_before_any_collective() {
        let port = free_port();
        let world = move |rank| World {
            rank,
            size: 2,
            master_port: port,
            launcher: "a test",
            ..World::single()
        };
        let zero = std::thread::spawn(move || {
            let mut r = Replicas::join(world(0), Device::Cpu)?;
            r.ready()
        });
        let mut one = Replicas::join(world(1), Device::Cpu).unwrap();
        let failed: Result<()> = Err(anyhow!("data.train[0].path: no file matches `x*.parquet`"));
        assert!(one.finish(failed).is_err());
        let err = zero.join().unwrap().unwrap_err().to_string();
        assert!(
            err.contains("rank 1 failed before training started")
                && err.contains("no file matches"),
            "{err}"
        );
    }
}
