//! Elastic scaling, as pure planning over the replicated state: new shards from spare nodes,
//! the fewest slot moves that balance the table, and the batches the Raft leader drives.
//!
//! A move is a live migration (see `Change::Migrate`): the old owner keeps serving the keys
//! it still has and answers `-ASK` for the others, drains the slot key by key into the new
//! owner, and the leader commits `Change::Handover` once the slot is empty there. Everything
//! the leader needs to resume after a crash (of the source, the target or itself) is in the
//! replicated state: the migrations in progress. Draining is idempotent (a key is deleted from
//! the source only after the target has it), so a new leader, or the source's promoted
//! replica, simply drains again.

use std::collections::BTreeMap;

use crate::placement::{self, Candidate, PlacementError, ShardId};
use crate::topology::{ClusterState, Migration, Shard};

/// New shards of one primary and `replicas` replicas from the spare members (zone-aware),
/// numbered after the highest shard id in use. Spares left over stay spares.
pub fn new_shards(state: &ClusterState, replicas: usize) -> Result<Vec<Shard>, PlacementError> {
    let spares: Vec<Candidate> = state
        .spares()
        .into_iter()
        .filter_map(|id| state.members.get(&id))
        .map(|m| Candidate {
            id: m.id,
            zone: m.zone.clone(),
        })
        .collect();
    if spares.len() < replicas + 1 {
        return Ok(Vec::new());
    }
    let next = state.shards.keys().max().map_or(0, |m| m + 1);
    Ok(placement::form_shards(&spares, replicas)?
        .into_iter()
        .enumerate()
        .map(|(i, group)| Shard {
            id: next + i as ShardId,
            primary: group[0],
            replicas: group[1..].to_vec(),
        })
        .collect())
}

/// The slots to move so that the table is balanced over `shards`, moving the fewest: by
/// target shard. Slots already migrating are left alone.
pub fn plan(state: &ClusterState, shards: &[ShardId]) -> BTreeMap<ShardId, Vec<u16>> {
    let weights: BTreeMap<ShardId, u64> = shards.iter().map(|&s| (s, 1)).collect();
    plan_weighted(state, &weights)
}

/// [`plan`] with each shard's share of the slots in proportion to its weight (see
/// [`placement::balance_weighted`]); shards not named give all their slots away.
pub fn plan_weighted(
    state: &ClusterState,
    weights: &BTreeMap<ShardId, u64>,
) -> BTreeMap<ShardId, Vec<u16>> {
    let mut moves: BTreeMap<ShardId, Vec<u16>> = BTreeMap::new();
    if !state.is_laid_out() || weights.values().all(|&w| w == 0) {
        return moves;
    }
    let current = state.slot_table();
    let target = placement::balance_weighted(&current, weights);
    for (slot, (now, then)) in current.iter().zip(&target).enumerate() {
        let slot = slot as u16;
        if *now != Some(*then) && !state.migrations.contains_key(&slot) {
            moves.entry(*then).or_default().push(slot);
        }
    }
    moves
}

/// Up to `max` slots migrating between the same two shards: the next batch to drain.
pub fn next_batch(state: &ClusterState, max: usize) -> Option<(Migration, Vec<u16>)> {
    let (_, first) = state.migrations.iter().next()?;
    let first = *first;
    let slots = state
        .migrations
        .iter()
        .filter(|(_, m)| **m == first)
        .map(|(s, _)| *s)
        .take(max)
        .collect();
    Some((first, slots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Applied, Change, Member};

    fn member(id: u64) -> Member {
        Member {
            id,
            host: "127.0.0.1".into(),
            port: 7000 + id as u16,
            bus_port: 17000 + id as u16,
            memcache_port: None,
            forward_port: None,
            admin_port: None,
            zone: String::new(),
        }
    }

    fn cluster(nodes: u64, shards: u32) -> ClusterState {
        let mut state = ClusterState::default();
        for id in 1..=nodes {
            state.apply(&Change::Join(member(id)));
        }
        let shards: Vec<Shard> = (0..shards)
            .map(|i| Shard {
                id: i,
                primary: u64::from(2 * i + 1),
                replicas: vec![u64::from(2 * i + 2)],
            })
            .collect();
        let ids: Vec<ShardId> = shards.iter().map(|s| s.id).collect();
        let slots = placement::balance(&vec![None; placement::SLOT_COUNT], &ids);
        assert!(matches!(
            state.apply(&Change::Layout { shards, slots }),
            Applied::Ok(_)
        ));
        state
    }

    fn run(state: &mut ClusterState, shards: &[ShardId]) -> usize {
        let mut moved = 0;
        for (to, slots) in plan(state, shards) {
            moved += slots.len();
            assert!(matches!(
                state.apply(&Change::Migrate { slots, to }),
                Applied::Ok(_)
            ));
        }
        while let Some((_, slots)) = next_batch(state, 100) {
            assert!(matches!(
                state.apply(&Change::Handover { slots }),
                Applied::Ok(_)
            ));
        }
        moved
    }

    #[test]
    fn growing_3_to_4_to_5_shards_and_back_moves_the_minimum_each_step() {
        let mut state = cluster(10, 3);
        let shard = new_shards(&state, 1).expect("placement");
        assert_eq!(shard.len(), 2, "4 spares make 2 shards of 2");
        // Add one shard at a time.
        state.apply(&Change::AddShard(shard[0].clone()));
        let moved = run(&mut state, &[0, 1, 2, 3]);
        assert_eq!(
            moved, 4096,
            "exactly a quarter of the slots move to the new shard"
        );
        state.apply(&Change::AddShard(shard[1].clone()));
        let moved = run(&mut state, &[0, 1, 2, 3, 4]);
        assert_eq!(moved, 3276, "a fifth (16384 / 5, rounded down) moves");
        // Shrink: drain shards 4 and 3, then remove them.
        let owned_by_4 = state.slots.iter().filter(|s| **s == 4).count();
        let moved = run(&mut state, &[0, 1, 2, 3]);
        assert_eq!(moved, owned_by_4, "only shard 4's slots move");
        assert!(matches!(
            state.apply(&Change::RemoveShard(4)),
            Applied::Ok(_)
        ));
        let owned_by_3 = state.slots.iter().filter(|s| **s == 3).count();
        let moved = run(&mut state, &[0, 1, 2]);
        assert_eq!(moved, owned_by_3, "only shard 3's slots move");
        assert!(matches!(
            state.apply(&Change::RemoveShard(3)),
            Applied::Ok(_)
        ));
        let mut owned = BTreeMap::<ShardId, usize>::new();
        for s in &state.slots {
            *owned.entry(*s).or_default() += 1;
        }
        assert_eq!(
            owned.values().copied().collect::<Vec<_>>(),
            vec![5462, 5461, 5461]
        );
        assert_eq!(state.spares().len(), 4);
    }

    #[test]
    fn a_batch_holds_slots_of_one_source_and_target_only() {
        let mut state = cluster(8, 3);
        let shard = new_shards(&state, 1).expect("placement").remove(0);
        state.apply(&Change::AddShard(shard));
        for (to, slots) in plan(&state, &[0, 1, 2, 3]) {
            state.apply(&Change::Migrate { slots, to });
        }
        let (m, slots) = next_batch(&state, 5000).expect("a batch");
        assert!(slots.iter().all(|s| state.migrations.get(s) == Some(&m)));
        assert!(slots.len() > 1000);
        assert!(
            plan(&state, &[0, 1, 2, 3]).is_empty(),
            "migrating slots aren't planned twice"
        );
    }
}
