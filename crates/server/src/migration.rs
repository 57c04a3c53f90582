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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use cluster::bus::{ReplOp, Request, Response};
use cluster::raft::Peers;
use store::{Mutation, NewItem, Store};

/// Most keys one import carries. Small batches keep each one's work on the source and the
/// target (a few ms) from holding up the clients' requests beside it.
const KEYS_PER_BATCH: usize = 256;
/// Most bytes one import carries.
const BYTES_PER_BATCH: usize = 256 << 10;
/// A value larger than this travels in parts of this size, one per message, so that no key,
/// however large (`--max-value-bytes`), holds a node or the bus for long.
pub const PART_BYTES: usize = 256 << 10;
/// Values arriving in parts at once, at most (one per draining source in practice).
const MAX_STAGED: usize = 64;
/// How long the target may take to store and replicate one batch.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A large value arriving in parts.
#[derive(Debug)]
struct Staged {
    value: Vec<u8>,
    total: usize,
    flags: u32,
    expires_at_ms: u64,
    meta: u8,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A node's part in migrations, as source and as target.
#[derive(Debug, Default)]
pub struct Migrations {
    /// Keys written here after `ASKING` (this node importing their slot): never overwritten
    /// by an import.
    written: Mutex<HashSet<Bytes>>,
    /// Large values arriving in parts, by key.
    staged: Mutex<HashMap<Bytes, Staged>>,
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

    /// Forgets the noted writes, and any value left half-sent by a failed source, once
    /// nothing is imported here any more.
    pub fn forget_writes(&self) {
        let mut written = lock(&self.written);
        if !written.is_empty() {
            *written = HashSet::new();
        }
        let mut staged = lock(&self.staged);
        if !staged.is_empty() {
            *staged = HashMap::new();
        }
    }

    /// Stores one imported item unless the key was written here meanwhile or it has expired.
    fn store_imported(
        &self,
        store: &Store,
        key: &[u8],
        item: NewItem,
        now_ms: u64,
    ) -> Result<(), String> {
        if item.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Ok(());
        }
        store
            .mutate(key, now_ms, |_| {
                // Under the key's lock: a write noted before it ran is kept.
                if lock(&self.written).contains(key) {
                    Mutation::Keep(())
                } else {
                    Mutation::Put(item, ())
                }
            })
            .map_err(|e| format!("import of a key failed: {e}"))
    }

    /// Target side: takes one part of a large value; stores the value with its last part.
    /// Parts must come in order; a part with offset 0 starts the key over.
    #[allow(clippy::too_many_arguments)]
    fn import_part(
        &self,
        store: &Store,
        key: Vec<u8>,
        offset: u64,
        total: u64,
        data: Vec<u8>,
        (flags, expires_at_ms, meta): (u32, u64, u8),
        now_ms: u64,
    ) -> Result<(), String> {
        let max = store.config().max_value_bytes;
        let total = usize::try_from(total)
            .ok()
            .filter(|t| *t <= max)
            .ok_or_else(|| format!("a part of a value of {total} bytes (the limit is {max})"))?;
        let key = Bytes::from(key);
        let mut staged = lock(&self.staged);
        if offset == 0 {
            if staged.len() >= MAX_STAGED && !staged.contains_key(&key) {
                return Err("too many values arriving in parts at once".into());
            }
            staged.insert(
                key.clone(),
                Staged {
                    value: Vec::with_capacity(total),
                    total,
                    flags,
                    expires_at_ms,
                    meta,
                },
            );
        }
        let Some(entry) = staged.get_mut(&key) else {
            return Err("a part of a value whose first part never came".into());
        };
        if entry.value.len() as u64 != offset
            || entry.total != total
            || entry.value.len() + data.len() > total
        {
            staged.remove(&key);
            return Err("a part out of order; the value starts over".into());
        }
        entry.value.extend_from_slice(&data);
        if entry.value.len() < total {
            return Ok(());
        }
        let Some(done) = staged.remove(&key) else {
            return Ok(());
        };
        drop(staged);
        let item = NewItem {
            value: Bytes::from(done.value),
            expires_at_ms: (done.expires_at_ms != 0).then_some(done.expires_at_ms),
            flags: done.flags,
            meta: done.meta,
        };
        self.store_imported(store, &key, item, now_ms)
    }

    /// Target side: stores the keys of an import, keeping any key written here meanwhile and
    /// skipping any already expired.
    pub fn import(&self, store: &Store, ops: Vec<ReplOp>, now_ms: u64) -> Result<(), String> {
        for op in ops {
            match op {
                ReplOp::Put {
                    key,
                    value,
                    flags,
                    expires_at_ms,
                    meta,
                } => {
                    let item = NewItem {
                        value: Bytes::from(value),
                        expires_at_ms: (expires_at_ms != 0).then_some(expires_at_ms),
                        flags,
                        meta,
                    };
                    self.store_imported(store, &key, item, now_ms)?;
                }
                ReplOp::Part {
                    key,
                    offset,
                    total,
                    data,
                    flags,
                    expires_at_ms,
                    meta,
                } => self.import_part(
                    store,
                    key,
                    offset,
                    total,
                    data,
                    (flags, expires_at_ms, meta),
                    now_ms,
                )?,
                ReplOp::Del { .. } | ReplOp::Clear => {}
            }
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
            // A value too large for one message: it goes alone, in parts.
            let mut large = None;
            'batch: for slot in &slots {
                if sent.len() >= KEYS_PER_BATCH || bytes >= BYTES_PER_BATCH {
                    break;
                }
                for key in store.keys_in_slot(*slot, KEYS_PER_BATCH - sent.len(), now) {
                    let Some(item) = store.peek(&key, now) else {
                        continue;
                    };
                    if item.value.len() > PART_BYTES {
                        if ops.is_empty() {
                            large = Some((key, item));
                        }
                        // Otherwise it starts the next batch.
                        break 'batch;
                    }
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
            if let Some((key, item)) = large {
                // Parts in order, each acknowledged before the next goes.
                let total = item.value.len();
                for offset in (0..total).step_by(PART_BYTES) {
                    let data = item.value[offset..(offset + PART_BYTES).min(total)].to_vec();
                    let len = data.len();
                    let part = ReplOp::Part {
                        key: key.to_vec(),
                        offset: offset as u64,
                        total: total as u64,
                        data,
                        flags: item.flags,
                        expires_at_ms: item.expires_at_ms.unwrap_or(0),
                        meta: item.meta,
                    };
                    import(&client, &target, vec![part], epoch).await?;
                    self.throttle(len).await;
                }
                bytes = key.len() + total;
                sent.push((key, item.cas));
            } else if ops.is_empty() {
                if empty_once {
                    break;
                }
                // A write that found its key here just before the key left may have stored
                // it again: look once more after in-flight requests are done.
                empty_once = true;
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            } else {
                import(&client, &target, ops, epoch).await?;
                self.throttle(bytes).await;
            }
            empty_once = false;
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
        }
        Ok((keys_moved, bytes_moved))
    }

    /// Waits as long as sending `bytes` takes at the configured rate.
    async fn throttle(&self, bytes: usize) {
        if self.rate_bytes > 0 {
            let pause = Duration::from_secs_f64(bytes as f64 / self.rate_bytes as f64);
            tokio::time::sleep(pause).await;
        }
    }
}

/// Sends one import to the target and waits for it to be stored (and replicated there).
async fn import(
    client: &cluster::bus::Client,
    target: &str,
    ops: Vec<ReplOp>,
    epoch: u64,
) -> Result<(), String> {
    match client
        .call(Request::Import { ops, epoch }, IMPORT_TIMEOUT)
        .await
    {
        Ok(Response::Ok) => Ok(()),
        Ok(Response::Refused(why)) => Err(format!("{target}: {why}")),
        Ok(other) => Err(format!("{target}: unexpected {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::StoreConfig;

    fn store() -> Store {
        Store::new(StoreConfig {
            max_value_bytes: 4 << 20,
            ..StoreConfig::default()
        })
    }

    /// A value of `len` bytes cut into parts of `PART_BYTES`, with flags 7 and an expiry.
    fn parts(key: &[u8], value: &[u8], expires_at_ms: u64) -> Vec<ReplOp> {
        (0..value.len())
            .step_by(PART_BYTES)
            .map(|offset| ReplOp::Part {
                key: key.to_vec(),
                offset: offset as u64,
                total: value.len() as u64,
                data: value[offset..(offset + PART_BYTES).min(value.len())].to_vec(),
                flags: 7,
                expires_at_ms,
                meta: 0,
            })
            .collect()
    }

    fn big_value() -> Vec<u8> {
        (0..(3 * PART_BYTES + 1000))
            .map(|i| (i % 251) as u8)
            .collect()
    }

    #[test]
    fn a_value_in_parts_is_stored_whole_with_its_flags_and_expiry_after_the_last_part() {
        let (store, m) = (store(), Migrations::new(0));
        let value = big_value();
        let parts = parts(b"big", &value, 50_000);
        assert_eq!(parts.len(), 4);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            assert!(store.peek(b"big", 1000).is_none(), "stored before part {i}");
            m.import(&store, vec![part], 1000).expect("part");
            assert_eq!(store.peek(b"big", 1000).is_some(), i == last);
        }
        let item = store.peek(b"big", 1000).expect("stored");
        assert_eq!(&item.value[..], &value[..]);
        assert_eq!((item.flags, item.expires_at_ms), (7, Some(50_000)));
        assert!(lock(&m.staged).is_empty(), "nothing left staged");
    }

    #[test]
    fn a_part_out_of_order_is_refused_and_the_value_starts_over_at_offset_zero() {
        let (store, m) = (store(), Migrations::new(0));
        let value = big_value();
        let parts = parts(b"big", &value, 0);
        m.import(&store, vec![parts[0].clone()], 1000)
            .expect("first");
        assert!(m.import(&store, vec![parts[2].clone()], 1000).is_err());
        assert!(
            m.import(&store, vec![parts[1].clone()], 1000).is_err(),
            "the refused value was dropped, so its next part has no start"
        );
        for part in parts {
            m.import(&store, vec![part], 1000)
                .expect("again from the start");
        }
        assert_eq!(
            &store.peek(b"big", 1000).expect("stored").value[..],
            &value[..]
        );
    }

    #[test]
    fn a_value_over_the_limit_is_refused_before_any_memory_is_taken() {
        let (store, m) = (store(), Migrations::new(0));
        let part = ReplOp::Part {
            key: b"huge".to_vec(),
            offset: 0,
            total: u64::MAX,
            data: vec![0; 10],
            flags: 0,
            expires_at_ms: 0,
            meta: 0,
        };
        assert!(m.import(&store, vec![part], 1000).is_err());
        assert!(lock(&m.staged).is_empty());
    }

    #[test]
    fn a_key_written_here_while_its_parts_arrive_keeps_the_newer_value() {
        let (store, m) = (store(), Migrations::new(0));
        let parts = parts(b"big", &big_value(), 0);
        m.import(&store, vec![parts[0].clone()], 1000)
            .expect("first");
        store
            .mutate(b"big", 1000, |_| {
                Mutation::Put(NewItem::new(Bytes::from_static(b"newer")), ())
            })
            .expect("write");
        m.note_write(b"big");
        for part in parts.into_iter().skip(1) {
            m.import(&store, vec![part], 1000).expect("part");
        }
        assert_eq!(&store.peek(b"big", 1000).expect("kept").value[..], b"newer");
    }

    #[test]
    fn an_expired_value_is_not_imported() {
        let (store, m) = (store(), Migrations::new(0));
        for part in parts(b"gone", &big_value(), 500) {
            m.import(&store, vec![part], 1000).expect("part");
        }
        assert!(store.peek(b"gone", 1000).is_none());
    }
}
