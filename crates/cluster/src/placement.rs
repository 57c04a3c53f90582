//! Slot placement: which node serves which shard, and which shard owns which slot.
//!
//! This is the fixed-partition form of consistent hashing (Dynamo's strategy 3, Couchbase
//! vBuckets, Redis Cluster). A key's slot never changes (`CRC16(key) mod 16384`); what changes
//! is the table from slots to shards, and this module chooses that table so that
//!
//! - every shard owns `16384 / n` slots, or one more (balance within one slot), and
//! - a change of the shard set moves the fewest slots that any balanced table allows: a slot
//!   moves only if its shard is gone or owns more than its new quota. Adding the (n+1)th shard
//!   moves about `16384 / (n+1)` slots, taken evenly from the others; removing a shard spreads
//!   its slots evenly over the rest.
//!
//! A hash ring with virtual nodes reaches about the same movement but only approximate
//! balance (with 100 virtual nodes per shard the largest shard held 10-28% more keys than the
//! mean in our simulation), and needs a binary search per lookup; the slot table is balanced
//! to a slot and a lookup is one array index. `docs/cluster.md` has the figures
//! (`bench/ring_vs_slots.py`).
//!
//! Everything here is a pure function of its inputs, so every node (and every test) computes
//! the same plan.

use std::collections::{BTreeMap, BTreeSet};

/// The number of hash slots.
pub const SLOT_COUNT: usize = 16384;

/// A node's id.
pub type NodeId = u64;
/// A shard's id.
pub type ShardId = u32;

/// A node that can be placed in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The node.
    pub id: NodeId,
    /// Its zone (empty when the node declared none).
    pub zone: String,
}

/// Why no placement could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer nodes than one shard needs.
    #[error("{nodes} nodes can't form a shard of a primary and {replicas} replicas")]
    TooFewNodes {
        /// Nodes offered.
        nodes: usize,
        /// Replicas per shard asked for.
        replicas: usize,
    },
    /// The same node was offered twice.
    #[error("node {0:016x} is listed twice")]
    Duplicate(NodeId),
}

/// Groups `nodes` into shards of one primary and `replicas` replicas, each on a distinct node,
/// and on distinct zones whenever the zones allow it. Returns one list per shard, primary
/// first; nodes left over (fewer than a whole shard) are spares, not placed.
///
/// Greedy: each shard in turn takes, for each of its seats, a node from the zone with the most
/// unplaced nodes among the zones the shard doesn't use yet, so zones drain evenly and a shard
/// spans as many zones as exist.
pub fn form_shards(
    nodes: &[Candidate],
    replicas: usize,
) -> Result<Vec<Vec<NodeId>>, PlacementError> {
    let per_shard = replicas + 1;
    let mut seen = BTreeSet::new();
    for n in nodes {
        if !seen.insert(n.id) {
            return Err(PlacementError::Duplicate(n.id));
        }
    }
    if nodes.len() < per_shard {
        return Err(PlacementError::TooFewNodes {
            nodes: nodes.len(),
            replicas,
        });
    }
    // Unplaced nodes per zone, in the order given (so the caller's order breaks ties).
    let mut zones: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for n in nodes {
        zones.entry(n.zone.as_str()).or_default().push(n.id);
    }
    for list in zones.values_mut() {
        list.reverse(); // pop() takes them in the order given
    }
    let shard_count = nodes.len() / per_shard;
    let zone_of: BTreeMap<NodeId, &str> = nodes.iter().map(|n| (n.id, n.zone.as_str())).collect();
    let mut shards = vec![Vec::with_capacity(per_shard); shard_count];
    for _seat in 0..per_shard {
        // Fill this seat of every shard, most constrained shard first: the one with the fewest
        // zones it could still add (non-empty and not used by it yet) picks next, taking the
        // zone with the most unplaced nodes.
        let mut waiting: Vec<usize> = (0..shard_count).collect();
        while !waiting.is_empty() {
            let options = |shard: &Vec<NodeId>| -> Vec<&str> {
                zones
                    .iter()
                    .filter(|(z, list)| {
                        !list.is_empty() && !shard.iter().any(|id| zone_of[id] == **z)
                    })
                    .map(|(z, _)| *z)
                    .collect()
            };
            let (pos, _) = waiting
                .iter()
                .enumerate()
                .min_by_key(|(_, &s)| (options(&shards[s]).len(), s))
                .unwrap_or((0, &0));
            let shard = waiting.remove(pos);
            let mut choice = options(&shards[shard]);
            if choice.is_empty() {
                // No new zone left for this shard: any node will do (still a distinct node).
                choice = zones
                    .iter()
                    .filter(|(_, l)| !l.is_empty())
                    .map(|(z, _)| *z)
                    .collect();
            }
            let zone = choice
                .into_iter()
                .max_by_key(|z| (zones[z].len(), std::cmp::Reverse(*z)));
            if let Some(id) = zone.and_then(|z| zones.get_mut(z)).and_then(|l| l.pop()) {
                shards[shard].push(id);
            }
        }
    }
    Ok(shards)
}

/// Returns a balanced slot table over `shards` that moves the fewest slots from `current`.
///
/// `current[slot]` is the slot's shard, or `None` for an unassigned slot; slots of shards not
/// in `shards` are reassigned. Quotas are `16384 / n` and one more for the `16384 % n` shards
/// that own the most slots now (ties to the lower id), which is what makes the movement
/// minimal: a shard keeps every slot up to its quota, gives away its highest slots beyond it,
/// and the freed slots fill the shards under quota in slot order (so a fresh table is made of
/// contiguous ranges, as `redis-cli --cluster create` makes).
///
/// # Panics
/// If `current` doesn't have [`SLOT_COUNT`] entries or `shards` is empty.
pub fn balance(current: &[Option<ShardId>], shards: &[ShardId]) -> Vec<ShardId> {
    let weights: BTreeMap<ShardId, u64> = shards.iter().map(|&s| (s, 1)).collect();
    balance_weighted(current, &weights)
}

/// [`balance`] with each shard's share of the slots in proportion to its weight (its
/// memory, say): quotas are `16384 * w / W` rounded down, and the slots left over go one each
/// to the shards with the largest remainders (then the most slots now, then the lower id).
/// Equal weights give [`balance`]'s table.
///
/// # Panics
/// If `current` doesn't have [`SLOT_COUNT`] entries or `weights` is empty or all zero.
pub fn balance_weighted(
    current: &[Option<ShardId>],
    weights: &BTreeMap<ShardId, u64>,
) -> Vec<ShardId> {
    assert_eq!(current.len(), SLOT_COUNT, "a slot table has 16384 entries");
    let total: u128 = weights.values().map(|&w| u128::from(w)).sum();
    assert!(total > 0, "slots need at least one shard of some weight");
    let live: BTreeSet<ShardId> = weights.keys().copied().collect();
    let mut owned: BTreeMap<ShardId, Vec<usize>> = live.iter().map(|&s| (s, Vec::new())).collect();
    let mut free = Vec::new();
    for (slot, owner) in current.iter().enumerate() {
        match owner.and_then(|s| owned.get_mut(&s)) {
            Some(list) => list.push(slot),
            None => free.push(slot),
        }
    }
    // Exact shares as (whole slots, remainder out of `total`).
    let share = |s: &ShardId| {
        let exact = SLOT_COUNT as u128 * u128::from(weights[s]);
        ((exact / total) as usize, exact % total)
    };
    let assigned: usize = live.iter().map(|s| share(s).0).sum();
    let extra = SLOT_COUNT - assigned;
    let mut by_claim: Vec<ShardId> = live.iter().copied().collect();
    by_claim.sort_by_key(|s| {
        (
            std::cmp::Reverse(share(s).1),
            std::cmp::Reverse(owned[s].len()),
            *s,
        )
    });
    let quota: BTreeMap<ShardId, usize> = by_claim
        .iter()
        .enumerate()
        .map(|(rank, &s)| (s, share(&s).0 + usize::from(rank < extra)))
        .collect();
    for (shard, slots) in owned.iter_mut() {
        let keep = quota[shard];
        if slots.len() > keep {
            free.extend(slots.drain(keep..));
        }
    }
    free.sort_unstable();
    let mut table = vec![0; SLOT_COUNT];
    for (shard, slots) in &owned {
        for &slot in slots {
            table[slot] = *shard;
        }
    }
    let mut free = free.into_iter();
    for (shard, slots) in &owned {
        for _ in slots.len()..quota[shard] {
            if let Some(slot) = free.next() {
                table[slot] = *shard;
            }
        }
    }
    table
}

/// The slots whose owner differs between `before` and `after`.
pub fn moved_slots(before: &[Option<ShardId>], after: &[ShardId]) -> usize {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| **b != Some(**a))
        .count()
}

/// Contiguous ranges `(first, last, shard)` of a slot table, in slot order.
pub fn ranges(table: &[Option<ShardId>]) -> Vec<(u16, u16, ShardId)> {
    let mut out: Vec<(u16, u16, ShardId)> = Vec::new();
    for (slot, owner) in table.iter().enumerate() {
        let Some(shard) = *owner else { continue };
        match out.last_mut() {
            Some((_, last, s)) if *s == shard && usize::from(*last) + 1 == slot => {
                *last = slot as u16;
            }
            _ => out.push((slot as u16, slot as u16, shard)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(table: &[ShardId]) -> BTreeMap<ShardId, usize> {
        let mut c = BTreeMap::new();
        for s in table {
            *c.entry(*s).or_insert(0) += 1;
        }
        c
    }

    fn some(table: &[ShardId]) -> Vec<Option<ShardId>> {
        table.iter().map(|s| Some(*s)).collect()
    }

    #[test]
    fn weighted_quotas_follow_the_weights_and_move_only_what_they_must() {
        let even = balance(&[None; SLOT_COUNT], &[1, 2, 3]);
        // Shard 2 gets twice the memory: it should hold half the slots.
        let weights = BTreeMap::from([(1, 4u64 << 30), (2, 8 << 30), (3, 4 << 30)]);
        let table = balance_weighted(&some(&even), &weights);
        assert_eq!(
            counts(&table),
            BTreeMap::from([(1, 4096), (2, 8192), (3, 4096)])
        );
        // Shard 2 only gains: it takes the 8192 - 5461 slots the others give up, no more.
        let moved = moved_slots(&some(&even), &table);
        assert_eq!(moved, 8192 - counts(&even)[&2]);
        for (slot, (&before, &after)) in even.iter().zip(&table).enumerate() {
            assert!(
                before == after || after == 2,
                "slot {slot} moved {before} -> {after}"
            );
        }
    }

    #[test]
    fn equal_weights_give_the_unweighted_table() {
        let current = some(&balance(&[None; SLOT_COUNT], &[1, 2, 3]));
        let weights = BTreeMap::from([(1, 7u64), (2, 7), (3, 7), (4, 7)]);
        assert_eq!(
            balance_weighted(&current, &weights),
            balance(&current, &[1, 2, 3, 4])
        );
    }

    #[test]
    fn a_shard_of_weight_zero_gives_all_its_slots_away() {
        let current = some(&balance(&[None; SLOT_COUNT], &[1, 2]));
        let table = balance_weighted(&current, &BTreeMap::from([(1, 0u64), (2, 5)]));
        assert_eq!(counts(&table), BTreeMap::from([(2, SLOT_COUNT)]));
    }

    /// The least movement any balanced table allows: every slot of a removed shard or an
    /// unassigned slot must move, and a shard over its largest possible quota must shed the
    /// excess. With quotas `base` or `base + 1`, a shard owning `c` slots must give away at
    /// least `c - (base + 1)`, and the shards ranked beyond the `extra` largest `c - base`.
    fn lower_bound(current: &[Option<ShardId>], shards: &[ShardId]) -> usize {
        let live: BTreeSet<_> = shards.iter().copied().collect();
        let n = live.len();
        let (base, extra) = (SLOT_COUNT / n, SLOT_COUNT % n);
        let orphans = current
            .iter()
            .filter(|o| o.is_none_or(|s| !live.contains(&s)))
            .count();
        let mut sizes: Vec<usize> = live
            .iter()
            .map(|s| current.iter().filter(|o| **o == Some(*s)).count())
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let excess: usize = sizes
            .iter()
            .enumerate()
            .map(|(rank, &c)| c.saturating_sub(base + usize::from(rank < extra)))
            .sum();
        orphans + excess
    }

    #[test]
    fn a_fresh_table_is_contiguous_ranges_like_redis_cli() {
        let table = balance(&vec![None; SLOT_COUNT], &[0, 1, 2]);
        let r = ranges(&some(&table));
        assert_eq!(r, vec![(0, 5461, 0), (5462, 10922, 1), (10923, 16383, 2)]);
    }

    #[test]
    fn adding_a_fourth_shard_takes_a_quarter_evenly_from_the_three() {
        let three = balance(&vec![None; SLOT_COUNT], &[0, 1, 2]);
        let four = balance(&some(&three), &[0, 1, 2, 3]);
        assert_eq!(
            counts(&four).values().copied().collect::<Vec<_>>(),
            vec![4096; 4]
        );
        assert_eq!(moved_slots(&some(&three), &four), 4096);
        let given: Vec<usize> = (0..3)
            .map(|s| {
                three
                    .iter()
                    .zip(&four)
                    .filter(|(a, b)| **a == s && **b == 3)
                    .count()
            })
            .collect();
        assert!(given.iter().all(|g| (1365..=1366).contains(g)), "{given:?}");
    }

    #[test]
    fn shards_are_spread_over_zones() {
        let nodes: Vec<Candidate> = (0..6)
            .map(|i| Candidate {
                id: i,
                zone: format!("z{}", i % 3),
            })
            .collect();
        let shards = form_shards(&nodes, 1).expect("six nodes make three shards");
        assert_eq!(shards.len(), 3);
        for shard in &shards {
            let zones: BTreeSet<_> = shard.iter().map(|id| id % 3).collect();
            assert_eq!(zones.len(), 2, "{shards:?}");
        }
        let err = form_shards(&nodes[..1], 1).expect_err("one node can't hold a replica");
        assert_eq!(
            err,
            PlacementError::TooFewNodes {
                nodes: 1,
                replicas: 1
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random histories of shards joining and leaving: after every step each slot has a
        /// live owner, counts differ by at most one, and exactly the least possible number of
        /// slots moved.
        #[test]
        fn balanced_and_minimal_over_random_histories(
            start in 1usize..12,
            steps in proptest::collection::vec((any::<bool>(), 0usize..64), 1..12),
        ) {
            let mut live: Vec<ShardId> = (0..start as ShardId).collect();
            let mut next = start as ShardId;
            let mut table: Vec<Option<ShardId>> = vec![None; SLOT_COUNT];
            let first = balance(&table, &live);
            prop_assert_eq!(moved_slots(&table, &first), SLOT_COUNT);
            table = some(&first);
            for (add, pick) in steps {
                if add || live.len() == 1 {
                    live.push(next);
                    next += 1;
                } else {
                    live.remove(pick % live.len());
                }
                let after = balance(&table, &live);
                let c = counts(&after);
                prop_assert_eq!(c.len(), live.len());
                prop_assert!(c.keys().all(|s| live.contains(s)));
                let (min, max) = (c.values().min().copied(), c.values().max().copied());
                prop_assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1);
                prop_assert_eq!(moved_slots(&table, &after), lower_bound(&table, &live));
                if add {
                    // An add moves only to the new shard, about 1/(n+1) of the slots.
                    let quota = SLOT_COUNT / live.len() + 1;
                    prop_assert!(moved_slots(&table, &after) <= quota);
                }
                table = some(&after);
            }
        }

        /// Shards have distinct nodes, and span min(zones, seats) zones when the zones are
        /// balanced.
        #[test]
        fn shards_have_distinct_nodes_and_zones(
            zone_count in 1usize..5, per_zone in 1usize..6, replicas in 0usize..3,
        ) {
            let nodes: Vec<Candidate> = (0..(zone_count * per_zone) as u64)
                .map(|i| Candidate { id: i, zone: format!("z{}", i as usize % zone_count) })
                .collect();
            match form_shards(&nodes, replicas) {
                Ok(shards) => {
                    prop_assert_eq!(shards.len(), nodes.len() / (replicas + 1));
                    let mut placed = BTreeSet::new();
                    for shard in &shards {
                        prop_assert_eq!(shard.len(), replicas + 1);
                        for id in shard {
                            prop_assert!(placed.insert(*id));
                        }
                        let zones: BTreeSet<_> =
                            shard.iter().map(|id| *id as usize % zone_count).collect();
                        prop_assert_eq!(zones.len(), zone_count.min(replicas + 1));
                    }
                }
                Err(_) => prop_assert!(nodes.len() < replicas + 1),
            }
        }
    }
}
