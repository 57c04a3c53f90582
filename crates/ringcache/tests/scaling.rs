//! Elastic scaling, short form: a 3-shard cluster on 127.0.0.81-86 grows to 4 and 5 shards
//! (`ringcache cluster add-node`, two nodes a shard, on 127.0.0.87-90) and shrinks back to 3
//! (`ringcache cluster remove-node`) under a steady load of retrying clients (half cluster-aware
//! RESP clients, half memcached clients of any node, which forwards); every
//! key written before or during the moves is checked against the writers' history. The long
//! form and the figures are in docs/scaling.md.

use std::path::Path;

use testkit::client::{Budget, ClusterClient, Outcome};
use testkit::node::Cluster;
use testkit::resp::Reply;
use testkit::scenario;

#[test]
fn growing_3_to_5_shards_and_back_under_load_loses_no_key_and_moves_the_minimum() {
    let ips: Vec<String> = (81..=86).map(|i| format!("127.0.0.{i}")).collect();
    let extra: Vec<String> = (87..=90).map(|i| format!("127.0.0.{i}")).collect();
    let mut cluster = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_ringcache")),
        &ips,
        1,
        "scaling",
    )
    .expect("cluster");
    let r = scenario::elastic(&mut cluster, &extra, 4, 1000, 20_000).expect("scaling run");
    for s in &r.steps {
        println!("{s:?}");
    }
    println!(
        "{} ops, {} failed; steady {:.0} ops/s p99 {} us; lost {}, stale {}, phantoms {}",
        r.ops,
        r.failed,
        r.steady.0,
        r.steady.1,
        r.verdict.lost.len(),
        r.verdict.stale_reads,
        r.verdict.phantoms.len()
    );
    assert_eq!(
        r.steps.iter().map(|s| s.shards).collect::<Vec<_>>(),
        vec![4, 5, 4, 3]
    );
    assert_eq!(
        r.steps[0].slots_moved, 4096,
        "a quarter of the slots move to the 4th shard"
    );
    assert_eq!(r.steps[1].slots_moved, 3276, "a fifth move to the 5th");
    for s in &r.steps {
        let optimal = s.keys_optimal as f64;
        assert!(
            (s.keys_moved as f64 - optimal).abs() <= 0.05 * optimal + 50.0,
            "{}: moved {} keys, the optimum is {}",
            s.action,
            s.keys_moved,
            s.keys_optimal
        );
    }
    assert_eq!(r.failed, 0, "operations failed beyond the retry budget");
    assert!(
        r.verdict.lost.is_empty(),
        "acknowledged writes lost: {:?}",
        r.verdict.lost
    );
    assert!(r.verdict.phantoms.is_empty(), "phantom values");
    assert_eq!(r.verdict.stale_reads, 0, "stale reads");
}

/// One migration crash test at a time (each runs 8 processes on a 2-core machine).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn crash(first: u8, victim: scenario::Victim) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ips: Vec<String> = (first..first + 6).map(|i| format!("127.0.0.{i}")).collect();
    let extra: Vec<String> = (first + 6..first + 8)
        .map(|i| format!("127.0.0.{i}"))
        .collect();
    // 20,000 keys of 1 KB and 1 MB/s per draining node: a quarter moves in about 5 s.
    let mut cluster = Cluster::start_with(
        Path::new(env!("CARGO_BIN_EXE_ringcache")),
        &ips,
        1,
        &format!("migration-crash-{first}"),
        &["--migration-rate", "1mb"],
    )
    .expect("cluster");
    let r = scenario::migration_crash(&mut cluster, &extra, victim, 20_000, 1000)
        .expect("migration crash run");
    println!(
        "{victim:?} {} killed at {} ms, add-node done at {} ms; {} ops, {} failed; lost {} \
         (on the victim {}), stale {}, phantoms {}",
        r.victim,
        r.killed_ms,
        r.done_ms,
        r.ops,
        r.failed,
        r.verdict.lost.len(),
        r.lost_on_victim,
        r.verdict.stale_reads,
        r.verdict.phantoms.len()
    );
    assert!(
        r.done_ms > r.killed_ms,
        "the kill came after the migration ended"
    );
    assert_eq!(r.migrations_left, 0, "slots left migrating");
    assert_eq!(r.shards, 4, "the new shard serves its slots");
    assert_eq!(r.failed, 0, "operations failed beyond the retry budget");
    assert!(r.verdict.phantoms.is_empty(), "phantom values");
    // Only a failover's bound: writes the killed primary acknowledged and hadn't streamed.
    assert_eq!(
        r.verdict.lost.len(),
        r.lost_on_victim,
        "writes lost that the killed node hadn't acknowledged: {:?}",
        r.verdict.lost
    );
    assert!(r.lost_on_victim <= 5, "lost {:?}", r.verdict.lost);
}

#[test]
fn killing_the_source_primary_mid_migration_leaves_no_slot_orphaned_and_no_key_lost() {
    crash(101, scenario::Victim::Source);
}

#[test]
fn killing_the_target_primary_mid_migration_leaves_no_slot_orphaned_and_no_key_lost() {
    crash(111, scenario::Victim::Target);
}

#[test]
fn killing_the_raft_leader_mid_migration_leaves_no_slot_orphaned_and_no_key_lost() {
    crash(121, scenario::Victim::Leader);
}

/// Values larger than one migration message (256 KB) travel in parts: with `--max-value-bytes
/// 8mb`, values of 1-6 MB (some with a TTL) are read back whole from the new owner, with their
/// expiry, after `add-node`.
#[test]
fn values_larger_than_a_message_move_whole_with_their_expiry() {
    let ips: Vec<String> = (91..=92).map(|i| format!("127.0.0.{i}")).collect();
    let mut cluster = Cluster::start_with(
        Path::new(env!("CARGO_BIN_EXE_ringcache")),
        &ips,
        0,
        "large-values",
        &["--max-value-bytes", "8mb"],
    )
    .expect("cluster");
    let mut client = ClusterClient::new(cluster.addrs(), Budget::default());
    let value_of = |i: usize| -> Vec<u8> {
        let len = (1 << 20) + i * 350_000;
        (0..len).map(|b| ((b * 31 + i) % 251) as u8).collect()
    };
    let names: Vec<String> = (0..16).map(|i| format!("large{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut args = vec![b"SET".to_vec(), name.as_bytes().to_vec(), value_of(i)];
        if i % 2 == 0 {
            args.extend([b"PX".to_vec(), b"600000".to_vec()]);
        }
        match client.run(name.as_bytes(), &[args]) {
            Outcome::Done(Reply::Simple(ok), _) if ok == "OK" => {}
            other => panic!("SET {name}: {other:?}"),
        }
    }
    let i = cluster.start_node("127.0.0.93").expect("third node");
    let new = cluster.nodes[i].cluster_addr();
    let seed = cluster.nodes[0].cluster_addr();
    let out = cluster
        .admin(&["add-node", &new, "--to", &seed])
        .expect("add-node");
    println!("{out}");
    let moved = cluster.nodes[i].call(&["DBSIZE"]).expect("DBSIZE");
    assert!(
        matches!(moved, Reply::Int(n) if n > 0),
        "no large value moved to the new node ({moved:?}): the test proves nothing"
    );
    for (i, name) in names.iter().enumerate() {
        match client.get(name.as_bytes()) {
            Outcome::Done(Reply::Bulk(Some(v)), _) => {
                assert!(
                    v == value_of(i),
                    "{name} came back changed ({} bytes)",
                    v.len()
                )
            }
            other => panic!("GET {name}: {other:?}"),
        }
        let ttl = client.run(
            name.as_bytes(),
            &[vec![b"PTTL".to_vec(), name.as_bytes().to_vec()]],
        );
        match ttl {
            Outcome::Done(Reply::Int(ms), _) if i % 2 == 0 => {
                assert!((500_000..=600_000).contains(&ms), "{name}: PTTL {ms}")
            }
            Outcome::Done(Reply::Int(ms), _) => assert_eq!(ms, -1, "{name} gained a TTL"),
            other => panic!("PTTL {name}: {other:?}"),
        }
    }
}

/// `rebalance --weight memory` gives each shard slots in proportion to its primary's
/// `maxmemory`: with 64 MB and 192 MB, a quarter and three quarters; every key stays readable.
#[test]
fn rebalancing_by_memory_gives_slots_in_proportion_to_maxmemory() {
    let ips: Vec<String> = (94..=95).map(|i| format!("127.0.0.{i}")).collect();
    let cluster = Cluster::start_with(
        Path::new(env!("CARGO_BIN_EXE_ringcache")),
        &ips,
        0,
        "weighted",
        &["--maxmemory", "64mb"],
    )
    .expect("cluster");
    let mut client = ClusterClient::new(cluster.addrs(), Budget::default());
    let names: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
    for name in &names {
        assert!(matches!(
            client.set(name.as_bytes(), name.as_bytes(), 0),
            Outcome::Done(Reply::Simple(_), _)
        ));
    }
    let big = cluster.nodes[1].call(&["CONFIG", "SET", "maxmemory", "192mb"]);
    assert!(matches!(big, Ok(Reply::Simple(_))), "{big:?}");
    let seed = cluster.nodes[0].cluster_addr();
    let out = cluster
        .admin(&["rebalance", "--to", &seed, "--weight", "memory"])
        .expect("rebalance");
    println!("{out}");
    let topology = cluster.topology().expect("topology");
    let owned = |i: usize| {
        let id = &topology
            .by_addr(cluster.nodes[i].addr())
            .expect("member")
            .id;
        (0..16384u16)
            .filter(|&s| topology.owner(s).is_some_and(|o| &o.id == id))
            .count()
    };
    assert_eq!((owned(0), owned(1)), (4096, 12288));
    // CLUSTER SLOT-STATS: per-slot key counts of the node's own slots, adding up to DBSIZE.
    for (i, slots) in [(0, 4096), (1, 12288)] {
        let node = &cluster.nodes[i];
        let Ok(Reply::Array(Some(all))) =
            node.call(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "16383"])
        else {
            panic!("SLOT-STATS SLOTSRANGE");
        };
        assert_eq!(all.len(), slots, "one entry per slot the node owns");
        let count = |entry: &Reply| match entry {
            Reply::Array(Some(e)) => match (&e[0], &e[1]) {
                (Reply::Int(_), Reply::Array(Some(m)))
                    if m[0].text().as_deref() == Some("key-count") =>
                {
                    match m[1] {
                        Reply::Int(n) => n,
                        _ => panic!("{entry:?}"),
                    }
                }
                _ => panic!("{entry:?}"),
            },
            _ => panic!("{entry:?}"),
        };
        let total: i64 = all.iter().map(count).sum();
        assert_eq!(
            Ok(Reply::Int(total)),
            node.call(&["DBSIZE"]).map_err(|e| e.to_string())
        );
        let Ok(Reply::Array(Some(top))) = node.call(&[
            "CLUSTER",
            "SLOT-STATS",
            "ORDERBY",
            "key-count",
            "LIMIT",
            "5",
        ]) else {
            panic!("SLOT-STATS ORDERBY");
        };
        let counts: Vec<i64> = top.iter().map(count).collect();
        assert_eq!(counts.len(), 5);
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "descending: {counts:?}"
        );
        assert_eq!(counts[0], all.iter().map(count).max().unwrap_or(0));
    }
    for name in &names {
        match client.get(name.as_bytes()) {
            Outcome::Done(Reply::Bulk(Some(v)), _) => assert_eq!(v, name.as_bytes()),
            other => panic!("GET {name}: {other:?}"),
        }
    }
}
