//! The keyspace of one ringcache node.
//!
//! Goals: O(1) get/set/delete with exact LRU eviction under a memory budget, millisecond TTLs
//! with an active expiry cycle of bounded cost, and per-hash-slot counting and iteration for
//! the cluster layer. The code is synchronous and takes the time as an argument
//! (`now_ms`, Unix milliseconds), so tests drive it with a fake clock.
//!
//! Non-goals: I/O, protocols, data types other than byte strings.
//!
//! The keyspace is split into `2^k` shards, each a [`Shard`] behind a `Mutex`. A key's shard
//! is chosen by its hash slot (`slot mod shards`), so all keys of a slot live in one shard and
//! a slot can be counted or walked under one lock. Each shard gets an equal share of
//! `maxmemory` and evicts its own least recently used entries: LRU is exact within a shard,
//! and with several shards per core the shards see statistically identical traffic.
//!
//! Modules:
//! - [`slot`]: CRC16 and `{hashtag}` slot computation.
//! - [`shard`]: one shard: arena, LRU list, TTL index, slot lists, memory accounting.
//! - [`journal`]: the record of every change, for replication.

pub mod journal;
pub mod shard;
pub mod slot;

use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

pub use journal::{Journal, Record};
pub use shard::{charge_bytes, Shard, ShardStats, ENTRY_OVERHEAD_BYTES, TTL_OVERHEAD_BYTES};
pub use slot::{key_slot, SLOT_COUNT};

/// The default largest value: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Why a write was refused. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The memory budget is full and the policy (or the item's size) forbids making room.
    #[error("out of memory")]
    OutOfMemory,
    /// The value is larger than `max_value_bytes`.
    #[error("value too large")]
    ValueTooLarge,
}

/// Result alias for writes.
pub type Result<T> = std::result::Result<T, WriteError>;

/// What to do when a write would exceed the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Evict the least recently used keys (the default).
    #[default]
    AllKeysLru,
    /// Refuse the write.
    NoEviction,
}

impl EvictionPolicy {
    /// Returns the policy's Redis name.
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::NoEviction => "noeviction",
        }
    }

    /// Parses a Redis policy name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "allkeys-lru" => Some(EvictionPolicy::AllKeysLru),
            "noeviction" => Some(EvictionPolicy::NoEviction),
            _ => None,
        }
    }
}

/// A stored item, as returned by reads: a copy, taken under the shard's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub value: Bytes,
    /// When it expires, in Unix milliseconds.
    pub expires_at_ms: Option<u64>,
    /// Opaque client flags (memcached).
    pub flags: u32,
    /// The version, unique per write (memcached CAS).
    pub cas: u64,
    /// Protocol-defined bits (memcached's stale and win flags).
    pub meta: u8,
}

/// A borrowed view of a stored item, seen by [`Mutation`] deciders.
#[derive(Debug, Clone, Copy)]
pub struct ItemRef<'a> {
    /// The value.
    pub value: &'a [u8],
    /// When it expires, in Unix milliseconds.
    pub expires_at_ms: Option<u64>,
    /// Opaque client flags.
    pub flags: u32,
    /// The version.
    pub cas: u64,
    /// Protocol-defined bits.
    pub meta: u8,
}

impl ItemRef<'_> {
    /// Returns an owned copy.
    pub fn to_item(&self) -> Item {
        Item {
            value: Bytes::copy_from_slice(self.value),
            expires_at_ms: self.expires_at_ms,
            flags: self.flags,
            cas: self.cas,
            meta: self.meta,
        }
    }
}

/// A value to store. The store copies it (with the key) into one block of its own, so
/// `value` may borrow a connection's read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// The value.
    pub value: Bytes,
    /// When it expires, in Unix milliseconds; `None` for never.
    pub expires_at_ms: Option<u64>,
    /// Opaque client flags.
    pub flags: u32,
    /// Protocol-defined bits.
    pub meta: u8,
}

impl NewItem {
    /// Returns an item with no expiry, flags or meta bits.
    pub fn new(value: Bytes) -> Self {
        Self {
            value,
            expires_at_ms: None,
            flags: 0,
            meta: 0,
        }
    }
}

/// What a read-modify-write decides, with the result `R` to hand back.
#[derive(Debug)]
pub enum Mutation<R> {
    /// Leave the key as it is (an existing key is marked used).
    Keep(R),
    /// Delete the key.
    Remove(R),
    /// Store a new item.
    Put(NewItem, R),
    /// Change only the expiry of an existing key.
    SetExpiry(Option<u64>, R),
    /// Change the expiry and/or the meta bits of an existing key (`None`: leave as is).
    Modify {
        /// New expiry: `Some(None)` removes it.
        expires_at_ms: Option<Option<u64>>,
        /// New meta bits.
        meta: Option<u8>,
        /// What to hand back.
        result: R,
    },
}

/// Store configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Number of shards; rounded up to a power of two, at most [`SLOT_COUNT`].
    pub shards: usize,
    /// Memory budget in bytes; 0 means unlimited.
    pub max_memory_bytes: usize,
    /// What to do when the budget is full.
    pub policy: EvictionPolicy,
    /// The largest value accepted.
    pub max_value_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            shards: 16,
            max_memory_bytes: 1 << 30,
            policy: EvictionPolicy::AllKeysLru,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Totals over all shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys held (expired keys not yet reclaimed included).
    pub keys: usize,
    /// Keys with a TTL.
    pub keys_with_ttl: usize,
    /// Bytes charged against the budget.
    pub used_bytes: usize,
    /// Reads that found a key.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Keys removed because their TTL passed.
    pub expired: u64,
    /// Keys removed to make room.
    pub evicted: u64,
}

/// Outcome of [`Store::rename`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameOutcome {
    /// The key was renamed.
    Renamed,
    /// The source key does not exist.
    NoSuchKey,
    /// `nx` was set and the destination exists.
    DestinationExists,
}

/// The sharded keyspace. All methods take `&self`; each locks only the shards it touches.
#[derive(Debug)]
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    shard_bits: u32,
    hasher: foldhash::fast::FixedState,
    config: Mutex<StoreConfig>,
}

/// A key's coordinates: its hash, slot and shard.
#[derive(Debug, Clone, Copy)]
struct Located {
    hash: u64,
    slot: u16,
    shard: usize,
}

impl Store {
    /// Returns an empty store.
    pub fn new(config: StoreConfig) -> Self {
        let shards = config.shards.clamp(1, SLOT_COUNT).next_power_of_two();
        let shard_bits = shards.trailing_zeros();
        let hasher = foldhash::fast::FixedState::with_seed(0x5eed_cafe);
        let store = Self {
            shards: (0..shards)
                .map(|i| Mutex::new(Shard::new(i, shard_bits, hasher)))
                .collect(),
            shard_bits,
            hasher,
            config: Mutex::new(config),
        };
        store.reconfigure(config);
        store
    }

    /// Returns the number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Returns the configuration in force.
    pub fn config(&self) -> StoreConfig {
        *lock(&self.config)
    }

    /// Applies a new budget, policy or value limit; a lowered budget evicts at once.
    pub fn reconfigure(&self, config: StoreConfig) {
        let config = StoreConfig {
            shards: self.shards.len(),
            ..config
        };
        *lock(&self.config) = config;
        let share = config.max_memory_bytes.div_ceil(self.shards.len());
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.configure(share, config.policy, config.max_value_bytes);
            shard.enforce_budget();
        }
    }

    fn locate(&self, key: &[u8]) -> Located {
        let slot = key_slot(key);
        Located {
            hash: self.hasher.hash_one(key),
            slot,
            shard: usize::from(slot) & (self.shards.len() - 1),
        }
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        lock(&self.shards[index])
    }

    /// Starts (or, with `None`, stops) reporting every change to `journal`.
    pub fn set_journal(&self, journal: Option<std::sync::Arc<dyn Journal>>) {
        for shard in self.shards.iter() {
            lock(shard).set_journal(journal.clone());
        }
    }

    /// Under shard `index`'s lock: calls `at` (to read the journal's position, which no change
    /// of this shard can pass while the lock is held) and copies every live item of the shard.
    pub fn snapshot_shard(
        &self,
        index: usize,
        now_ms: u64,
        at: impl FnOnce() -> u64,
    ) -> (u64, Vec<Record>) {
        let shard = self.shard(index);
        let position = at();
        (position, shard.snapshot(now_ms))
    }

    /// Applies a change received from a primary.
    pub fn apply(&self, record: &Record, now_ms: u64) -> Result<()> {
        match record {
            Record::Put {
                key,
                value,
                flags,
                expires_at_ms,
                meta,
            } => {
                let item = NewItem {
                    value: value.clone(),
                    expires_at_ms: (*expires_at_ms != 0).then_some(*expires_at_ms),
                    flags: *flags,
                    meta: *meta,
                };
                self.set(key, item, now_ms)
            }
            Record::Del { key } => {
                self.remove(key, now_ms);
                Ok(())
            }
            Record::Clear => {
                self.clear();
                Ok(())
            }
        }
    }

    /// Returns the item under `key`, marks it used and counts a hit or miss.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Item> {
        let at = self.locate(key);
        self.shard(at.shard).read(key, at.hash, now_ms, true)
    }

    /// Returns the item under `key` without marking it used or counting it.
    pub fn peek(&self, key: &[u8], now_ms: u64) -> Option<Item> {
        let at = self.locate(key);
        self.shard(at.shard).read(key, at.hash, now_ms, false)
    }

    /// Returns true if `key` exists; marks it used if `touch`.
    pub fn contains(&self, key: &[u8], now_ms: u64, touch: bool) -> bool {
        let at = self.locate(key);
        self.shard(at.shard).contains(key, at.hash, now_ms, touch)
    }

    /// Stores `item` under `key`, replacing any current item.
    pub fn set(&self, key: &[u8], item: NewItem, now_ms: u64) -> Result<()> {
        self.mutate(key, now_ms, |_| Mutation::Put(item, ()))
    }

    /// Removes `key`; returns its item if it existed.
    pub fn remove(&self, key: &[u8], now_ms: u64) -> Option<Item> {
        let at = self.locate(key);
        self.shard(at.shard).remove(key, at.hash, now_ms)
    }

    /// Reads `key`, lets `decide` choose a [`Mutation`], and applies it atomically.
    pub fn mutate<R>(
        &self,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(Option<ItemRef<'_>>) -> Mutation<R>,
    ) -> Result<R> {
        let at = self.locate(key);
        self.shard(at.shard)
            .mutate(key, at.hash, at.slot, now_ms, decide)
    }

    /// As [`Store::mutate`], and also returns the key's CAS afterwards (`None` if absent).
    pub fn mutate_cas<R>(
        &self,
        key: &[u8],
        now_ms: u64,
        decide: impl FnOnce(Option<ItemRef<'_>>) -> Mutation<R>,
    ) -> Result<(R, Option<u64>)> {
        let at = self.locate(key);
        self.shard(at.shard)
            .mutate_cas(key, at.hash, at.slot, now_ms, decide)
    }

    /// Stores all pairs atomically (every shard involved is locked first, in order). With
    /// `only_if_none_exist`, stores nothing and returns false if any key exists.
    pub fn set_many(
        &self,
        pairs: &[(Bytes, Bytes)],
        only_if_none_exist: bool,
        now_ms: u64,
    ) -> Result<bool> {
        let located: Vec<Located> = pairs.iter().map(|(k, _)| self.locate(k)).collect();
        let mut guards = self.lock_many(located.iter().map(|l| l.shard));
        if only_if_none_exist {
            for ((key, _), at) in pairs.iter().zip(&located) {
                let g = guard_index(&guards, at.shard);
                if guards[g].1.locate(key, at.hash, now_ms).is_some() {
                    return Ok(false);
                }
            }
        }
        for ((key, value), at) in pairs.iter().zip(&located) {
            let g = guard_index(&guards, at.shard);
            let shard = &mut guards[g].1;
            let found = shard.locate(key, at.hash, now_ms);
            shard.put(
                key,
                at.hash,
                at.slot,
                found,
                now_ms,
                NewItem::new(value.clone()),
            )?;
        }
        Ok(true)
    }

    /// Renames `from` to `to`, keeping the value and TTL. With `nx`, refuses an existing `to`.
    pub fn rename(&self, from: &[u8], to: &[u8], nx: bool, now_ms: u64) -> Result<RenameOutcome> {
        let src = self.locate(from);
        let dst = self.locate(to);
        let mut guards = self.lock_many([src.shard, dst.shard].into_iter());
        let si = guard_index(&guards, src.shard);
        let di = guard_index(&guards, dst.shard);
        let Some(item) = guards[si].1.read(from, src.hash, now_ms, false) else {
            return Ok(RenameOutcome::NoSuchKey);
        };
        if from == to {
            return Ok(if nx {
                RenameOutcome::DestinationExists
            } else {
                RenameOutcome::Renamed
            });
        }
        let found = guards[di].1.locate(to, dst.hash, now_ms);
        if nx && found.is_some() {
            return Ok(RenameOutcome::DestinationExists);
        }
        let moved = NewItem {
            value: item.value,
            expires_at_ms: item.expires_at_ms,
            flags: item.flags,
            meta: item.meta,
        };
        guards[di]
            .1
            .put(to, dst.hash, dst.slot, found, now_ms, moved)?;
        guards[si].1.remove(from, src.hash, now_ms);
        Ok(RenameOutcome::Renamed)
    }

    /// Locks the given shards in ascending order (the one lock order, so no deadlock).
    fn lock_many(
        &self,
        shards: impl Iterator<Item = usize>,
    ) -> Vec<(usize, MutexGuard<'_, Shard>)> {
        let mut indices: Vec<usize> = shards.collect();
        indices.sort_unstable();
        indices.dedup();
        indices.into_iter().map(|i| (i, self.shard(i))).collect()
    }

    /// Reclaims expired keys: up to `max_per_shard` from each shard, one lock at a time.
    /// Returns how many it removed and whether some shard still has due keys.
    pub fn expire_cycle(&self, now_ms: u64, max_per_shard: usize) -> (usize, bool) {
        let mut removed = 0;
        let mut more = false;
        for shard in self.shards.iter() {
            let (n, m) = lock(shard).expire_due(now_ms, max_per_shard);
            removed += n;
            more |= m;
        }
        (removed, more)
    }

    /// Returns the number of keys (expired but unreclaimed ones included, as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Returns true when no keys are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key.
    pub fn clear(&self) {
        self.shards.iter().for_each(|s| lock(s).clear());
    }

    /// Returns totals over all shards.
    pub fn stats(&self) -> StoreStats {
        let mut total = StoreStats::default();
        for shard in self.shards.iter() {
            let s = lock(shard).stats();
            total.keys += s.keys;
            total.keys_with_ttl += s.keys_with_ttl;
            total.used_bytes += s.used_bytes;
            total.hits += s.hits;
            total.misses += s.misses;
            total.expired += s.expired;
            total.evicted += s.evicted;
        }
        total
    }

    /// Returns the number of keys in `slot`.
    pub fn count_in_slot(&self, slot: u16) -> usize {
        self.shard(self.slot_shard(slot)).count_in_slot(slot)
    }

    /// Returns up to `max` keys of `slot`.
    pub fn keys_in_slot(&self, slot: u16, max: usize, now_ms: u64) -> Vec<Bytes> {
        self.shard(self.slot_shard(slot))
            .keys_in_slot(slot, max, now_ms)
    }

    fn slot_shard(&self, slot: u16) -> usize {
        usize::from(slot) & (self.shards.len() - 1)
    }

    /// Walks the keyspace from `cursor` (0 to start), calling `f` for each key until it
    /// returns false. Returns the cursor to continue from, 0 when the walk is complete.
    ///
    /// A key present for the whole walk is visited at least once: positions are stable
    /// because entries never move within a shard.
    pub fn scan(&self, cursor: u64, now_ms: u64, mut f: impl FnMut(&[u8]) -> bool) -> u64 {
        let mut shard = (cursor >> 32) as usize;
        let mut pos = (cursor & 0xFFFF_FFFF) as usize;
        while shard < self.shards.len() {
            let mut stopped = false;
            let next = self.shard(shard).scan(pos, now_ms, |k| {
                let go = f(k);
                stopped = !go;
                go
            });
            if stopped && next != 0 {
                return ((shard as u64) << 32) | next as u64;
            }
            shard += 1;
            pos = 0;
            if stopped {
                return if shard < self.shards.len() {
                    (shard as u64) << 32
                } else {
                    0
                };
            }
        }
        0
    }

    /// Returns a random key, if any.
    pub fn random_key(&self, now_ms: u64, seed: u64) -> Option<Bytes> {
        let n = self.shards.len();
        let start = (seed as usize) & (n - 1);
        (0..n).find_map(|i| self.shard((start + i) & (n - 1)).random_key(now_ms))
    }

    /// Returns the number of shard bits (`shards = 1 << bits`).
    pub fn shard_bits(&self) -> u32 {
        self.shard_bits
    }
}

/// Returns the position of `shard`'s guard in a list made by `lock_many`.
fn guard_index(guards: &[(usize, MutexGuard<'_, Shard>)], shard: usize) -> usize {
    guards.iter().position(|(i, _)| *i == shard).unwrap_or(0)
}

/// Locks a mutex, ignoring poisoning: a panic in one request must not stop the node, and every
/// shard operation leaves the shard consistent before it can panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
