//! Node configuration: command-line flags, environment variables and a TOML file.
//!
//! Precedence, highest first: flag, environment variable (`RINGCACHE_<NAME>`), file, default.
//! Every flag's name matches its key in the file and its Redis `CONFIG` name where one exists
//! (`maxmemory`, `maxmemory-policy`, `maxclients`, `timeout`, ...).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;
use store::EvictionPolicy;

/// `ringcache server` flags. Every field is optional so a missing flag can fall back to the
/// file and then the default.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerArgs {
    /// TOML configuration file (keys as the flags, e.g. `maxmemory = "2gb"`).
    #[arg(long, env = "RINGCACHE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "RINGCACHE_BIND")]
    pub bind: Option<IpAddr>,
    /// RESP port [default: 6379].
    #[arg(long, env = "RINGCACHE_PORT")]
    pub port: Option<u16>,
    /// memcached text protocol port [default: 11211]; 0 picks a free port.
    #[arg(long, env = "RINGCACHE_MEMCACHE_PORT")]
    pub memcache_port: Option<u16>,
    /// Disable the memcached listener.
    #[arg(long, env = "RINGCACHE_NO_MEMCACHE")]
    #[serde(default)]
    pub no_memcache: bool,
    /// Admin HTTP port for /metrics and /healthz [default: 9100]; 0 picks a free port.
    #[arg(long, env = "RINGCACHE_ADMIN_PORT")]
    pub admin_port: Option<u16>,
    /// Disable the admin HTTP listener.
    #[arg(long, env = "RINGCACHE_NO_ADMIN")]
    #[serde(default)]
    pub no_admin: bool,
    /// Memory budget for keys and values, e.g. `512mb`, `2gb`; 0 = unlimited [default: 1gb].
    #[arg(long, env = "RINGCACHE_MAXMEMORY")]
    pub maxmemory: Option<String>,
    /// `allkeys-lru` or `noeviction` [default: allkeys-lru].
    #[arg(long, env = "RINGCACHE_MAXMEMORY_POLICY")]
    pub maxmemory_policy: Option<String>,
    /// Largest value accepted [default: 1mb].
    #[arg(long, env = "RINGCACHE_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<String>,
    /// Most simultaneous clients [default: 10000].
    #[arg(long, env = "RINGCACHE_MAXCLIENTS")]
    pub maxclients: Option<usize>,
    /// Close clients idle for this many seconds; 0 = never [default: 0].
    #[arg(long, env = "RINGCACHE_TIMEOUT")]
    pub timeout: Option<u64>,
    /// Largest bulk string in a request [default: max-value-bytes + 64kb].
    #[arg(long, env = "RINGCACHE_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<String>,
    /// Largest single request (all arguments together) [default: 64mb].
    #[arg(long, env = "RINGCACHE_CLIENT_QUERY_BUFFER_LIMIT")]
    pub client_query_buffer_limit: Option<String>,
    /// Largest reply a client may have pending before it is disconnected [default: 64mb].
    #[arg(long, env = "RINGCACHE_CLIENT_OUTPUT_BUFFER_LIMIT")]
    pub client_output_buffer_limit: Option<String>,
    /// Node-wide budget for all clients' query and output buffers, in bytes (`64mb`) or as a
    /// share of maxmemory (`5%`); over it, the clients with the largest buffers are
    /// disconnected first; 0 = no budget [default: 5% of maxmemory, at least 32mb; 1gb when
    /// maxmemory is unlimited].
    #[arg(long, env = "RINGCACHE_MAXMEMORY_CLIENTS")]
    pub maxmemory_clients: Option<String>,
    /// Length of the listen queue of pending connections [default: 511].
    #[arg(long, env = "RINGCACHE_TCP_BACKLOG")]
    pub tcp_backlog: Option<u32>,
    /// Seconds of silence before TCP keepalive probes a client; 0 = off [default: 300].
    #[arg(long, env = "RINGCACHE_TCP_KEEPALIVE")]
    pub tcp_keepalive: Option<u64>,
    /// Disconnect a client whose socket accepts no reply bytes for this many seconds
    /// [default: 30].
    #[arg(long, env = "RINGCACHE_CLIENT_WRITE_TIMEOUT")]
    pub client_write_timeout: Option<u64>,
    /// Store shards (rounded up to a power of two) [default: 8 per core, at least 16].
    #[arg(long, env = "RINGCACHE_SHARDS")]
    pub shards: Option<usize>,
    /// Runtime worker threads [default: one per core].
    #[arg(long, env = "RINGCACHE_THREADS")]
    pub threads: Option<usize>,
    /// Log filter, e.g. `info`, `ringcache=debug` [default: info].
    #[arg(long, env = "RINGCACHE_LOG")]
    pub log: Option<String>,
    /// Run as a cluster node (join one with `ringcache cluster create` or `add-node`).
    #[arg(long, env = "RINGCACHE_CLUSTER_ENABLED")]
    #[serde(default)]
    pub cluster_enabled: bool,
    /// Cluster bus port [default: port + 10000].
    #[arg(long, env = "RINGCACHE_CLUSTER_PORT")]
    pub cluster_port: Option<u16>,
    /// The address other nodes and clients use to reach this node [default: the bind
    /// address, or 127.0.0.1 when binding to all addresses].
    #[arg(long, env = "RINGCACHE_CLUSTER_ANNOUNCE_IP")]
    pub cluster_announce_ip: Option<String>,
    /// Data directory for the node's identity and cluster metadata
    /// [default: ringcache-PORT in the working directory].
    #[arg(long, env = "RINGCACHE_DIR")]
    pub dir: Option<PathBuf>,
    /// Zone of this node (replicas are placed in other zones than their primary).
    #[arg(long, env = "RINGCACHE_ZONE")]
    pub zone: Option<String>,
    /// A RESP port that serves any key by forwarding to its owner, for clients that don't
    /// speak Redis Cluster; 0 picks a free port [default: disabled].
    #[arg(long, env = "RINGCACHE_FORWARD_PORT")]
    pub forward_port: Option<u16>,
    /// How much recent write history a primary keeps for replicas that reconnect
    /// [default: 16mb]; a replica further behind syncs in full.
    #[arg(long, env = "RINGCACHE_REPL_BACKLOG_SIZE")]
    pub repl_backlog_size: Option<String>,
    /// Most bytes per second this node sends when a slot migrates away from it, e.g. `50mb`
    /// [default: 0, no limit].
    #[arg(long, env = "RINGCACHE_MIGRATION_RATE")]
    pub migration_rate: Option<String>,
}

/// The resolved configuration of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listen address.
    pub bind: IpAddr,
    /// RESP port (0: any free port).
    pub port: u16,
    /// memcached port (0: any free port); `None` disables it.
    pub memcache_port: Option<u16>,
    /// Admin HTTP port (0: any free port); `None` disables it.
    pub admin_port: Option<u16>,
    /// Memory budget; 0 = unlimited.
    pub max_memory_bytes: usize,
    /// Eviction policy.
    pub policy: EvictionPolicy,
    /// Largest value.
    pub max_value_bytes: usize,
    /// Most clients.
    pub max_clients: usize,
    /// Idle timeout in seconds; 0 = never.
    pub idle_timeout_secs: u64,
    /// Largest bulk string.
    pub proto_max_bulk_len: usize,
    /// Largest request.
    pub max_request_bytes: usize,
    /// Largest pending reply per client.
    pub client_output_limit_bytes: usize,
    /// Seconds a blocked write may last.
    pub client_write_timeout_secs: u64,
    /// Node-wide budget for client buffers; 0 = none.
    pub max_client_memory_bytes: usize,
    /// Listen queue length.
    pub tcp_backlog: u32,
    /// Keepalive idle time in seconds; 0 = off.
    pub tcp_keepalive_secs: u64,
    /// Store shards.
    pub shards: usize,
    /// Worker threads.
    pub threads: usize,
    /// Log filter.
    pub log: String,
    /// The configuration file used, if any.
    pub config_file: Option<PathBuf>,
    /// Cluster mode settings; `None` for a standalone node.
    pub cluster: Option<ClusterConfig>,
}

/// Settings of a cluster node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Bus port; `None` for port + 10000.
    pub bus_port: Option<u16>,
    /// Announced address.
    pub announce_ip: Option<String>,
    /// Data dir; `None` for `./ringcache-<port>`.
    pub dir: Option<PathBuf>,
    /// Zone.
    pub zone: String,
    /// Forwarding RESP port, if enabled.
    pub forward_port: Option<u16>,
    /// Replication backlog size.
    pub repl_backlog_bytes: usize,
    /// Slot migration rate limit in bytes per second (0: none).
    pub migration_rate_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config::resolve(ServerArgs::default())
            .unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

fn size(value: Option<&String>, name: &str, default: usize) -> anyhow::Result<usize> {
    match value {
        None => Ok(default),
        Some(text) => command::parse_memory(text)
            .with_context(|| format!("invalid size for {name}: {text:?} (use e.g. 100mb, 2gb)")),
    }
}

/// The floor of the default client buffer budget: room for a few hundred 1 MB values in
/// flight even on a node with a small maxmemory.
pub const MIN_CLIENT_MEMORY_BYTES: usize = 32 << 20;

/// Resolves `maxmemory-clients`: bytes, or a percentage of `max_memory_bytes` (as Redis 7);
/// unset means 5% of maxmemory with [`MIN_CLIENT_MEMORY_BYTES`] as the floor, or 1 GiB when
/// maxmemory is unlimited.
pub fn client_memory_budget(value: Option<&str>, max_memory_bytes: usize) -> anyhow::Result<usize> {
    match value.map(str::trim) {
        None if max_memory_bytes == 0 => Ok(1 << 30),
        None => Ok((max_memory_bytes / 20).max(MIN_CLIENT_MEMORY_BYTES)),
        Some(text) => match text.strip_suffix('%') {
            Some(percent) => {
                let percent: usize = percent
                    .parse()
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .with_context(|| format!("invalid maxmemory-clients {text:?} (1% to 100%)"))?;
                if max_memory_bytes == 0 {
                    bail!("maxmemory-clients as a percentage needs a maxmemory");
                }
                Ok(max_memory_bytes / 100 * percent)
            }
            None => size(Some(&text.to_owned()), "maxmemory-clients", 0),
        },
    }
}

impl Config {
    /// Merges flags (and environment, which clap already folded into them) over the file
    /// named by `--config`, then defaults, and validates the result.
    pub fn resolve(args: ServerArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<ServerArgs>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => ServerArgs::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field.clone())
            };
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let max_value_bytes = size(
            pick!(max_value_bytes).as_ref(),
            "max-value-bytes",
            store::DEFAULT_MAX_VALUE_BYTES,
        )?;
        if max_value_bytes == 0 {
            bail!("max-value-bytes must be positive");
        }
        let policy_name = pick!(maxmemory_policy).unwrap_or_else(|| "allkeys-lru".to_owned());
        let policy = EvictionPolicy::from_name(&policy_name).with_context(|| {
            format!("unknown maxmemory-policy {policy_name:?} (allkeys-lru, noeviction)")
        })?;
        let max_memory_bytes = size(pick!(maxmemory).as_ref(), "maxmemory", 1 << 30)?;
        let repl_backlog_bytes = size(
            pick!(repl_backlog_size).as_ref(),
            "repl-backlog-size",
            16 << 20,
        )?;
        let migration_rate_bytes =
            size(pick!(migration_rate).as_ref(), "migration-rate", 0)? as u64;
        let config = Config {
            bind: pick!(bind).unwrap_or(IpAddr::from([127, 0, 0, 1])),
            port: pick!(port).unwrap_or(6379),
            memcache_port: if args.no_memcache || file.no_memcache {
                None
            } else {
                Some(pick!(memcache_port).unwrap_or(11211))
            },
            admin_port: if args.no_admin || file.no_admin {
                None
            } else {
                Some(pick!(admin_port).unwrap_or(9100))
            },
            max_memory_bytes,
            policy,
            max_value_bytes,
            max_clients: pick!(maxclients).unwrap_or(10_000),
            idle_timeout_secs: pick!(timeout).unwrap_or(0),
            proto_max_bulk_len: size(
                pick!(proto_max_bulk_len).as_ref(),
                "proto-max-bulk-len",
                max_value_bytes + 64 * 1024,
            )?,
            max_request_bytes: size(
                pick!(client_query_buffer_limit).as_ref(),
                "client-query-buffer-limit",
                64 << 20,
            )?,
            client_output_limit_bytes: size(
                pick!(client_output_buffer_limit).as_ref(),
                "client-output-buffer-limit",
                64 << 20,
            )?,
            client_write_timeout_secs: pick!(client_write_timeout).unwrap_or(30),
            max_client_memory_bytes: client_memory_budget(
                pick!(maxmemory_clients).as_deref(),
                max_memory_bytes,
            )?,
            tcp_backlog: pick!(tcp_backlog).unwrap_or(511).max(1),
            tcp_keepalive_secs: pick!(tcp_keepalive).unwrap_or(300),
            shards: pick!(shards).unwrap_or((cores * 8).max(16)),
            threads: pick!(threads).unwrap_or(cores).max(1),
            log: pick!(log).unwrap_or_else(|| "info".to_owned()),
            config_file: args.config.clone(),
            cluster: (args.cluster_enabled || file.cluster_enabled).then(|| ClusterConfig {
                bus_port: args.cluster_port.or(file.cluster_port),
                announce_ip: args
                    .cluster_announce_ip
                    .clone()
                    .or(file.cluster_announce_ip.clone()),
                dir: args.dir.clone().or(file.dir.clone()),
                zone: args.zone.clone().or(file.zone.clone()).unwrap_or_default(),
                forward_port: args.forward_port.or(file.forward_port),
                repl_backlog_bytes,
                migration_rate_bytes,
            }),
        };
        if config.max_clients == 0 {
            bail!("maxclients must be positive");
        }
        if config.proto_max_bulk_len == 0 || config.max_request_bytes == 0 {
            bail!("proto-max-bulk-len and client-query-buffer-limit must be positive");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_memory_budget_defaults_to_a_share_of_maxmemory_with_a_floor() {
        assert_eq!(
            client_memory_budget(None, 1 << 30).ok(),
            Some((1 << 30) / 20)
        );
        assert_eq!(
            client_memory_budget(None, 64 << 20).ok(),
            Some(MIN_CLIENT_MEMORY_BYTES)
        );
        assert_eq!(client_memory_budget(None, 0).ok(), Some(1 << 30));
        assert_eq!(
            client_memory_budget(Some("10%"), 1000 << 20).ok(),
            Some(100 << 20)
        );
        assert_eq!(
            client_memory_budget(Some("16mb"), 1 << 30).ok(),
            Some(16 << 20)
        );
        assert_eq!(client_memory_budget(Some("0"), 1 << 30).ok(), Some(0));
        assert!(client_memory_budget(Some("0%"), 1 << 30).is_err());
        assert!(client_memory_budget(Some("5%"), 0).is_err());
        assert!(client_memory_budget(Some("lots"), 1 << 30).is_err());
    }

    #[test]
    fn defaults_are_safe() {
        let c = Config::default();
        assert_eq!(c.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            (c.port, c.admin_port, c.memcache_port),
            (6379, Some(9100), Some(11211))
        );
        assert_eq!(c.max_memory_bytes, 1 << 30);
        assert_eq!(c.max_value_bytes, 1 << 20);
        assert_eq!(c.policy, EvictionPolicy::AllKeysLru);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("ringcache-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "port = 7000\nmaxmemory = \"2mb\"\nmaxmemory-policy = \"noeviction\"\n",
        )
        .expect("write");
        let args = ServerArgs {
            config: Some(path.clone()),
            port: Some(7001),
            ..ServerArgs::default()
        };
        let c = Config::resolve(args).expect("valid");
        assert_eq!(c.port, 7001);
        assert_eq!(c.max_memory_bytes, 2 << 20);
        assert_eq!(c.policy, EvictionPolicy::NoEviction);
        std::fs::write(&path, "no-such-key = 1\n").expect("write");
        let err = Config::resolve(ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        });
        assert!(err.is_err());
    }

    #[test]
    fn bad_values_are_reported() {
        let bad = ServerArgs {
            maxmemory: Some("lots".into()),
            ..ServerArgs::default()
        };
        assert!(Config::resolve(bad).is_err());
        let bad = ServerArgs {
            maxmemory_policy: Some("volatile-magic".into()),
            ..ServerArgs::default()
        };
        assert!(Config::resolve(bad).is_err());
    }
}
