//! The `ringcache` binary: a thin front over the library crates.

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: large values (up to 1 MiB and beyond) are recycled in
/// its segments instead of costing an mmap, page faults and an munmap per write, and small
/// blocks cost less memory and time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ringcache: a distributed in-memory key-value cache speaking RESP2/RESP3.
#[derive(Debug, Parser)]
#[command(name = "ringcache", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one cache node.
    Server(Box<server::ServerArgs>),
    /// Generate load against a node (RESP or memcached) and report throughput and latency.
    Bench(Box<bench::BenchArgs>),
    /// Administer a cluster: create, status.
    Cluster(cli::ClusterArgs),
    /// Start a local 6-node cluster (3 shards x 2) on loopback; Ctrl-C stops it.
    Demo(cli::demo::DemoArgs),
    /// Estimate the cluster a load needs: shards, nodes, memory per node, bandwidth.
    Plan(cli::plan::PlanArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::run(server::Config::resolve(*args)?),
        Command::Bench(args) => bench::run(*args),
        Command::Cluster(args) => cli::run_cluster(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Plan(args) => cli::plan::run(args),
    }
}
