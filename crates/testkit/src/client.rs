//! A cluster client as applications use one: it routes each key to its slot's primary, follows
//! `-MOVED` and `-ASK`, and retries within a time budget when a node fails, hangs or answers
//! `-CLUSTERDOWN`/`-TRYAGAIN`, refreshing its slot map from the nodes in turn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::resp::{Conn, Reply};

/// How long a client keeps trying, in all and per attempt.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// From the first attempt to giving up.
    pub total: Duration,
    /// One connect, write and read (a paused node costs this much).
    pub attempt: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            total: Duration::from_secs(5),
            attempt: Duration::from_millis(250),
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A reply (possibly an error that retrying would not change), from this node.
    Done(Reply, SocketAddr),
    /// No reply within the budget; the last error seen. A write may or may not have happened.
    Failed(String),
}

/// Errors after which a request is retried elsewhere or later.
fn retryable(error: &str) -> bool {
    [
        "CLUSTERDOWN",
        "TRYAGAIN",
        "LOADING",
        "MASTERDOWN",
        "NOREPLICAS",
    ]
    .iter()
    .any(|p| error.starts_with(p))
}

fn redirect(error: &str) -> Option<(bool, u16, SocketAddr)> {
    let mut parts = error.split_whitespace();
    let ask = match parts.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let slot = parts.next()?.parse().ok()?;
    let addr = parts.next()?.parse().ok()?;
    Some((ask, slot, addr))
}

/// A routing client over plain blocking connections.
pub struct ClusterClient {
    seeds: Vec<SocketAddr>,
    next_seed: usize,
    slots: Vec<Option<SocketAddr>>,
    conns: HashMap<SocketAddr, Conn>,
    budget: Budget,
    /// Attempts beyond the first, over the client's life.
    pub retries: u64,
}

impl ClusterClient {
    /// A client that learns the slot map from `seeds`.
    pub fn new(seeds: Vec<SocketAddr>, budget: Budget) -> ClusterClient {
        ClusterClient {
            next_seed: 0,
            seeds,
            slots: vec![None; 16384],
            conns: HashMap::new(),
            budget,
            retries: 0,
        }
    }

    fn conn(&mut self, addr: SocketAddr) -> std::io::Result<&mut Conn> {
        if !self.conns.contains_key(&addr) {
            let conn = Conn::connect(addr, self.budget.attempt)?;
            self.conns.insert(addr, conn);
        }
        Ok(self.conns.get_mut(&addr).expect("inserted above"))
    }

    /// Reloads the slot map from the next seed (one per call: a stale or dead seed costs one
    /// attempt, and the next call asks another).
    fn refresh(&mut self) {
        if self.seeds.is_empty() {
            return;
        }
        let seed = self.seeds[self.next_seed % self.seeds.len()];
        self.next_seed += 1;
        let Ok(Reply::Array(Some(ranges))) =
            self.conn(seed).and_then(|c| c.call(&["CLUSTER", "SLOTS"]))
        else {
            self.conns.remove(&seed);
            return;
        };
        for range in ranges {
            let Reply::Array(Some(fields)) = range else {
                continue;
            };
            let (Some(Reply::Int(a)), Some(Reply::Int(b)), Some(Reply::Array(Some(primary)))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            let (Some(ip), Some(Reply::Int(port))) =
                (primary.first().and_then(Reply::text), primary.get(1))
            else {
                continue;
            };
            let Ok(addr) = format!("{ip}:{port}").parse::<SocketAddr>() else {
                continue;
            };
            for slot in (*a).max(0)..=(*b).min(16383) {
                self.slots[slot as usize] = Some(addr);
            }
        }
    }

    /// Runs `commands` (one, or several on the same connection, such as `SET` then `WAIT`)
    /// against the primary of `key`'s slot, following redirects and retrying within the
    /// budget. Returns the last command's reply.
    pub fn run(&mut self, key: &[u8], commands: &[Vec<Vec<u8>>]) -> Outcome {
        let slot = usize::from(store::key_slot(key));
        let deadline = Instant::now() + self.budget.total;
        let mut backoff = Duration::from_millis(5);
        let mut ask: Option<SocketAddr> = None;
        let mut last = String::from("no attempt");
        let mut first = true;
        loop {
            if !first {
                self.retries += 1;
            }
            first = false;
            if Instant::now() > deadline {
                return Outcome::Failed(last);
            }
            let target = match ask.or(self.slots[slot]) {
                Some(addr) => addr,
                None => {
                    self.refresh();
                    if self.slots[slot].is_none() {
                        last = "no slot map".into();
                        std::thread::sleep(backoff);
                    }
                    continue;
                }
            };
            let asking = ask.take().is_some();
            let result = self.conn(target).and_then(|c| {
                if asking {
                    c.call(&["ASKING"])?;
                }
                let mut reply = Reply::Simple(String::new());
                for command in commands {
                    reply = c.call(command)?;
                    if reply.error().is_some() {
                        break;
                    }
                }
                Ok(reply)
            });
            match result {
                Ok(Reply::Error(e)) => match redirect(&e) {
                    Some((true, _, addr)) => ask = Some(addr),
                    Some((false, s, addr)) => self.slots[usize::from(s)] = Some(addr),
                    None if retryable(&e) => {
                        last = e;
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_millis(100));
                        self.refresh();
                    }
                    None => return Outcome::Done(Reply::Error(e), target),
                },
                Ok(reply) => return Outcome::Done(reply, target),
                Err(e) => {
                    last = format!("{target}: {e}");
                    self.conns.remove(&target);
                    self.slots[slot] = None;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                    self.refresh();
                }
            }
        }
    }

    /// `SET key value`, and when `replicas > 0` also `WAIT replicas timeout_ms` on the same
    /// connection: acknowledged only if that many replicas have it.
    pub fn set(&mut self, key: &[u8], value: &[u8], replicas: u32) -> Outcome {
        let mut commands = vec![vec![b"SET".to_vec(), key.to_vec(), value.to_vec()]];
        if replicas > 0 {
            commands.push(vec![
                b"WAIT".to_vec(),
                replicas.to_string().into_bytes(),
                b"200".to_vec(),
            ]);
        }
        match self.run(key, &commands) {
            Outcome::Done(Reply::Int(n), at) if replicas > 0 => {
                if n >= i64::from(replicas) {
                    Outcome::Done(Reply::Simple("OK".into()), at)
                } else {
                    Outcome::Failed(format!("WAIT reached {n} of {replicas} replicas"))
                }
            }
            other => other,
        }
    }

    /// `GET key`.
    pub fn get(&mut self, key: &[u8]) -> Outcome {
        self.run(key, &[vec![b"GET".to_vec(), key.to_vec()]])
    }
}
