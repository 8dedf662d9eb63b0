//! Which process of which job this is, from the variables launchers set:
//! torchrun (and Kubernetes' PyTorchJob, and any launcher): `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (+ `TORCHELASTIC_USE_AGENT_STORE`,
//! `TORCHELASTIC_RESTART_COUNT` under torchrun); Slurm's `srun`: `SLURM_PROCID`,
//! `SLURM_NTASKS`, `SLURM_LOCALID`, the master being the first host of the step's node list.
//! None of them: one process, as before.

use anyhow::{bail, Context, Result};

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// Rank within this machine: which GPU it takes.
    pub local_rank: usize,
    /// Where the rendezvous store is (hosted by rank 0, or by torchrun's agent).
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent hosts the store: every rank is a client of it.
    pub agent_store: bool,
    /// How many times torchrun restarted the job (0 for the first attempt).
    pub restart: u32,
    /// Who launched us, for messages.
    pub launcher: &'static str,
}

/// torch's default rendezvous port.
pub const DEFAULT_PORT: u16 = 29500;

impl World {
    /// One process, no peers.
    pub fn single() -> World {
        World {
            rank: 0,
            size: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: DEFAULT_PORT,
            agent_store: false,
            restart: 0,
            launcher: "none",
        }
    }

    pub fn is_single(&self) -> bool {
        self.size == 1
    }

    /// From this process's environment.
    pub fn from_env() -> Result<World> {
        World::from_vars(|name| std::env::var(name).ok())
    }

    /// From the variables `var` looks up (the environment, or a test's map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<World> {
        let num = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).with_context(|| {
                    format!("the environment variable {name}={v:?} is not a number")
                }),
            }
        };
        let (rank, size, local_rank, launcher) = if var("WORLD_SIZE").is_some() {
            let size = num("WORLD_SIZE")?.unwrap_or(1);
            let rank = num("RANK")?.context("WORLD_SIZE is set but RANK is not: set both (and LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or launch with torchrun")?;
            let launcher = if var("TORCHELASTIC_RUN_ID").is_some() {
                "torchrun"
            } else {
                "the environment"
            };
            (rank, size, num("LOCAL_RANK")?.unwrap_or(0), launcher)
        } else if var("SLURM_NTASKS").is_some() && var("SLURM_PROCID").is_some() {
            (
                num("SLURM_PROCID")?.unwrap_or(0),
                num("SLURM_NTASKS")?.unwrap_or(1),
                num("SLURM_LOCALID")?.unwrap_or(0),
                "Slurm",
            )
        } else {
            return Ok(World::single());
        };
        if size == 0 || rank >= size {
            bail!("rank {rank} is not in a world of {size} ({launcher}): RANK must be below WORLD_SIZE");
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(a) if !a.is_empty() => a,
            _ if launcher == "Slurm" => var("SLURM_STEP_NODELIST")
                .or_else(|| var("SLURM_JOB_NODELIST"))
                .or_else(|| var("SLURM_NODELIST"))
                .and_then(|list| first_host(&list))
                .context("Slurm set no node list (SLURM_STEP_NODELIST): set MASTER_ADDR to rank 0's host")?,
            _ if size == 1 => "127.0.0.1".into(),
            _ => bail!("MASTER_ADDR is not set: set it to the host of rank 0 (or launch with torchrun)"),
        };
        let master_port = match var("MASTER_PORT") {
            Some(p) => p.trim().parse().with_context(|| {
                format!("the environment variable MASTER_PORT={p:?} is not a port number")
            })?,
            // Jobs sharing a node get different ports.
            None if launcher == "Slurm" => {
                let job: u64 = var("SLURM_JOB_ID")
                    .and_then(|j| j.parse().ok())
                    .unwrap_or(0);
                DEFAULT_PORT + (job % 1000) as u16
            }
            None => DEFAULT_PORT,
        };
        Ok(World {
            rank,
            size,
            local_rank,
            master_addr,
            master_port,
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
            restart: num("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0) as u32,
            launcher,
        })
    }
}

/// The first host of a Slurm host list: `node[01-04,07],gpu5` → `node01`.
pub fn first_host(list: &str) -> Option<String> {
    let first = list.trim();
    if first.is_empty() {
        return None;
    }
    // Split at the first comma outside brackets.
    let mut depth = 0;
    let mut end = first.len();
    for (i, c) in first.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let host = &first[..end];
    let Some(open) = host.find('[') else {
        return Some(host.to_string());
    };
    let prefix = &host[..open];
    let inner = host[open + 1..].trim_end_matches(']');
    let range = inner.split(',').next()?;
    let start = range.split('-').next()?;
    Some(format!("{prefix}{start}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn world(vars: &[(&str, &str)]) -> Result<World> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        World::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn no_variables_is_one_process() {
        assert_eq!(world(&[]).unwrap(), World::single());
    }

    #[test]
    fn torchrun_variables_give_rank_world_and_agent_store() {
        let w = world(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.1.2.3"),
            ("MASTER_PORT", "29600"),
            ("TORCHELASTIC_RUN_ID", "abc"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ])
        .unwrap();
        assert_eq!(
            (
                w.rank,
                w.size,
                w.local_rank,
                w.master_port,
                w.agent_store,
                w.restart
            ),
            (3, 8, 1, 29600, true, 2)
        );
        assert_eq!(
            (w.master_addr.as_str(), w.launcher),
            ("10.1.2.3", "torchrun")
        );
    }

    #[test]
    fn slurm_variables_take_the_first_node_as_master() {
        let w = world(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEP_NODELIST", "gpu[07-08,11],cpu1"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap();
        assert_eq!((w.rank, w.size, w.local_rank), (5, 16, 1));
        assert_eq!(w.master_addr, "gpu07");
        assert_eq!(w.master_port, DEFAULT_PORT + 456);
        assert!(!w.agent_store);
    }

    #[test]
    fn bad_variables_are_clear_errors() {
        let err = world(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rank 2 is not in a world of 2"), "{err}");
        let err = world(&[("RANK", "0"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MASTER_ADDR"), "{err}");
        let err = world(&[("RANK", "x"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RANK=\"x\""), "{err}");
    }

    #[test]
    fn host_lists() {
        assert_eq!(first_host("node1").as_deref(), Some("node1"));
        assert_eq!(first_host("a[3-5]").as_deref(), Some("a3"));
        assert_eq!(first_host("a[009,12],b").as_deref(), Some("a009"));
        assert_eq!(first_host("x,y").as_deref(), Some("x"));
        assert_eq!(first_host(""), None);
    }
}
