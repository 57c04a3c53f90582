// Hot path: every key operation runs here under the shard's lock.

//! One shard: a slab arena of entries with an exact LRU list, a TTL index and per-slot lists.
//!
//! # Layout
//!
//! Entries live in a `Vec` (the arena) and are named by their `u32` index. An entry is 56
//! bytes of metadata plus one heap block holding its key followed by its value, so a lookup
//! that compares the key has already pulled the start of the value into cache, and a key
//! costs one allocation, not two. Three intrusive structures thread through the arena, so
//! every operation is O(1) (TTL: O(log n)):
//!
//! - the hash index, a `hashbrown::HashTable<u32>` keyed by the entry's key (the hash is
//!   recomputed from the key when the table grows, which saves 8 bytes per entry);
//! - the LRU list (`prev`/`next`): head is the most recently used entry, tail the eviction
//!   candidate; free arena slots reuse `next` as the free list;
//! - one list per hash slot (`slot_prev`/`slot_next`) with a count, so a slot's keys can be
//!   counted in O(1) and iterated in time proportional to the slot, which migration needs.
//!
//! # Expiry
//!
//! Keys with a TTL are also in a `BTreeSet<(expires_at_ms, index)>`. Reads check the deadline
//! (an expired key is never returned: it is removed on the spot), and the active cycle pops
//! due entries from the front of the set, a bounded number per call, so reclaiming costs
//! O(expired · log n) and never a scan of live keys. This is the deterministic cousin of
//! Redis's sampling cycle: every expired key is found, not 75% of them.
//!
//! # Memory
//!
//! Each entry is charged what it really costs: the metadata, its index slot, its heap block
//! rounded up as the allocator rounds it, and its TTL index node if it has a TTL (see
//! [`charge_bytes`]). A write that would take the shard over its budget evicts from the LRU
//! tail (policy `allkeys-lru`) or is refused (`noeviction`). When the shard becomes empty its arena and table are released, so memory
//! returns to its empty baseline after a mass expiry.

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use bytes::Bytes;
use hashbrown::HashTable;

use crate::{EvictionPolicy, Item, ItemRef, Mutation, NewItem, WriteError};

const NIL: u32 = u32::MAX;

/// Per-entry metadata: the arena slot plus its share of the hash index (4-byte slots at a
/// load factor between 7/16 and 7/8, and a control byte).
pub const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>() + 8;

/// The TTL index node of a key with an expiry (a `BTreeSet` element with its share of node
/// overhead).
pub const TTL_OVERHEAD_BYTES: usize = 24;

/// Returns what a key of `key_len` bytes with a value of `value_len` bytes costs: metadata,
/// index, and the heap block rounded as allocators round it (modelled on glibc's malloc: 8
/// bytes of header, 16-byte granules, 32 bytes at least; mimalloc's size classes, which the
/// binary uses, land within a few percent of it).
pub fn charge_bytes(key_len: usize, value_len: usize, has_ttl: bool) -> usize {
    let block = (key_len + value_len + 8).next_multiple_of(16).max(32);
    ENTRY_OVERHEAD_BYTES + block + if has_ttl { TTL_OVERHEAD_BYTES } else { 0 }
}

const LIVE: u8 = 1;

/// One key. 56 bytes; field order keeps it free of padding holes.
#[derive(Debug)]
struct Entry {
    /// The key followed by the value.
    data: Box<[u8]>,
    /// Unix milliseconds; 0 means no expiry.
    expires_at_ms: u64,
    key_len: u32,
    flags: u32,
    /// The shard's write counter when this item was written: with the entry's index, its CAS.
    version: u32,
    prev: u32,
    next: u32,
    slot_prev: u32,
    slot_next: u32,
    slot: u16,
    /// Protocol-defined bits (memcached's stale and win flags), opaque here.
    meta: u8,
    /// `LIVE` while the arena slot holds a key.
    state: u8,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    fn live(&self) -> bool {
        self.state & LIVE != 0
    }

    fn charge(&self) -> usize {
        let key_len = self.key_len as usize;
        charge_bytes(key_len, self.data.len() - key_len, self.expires_at_ms != 0)
    }

    /// A key expires once the clock has passed its deadline (`now > deadline`, as Redis).
    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms < now_ms
    }

    fn as_ref(&self, cas: u64) -> ItemRef<'_> {
        ItemRef {
            value: self.value(),
            expires_at_ms: (self.expires_at_ms != 0).then_some(self.expires_at_ms),
            flags: self.flags,
            cas,
            meta: self.meta,
        }
    }
}

/// Counters kept by a shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    /// Live entries.
    pub keys: usize,
    /// Entries with a TTL.
    pub keys_with_ttl: usize,
    /// Bytes charged against the budget.
    pub used_bytes: usize,
    /// Lookups that found a live key.
    pub hits: u64,
    /// Lookups that found nothing (or only an expired key).
    pub misses: u64,
    /// Keys removed because their TTL passed.
    pub expired: u64,
    /// Keys removed to make room.
    pub evicted: u64,
}

/// One shard of the keyspace. Not thread-safe by itself: the store wraps each in a mutex.
#[derive(Debug)]
pub struct Shard {
    entries: Vec<Entry>,
    free_head: u32,
    index: HashTable<u32>,
    lru_head: u32,
    lru_tail: u32,
    ttl: BTreeSet<(u64, u32)>,
    /// Per local slot: (first entry, count). Local slot = slot >> shard_bits.
    slots: Vec<(u32, u32)>,
    shard_bits: u32,
    budget_bytes: usize,
    policy: EvictionPolicy,
    max_value_bytes: usize,
    /// Counts writes; an entry's version is this counter at its last write.
    writes: u32,
    shard_index: u32,
    hasher: foldhash::fast::FixedState,
    rng: u64,
    stats: ShardStats,
    /// Where changes are reported, when replication is on.
    journal: Option<std::sync::Arc<dyn crate::journal::Journal>>,
}

impl Shard {
    /// Returns an empty shard number `shard_index` of `1 << shard_bits`, hashing keys with
    /// `hasher` (the store's, so one hash serves both the shard and its index).
    pub fn new(shard_index: usize, shard_bits: u32, hasher: foldhash::fast::FixedState) -> Self {
        let slots_here = crate::SLOT_COUNT >> shard_bits;
        Self {
            entries: Vec::new(),
            free_head: NIL,
            index: HashTable::new(),
            lru_head: NIL,
            lru_tail: NIL,
            ttl: BTreeSet::new(),
            slots: vec![(NIL, 0); slots_here.max(1)],
            shard_bits,
            budget_bytes: 0,
            policy: EvictionPolicy::AllKeysLru,
            max_value_bytes: usize::MAX,
            writes: 0,
            shard_index: shard_index as u32,
            hasher,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (shard_index as u64 + 1),
            stats: ShardStats::default(),
            journal: None,
        }
    }

    /// Starts (or, with `None`, stops) reporting changes to `journal`.
    pub fn set_journal(&mut self, journal: Option<std::sync::Arc<dyn crate::journal::Journal>>) {
        self.journal = journal;
    }

    /// Reports the whole current state of the entry at `idx`.
    fn journal_entry(&self, idx: u32) {
        if let Some(journal) = &self.journal {
            let e = &self.entries[idx as usize];
            journal.record(
                self.shard_index as usize,
                crate::journal::Record::Put {
                    key: Bytes::copy_from_slice(e.key()),
                    value: Bytes::copy_from_slice(e.value()),
                    flags: e.flags,
                    expires_at_ms: e.expires_at_ms,
                    meta: e.meta,
                },
            );
        }
    }

    /// Every live item as a `Put` record (expired ones left out), for a full sync.
    pub fn snapshot(&self, now_ms: u64) -> Vec<crate::journal::Record> {
        self.entries
            .iter()
            .filter(|e| e.live() && !e.expired(now_ms))
            .map(|e| crate::journal::Record::Put {
                key: Bytes::copy_from_slice(e.key()),
                value: Bytes::copy_from_slice(e.value()),
                flags: e.flags,
                expires_at_ms: e.expires_at_ms,
                meta: e.meta,
            })
            .collect()
    }

    /// Sets the memory budget (0 = unlimited), the policy and the value size limit.
    pub fn configure(&mut self, budget_bytes: usize, policy: EvictionPolicy, max_value: usize) {
        self.budget_bytes = budget_bytes;
        self.policy = policy;
        self.max_value_bytes = max_value;
    }

    /// Evicts until the shard fits its budget (after the budget was lowered).
    pub fn enforce_budget(&mut self) {
        if self.policy == EvictionPolicy::AllKeysLru {
            self.evict_until(0, NIL);
        }
    }

    /// Returns the shard's counters.
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            keys: self.index.len(),
            keys_with_ttl: self.ttl.len(),
            ..self.stats
        }
    }

    /// Returns the number of live (possibly expired but not yet reclaimed) keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Returns true when the shard holds no keys.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        self.index
            .find(hash, |&i| self.entries[i as usize].key() == key)
            .copied()
    }

    /// Finds a live, unexpired entry; removes it if it has expired.
    fn lookup(&mut self, key: &[u8], hash: u64, now_ms: u64) -> Option<u32> {
        let idx = self.find(key, hash)?;
        if self.entries[idx as usize].expired(now_ms) {
            self.remove_at(idx);
            self.stats.expired += 1;
            return None;
        }
        Some(idx)
    }

    /// Returns the CAS of the entry at `idx`: its version in the high half, and in the low
    /// half its index and shard, so two live items never share one, and rewriting an item
    /// changes it.
    fn cas(&self, idx: u32) -> u64 {
        let place = (idx << self.shard_bits) | self.shard_index;
        (u64::from(self.entries[idx as usize].version) << 32) | u64::from(place)
    }

    fn view(&self, idx: u32) -> ItemRef<'_> {
        self.entries[idx as usize].as_ref(self.cas(idx))
    }

    /// Reads the item: with `bump`, marks it most recently used and counts a hit or a miss;
    /// without, it is a peek that changes nothing.
    pub fn read(&mut self, key: &[u8], hash: u64, now_ms: u64, bump: bool) -> Option<Item> {
        let found = self.lookup(key, hash, now_ms);
        if bump {
            match found {
                Some(idx) => {
                    self.stats.hits += 1;
                    self.touch_lru(idx);
                }
                None => self.stats.misses += 1,
            }
        }
        found.map(|idx| self.view(idx).to_item())
    }

    /// Returns true if the key exists; marks it used when `touch` is set.
    pub fn contains(&mut self, key: &[u8], hash: u64, now_ms: u64, touch: bool) -> bool {
        match self.lookup(key, hash, now_ms) {
            Some(idx) => {
                if touch {
                    self.touch_lru(idx);
                }
                true
            }
            None => false,
        }
    }

    /// Removes the key; returns its item if it was live.
    pub fn remove(&mut self, key: &[u8], hash: u64, now_ms: u64) -> Option<Item> {
        let idx = self.lookup(key, hash, now_ms)?;
        let item = self.view(idx).to_item();
        self.remove_at(idx);
        Some(item)
    }

    /// Reads the key (if live), lets `decide` choose what to do, and applies it.
    ///
    /// `decide` sees the current item; its [`Mutation`] keeps, removes, replaces the item or
    /// changes its expiry. A replacement is checked against the value limit and the budget
    /// (evicting older entries, never this one, under `allkeys-lru`) before anything changes,
    /// so a refused write leaves the shard as it was.
    pub fn mutate<R>(
        &mut self,
        key: &[u8],
        hash: u64,
        slot: u16,
        now_ms: u64,
        decide: impl FnOnce(Option<ItemRef<'_>>) -> Mutation<R>,
    ) -> Result<R, WriteError> {
        self.mutate_cas(key, hash, slot, now_ms, decide)
            .map(|(r, _)| r)
    }

    /// As [`Shard::mutate`], and also returns the CAS of the key afterwards (`None` if it is
    /// absent), for replies that report the CAS of what they wrote.
    pub fn mutate_cas<R>(
        &mut self,
        key: &[u8],
        hash: u64,
        slot: u16,
        now_ms: u64,
        decide: impl FnOnce(Option<ItemRef<'_>>) -> Mutation<R>,
    ) -> Result<(R, Option<u64>), WriteError> {
        let found = self.lookup(key, hash, now_ms);
        let mutation = decide(found.map(|i| self.view(i)));
        let (result, now_at) = match mutation {
            Mutation::Keep(r) => {
                if let Some(idx) = found {
                    self.touch_lru(idx);
                }
                (r, found)
            }
            Mutation::Remove(r) => {
                if let Some(idx) = found {
                    self.remove_at(idx);
                }
                (r, None)
            }
            Mutation::SetExpiry(expires_at_ms, r) => {
                if let Some(idx) = found {
                    self.set_expiry(idx, expires_at_ms.unwrap_or(0));
                    self.touch_lru(idx);
                    self.journal_entry(idx);
                }
                (r, found)
            }
            Mutation::Modify {
                expires_at_ms,
                meta,
                result,
            } => {
                if let Some(idx) = found {
                    if let Some(expiry) = expires_at_ms {
                        self.set_expiry(idx, expiry.unwrap_or(0));
                    }
                    if let Some(meta) = meta {
                        self.entries[idx as usize].meta = meta;
                    }
                    self.touch_lru(idx);
                    self.journal_entry(idx);
                }
                (result, found)
            }
            Mutation::Put(new, r) => (r, Some(self.put(key, hash, slot, found, now_ms, new)?)),
        };
        Ok((result, now_at.map(|idx| self.cas(idx))))
    }

    /// Stores `new` under `key`, replacing the item at `found` if any; returns its index.
    pub(crate) fn put(
        &mut self,
        key: &[u8],
        hash: u64,
        slot: u16,
        found: Option<u32>,
        now_ms: u64,
        new: NewItem,
    ) -> Result<u32, WriteError> {
        let NewItem {
            value,
            expires_at_ms,
            flags,
            meta,
        } = new;
        if value.len() > self.max_value_bytes {
            return Err(WriteError::ValueTooLarge);
        }
        let expires_at_ms = expires_at_ms.unwrap_or(0);
        let new_charge = charge_bytes(key.len(), value.len(), expires_at_ms != 0);
        let old_charge = found.map_or(0, |i| self.entries[i as usize].charge());
        if self.budget_bytes > 0 && new_charge > old_charge {
            let grow = new_charge - old_charge;
            if self.stats.used_bytes + grow > self.budget_bytes {
                // Expired keys go before any live key is evicted or a write refused.
                self.expire_due(now_ms, usize::MAX);
            }
            if self.stats.used_bytes + grow > self.budget_bytes {
                if self.policy == EvictionPolicy::NoEviction {
                    return Err(WriteError::OutOfMemory);
                }
                if !self.evict_until(grow, found.unwrap_or(NIL)) {
                    return Err(WriteError::OutOfMemory);
                }
            }
        }
        let block = |key: &[u8]| {
            let mut data = Vec::with_capacity(key.len() + value.len());
            data.extend_from_slice(key);
            data.extend_from_slice(&value);
            data.into_boxed_slice()
        };
        self.writes = self.writes.wrapping_add(1);
        let version = self.writes;
        let idx = match found {
            Some(idx) => {
                self.set_expiry(idx, 0);
                self.stats.used_bytes -= self.entries[idx as usize].charge();
                let entry = &mut self.entries[idx as usize];
                let key_len = entry.key_len as usize;
                if entry.data.len() == key_len + value.len() {
                    // Same size: overwrite the value in place, no allocation (the common case
                    // of fixed-size values being refreshed).
                    entry.data[key_len..].copy_from_slice(&value);
                } else {
                    entry.data = block(key);
                }
                entry.flags = flags;
                entry.meta = meta;
                entry.version = version;
                self.touch_lru(idx);
                idx
            }
            None => {
                let entry = Entry {
                    data: block(key),
                    expires_at_ms: 0,
                    key_len: key.len() as u32,
                    flags,
                    version,
                    prev: NIL,
                    next: NIL,
                    slot_prev: NIL,
                    slot_next: NIL,
                    slot,
                    meta,
                    state: LIVE,
                };
                let idx = self.alloc(entry);
                let (entries, hasher) = (&self.entries, &self.hasher);
                self.index
                    .insert_unique(hash, idx, |&i| hasher.hash_one(entries[i as usize].key()));
                self.link_front(idx);
                self.link_slot(idx);
                idx
            }
        };
        self.stats.used_bytes += self.entries[idx as usize].charge();
        self.set_expiry(idx, expires_at_ms);
        if let Some(journal) = &self.journal {
            // The written value is still at hand (shared, not copied) for the record.
            journal.record(
                self.shard_index as usize,
                crate::journal::Record::Put {
                    key: Bytes::copy_from_slice(key),
                    value,
                    flags,
                    expires_at_ms,
                    meta,
                },
            );
        }
        Ok(idx)
    }

    /// Evicts LRU entries other than `keep` until `grow` more bytes fit the budget. Returns
    /// false if even an otherwise empty shard can't fit them.
    fn evict_until(&mut self, grow: usize, keep: u32) -> bool {
        let mut victim = self.lru_tail;
        while self.stats.used_bytes + grow > self.budget_bytes {
            if victim == NIL {
                return false;
            }
            if victim == keep {
                victim = self.entries[victim as usize].prev;
                continue;
            }
            let prev = self.entries[victim as usize].prev;
            self.remove_at(victim);
            self.stats.evicted += 1;
            victim = prev;
        }
        true
    }

    fn alloc(&mut self, entry: Entry) -> u32 {
        debug_assert!(entry.key_len as usize <= entry.data.len());
        if self.free_head != NIL {
            let idx = self.free_head;
            self.free_head = self.entries[idx as usize].next;
            self.entries[idx as usize] = entry;
            idx
        } else {
            // A shard never holds 4 billion entries: memory runs out long before.
            let idx = self.entries.len() as u32;
            self.entries.push(entry);
            idx
        }
    }

    /// Sets the deadline (0: none), keeping the TTL index and the charge for its node.
    fn set_expiry(&mut self, idx: u32, expires_at_ms: u64) {
        let entry = &mut self.entries[idx as usize];
        let old = entry.expires_at_ms;
        if old == expires_at_ms {
            return;
        }
        entry.expires_at_ms = expires_at_ms;
        if old != 0 {
            self.ttl.remove(&(old, idx));
            self.stats.used_bytes -= TTL_OVERHEAD_BYTES;
        }
        if expires_at_ms != 0 {
            self.ttl.insert((expires_at_ms, idx));
            self.stats.used_bytes += TTL_OVERHEAD_BYTES;
        }
    }

    fn remove_at(&mut self, idx: u32) {
        let (hash, charge, expires) = {
            let e = &self.entries[idx as usize];
            if let Some(journal) = &self.journal {
                let key = Bytes::copy_from_slice(e.key());
                journal.record(
                    self.shard_index as usize,
                    crate::journal::Record::Del { key },
                );
            }
            (self.hasher.hash_one(e.key()), e.charge(), e.expires_at_ms)
        };
        if let Ok(slot) = self.index.find_entry(hash, |&i| i == idx) {
            slot.remove();
        }
        if expires != 0 {
            self.ttl.remove(&(expires, idx));
        }
        self.unlink_lru(idx);
        self.unlink_slot(idx);
        self.stats.used_bytes -= charge;
        let free_head = self.free_head;
        let e = &mut self.entries[idx as usize];
        e.state = 0;
        e.data = Box::default();
        e.key_len = 0;
        e.expires_at_ms = 0;
        e.next = free_head;
        self.free_head = idx;
        if self.index.is_empty() {
            self.release();
        }
    }

    /// Drops the arena and tables of an empty shard so its memory returns to the allocator.
    fn release(&mut self) {
        // Small shards keep their allocations: a key set and deleted over and over
        // shouldn't reallocate each time.
        if self.entries.capacity() > 1024 {
            self.entries = Vec::new();
            self.index = HashTable::new();
        } else {
            self.entries.clear();
            self.index.clear();
        }
        self.ttl = BTreeSet::new();
        self.free_head = NIL;
        self.lru_head = NIL;
        self.lru_tail = NIL;
        self.slots.iter_mut().for_each(|s| *s = (NIL, 0));
        self.stats.used_bytes = 0;
    }

    fn touch_lru(&mut self, idx: u32) {
        if self.lru_head != idx {
            self.unlink_lru(idx);
            self.link_front(idx);
        }
    }

    fn link_front(&mut self, idx: u32) {
        let old_head = self.lru_head;
        {
            let e = &mut self.entries[idx as usize];
            e.prev = NIL;
            e.next = old_head;
        }
        if old_head != NIL {
            self.entries[old_head as usize].prev = idx;
        } else {
            self.lru_tail = idx;
        }
        self.lru_head = idx;
    }

    fn unlink_lru(&mut self, idx: u32) {
        let (prev, next) = {
            let e = &self.entries[idx as usize];
            (e.prev, e.next)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.lru_head = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        } else {
            self.lru_tail = prev;
        }
    }

    fn local_slot(&self, slot: u16) -> usize {
        usize::from(slot) >> self.shard_bits
    }

    fn link_slot(&mut self, idx: u32) {
        let local = self.local_slot(self.entries[idx as usize].slot);
        let (head, count) = self.slots[local];
        self.entries[idx as usize].slot_prev = NIL;
        self.entries[idx as usize].slot_next = head;
        if head != NIL {
            self.entries[head as usize].slot_prev = idx;
        }
        self.slots[local] = (idx, count + 1);
    }

    fn unlink_slot(&mut self, idx: u32) {
        let (prev, next, slot) = {
            let e = &self.entries[idx as usize];
            (e.slot_prev, e.slot_next, e.slot)
        };
        let local = self.local_slot(slot);
        if prev != NIL {
            self.entries[prev as usize].slot_next = next;
        } else {
            self.slots[local].0 = next;
        }
        if next != NIL {
            self.entries[next as usize].slot_prev = prev;
        }
        self.slots[local].1 -= 1;
    }

    /// Removes up to `max` entries whose deadline has passed (`deadline < now_ms`). Returns how many it removed and
    /// whether more are already due.
    pub fn expire_due(&mut self, now_ms: u64, max: usize) -> (usize, bool) {
        let mut removed = 0;
        while let Some(&(deadline, idx)) = self.ttl.first() {
            if deadline >= now_ms {
                return (removed, false);
            }
            if removed == max {
                return (removed, true);
            }
            self.remove_at(idx);
            self.stats.expired += 1;
            removed += 1;
        }
        (removed, false)
    }

    /// Returns the number of keys in `slot` (expired but unreclaimed keys included).
    pub fn count_in_slot(&self, slot: u16) -> usize {
        self.slots[self.local_slot(slot)].1 as usize
    }

    /// Returns up to `max` live keys of `slot`.
    pub fn keys_in_slot(&self, slot: u16, max: usize, now_ms: u64) -> Vec<Bytes> {
        let mut keys = Vec::new();
        let mut cur = self.slots[self.local_slot(slot)].0;
        while cur != NIL && keys.len() < max {
            let e = &self.entries[cur as usize];
            if !e.expired(now_ms) {
                keys.push(Bytes::copy_from_slice(e.key()));
            }
            cur = e.slot_next;
        }
        keys
    }

    /// Calls `f` with each live key from arena position `from`, until `f` returns false or the
    /// arena ends. Returns the position after the last key visited (0 when the end was reached).
    pub fn scan(&self, from: usize, now_ms: u64, mut f: impl FnMut(&[u8]) -> bool) -> usize {
        let mut pos = from;
        while pos < self.entries.len() {
            let e = &self.entries[pos];
            pos += 1;
            if e.live() && !e.expired(now_ms) && !f(e.key()) {
                return if pos < self.entries.len() { pos } else { 0 };
            }
        }
        0
    }

    /// Returns a random live key, if any.
    pub fn random_key(&mut self, now_ms: u64) -> Option<Bytes> {
        if self.index.is_empty() {
            return None;
        }
        // xorshift64: cheap, and the only randomness this crate needs.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let n = self.entries.len();
        let start = (self.rng % n as u64) as usize;
        (0..n)
            .map(|i| &self.entries[(start + i) % n])
            .find(|e| e.live() && !e.expired(now_ms))
            .map(|e| Bytes::copy_from_slice(e.key()))
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        if let Some(journal) = &self.journal {
            journal.record(self.shard_index as usize, crate::journal::Record::Clear);
        }
        self.release();
    }

    /// Returns the keys from least to most recently used (for tests and diagnostics).
    pub fn lru_order(&self) -> Vec<Bytes> {
        let mut keys = Vec::with_capacity(self.index.len());
        let mut cur = self.lru_tail;
        while cur != NIL {
            keys.push(Bytes::copy_from_slice(self.entries[cur as usize].key()));
            cur = self.entries[cur as usize].prev;
        }
        keys
    }

    /// Looks the key up (removing it if expired) and returns its arena index.
    pub(crate) fn locate(&mut self, key: &[u8], hash: u64, now_ms: u64) -> Option<u32> {
        self.lookup(key, hash, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_56_bytes() {
        // Per-key memory is a promise (fewer bytes per key than Redis): keep the entry small.
        assert_eq!(std::mem::size_of::<Entry>(), 56);
    }

    #[test]
    fn charges_follow_allocator_rounding() {
        assert_eq!(charge_bytes(0, 0, false), ENTRY_OVERHEAD_BYTES + 32);
        assert_eq!(charge_bytes(16, 100, false), ENTRY_OVERHEAD_BYTES + 128);
        assert_eq!(
            charge_bytes(16, 100, true),
            ENTRY_OVERHEAD_BYTES + 128 + TTL_OVERHEAD_BYTES
        );
    }
}
