#!/usr/bin/env python3
"""Compares a hash ring with virtual nodes against the 16384-slot table (docs/cluster.md).

For N shards, measures balance (largest shard's share of keys over the mean) and the share of
keys that move when a shard is added. Keys are 200,000 random strings; the ring hashes
"shard-i-vnode-j" points with MD5 (as ketama does); the slot table is the planner's
(contiguous balanced ranges; an add takes ~1/(N+1) of the slots evenly from every shard).
Usage: python3 bench/ring_vs_slots.py
"""
import bisect, hashlib, random, zlib

KEYS = [f"key:{random.Random(7).random()}:{i}" for i in range(200_000)]

def h64(s):
    return int.from_bytes(hashlib.md5(s.encode()).digest()[:8], "big")

def ring(shards, vnodes):
    points = sorted((h64(f"shard-{s}-vnode-{v}"), s) for s in shards for v in range(vnodes))
    keys = [p[0] for p in points]
    def owner(k):
        i = bisect.bisect(keys, h64(k)) % len(points)
        return points[i][1]
    return owner

def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc

SLOT = {k: crc16(k.encode()) % 16384 for k in KEYS}

def balance_table(table, shards):
    """The planner's algorithm (crates/cluster/src/placement.rs::balance)."""
    live = sorted(shards)
    owned = {s: [] for s in live}
    free = []
    for slot, o in enumerate(table):
        (owned[o] if o in owned else free).append(slot)
    n = len(live); base, extra = divmod(16384, n)
    by_size = sorted(live, key=lambda s: (-len(owned[s]), s))
    quota = {s: base + (1 if r < extra else 0) for r, s in enumerate(by_size)}
    for s in live:
        if len(owned[s]) > quota[s]:
            free += owned[s][quota[s]:]; owned[s] = owned[s][:quota[s]]
    free.sort(); it = iter(free)
    new = [None] * 16384
    for s in live:
        for slot in owned[s]: new[slot] = s
        for _ in range(len(owned[s]), quota[s]): new[next(it)] = s
    return new

def stats(owner_of, n):
    counts = {}
    for k in KEYS:
        o = owner_of(k); counts[o] = counts.get(o, 0) + 1
    return max(counts.values()) / (len(KEYS) / n)

print("| shards | method | largest shard / mean | keys moved on add (ideal 1/(N+1)) | lookup |")
print("|---|---|---|---|---|")
for n in (3, 6, 12):
    shards = list(range(n))
    for v in (16, 100, 256):
        a, b = ring(shards, v), ring(shards + [n], v)
        moved = sum(a(k) != b(k) for k in KEYS) / len(KEYS)
        print(f"| {n} | ring, {v} vnodes/shard | {stats(a, n):.3f} | {moved:.3f} (ideal {1/(n+1):.3f}) | binary search over {n*v} points |")
    t = balance_table([None] * 16384, shards)
    t2 = balance_table(t, shards + [n])
    moved = sum(t[SLOT[k]] != t2[SLOT[k]] for k in KEYS) / len(KEYS)
    print(f"| {n} | 16384-slot table | {stats(lambda k: t[SLOT[k]], n):.3f} | {moved:.3f} (ideal {1/(n+1):.3f}) | one array index |")
