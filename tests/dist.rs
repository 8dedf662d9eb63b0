//! Data-parallel training end to end: `loam train` under torchrun, and under bare
//! RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, on the CPU (Gloo over loopback).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn torchrun() -> PathBuf {
    python().parent().unwrap().join("torchrun")
}

/// `torchrun --standalone --nproc-per-node N --no-python loam train RECIPE --out OUT ...`.
fn train_torchrun(n: usize, recipe: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(torchrun())
        .args([
            "--standalone",
            "--nproc-per-node",
            &n.to_string(),
            "--no-python",
        ])
        .arg(env!("CARGO_BIN_EXE_loam"))
        .args(["train", s(recipe), "--out", s(out)])
        .args(extra)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run torchrun")
}

/// One process, one thread (as torchrun runs each rank), for bit-level comparisons.
fn train_single(recipe: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loam"))
        .args(["train", s(recipe), "--out", s(out)])
        .args(extra)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run loam")
}

/// A failure as a user of a started run sees it: non-zero exit, no panic, and one `error:`
/// message at the end with the needles (rank 0's start-up info lines may come first).
fn assert_run_failed(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    let at = err
        .rfind("error:")
        .unwrap_or_else(|| panic!("no error message: {err}"));
    assert_mentions(&err[at..], needles, "the error");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Rank `rank` of `size`, launched as any launcher would: the five variables.
fn spawn_rank(
    rank: usize,
    size: usize,
    port: u16,
    recipe: &Path,
    out: &Path,
    extra: &[&str],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_loam"))
        .args(["train", s(recipe), "--out", s(out)])
        .args(extra)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", size.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("OMP_NUM_THREADS", "1")
        .env("LOAM_DIST_HEARTBEAT_TIMEOUT", "5")
        .env("LOAM_DIST_TIMEOUT", "60")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loam")
}

/// Waits for `child` at most `limit`; None if it is still running then (and kills it).
fn wait_for(child: Child, limit: Duration) -> Option<(Output, Duration)> {
    let start = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some((child.wait_with_output().unwrap(), start.elapsed()));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn adapter_tensors(run: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

/// Files under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn two_processes_equal_one_with_twice_the_accumulation() {
    let dir = temp_dir("dist-equal");
    let recipe = write_recipe(&dir, "llama-gqa");
    let (one, two) = (dir.join("one"), dir.join("two"));
    let out = train_single(&recipe, &one, &["--set", "train.grad_accum=4"]);
    assert_success(&out, "1 process");
    let out = train_torchrun(2, &recipe, &two, &[]);
    assert_success(&out, "torchrun, 2 processes");

    let (a, b) = (adapter_tensors(&one), adapter_tensors(&two));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = 0f64;
    for (name, x) in &a {
        let y = &b[name];
        let norm = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        worst = worst.max(diff / norm.max(1e-12));
    }
    println!("largest relative difference of an adapter tensor: {worst:.3e}");
    assert!(worst <= 1e-5, "adapters differ by {worst:e} relative");

    let (m1, m2) = (metric_lines(&one), metric_lines(&two));
    assert_eq!(m1.len(), 6);
    assert_eq!(m2.len(), 6);
    for (x, y) in m1.iter().zip(&m2) {
        assert_eq!(x["tokens"], y["tokens"], "the same micro-batches each step");
        let (l1, l2) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!(
            ((l1 - l2) / l1).abs() < 1e-6,
            "step {}: loss {l1} vs {l2}",
            x["step"]
        );
    }
    // Eval of the same adapter is bit-identical, sharded or not; after training, equal to
    // the adapters' rounding.
    let (s1, s2) = (summary(&one), summary(&two));
    assert_eq!(s1["eval_loss_before"], s2["eval_loss_before"]);
    let (e1, e2) = (
        s1["eval_loss_after"].as_f64().unwrap(),
        s2["eval_loss_after"].as_f64().unwrap(),
    );
    assert!(((e1 - e2) / e1).abs() < 1e-6, "eval after: {e1} vs {e2}");
    assert_eq!(s1["tokens"], s2["tokens"]);
    // Rank 0 writes exactly what one process writes.
    assert_eq!(listing(&one), listing(&two));
}

#[test]
fn a_two_process_run_resumed_is_bit_identical() {
    let dir = temp_dir("dist-resume");
    let recipe = write_recipe(&dir, "llama-gqa");
    let (straight, resumed) = (dir.join("straight"), dir.join("resumed"));
    assert_success(&train_torchrun(2, &recipe, &straight, &[]), "straight");
    let out = train_torchrun(2, &recipe, &resumed, &["--stop-after", "3"]);
    assert_success(&out, "paused");
    assert!(!resumed.join("adapter").exists());
    assert_success(
        &train_torchrun(2, &recipe, &resumed, &["--resume"]),
        "resumed",
    );
    assert_eq!(
        std::fs::read(straight.join("adapter/adapter_model.safetensors")).unwrap(),
        std::fs::read(resumed.join("adapter/adapter_model.safetensors")).unwrap(),
        "the resumed 2-process adapter differs from the uninterrupted one"
    );
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(resumed.join("checkpoints/step-6/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            state["state"]["world"].as_u64(),
            state["state"]["grad_accum"].as_u64()
        ),
        (Some(2), Some(2))
    );
    // Another world size must keep the micro-batches per step, or it is refused.
    let out = train_single(&recipe, &resumed, &["--resume", "--set", "train.steps=8"]);
    assert_run_failed(
        &out,
        &["2 process(es) × grad_accum 2", "--set train.grad_accum=4"],
    );
}

#[test]
fn killing_a_rank_stops_the_other_naming_it() {
    let dir = temp_dir("dist-kill");
    let recipe = write_recipe(&dir, "llama-gqa");
    let run = dir.join("run");
    let port = free_port();
    let long = [
        "--set",
        "train.steps=400",
        "--set",
        "train.checkpoint_every=1",
    ];
    let zero = spawn_rank(0, 2, port, &recipe, &run, &long);
    let mut one = spawn_rank(1, 2, port, &recipe, &run, &long);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run.join("checkpoints/step-3").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        run.join("checkpoints/step-3").exists(),
        "the run never got to step 3"
    );
    one.kill().unwrap();
    one.wait().unwrap();
    let (out, took) = wait_for(zero, Duration::from_secs(60))
        .expect("rank 0 still runs a minute after rank 1 was killed");
    println!(
        "rank 0 stopped {:.1} s after rank 1 was killed",
        took.as_secs_f64()
    );
    assert_run_failed(&out, &["rank 1"]);
    // What is left resumes: every checkpoint listed is complete. The re-shard onto one
    // process keeps the micro-batches per step (2 × 2).
    for step in std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
    {
        let name = step.file_name().to_string_lossy().into_owned();
        if name.starts_with("step-") {
            for part in [
                "state.json",
                "optimizer.safetensors",
                "adapter/adapter_model.safetensors",
            ] {
                assert!(step.path().join(part).exists(), "{name} lacks {part}");
            }
        }
    }
    let out = train_single(
        &recipe,
        &run,
        &[
            &long[..],
            &[
                "--resume",
                "--set",
                "train.grad_accum=4",
                "--stop-after",
                "1",
            ],
        ]
        .concat(),
    );
    assert_success(&out, "resume on one process after the kill");
}

#[test]
fn only_rank_0_writes_and_a_rank_that_cannot_start_stops_the_other() {
    let dir = temp_dir("dist-writes");
    let recipe = write_recipe(&dir, "llama-gqa");
    let (a, b) = (dir.join("rank0"), dir.join("rank1"));
    let port = free_port();
    let short = ["--set", "train.steps=2"];
    let zero = spawn_rank(0, 2, port, &recipe, &a, &short);
    let one = spawn_rank(1, 2, port, &recipe, &b, &short);
    let (out0, _) = wait_for(zero, Duration::from_secs(180)).expect("rank 0 hangs");
    let (out1, _) = wait_for(one, Duration::from_secs(60)).expect("rank 1 hangs");
    assert_success(&out0, "rank 0");
    assert_success(&out1, "rank 1");
    assert!(a.join("adapter/adapter_model.safetensors").exists());
    assert!(
        !b.exists(),
        "rank 1 wrote into its --out: {:?}",
        listing(&b)
    );

    // Rank 1 finds a recipe error that rank 0 does not: rank 0 stops, with rank 1's words.
    let port = free_port();
    let zero = spawn_rank(0, 2, port, &recipe, &dir.join("bad0"), &short);
    let one = spawn_rank(
        1,
        2,
        port,
        &recipe,
        &dir.join("bad1"),
        &[
            &short[..],
            &["--set", "data.train[0].path=\"/nonexistent/x*.parquet\""],
        ]
        .concat(),
    );
    let (out0, _) = wait_for(zero, Duration::from_secs(120)).expect("rank 0 hangs");
    let (out1, _) = wait_for(one, Duration::from_secs(60)).expect("rank 1 hangs");
    assert_run_failed(&out1, &["/nonexistent"]);
    assert_run_failed(
        &out0,
        &["rank 1 failed before training started", "/nonexistent"],
    );
}

/// The worker of rank `rank` among the children of the torchrun agent `agent`.
fn torchrun_worker(agent: u32, rank: usize) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{agent}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let wanted = format!("RANK={rank}");
            if environ.split(|&b| b == 0).any(|kv| kv == wanted.as_bytes()) {
                return Some(pid);
            }
        }
    }
    None
}

#[test]
fn a_torchrun_restart_resumes_from_the_last_checkpoint() {
    let dir = temp_dir("dist-restart");
    let recipe = write_recipe(&dir, "llama-gqa");
    let every = ["--set", "train.checkpoint_every=1"];
    let straight = dir.join("straight");
    assert_success(&train_torchrun(2, &recipe, &straight, &every), "straight");

    let run = dir.join("run");
    let agent = Command::new(torchrun())
        .args([
            "--standalone",
            "--nproc-per-node",
            "2",
            "--max-restarts",
            "1",
            "--no-python",
        ])
        .arg(env!("CARGO_BIN_EXE_loam"))
        .args(["train", s(&recipe), "--out", s(&run)])
        .args(every)
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run.join("checkpoints/step-2").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let worker = torchrun_worker(agent.id(), 1).expect("rank 1 of the first attempt");
    assert!(Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .unwrap()
        .success());
    let (out, _) = wait_for(agent, Duration::from_secs(300)).expect("torchrun hangs");
    assert_success(&out, "torchrun with a restart");
    // The agent restarted the workers, and the new rank 0 continued from a checkpoint.
    assert_mentions(
        &stderr(&out),
        &["exitcode: -9", "resumed from"],
        "torchrun's log",
    );
    assert_eq!(
        std::fs::read(straight.join("adapter/adapter_model.safetensors")).unwrap(),
        std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap(),
        "the restarted job's adapter differs from the uninterrupted one"
    );
    let steps: Vec<u64> = metric_lines(&run)
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
}
