//! The `ringcache` binary: a thin front over the library crates.

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::run(server::Config::resolve(*args)?),
        Command::Bench(args) => bench::run(*args),
    }
}
