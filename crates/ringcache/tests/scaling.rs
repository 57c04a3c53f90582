//! Elastic scaling, short form: a 3-shard cluster on 127.0.0.81-86 grows to 4 and 5 shards
//! (`ringcache cluster add-node`, two nodes a shard, on 127.0.0.87-90) and shrinks back to 3
//! (`ringcache cluster remove-node`) under a steady load of retrying cluster clients; every
//! key written before or during the moves is checked against the writers' history. The long
//! form and the figures are in docs/scaling.md.

use std::path::Path;

use testkit::node::Cluster;
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
