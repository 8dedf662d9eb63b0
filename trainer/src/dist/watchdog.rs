//! The fault protocol: no rank is left waiting on a collective for a peer that is gone.
//!
//! Every rank runs a watchdog thread on its own connection to the rendezvous store. Each
//! second it bumps `loam/beat/<rank>` and looks at the others:
//! - a rank that wrote `loam/failed/<rank>` (its error, on its way out) → this rank stops
//!   with that message;
//! - a rank on this machine whose process is gone (its pid, from `loam/host/<rank>`) →
//!   stops at once, naming it;
//! - a rank whose beat has not moved for the heartbeat timeout (dead, or its machine cut
//!   off) → stops, naming it;
//! - the store itself unreachable → rank 0 (or torchrun's agent), which hosts it, is gone.
//!
//! "Stops" is `_exit(1)` after one `error:` line: the main thread may be blocked inside a
//! collective, which no Rust code can unwind. A rank alive but stuck (its beat moves, its
//! step does not) is caught by the collective's own timeout; the main thread then names it
//! from `loam/step/<rank>` (see `Replicas::explain`).

use super::c10d::Store;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const POLL: Duration = Duration::from_secs(1);

pub fn key(what: &str, rank: usize) -> String {
    format!("loam/{what}/{rank}")
}

/// This machine's name and this process's id, as published in `loam/host/<rank>`.
pub fn host_and_pid() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host} {}", std::process::id())
}

/// Whether process `pid` of this machine has ended (gone, or a zombie not yet reaped).
fn process_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S ...`: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

extern "C" {
    /// Ends the process without running destructors or atexit handlers: another thread may
    /// be inside libtorch's collectives.
    fn _exit(code: i32) -> !;
}

/// Prints `error: <msg>` and ends the process with status 1.
pub fn die(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "error: {msg}");
    let _ = std::io::stderr().flush();
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { _exit(1) }
}

pub struct Watchdog {
    pub stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching the `world` ranks from `rank`, on `store` (a connection of its own).
    pub fn start(
        store: Store,
        rank: usize,
        world: usize,
        heartbeat_timeout: Duration,
        hosts_store: bool,
        master: String,
    ) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("loam-watchdog".into())
            .spawn(move || {
                watch(
                    &store,
                    rank,
                    world,
                    heartbeat_timeout,
                    hosts_store,
                    &master,
                    &flag,
                )
            })
            .ok();
        Watchdog { stop, handle }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Peer {
    beat: i64,
    moved: Instant,
    pid_here: Option<u32>,
    done: bool,
}

fn watch(
    store: &Store,
    me: usize,
    world: usize,
    heartbeat_timeout: Duration,
    hosts_store: bool,
    master: &str,
    stop: &AtomicBool,
) {
    let lost_store = |e: anyhow::Error| -> ! {
        die(&format!(
            "rank {me} lost the rendezvous store at {master} ({e}); it is hosted by {}, which has died or cannot be reached",
            if hosts_store { "this rank" } else { "rank 0 (or torchrun's agent)" }
        ))
    };
    let my_host = host_and_pid();
    let my_host = my_host.split(' ').next().unwrap_or_default().to_string();
    let mut peers: HashMap<usize, Peer> = HashMap::new();
    for r in (0..world).filter(|&r| r != me) {
        let pid_here = store.get(&key("host", r)).ok().and_then(|v| {
            let s = String::from_utf8_lossy(&v).into_owned();
            let (host, pid) = s.split_once(' ')?;
            (host == my_host).then(|| pid.parse().ok()).flatten()
        });
        peers.insert(
            r,
            Peer {
                beat: -1,
                moved: Instant::now(),
                pid_here,
                done: false,
            },
        );
    }
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = store.add(&key("beat", me), 1) {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            lost_store(e);
        }
        for (&r, peer) in peers.iter_mut().filter(|(_, p)| !p.done) {
            let verdict = match check_peer(store, r, peer, heartbeat_timeout) {
                Ok(v) => v,
                Err(_) if stop.load(Ordering::SeqCst) => return,
                Err(e) => lost_store(e),
            };
            if let Some(msg) = verdict {
                // Say why on the way out, so ranks that look later read the cause.
                if !matches!(store.exists(&key("failed", me)), Ok(true)) {
                    let _ = store.set(
                        &key("failed", me),
                        format!("stopped because {msg}").as_bytes(),
                    );
                }
                if hosts_store {
                    // The others read the verdict from the store this process hosts.
                    std::thread::sleep(2 * POLL);
                }
                die(&msg);
            }
        }
        std::thread::sleep(POLL);
    }
}

/// One look at rank `r`: `Some(message)` when it is gone.
fn check_peer(
    store: &Store,
    r: usize,
    peer: &mut Peer,
    heartbeat_timeout: Duration,
) -> anyhow::Result<Option<String>> {
    if store.exists(&key("failed", r))? {
        let msg = String::from_utf8_lossy(&store.get(&key("failed", r))?).into_owned();
        return Ok(Some(format!("rank {r} failed: {msg}")));
    }
    if store.exists(&key("done", r))? {
        peer.done = true;
        return Ok(None);
    }
    if let Some(pid) = peer.pid_here {
        if process_ended(pid) {
            return Ok(Some(format!(
                "rank {r} (process {pid} on this machine) exited without finishing; nothing it was writing is kept"
            )));
        }
    }
    let beat = store.add(&key("beat", r), 0)?;
    if beat != peer.beat {
        peer.beat = beat;
        peer.moved = Instant::now();
    } else if peer.moved.elapsed() > heartbeat_timeout {
        return Ok(Some(format!(
            "rank {r} stopped responding: no heartbeat for {:.0} s (its process died, or its machine is cut off)",
            peer.moved.elapsed().as_secs_f64()
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_or_missing_process_has_ended() {
        assert!(!process_ended(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Until it is reaped it is a zombie: ended all the same.
        std::thread::sleep(Duration::from_millis(200));
        assert!(process_ended(pid));
        child.wait().unwrap();
        assert!(process_ended(pid));
    }
}
