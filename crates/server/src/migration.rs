//! Live slot migration, data side (the plan and its driver are in `cluster::migrate` and the
//! Raft leader's loop).
//!
//! ```text
//!  leader ──Drain{slots, target}──> source primary: for each slot, batches of keys:
//!                                     copy (whole items, absolute expiry) ──Import──> target
//!                                     target stores them (and its replicas have them)
//!                                     source deletes each key whose version is unchanged
//!                                   until the slot is empty here ──Drained──> leader commits
//!                                   Handover (a new epoch: the target owns the slot)
//! ```
//!
//! While a slot migrates, the source serves the keys it still has and sends clients to the
//! target with `-ASK` for the others; the target serves a key only after `ASKING`. A key is
//! created on the target, never again on the source, so once the source is empty it stays
//! empty. A key deleted from the source has first been stored by the target, so no key is
//! ever missing from both. A key the target has taken a write for (after `ASKING`) is newer
//! than any copy the source can still send: imports skip it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use cluster::bus::{ReplOp, Request, Response};
use cluster::raft::Peers;
use store::{Mutation, NewItem, Store};

/// Most keys one import carries.
const KEYS_PER_BATCH: usize = 2048;
/// Most bytes one import carries (a larger value travels alone).
const BYTES_PER_BATCH: usize = 1 << 20;
/// How long the target may take to store and replicate one batch.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A node's part in migrations, as source and as target.
#[derive(Debug, Default)]
pub struct Migrations {
    /// Keys written here after `ASKING` (this node importing their slot): never overwritten
    /// by an import.
    written: Mutex<HashSet<Bytes>>,
    keys_moved: AtomicU64,
    bytes_moved: AtomicU64,
    /// Drain rate limit in bytes per second; 0 for none.
    rate_bytes: u64,
}

impl Migrations {
    /// A node's migration state, draining at most `rate_bytes` per second (0: no limit).
    pub fn new(rate_bytes: u64) -> Self {
        Migrations {
            rate_bytes,
            ..Default::default()
        }
    }

    /// Keys and bytes moved out since the start.
    pub fn moved(&self) -> (u64, u64) {
        (
            self.keys_moved.load(Ordering::Relaxed),
            self.bytes_moved.load(Ordering::Relaxed),
        )
    }

    /// Notes a write to `key` taken while importing its slot: imports must keep it.
    pub fn note_write(&self, key: &[u8]) {
        lock(&self.written).insert(Bytes::copy_from_slice(key));
    }

    /// Forgets the noted writes once nothing is imported here any more.
    pub fn forget_writes(&self) {
        let mut written = lock(&self.written);
        if !written.is_empty() {
            *written = HashSet::new();
        }
    }

    /// Target side: stores the keys of an import, keeping any key written here meanwhile and
    /// skipping any already expired.
    pub fn import(&self, store: &Store, ops: Vec<ReplOp>, now_ms: u64) -> Result<(), String> {
        for op in ops {
            let ReplOp::Put {
                key,
                value,
                flags,
                expires_at_ms,
                meta,
            } = op
            else {
                continue;
            };
            if expires_at_ms != 0 && expires_at_ms <= now_ms {
                continue;
            }
            let item = NewItem {
                value: Bytes::from(value),
                expires_at_ms: (expires_at_ms != 0).then_some(expires_at_ms),
                flags,
                meta,
            };
            store
                .mutate(&key, now_ms, |_| {
                    // Under the key's lock: a write noted before it ran is kept.
                    if lock(&self.written).contains(key.as_slice()) {
                        Mutation::Keep(())
                    } else {
                        Mutation::Put(item, ())
                    }
                })
                .map_err(|e| format!("import of a key failed: {e}"))?;
        }
        Ok(())
    }

    /// Source side: moves every key of `slots` to the primary at `target`, batch by batch,
    /// until the slots are empty here. Returns keys and bytes moved.
    pub async fn drain(
        &self,
        store: &Store,
        now_ms: impl Fn() -> u64,
        peers: &Peers,
        slots: Vec<u16>,
        target: String,
        epoch: u64,
    ) -> Result<(u64, u64), String> {
        let client = peers.get(&target);
        let (mut keys_moved, mut bytes_moved) = (0u64, 0u64);
        // Slots found empty; rechecked once before the drain ends.
        let mut empty_once = false;
        loop {
            // One batch, across the slots, up to the key and byte bounds.
            let now = now_ms();
            let mut ops = Vec::new();
            let mut sent = Vec::new();
            let mut bytes = 0usize;
            for slot in &slots {
                if sent.len() >= KEYS_PER_BATCH || bytes >= BYTES_PER_BATCH {
                    break;
                }
                for key in store.keys_in_slot(*slot, KEYS_PER_BATCH - sent.len(), now) {
                    let Some(item) = store.peek(&key, now) else {
                        continue;
                    };
                    bytes += key.len() + item.value.len();
                    ops.push(ReplOp::Put {
                        key: key.to_vec(),
                        value: item.value.to_vec(),
                        flags: item.flags,
                        expires_at_ms: item.expires_at_ms.unwrap_or(0),
                        meta: item.meta,
                    });
                    sent.push((key, item.cas));
                    if bytes >= BYTES_PER_BATCH {
                        break;
                    }
                }
            }
            if ops.is_empty() {
                if empty_once {
                    break;
                }
                // A write that found its key here just before the key left may have stored
                // it again: look once more after in-flight requests are done.
                empty_once = true;
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            empty_once = false;
            match client
                .call(Request::Import { ops, epoch }, IMPORT_TIMEOUT)
                .await
            {
                Ok(Response::Ok) => {}
                Ok(Response::Refused(why)) => return Err(format!("{target}: {why}")),
                Ok(other) => return Err(format!("{target}: unexpected {other:?}")),
                Err(e) => return Err(e.to_string()),
            }
            let now = now_ms();
            for (key, cas) in &sent {
                // Only the version the target has: a key written meanwhile goes again.
                let _ = store.mutate(key, now, |item| match item {
                    Some(i) if i.cas == *cas => Mutation::Remove(()),
                    _ => Mutation::Keep(()),
                });
            }
            keys_moved += sent.len() as u64;
            bytes_moved += bytes as u64;
            self.keys_moved
                .fetch_add(sent.len() as u64, Ordering::Relaxed);
            self.bytes_moved.fetch_add(bytes as u64, Ordering::Relaxed);
            if self.rate_bytes > 0 {
                let pause = Duration::from_secs_f64(bytes as f64 / self.rate_bytes as f64);
                tokio::time::sleep(pause).await;
            }
        }
        Ok((keys_moved, bytes_moved))
    }
}
