//! Server commands: COMMAND, INFO, CONFIG, DBSIZE, FLUSHALL/FLUSHDB, TIME.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use resp::{Protocol, Reply};
use store::EvictionPolicy;

use super::{help, is};
use crate::errors;
use crate::glob;
use crate::node::{rss_bytes, Node, REDIS_COMPAT_VERSION, VERSION};
use crate::table::{lookup, CommandSpec, Ctx, COMMANDS};

fn command_info(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        Reply::bulk_static(spec.name.as_bytes()),
        Reply::Integer(i64::from(spec.arity)),
        Reply::Set(spec.flags.iter().map(|f| Reply::simple(f)).collect()),
        Reply::Integer(i64::from(spec.first_key)),
        Reply::Integer(i64::from(spec.last_key)),
        Reply::Integer(i64::from(spec.step)),
        Reply::Set(vec![Reply::Simple(format!("@{}", spec.group).into())]),
        Reply::Set(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

fn command_docs(spec: &CommandSpec) -> Reply {
    Reply::Map(vec![
        (
            Reply::bulk_static(b"summary"),
            Reply::bulk_static(spec.summary.as_bytes()),
        ),
        (
            Reply::bulk_static(b"since"),
            Reply::bulk_static(spec.since.as_bytes()),
        ),
        (
            Reply::bulk_static(b"group"),
            Reply::bulk_static(spec.group.as_bytes()),
        ),
    ])
}

/// COMMAND [COUNT | INFO name... | DOCS name... | LIST | HELP]
pub fn command(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::Array(COMMANDS.iter().map(command_info).collect());
    };
    let named = |names: &[Bytes]| -> Vec<&'static CommandSpec> {
        if names.is_empty() {
            COMMANDS.iter().collect()
        } else {
            names
                .iter()
                .filter_map(|n| lookup(n).map(|i| &COMMANDS[i]))
                .collect()
        }
    };
    let fixed_arity = ["count", "list", "help"];
    if args.len() > 2 && fixed_arity.iter().any(|w| is(sub, w)) {
        return errors::arity(&format!(
            "command|{}",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ));
    }
    if is(sub, "count") {
        Reply::Integer(COMMANDS.len() as i64)
    } else if is(sub, "getkeys") {
        getkeys(&args[2..])
    } else if is(sub, "info") {
        if args.len() == 2 {
            return Reply::Array(COMMANDS.iter().map(command_info).collect());
        }
        Reply::Array(
            args[2..]
                .iter()
                .map(|n| lookup(n).map_or(Reply::Nil, |i| command_info(&COMMANDS[i])))
                .collect(),
        )
    } else if is(sub, "docs") {
        Reply::Map(
            named(&args[2..])
                .into_iter()
                .map(|s| (Reply::bulk_static(s.name.as_bytes()), command_docs(s)))
                .collect(),
        )
    } else if is(sub, "list") {
        Reply::Array(
            COMMANDS
                .iter()
                .map(|s| Reply::bulk_static(s.name.as_bytes()))
                .collect(),
        )
    } else if is(sub, "help") && args.len() == 2 {
        help(&[
            "COMMAND",
            "COUNT",
            "INFO [<command-name> ...]",
            "DOCS [<command-name> ...]",
            "LIST",
            "GETKEYS <full-command>",
        ])
    } else {
        errors::unknown_subcommand("command", sub)
    }
}

/// COMMAND GETKEYS command [arg ...]: the key arguments, from the table's key positions.
fn getkeys(command: &[Bytes]) -> Reply {
    let Some(spec) = command
        .first()
        .and_then(|n| lookup(n))
        .map(|i| &COMMANDS[i])
    else {
        return Reply::error("ERR Invalid command specified");
    };
    let argc = command.len() as i64;
    let arity = i64::from(spec.arity);
    if (arity > 0 && argc != arity) || argc < arity.abs() {
        return Reply::error("ERR Invalid number of arguments specified for command");
    }
    if spec.first_key == 0 {
        return Reply::error("ERR The command has no key arguments");
    }
    let last = if spec.last_key < 0 {
        argc + i64::from(spec.last_key)
    } else {
        i64::from(spec.last_key)
    };
    let keys = (i64::from(spec.first_key)..=last.min(argc - 1))
        .step_by(spec.step.max(1) as usize)
        .map(|i| Reply::Bulk(command[i as usize].clone()))
        .collect();
    Reply::Array(keys)
}

/// DBSIZE
pub fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    Reply::Integer(ctx.node.store.len() as i64)
}

/// FLUSHALL / FLUSHDB [ASYNC | SYNC]
pub fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args.get(1) {
        None => {}
        Some(mode) if args.len() == 2 && (is(mode, "async") || is(mode, "sync")) => {}
        Some(_) => return errors::syntax(),
    }
    ctx.node.store.clear();
    Reply::ok()
}

/// TIME
pub fn time(_ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(now.as_secs().to_string())),
        Reply::Bulk(Bytes::from(now.subsec_micros().to_string())),
    ])
}

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
];
const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "commandstats",
    "cluster",
    "keyspace",
];

/// INFO [section ...]
pub fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut wanted: Vec<&str> = Vec::new();
    if args.len() == 1 {
        wanted.extend(DEFAULT_SECTIONS);
    }
    for arg in &args[1..] {
        let a = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match a.as_str() {
            "default" => wanted.extend(DEFAULT_SECTIONS),
            "all" | "everything" => wanted.extend(ALL_SECTIONS),
            other => {
                if let Some(s) = ALL_SECTIONS.iter().find(|s| **s == other) {
                    wanted.push(s);
                }
            }
        }
    }
    let mut text = String::new();
    for section in ALL_SECTIONS.iter().filter(|s| wanted.contains(s)) {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        write_section(ctx.node, section, &mut text);
    }
    let text = Bytes::from(text);
    match ctx.session.protocol {
        Protocol::Resp3 => Reply::Verbatim("txt", text),
        Protocol::Resp2 => Reply::Bulk(text),
    }
}

/// Appends one INFO section: its `# Title` line and `field:value` lines.
fn write_section(node: &Node, section: &str, out: &mut String) {
    let (title, fields) = section_fields(node, section);
    let _ = writeln!(out, "# {title}\r");
    for (name, value) in fields {
        let _ = writeln!(out, "{name}:{value}\r");
    }
}

/// Returns a section's title and fields, in Redis's names and order where Redis has them.
fn section_fields(node: &Node, section: &str) -> (&'static str, Vec<(String, String)>) {
    let stats = node.store.stats();
    let config = node.store.config();
    let s = &node.stats;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Relaxed).to_string();
    let f = |name: &str, value: String| (name.to_owned(), value);
    match section {
        "server" => {
            let uptime = node.started.elapsed().as_secs();
            let os = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
            let config_file = node.identity.config_file.clone().unwrap_or_default();
            (
                "Server",
                vec![
                    f("redis_version", REDIS_COMPAT_VERSION.to_owned()),
                    f("ringcache_version", VERSION.to_owned()),
                    f("redis_mode", "standalone".to_owned()),
                    f("os", os),
                    f("arch_bits", "64".to_owned()),
                    f("multiplexing_api", "epoll".to_owned()),
                    f("process_id", std::process::id().to_string()),
                    f("run_id", node.run_id.clone()),
                    f("tcp_port", node.identity.port.to_string()),
                    f("server_time_usec", (crate::unix_ms() * 1000).to_string()),
                    f("uptime_in_seconds", uptime.to_string()),
                    f("uptime_in_days", (uptime / 86_400).to_string()),
                    f("io_threads_active", node.identity.io_threads.to_string()),
                    f("config_file", config_file),
                ],
            )
        }
        "clients" => (
            "Clients",
            vec![
                f("connected_clients", node.client_count().to_string()),
                f(
                    "maxclients",
                    node.settings.max_clients.load(Relaxed).to_string(),
                ),
                f("blocked_clients", "0".to_owned()),
            ],
        ),
        "memory" => {
            let rss = rss_bytes();
            (
                "Memory",
                vec![
                    f("used_memory", stats.used_bytes.to_string()),
                    f("used_memory_human", human_bytes(stats.used_bytes)),
                    f("used_memory_rss", rss.to_string()),
                    f("used_memory_rss_human", human_bytes(rss)),
                    f("used_memory_dataset", stats.used_bytes.to_string()),
                    f("maxmemory", config.max_memory_bytes.to_string()),
                    f("maxmemory_human", human_bytes(config.max_memory_bytes)),
                    f("maxmemory_policy", config.policy.name().to_owned()),
                    f("max_value_bytes", config.max_value_bytes.to_string()),
                    f(
                        "mem_clients_normal",
                        node.stats.client_buffer_bytes.load(Relaxed).to_string(),
                    ),
                    f(
                        "maxmemory_clients",
                        node.settings
                            .max_client_memory_bytes
                            .load(Relaxed)
                            .to_string(),
                    ),
                    f("mem_allocator", "mimalloc".to_owned()),
                ],
            )
        }
        "persistence" => (
            "Persistence",
            vec![
                f("loading", "0".to_owned()),
                f("rdb_changes_since_last_save", "0".to_owned()),
                f("aof_enabled", "0".to_owned()),
            ],
        ),
        "stats" => {
            let errors: u64 = node
                .command_stats
                .iter()
                .map(|c| c.failed.load(Relaxed))
                .sum();
            (
                "Stats",
                vec![
                    f("total_connections_received", load(&s.connections_received)),
                    f(
                        "total_commands_processed",
                        node.commands_processed().to_string(),
                    ),
                    f("total_net_input_bytes", load(&s.net_input_bytes)),
                    f("total_net_output_bytes", load(&s.net_output_bytes)),
                    f("rejected_connections", load(&s.rejected_connections)),
                    f("expired_keys", stats.expired.to_string()),
                    f("evicted_keys", stats.evicted.to_string()),
                    f("evicted_clients", load(&s.clients_evicted)),
                    f(
                        "client_output_limit_disconnections",
                        load(&s.output_limit_disconnections),
                    ),
                    f("keyspace_hits", stats.hits.to_string()),
                    f("keyspace_misses", stats.misses.to_string()),
                    f("total_error_replies", errors.to_string()),
                    f("unknown_commands", load(&s.unknown_commands)),
                    f("protocol_errors", load(&s.protocol_errors)),
                ],
            )
        }
        "replication" => (
            "Replication",
            match node.cluster.get() {
                Some(hook) => hook.replication_info(),
                None => vec![
                    f("role", "master".to_owned()),
                    f("connected_slaves", "0".to_owned()),
                ],
            },
        ),
        "cpu" => ("CPU", vec![]),
        "commandstats" => {
            let fields = COMMANDS
                .iter()
                .zip(node.command_stats.iter())
                .filter(|(_, c)| c.calls.load(Relaxed) > 0)
                .map(|(spec, c)| {
                    let (calls, usec) = (c.calls.load(Relaxed), c.usec.load(Relaxed));
                    let value = format!(
                        "calls={calls},usec={usec},usec_per_call={:.2},rejected_calls=0,failed_calls={}",
                        usec as f64 / calls as f64,
                        c.failed.load(Relaxed)
                    );
                    (format!("cmdstat_{}", spec.name), value)
                })
                .collect();
            ("Commandstats", fields)
        }
        "cluster" => {
            let enabled = if node.cluster.get().is_some() {
                "1"
            } else {
                "0"
            };
            ("Cluster", vec![f("cluster_enabled", enabled.to_owned())])
        }
        _ => {
            let mut fields = Vec::new();
            if stats.keys > 0 {
                fields.push(f(
                    "db0",
                    format!(
                        "keys={},expires={},avg_ttl=0",
                        stats.keys, stats.keys_with_ttl
                    ),
                ));
            }
            ("Keyspace", fields)
        }
    }
}

fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// Parses a memory size as Redis does: `100`, `1kb`, `64mb`, `1gb`, `1k` (1000), `1m`, `1g`.
pub fn parse_memory(text: &str) -> Option<usize> {
    let t = text.to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits.parse().ok()?;
    let mul: usize = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// The parameters `CONFIG GET` knows, with their current values.
fn config_values(node: &Node) -> Vec<(&'static str, String)> {
    let c = node.store.config();
    let s = &node.settings;
    vec![
        ("maxmemory", c.max_memory_bytes.to_string()),
        ("maxmemory-policy", c.policy.name().to_owned()),
        ("max-value-bytes", c.max_value_bytes.to_string()),
        ("maxclients", s.max_clients.load(Relaxed).to_string()),
        ("timeout", s.idle_timeout_secs.load(Relaxed).to_string()),
        (
            "proto-max-bulk-len",
            s.proto_max_bulk_len.load(Relaxed).to_string(),
        ),
        (
            "client-query-buffer-limit",
            s.max_request_bytes.load(Relaxed).to_string(),
        ),
        (
            "client-output-buffer-limit",
            format!(
                "normal {0} {0} 0 replica 0 0 0 pubsub 0 0 0",
                s.client_output_limit_bytes.load(Relaxed)
            ),
        ),
        (
            "maxmemory-clients",
            s.max_client_memory_bytes.load(Relaxed).to_string(),
        ),
        ("port", node.identity.port.to_string()),
        ("bind", node.identity.bind.clone()),
        ("databases", "1".to_owned()),
        ("save", String::new()),
        ("appendonly", "no".to_owned()),
        (
            "cluster-enabled",
            if node.cluster.get().is_some() {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ),
        ("maxmemory-samples", "5".to_owned()),
    ]
}

/// CONFIG GET pattern [pattern ...] | SET name value [name value ...] | RESETSTAT | HELP
pub fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    if is(sub, "get") {
        if args.len() < 3 {
            return errors::arity("config|get");
        }
        let values = config_values(ctx.node);
        // A name asked for without wildcards is echoed as typed, as Redis does.
        let pairs = values
            .into_iter()
            .filter_map(|(name, value)| {
                let asked = args[2..]
                    .iter()
                    .find(|p| glob::matches(p, name.as_bytes(), true))?;
                let literal = !asked.iter().any(|c| b"*?[\\".contains(c));
                let key = if literal {
                    Reply::Bulk(asked.clone())
                } else {
                    Reply::bulk_static(name.as_bytes())
                };
                Some((key, Reply::Bulk(Bytes::from(value))))
            })
            .collect();
        Reply::Map(pairs)
    } else if is(sub, "set") {
        if args.len() < 4 || args.len() % 2 == 1 {
            return errors::arity("config|set");
        }
        config_set(ctx.node, &args[2..])
    } else if (is(sub, "resetstat") || is(sub, "help")) && args.len() > 2 {
        errors::arity(&format!(
            "config|{}",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ))
    } else if is(sub, "resetstat") {
        Reply::ok()
    } else if is(sub, "help") {
        help(&[
            "CONFIG <subcommand>",
            "GET <pattern>",
            "SET <directive> <value>",
            "RESETSTAT",
        ])
    } else {
        errors::unknown_subcommand("config", sub)
    }
}

/// Applies CONFIG SET pairs: all are validated (values, ranges, duplicates) before any is
/// applied, with Redis's error texts.
fn config_set(node: &Node, pairs: &[Bytes]) -> Reply {
    let mut store_config = node.store.config();
    // (setting, new value) pairs for the node's atomics, applied after validation.
    let mut settings: Vec<(&std::sync::atomic::AtomicUsize, usize)> = Vec::new();
    let mut idle_timeout_secs = None;
    let mut seen: Vec<String> = Vec::new();
    for pair in pairs.chunks_exact(2) {
        // Errors name the parameter as typed, as Redis does.
        let typed = String::from_utf8_lossy(&pair[0]);
        let name = typed.to_ascii_lowercase();
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        let failed = |why: &str| {
            Reply::error_owned(format!(
                "ERR CONFIG SET failed (possibly related to argument '{typed}') - {why}"
            ))
        };
        if seen.contains(&name) {
            return failed("duplicate parameter");
        }
        seen.push(name.clone());
        let s = &node.settings;
        // An empty memory value means 0, as in Redis.
        let memory = || {
            if value.is_empty() {
                return Ok(0);
            }
            parse_memory(&value).ok_or_else(|| failed("argument must be a memory value"))
        };
        let ranged = |lo: i64, hi: i64| match resp::parse::parse_i64(value.as_bytes()) {
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            Some(_) => Err(failed(&format!(
                "argument must be between {lo} and {hi} inclusive"
            ))),
            None => Err(failed("argument couldn't be parsed into an integer")),
        };
        let outcome: Result<(), Reply> = match name.as_str() {
            "maxmemory" => memory().map(|n| store_config.max_memory_bytes = n),
            "max-value-bytes" => match memory() {
                Ok(0) => Err(failed("argument must be a positive memory value")),
                other => other.map(|n| store_config.max_value_bytes = n),
            },
            "proto-max-bulk-len" | "client-query-buffer-limit" => match memory() {
                Ok(0) => Err(failed("argument must be a positive memory value")),
                Ok(n) if name == "proto-max-bulk-len" => {
                    settings.push((&s.proto_max_bulk_len, n));
                    Ok(())
                }
                other => other.map(|n| settings.push((&s.max_request_bytes, n))),
            },
            "maxclients" => {
                ranged(1, u32::MAX.into()).map(|n| settings.push((&s.max_clients, n as usize)))
            }
            // Bytes; a percentage of maxmemory as Redis 7 also takes is left to the command
            // line and the config file.
            "maxmemory-clients" => memory().map(|n| settings.push((&s.max_client_memory_bytes, n))),
            "timeout" => ranged(0, i32::MAX.into()).map(|n| idle_timeout_secs = Some(n as u64)),
            "maxmemory-policy" => match EvictionPolicy::from_name(&value) {
                Some(p) => {
                    store_config.policy = p;
                    Ok(())
                }
                None => Err(failed(
                    "argument(s) must be one of the following: allkeys-lru, noeviction",
                )),
            },
            "port" | "bind" | "databases" | "cluster-enabled" => {
                Err(failed("can't set immutable config"))
            }
            _ => Err(Reply::error_owned(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ))),
        };
        if let Err(reply) = outcome {
            return reply;
        }
    }
    node.store.reconfigure(store_config);
    for (setting, value) in settings {
        setting.store(value, Relaxed);
    }
    if let Some(secs) = idle_timeout_secs {
        node.settings.idle_timeout_secs.store(secs, Relaxed);
    }
    Reply::ok()
}

#[cfg(test)]
mod tests {
    use super::parse_memory;

    #[test]
    fn memory_sizes_parse_like_redis() {
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("1kb"), Some(1024));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("2GB"), Some(2 << 30));
        assert_eq!(parse_memory("64mb"), Some(64 << 20));
        assert_eq!(parse_memory("x"), None);
        assert_eq!(parse_memory("-1"), None);
        assert_eq!(parse_memory("1tb"), None);
    }
}
