//! `ringcache plan`: capacity estimation. From the expected peak load and data size it works
//! out how many shards and nodes a cluster needs, the memory to give each node, and the
//! network bandwidth, from per-node figures measured in docs/benchmarks.md.
//!
//! ```text
//!  stored bytes   = keys x (key + value + PER_KEY_OVERHEAD)
//!  per shard      = stored bytes / shards x (1 + headroom)      (every node of a shard holds it)
//!  maxmemory      = per shard, rounded up;  node RAM = maxmemory x RSS_FACTOR
//!  primary load   = peak ops / shards: reads and writes; each replica applies the writes
//!  shards         = max(for memory, for throughput), at least 3 (a Raft majority)
//!  bandwidth      = ops x (request + reply) + writes x value x replicas (replication)
//! ```

use clap::Args;
use serde_json::json;

/// Bytes of store overhead per key beyond its key and value: measured `used_memory` of 192
/// bytes per key for 1M keys of 100-byte values with keys of about 12 bytes
/// (docs/benchmarks.md, "Memory").
pub const PER_KEY_OVERHEAD: u64 = 80;
/// Resident memory over `maxmemory` under churn: 1.12x measured (docs/benchmarks.md,
/// "Churn"); the node's RAM must allow for it.
pub const RSS_FACTOR: f64 = 1.12;
/// Operations per second one core serves, unpipelined: about 60,000 ops/s were measured on
/// the 2-core VM with the load generator on the same cores (docs/benchmarks.md, get90 p1), so
/// 30,000 per core is a conservative figure. Pipelined clients reach 6-7x that.
pub const OPS_PER_CORE: u64 = 30_000;
/// Protocol bytes per request and per reply beyond the key and value (RESP framing, command
/// name, TCP/IP headers amortised).
const FRAMING_BYTES: u64 = 60;
/// Fewest shards: Raft needs a majority of at least 3 voters to survive the loss of one.
const MIN_SHARDS: u64 = 3;

/// What the cluster must hold and serve.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Peak operations per second, the whole cluster.
    #[arg(long)]
    pub ops: u64,
    /// Keys held at once.
    #[arg(long)]
    pub keys: u64,
    /// Average key size in bytes.
    #[arg(long, default_value_t = 20)]
    pub key_size: u64,
    /// Average value size in bytes.
    #[arg(long)]
    pub value_size: u64,
    /// Share of the operations that are reads (0..1).
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Replicas per shard (the replication factor is this plus one).
    #[arg(long, default_value_t = 1)]
    pub replicas: u64,
    /// Spare room on top of the data, memory and throughput alike (0.3 = 30%).
    #[arg(long, default_value_t = 0.3)]
    pub headroom: f64,
    /// Memory a node can give the cache (its RAM, less the OS's share), e.g. 64gb.
    #[arg(long, default_value = "64gb")]
    pub node_memory: String,
    /// Cores per node.
    #[arg(long, default_value_t = 16)]
    pub node_cores: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The inputs, parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// Peak operations per second.
    pub ops: u64,
    /// Keys held.
    pub keys: u64,
    /// Average key size.
    pub key_size: u64,
    /// Average value size.
    pub value_size: u64,
    /// Share of reads.
    pub read_ratio: f64,
    /// Replicas per shard.
    pub replicas: u64,
    /// Spare room (0.3 = 30%).
    pub headroom: f64,
    /// Memory a node can give the cache, bytes.
    pub node_memory: u64,
    /// Cores per node.
    pub node_cores: u64,
}

/// The estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Bytes the store holds for the keys (one copy).
    pub stored_bytes: u64,
    /// Shards needed to hold the data, and to serve the load.
    pub shards_for_memory: u64,
    /// Shards needed to serve the load.
    pub shards_for_ops: u64,
    /// Shards, and nodes (shards x (replicas + 1)).
    pub shards: u64,
    /// Nodes.
    pub nodes: u64,
    /// `--maxmemory` for every node.
    pub maxmemory: u64,
    /// RAM each node needs for that (resident memory runs above maxmemory).
    pub node_ram: u64,
    /// Operations per second each primary serves at the peak, and what it can serve.
    pub ops_per_primary: u64,
    /// What one node can serve (its cores x [`OPS_PER_CORE`]).
    pub ops_per_node_capacity: u64,
    /// Client traffic, both directions, the whole cluster, bytes per second.
    pub client_bandwidth: u64,
    /// Replication traffic, the whole cluster, bytes per second.
    pub replication_bandwidth: u64,
    /// The busiest node's traffic (a primary: its clients and its replication stream out).
    pub bandwidth_per_primary: u64,
}

impl Inputs {
    /// Checks and converts the command-line arguments.
    pub fn from_args(args: &PlanArgs) -> anyhow::Result<Inputs> {
        let node_memory = command::parse_memory(&args.node_memory).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid --node-memory {:?} (use e.g. 64gb)",
                args.node_memory
            )
        })? as u64;
        anyhow::ensure!(
            (0.0..=1.0).contains(&args.read_ratio),
            "--read-ratio is a share, 0 to 1"
        );
        anyhow::ensure!(
            (0.0..10.0).contains(&args.headroom),
            "--headroom is a share, e.g. 0.3"
        );
        anyhow::ensure!(
            node_memory > 0 && args.node_cores > 0,
            "a node needs memory and cores"
        );
        Ok(Inputs {
            ops: args.ops,
            keys: args.keys,
            key_size: args.key_size,
            value_size: args.value_size,
            read_ratio: args.read_ratio,
            replicas: args.replicas,
            headroom: args.headroom,
            node_memory,
            node_cores: args.node_cores,
        })
    }
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// Works out the plan (see the module docs for the model).
pub fn plan(i: &Inputs) -> Plan {
    let room = 1.0 + i.headroom;
    let stored_bytes = i.keys * (i.key_size + i.value_size + PER_KEY_OVERHEAD);
    // The cache may use this much of a node's memory, leaving room for resident overhead.
    let usable = (i.node_memory as f64 / RSS_FACTOR) as u64;
    let shards_for_memory = ceil_div((stored_bytes as f64 * room) as u64, usable);
    let ops_per_node_capacity = i.node_cores * OPS_PER_CORE;
    let shards_for_ops = ceil_div((i.ops as f64 * room) as u64, ops_per_node_capacity);
    let shards = shards_for_memory.max(shards_for_ops).max(MIN_SHARDS);
    let maxmemory = ceil_div((stored_bytes as f64 * room) as u64, shards);
    let writes = (i.ops as f64 * (1.0 - i.read_ratio)).round() as u64;
    let reads = i.ops - writes.min(i.ops);
    let item = i.key_size + i.value_size;
    // A read sends the key and gets the value; a write sends both and gets a status.
    let client_bandwidth = reads * (i.key_size + i.value_size + 2 * FRAMING_BYTES)
        + writes * (item + 2 * FRAMING_BYTES);
    let replication_bandwidth = writes * (item + FRAMING_BYTES) * i.replicas;
    Plan {
        stored_bytes,
        shards_for_memory,
        shards_for_ops,
        shards,
        nodes: shards * (i.replicas + 1),
        maxmemory,
        node_ram: (maxmemory as f64 * RSS_FACTOR) as u64,
        ops_per_primary: ceil_div(i.ops, shards),
        ops_per_node_capacity,
        client_bandwidth,
        replication_bandwidth,
        bandwidth_per_primary: ceil_div(client_bandwidth + replication_bandwidth, shards),
    }
}

fn bits(bytes_per_s: u64) -> String {
    format!("{:.2} Gbit/s", bytes_per_s as f64 * 8.0 / 1e9)
}

/// The plan as the table `ringcache plan` prints.
pub fn render(i: &Inputs, p: &Plan) -> String {
    let limiting = if p.shards_for_memory >= p.shards_for_ops {
        "memory"
    } else {
        "throughput"
    };
    format!(
        "shards                {shards} (memory needs {m}, throughput needs {o}, at least {min}; {limiting} decides)\n\
         nodes                 {nodes} ({shards} primaries + {r} replica(s) each)\n\
         data                  {data} in one copy ({keys} keys x ({k} + {v} + {oh} bytes))\n\
         maxmemory per node    {maxmem} (--maxmemory {maxmem_flag}mb)\n\
         RAM per node          {ram} (resident runs ~{rss}x maxmemory)\n\
         load per primary      {opp} ops/s at the peak, of ~{cap} a {cores}-core node serves unpipelined\n\
         client traffic        {cb} in all\n\
         replication traffic   {rb} in all\n\
         busiest node          {bp} (a primary: its clients and its replication stream)\n",
        shards = p.shards,
        m = p.shards_for_memory,
        o = p.shards_for_ops,
        min = MIN_SHARDS,
        nodes = p.nodes,
        r = i.replicas,
        data = crate::human_bytes(p.stored_bytes),
        keys = i.keys,
        k = i.key_size,
        v = i.value_size,
        oh = PER_KEY_OVERHEAD,
        maxmem = crate::human_bytes(p.maxmemory),
        maxmem_flag = p.maxmemory.div_ceil(1 << 20),
        ram = crate::human_bytes(p.node_ram),
        rss = RSS_FACTOR,
        opp = p.ops_per_primary,
        cap = p.ops_per_node_capacity,
        cores = i.node_cores,
        cb = bits(p.client_bandwidth),
        rb = bits(p.replication_bandwidth),
        bp = bits(p.bandwidth_per_primary),
    )
}

/// Runs `ringcache plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let inputs = Inputs::from_args(&args)?;
    let p = plan(&inputs);
    if args.json {
        let out = json!({
            "shards": p.shards,
            "shards_for_memory": p.shards_for_memory,
            "shards_for_ops": p.shards_for_ops,
            "nodes": p.nodes,
            "stored_bytes": p.stored_bytes,
            "maxmemory_bytes": p.maxmemory,
            "node_ram_bytes": p.node_ram,
            "ops_per_primary": p.ops_per_primary,
            "ops_per_node_capacity": p.ops_per_node_capacity,
            "client_bandwidth_bytes_per_s": p.client_bandwidth,
            "replication_bandwidth_bytes_per_s": p.replication_bandwidth,
            "bandwidth_per_primary_bytes_per_s": p.bandwidth_per_primary,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&inputs, &p));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            ops: 1_000_000,
            keys: 100_000_000,
            key_size: 20,
            value_size: 500,
            read_ratio: 0.9,
            replicas: 1,
            headroom: 0.3,
            node_memory: 64 << 30,
            node_cores: 16,
        }
    }

    #[test]
    fn a_worked_example_by_hand() {
        let p = plan(&inputs());
        // 100M x (20 + 500 + 80) = 60 GB in one copy; with 30% room, 78 GB.
        assert_eq!(p.stored_bytes, 60_000_000_000);
        // A node may fill 64 GiB / 1.12 = 61.4 GB: two shards' worth.
        assert_eq!(p.shards_for_memory, 2);
        // 1.3M ops/s over 16 x 30,000 = 480,000 per node: three shards.
        assert_eq!(p.shards_for_ops, 3);
        assert_eq!((p.shards, p.nodes), (3, 6));
        // 78 GB over 3 shards.
        assert_eq!(p.maxmemory, 26_000_000_000);
        assert_eq!(p.node_ram, 29_120_000_000);
        assert_eq!(p.ops_per_primary, 333_334);
        // Reads 900k x (520 + 120), writes 100k x (520 + 120); replication 100k x 580.
        assert_eq!(p.client_bandwidth, 640_000_000);
        assert_eq!(p.replication_bandwidth, 58_000_000);
        assert_eq!(p.bandwidth_per_primary, 232_666_667);
    }

    #[test]
    fn memory_decides_for_big_data_and_throughput_for_hot_small_data() {
        let big = plan(&Inputs {
            keys: 2_000_000_000,
            ..inputs()
        });
        assert!(big.shards_for_memory > big.shards_for_ops);
        assert_eq!(big.shards, big.shards_for_memory);
        assert!(render(&inputs(), &big).contains("memory decides"));
        let hot = plan(&Inputs {
            ops: 20_000_000,
            keys: 1_000_000,
            ..inputs()
        });
        assert!(hot.shards_for_ops > hot.shards_for_memory);
        assert_eq!(hot.shards, hot.shards_for_ops);
    }

    #[test]
    fn a_tiny_cluster_still_gets_three_shards_for_a_raft_majority() {
        let p = plan(&Inputs {
            ops: 1000,
            keys: 1000,
            replicas: 2,
            ..inputs()
        });
        assert_eq!((p.shards, p.nodes), (3, 9));
    }

    #[test]
    fn every_node_fits_its_share_and_every_primary_its_load() {
        for keys in [0, 1, 10_000_000, 3_000_000_000] {
            for ops in [0, 50_000, 5_000_000] {
                let i = Inputs {
                    keys,
                    ops,
                    ..inputs()
                };
                let p = plan(&i);
                assert!(p.node_ram <= i.node_memory, "{i:?}: {p:?}");
                assert!(p.ops_per_primary <= p.ops_per_node_capacity, "{i:?}: {p:?}");
                assert!(p.maxmemory * p.shards >= p.stored_bytes, "{i:?}: {p:?}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let args = |ratio: f64, memory: &str| PlanArgs {
            ops: 1,
            keys: 1,
            key_size: 1,
            value_size: 1,
            read_ratio: ratio,
            replicas: 1,
            headroom: 0.3,
            node_memory: memory.into(),
            node_cores: 1,
            json: false,
        };
        assert!(Inputs::from_args(&args(1.5, "1gb")).is_err());
        assert!(Inputs::from_args(&args(0.5, "lots")).is_err());
        assert!(Inputs::from_args(&args(0.5, "1gb")).is_ok());
    }
}
