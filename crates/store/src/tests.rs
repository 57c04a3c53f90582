//! Store tests: fake clock (plain numbers), LRU and TTL checked against a reference model.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn store(shards: usize, max_memory_bytes: usize) -> Store {
    Store::new(StoreConfig {
        shards,
        max_memory_bytes,
        ..StoreConfig::default()
    })
}

fn put(store: &Store, key: &str, value: &str, now: u64) {
    store
        .set(key.as_bytes(), NewItem::new(b(value)), now)
        .expect("set");
}

fn put_ttl(store: &Store, key: &str, value: &str, expires_at_ms: u64, now: u64) {
    let item = NewItem {
        value: b(value),
        expires_at_ms: Some(expires_at_ms),
        flags: 0,
        meta: 0,
    };
    store.set(key.as_bytes(), item, now).expect("set");
}

fn charge(key: &str, value: &str) -> usize {
    charge_bytes(key.len(), value.len(), false)
}

#[test]
fn get_after_set_returns_value() {
    let s = store(4, 0);
    put(&s, "k", "v", 0);
    assert_eq!(s.get(b"k", 0).map(|i| i.value), Some(b("v")));
    assert_eq!(s.get(b"missing", 0), None);
    let st = s.stats();
    assert_eq!((st.hits, st.misses, st.keys), (1, 1, 1));
}

#[test]
fn get_after_ttl_returns_nil() {
    let s = store(4, 0);
    put_ttl(&s, "k", "v", 1_000, 0);
    assert!(s.get(b"k", 1_000).is_some());
    assert_eq!(s.get(b"k", 1_001), None);
    assert_eq!(s.stats().expired, 1);
    assert_eq!(s.len(), 0);
}

#[test]
fn active_expiry_reclaims_without_reads_and_is_bounded_per_call() {
    let s = store(1, 0);
    for i in 0..100 {
        put_ttl(&s, &format!("k{i}"), "v", 500, 0);
    }
    put(&s, "forever", "v", 0);
    assert_eq!(s.expire_cycle(500, 10), (0, false));
    assert_eq!(s.expire_cycle(501, 30), (30, true));
    assert_eq!(s.len(), 71);
    let (n, more) = s.expire_cycle(501, 1000);
    assert_eq!((n, more), (70, false));
    assert_eq!(s.len(), 1);
    assert_eq!(s.stats().used_bytes, charge("forever", "v"));
    assert_eq!(s.stats().keys_with_ttl, 0);
}

#[test]
fn mass_expiry_returns_memory_to_the_empty_baseline() {
    let s = store(8, 0);
    for i in 0..20_000 {
        put_ttl(&s, &format!("key:{i}"), "0123456789", 1_000, 0);
    }
    assert!(s.stats().used_bytes > 20_000 * 10);
    let mut now = 1_001;
    while s.expire_cycle(now, 500).1 {
        now += 1;
    }
    let st = s.stats();
    assert_eq!((st.keys, st.used_bytes, st.keys_with_ttl), (0, 0, 0));
    assert_eq!(st.expired, 20_000);
}

#[test]
fn eviction_removes_least_recently_used_first() {
    let per = charge("k0", "vvvv");
    let s = store(1, per * 3);
    put(&s, "k0", "vvvv", 0);
    put(&s, "k1", "vvvv", 0);
    put(&s, "k2", "vvvv", 0);
    assert!(s.get(b"k0", 0).is_some()); // k1 is now the LRU
    put(&s, "k3", "vvvv", 0);
    assert_eq!(s.get(b"k1", 0), None);
    for k in ["k0", "k2", "k3"] {
        assert!(s.get(k.as_bytes(), 0).is_some(), "{k}");
    }
    assert_eq!(s.stats().evicted, 1);
    assert!(s.stats().used_bytes <= per * 3);
}

#[test]
fn overwrite_never_evicts_the_key_being_written() {
    let s = store(1, charge("a", "x") + charge("b", "x") + 10);
    put(&s, "a", "x", 0);
    put(&s, "b", "x", 0);
    // "a" is the LRU; growing it must evict "b", not "a" itself.
    put(&s, "a", &"x".repeat(40), 0);
    assert!(s.get(b"a", 0).is_some());
    assert_eq!(s.get(b"b", 0), None);
}

#[test]
fn noeviction_refuses_writes_over_budget_and_keeps_data() {
    let per = charge("k0", "v");
    let s = Store::new(StoreConfig {
        shards: 1,
        max_memory_bytes: per * 2,
        policy: EvictionPolicy::NoEviction,
        ..StoreConfig::default()
    });
    put(&s, "k0", "v", 0);
    put(&s, "k1", "v", 0);
    let err = s.set(b"k2", NewItem::new(b("v")), 0);
    assert_eq!(err, Err(WriteError::OutOfMemory));
    assert_eq!(s.len(), 2);
    // Overwrites that don't grow are still allowed.
    put(&s, "k0", "w", 0);
    assert_eq!(s.stats().evicted, 0);
}

#[test]
fn oversized_value_is_refused_and_nothing_stored() {
    let s = Store::new(StoreConfig {
        max_value_bytes: 8,
        ..StoreConfig::default()
    });
    assert_eq!(
        s.set(b"k", NewItem::new(b("123456789")), 0),
        Err(WriteError::ValueTooLarge)
    );
    assert_eq!(s.get(b"k", 0), None);
    put(&s, "k", "12345678", 0);
}

#[test]
fn lowering_the_budget_evicts_at_once() {
    let s = store(1, 0);
    for i in 0..10 {
        put(&s, &format!("k{i}"), "v", 0);
    }
    s.reconfigure(StoreConfig {
        max_memory_bytes: charge("k0", "v") * 4,
        ..s.config()
    });
    assert_eq!(s.len(), 4);
    assert!(s.get(b"k9", 0).is_some());
    assert_eq!(s.get(b"k0", 0), None);
}

#[test]
fn slots_are_counted_and_walked_per_slot() {
    let s = store(4, 0);
    for i in 0..50 {
        put(&s, &format!("{{user}}:{i}"), "v", 0);
        put(&s, &format!("other:{i}"), "v", 0);
    }
    let slot = key_slot(b"user");
    assert_eq!(s.count_in_slot(slot), 50);
    let mut keys = s.keys_in_slot(slot, 100, 0);
    keys.sort();
    assert_eq!(keys.len(), 50);
    assert!(keys.iter().all(|k| k.starts_with(b"{user}:")));
    assert_eq!(s.keys_in_slot(slot, 7, 0).len(), 7);
    s.remove(b"{user}:3", 0);
    assert_eq!(s.count_in_slot(slot), 49);
    let total: usize = (0..SLOT_COUNT as u16).map(|sl| s.count_in_slot(sl)).sum();
    assert_eq!(total, 99);
}

#[test]
fn scan_visits_every_key_once_across_small_pages() {
    let s = store(8, 0);
    for i in 0..1000 {
        put(&s, &format!("k{i}"), "v", 0);
    }
    let mut seen = HashMap::new();
    let mut cursor = 0;
    loop {
        let mut page = 0;
        cursor = s.scan(cursor, 0, |k| {
            *seen.entry(Bytes::copy_from_slice(k)).or_insert(0) += 1;
            page += 1;
            page < 7
        });
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|&n| n == 1));
}

#[test]
fn rename_moves_value_and_ttl_across_shards() {
    let s = store(16, 0);
    put_ttl(&s, "a", "v", 5_000, 0);
    assert_eq!(s.rename(b"a", b"zzz", false, 0), Ok(RenameOutcome::Renamed));
    let item = s.get(b"zzz", 0).expect("renamed");
    assert_eq!((item.value, item.expires_at_ms), (b("v"), Some(5_000)));
    assert_eq!(s.get(b"a", 0), None);
    assert_eq!(s.rename(b"a", b"b", false, 0), Ok(RenameOutcome::NoSuchKey));
    put(&s, "b", "w", 0);
    assert_eq!(
        s.rename(b"zzz", b"b", true, 0),
        Ok(RenameOutcome::DestinationExists)
    );
}

#[test]
fn set_many_nx_is_all_or_nothing() {
    let s = store(16, 0);
    put(&s, "c", "old", 0);
    let pairs = vec![(b("a"), b("1")), (b("b"), b("2")), (b("c"), b("3"))];
    assert_eq!(s.set_many(&pairs, true, 0), Ok(false));
    assert_eq!(s.len(), 1);
    assert_eq!(s.set_many(&pairs, false, 0), Ok(true));
    assert_eq!(s.get(b"c", 0).map(|i| i.value), Some(b("3")));
}

#[test]
fn cas_changes_on_every_write_and_is_unique_across_shards() {
    let s = store(8, 0);
    let mut seen = std::collections::HashSet::new();
    for i in 0..100 {
        let key = format!("k{}", i % 10);
        put(&s, &key, "v", 0);
        assert!(seen.insert(s.peek(key.as_bytes(), 0).expect("item").cas));
    }
}

#[test]
fn random_key_finds_the_only_key() {
    let s = store(8, 0);
    assert_eq!(s.random_key(0, 3), None);
    put(&s, "only", "v", 0);
    for seed in 0..8 {
        assert_eq!(s.random_key(0, seed), Some(b("only")));
    }
}

/// Operations the model test draws.
#[derive(Debug, Clone)]
enum Op {
    Set {
        key: u8,
        len: u8,
        ttl_ms: Option<u16>,
    },
    Get(u8),
    Remove(u8),
    Advance(u16),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, 0u8..40, proptest::option::of(1u16..300))
            .prop_map(|(key, len, ttl_ms)| Op::Set { key, len, ttl_ms }),
        4 => (0u8..24).prop_map(Op::Get),
        1 => (0u8..24).prop_map(Op::Remove),
        2 => (1u16..200).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

/// The reference: a list in LRU order (front = least recent), each entry with its deadline.
#[derive(Default)]
struct Model {
    order: Vec<(String, usize, Option<u64>)>,
}

impl Model {
    fn used(&self) -> usize {
        self.order
            .iter()
            .map(|(k, len, exp)| charge_bytes(k.len(), *len, exp.is_some()))
            .sum()
    }
    fn drop_expired(&mut self, now: u64) {
        self.order
            .retain(|(_, _, exp)| exp.is_none_or(|e| e >= now));
    }
    fn position(&self, key: &str) -> Option<usize> {
        self.order.iter().position(|(k, _, _)| k == key)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// One shard, a small budget: every read must match the model exactly, so LRU eviction
    /// order, TTL and accounting are all checked.
    #[test]
    fn store_matches_reference_model(ops in proptest::collection::vec(op(), 1..300)) {
        let budget = 6 * charge_bytes(4, 20, true);
        let s = store(1, budget);
        let mut model = Model::default();
        let mut now = 1u64;
        for op in ops {
            match op {
                Op::Set { key, len, ttl_ms } => {
                    let key = format!("k{key}");
                    let expires = ttl_ms.map(|t| now + u64::from(t));
                    let value = "x".repeat(usize::from(len));
                    let item = NewItem { value: b(&value), expires_at_ms: expires, flags: 0, meta: 0 };
                    s.set(key.as_bytes(), item, now).expect("set fits after eviction");
                    model.drop_expired(now);
                    if let Some(p) = model.position(&key) {
                        model.order.remove(p);
                    }
                    let grow = charge_bytes(key.len(), value.len(), expires.is_some());
                    while model.used() + grow > budget {
                        model.order.remove(0);
                    }
                    model.order.push((key, value.len(), expires));
                }
                Op::Get(key) => {
                    let key = format!("k{key}");
                    let got = s.get(key.as_bytes(), now).map(|i| i.value.len());
                    model.drop_expired(now);
                    let want = model.position(&key).map(|p| {
                        let e = model.order.remove(p);
                        let len = e.1;
                        model.order.push(e);
                        len
                    });
                    prop_assert_eq!(got, want);
                }
                Op::Remove(key) => {
                    let key = format!("k{key}");
                    let got = s.remove(key.as_bytes(), now).is_some();
                    model.drop_expired(now);
                    let want = model.position(&key).map(|p| model.order.remove(p)).is_some();
                    prop_assert_eq!(got, want);
                }
                Op::Advance(ms) => now += u64::from(ms),
                Op::Expire => {
                    s.expire_cycle(now, usize::MAX);
                    model.drop_expired(now);
                    prop_assert_eq!(s.len(), model.order.len());
                    prop_assert_eq!(s.stats().used_bytes, model.used());
                }
            }
            prop_assert!(s.stats().used_bytes <= budget);
        }
        // The store's LRU order equals the model's, once expired keys are gone.
        s.expire_cycle(now, usize::MAX);
        model.drop_expired(now);
        let order: Vec<Bytes> = lock(&s.shards[0]).lru_order();
        let want: Vec<Bytes> = model.order.iter().map(|(k, _, _)| b(k)).collect();
        prop_assert_eq!(order, want);
    }
}

/// Collects a store's journal, as a replication backlog would.
#[derive(Debug, Default)]
struct Collect(std::sync::Mutex<Vec<Record>>);

impl Journal for Collect {
    fn record(&self, _shard: usize, record: Record) {
        self.0.lock().expect("lock").push(record);
    }
}

/// Every live key with its value, flags and expiry, sorted.
fn contents(store: &Store, now: u64) -> Vec<(Bytes, Bytes, u32, u64)> {
    let mut out = Vec::new();
    for i in 0..store.shard_count() {
        for r in store.snapshot_shard(i, now, || 0).1 {
            if let Record::Put {
                key,
                value,
                flags,
                expires_at_ms,
                ..
            } = r
            {
                out.push((key, value, flags, expires_at_ms));
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A replica that applies a primary's journal in order holds the primary's keyspace,
    /// whatever mix of writes, TTLs, deletes, expirations, evictions and flushes made it.
    #[test]
    fn a_replica_applying_the_journal_converges_on_the_primary(
        ops in proptest::collection::vec((0u8..7, 0u16..40, 1usize..200), 1..400),
    ) {
        let primary = store(4, 6_000);
        let journal = std::sync::Arc::new(Collect::default());
        primary.set_journal(Some(journal.clone()));
        let replica = store(2, 0);
        let mut now = 1_000u64;
        for (op, k, n) in ops {
            let key = format!("k{k}");
            match op {
                0 | 1 => put(&primary, &key, &"v".repeat(n), now),
                2 => put_ttl(&primary, &key, &"t".repeat(n), now + n as u64, now),
                3 => { primary.remove(key.as_bytes(), now); }
                4 => { primary.get(key.as_bytes(), now); }
                5 => { primary.expire_cycle(now, 8); }
                _ => {
                    if n == 1 { primary.clear(); } else { now += n as u64; }
                }
            }
        }
        for record in journal.0.lock().expect("lock").drain(..) {
            replica.apply(&record, now).expect("apply");
        }
        prop_assert_eq!(contents(&replica, now), contents(&primary, now));
    }
}
